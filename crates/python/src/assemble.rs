//! Turns a KSML function definition into Python source.
//!
//! The generated source is padded with blank lines so that the user's `code`, `expression` and
//! `globalCode` sit on the same line numbers as in the definition file. Compiled under the
//! file's name, Python's tracebacks then point at the right line of the YAML file and even
//! quote it.

/// Python text from a definition file and the 1-based line its first line sits on there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snippet {
    pub text: String,
    /// None when the position is unknown (text built by the runner): no alignment then.
    pub line: Option<usize>,
}

impl Snippet {
    /// A snippet with no position in a file.
    pub fn detached(text: impl Into<String>) -> Snippet {
        Snippet {
            text: text.into(),
            line: None,
        }
    }

    fn is_blank(&self) -> bool {
        self.text.trim().is_empty()
    }
}

/// A parameter of a generated function: its name and an optional default (Python source).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parameter {
    pub name: String,
    pub default: Option<String>,
}

/// Everything that shapes one generated `def`.
#[derive(Debug, Clone)]
pub struct FunctionSource<'a> {
    /// A valid Python identifier.
    pub name: &'a str,
    pub parameters: &'a [Parameter],
    /// Statements run before the user's code (binding `log` and stores).
    pub preamble: &'a [String],
    pub code: Option<&'a Snippet>,
    pub expression: Option<&'a Snippet>,
    /// Returned when there is no expression and the code does not return.
    pub default_expression: Option<&'a str>,
}

/// Builds source text line by line, padding with blank lines to reach a target line.
struct Lines {
    text: String,
    next_line: usize,
}

impl Lines {
    fn new() -> Lines {
        Lines {
            text: String::new(),
            next_line: 1,
        }
    }

    fn pad_to(&mut self, line: Option<usize>) {
        if let Some(line) = line {
            while self.next_line < line {
                self.text.push('\n');
                self.next_line += 1;
            }
        }
    }

    fn push(&mut self, indent: &str, line: &str) {
        if !line.trim().is_empty() {
            self.text.push_str(indent);
            self.text.push_str(line);
        }
        self.text.push('\n');
        self.next_line += 1;
    }
}

/// The `def` for a KSML function.
pub fn function_source(f: &FunctionSource<'_>) -> String {
    let mut lines = Lines::new();
    let code = f.code.filter(|c| !c.is_blank());
    let expression = f.expression.filter(|e| !e.is_blank());
    let first_line = code.or(expression).and_then(|s| s.line);
    // The `def` line and the preamble line come right before the first user line.
    lines.pad_to(first_line.and_then(|l| l.checked_sub(2)));
    let parameters: Vec<String> = f
        .parameters
        .iter()
        .map(|p| match &p.default {
            Some(default) => format!("{}={}", p.name, default),
            None => p.name.clone(),
        })
        .collect();
    lines.push("", &format!("def {}({}):", f.name, parameters.join(", ")));
    let preamble = if f.preamble.is_empty() {
        "pass".to_string()
    } else {
        f.preamble.join("; ")
    };
    lines.push("    ", &preamble);
    if let Some(code) = code {
        lines.pad_to(code.line);
        for line in code.text.lines() {
            lines.push("    ", line);
        }
    }
    match (expression, f.default_expression) {
        (Some(expression), _) => {
            lines.pad_to(expression.line);
            let mut expr_lines = expression.text.trim_end().lines();
            let first = expr_lines.next().unwrap_or_default();
            lines.push("    ", &format!("return ({first}"));
            for line in expr_lines {
                lines.push("        ", line);
            }
            lines.push("    ", ")");
        }
        (None, Some(default)) => lines.push("    ", &format!("return {default}")),
        (None, None) => {}
    }
    lines.text
}

/// Module-level code (`globalCode`), padded to its line in the file.
pub fn module_source(code: &Snippet) -> String {
    let mut lines = Lines::new();
    lines.pad_to(code.line);
    for line in code.text.lines() {
        lines.push("", line);
    }
    lines.text
}

/// A valid Python identifier made from a KSML name (inline functions get generated names).
pub fn python_identifier(name: &str) -> String {
    let mut id: String = name
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if id.is_empty() || id.starts_with(|c: char| c.is_ascii_digit()) {
        id.insert(0, '_');
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(names: &[&str]) -> Vec<Parameter> {
        names
            .iter()
            .map(|n| Parameter {
                name: n.to_string(),
                default: None,
            })
            .collect()
    }

    #[test]
    fn code_lands_on_its_file_line() {
        let code = Snippet {
            text: "x = value * 2\nif x > 3:\n  return x".into(),
            line: Some(5),
        };
        let expression = Snippet {
            text: "None".into(),
            line: Some(9),
        };
        let source = function_source(&FunctionSource {
            name: "double",
            parameters: &params(&["key", "value"]),
            preamble: &["log = _l".into()],
            code: Some(&code),
            expression: Some(&expression),
            default_expression: Some("value"),
        });
        let lines: Vec<&str> = source.lines().collect();
        assert_eq!(lines[2], "def double(key, value):");
        assert_eq!(lines[3], "    log = _l");
        assert_eq!(lines[4], "    x = value * 2");
        assert_eq!(lines[6], "      return x");
        assert_eq!(lines[8], "    return (None");
    }

    #[test]
    fn default_expression_and_parameter_defaults() {
        let p = vec![Parameter {
            name: "n".into(),
            default: Some("3".into()),
        }];
        let source = function_source(&FunctionSource {
            name: "f",
            parameters: &p,
            preamble: &[],
            code: None,
            expression: None,
            default_expression: Some("True"),
        });
        assert_eq!(source, "def f(n=3):\n    pass\n    return True\n");
    }

    #[test]
    fn identifiers() {
        assert_eq!(python_identifier("my-pipe.step 1"), "my_pipe_step_1");
        assert_eq!(python_identifier("1st"), "_1st");
    }
}
