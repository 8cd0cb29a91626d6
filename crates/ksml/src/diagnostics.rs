//! Problems found in definition and config files, each with its place: `file:line:col: message`.

use std::fmt;

use crate::yaml::Mark;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub mark: Mark,
    pub severity: Severity,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = match self.severity {
            Severity::Error => "",
            Severity::Warning => "warning: ",
        };
        write!(f, "{}:{}: {prefix}{}", self.file, self.mark, self.message)
    }
}

/// Collects the problems of one file.
#[derive(Debug, Clone)]
pub struct Diagnostics {
    file: String,
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn new(file: impl Into<String>) -> Diagnostics {
        Diagnostics {
            file: file.into(),
            items: Vec::new(),
        }
    }

    pub fn file(&self) -> &str {
        &self.file
    }

    pub fn error(&mut self, mark: Mark, message: impl Into<String>) {
        self.push(mark, Severity::Error, message.into());
    }

    pub fn warn(&mut self, mark: Mark, message: impl Into<String>) {
        self.push(mark, Severity::Warning, message.into());
    }

    fn push(&mut self, mark: Mark, severity: Severity, message: String) {
        let duplicate = self
            .items
            .iter()
            .any(|d| d.mark == mark && d.message == message);
        if !duplicate {
            self.items.push(Diagnostic {
                file: self.file.clone(),
                mark,
                severity,
                message,
            });
        }
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }

    /// The problems in file order.
    pub fn into_sorted(mut self) -> Vec<Diagnostic> {
        self.items.sort_by_key(|d| d.mark);
        self.items
    }
}

/// Reads a YAML file (after `prepare` rewrites its text) and builds a result from its root,
/// collecting every problem with its place: the result only when there is no error.
pub fn read_yaml_file<T>(
    path: &std::path::Path,
    prepare: impl FnOnce(String, &mut Diagnostics) -> String,
    build: impl FnOnce(&crate::yaml::Node, &mut Diagnostics) -> Option<T>,
) -> Result<T, Vec<Diagnostic>> {
    let mut diags = Diagnostics::new(path.display().to_string());
    let text = match std::fs::read_to_string(path) {
        Ok(text) => prepare(text, &mut diags),
        Err(e) => {
            diags.error(Default::default(), format!("cannot read the file: {e}"));
            return Err(diags.into_sorted());
        }
    };
    let built = match crate::yaml::parse(&text) {
        Ok(root) => build(&root, &mut diags),
        Err(e) => {
            diags.error(e.mark, e.message);
            None
        }
    };
    match built {
        Some(result) if !diags.has_errors() => Ok(result),
        _ => Err(diags.into_sorted()),
    }
}
