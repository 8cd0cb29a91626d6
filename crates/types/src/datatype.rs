//! KSML data types as written in definitions (`long`, `json`, `list(string)`, `(string, int)`,
//! `avro:SensorData`, ...).

use std::fmt;

/// A notation whose values need a schema or a format this build does not implement yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Notation {
    Avro,
    JsonSchema,
    Protobuf,
    Csv,
    Xml,
    Soap,
}

impl Notation {
    fn from_name(name: &str) -> Option<Notation> {
        Some(match name {
            "avro" | "confluent_avro" | "apicurio_avro" => Notation::Avro,
            "jsonschema" | "confluent_jsonschema" | "apicurio_jsonschema" => Notation::JsonSchema,
            "protobuf" | "confluent_protobuf" | "apicurio_protobuf" => Notation::Protobuf,
            "csv" => Notation::Csv,
            "xml" => Notation::Xml,
            "soap" => Notation::Soap,
            _ => return None,
        })
    }

    /// The notation's name as KSML spells it.
    pub fn name(self) -> &'static str {
        match self {
            Notation::Avro => "avro",
            Notation::JsonSchema => "jsonschema",
            Notation::Protobuf => "protobuf",
            Notation::Csv => "csv",
            Notation::Xml => "xml",
            Notation::Soap => "soap",
        }
    }
}

/// A KSML data type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DataType {
    /// `any` or `?`: whatever the value is.
    Any,
    Null,
    Boolean,
    Byte,
    Short,
    Int,
    Long,
    Float,
    Double,
    String,
    Bytes,
    /// `struct`: a map with string keys (JSON inside the binary notation).
    Struct,
    /// `map(T)`: string keys, values of one type.
    Map(Box<DataType>),
    List(Box<DataType>),
    Tuple(Vec<DataType>),
    Union(Vec<DataType>),
    Enum(Vec<String>),
    Windowed(Box<DataType>),
    /// The `json` notation: any JSON value.
    Json,
    /// A schema notation (`avro:Name`, `csv`, ...); `schema` is the name after the colon.
    Schema {
        notation: Notation,
        schema: Option<String>,
    },
}

/// Why a type string could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid type '{text}': {reason}")]
pub struct TypeParseError {
    pub text: String,
    pub reason: String,
}

impl DataType {
    /// Parses a KSML type string.
    pub fn parse(text: &str) -> Result<DataType, TypeParseError> {
        let fail = |reason: &str| TypeParseError {
            text: text.to_string(),
            reason: reason.to_string(),
        };
        let mut parser = TypeParser {
            chars: text.trim(),
            pos: 0,
        };
        let parsed = parser.parse_type().map_err(|reason| fail(&reason))?;
        parser.skip_spaces();
        if parser.pos != parser.chars.len() {
            return Err(fail(&format!(
                "unexpected '{}' at position {}",
                &parser.chars[parser.pos..],
                parser.pos + 1
            )));
        }
        Ok(parsed)
    }

    /// The first schema notation this type uses, if any: such types are not supported yet.
    pub fn unsupported_notation(&self) -> Option<Notation> {
        match self {
            DataType::Schema { notation, .. } => Some(*notation),
            DataType::Map(inner) | DataType::List(inner) | DataType::Windowed(inner) => {
                inner.unsupported_notation()
            }
            DataType::Tuple(items) | DataType::Union(items) => {
                items.iter().find_map(DataType::unsupported_notation)
            }
            _ => None,
        }
    }

    /// True for `any`, which accepts every value unchanged.
    pub fn is_any(&self) -> bool {
        matches!(self, DataType::Any)
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |f: &mut fmt::Formatter<'_>, items: &[DataType]| -> fmt::Result {
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                write!(f, "{item}")?;
            }
            Ok(())
        };
        match self {
            DataType::Any => f.write_str("any"),
            DataType::Null => f.write_str("null"),
            DataType::Boolean => f.write_str("boolean"),
            DataType::Byte => f.write_str("byte"),
            DataType::Short => f.write_str("short"),
            DataType::Int => f.write_str("int"),
            DataType::Long => f.write_str("long"),
            DataType::Float => f.write_str("float"),
            DataType::Double => f.write_str("double"),
            DataType::String => f.write_str("string"),
            DataType::Bytes => f.write_str("bytes"),
            DataType::Struct => f.write_str("struct"),
            DataType::Json => f.write_str("json"),
            DataType::Map(inner) => write!(f, "map({inner})"),
            DataType::List(inner) => write!(f, "list({inner})"),
            DataType::Windowed(inner) => write!(f, "windowed({inner})"),
            DataType::Tuple(items) => {
                f.write_str("tuple(")?;
                list(f, items)?;
                f.write_str(")")
            }
            DataType::Union(items) => {
                f.write_str("union(")?;
                list(f, items)?;
                f.write_str(")")
            }
            DataType::Enum(symbols) => write!(f, "enum({})", symbols.join(",")),
            DataType::Schema { notation, schema } => match schema {
                Some(name) => write!(f, "{}:{name}", notation.name()),
                None => f.write_str(notation.name()),
            },
        }
    }
}

/// A small recursive-descent reader over a type string.
struct TypeParser<'a> {
    chars: &'a str,
    pos: usize,
}

impl TypeParser<'_> {
    fn skip_spaces(&mut self) {
        while self.chars[self.pos..].starts_with(' ') {
            self.pos += 1;
        }
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_spaces();
        if self.chars[self.pos..].starts_with(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn word(&mut self) -> &str {
        self.skip_spaces();
        let rest = &self.chars[self.pos..];
        let len = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.' || c == '?' || c == '-'))
            .unwrap_or(rest.len());
        self.pos += len;
        &rest[..len]
    }

    /// Reads `T, T, ...)` after an opening parenthesis or bracket.
    fn type_list(&mut self, close: char) -> Result<Vec<DataType>, String> {
        let mut items = Vec::new();
        if self.eat(close) {
            return Ok(items);
        }
        loop {
            items.push(self.parse_type()?);
            if self.eat(close) {
                return Ok(items);
            }
            if !self.eat(',') {
                return Err(format!("expected ',' or '{close}'"));
            }
        }
    }

    fn single_argument(&mut self, name: &str) -> Result<DataType, String> {
        let mut args = self.type_list(')')?;
        if args.len() != 1 {
            return Err(format!("{name}(...) takes exactly one type"));
        }
        Ok(args.remove(0))
    }

    /// The type after `json:` or `binary:`, as KSML splits `notation:type`: composite types
    /// (`json:windowed(string)`, `json:[string]`, `binary:map(long)`) keep their shape, which
    /// is written as JSON anyway; a primitive after `json:` is any JSON value, after `binary:`
    /// itself; a schema name after `json:` (no type this parser knows) is any JSON value.
    fn notation_type(&mut self, notation: &str) -> DataType {
        let start = self.pos;
        match self.parse_type() {
            Ok(
                composite @ (DataType::List(_)
                | DataType::Map(_)
                | DataType::Tuple(_)
                | DataType::Union(_)
                | DataType::Windowed(_)
                | DataType::Struct
                | DataType::Enum(_)),
            ) => composite,
            Ok(primitive) if notation == "binary" => primitive,
            Ok(_) => DataType::Json,
            Err(_) => {
                self.pos = start;
                self.word();
                DataType::Json
            }
        }
    }

    fn parse_type(&mut self) -> Result<DataType, String> {
        if self.eat('[') {
            let mut items = self.type_list(']')?;
            if items.len() != 1 {
                return Err("[T] takes exactly one type".into());
            }
            return Ok(DataType::List(Box::new(items.remove(0))));
        }
        if self.eat('(') {
            return Ok(DataType::Tuple(self.type_list(')')?));
        }
        let name = self.word().to_string();
        if name.is_empty() {
            return Err("expected a type name".into());
        }
        if self.eat('(') {
            return match name.as_str() {
                "list" => Ok(DataType::List(Box::new(self.single_argument("list")?))),
                "map" => Ok(DataType::Map(Box::new(self.single_argument("map")?))),
                "windowed" => Ok(DataType::Windowed(Box::new(
                    self.single_argument("windowed")?,
                ))),
                "tuple" => Ok(DataType::Tuple(self.type_list(')')?)),
                "union" => Ok(DataType::Union(self.type_list(')')?)),
                "enum" => {
                    let mut symbols = Vec::new();
                    loop {
                        let symbol = self.word().to_string();
                        if !symbol.is_empty() {
                            symbols.push(symbol);
                        }
                        if self.eat(')') {
                            break;
                        }
                        if !self.eat(',') {
                            return Err("expected ',' or ')' in enum(...)".into());
                        }
                    }
                    Ok(DataType::Enum(symbols))
                }
                other => Err(format!("unknown type constructor '{other}'")),
            };
        }
        if self.eat(':') {
            if matches!(name.as_str(), "json" | "binary") {
                return Ok(self.notation_type(&name));
            }
            let schema = self.word().to_string();
            return match (name.as_str(), Notation::from_name(&name)) {
                (_, Some(notation)) => Ok(DataType::Schema {
                    notation,
                    schema: (!schema.is_empty()).then_some(schema),
                }),
                _ => Err(format!("unknown notation '{name}'")),
            };
        }
        Ok(match name.as_str() {
            // KSML reads a name no notation knows (`object`) as an unknown type: any.
            "any" | "?" | "object" => DataType::Any,
            "null" | "none" => DataType::Null,
            "boolean" => DataType::Boolean,
            "byte" => DataType::Byte,
            "short" => DataType::Short,
            "int" | "integer" => DataType::Int,
            "long" => DataType::Long,
            "float" => DataType::Float,
            "double" => DataType::Double,
            "string" | "str" => DataType::String,
            "bytes" => DataType::Bytes,
            "struct" => DataType::Struct,
            "map" => DataType::Map(Box::new(DataType::Any)),
            "list" => DataType::List(Box::new(DataType::Any)),
            "json" => DataType::Json,
            "binary" => DataType::Bytes,
            other => match Notation::from_name(other) {
                Some(notation) => DataType::Schema {
                    notation,
                    schema: None,
                },
                None => return Err(format!("unknown type '{other}'")),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> DataType {
        DataType::parse(text).unwrap()
    }

    #[test]
    fn types_after_a_notation_keep_their_shape() {
        assert_eq!(
            parse("json:windowed(string)"),
            DataType::Windowed(Box::new(DataType::String))
        );
        assert_eq!(
            parse("json:[string]"),
            DataType::List(Box::new(DataType::String))
        );
        assert_eq!(
            parse("binary:map(long)"),
            DataType::Map(Box::new(DataType::Long))
        );
        assert_eq!(parse("json:string"), DataType::Json);
        assert_eq!(parse("binary:long"), DataType::Long);
        assert_eq!(parse("json:SensorData"), DataType::Json);
        assert_eq!(parse("object"), DataType::Any);
    }

    #[test]
    fn primitives_and_aliases() {
        assert_eq!(parse("string"), DataType::String);
        assert_eq!(parse("str"), DataType::String);
        assert_eq!(parse("integer"), DataType::Int);
        assert_eq!(parse("?"), DataType::Any);
        assert_eq!(parse("none"), DataType::Null);
        assert_eq!(parse("json"), DataType::Json);
    }

    #[test]
    fn composites() {
        assert_eq!(parse("[long]"), DataType::List(Box::new(DataType::Long)));
        assert_eq!(
            parse("list( string )"),
            DataType::List(Box::new(DataType::String))
        );
        assert_eq!(
            parse("(string, int)"),
            DataType::Tuple(vec![DataType::String, DataType::Int])
        );
        assert_eq!(
            parse("union(null, json)"),
            DataType::Union(vec![DataType::Null, DataType::Json])
        );
        assert_eq!(
            parse("enum(A, B)"),
            DataType::Enum(vec!["A".into(), "B".into()])
        );
        assert_eq!(
            parse("windowed(string)"),
            DataType::Windowed(Box::new(DataType::String))
        );
        assert_eq!(parse("map(long)"), DataType::Map(Box::new(DataType::Long)));
    }

    #[test]
    fn notations() {
        let avro = parse("avro:SensorData");
        assert_eq!(
            avro,
            DataType::Schema {
                notation: Notation::Avro,
                schema: Some("SensorData".into())
            }
        );
        assert_eq!(avro.unsupported_notation(), Some(Notation::Avro));
        assert_eq!(avro.to_string(), "avro:SensorData");
        assert_eq!(parse("list(json)").unsupported_notation(), None);
    }

    #[test]
    fn errors_say_why() {
        let err = DataType::parse("list(string").unwrap_err();
        assert!(err.reason.contains("expected"), "{err}");
        let err = DataType::parse("strng").unwrap_err();
        assert_eq!(err.reason, "unknown type 'strng'");
        assert!(DataType::parse("long extra").is_err());
    }
}
