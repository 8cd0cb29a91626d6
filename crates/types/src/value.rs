//! Values as they travel between operators, and conversion of a value to a declared type.

use crate::DataType;

/// A typed value. Structs keep their fields in insertion order so output JSON reads as written.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Boolean(bool),
    Byte(i8),
    Short(i16),
    Int(i32),
    Long(i64),
    Float(f32),
    Double(f64),
    String(String),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Tuple(Vec<Value>),
    Struct(Vec<(String, Value)>),
}

/// Why a value does not fit a type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ValueError(pub String);

impl Value {
    /// A short name of the value's kind, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Boolean(_) => "boolean",
            Value::Byte(_) => "byte",
            Value::Short(_) => "short",
            Value::Int(_) => "int",
            Value::Long(_) => "long",
            Value::Float(_) => "float",
            Value::Double(_) => "double",
            Value::String(_) => "string",
            Value::Bytes(_) => "bytes",
            Value::List(_) => "list",
            Value::Tuple(_) => "tuple",
            Value::Struct(_) => "struct",
        }
    }

    /// The value as a 64-bit integer, when it is a whole number.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::Byte(v) => Some(v.into()),
            Value::Short(v) => Some(v.into()),
            Value::Int(v) => Some(v.into()),
            Value::Long(v) => Some(v),
            _ => None,
        }
    }

    fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::Float(v) => Some(v.into()),
            Value::Double(v) => Some(v),
            _ => self.as_i64().map(|v| v as f64),
        }
    }

    /// Text for a value converted to `string`: strings as they are, everything else as JSON.
    pub fn to_text(&self) -> String {
        match self {
            Value::String(s) => s.clone(),
            other => crate::json::to_json_string(other),
        }
    }

    /// Converts the value to `target` the way KSML converts function results and `convert*`
    /// operations: numbers widen or narrow, strings parse where the type needs it, structs and
    /// lists become JSON text for `string`, union members are tried in order.
    pub fn coerce(self, target: &DataType) -> Result<Value, ValueError> {
        let mismatch =
            |value: &Value| ValueError(format!("cannot convert {} to {target}", value.kind()));
        if matches!(self, Value::Null) {
            return Ok(Value::Null);
        }
        Ok(match target {
            DataType::Any | DataType::Json | DataType::Schema { .. } => self,
            DataType::Null => return Err(mismatch(&self)),
            DataType::Boolean => match self {
                Value::Boolean(_) => self,
                Value::String(ref s) => match s.trim().to_ascii_lowercase().as_str() {
                    "true" => Value::Boolean(true),
                    "false" => Value::Boolean(false),
                    _ => return Err(mismatch(&self)),
                },
                _ => return Err(mismatch(&self)),
            },
            DataType::Byte | DataType::Short | DataType::Int | DataType::Long => {
                let whole = match &self {
                    Value::String(s) => s.trim().parse::<i64>().ok(),
                    Value::Float(_) | Value::Double(_) => self.as_f64().map(|v| v as i64),
                    _ => self.as_i64(),
                }
                .ok_or_else(|| mismatch(&self))?;
                let out_of_range = || ValueError(format!("{whole} does not fit in {target}"));
                match target {
                    DataType::Byte => Value::Byte(whole.try_into().map_err(|_| out_of_range())?),
                    DataType::Short => Value::Short(whole.try_into().map_err(|_| out_of_range())?),
                    DataType::Int => Value::Int(whole.try_into().map_err(|_| out_of_range())?),
                    _ => Value::Long(whole),
                }
            }
            DataType::Float | DataType::Double => {
                let real = match &self {
                    Value::String(s) => s.trim().parse::<f64>().ok(),
                    _ => self.as_f64(),
                }
                .ok_or_else(|| mismatch(&self))?;
                if *target == DataType::Float {
                    Value::Float(real as f32)
                } else {
                    Value::Double(real)
                }
            }
            DataType::String => Value::String(self.to_text()),
            DataType::Enum(symbols) => match self {
                Value::String(ref s) if symbols.is_empty() || symbols.contains(s) => self,
                Value::String(s) => {
                    return Err(ValueError(format!(
                        "'{s}' is not one of the symbols of {target}"
                    )));
                }
                _ => return Err(mismatch(&self)),
            },
            DataType::Bytes => match self {
                Value::Bytes(_) => self,
                Value::String(s) => Value::Bytes(s.into_bytes()),
                Value::List(items) => Value::Bytes(
                    items
                        .iter()
                        .map(|item| item.as_i64().and_then(|b| u8::try_from(b).ok()))
                        .collect::<Option<Vec<u8>>>()
                        .ok_or_else(|| ValueError("bytes must be integers 0-255".into()))?,
                ),
                _ => return Err(mismatch(&self)),
            },
            DataType::Struct | DataType::Map(_) => match self {
                Value::Struct(fields) => match target {
                    DataType::Map(inner) if !inner.is_any() => Value::Struct(
                        fields
                            .into_iter()
                            .map(|(k, v)| Ok((k, v.coerce(inner)?)))
                            .collect::<Result<_, ValueError>>()?,
                    ),
                    _ => Value::Struct(fields),
                },
                Value::String(ref s) => match crate::json::parse_json(s.as_bytes()) {
                    Ok(parsed @ Value::Struct(_)) => parsed.coerce(target)?,
                    _ => return Err(mismatch(&self)),
                },
                _ => return Err(mismatch(&self)),
            },
            DataType::List(inner) => match self {
                Value::List(items) | Value::Tuple(items) => Value::List(
                    items
                        .into_iter()
                        .map(|v| v.coerce(inner))
                        .collect::<Result<_, _>>()?,
                ),
                Value::String(ref s) => match crate::json::parse_json(s.as_bytes()) {
                    Ok(parsed @ Value::List(_)) => parsed.coerce(target)?,
                    _ => return Err(mismatch(&self)),
                },
                _ => return Err(mismatch(&self)),
            },
            DataType::Tuple(types) => match self {
                Value::List(items) | Value::Tuple(items) if items.len() == types.len() => {
                    Value::Tuple(
                        items
                            .into_iter()
                            .zip(types)
                            .map(|(v, t)| v.coerce(t))
                            .collect::<Result<_, _>>()?,
                    )
                }
                _ => return Err(mismatch(&self)),
            },
            DataType::Union(members) => {
                for member in members {
                    if member.accepts_as_is(&self) {
                        return Ok(self);
                    }
                }
                for member in members {
                    if let Ok(converted) = self.clone().coerce(member) {
                        return Ok(converted);
                    }
                }
                return Err(mismatch(&self));
            }
            DataType::Windowed(_) => match self {
                Value::Struct(_) => self,
                _ => return Err(mismatch(&self)),
            },
        })
    }
}

impl DataType {
    /// True when `value` already is of this type, without any conversion.
    pub fn accepts_as_is(&self, value: &Value) -> bool {
        match (self, value) {
            (DataType::Any | DataType::Json | DataType::Schema { .. }, _) => true,
            (_, Value::Null) => true,
            (DataType::Boolean, Value::Boolean(_))
            | (DataType::Byte, Value::Byte(_))
            | (DataType::Short, Value::Short(_))
            | (DataType::Int, Value::Int(_))
            | (DataType::Long, Value::Long(_))
            | (DataType::Float, Value::Float(_))
            | (DataType::Double, Value::Double(_))
            | (DataType::String, Value::String(_))
            | (DataType::Bytes, Value::Bytes(_))
            | (DataType::Struct | DataType::Map(_), Value::Struct(_))
            | (DataType::List(_), Value::List(_))
            | (DataType::Tuple(_), Value::Tuple(_))
            | (DataType::Windowed(_), Value::Struct(_)) => true,
            (DataType::Enum(symbols), Value::String(s)) => symbols.contains(s),
            (DataType::Union(members), v) => members.iter().any(|m| m.accepts_as_is(v)),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ty(text: &str) -> DataType {
        DataType::parse(text).unwrap()
    }

    #[test]
    fn numbers_convert_and_check_range() {
        assert_eq!(Value::Long(7).coerce(&ty("int")), Ok(Value::Int(7)));
        assert_eq!(
            Value::String(" 42 ".into()).coerce(&ty("long")),
            Ok(Value::Long(42))
        );
        assert_eq!(Value::Double(2.9).coerce(&ty("long")), Ok(Value::Long(2)));
        assert!(Value::Long(300).coerce(&ty("byte")).is_err());
        assert_eq!(Value::Int(3).coerce(&ty("double")), Ok(Value::Double(3.0)));
    }

    #[test]
    fn structs_and_strings() {
        let s = Value::Struct(vec![("a".into(), Value::Long(1))]);
        assert_eq!(
            s.clone().coerce(&ty("string")),
            Ok(Value::String("{\"a\":1}".into()))
        );
        assert_eq!(
            Value::String("{\"a\":1}".into()).coerce(&ty("struct")),
            Ok(s)
        );
        assert!(Value::Long(1).coerce(&ty("struct")).is_err());
    }

    #[test]
    fn unions_prefer_exact_members() {
        let union = ty("union(long, string)");
        assert_eq!(
            Value::String("5".into()).coerce(&union),
            Ok(Value::String("5".into()))
        );
        assert_eq!(Value::Int(5).coerce(&union), Ok(Value::Long(5)));
    }

    #[test]
    fn tuples_and_enums() {
        assert_eq!(
            Value::List(vec![Value::Long(1), Value::String("x".into())])
                .coerce(&ty("(string, string)")),
            Ok(Value::Tuple(vec![
                Value::String("1".into()),
                Value::String("x".into())
            ]))
        );
        assert!(Value::String("C".into()).coerce(&ty("enum(A,B)")).is_err());
        assert!(Value::Null.coerce(&ty("long")).is_ok());
    }
}
