//! An entry point for fuzzing and property tests: arbitrary bytes through the JSON-to-Python
//! decoder, checked against serde_json. It must never panic.

use pyo3::Python;

use crate::convert::write_json;
use crate::json_to_py::json_to_py;

/// Decodes `data` as JSON into Python objects and checks the result against serde_json's
/// reading of the same bytes: both accept or both refuse, and what is accepted reads back as
/// the same JSON value. Panics (a finding) when they disagree.
pub fn json_to_python(data: &[u8]) {
    let expected = serde_json::from_slice::<serde_json::Value>(data);
    Python::attach(|py| match (json_to_py(py, data), expected) {
        (Ok(object), Ok(expected)) => {
            let mut written = Vec::new();
            write_json(&object, &mut written).expect("a decoded value writes back");
            let again: serde_json::Value =
                serde_json::from_slice(&written).expect("written JSON reads back");
            assert!(
                same(&again, &expected),
                "the decoded value differs from serde_json's: {again} against {expected}"
            );
        }
        (Err(_), Err(_)) => {}
        // Python's json module and Jackson (KSML on Kafka Streams) read numbers beyond the
        // largest double as infinities, which serde_json refuses.
        (Ok(_), Err(e)) if e.to_string().starts_with("number out of range") => {}
        (Ok(_), Err(e)) => panic!("accepted what serde_json refuses ({e})"),
        (Err(e), Ok(_)) => panic!("refused what serde_json accepts: {e}"),
    });
}

/// JSON values alike, numbers by value: Python reads `-0` as the integer 0, where serde_json
/// reads the float -0.0.
fn same(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i128(), y.as_i128()) {
            (Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((kx, vx), (ky, vy))| kx == ky && same(vx, vy))
        }
        _ => a == b,
    }
}
