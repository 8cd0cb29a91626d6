use millrace_types::{DataType, Value};

use super::*;
use crate::convert::{bytes_to_py, py_to_bytes, py_to_value, value_to_py};

fn spec(name: &str, code: Option<Snippet>, expression: Option<Snippet>) -> FunctionSpec {
    FunctionSpec {
        name: name.into(),
        logger_kind: "function",
        parameters: ["key", "value"]
            .iter()
            .map(|n| Parameter {
                name: n.to_string(),
                default: None,
            })
            .collect(),
        code,
        expression,
        default_expression: Some("value".into()),
        stores: vec![],
    }
}

fn call2<'py>(
    py: Python<'py>,
    f: &PyFunction,
    key: Value,
    value: Value,
) -> Result<Value, PythonError> {
    let args = [
        value_to_py(py, &key).unwrap(),
        value_to_py(py, &value).unwrap(),
    ];
    Ok(py_to_value(&f.call(py, &args)?).unwrap())
}

#[test]
fn code_then_expression_with_shared_globals() {
    Python::attach(|py| {
        let ns = Namespace::new(py, "app", "defs.yaml").unwrap();
        ns.run_global_code(py, "scale", &Snippet::detached("FACTOR = 3"))
            .unwrap();
        let helper = ns
            .define(
                py,
                &spec("helper", None, Some(Snippet::detached("value * FACTOR"))),
            )
            .unwrap();
        let user = ns
            .define(
                py,
                &spec(
                    "user",
                    Some(Snippet::detached(
                        "doubled = helper(key, value)\nif key == 'early':\n  return -1",
                    )),
                    Some(Snippet::detached("doubled + 1")),
                ),
            )
            .unwrap();
        assert_eq!(
            call2(py, &helper, Value::Null, Value::Long(2)).unwrap(),
            Value::Long(6)
        );
        assert_eq!(
            call2(py, &user, Value::String("k".into()), Value::Long(2)).unwrap(),
            Value::Long(7)
        );
        assert_eq!(
            call2(py, &user, Value::String("early".into()), Value::Long(2)).unwrap(),
            Value::Long(-1)
        );
        // Another file's namespace does not see FACTOR.
        let other = Namespace::new(py, "other", "other.yaml").unwrap();
        let f = other
            .define(py, &spec("f", None, Some(Snippet::detached("FACTOR"))))
            .unwrap();
        let err = call2(py, &f, Value::Null, Value::Null).unwrap_err();
        assert_eq!(err.exception, "NameError: name 'FACTOR' is not defined");
    });
}

#[test]
fn default_expression_applies_when_code_falls_through() {
    Python::attach(|py| {
        let ns = Namespace::new(py, "app", "defs.yaml").unwrap();
        let f = ns
            .define(py, &spec("f", Some(Snippet::detached("x = 1")), None))
            .unwrap();
        assert_eq!(
            call2(py, &f, Value::Null, Value::String("same".into())).unwrap(),
            Value::String("same".into())
        );
    });
}

#[test]
fn exceptions_name_function_file_and_yaml_line() {
    let dir = std::env::temp_dir().join(format!("millrace-py-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("defs.yaml");
    std::fs::write(
        &file,
        "functions:\n  divide:\n    type: valueTransformer\n    code: |\n      x = 1\n      return x / value\n",
    )
    .unwrap();
    let file = file.to_string_lossy().to_string();
    Python::attach(|py| {
        let ns = Namespace::new(py, "app", &file).unwrap();
        let code = Snippet {
            text: "x = 1\nreturn x / value".into(),
            line: Some(5),
        };
        let f = ns.define(py, &spec("divide", Some(code), None)).unwrap();
        let err = call2(py, &f, Value::Null, Value::Long(0)).unwrap_err();
        assert_eq!(err.context, format!("function 'divide' in {file}"));
        assert_eq!(err.exception, "ZeroDivisionError: division by zero");
        assert!(
            err.traceback
                .contains(&format!("File \"{file}\", line 6, in divide")),
            "{}",
            err.traceback
        );
        assert!(
            err.traceback.contains("return x / value"),
            "{}",
            err.traceback
        );
    });
}

#[test]
fn syntax_errors_are_reported_at_definition() {
    Python::attach(|py| {
        let ns = Namespace::new(py, "app", "defs.yaml").unwrap();
        let err = ns
            .define(
                py,
                &spec("broken", Some(Snippet::detached("if x\n  pass")), None),
            )
            .err()
            .expect("a syntax error");
        assert!(
            err.exception.starts_with("SyntaxError"),
            "{}",
            err.exception
        );
        assert_eq!(err.context, "function 'broken' in defs.yaml");
    });
}

#[test]
fn log_placeholders_follow_slf4j() {
    Python::attach(|py| {
        let ns = Namespace::new(py, "app", "defs.yaml").unwrap();
        let f = ns
            .define(
                py,
                &spec(
                    "fmt",
                    None,
                    Some(Snippet::detached(
                        "__import__('millrace_support')._format('a={} b={:.2f} c={}', (1, 2.5))",
                    )),
                ),
            )
            .unwrap();
        assert_eq!(
            call2(py, &f, Value::Null, Value::Null).unwrap(),
            Value::String("a=1 b={:.2f} c=2.5".into())
        );
        let logs = ns
            .define(
                py,
                &spec(
                    "logs",
                    Some(Snippet::detached(
                        "log.info('x {}', 1)\nlog.warn('w')\nmetrics.counter('seen').increment()",
                    )),
                    Some(Snippet::detached("log.isErrorEnabled() in (True, False)")),
                ),
            )
            .unwrap();
        assert_eq!(
            call2(py, &logs, Value::Null, Value::Null).unwrap(),
            Value::Boolean(true)
        );
        assert!(
            user_metrics()
                .iter()
                .any(|m| m.name == "seen" && m.kind == "counter" && m.total >= 1.0)
        );
    });
}

#[test]
fn record_bytes_to_python_and_back() {
    Python::attach(|py| {
        let json = DataType::Json;
        let text = br#"{"user":"ann","n":3,"score":1.5,"tags":["a",null],"ok":true}"#;
        let obj = bytes_to_py(py, Some(text), &json).unwrap();
        assert_eq!(
            py_to_bytes(&obj, &json).unwrap().unwrap(),
            text.to_vec(),
            "field order and values survive"
        );
        let err = bytes_to_py(py, Some(b"{bad"), &json).unwrap_err();
        assert!(err.to_string().contains("invalid JSON"), "{err}");
        let long = bytes_to_py(py, Some(&5i64.to_be_bytes()), &DataType::Long).unwrap();
        assert_eq!(long.extract::<i64>().unwrap(), 5);
        assert_eq!(
            py_to_bytes(&long, &DataType::String).unwrap().unwrap(),
            b"5".to_vec()
        );
        let s = bytes_to_py(py, Some(b"hi"), &DataType::String).unwrap();
        assert_eq!(
            py_to_bytes(&s, &DataType::String).unwrap().unwrap(),
            b"hi".to_vec()
        );
        let tuple = Value::Tuple(vec![Value::String("a".into()), Value::Long(1)]);
        let obj = value_to_py(py, &tuple).unwrap();
        assert_eq!(py_to_value(&obj).unwrap(), tuple);
        assert!(
            py_to_bytes(&py.None().into_bound(py), &json)
                .unwrap()
                .is_none()
        );
        let set = py.eval(c"{1, 2}", None, None).unwrap();
        assert!(py_to_bytes(&set, &json).is_err());
    });
}

#[test]
fn json_parser_handles_the_whole_grammar() {
    Python::attach(|py| {
        let parse = |text: &str| {
            bytes_to_py(py, Some(text.as_bytes()), &DataType::Json)
                .map(|obj| py_to_value(&obj).unwrap())
        };
        assert_eq!(
            parse(r#" {"a": [1, -2.5e1, true, false, null, {}], "b": "x\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00"} "#)
                .unwrap(),
            Value::Struct(vec![
                (
                    "a".into(),
                    Value::List(vec![
                        Value::Long(1),
                        Value::Double(-25.0),
                        Value::Boolean(true),
                        Value::Boolean(false),
                        Value::Null,
                        Value::Struct(vec![]),
                    ])
                ),
                ("b".into(), Value::String("x\"\\/\u{8}\u{c}\n\r\té😀".into())),
            ])
        );
        assert_eq!(parse("\"héllo\"").unwrap(), Value::String("héllo".into()));
        assert_eq!(parse("[]").unwrap(), Value::List(vec![]));
        // Beyond 64 bits stays an exact Python int.
        let big =
            bytes_to_py(py, Some(b"123456789012345678901234567890"), &DataType::Json).unwrap();
        assert_eq!(
            big.str().unwrap().to_string(),
            "123456789012345678901234567890"
        );
        for (bad, why) in [
            ("{\"a\" 1}", "expected ':' after an object key at byte 5"),
            ("[1, 2", "expected ',' or ']' in an array at byte 5"),
            ("\"open", "unterminated string at byte 5"),
            ("01", "unexpected characters after the JSON value at byte 1"),
            ("1.", "expected digits after '.' at byte 2"),
            ("\"\\x\"", "invalid escape in a string at byte 2"),
            ("\"\\ud800\"", "invalid \\u escape at byte 3"),
            ("nul", "expected a JSON value at byte 0"),
            ("", "unexpected end of JSON at byte 0"),
        ] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(err.ends_with(why), "{bad:?}: {err}");
        }
        let deep = "[".repeat(600) + &"]".repeat(600);
        assert!(
            parse(&deep)
                .unwrap_err()
                .to_string()
                .contains("nested too deeply")
        );
        let invalid_utf8 = bytes_to_py(py, Some(b"\"\xff\""), &DataType::Json).unwrap_err();
        assert!(
            invalid_utf8.to_string().contains("invalid UTF-8"),
            "{invalid_utf8}"
        );
    });
}

#[test]
fn json_keys_are_interned_and_shared() {
    Python::attach(|py| {
        let a = bytes_to_py(py, Some(br#"{"shared_key": 1}"#), &DataType::Json).unwrap();
        let b = bytes_to_py(py, Some(br#"{"shared_key": 2}"#), &DataType::Json).unwrap();
        fn first_key<'py>(d: &Bound<'py, PyAny>) -> Bound<'py, PyAny> {
            d.cast::<PyDict>().unwrap().keys().get_item(0).unwrap()
        }
        assert!(
            first_key(&a).is(first_key(&b)),
            "one str object for a repeated key"
        );
        let written = py_to_bytes(&a, &DataType::Json).unwrap().unwrap();
        assert_eq!(written, br#"{"shared_key":1}"#.to_vec());
    });
}

#[test]
fn dicts_of_every_kind_are_written_as_json() {
    Python::attach(|py| {
        let write = |expr: &std::ffi::CStr| {
            let obj = py.eval(expr, None, None).unwrap();
            String::from_utf8(py_to_bytes(&obj, &DataType::Json).unwrap().unwrap()).unwrap()
        };
        assert_eq!(
            write(c"{'s': 'x\"y', 'i': -3, 'big': 2**70, 'f': 0.5, 'n': None, 't': True, 'l': [1, (2, 'z')], 'd': {'e': False}}"),
            r#"{"s":"x\"y","i":-3,"big":1180591620717411303424,"f":0.5,"n":null,"t":true,"l":[1,[2,"z"]],"d":{"e":false}}"#
        );
        // Keys that are not strings are written as their str(), in order.
        assert_eq!(
            write(c"{1: 'a', 'b': 2, (3, 4): None}"),
            r#"{"1":"a","b":2,"(3, 4)":null}"#
        );
        assert_eq!(
            write(c"{'nan': float('nan'), 'é': 'ü'}"),
            r#"{"nan":null,"é":"ü"}"#
        );
    });
}
