//! Record bytes to and from values, for a declared type, the way Kafka's and KSML's serdes do it:
//! primitives in Kafka's binary serializers (big-endian numbers, UTF-8 strings, raw bytes),
//! `json` and complex types in the binary notation as JSON text.

use crate::{DataType, Value, json};

/// Why bytes could not be read as, or a value written as, a type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("cannot read {len} bytes as {ty}: {reason}")]
    Decode {
        ty: String,
        len: usize,
        reason: String,
    },
    #[error("cannot write a {kind} value as {ty}: {reason}")]
    Encode {
        ty: String,
        kind: &'static str,
        reason: String,
    },
    #[error("the {0} notation is not supported yet")]
    Unsupported(&'static str),
}

/// Decodes record bytes (`None` for a null key or value) as `ty`.
pub fn decode(bytes: Option<&[u8]>, ty: &DataType) -> Result<Value, CodecError> {
    let Some(bytes) = bytes else {
        return Ok(Value::Null);
    };
    let fail = |reason: String| CodecError::Decode {
        ty: ty.to_string(),
        len: bytes.len(),
        reason,
    };
    let fixed = |n: usize| -> Result<&[u8], CodecError> {
        if bytes.len() == n {
            Ok(bytes)
        } else {
            Err(fail(format!("expected exactly {n} bytes")))
        }
    };
    let text = || std::str::from_utf8(bytes).map_err(|e| fail(format!("invalid UTF-8: {e}")));
    Ok(match ty {
        DataType::Null => Value::Null,
        DataType::Boolean => Value::Boolean(fixed(1)?[0] != 0),
        DataType::Byte => Value::Byte(fixed(1)?[0] as i8),
        DataType::Short => Value::Short(i16::from_be_bytes(fixed(2)?.try_into().unwrap())),
        DataType::Int => Value::Int(i32::from_be_bytes(fixed(4)?.try_into().unwrap())),
        DataType::Long => Value::Long(i64::from_be_bytes(fixed(8)?.try_into().unwrap())),
        DataType::Float => Value::Float(f32::from_be_bytes(fixed(4)?.try_into().unwrap())),
        DataType::Double => Value::Double(f64::from_be_bytes(fixed(8)?.try_into().unwrap())),
        DataType::String => Value::String(text()?.to_string()),
        DataType::Enum(_) => Value::String(text()?.to_string())
            .coerce(ty)
            .map_err(|e| fail(e.0))?,
        DataType::Bytes => Value::Bytes(bytes.to_vec()),
        DataType::Any => match std::str::from_utf8(bytes) {
            Ok(s) => json::parse_json(bytes).unwrap_or_else(|_| Value::String(s.to_string())),
            Err(_) => Value::Bytes(bytes.to_vec()),
        },
        DataType::Schema { notation, .. } => return Err(CodecError::Unsupported(notation.name())),
        DataType::Union(members) => {
            return members
                .iter()
                .find_map(|member| decode(Some(bytes), member).ok())
                .ok_or_else(|| fail("no member of the union matches".into()));
        }
        DataType::Json
        | DataType::Struct
        | DataType::Map(_)
        | DataType::List(_)
        | DataType::Tuple(_)
        | DataType::Windowed(_) => {
            let parsed = json::parse_json(bytes).map_err(|e| fail(format!("invalid JSON: {e}")))?;
            if matches!(ty, DataType::Json) {
                parsed
            } else {
                parsed.coerce(ty).map_err(|e| fail(e.0))?
            }
        }
    })
}

/// Checks that record bytes read as `ty`, as a deserializer would, without keeping the value:
/// bytes passed on unchanged must still be what their stream declares. JSON is only scanned.
pub fn validate(bytes: &[u8], ty: &DataType) -> Result<(), CodecError> {
    let fail = |reason: String| CodecError::Decode {
        ty: ty.to_string(),
        len: bytes.len(),
        reason,
    };
    match ty {
        DataType::Any | DataType::Bytes => Ok(()),
        // The two most common types, checked without building the value.
        DataType::String => std::str::from_utf8(bytes)
            .map(|_| ())
            .map_err(|e| fail(format!("invalid UTF-8: {e}"))),
        DataType::Json => serde_json::from_slice::<serde::de::IgnoredAny>(bytes)
            .map(|_| ())
            .map_err(|e| fail(format!("invalid JSON: {e}"))),
        _ => decode(Some(bytes), ty).map(|_| ()),
    }
}

/// Encodes a value as `ty`; a null value is a null record key or value (`None`).
pub fn encode(value: &Value, ty: &DataType) -> Result<Option<Vec<u8>>, CodecError> {
    if matches!(value, Value::Null) {
        return Ok(None);
    }
    let fail = |reason: String| CodecError::Encode {
        ty: ty.to_string(),
        kind: value.kind(),
        reason,
    };
    let bytes = match (ty, value) {
        (DataType::Schema { notation, .. }, _) => {
            return Err(CodecError::Unsupported(notation.name()));
        }
        (DataType::String | DataType::Any | DataType::Enum(_), Value::String(s)) => {
            s.as_bytes().to_vec()
        }
        (DataType::Bytes | DataType::Any, Value::Bytes(b)) => b.clone(),
        (DataType::Long, Value::Long(v)) => v.to_be_bytes().to_vec(),
        (DataType::Json | DataType::Any, v) => json::to_json_string(v).into_bytes(),
        (DataType::Union(members), v) => {
            let member = members
                .iter()
                .find(|m| m.accepts_as_is(v))
                .or_else(|| members.iter().find(|m| v.clone().coerce(m).is_ok()))
                .ok_or_else(|| fail("no member of the union accepts it".into()))?;
            return encode(value, member);
        }
        _ => {
            let converted = value.clone().coerce(ty).map_err(|e| fail(e.0))?;
            match converted {
                Value::Boolean(v) => vec![u8::from(v)],
                Value::Byte(v) => vec![v as u8],
                Value::Short(v) => v.to_be_bytes().to_vec(),
                Value::Int(v) => v.to_be_bytes().to_vec(),
                Value::Long(v) => v.to_be_bytes().to_vec(),
                Value::Float(v) => v.to_be_bytes().to_vec(),
                Value::Double(v) => v.to_be_bytes().to_vec(),
                Value::String(s) => s.into_bytes(),
                Value::Bytes(b) => b,
                Value::Null => return Ok(None),
                complex => json::to_json_string(&complex).into_bytes(),
            }
        }
    };
    Ok(Some(bytes))
}

/// Renders record bytes for people (the `consume` command): decoded with `ty` when given,
/// otherwise UTF-8 text shown as JSON when it parses as JSON.
pub fn display_json(bytes: Option<&[u8]>, ty: Option<&DataType>) -> Result<String, CodecError> {
    let value = decode(bytes, ty.unwrap_or(&DataType::Any))?;
    Ok(json::to_json_string(&value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ty(text: &str) -> DataType {
        DataType::parse(text).unwrap()
    }

    fn round_trip(value: Value, type_text: &str) -> Value {
        let t = ty(type_text);
        decode(encode(&value, &t).unwrap().as_deref(), &t).unwrap()
    }

    #[test]
    fn primitives_use_kafka_layouts() {
        assert_eq!(
            encode(&Value::Long(1), &ty("long")).unwrap().unwrap(),
            vec![0, 0, 0, 0, 0, 0, 0, 1]
        );
        assert_eq!(
            encode(&Value::Int(-2), &ty("int")).unwrap().unwrap(),
            vec![255, 255, 255, 254]
        );
        assert_eq!(round_trip(Value::Double(1.5), "double"), Value::Double(1.5));
        assert_eq!(
            round_trip(Value::Boolean(true), "boolean"),
            Value::Boolean(true)
        );
        assert_eq!(round_trip(Value::Short(-3), "short"), Value::Short(-3));
        assert_eq!(round_trip(Value::Float(0.25), "float"), Value::Float(0.25));
        assert_eq!(
            round_trip(Value::String("héllo".into()), "string"),
            Value::String("héllo".into())
        );
    }

    #[test]
    fn complex_types_are_json() {
        let s = Value::Struct(vec![("n".into(), Value::Long(1))]);
        assert_eq!(
            encode(&s, &ty("json")).unwrap().unwrap(),
            b"{\"n\":1}".to_vec()
        );
        assert_eq!(round_trip(s.clone(), "struct"), s);
        let t = Value::Tuple(vec![Value::String("a".into()), Value::Long(2)]);
        assert_eq!(round_trip(t.clone(), "(string, long)"), t);
    }

    #[test]
    fn null_is_a_null_record() {
        assert_eq!(encode(&Value::Null, &ty("long")).unwrap(), None);
        assert_eq!(decode(None, &ty("long")).unwrap(), Value::Null);
    }

    #[test]
    fn bad_bytes_say_why() {
        let err = decode(Some(b"abc"), &ty("long")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot read 3 bytes as long: expected exactly 8 bytes"
        );
        let err = decode(Some(b"{nope"), &ty("json")).unwrap_err();
        assert!(err.to_string().contains("invalid JSON"), "{err}");
        assert_eq!(
            decode(Some(b"x"), &ty("avro:A")).unwrap_err(),
            CodecError::Unsupported("avro")
        );
    }

    #[test]
    fn validation_agrees_with_decoding() {
        let cases: [(&[u8], &str); 10] = [
            (b"{\"a\": [1, 2]}", "json"),
            (b"{\"a\": [1, 2}", "json"),
            (b"not json", "json"),
            (b"", "json"),
            (b"abc", "long"),
            (&[0, 0, 0, 0, 0, 0, 0, 9], "long"),
            (&[0xff, 0xfe], "string"),
            ("héllo".as_bytes(), "string"),
            (b"{\"n\": 1}", "struct"),
            (&[0xff], "bytes"),
        ];
        for (bytes, type_text) in cases {
            let t = ty(type_text);
            assert_eq!(
                validate(bytes, &t).map_err(|e| e.to_string()),
                decode(Some(bytes), &t)
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                "{type_text}: {:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn display_shows_json_or_text() {
        assert_eq!(display_json(Some(b"{\"a\":1}"), None).unwrap(), "{\"a\":1}");
        assert_eq!(display_json(Some(b"plain"), None).unwrap(), "\"plain\"");
        assert_eq!(
            display_json(Some(&7i64.to_be_bytes()), Some(&ty("long"))).unwrap(),
            "7"
        );
    }
}
