//! Druid SQL over datasources, with DataFusion: each datasource is a table over its published
//! segments and realtime rows; Druid's functions, system tables and INFORMATION_SCHEMA come
//! with it, and identifiers are case-sensitive as in Druid. Druid's native JSON queries are
//! planned onto the same engine ([`native`]).

pub mod bucket_rows;
pub mod column_cache;
pub mod functions;
pub mod fuzz;
pub mod native;
pub mod prune;
pub mod rewrite;
pub mod schemas;
pub mod segment_scan;
pub mod table;
pub mod types;
pub mod values;

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Field, Schema, SchemaRef};
use column_cache::ColumnCache;
use datafusion::catalog::{CatalogProvider, MemoryCatalogProvider};
/// SQL values, for query parameters.
pub use datafusion::common::ScalarValue;
use datafusion::common::{DataFusionError, TableReference};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::{DFParser, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::{SelectItem, SetExpr, Statement};
use millrace_segments::columns::SegmentSchema;
use millrace_segments::view::DatasourceView;

use schemas::{
    CATALOG, DATASOURCES, DatasourceSchema, INFORMATION_SCHEMA, InformationSchema, SYS, SysSchema,
};

/// Where queries find their data.
pub trait QuerySource: Send + Sync {
    /// Datasources with rows (published or realtime).
    fn datasource_names(&self) -> Vec<String>;
    /// A datasource's rows now.
    fn datasource(&self, name: &str) -> Option<DatasourceView>;
    /// A datasource's columns now (for INFORMATION_SCHEMA; cheaper than its rows).
    fn datasource_schema(&self, name: &str) -> Option<SegmentSchema>;
    /// A `sys` table (see [`schemas::SYSTEM_TABLES`]) as one batch.
    fn system_table(&self, name: &str) -> Option<RecordBatch>;
}

/// Why a query failed: the query itself (HTTP 400 in Druid) or running it (500).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SqlError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Execution(String),
}

/// A query's answer.
#[derive(Debug, Clone)]
pub struct QueryOutput {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

/// Runs Druid SQL against a [`QuerySource`].
pub struct SqlEngine {
    source: Arc<dyn QuerySource>,
    /// Segment columns decoded by earlier queries.
    cache: Arc<ColumnCache>,
    /// The session every query plans in: Druid's catalog, schemas and functions are the same
    /// for all, and a table resolves to its datasource's rows when a query is planned, so one
    /// session serves every query (making one costs more than many small queries take).
    context: SessionContext,
}

/// A planning error's text without DataFusion's prefixes.
fn plan_message(error: &DataFusionError) -> String {
    let text = error.to_string();
    for prefix in [
        "Error during planning: ",
        "SQL error: ",
        "Schema error: ",
        "This feature is not implemented: ",
    ] {
        if let Some(rest) = text.strip_prefix(prefix) {
            return rest.to_string();
        }
    }
    text
}

/// Whether an error comes from the query (parsing, planning, types) rather than running it.
fn is_query_error(error: &DataFusionError) -> bool {
    match error {
        DataFusionError::Context(_, inner) => is_query_error(inner),
        DataFusionError::Diagnostic(_, inner) => is_query_error(inner),
        DataFusionError::SQL(..)
        | DataFusionError::Plan(_)
        | DataFusionError::SchemaError(..)
        | DataFusionError::NotImplemented(_) => true,
        _ => false,
    }
}

/// `(line, column)` (1-based) of the first place `name` appears in the text.
fn position_of(sql: &str, name: &str) -> (usize, usize) {
    let Some(at) = sql.find(name) else {
        return (1, 1);
    };
    let before = &sql[..at];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(at, |nl| at - nl - 1) + 1;
    (line, column)
}

/// Druid's names for the output columns: an expression without an alias is `EXPR$<i>`.
/// None when the names cannot be told from the statement (wildcards, set operations).
/// A planned statement: the session it was planned in, the plan, and Druid's names for its
/// columns.
type Planned = (
    SessionContext,
    datafusion::logical_expr::LogicalPlan,
    Option<Vec<Option<String>>>,
);

/// The query an `EXPLAIN [PLAN FOR] <query>` explains; None for any other text.
fn explained(sql: &str) -> Option<&str> {
    let mut rest = sql.trim_start();
    let mut word = |name: &str| -> bool {
        let matches = rest
            .get(..name.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(name))
            && rest[name.len()..].starts_with(char::is_whitespace);
        if matches {
            rest = rest[name.len()..].trim_start();
        }
        matches
    };
    if !word("EXPLAIN") {
        return None;
    }
    if word("PLAN") && !word("FOR") {
        return None;
    }
    Some(rest)
}

fn druid_column_names(statement: &Statement) -> Option<Vec<Option<String>>> {
    let Statement::Query(query) = statement else {
        return None;
    };
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    select
        .projection
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            SelectItem::UnnamedExpr(datafusion::sql::sqlparser::ast::Expr::Identifier(_))
            | SelectItem::UnnamedExpr(datafusion::sql::sqlparser::ast::Expr::CompoundIdentifier(
                _,
            ))
            | SelectItem::ExprWithAlias { .. } => Some(None),
            SelectItem::UnnamedExpr(_) => Some(Some(format!("EXPR${i}"))),
            _ => None,
        })
        .collect()
}

/// Renames the output columns Druid names differently.
fn rename(output: QueryOutput, names: &[Option<String>]) -> Result<QueryOutput, SqlError> {
    if names.len() != output.schema.fields().len() || names.iter().all(Option::is_none) {
        return Ok(output);
    }
    let fields: Vec<Field> = output
        .schema
        .fields()
        .iter()
        .zip(names)
        .map(|(f, name)| match name {
            Some(name) => f.as_ref().clone().with_name(name),
            None => f.as_ref().clone(),
        })
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let batches = output
        .batches
        .into_iter()
        .map(|b| RecordBatch::try_new(schema.clone(), b.columns().to_vec()))
        .collect::<Result<_, _>>()
        .map_err(|e| SqlError::Execution(e.to_string()))?;
    Ok(QueryOutput { schema, batches })
}

/// A session with Druid's catalog, schemas and functions over `source`.
fn session(source: &Arc<dyn QuerySource>, cache: &Arc<ColumnCache>) -> SessionContext {
    let mut config = SessionConfig::new()
        .with_default_catalog_and_schema(CATALOG, DATASOURCES)
        .with_create_default_catalog_and_schema(false)
        .with_information_schema(false);
    // Druid identifiers are case-sensitive, quoted or not.
    config.options_mut().sql_parser.enable_ident_normalization = false;
    let context = SessionContext::new_with_config(config);
    let catalog = MemoryCatalogProvider::new();
    // A fresh in-memory catalog takes any schema name.
    let schemas: [(&str, Arc<dyn datafusion::catalog::SchemaProvider>); 3] = [
        (
            DATASOURCES,
            Arc::new(DatasourceSchema(source.clone(), cache.clone())),
        ),
        (SYS, Arc::new(SysSchema(source.clone()))),
        (
            INFORMATION_SCHEMA,
            Arc::new(InformationSchema(source.clone())),
        ),
    ];
    for (name, schema) in schemas {
        let _ = catalog.register_schema(name, schema);
    }
    context.register_catalog(CATALOG, Arc::new(catalog));
    context.add_optimizer_rule(Arc::new(bucket_rows::BucketRowsRule));
    for function in functions::time_functions() {
        context.register_udf(function);
    }
    context
}

impl SqlEngine {
    /// An engine keeping up to [`column_cache::DEFAULT_BUDGET_BYTES`] of decoded segment
    /// columns.
    pub fn new(source: Arc<dyn QuerySource>) -> SqlEngine {
        SqlEngine::with_column_cache(source, column_cache::DEFAULT_BUDGET_BYTES)
    }

    /// An engine keeping up to `cache_bytes` of decoded segment columns in memory.
    pub fn with_column_cache(source: Arc<dyn QuerySource>, cache_bytes: usize) -> SqlEngine {
        let cache = Arc::new(ColumnCache::new(cache_bytes));
        let context = session(&source, &cache);
        SqlEngine {
            source,
            cache,
            context,
        }
    }

    /// What the column cache holds now.
    pub fn column_cache_usage(&self) -> column_cache::CacheUsage {
        self.cache.usage()
    }

    /// Runs one SELECT statement with its `?` parameters, or explains one
    /// (`EXPLAIN [PLAN FOR] SELECT ...`).
    pub async fn query(
        &self,
        sql: &str,
        parameters: Vec<ScalarValue>,
    ) -> Result<QueryOutput, SqlError> {
        if let Some(inner) = explained(sql) {
            return self.explain(inner, parameters).await;
        }
        let (context, plan, names) = self.plan(sql, parameters).await?;
        let invalid = |e: DataFusionError| SqlError::Invalid(plan_message(&e));
        let frame = context.execute_logical_plan(plan).await.map_err(invalid)?;
        let schema = Arc::new(frame.schema().as_arrow().clone());
        let batches = frame.collect().await.map_err(|e| {
            if is_query_error(&e) {
                invalid(e)
            } else {
                SqlError::Execution(e.to_string())
            }
        })?;
        let output = QueryOutput { schema, batches };
        match names {
            Some(names) => rename(output, &names),
            None => Ok(output),
        }
    }

    /// Druid's EXPLAIN answer: one row of `PLAN` (here the physical plan, with the segment
    /// files it reads), `RESOURCES` (the tables read) and `ATTRIBUTES`.
    async fn explain(
        &self,
        sql: &str,
        parameters: Vec<ScalarValue>,
    ) -> Result<QueryOutput, SqlError> {
        let (context, plan, _) = self.plan(sql, parameters).await?;
        let invalid = |e: DataFusionError| SqlError::Invalid(plan_message(&e));
        let state = context.state();
        let resources: Vec<serde_json::Value> = state
            .resolve_table_references(
                &DFParser::parse_sql(sql)
                    .map_err(invalid)?
                    .pop_front()
                    .ok_or_else(|| SqlError::Invalid("nothing to explain".into()))?,
            )
            .map_err(invalid)?
            .iter()
            .map(|table| serde_json::json!({"name": table.table(), "type": "DATASOURCE"}))
            .collect();
        let physical = state.create_physical_plan(&plan).await.map_err(invalid)?;
        let text = datafusion::physical_plan::displayable(physical.as_ref())
            .indent(true)
            .to_string();
        let schema = Arc::new(Schema::new(vec![
            Field::new("PLAN", arrow::datatypes::DataType::Utf8, false),
            Field::new("RESOURCES", arrow::datatypes::DataType::Utf8, false),
            Field::new("ATTRIBUTES", arrow::datatypes::DataType::Utf8, false),
        ]));
        let column = |text: String| -> arrow::array::ArrayRef {
            Arc::new(arrow::array::StringArray::from(vec![text]))
        };
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                column(text),
                column(serde_json::Value::from(resources).to_string()),
                column(r#"{"statementType":"SELECT"}"#.to_string()),
            ],
        )
        .map_err(|e| SqlError::Execution(e.to_string()))?;
        Ok(QueryOutput {
            schema,
            batches: vec![batch],
        })
    }

    /// Parses, checks and plans one SELECT statement; returns the session it was planned in,
    /// the plan, and Druid's names for its columns.
    async fn plan(&self, sql: &str, parameters: Vec<ScalarValue>) -> Result<Planned, SqlError> {
        let invalid = |e: DataFusionError| SqlError::Invalid(plan_message(&e));
        let mut statements = DFParser::parse_sql(sql).map_err(invalid)?;
        if statements.len() != 1 {
            return Err(SqlError::Invalid(format!(
                "expected one SQL statement, found {}",
                statements.len()
            )));
        }
        let statement = match statements.pop_front() {
            Some(DFStatement::Statement(statement)) => *statement,
            _ => {
                return Err(SqlError::Invalid(
                    "only SELECT statements are supported".into(),
                ));
            }
        };
        let mut statement = match statement {
            s @ Statement::Query(_) => s,
            other => {
                return Err(SqlError::Invalid(format!(
                    "only SELECT statements are supported, not {}",
                    other.to_string().split_whitespace().next().unwrap_or("")
                )));
            }
        };
        let placeholders = rewrite::rewrite(&mut statement).map_err(SqlError::Invalid)?;
        if placeholders != parameters.len() {
            return Err(SqlError::Invalid(format!(
                "the query has {placeholders} parameters (?) but {} values were given",
                parameters.len()
            )));
        }
        let names = druid_column_names(&statement);
        let context = self.context.clone();
        let state = context.state();
        let statement = DFStatement::Statement(Box::new(statement));
        self.check_tables(&state, &statement, sql)?;
        let mut plan = state.statement_to_plan(statement).await.map_err(invalid)?;
        if !parameters.is_empty() {
            plan = plan.with_param_values(parameters).map_err(invalid)?;
        }
        Ok((context, plan, names))
    }

    /// Fails, as Druid does, when a table the statement reads does not exist.
    fn check_tables(
        &self,
        state: &datafusion::execution::SessionState,
        statement: &DFStatement,
        sql: &str,
    ) -> Result<(), SqlError> {
        let references = state
            .resolve_table_references(statement)
            .map_err(|e| SqlError::Invalid(plan_message(&e)))?;
        for reference in references {
            let (schema, table) = match &reference {
                TableReference::Bare { table } => (DATASOURCES, table.as_ref()),
                TableReference::Partial { schema, table }
                | TableReference::Full { schema, table, .. } => (schema.as_ref(), table.as_ref()),
            };
            let exists = match schema {
                DATASOURCES => self.source.datasource_names().iter().any(|n| n == table),
                SYS => schemas::SYSTEM_TABLES.contains(&table),
                INFORMATION_SCHEMA => schemas::INFORMATION_TABLES.contains(&table),
                _ => false,
            };
            if !exists {
                let (line, column) = position_of(sql, table);
                return Err(SqlError::Invalid(format!(
                    "Object '{table}' not found (line [{line}], column [{column}])"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::explained;

    #[test]
    fn explain_with_and_without_plan_for_is_recognised() {
        assert_eq!(explained("EXPLAIN PLAN FOR SELECT 1"), Some("SELECT 1"));
        assert_eq!(
            explained("  explain\nselect x FROM t"),
            Some("select x FROM t")
        );
        assert_eq!(explained("EXPLAIN PLAN SELECT 1"), None);
        assert_eq!(explained("EXPLAINED"), None);
        assert_eq!(explained("SELECT 'EXPLAIN '"), None);
        assert_eq!(explained("é EXPLAIN"), None);
    }
}
