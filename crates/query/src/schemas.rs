//! The schemas a query can name, as Druid has them in its `druid` catalog: `druid` (the
//! datasources, the default), `sys` (segments, tasks, supervisors, servers, server_segments)
//! and `INFORMATION_SCHEMA` (SCHEMATA, TABLES and COLUMNS, with Druid's column names).
//! Tables are made when a query names them, so a query takes a view of only the datasources
//! it reads.

use std::fmt;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::MemTable;

use crate::QuerySource;
use crate::column_cache::ColumnCache;
use crate::table::DatasourceTable;
use crate::types::{jdbc_type, sql_type};

/// The catalog name Druid reports.
pub const CATALOG: &str = "druid";
/// The schema of datasources.
pub const DATASOURCES: &str = "druid";
pub const SYS: &str = "sys";
pub const INFORMATION_SCHEMA: &str = "INFORMATION_SCHEMA";
/// The tables of `sys`.
pub const SYSTEM_TABLES: [&str; 5] = [
    "segments",
    "tasks",
    "supervisors",
    "servers",
    "server_segments",
];
/// The tables of `INFORMATION_SCHEMA`.
pub const INFORMATION_TABLES: [&str; 3] = ["SCHEMATA", "TABLES", "COLUMNS"];

fn mem_table(batch: RecordBatch) -> Result<Arc<dyn TableProvider>> {
    Ok(Arc::new(MemTable::try_new(
        batch.schema(),
        vec![vec![batch]],
    )?))
}

/// The `druid` schema: one table per datasource, its segment columns read through the cache.
pub struct DatasourceSchema(pub Arc<dyn QuerySource>, pub Arc<ColumnCache>);

/// The `sys` schema.
pub struct SysSchema(pub Arc<dyn QuerySource>);

/// `INFORMATION_SCHEMA`.
pub struct InformationSchema(pub Arc<dyn QuerySource>);

macro_rules! debug_as_name {
    ($($t:ty => $name:expr),*) => {$(
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str($name)
            }
        }
    )*};
}
debug_as_name!(DatasourceSchema => "druid", SysSchema => "sys", InformationSchema => "INFORMATION_SCHEMA");

#[async_trait]
impl SchemaProvider for DatasourceSchema {
    fn table_names(&self) -> Vec<String> {
        self.0.datasource_names()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        Ok(self.0.datasource(name).map(|view| {
            Arc::new(DatasourceTable::new(view, self.1.clone())) as Arc<dyn TableProvider>
        }))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.0.datasource_names().iter().any(|n| n == name)
    }
}

#[async_trait]
impl SchemaProvider for SysSchema {
    fn table_names(&self) -> Vec<String> {
        SYSTEM_TABLES.iter().map(|s| s.to_string()).collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        self.0.system_table(name).map(mem_table).transpose()
    }

    fn table_exist(&self, name: &str) -> bool {
        SYSTEM_TABLES.contains(&name)
    }
}

impl InformationSchema {
    /// Every table with its schema name and columns.
    fn tables(&self) -> Vec<(&'static str, String, SchemaRef)> {
        let mut tables = Vec::new();
        for name in self.0.datasource_names() {
            if let Some(schema) = self.0.datasource_schema(&name) {
                tables.push((DATASOURCES, name, schema.arrow()));
            }
        }
        for name in SYSTEM_TABLES {
            if let Some(batch) = self.0.system_table(name) {
                tables.push((SYS, name.to_string(), batch.schema()));
            }
        }
        tables.push((INFORMATION_SCHEMA, "SCHEMATA".into(), schemata_schema()));
        tables.push((INFORMATION_SCHEMA, "TABLES".into(), tables_schema()));
        tables.push((INFORMATION_SCHEMA, "COLUMNS".into(), columns_schema()));
        tables
    }

    /// The schemas, as Druid lists its own (no owner, character set or path).
    fn schemata_batch(&self) -> Result<RecordBatch> {
        let schemas = [DATASOURCES, SYS, INFORMATION_SCHEMA];
        let text = |value: Option<&str>| -> ArrayRef {
            Arc::new(StringArray::from(vec![value; schemas.len()]))
        };
        Ok(RecordBatch::try_new(
            schemata_schema(),
            vec![
                text(Some(CATALOG)),
                Arc::new(StringArray::from(schemas.to_vec())),
                text(None),
                text(None),
                text(None),
                text(None),
                text(None),
            ],
        )?)
    }

    fn tables_batch(&self) -> Result<RecordBatch> {
        let tables = self.tables();
        let text = |f: &dyn Fn(&(&'static str, String, SchemaRef)) -> String| -> ArrayRef {
            Arc::new(StringArray::from(
                tables.iter().map(f).collect::<Vec<String>>(),
            ))
        };
        Ok(RecordBatch::try_new(
            tables_schema(),
            vec![
                text(&|_| CATALOG.into()),
                text(&|t| t.0.into()),
                text(&|t| t.1.clone()),
                text(&|t| {
                    if t.0 == DATASOURCES {
                        "TABLE"
                    } else {
                        "SYSTEM_TABLE"
                    }
                    .into()
                }),
                text(&|_| "NO".into()),
                text(&|_| "NO".into()),
            ],
        )?)
    }

    fn columns_batch(&self) -> Result<RecordBatch> {
        let mut rows: Vec<(&'static str, String, String, i64, bool, &'static str)> = Vec::new();
        for (schema, table, columns) in self.tables() {
            for (i, field) in columns.fields().iter().enumerate() {
                rows.push((
                    schema,
                    table.clone(),
                    field.name().clone(),
                    i as i64 + 1,
                    field.is_nullable(),
                    sql_type(field.data_type()),
                ));
            }
        }
        let text = |values: Vec<String>| -> ArrayRef { Arc::new(StringArray::from(values)) };
        Ok(RecordBatch::try_new(
            columns_schema(),
            vec![
                text(rows.iter().map(|_| CATALOG.to_string()).collect()),
                text(rows.iter().map(|r| r.0.to_string()).collect()),
                text(rows.iter().map(|r| r.1.clone()).collect()),
                text(rows.iter().map(|r| r.2.clone()).collect()),
                Arc::new(Int64Array::from(
                    rows.iter().map(|r| r.3).collect::<Vec<_>>(),
                )),
                text(
                    rows.iter()
                        .map(|r| if r.4 { "YES" } else { "NO" }.to_string())
                        .collect(),
                ),
                text(rows.iter().map(|r| r.5.to_string()).collect()),
                text(rows.iter().map(|_| String::new()).collect()),
                Arc::new(Int64Array::from(
                    rows.iter().map(|r| jdbc_type(r.5)).collect::<Vec<_>>(),
                )),
            ],
        )?)
    }
}

fn schemata_schema() -> SchemaRef {
    let text = |name: &str, nullable| Field::new(name, DataType::Utf8, nullable);
    Arc::new(Schema::new(vec![
        text("CATALOG_NAME", false),
        text("SCHEMA_NAME", false),
        text("SCHEMA_OWNER", true),
        text("DEFAULT_CHARACTER_SET_CATALOG", true),
        text("DEFAULT_CHARACTER_SET_SCHEMA", true),
        text("DEFAULT_CHARACTER_SET_NAME", true),
        text("SQL_PATH", true),
    ]))
}

fn tables_schema() -> SchemaRef {
    let text = |name: &str| Field::new(name, DataType::Utf8, false);
    Arc::new(Schema::new(vec![
        text("TABLE_CATALOG"),
        text("TABLE_SCHEMA"),
        text("TABLE_NAME"),
        text("TABLE_TYPE"),
        text("IS_JOINABLE"),
        text("IS_BROADCAST"),
    ]))
}

fn columns_schema() -> SchemaRef {
    let text = |name: &str| Field::new(name, DataType::Utf8, false);
    Arc::new(Schema::new(vec![
        text("TABLE_CATALOG"),
        text("TABLE_SCHEMA"),
        text("TABLE_NAME"),
        text("COLUMN_NAME"),
        Field::new("ORDINAL_POSITION", DataType::Int64, false),
        text("IS_NULLABLE"),
        text("DATA_TYPE"),
        // Druid gives every column an empty default.
        text("COLUMN_DEFAULT"),
        Field::new("JDBC_TYPE", DataType::Int64, false),
    ]))
}

#[async_trait]
impl SchemaProvider for InformationSchema {
    fn table_names(&self) -> Vec<String> {
        INFORMATION_TABLES.iter().map(|s| s.to_string()).collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        match name {
            "SCHEMATA" => mem_table(self.schemata_batch()?).map(Some),
            "TABLES" => mem_table(self.tables_batch()?).map(Some),
            "COLUMNS" => mem_table(self.columns_batch()?).map(Some),
            _ => Ok(None),
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        INFORMATION_TABLES.contains(&name)
    }
}
