//! Druid SQL forms DataFusion has no planner for, rewritten in the parsed statement into
//! equivalent ones it has:
//! - `FLOOR(t TO HOUR)` / `CEIL(t TO DAY)` → `TIME_FLOOR(t, 'PT1H')` / `TIME_CEIL(t, 'P1D')`
//! - `EARLIEST(x)` / `LATEST(x)` → `first_value(x ORDER BY "__time")` / `last_value(...)`;
//!   `EARLIEST_BY(x, t)` / `LATEST_BY(x, t)` order by `t`; a max-bytes argument is ignored
//! - `APPROX_COUNT_DISTINCT(x)` (and the `_DS_HLL` / `_BUILTIN` variants) → `approx_distinct(x)`
//! - `?` parameters → `$1`, `$2`, ... in order of appearance.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    CeilFloorKind, DateTimeField, Expr, Function, FunctionArg, FunctionArgExpr,
    FunctionArgumentClause, FunctionArguments, Ident, ObjectName, OrderByExpr, OrderByOptions,
    Statement, Value, visit_expressions_mut,
};

/// Rewrites a statement in place; returns how many `?` parameters it has.
pub fn rewrite(statement: &mut Statement) -> Result<usize, String> {
    let mut parameters = 0;
    let flow = visit_expressions_mut(statement, |expr| {
        let replacement = match expr {
            Expr::Floor { expr: inner, field } => time_unit_call("TIME_FLOOR", inner, field),
            Expr::Ceil { expr: inner, field } => time_unit_call("TIME_CEIL", inner, field),
            Expr::Function(function) => rewrite_function(function).map(|()| None),
            Expr::Value(value) => {
                if let Value::Placeholder(p) = &mut value.value
                    && p == "?"
                {
                    parameters += 1;
                    *p = format!("${parameters}");
                }
                Ok(None)
            }
            _ => Ok(None),
        };
        match replacement {
            Ok(Some(replacement)) => *expr = replacement,
            Ok(None) => {}
            Err(e) => return ControlFlow::Break(e),
        }
        ControlFlow::Continue(())
    });
    match flow {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(parameters),
    }
}

/// The Druid period of a `FLOOR(... TO unit)` unit.
fn unit_period(unit: &DateTimeField) -> Option<&'static str> {
    Some(match unit {
        DateTimeField::Second | DateTimeField::Seconds => "PT1S",
        DateTimeField::Minute | DateTimeField::Minutes => "PT1M",
        DateTimeField::Hour | DateTimeField::Hours => "PT1H",
        DateTimeField::Day | DateTimeField::Days => "P1D",
        DateTimeField::Week(_) | DateTimeField::Weeks => "P1W",
        DateTimeField::Month | DateTimeField::Months => "P1M",
        DateTimeField::Quarter => "P3M",
        DateTimeField::Year | DateTimeField::Years => "P1Y",
        _ => return None,
    })
}

/// `TIME_FLOOR(t, period)` / `TIME_CEIL(t, period)` for `FLOOR(t TO unit)` / `CEIL(...)`;
/// None for the numeric forms.
fn time_unit_call(
    name: &str,
    time: &mut Expr,
    field: &CeilFloorKind,
) -> Result<Option<Expr>, String> {
    let CeilFloorKind::DateTimeField(unit) = field else {
        return Ok(None);
    };
    if *unit == DateTimeField::NoDateTime {
        return Ok(None);
    }
    let period =
        unit_period(unit).ok_or_else(|| format!("FLOOR/CEIL to {unit} is not supported"))?;
    let time = std::mem::replace(time, Expr::value(Value::Null));
    Ok(Some(call(
        name,
        vec![time, Expr::value(Value::SingleQuotedString(period.into()))],
        vec![],
    )))
}

/// A function call expression.
fn call(name: &str, args: Vec<Expr>, clauses: Vec<FunctionArgumentClause>) -> Expr {
    Expr::Function(Function {
        name: ObjectName::from(vec![Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(datafusion::sql::sqlparser::ast::FunctionArgumentList {
            duplicate_treatment: None,
            args: args
                .into_iter()
                .map(|e| FunctionArg::Unnamed(FunctionArgExpr::Expr(e)))
                .collect(),
            clauses,
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

fn rewrite_function(function: &mut Function) -> Result<(), String> {
    let name = function.name.to_string().to_ascii_uppercase();
    match name.as_str() {
        "APPROX_COUNT_DISTINCT"
        | "APPROX_COUNT_DISTINCT_DS_HLL"
        | "APPROX_COUNT_DISTINCT_BUILTIN" => {
            function.name = ObjectName::from(vec![Ident::new("approx_distinct")]);
            Ok(())
        }
        "EARLIEST" | "LATEST" | "EARLIEST_BY" | "LATEST_BY" => {
            let FunctionArguments::List(list) = &mut function.args else {
                return Err(format!("{name} takes arguments"));
            };
            let by_time_argument = name.ends_with("_BY");
            let mut args = std::mem::take(&mut list.args).into_iter().map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(e),
                other => Err(format!("{name} does not take {other}")),
            });
            let value = args.next().ok_or(format!("{name} needs an expression"))??;
            let order = if by_time_argument {
                args.next()
                    .ok_or(format!("{name} needs a time expression"))??
            } else {
                Expr::Identifier(Ident::with_quote('"', "__time"))
            };
            // A third (or second) argument, maxBytesPerValue, has no meaning here.
            let target = if name.starts_with("EARLIEST") {
                "first_value"
            } else {
                "last_value"
            };
            let order_by = OrderByExpr {
                expr: order,
                options: OrderByOptions {
                    asc: Some(true),
                    nulls_first: None,
                },
                with_fill: None,
            };
            if let Expr::Function(rewritten) = call(
                target,
                vec![value],
                vec![FunctionArgumentClause::OrderBy(vec![order_by])],
            ) {
                function.name = rewritten.name;
                function.args = rewritten.args;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use datafusion::sql::parser::{DFParser, Statement as DFStatement};

    use super::*;

    fn rewritten(sql: &str) -> (String, usize) {
        let mut statements = DFParser::parse_sql(sql).unwrap();
        let DFStatement::Statement(statement) = statements.pop_front().unwrap() else {
            panic!("a statement")
        };
        let mut statement = *statement;
        let parameters = rewrite(&mut statement).unwrap();
        (statement.to_string(), parameters)
    }

    #[test]
    fn druid_forms_become_datafusion_forms() {
        let (sql, _) = rewritten(
            "SELECT FLOOR(__time TO HOUR), CEIL(__time TO DAY), EARLIEST(v), LATEST_BY(v, t), APPROX_COUNT_DISTINCT(u) FROM x",
        );
        assert_eq!(
            sql,
            "SELECT TIME_FLOOR(__time, 'PT1H'), TIME_CEIL(__time, 'P1D'), first_value(v ORDER BY \"__time\" ASC), last_value(v ORDER BY t ASC), approx_distinct(u) FROM x"
        );
        let (sql, parameters) = rewritten("SELECT * FROM x WHERE a = ? AND b > ?");
        assert_eq!(sql, "SELECT * FROM x WHERE a = $1 AND b > $2");
        assert_eq!(parameters, 2);
    }
}
