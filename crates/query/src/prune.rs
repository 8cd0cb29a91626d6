//! What a query's filters allow of each string column (equalities, IN lists, ranges), so
//! that segments partitioned by those columns that cannot hold a matching row are left
//! unread (see `ShardKeys::may_hold`).

use datafusion::common::ScalarValue;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator};
use millrace_segments::shard::{Allowed, Constraints};

/// The constraints every row the filters match meets. Filters it does not understand add
/// nothing: the constraints only ever let more segments through, never fewer.
pub fn constraints_of(filters: &[Expr]) -> Constraints {
    let mut constraints = Constraints::new();
    for filter in filters {
        for (column, allowed) in conjuncts(filter) {
            // A second constraint on a column narrows only exact values; keeping the first
            // is always safe.
            match (constraints.get_mut(&column), allowed) {
                (Some(Allowed::Values(existing)), Allowed::Values(more)) => {
                    existing.retain(|v| more.contains(v));
                }
                (Some(_), _) => {}
                (None, allowed) => {
                    constraints.insert(column, allowed);
                }
            }
        }
    }
    constraints
}

/// The constraints of one filter: of each side of an AND, or of a single comparison.
fn conjuncts(filter: &Expr) -> Vec<(String, Allowed)> {
    match filter {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::And,
            right,
        }) => {
            let mut all = conjuncts(left);
            all.extend(conjuncts(right));
            all
        }
        other => single(other).into_iter().collect(),
    }
}

fn column_name(expr: &Expr) -> Option<&str> {
    match expr {
        Expr::Column(c) => Some(c.name.as_str()),
        _ => None,
    }
}

fn text(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Literal(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)),
            _,
        ) => Some(s.clone()),
        _ => None,
    }
}

/// The constraint of a comparison of a column with text, an IN list, a BETWEEN, or an OR of
/// equalities on one column.
fn single(filter: &Expr) -> Option<(String, Allowed)> {
    match filter {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            if *op == Operator::Or {
                let (a, b) = (single(left)?, single(right)?);
                return match (a, b) {
                    ((x, Allowed::Values(mut u)), (y, Allowed::Values(v))) if x == y => {
                        u.extend(v);
                        Some((x, Allowed::Values(u)))
                    }
                    _ => None,
                };
            }
            let (column, op, value) = match (column_name(left), text(right)) {
                (Some(c), Some(v)) => (c, *op, v),
                _ => (column_name(right)?, op.swap()?, text(left)?),
            };
            let allowed = match op {
                Operator::Eq => Allowed::Values(vec![value]),
                Operator::Gt | Operator::GtEq => Allowed::Range {
                    lower: Some((value, op == Operator::GtEq)),
                    upper: None,
                },
                Operator::Lt | Operator::LtEq => Allowed::Range {
                    lower: None,
                    upper: Some((value, op == Operator::LtEq)),
                },
                _ => return None,
            };
            Some((column.to_string(), allowed))
        }
        Expr::InList(list) if !list.negated => {
            let values = list.list.iter().map(text).collect::<Option<Vec<_>>>()?;
            Some((
                column_name(&list.expr)?.to_string(),
                Allowed::Values(values),
            ))
        }
        Expr::Between(between) if !between.negated => Some((
            column_name(&between.expr)?.to_string(),
            Allowed::Range {
                lower: Some((text(&between.low)?, true)),
                upper: Some((text(&between.high)?, true)),
            },
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use datafusion::logical_expr::{col, in_list, lit};

    use super::*;

    #[test]
    fn equalities_in_lists_ranges_and_ors_constrain_their_column() {
        let constraints = constraints_of(&[
            col("username").eq(lit("mia")).and(col("views").gt(lit(5))),
            in_list(col("edited"), vec![lit("True"), lit("False")], false),
            lit("m").lt_eq(col("post_title")),
            col("region").eq(lit("eu")).or(col("region").eq(lit("us"))),
        ]);
        assert_eq!(
            constraints.get("username"),
            Some(&Allowed::Values(vec!["mia".into()]))
        );
        assert_eq!(
            constraints.get("views"),
            None,
            "numbers are not partition keys"
        );
        assert_eq!(
            constraints.get("edited"),
            Some(&Allowed::Values(vec!["True".into(), "False".into()]))
        );
        assert_eq!(
            constraints.get("post_title"),
            Some(&Allowed::Range {
                lower: Some(("m".into(), true)),
                upper: None
            })
        );
        assert_eq!(
            constraints.get("region"),
            Some(&Allowed::Values(vec!["eu".into(), "us".into()]))
        );
        let mixed = constraints_of(&[col("a").eq(lit("x")).or(col("b").eq(lit("y")))]);
        assert!(
            mixed.is_empty(),
            "an OR over two columns constrains neither"
        );
        let narrowed = constraints_of(&[
            in_list(col("a"), vec![lit("x"), lit("y")], false),
            col("a").eq(lit("y")),
        ]);
        assert_eq!(narrowed.get("a"), Some(&Allowed::Values(vec!["y".into()])));
    }
}
