//! The embedded CPython bridge: one module namespace per KSML definition file, `globalCode` run
//! once, functions assembled the way KSML assembles them, the `log` and `metrics` objects, and
//! conversion of record bytes and values to Python objects and back.
//!
//! CPython 3.11 has one interpreter lock: callers take it once per batch of records
//! ([`Python::attach`]) and call functions many times under it.

mod assemble;
pub mod convert;
pub mod fuzz;
mod json_to_py;
mod native;
mod scan;
pub mod watch;

use std::ffi::CString;
use std::sync::OnceLock;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyModule};

pub use assemble::{FunctionSource, Parameter, Snippet, function_source, python_identifier};
pub use native::{UserMetric, user_metrics};
pub use pyo3;
pub use pyo3::Python;

/// A Python exception raised while compiling or running a KSML function.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{context}: {exception}\n{traceback}")]
pub struct PythonError {
    /// Where it happened: the function (or globalCode) and its definition file.
    pub context: String,
    /// The exception's type and message, e.g. `ZeroDivisionError: division by zero`.
    pub exception: String,
    /// Python's formatted traceback, pointing into the definition file.
    pub traceback: String,
}

static SUPPORT: OnceLock<Py<PyModule>> = OnceLock::new();

/// The support module (log, metrics, helpers), installed on first use.
fn support(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    if SUPPORT.get().is_none() {
        native::install(py)?;
        let module = PyModule::from_code(
            py,
            &CString::new(include_str!("bootstrap.py")).expect("no NUL in bootstrap"),
            c"millrace_support.py",
            c"millrace_support",
        )?;
        let _ = SUPPORT.set(module.unbind());
    }
    Ok(SUPPORT.get().expect("support module installed").bind(py))
}

/// Turns a Python exception into a [`PythonError`] with its traceback.
pub fn python_error(py: Python<'_>, err: PyErr, context: impl Into<String>) -> PythonError {
    let exception = {
        let value = err.value(py);
        let type_name = value
            .get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "Exception".into());
        match value.str() {
            Ok(message) if !message.to_string_lossy().is_empty() => {
                format!("{type_name}: {}", message.to_string_lossy())
            }
            _ => type_name,
        }
    };
    let traceback = support(py)
        .and_then(|m| m.getattr("format_exception"))
        .and_then(|f| f.call1((err.value(py), err.traceback(py))))
        .and_then(|t| t.extract::<String>())
        .unwrap_or_default();
    PythonError {
        context: context.into(),
        exception,
        traceback: traceback.trim_end().to_string(),
    }
}

/// One definition file's Python module namespace.
pub struct Namespace {
    name: String,
    file: String,
    globals: Py<PyDict>,
}

/// What makes a KSML function.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    /// The KSML name (top-level name, or a generated one for inline functions).
    pub name: String,
    /// `function`, `generator` or `condition`: the middle part of the logger name.
    pub logger_kind: &'static str,
    pub parameters: Vec<Parameter>,
    pub code: Option<Snippet>,
    pub expression: Option<Snippet>,
    pub default_expression: Option<String>,
    /// State stores bound to local variables of the same names.
    pub stores: Vec<String>,
}

impl Namespace {
    /// Creates the namespace of a definition file; `name` is the file's namespace (the key it
    /// is listed under in the runner config) and `file` its path, used in tracebacks.
    pub fn new(py: Python<'_>, name: &str, file: &str) -> Result<Namespace, PythonError> {
        let build = || -> PyResult<Py<PyDict>> {
            let support = support(py)?;
            let globals = PyDict::new(py);
            globals.set_item("__name__", name)?;
            globals.set_item("__builtins__", py.import("builtins")?)?;
            globals.set_item("stores", PyDict::new(py))?;
            globals.set_item("metrics", support.getattr("Metrics")?.call0()?)?;
            globals.set_item("__ksml_loggers", PyDict::new(py))?;
            Ok(globals.unbind())
        };
        let globals = build().map_err(|e| python_error(py, e, "setting up Python"))?;
        Ok(Namespace {
            name: name.to_string(),
            file: file.to_string(),
            globals,
        })
    }

    /// The namespace's global variables.
    pub fn globals<'py>(&self, py: Python<'py>) -> &Bound<'py, PyDict> {
        self.globals.bind(py)
    }

    /// Runs a function's `globalCode` at module level.
    pub fn run_global_code(
        &self,
        py: Python<'_>,
        owner: &str,
        code: &Snippet,
    ) -> Result<(), PythonError> {
        self.exec(py, &assemble::module_source(code)).map_err(|e| {
            python_error(
                py,
                e,
                format!("globalCode of function '{owner}' in {}", self.file),
            )
        })
    }

    fn exec(&self, py: Python<'_>, source: &str) -> PyResult<()> {
        support(py)?
            .getattr("exec_in")?
            .call1((source, &self.file, self.globals.bind(py)))?;
        Ok(())
    }

    /// Compiles a function and returns a handle to call it.
    pub fn define(&self, py: Python<'_>, spec: &FunctionSpec) -> Result<PyFunction, PythonError> {
        let context = format!("function '{}' in {}", spec.name, self.file);
        let (identifier, source) = spec.source();
        let build = || -> PyResult<Py<PyAny>> {
            let logger_name = format!("{}.{}.{}", self.name, spec.logger_kind, spec.name);
            let logger = support(py)?.getattr("Logger")?.call1((logger_name,))?;
            let globals = self.globals.bind(py);
            globals
                .get_item("__ksml_loggers")?
                .expect("namespace has loggers")
                .set_item(&identifier, logger)?;
            self.exec(py, &source)?;
            Ok(globals
                .get_item(&identifier)?
                .expect("the def just ran")
                .unbind())
        };
        let callable = build().map_err(|e| python_error(py, e, context.clone()))?;
        Ok(PyFunction { context, callable })
    }
}

impl FunctionSpec {
    /// The Python identifier and the generated `def` source.
    fn source(&self) -> (String, String) {
        let identifier = python_identifier(&self.name);
        let mut preamble = vec![format!("log = __ksml_loggers[{identifier:?}]")];
        for store in &self.stores {
            preamble.push(format!("{} = stores[{store:?}]", python_identifier(store)));
        }
        let source = function_source(&FunctionSource {
            name: &identifier,
            parameters: &self.parameters,
            preamble: &preamble,
            code: self.code.as_ref(),
            expression: self.expression.as_ref(),
            default_expression: self.default_expression.as_deref(),
        });
        (identifier, source)
    }
}

/// A Python syntax error, at its line in the definition file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxProblem {
    pub line: Option<usize>,
    pub message: String,
}

/// Compiles (without running) a function's code and expression and its globalCode, so that
/// syntax errors are found before anything runs. Lines are those of the definition file.
pub fn check_syntax(
    py: Python<'_>,
    spec: &FunctionSpec,
    global_code: Option<&Snippet>,
    file: &str,
) -> Vec<SyntaxProblem> {
    let mut sources = vec![spec.source().1];
    if let Some(code) = global_code {
        sources.push(assemble::module_source(code));
    }
    let compile = |source: &str| -> Result<(), SyntaxProblem> {
        let builtins = py.import("builtins").map_err(|e| SyntaxProblem {
            line: None,
            message: e.to_string(),
        })?;
        match builtins
            .getattr("compile")
            .and_then(|c| c.call1((source, file, "exec")))
        {
            Ok(_) => Ok(()),
            Err(err) => {
                let value = err.value(py);
                let line = value
                    .getattr("lineno")
                    .ok()
                    .and_then(|l| l.extract::<usize>().ok());
                let message = value
                    .getattr("msg")
                    .ok()
                    .and_then(|m| m.extract::<String>().ok())
                    .unwrap_or_else(|| err.to_string());
                Err(SyntaxProblem { line, message })
            }
        }
    };
    sources.iter().filter_map(|s| compile(s).err()).collect()
}

/// A compiled KSML function.
pub struct PyFunction {
    context: String,
    callable: Py<PyAny>,
}

impl PyFunction {
    /// Calls the function; an exception becomes a [`PythonError`] naming the function, its
    /// file and the traceback.
    pub fn call<'py>(
        &self,
        py: Python<'py>,
        args: &[Bound<'py, PyAny>],
    ) -> Result<Bound<'py, PyAny>, PythonError> {
        // The vectorcall protocol passes the arguments as they are: no tuple is built per call,
        // and KSML functions take at most four arguments, which fit on the stack.
        let mut on_stack = [std::ptr::null_mut(); 8];
        let on_heap: Vec<*mut pyo3::ffi::PyObject>;
        let pointers = if args.len() <= on_stack.len() {
            for (slot, arg) in on_stack.iter_mut().zip(args) {
                *slot = arg.as_ptr();
            }
            &on_stack[..args.len()]
        } else {
            on_heap = args.iter().map(Bound::as_ptr).collect();
            &on_heap[..]
        };
        // SAFETY: `callable` and every argument are live objects for the duration of the call
        // (borrowed from `args`), the GIL is held (`py`), and the result is a new reference
        // or null with an exception set, which `from_owned_ptr_or_err` handles.
        unsafe {
            let result = pyo3::ffi::PyObject_Vectorcall(
                self.callable.as_ptr(),
                pointers.as_ptr(),
                pointers.len(),
                std::ptr::null_mut(),
            );
            Bound::from_owned_ptr_or_err(py, result)
        }
        .map_err(|e| python_error(py, e, self.context.clone()))
    }

    /// "function 'name' in file".
    pub fn context(&self) -> &str {
        &self.context
    }
}

#[cfg(test)]
mod tests;
