//! Keys and values in flight between operators. A record read from a topic stays as its bytes
//! until an operator needs it as a Python object, and bytes that reach a sink of the same type
//! unchanged are written as they are: filters and branches cost no conversion.

use bytes::Bytes;
use millrace_python::convert::{bytes_to_py, py_to_bytes, py_to_value, value_to_py};
use millrace_python::pyo3::prelude::*;
use millrace_python::pyo3::types::{PyBool, PyDict, PyInt, PyList, PyString};
use millrace_types::DataType;
use millrace_types::codec::{self, CodecError};

/// A key or value: null, bytes encoded in the type of the operator holding them (with their
/// Python object once some function needed it, so bytes are decoded at most once), or a Python
/// object made by a function.
#[derive(Clone)]
pub enum Datum<'py> {
    Null,
    Raw(Bytes),
    Decoded(Bytes, Bound<'py, PyAny>),
    Py(Bound<'py, PyAny>),
}

impl<'py> Datum<'py> {
    /// True for a null: no bytes, or Python's None.
    pub fn is_null(&self) -> bool {
        match self {
            Datum::Null => true,
            Datum::Py(obj) => obj.is_none(),
            Datum::Raw(_) | Datum::Decoded(..) => false,
        }
    }

    pub fn from_bytes(bytes: Option<Bytes>) -> Datum<'py> {
        bytes.map_or(Datum::Null, Datum::Raw)
    }

    /// The datum as a Python object; `ty` is the type raw bytes are encoded in. Decoded bytes
    /// keep their object for the next function that needs it.
    pub fn as_py(
        &mut self,
        py: Python<'py>,
        ty: &DataType,
    ) -> Result<Bound<'py, PyAny>, CodecError> {
        match self {
            Datum::Null => Ok(py.None().into_bound(py)),
            Datum::Raw(bytes) => {
                let obj = bytes_to_py(py, Some(bytes), ty)?;
                *self = Datum::Decoded(bytes.clone(), obj.clone());
                Ok(obj)
            }
            Datum::Decoded(_, obj) | Datum::Py(obj) => Ok(obj.clone()),
        }
    }

    /// Checks that bytes no operator has decoded yet are of their declared type `ty`, as Kafka
    /// Streams' deserializer would at the source: bytes copied to a sink unchanged must not
    /// carry what the stream's type forbids.
    pub fn check(&self, ty: &DataType) -> Result<(), CodecError> {
        match self {
            Datum::Raw(bytes) => codec::validate(bytes, ty),
            Datum::Null | Datum::Decoded(..) | Datum::Py(_) => Ok(()),
        }
    }

    /// Record bytes of type `to`; `from` is the type raw bytes are encoded in.
    pub fn to_bytes(&self, from: &DataType, to: &DataType) -> Result<Option<Bytes>, CodecError> {
        match self {
            Datum::Null => Ok(None),
            Datum::Raw(bytes) | Datum::Decoded(bytes, _) if from == to || to.is_any() => {
                Ok(Some(bytes.clone()))
            }
            Datum::Raw(bytes) | Datum::Decoded(bytes, _) => {
                let value = codec::decode(Some(bytes), from)?;
                let value = value.coerce(to).map_err(|e| CodecError::Encode {
                    ty: to.to_string(),
                    kind: "record",
                    reason: e.0,
                })?;
                Ok(codec::encode(&value, to)?.map(Bytes::from))
            }
            Datum::Py(obj) => {
                if obj.is_none() {
                    return Ok(None);
                }
                Ok(py_to_bytes(obj, to)?.map(Bytes::from))
            }
        }
    }
}

/// Makes a function result fit its declared type, as KSML converts results: values already of
/// the type pass untouched (the common case costs a type check), others are converted.
pub fn conform<'py>(obj: Bound<'py, PyAny>, ty: &DataType) -> Result<Bound<'py, PyAny>, String> {
    if obj.is_none() {
        return Ok(obj);
    }
    let fits = match ty {
        DataType::Any | DataType::Json | DataType::Schema { .. } => true,
        DataType::String | DataType::Enum(_) => obj.is_exact_instance_of::<PyString>(),
        DataType::Long | DataType::Int | DataType::Short | DataType::Byte => {
            obj.is_instance_of::<PyInt>() && !obj.is_instance_of::<PyBool>()
        }
        DataType::Boolean => obj.is_instance_of::<PyBool>(),
        DataType::Struct | DataType::Map(_) => obj.is_instance_of::<PyDict>(),
        DataType::List(inner) => inner.is_any() && obj.is_instance_of::<PyList>(),
        _ => false,
    };
    if fits {
        return Ok(obj);
    }
    let value = py_to_value(&obj)?;
    let converted = value.coerce(ty).map_err(|e| e.0)?;
    value_to_py(obj.py(), &converted).map_err(|e| e.to_string())
}
