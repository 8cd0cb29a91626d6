//! Loading definition files: YAML, the model, validation and a Python syntax check, with every
//! problem collected (not just the first) before anything runs.

use std::path::Path;

use millrace_python::{FunctionSpec, Parameter, Python, check_syntax};

use crate::config::DefinitionSource;
use crate::diagnostics::{Diagnostic, Diagnostics, Severity};
use crate::model::{Definition, FunctionDef, FunctionType};
use crate::parse::DefinitionParser;
use crate::validate::validate;
use crate::yaml::{self, Mark, Node};

/// The result of loading: definitions (usable only when no diagnostic is an error) and every
/// problem found.
pub struct Loaded {
    pub definitions: Vec<Definition>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Loaded {
    pub fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error)
    }
}

/// Loads definitions listed by namespace. With `strict`, warnings (unknown keys) are errors.
pub fn load_definitions(sources: &[(String, DefinitionSource)], strict: bool) -> Loaded {
    let mut loaded = Loaded {
        definitions: Vec::new(),
        diagnostics: Vec::new(),
    };
    for (namespace, source) in sources {
        let (definition, diagnostics) = match source {
            DefinitionSource::File(path) => load_file(path, namespace),
            DefinitionSource::Inline { node, file } => {
                let mut diags = Diagnostics::new(file.display().to_string());
                let definition = load_node(node, file, namespace, &mut diags);
                (Some(definition), diags)
            }
        };
        loaded.definitions.extend(definition);
        loaded.diagnostics.extend(diagnostics.into_sorted());
    }
    if strict {
        for d in &mut loaded.diagnostics {
            d.severity = Severity::Error;
        }
    }
    loaded
}

/// Loads one definition file (namespace: its name), or its problems as printed lines.
pub fn load_definition_file(path: &Path) -> Result<Definition, String> {
    let sources = [(
        namespace_of(path),
        DefinitionSource::File(path.to_path_buf()),
    )];
    let mut loaded = load_definitions(&sources, false);
    if loaded.has_errors() {
        let problems: Vec<String> = loaded.diagnostics.iter().map(|d| d.to_string()).collect();
        return Err(problems.join("\n"));
    }
    Ok(loaded.definitions.remove(0))
}

/// The namespace of a file given on the command line: its name without extension.
pub fn namespace_of(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "definition".into())
}

fn load_file(path: &Path, namespace: &str) -> (Option<Definition>, Diagnostics) {
    let mut diags = Diagnostics::new(path.display().to_string());
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            diags.error(
                Mark { line: 1, col: 1 },
                format!("cannot read the file: {e}"),
            );
            return (None, diags);
        }
    };
    match yaml::parse(&text) {
        Ok(root) => {
            let definition = load_node(&root, path, namespace, &mut diags);
            (Some(definition), diags)
        }
        Err(e) => {
            diags.error(e.mark, e.message);
            (None, diags)
        }
    }
}

fn load_node(root: &Node, file: &Path, namespace: &str, diags: &mut Diagnostics) -> Definition {
    let mut definition = DefinitionParser::parse(root, file, namespace, diags);
    validate(&mut definition, diags);
    check_python(&definition, diags);
    definition
}

/// The Python function for a KSML function: the type's fixed parameters, then any extra
/// parameters the definition declares (with their defaults).
pub fn python_spec(function: &FunctionDef) -> FunctionSpec {
    let function_type = function.function_type.unwrap_or(FunctionType::Generic);
    let fixed = function_type.parameters();
    let mut parameters: Vec<Parameter> = fixed
        .iter()
        .map(|name| Parameter {
            name: name.to_string(),
            default: None,
        })
        .collect();
    for p in &function.parameters {
        if !fixed.contains(&p.name.as_str()) {
            parameters.push(Parameter {
                name: p.name.clone(),
                default: p.default.clone(),
            });
        }
    }
    FunctionSpec {
        name: function.name.clone(),
        logger_kind: function_type.logger_kind(),
        parameters,
        code: function.code.clone(),
        expression: function.expression.clone(),
        default_expression: function_type.default_expression().map(str::to_string),
        stores: function.stores.iter().map(|s| s.name.clone()).collect(),
    }
}

fn check_python(definition: &Definition, diags: &mut Diagnostics) {
    let file = definition.file_name();
    Python::attach(|py| {
        for function in &definition.functions {
            let spec = python_spec(function);
            for problem in check_syntax(py, &spec, function.global_code.as_ref(), &file) {
                let mark = Mark {
                    line: problem.line.unwrap_or(function.mark.line),
                    col: 1,
                };
                diags.error(
                    mark,
                    format!(
                        "Python syntax error in function '{}': {}",
                        function.name, problem.message
                    ),
                );
            }
        }
    });
}
