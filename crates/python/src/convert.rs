//! Values between Rust and Python, including record bytes straight to Python objects and back
//! (JSON is parsed into dicts and lists, and dicts written as JSON, without a detour through an
//! intermediate value tree).

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

use millrace_types::codec::{self, CodecError};
use millrace_types::{DataType, Value};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// A Python value for a Rust value (structs are dicts, tuples tuples, bytes `bytes`).
pub fn value_to_py<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Null => py.None().into_bound(py),
        Value::Boolean(v) => PyBool::new(py, *v).to_owned().into_any(),
        Value::Byte(v) => v.into_pyobject(py)?.into_any(),
        Value::Short(v) => v.into_pyobject(py)?.into_any(),
        Value::Int(v) => v.into_pyobject(py)?.into_any(),
        Value::Long(v) => v.into_pyobject(py)?.into_any(),
        Value::Float(v) => PyFloat::new(py, f64::from(*v)).into_any(),
        Value::Double(v) => PyFloat::new(py, *v).into_any(),
        Value::String(v) => PyString::new(py, v).into_any(),
        Value::Bytes(v) => PyBytes::new(py, v).into_any(),
        Value::List(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(value_to_py(py, item)?)?;
            }
            list.into_any()
        }
        Value::Tuple(items) => {
            let items = items
                .iter()
                .map(|item| value_to_py(py, item))
                .collect::<PyResult<Vec<_>>>()?;
            PyTuple::new(py, items)?.into_any()
        }
        Value::Struct(fields) => {
            let dict = PyDict::new(py);
            for (k, v) in fields {
                dict.set_item(k, value_to_py(py, v)?)?;
            }
            dict.into_any()
        }
    })
}

/// A Rust value for a Python value; fails for objects with no KSML counterpart.
pub fn py_to_value(obj: &Bound<'_, PyAny>) -> Result<Value, String> {
    if obj.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(s) = obj.cast_exact::<PyString>() {
        return Ok(Value::String(
            s.to_str().map_err(|e| e.to_string())?.to_string(),
        ));
    }
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Value::Boolean(b.is_true()));
    }
    if obj.is_instance_of::<PyInt>() {
        return obj
            .extract::<i64>()
            .map(Value::Long)
            .map_err(|_| "integer does not fit in a long".to_string());
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        return Ok(Value::Double(f.value()));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Value::String(
            s.to_str().map_err(|e| e.to_string())?.to_string(),
        ));
    }
    if let Ok(dict) = obj.cast::<PyDict>() {
        let mut fields = Vec::with_capacity(dict.len());
        for (k, v) in dict.iter() {
            let key = match k.cast::<PyString>() {
                Ok(s) => s.to_str().map_err(|e| e.to_string())?.to_string(),
                Err(_) => k.str().map_err(|e| e.to_string())?.to_string(),
            };
            fields.push((key, py_to_value(&v)?));
        }
        return Ok(Value::Struct(fields));
    }
    if let Ok(list) = obj.cast::<PyList>() {
        return list
            .iter()
            .map(|item| py_to_value(&item))
            .collect::<Result<_, _>>()
            .map(Value::List);
    }
    if let Ok(tuple) = obj.cast::<PyTuple>() {
        return tuple
            .iter()
            .map(|item| py_to_value(&item))
            .collect::<Result<_, _>>()
            .map(Value::Tuple);
    }
    if let Ok(bytes) = obj.cast::<PyBytes>() {
        return Ok(Value::Bytes(bytes.as_bytes().to_vec()));
    }
    Err(format!(
        "cannot convert a Python {} to a KSML value",
        type_name(obj)
    ))
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "object".to_string())
}

/// Decodes record bytes as `ty` straight into a Python object.
pub fn bytes_to_py<'py>(
    py: Python<'py>,
    bytes: Option<&[u8]>,
    ty: &DataType,
) -> Result<Bound<'py, PyAny>, CodecError> {
    let Some(data) = bytes else {
        return Ok(py.None().into_bound(py));
    };
    let json_like = matches!(ty, DataType::Json | DataType::Struct | DataType::Map(_));
    if json_like || (matches!(ty, DataType::List(inner) if inner.is_any())) {
        let mut de = serde_json::Deserializer::from_slice(data);
        let parsed = PySeed(py)
            .deserialize(&mut de)
            .and_then(|obj| de.end().map(|_| obj))
            .map_err(|e| CodecError::Decode {
                ty: ty.to_string(),
                len: data.len(),
                reason: format!("invalid JSON: {e}"),
            })?;
        if !json_like || matches!(ty, DataType::Json) || parsed.is_instance_of::<PyDict>() {
            return Ok(parsed);
        }
        return Err(CodecError::Decode {
            ty: ty.to_string(),
            len: data.len(),
            reason: format!("expected a JSON object, found {}", type_name(&parsed)),
        });
    }
    if matches!(ty, DataType::String) {
        let text = std::str::from_utf8(data).map_err(|e| CodecError::Decode {
            ty: ty.to_string(),
            len: data.len(),
            reason: format!("invalid UTF-8: {e}"),
        })?;
        return Ok(PyString::new(py, text).into_any());
    }
    let value = codec::decode(Some(data), ty)?;
    value_to_py(py, &value).map_err(|e| CodecError::Decode {
        ty: ty.to_string(),
        len: data.len(),
        reason: e.to_string(),
    })
}

/// Encodes a Python object as record bytes of type `ty` (None is a null key or value).
pub fn py_to_bytes(obj: &Bound<'_, PyAny>, ty: &DataType) -> Result<Option<Vec<u8>>, CodecError> {
    if obj.is_none() {
        return Ok(None);
    }
    let fail = |reason: String| CodecError::Encode {
        ty: ty.to_string(),
        kind: "Python",
        reason,
    };
    let json_target = match ty {
        DataType::Json | DataType::Struct | DataType::Map(_) => true,
        DataType::Any => obj.is_instance_of::<PyDict>() || obj.is_instance_of::<PyList>(),
        _ => false,
    };
    if json_target {
        if !matches!(ty, DataType::Json | DataType::Any) && !obj.is_instance_of::<PyDict>() {
            // A str holding a JSON object is accepted for struct, as KSML parses it.
            let value = py_to_value(obj).map_err(fail)?;
            return codec::encode(&value, ty);
        }
        let mut out = Vec::with_capacity(128);
        write_json(obj, &mut out).map_err(|e| fail(e.0))?;
        return Ok(Some(out));
    }
    if let (DataType::String | DataType::Any, Ok(s)) = (ty, obj.cast_exact::<PyString>()) {
        return Ok(Some(
            s.to_str()
                .map_err(|e| fail(e.to_string()))?
                .as_bytes()
                .to_vec(),
        ));
    }
    let value = py_to_value(obj).map_err(fail)?;
    codec::encode(&value, ty)
}

/// Why a Python object could not be written as JSON.
#[derive(Debug)]
pub struct JsonWriteError(pub String);

/// Writes a Python object as compact JSON (dict keys that are not strings become their str()).
pub fn write_json(obj: &Bound<'_, PyAny>, out: &mut Vec<u8>) -> Result<(), JsonWriteError> {
    let err = |e: PyErr| JsonWriteError(e.to_string());
    if obj.is_none() {
        out.extend_from_slice(b"null");
    } else if let Ok(s) = obj.cast_exact::<PyString>() {
        write_json_str(s.to_str().map_err(err)?, out);
    } else if let Ok(b) = obj.cast::<PyBool>() {
        out.extend_from_slice(if b.is_true() { b"true" } else { b"false" });
    } else if obj.is_instance_of::<PyInt>() {
        match obj.extract::<i64>() {
            Ok(v) => out.extend_from_slice(v.to_string().as_bytes()),
            Err(_) => {
                out.extend_from_slice(obj.str().map_err(err)?.to_str().map_err(err)?.as_bytes())
            }
        }
    } else if let Ok(f) = obj.cast::<PyFloat>() {
        let v = f.value();
        if v.is_finite() {
            let text = serde_json::to_string(&v).map_err(|e| JsonWriteError(e.to_string()))?;
            out.extend_from_slice(text.as_bytes());
        } else {
            out.extend_from_slice(b"null");
        }
    } else if let Ok(dict) = obj.cast::<PyDict>() {
        out.push(b'{');
        for (i, (k, v)) in dict.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            match k.cast_exact::<PyString>() {
                Ok(s) => write_json_str(s.to_str().map_err(err)?, out),
                Err(_) => write_json_str(k.str().map_err(err)?.to_str().map_err(err)?, out),
            }
            out.push(b':');
            write_json(&v, out)?;
        }
        out.push(b'}');
    } else if let Ok(list) = obj.cast::<PyList>() {
        out.push(b'[');
        for (i, item) in list.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_json(&item, out)?;
        }
        out.push(b']');
    } else if let Ok(tuple) = obj.cast::<PyTuple>() {
        out.push(b'[');
        for (i, item) in tuple.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_json(&item, out)?;
        }
        out.push(b']');
    } else if let Ok(s) = obj.cast::<PyString>() {
        write_json_str(s.to_str().map_err(err)?, out);
    } else {
        return Err(JsonWriteError(format!(
            "a Python {} cannot be written as JSON",
            type_name(obj)
        )));
    }
    Ok(())
}

fn write_json_str(s: &str, out: &mut Vec<u8>) {
    // serde_json's escaping of a plain string never fails.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Deserializes JSON straight into Python objects.
struct PySeed<'py>(Python<'py>);

impl<'de, 'py> DeserializeSeed<'de> for PySeed<'py> {
    type Value = Bound<'py, PyAny>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

fn to_de<E: serde::de::Error>(e: PyErr) -> E {
    E::custom(e.to_string())
}

impl<'de, 'py> Visitor<'de> for PySeed<'py> {
    type Value = Bound<'py, PyAny>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(self.0.None().into_bound(self.0))
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        self.visit_unit()
    }
    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(PyBool::new(self.0, v).to_owned().into_any())
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
        let Ok(int) = v.into_pyobject(self.0);
        Ok(int.into_any())
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
        let Ok(int) = v.into_pyobject(self.0);
        Ok(int.into_any())
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(PyFloat::new(self.0, v).into_any())
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(PyString::new(self.0, v).into_any())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let list = PyList::empty(self.0);
        while let Some(item) = seq.next_element_seed(PySeed(self.0))? {
            list.append(item).map_err(to_de)?;
        }
        Ok(list.into_any())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let dict = PyDict::new(self.0);
        while let Some(key) = map.next_key_seed(KeySeed(self.0))? {
            let value = map.next_value_seed(PySeed(self.0))?;
            dict.set_item(key, value).map_err(to_de)?;
        }
        Ok(dict.into_any())
    }
}

/// Most JSON records repeat the same object keys: their Python strings are made once per
/// thread and reused (cheaper to insert, too: their hash is already computed). Bounded, so
/// data-like keys cannot grow it without limit.
const KEY_CACHE_LIMIT: usize = 4096;

thread_local! {
    static KEY_CACHE: std::cell::RefCell<HashMap<Box<str>, Py<PyString>, BuildHasherDefault<Fnv>>> =
        std::cell::RefCell::new(HashMap::default());
}

/// FNV-1a: fast for the short keys the cache holds.
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut hash = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = hash;
    }
}

fn cached_key<'py>(py: Python<'py>, key: &str) -> Bound<'py, PyString> {
    KEY_CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(found) = cache.get(key) {
            return found.bind(py).clone();
        }
        let made = PyString::new(py, key);
        if cache.len() >= KEY_CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(key.into(), made.clone().unbind());
        made
    })
}

/// Reads an object key without allocating, straight to a (cached) Python string.
struct KeySeed<'py>(Python<'py>);

impl<'de, 'py> DeserializeSeed<'de> for KeySeed<'py> {
    type Value = Bound<'py, PyString>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de, 'py> Visitor<'de> for KeySeed<'py> {
    type Value = Bound<'py, PyString>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(cached_key(self.0, v))
    }
}
