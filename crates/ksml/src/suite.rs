//! KSML test-runner suites: a definition, the streams a test writes and reads, and tests that
//! produce messages and then assert on records and stores in Python.
//!
//! ```yaml
//! name: counting
//! definition: counting.yaml          # relative to the suite file
//! streams:
//!   input: {topic: input, keyType: string, valueType: json}
//! tests:
//!   counts_per_key:
//!     description: every key is counted
//!     produce:
//!       - to: input
//!         messages:
//!           - {key: a, value: {n: 1}, timestamp: 1000}
//!       - to: input
//!         generator: {code: "...", expression: "('k', {'n': 2})"}
//!         count: 10
//!     assert:
//!       - on: output                 # `records`: a list of {key, value, timestamp}
//!         code: assert len(records) == 11
//!       - stores: [counts]           # each store bound to its name
//!         code: assert counts.get('a') == 1
//! ```

use std::path::{Path, PathBuf};

use millrace_python::Snippet;
use millrace_types::{DataType, Value};

use crate::diagnostics::{Diagnostic, Diagnostics, read_yaml_file};
use crate::parse::Fields;
use crate::yaml::Node;

/// A parsed suite.
#[derive(Debug, Clone)]
pub struct Suite {
    pub name: String,
    pub file: PathBuf,
    /// The definition under test, resolved against the suite's folder.
    pub definition: PathBuf,
    /// Streams by name: (topic, key type, value type).
    pub streams: Vec<(String, SuiteStream)>,
    pub tests: Vec<SuiteTest>,
}

#[derive(Debug, Clone)]
pub struct SuiteStream {
    pub topic: String,
    pub key_type: DataType,
    pub value_type: DataType,
}

#[derive(Debug, Clone)]
pub struct SuiteTest {
    pub name: String,
    pub description: Option<String>,
    pub produce: Vec<Produce>,
    pub asserts: Vec<Assertion>,
}

/// Messages written to a stream before the definition runs.
#[derive(Debug, Clone)]
pub struct Produce {
    /// A stream of the suite.
    pub to: String,
    pub messages: Messages,
}

#[derive(Debug, Clone)]
pub enum Messages {
    /// Messages as written: key, value, timestamp (ms; the run's start when missing).
    Listed(Vec<(Value, Value, Option<i64>)>),
    /// A generator function (returning `(key, value)`) called `count` times.
    Generated {
        global_code: Option<Snippet>,
        code: Option<Snippet>,
        expression: Option<Snippet>,
        count: u64,
    },
}

/// Python code run after the definition, with `records` of a stream and the stores named.
#[derive(Debug, Clone)]
pub struct Assertion {
    pub on: Option<String>,
    pub stores: Vec<String>,
    pub code: Snippet,
}

impl Suite {
    pub fn stream(&self, name: &str) -> Option<&SuiteStream> {
        self.streams.iter().find(|(n, _)| n == name).map(|(_, s)| s)
    }

    /// Reads a suite file, reporting every problem with its place.
    pub fn load(path: &Path) -> Result<Suite, Vec<Diagnostic>> {
        read_yaml_file(
            path,
            |text, _| text,
            |root, diags| parse_suite(root, path, diags),
        )
    }
}

fn parse_suite(root: &Node, path: &Path, diags: &mut Diagnostics) -> Option<Suite> {
    let mut f = Fields::of(root, "the test suite", diags)?;
    let name = f
        .text("name", diags)
        .unwrap_or_else(|| path.display().to_string());
    let definition = f.text("definition", diags);
    if definition.is_none() {
        diags.error(
            root.mark,
            "the test suite needs 'definition' (the file under test)",
        );
    }
    for accepted in ["schemaDirectory", "moduleDirectory"] {
        if let Some(node) = f.take(accepted) {
            diags.warn(node.mark, format!("'{accepted}' is not acted on yet"));
        }
    }
    let mut streams = Vec::new();
    if let Some(node) = f.take("streams") {
        for (key, value) in node.as_map().unwrap_or_default() {
            let name = key.as_scalar().unwrap_or_default().to_string();
            if let Some(stream) = parse_stream(value, &name, diags) {
                streams.push((name, stream));
            }
        }
    }
    let mut tests = Vec::new();
    match f.take("tests").and_then(|n| n.as_map().map(|m| (n, m))) {
        Some((_, entries)) => {
            for (key, value) in entries {
                let name = key.as_scalar().unwrap_or_default().to_string();
                if let Some(test) = parse_test(value, &name, &streams, diags) {
                    tests.push(test);
                }
            }
        }
        None => diags.error(root.mark, "the test suite needs 'tests' (name: test)"),
    }
    f.finish_strict(diags);
    let base = path.parent().unwrap_or(Path::new("."));
    Some(Suite {
        name,
        file: path.to_path_buf(),
        definition: base.join(definition?),
        streams,
        tests,
    })
}

fn parse_stream(node: &Node, name: &str, diags: &mut Diagnostics) -> Option<SuiteStream> {
    let mut f = Fields::of(node, format!("stream '{name}'"), diags)?;
    let topic = f.text("topic", diags);
    let mut data_type = |field: &str, diags: &mut Diagnostics| {
        let text = f.text(field, diags).unwrap_or_else(|| "any".into());
        DataType::parse(&text)
            .map_err(|e| diags.error(node.mark, format!("stream '{name}': {e}")))
            .ok()
    };
    let key_type = data_type("keyType", diags);
    let value_type = data_type("valueType", diags);
    f.finish_strict(diags);
    if topic.is_none() {
        diags.error(node.mark, format!("stream '{name}' needs 'topic'"));
    }
    Some(SuiteStream {
        topic: topic?,
        key_type: key_type?,
        value_type: value_type?,
    })
}

fn parse_test(
    node: &Node,
    name: &str,
    streams: &[(String, SuiteStream)],
    diags: &mut Diagnostics,
) -> Option<SuiteTest> {
    let mut f = Fields::of(node, format!("test '{name}'"), diags)?;
    let description = f.text("description", diags);
    let known = |stream: &Node, diags: &mut Diagnostics| -> Option<String> {
        let name = stream.as_scalar()?.to_string();
        if !streams.iter().any(|(n, _)| *n == name) {
            diags.error(
                stream.mark,
                format!("'{name}' is not a stream of the suite"),
            );
        }
        Some(name)
    };
    let mut produce = Vec::new();
    for item in f.take("produce").and_then(Node::as_seq).unwrap_or_default() {
        let Some(mut p) = Fields::of(item, "a produce step", diags) else {
            continue;
        };
        let to = p.take("to").and_then(|n| known(n, diags));
        let messages = match (p.take("messages"), p.take("generator")) {
            (Some(list), None) => Some(Messages::Listed(
                list.as_seq()
                    .unwrap_or_default()
                    .iter()
                    .map(|m| {
                        (
                            m.get("key").map_or(Value::Null, Node::to_value),
                            m.get("value").map_or(Value::Null, Node::to_value),
                            m.get("timestamp").and_then(Node::as_i64),
                        )
                    })
                    .collect(),
            )),
            (None, Some(generator)) => {
                let count = p.integer("count", diags).unwrap_or(1).max(0) as u64;
                let snippet = |field: &str| {
                    generator.get(field).and_then(|n| {
                        Some(Snippet {
                            text: n.as_scalar()?.to_string(),
                            line: Some(n.text_line()),
                        })
                    })
                };
                Some(Messages::Generated {
                    global_code: snippet("globalCode"),
                    code: snippet("code"),
                    expression: snippet("expression"),
                    count,
                })
            }
            _ => {
                diags.error(
                    item.mark,
                    "a produce step needs either 'messages' or 'generator'",
                );
                None
            }
        };
        let _ = p.take("count");
        p.finish_strict(diags);
        if let (Some(to), Some(messages)) = (to, messages) {
            produce.push(Produce { to, messages });
        }
    }
    let mut asserts = Vec::new();
    for item in f.take("assert").and_then(Node::as_seq).unwrap_or_default() {
        let Some(mut a) = Fields::of(item, "an assertion", diags) else {
            continue;
        };
        let on = a.take("on").and_then(|n| known(n, diags));
        let stores = a
            .take("stores")
            .and_then(Node::as_seq)
            .unwrap_or_default()
            .iter()
            .filter_map(|s| s.as_scalar().map(str::to_string))
            .collect();
        let code = a.take("code").and_then(|n| {
            Some(Snippet {
                text: n.as_scalar()?.to_string(),
                line: Some(n.text_line()),
            })
        });
        a.finish_strict(diags);
        match code {
            Some(code) => asserts.push(Assertion { on, stores, code }),
            None => diags.error(item.mark, "an assertion needs 'code'"),
        }
    }
    f.finish_strict(diags);
    Some(SuiteTest {
        name: name.to_string(),
        description,
        produce,
        asserts,
    })
}
