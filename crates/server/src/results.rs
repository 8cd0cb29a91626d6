//! SQL answers in Druid's result formats: object, array, objectLines, arrayLines and csv, with
//! the optional header rows (names, native types, SQL types). Times are ISO text ending in Z.

use arrow::array::RecordBatch;
use millrace_query::QueryOutput;
use millrace_query::types::{native_type, sql_type};
use millrace_query::values::cell;
use serde_json::{Map, Value, json};

/// Druid's result formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultFormat {
    Object,
    Array,
    ObjectLines,
    ArrayLines,
    Csv,
}

impl ResultFormat {
    pub fn parse(name: &str) -> Option<ResultFormat> {
        Some(match name.to_ascii_lowercase().as_str() {
            "object" => ResultFormat::Object,
            "array" => ResultFormat::Array,
            "objectlines" => ResultFormat::ObjectLines,
            "arraylines" => ResultFormat::ArrayLines,
            "csv" => ResultFormat::Csv,
            _ => return None,
        })
    }

    pub fn content_type(self) -> &'static str {
        match self {
            ResultFormat::Object | ResultFormat::Array => "application/json",
            ResultFormat::Csv => "text/csv",
            _ => "text/plain",
        }
    }
}

/// Which header rows to add.
#[derive(Debug, Clone, Copy, Default)]
pub struct Headers {
    pub names: bool,
    pub types: bool,
    pub sql_types: bool,
}

fn rows(batches: &[RecordBatch]) -> impl Iterator<Item = Vec<Value>> + '_ {
    batches.iter().flat_map(|batch| {
        (0..batch.num_rows()).map(move |row| {
            batch
                .columns()
                .iter()
                .map(|column| cell(column.as_ref(), row))
                .collect()
        })
    })
}

/// The header rows as arrays (names, then native types, then SQL types).
fn header_arrays(output: &QueryOutput, headers: Headers) -> Vec<Vec<Value>> {
    let fields = output.schema.fields();
    let mut arrays = Vec::new();
    if headers.names {
        arrays.push(fields.iter().map(|f| json!(f.name())).collect());
    }
    if headers.types {
        arrays.push(
            fields
                .iter()
                .map(|f| json!(native_type(f.data_type())))
                .collect(),
        );
    }
    if headers.sql_types {
        arrays.push(
            fields
                .iter()
                .map(|f| json!(sql_type(f.data_type())))
                .collect(),
        );
    }
    arrays
}

/// The header as one object, for the object formats: `{name: {type, sqlType}}` or
/// `{name: null}` with names only.
fn header_object(output: &QueryOutput, headers: Headers) -> Option<Value> {
    if !headers.names {
        return None;
    }
    let mut object = Map::new();
    for field in output.schema.fields() {
        let mut types = Map::new();
        if headers.types {
            types.insert("type".into(), json!(native_type(field.data_type())));
        }
        if headers.sql_types {
            types.insert("sqlType".into(), json!(sql_type(field.data_type())));
        }
        let value = if types.is_empty() {
            Value::Null
        } else {
            Value::Object(types)
        };
        object.insert(field.name().clone(), value);
    }
    Some(Value::Object(object))
}

/// The header rows, then the rows: objects (keys in column order, which serde_json keeps
/// and Druid clients read the column order from) or arrays.
fn json_items(output: &QueryOutput, objects: bool, headers: Headers) -> Vec<Value> {
    let names: Vec<String> = output
        .schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let header: Vec<Value> = if objects {
        header_object(output, headers).into_iter().collect()
    } else {
        header_arrays(output, headers)
            .into_iter()
            .map(Value::Array)
            .collect()
    };
    let rows = rows(&output.batches).map(|row| {
        if objects {
            Value::Object(names.iter().cloned().zip(row).collect())
        } else {
            Value::Array(row)
        }
    });
    header.into_iter().chain(rows).collect()
}

/// The response body.
pub fn render(output: &QueryOutput, format: ResultFormat, headers: Headers) -> Vec<u8> {
    match format {
        ResultFormat::Object | ResultFormat::Array => {
            let items = json_items(output, format == ResultFormat::Object, headers);
            serde_json::to_vec(&items).unwrap_or_default()
        }
        ResultFormat::ObjectLines | ResultFormat::ArrayLines => {
            let mut body = Vec::new();
            for line in json_items(output, format == ResultFormat::ObjectLines, headers) {
                body.extend(serde_json::to_vec(&line).unwrap_or_default());
                body.push(b'\n');
            }
            // Druid ends the lines formats with an empty line.
            body.push(b'\n');
            body
        }
        ResultFormat::Csv => {
            let mut writer = csv::WriterBuilder::new().from_writer(Vec::new());
            let text = |v: &Value| match v {
                Value::Null => String::new(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            for row in header_arrays(output, headers)
                .into_iter()
                .chain(rows(&output.batches))
            {
                let _ = writer.write_record(row.iter().map(text));
            }
            let mut body = writer.into_inner().unwrap_or_default();
            body.push(b'\n');
            body
        }
    }
}
