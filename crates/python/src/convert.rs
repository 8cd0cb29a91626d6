//! Values between Rust and Python, including record bytes straight to Python objects and back
//! (JSON is parsed into dicts and lists, and dicts written as JSON, without a detour through an
//! intermediate value tree).

use millrace_types::codec::{self, CodecError};
use millrace_types::{DataType, Value};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use crate::json_to_py::json_to_py;

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
        let parsed = json_to_py(py, data).map_err(|e| CodecError::Decode {
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
    // Exact types first, in the order records usually hold them: each check is one pointer
    // comparison. Subclasses (bool is an int) fall through to the slower checks below.
    if obj.is_exact_instance_of::<PyString>() {
        let s = obj
            .cast::<PyString>()
            .map_err(|e| JsonWriteError(e.to_string()))?;
        write_json_str(s.to_str().map_err(err)?, out);
    } else if obj.is_exact_instance_of::<PyInt>() {
        write_json_int(obj, out)?;
    } else if let Ok(f) = obj.cast_exact::<PyFloat>() {
        write_json_float(f.value(), out);
    } else if let Ok(dict) = obj.cast::<PyDict>() {
        write_json_dict(dict, out)?;
    } else if obj.is_none() {
        out.extend_from_slice(b"null");
    } else if let Ok(b) = obj.cast::<PyBool>() {
        out.extend_from_slice(if b.is_true() { b"true" } else { b"false" });
    } else if let Ok(list) = obj.cast::<PyList>() {
        write_json_array(list.iter(), out)?;
    } else if let Ok(tuple) = obj.cast::<PyTuple>() {
        write_json_array(tuple.iter(), out)?;
    } else if let Ok(s) = obj.cast::<PyString>() {
        write_json_str(s.to_str().map_err(err)?, out);
    } else if obj.is_instance_of::<PyInt>() {
        write_json_int(obj, out)?;
    } else if let Ok(f) = obj.cast::<PyFloat>() {
        write_json_float(f.value(), out);
    } else {
        return Err(JsonWriteError(format!(
            "a Python {} cannot be written as JSON",
            type_name(obj)
        )));
    }
    Ok(())
}

/// Writes a dict. Dicts with string keys, the common case, are read slot by slot without
/// taking references; others (keys written as their str()) go through the general path.
fn write_json_dict(dict: &Bound<'_, PyDict>, out: &mut Vec<u8>) -> Result<(), JsonWriteError> {
    let start = out.len();
    out.push(b'{');
    let mut position: ffi::Py_ssize_t = 0;
    let mut key: *mut ffi::PyObject = std::ptr::null_mut();
    let mut value: *mut ffi::PyObject = std::ptr::null_mut();
    let mut first = true;
    // SAFETY: the GIL is held (`dict` is bound). PyDict_Next hands out borrowed references that
    // stay valid while the dict is unchanged; the fast paths below run no Python code, and any
    // other value is written through `write_json` after taking a reference of its own.
    while unsafe { ffi::PyDict_Next(dict.as_ptr(), &mut position, &mut key, &mut value) } != 0 {
        if unsafe { ffi::PyUnicode_CheckExact(key) } == 0 {
            out.truncate(start);
            return write_json_dict_general(dict, out);
        }
        if !first {
            out.push(b',');
        }
        first = false;
        write_json_str(unsafe { exact_str(dict.py(), key) }?, out);
        out.push(b':');
        unsafe { write_json_borrowed(dict.py(), value, out) }?;
    }
    out.push(b'}');
    Ok(())
}

/// The UTF-8 text of an exact `str`.
///
/// # Safety
/// `ptr` must be a live exact `str` and the GIL held; the text lives as long as the object.
unsafe fn exact_str<'a>(
    py: Python<'_>,
    ptr: *mut ffi::PyObject,
) -> Result<&'a str, JsonWriteError> {
    let mut size: ffi::Py_ssize_t = 0;
    // SAFETY: as the caller promises; the result is checked for null.
    let data = unsafe { ffi::PyUnicode_AsUTF8AndSize(ptr, &mut size) };
    if data.is_null() {
        return Err(JsonWriteError(PyErr::fetch(py).to_string()));
    }
    // SAFETY: CPython returns the str's cached UTF-8 form, `size` bytes long, valid UTF-8.
    Ok(unsafe {
        std::str::from_utf8_unchecked(std::slice::from_raw_parts(data.cast::<u8>(), size as usize))
    })
}

/// Writes a value read from a container without a reference of its own.
///
/// # Safety
/// `ptr` must be a live object and the GIL held.
unsafe fn write_json_borrowed(
    py: Python<'_>,
    ptr: *mut ffi::PyObject,
    out: &mut Vec<u8>,
) -> Result<(), JsonWriteError> {
    // SAFETY: type checks and reads of a live object under the GIL.
    unsafe {
        if ffi::PyUnicode_CheckExact(ptr) != 0 {
            write_json_str(exact_str(py, ptr)?, out);
        } else if ffi::PyFloat_CheckExact(ptr) != 0 {
            write_json_float(ffi::PyFloat_AS_DOUBLE(ptr), out);
        } else if ptr == ffi::Py_True() {
            out.extend_from_slice(b"true");
        } else if ptr == ffi::Py_False() {
            out.extend_from_slice(b"false");
        } else if ptr == ffi::Py_None() {
            out.extend_from_slice(b"null");
        } else {
            // Everything else (ints included: they may be big) through the general path,
            // holding a reference.
            write_json(&Bound::from_borrowed_ptr(py, ptr), out)?;
        }
    }
    Ok(())
}

fn write_json_dict_general(
    dict: &Bound<'_, PyDict>,
    out: &mut Vec<u8>,
) -> Result<(), JsonWriteError> {
    let err = |e: PyErr| JsonWriteError(e.to_string());
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
    Ok(())
}

fn write_json_array<'py>(
    items: impl Iterator<Item = Bound<'py, PyAny>>,
    out: &mut Vec<u8>,
) -> Result<(), JsonWriteError> {
    out.push(b'[');
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json(&item, out)?;
    }
    out.push(b']');
    Ok(())
}

fn write_json_int(obj: &Bound<'_, PyAny>, out: &mut Vec<u8>) -> Result<(), JsonWriteError> {
    let err = |e: PyErr| JsonWriteError(e.to_string());
    match obj.extract::<i64>() {
        // Writing a number into a Vec cannot fail.
        Ok(v) => {
            let _ = serde_json::to_writer(&mut *out, &v);
        }
        // Beyond 64 bits: Python's own digits.
        Err(_) => out.extend_from_slice(obj.str().map_err(err)?.to_str().map_err(err)?.as_bytes()),
    }
    Ok(())
}

/// Floats as the shortest text that reads back the same; NaN and infinities, which JSON
/// cannot hold, as null.
fn write_json_float(v: f64, out: &mut Vec<u8>) {
    if v.is_finite() {
        let _ = serde_json::to_writer(&mut *out, &v);
    } else {
        out.extend_from_slice(b"null");
    }
}

fn write_json_str(s: &str, out: &mut Vec<u8>) {
    if crate::scan::plain_prefix(s.as_bytes()) == s.len() {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // serde_json's escaping of a plain string never fails.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}
