//! Druid's names for column types: SQL types (`sqlTypesHeader`, INFORMATION_SCHEMA) and
//! native types (`typesHeader`).

use arrow::datatypes::DataType;

/// The Druid SQL type of an Arrow type.
pub fn sql_type(data_type: &DataType) -> &'static str {
    match data_type {
        DataType::Timestamp(..) | DataType::Date32 | DataType::Date64 => "TIMESTAMP",
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => "BIGINT",
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => "BIGINT",
        DataType::Float32 => "FLOAT",
        DataType::Float16 | DataType::Float64 | DataType::Decimal128(..) => "DOUBLE",
        DataType::Boolean => "BOOLEAN",
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "VARCHAR",
        DataType::List(_) | DataType::LargeList(_) => "ARRAY",
        _ => "OTHER",
    }
}

/// The `java.sql.Types` number of a SQL type name, as Druid's INFORMATION_SCHEMA.COLUMNS
/// gives it in JDBC_TYPE (SQLAlchemy's Druid dialect maps column types from it).
pub fn jdbc_type(sql_type: &str) -> i64 {
    match sql_type {
        "TIMESTAMP" => 93,
        "BIGINT" => -5,
        "FLOAT" => 6,
        "DOUBLE" => 8,
        "BOOLEAN" => 16,
        "VARCHAR" => 12,
        "ARRAY" => 2003,
        _ => 1111,
    }
}

/// The Druid native type of an Arrow type (booleans are longs in Druid).
pub fn native_type(data_type: &DataType) -> &'static str {
    match sql_type(data_type) {
        "TIMESTAMP" | "BIGINT" | "BOOLEAN" => "LONG",
        "FLOAT" => "FLOAT",
        "DOUBLE" => "DOUBLE",
        "VARCHAR" => "STRING",
        "ARRAY" => "ARRAY",
        _ => "COMPLEX",
    }
}
