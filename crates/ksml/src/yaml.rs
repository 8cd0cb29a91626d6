//! YAML documents as trees of nodes that remember where they were written, so that every
//! problem found later can be reported as `file:line:col`.

use std::collections::HashMap;
use std::fmt;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

/// A 1-based line and column in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Mark {
    pub line: usize,
    pub col: usize,
}

impl fmt::Display for Mark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// A YAML node.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    /// A scalar; `plain` is false for quoted and block scalars (which are always strings).
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub kind: NodeKind,
    pub mark: Mark,
}

/// A YAML syntax problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub mark: Mark,
    pub message: String,
}

impl Node {
    /// True for `null`, `~` and empty plain scalars.
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, NodeKind::Scalar { text, plain: true, .. }
            if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// The scalar's text (any scalar, whatever its YAML type).
    pub fn as_scalar(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// A YAML 1.2 core-schema boolean.
    pub fn as_bool(&self) -> Option<bool> {
        match &self.kind {
            NodeKind::Scalar {
                text, plain: true, ..
            } => match text.as_str() {
                "true" | "True" | "TRUE" => Some(true),
                "false" | "False" | "FALSE" => Some(false),
                _ => None,
            },
            _ => None,
        }
    }

    /// A YAML 1.2 core-schema integer (decimal, 0x hex, 0o octal).
    pub fn as_i64(&self) -> Option<i64> {
        let NodeKind::Scalar {
            text, plain: true, ..
        } = &self.kind
        else {
            return None;
        };
        let t = text.trim().replace('_', "");
        if let Some(hex) = t.strip_prefix("0x") {
            return i64::from_str_radix(hex, 16).ok();
        }
        if let Some(oct) = t.strip_prefix("0o") {
            return i64::from_str_radix(oct, 8).ok();
        }
        t.parse().ok()
    }

    /// The node as a value: plain scalars as null, booleans, integers (long) or floats
    /// (double) where they read as such, other scalars as strings, sequences as lists and
    /// mappings as structs.
    pub fn to_value(&self) -> millrace_types::Value {
        use millrace_types::Value;
        match &self.kind {
            NodeKind::Scalar { text, plain } => {
                if self.is_null() {
                    Value::Null
                } else if let Some(b) = self.as_bool() {
                    Value::Boolean(b)
                } else if let Some(n) = self.as_i64() {
                    Value::Long(n)
                } else if let Some(x) = plain.then(|| text.parse::<f64>().ok()).flatten() {
                    Value::Double(x)
                } else {
                    Value::String(text.clone())
                }
            }
            NodeKind::Seq(items) => Value::List(items.iter().map(Node::to_value).collect()),
            NodeKind::Map(entries) => Value::Struct(
                entries
                    .iter()
                    .map(|(k, v)| (k.as_scalar().unwrap_or_default().to_string(), v.to_value()))
                    .collect(),
            ),
        }
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.kind {
            NodeKind::Map(entries) => Some(entries),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.kind {
            NodeKind::Seq(items) => Some(items),
            _ => None,
        }
    }

    /// The value under a key of a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_scalar() == Some(key))
            .map(|(_, v)| v)
    }

    /// What kind of node this is, for messages.
    pub fn describe(&self) -> &'static str {
        match &self.kind {
            NodeKind::Scalar { .. } if self.is_null() => "null",
            NodeKind::Scalar { .. } => "a scalar",
            NodeKind::Seq(_) => "a list",
            NodeKind::Map(_) => "a mapping",
        }
    }

    /// The 1-based line where a scalar's text begins (for block scalars, `|` and `>`, the
    /// parser marks the first content line, not the indicator).
    pub fn text_line(&self) -> usize {
        self.mark.line
    }
}

fn mark_of(span: &Span) -> Mark {
    Mark {
        line: span.start.line(),
        col: span.start.col() + 1,
    }
}

/// Containers being built while events arrive.
enum Open {
    Seq(Vec<Node>, Mark, usize),
    Map(Vec<(Node, Node)>, Option<Node>, Mark, usize),
}

/// Parses the first document of a YAML text. An empty text is an empty mapping.
pub fn parse(text: &str) -> Result<Node, YamlError> {
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Open> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut root: Option<Node> = None;
    while let Some(next) = parser.next_event() {
        let (event, span) = next.map_err(|e| YamlError {
            mark: Mark {
                line: e.marker().line(),
                col: e.marker().col() + 1,
            },
            message: e.info().to_string(),
        })?;
        let mark = mark_of(&span);
        let completed = match event {
            Event::StreamStart | Event::DocumentStart(_) | Event::Nothing => continue,
            Event::DocumentEnd | Event::StreamEnd => {
                if root.is_some() {
                    break;
                }
                continue;
            }
            Event::Alias(id) => anchors.get(&id).cloned().ok_or_else(|| YamlError {
                mark,
                message: "alias refers to an unknown anchor".into(),
            })?,
            Event::Scalar(value, style, anchor, _tag) => {
                let mut mark = mark;
                if matches!(style, ScalarStyle::Literal | ScalarStyle::Folded) {
                    // The parser marks a block scalar's first line with text; blank lines
                    // before it are newlines at the start of the value.
                    let blank = value.len() - value.trim_start_matches('\n').len();
                    mark.line = mark.line.saturating_sub(blank).max(1);
                }
                let node = Node {
                    kind: NodeKind::Scalar {
                        text: value.to_string(),
                        plain: style == ScalarStyle::Plain,
                    },
                    mark,
                };
                if anchor > 0 {
                    anchors.insert(anchor, node.clone());
                }
                node
            }
            Event::SequenceStart(anchor, _) => {
                stack.push(Open::Seq(Vec::new(), mark, anchor));
                continue;
            }
            Event::MappingStart(anchor, _) => {
                stack.push(Open::Map(Vec::new(), None, mark, anchor));
                continue;
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Open::Seq(items, mark, anchor)) => {
                    let node = Node {
                        kind: NodeKind::Seq(items),
                        mark,
                    };
                    if anchor > 0 {
                        anchors.insert(anchor, node.clone());
                    }
                    node
                }
                _ => unreachable!("the parser balances sequences"),
            },
            Event::MappingEnd => match stack.pop() {
                Some(Open::Map(entries, _, mark, anchor)) => {
                    check_duplicate_keys(&entries)?;
                    let node = Node {
                        kind: NodeKind::Map(merge_keys(entries)),
                        mark,
                    };
                    if anchor > 0 {
                        anchors.insert(anchor, node.clone());
                    }
                    node
                }
                _ => unreachable!("the parser balances mappings"),
            },
        };
        match stack.last_mut() {
            None => root = Some(completed),
            Some(Open::Seq(items, _, _)) => items.push(completed),
            Some(Open::Map(entries, pending_key, _, _)) => match pending_key.take() {
                None => *pending_key = Some(completed),
                Some(key) => entries.push((key, completed)),
            },
        }
    }
    Ok(root.filter(|r| !r.is_null()).unwrap_or(Node {
        kind: NodeKind::Map(Vec::new()),
        mark: Mark { line: 1, col: 1 },
    }))
}

fn check_duplicate_keys(entries: &[(Node, Node)]) -> Result<(), YamlError> {
    let mut seen: HashMap<&str, Mark> = HashMap::new();
    for (key, _) in entries {
        if let Some(text) = key.as_scalar()
            && text != "<<"
            && let Some(first) = seen.insert(text, key.mark)
        {
            return Err(YamlError {
                mark: key.mark,
                message: format!("duplicate key '{text}' (first at line {})", first.line),
            });
        }
    }
    Ok(())
}

/// Applies YAML merge keys (`<<: *anchor`): merged entries come first, explicit ones win.
fn merge_keys(entries: Vec<(Node, Node)>) -> Vec<(Node, Node)> {
    if !entries.iter().any(|(k, _)| k.as_scalar() == Some("<<")) {
        return entries;
    }
    let mut merged: Vec<(Node, Node)> = Vec::new();
    let mut own = Vec::new();
    for (key, value) in entries {
        if key.as_scalar() == Some("<<") {
            let sources = match &value.kind {
                NodeKind::Seq(items) => items.clone(),
                _ => vec![value],
            };
            for source in sources {
                if let NodeKind::Map(inner) = source.kind {
                    merged.extend(inner);
                }
            }
        } else {
            own.push((key, value));
        }
    }
    merged.retain(|(k, _)| !own.iter().any(|(o, _)| o.as_scalar() == k.as_scalar()));
    merged.extend(own);
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_point_at_nodes() {
        let doc = parse("streams:\n  input:\n    topic: in\n    keyType: string\n").unwrap();
        let topic = doc
            .get("streams")
            .unwrap()
            .get("input")
            .unwrap()
            .get("topic");
        assert_eq!(topic.unwrap().mark, Mark { line: 3, col: 12 });
    }

    #[test]
    fn block_scalar_text_starts_on_its_first_content_line() {
        let doc = parse("code: |\n  x = 1\n  y = 2\n").unwrap();
        let code = doc.get("code").unwrap();
        assert_eq!(code.as_scalar(), Some("x = 1\ny = 2\n"));
        assert_eq!(code.text_line(), 2);
        let blank_first = parse("a: 1\ncode: |\n\n\n  x = 1\n").unwrap();
        let code = blank_first.get("code").unwrap();
        assert_eq!(code.as_scalar(), Some("\n\nx = 1\n"));
        assert_eq!(code.text_line(), 3, "the text starts with the blank lines");
    }

    #[test]
    fn scalars_follow_the_core_schema() {
        let doc = parse("a: true\nb: '12'\nc: 12\nd: ~\ne: 0x1f").unwrap();
        assert_eq!(doc.get("a").unwrap().as_bool(), Some(true));
        assert_eq!(doc.get("b").unwrap().as_i64(), None, "quoted is a string");
        assert_eq!(doc.get("c").unwrap().as_i64(), Some(12));
        assert!(doc.get("d").unwrap().is_null());
        assert_eq!(doc.get("e").unwrap().as_i64(), Some(31));
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let err = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(err.mark, Mark { line: 3, col: 1 });
        assert_eq!(err.message, "duplicate key 'a' (first at line 1)");
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.mark.line >= 1, "{err:?}");
        assert!(!err.message.is_empty());
    }

    #[test]
    fn anchors_and_merge_keys() {
        let doc = parse("base: &b\n  x: 1\n  y: 2\nuse:\n  <<: *b\n  y: 3\n").unwrap();
        let used = doc.get("use").unwrap();
        assert_eq!(used.get("x").unwrap().as_i64(), Some(1));
        assert_eq!(used.get("y").unwrap().as_i64(), Some(3));
    }
}
