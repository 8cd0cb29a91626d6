//! Reading a config's JSON with the path of every value, so an error names the field it is
//! about: `states[1].transitions[0].probability: expected a number`.

use serde_json::{Map, Value};

/// A config that cannot be used, with where and why.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    /// The field, as a JSON path from the config's root (`emitters[0].dimensions[2].type`).
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// A JSON object of a config and its path.
#[derive(Clone, Copy)]
pub struct Fields<'a> {
    pub map: &'a Map<String, Value>,
    pub path: &'a str,
}

impl<'a> Fields<'a> {
    /// The object at `path`, or an error when `value` is not an object.
    pub fn of(value: &'a Value, path: &'a str) -> Result<Fields<'a>, ConfigError> {
        match value {
            Value::Object(map) => Ok(Fields { map, path }),
            _ => Err(error(path, "expected an object")),
        }
    }

    /// The path of one of this object's fields.
    pub fn path_of(&self, field: &str) -> String {
        if self.path.is_empty() {
            field.to_string()
        } else {
            format!("{}.{field}", self.path)
        }
    }

    /// An error about one of this object's fields.
    pub fn error(&self, field: &str, message: impl Into<String>) -> ConfigError {
        error(&self.path_of(field), message)
    }

    pub fn get(&self, field: &str) -> Option<&'a Value> {
        self.map.get(field).filter(|v| !v.is_null())
    }

    pub fn required(&self, field: &str) -> Result<&'a Value, ConfigError> {
        self.get(field)
            .ok_or_else(|| self.error(field, "is required"))
    }

    pub fn string(&self, field: &str) -> Result<&'a str, ConfigError> {
        self.required(field)?
            .as_str()
            .ok_or_else(|| self.error(field, "expected a string"))
    }

    pub fn optional_string(&self, field: &str) -> Result<Option<&'a str>, ConfigError> {
        self.get(field)
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| self.error(field, "expected a string"))
            })
            .transpose()
    }

    pub fn number(&self, field: &str) -> Result<f64, ConfigError> {
        self.required(field)?
            .as_f64()
            .ok_or_else(|| self.error(field, "expected a number"))
    }

    pub fn optional_number(&self, field: &str) -> Result<Option<f64>, ConfigError> {
        self.get(field)
            .map(|v| {
                v.as_f64()
                    .ok_or_else(|| self.error(field, "expected a number"))
            })
            .transpose()
    }

    /// A count: a whole number, at least zero.
    pub fn optional_count(&self, field: &str) -> Result<Option<u64>, ConfigError> {
        self.get(field)
            .map(|v| {
                v.as_u64()
                    .ok_or_else(|| self.error(field, "expected a whole number of at least 0"))
            })
            .transpose()
    }

    /// A percentage from 0 to 100, 0 when absent.
    pub fn percent(&self, field: &str) -> Result<f64, ConfigError> {
        let percent = self.optional_number(field)?.unwrap_or(0.0);
        if !(0.0..=100.0).contains(&percent) {
            return Err(self.error(field, "expected a percentage from 0 to 100"));
        }
        Ok(percent)
    }

    /// An array field with the path of each element.
    pub fn array(&self, field: &str) -> Result<Vec<(String, &'a Value)>, ConfigError> {
        let items = self
            .required(field)?
            .as_array()
            .ok_or_else(|| self.error(field, "expected an array"))?;
        let path = self.path_of(field);
        Ok(items
            .iter()
            .enumerate()
            .map(|(i, item)| (format!("{path}[{i}]"), item))
            .collect())
    }
}

/// An error at a path.
pub fn error(path: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        path: path.to_string(),
        message: message.into(),
    }
}
