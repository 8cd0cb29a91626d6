//! Query answers as JSON values: one cell, or whole rows as objects keyed by column name (in
//! column order). Times are ISO-8601 text ending in Z, as Druid writes them.

use arrow::array::{Array, AsArray};
use arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, TimeUnit,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use millrace_segments::time::format_iso;
use serde_json::{Map, Value, json};

use crate::QueryOutput;

/// One cell as JSON.
pub fn cell(column: &dyn Array, row: usize) -> Value {
    // A column of type Null (a bare `NULL` selected) has no null buffer to ask.
    if column.is_null(row) || column.data_type() == &DataType::Null {
        return Value::Null;
    }
    macro_rules! number {
        ($t:ty) => {
            json!(column.as_primitive::<$t>().value(row))
        };
    }
    match column.data_type() {
        DataType::Boolean => json!(column.as_boolean().value(row)),
        DataType::Int8 => number!(Int8Type),
        DataType::Int16 => number!(Int16Type),
        DataType::Int32 => number!(Int32Type),
        DataType::Int64 => number!(Int64Type),
        DataType::UInt8 => number!(UInt8Type),
        DataType::UInt16 => number!(UInt16Type),
        DataType::UInt32 => number!(UInt32Type),
        DataType::UInt64 => number!(UInt64Type),
        DataType::Float32 => number!(Float32Type),
        DataType::Float64 => number!(Float64Type),
        DataType::Utf8 => json!(column.as_string::<i32>().value(row)),
        DataType::LargeUtf8 => json!(column.as_string::<i64>().value(row)),
        DataType::Utf8View => json!(column.as_string_view().value(row)),
        DataType::Timestamp(unit, _) => {
            let millis = match unit {
                TimeUnit::Second => column.as_primitive::<TimestampSecondType>().value(row) * 1000,
                TimeUnit::Millisecond => {
                    column.as_primitive::<TimestampMillisecondType>().value(row)
                }
                TimeUnit::Microsecond => {
                    column.as_primitive::<TimestampMicrosecondType>().value(row) / 1000
                }
                TimeUnit::Nanosecond => {
                    column.as_primitive::<TimestampNanosecondType>().value(row) / 1_000_000
                }
            };
            json!(format_iso(millis))
        }
        _ => {
            let options = FormatOptions::default();
            ArrayFormatter::try_new(column, &options)
                .map(|f| json!(f.value(row).to_string()))
                .unwrap_or(Value::Null)
        }
    }
}

/// Every row of an answer as an object keyed by column name.
pub fn object_rows(output: &QueryOutput) -> Vec<Map<String, Value>> {
    let names: Vec<&String> = output.schema.fields().iter().map(|f| f.name()).collect();
    output
        .batches
        .iter()
        .flat_map(|batch| {
            let names = &names;
            (0..batch.num_rows()).map(move |row| {
                names
                    .iter()
                    .zip(batch.columns())
                    .map(|(name, column)| ((*name).clone(), cell(column.as_ref(), row)))
                    .collect()
            })
        })
        .collect()
}
