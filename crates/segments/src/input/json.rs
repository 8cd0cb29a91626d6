//! JSON objects read member by member with serde, without a JSON tree: into an input row or
//! into the values of named members ([`Members`]).

use std::borrow::Cow;
use std::fmt;

use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{
    Deserialize, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde_json::Value as Json;

use super::{InputRow, ParseError};
use crate::expr::ExprValue;

/// One value as a record holds it, or, as a [`crate::transform::DimValue`], converted to a
/// dimension's type.
#[derive(Debug, Clone, PartialEq)]
pub enum Member<'a> {
    /// JSON null, or no such member.
    Null,
    /// Text, borrowed from the record when it needs no unescaping. JSON booleans are the
    /// text `true`/`false` and nested objects and arrays their JSON text, as Druid reads them
    /// into string columns.
    Text(Cow<'a, str>),
    /// A JSON integer that fits an i64.
    Long(i64),
    /// Any other JSON number.
    Double(f64),
}

impl<'a> Member<'a> {
    /// A value of a JSON tree, read as a record's member is read.
    pub(super) fn of_json(value: &'a Json) -> Member<'a> {
        // Every JSON value reads as a member, so this cannot fail.
        Member::deserialize(value).unwrap_or(Member::Null)
    }
}

impl Member<'_> {
    /// The value holding its own text.
    pub fn into_owned(self) -> Member<'static> {
        match self {
            Member::Null => Member::Null,
            Member::Text(s) => Member::Text(Cow::Owned(s.into_owned())),
            Member::Long(l) => Member::Long(l),
            Member::Double(d) => Member::Double(d),
        }
    }

    /// A value of an input row, borrowed.
    pub fn of(value: &ExprValue) -> Member<'_> {
        match value {
            ExprValue::Null => Member::Null,
            ExprValue::String(s) => Member::Text(Cow::Borrowed(s)),
            ExprValue::Long(l) => Member::Long(*l),
            ExprValue::Double(d) => Member::Double(*d),
        }
    }
}

impl From<ExprValue> for Member<'static> {
    fn from(value: ExprValue) -> Self {
        match value {
            ExprValue::Null => Member::Null,
            ExprValue::String(s) => Member::Text(Cow::Owned(s)),
            ExprValue::Long(l) => Member::Long(l),
            ExprValue::Double(d) => Member::Double(d),
        }
    }
}

impl From<Member<'_>> for ExprValue {
    fn from(value: Member<'_>) -> Self {
        match value {
            Member::Null => ExprValue::Null,
            Member::Text(s) => ExprValue::String(s.into_owned()),
            Member::Long(l) => ExprValue::Long(l),
            Member::Double(d) => ExprValue::Double(d),
        }
    }
}

/// Where a JSON object's members go as they are read.
pub(super) enum Members<'a, 'de> {
    /// Every member, into an input row (a repeated name keeps its last value).
    Row(&'a mut InputRow),
    /// The named members, each at its name's place (null when missing; a repeated member's
    /// last value wins); the others are skipped unread.
    Named {
        names: &'a [String],
        values: &'a mut [Member<'de>],
    },
}

impl<'de> DeserializeSeed<'de> for Members<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Members<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        match self {
            Members::Row(row) => {
                while let Some(Key(name)) = map.next_key::<Key<'de>>()? {
                    let value: Member<'de> = map.next_value()?;
                    row.set(&name, value.into());
                }
            }
            Members::Named { names, values } => {
                // Records of a topic mostly hold their members in one order: the name after
                // the last one found is tried first, then all of them.
                let mut next = 0;
                while let Some(Key(name)) = map.next_key::<Key<'de>>()? {
                    let place = match names.get(next) {
                        Some(guess) if *guess == *name => Some(next),
                        _ => names.iter().position(|n| *n == *name),
                    };
                    match place {
                        Some(place) => {
                            values[place] = map.next_value()?;
                            next = (place + 1) % names.len();
                        }
                        None => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// An object member's name, borrowed from the record when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E>(self, name: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(name)))
            }
            fn visit_str<E>(self, name: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(name.to_string())))
            }
            fn visit_string<E>(self, name: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(name)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

impl<'de> Deserialize<'de> for Member<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MemberVisitor;
        impl<'de> Visitor<'de> for MemberVisitor {
            type Value = Member<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E>(self) -> Result<Member<'de>, E> {
                Ok(Member::Null)
            }
            fn visit_bool<E>(self, b: bool) -> Result<Member<'de>, E> {
                Ok(Member::Text(Cow::Borrowed(if b {
                    "true"
                } else {
                    "false"
                })))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Member<'de>, E> {
                Ok(Member::Long(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Member<'de>, E> {
                Ok(i64::try_from(v).map_or(Member::Double(v as f64), Member::Long))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Member<'de>, E> {
                Ok(Member::Double(v))
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Member<'de>, E> {
                Ok(Member::Text(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Member<'de>, E> {
                Ok(Member::Text(Cow::Owned(s.to_string())))
            }
            fn visit_string<E>(self, s: String) -> Result<Member<'de>, E> {
                Ok(Member::Text(Cow::Owned(s)))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Member<'de>, A::Error> {
                let nested = Json::deserialize(MapAccessDeserializer::new(map))?;
                Ok(Member::Text(Cow::Owned(nested.to_string())))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Member<'de>, A::Error> {
                let nested = Json::deserialize(SeqAccessDeserializer::new(seq))?;
                Ok(Member::Text(Cow::Owned(nested.to_string())))
            }
        }
        deserializer.deserialize_any(MemberVisitor)
    }
}

/// Parses one JSON object record with `seed`, naming what is wrong with a record that is not
/// one.
pub(super) fn parse_object<'de>(
    record: &'de [u8],
    seed: impl DeserializeSeed<'de, Value = ()>,
) -> Result<(), ParseError> {
    let mut parser = serde_json::Deserializer::from_slice(record);
    seed.deserialize(&mut parser)
        .and_then(|()| parser.end())
        .map_err(|e| match e.classify() {
            // Every member value is accepted: only the record itself can be of another type
            // than an object.
            serde_json::error::Category::Data => ParseError("expected a JSON object".into()),
            _ => ParseError(format!("invalid JSON: {e}")),
        })
}
