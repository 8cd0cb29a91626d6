//! Loading the runner config and definition files for `run` and `check`, printing problems.

use std::path::{Path, PathBuf};

use millrace_ksml::config::{DefinitionSource, RunnerConfig};
use millrace_ksml::diagnostics::Severity;
use millrace_ksml::load::{load_definitions, namespace_of};
use millrace_ksml::model::Definition;

/// Loads the config (if any) and the definitions it and the command line name. Problems are
/// printed to stderr; any error fails the load.
pub fn load(
    config: Option<&Path>,
    files: &[PathBuf],
    strict: bool,
) -> Result<(RunnerConfig, Vec<Definition>), String> {
    let mut runner_config = match config {
        Some(path) => RunnerConfig::load(path).map_err(|problems| {
            for problem in &problems {
                eprintln!("{problem}");
            }
            String::new()
        })?,
        None => RunnerConfig::default(),
    };
    for file in files {
        runner_config
            .definitions
            .push((namespace_of(file), DefinitionSource::File(file.clone())));
    }
    if runner_config.definitions.is_empty() {
        return Err(
            "no definitions given: name definition files or a --config listing them".into(),
        );
    }
    let loaded = load_definitions(&runner_config.definitions, strict);
    for diagnostic in &loaded.diagnostics {
        eprintln!("{diagnostic}");
    }
    if loaded.has_errors() {
        let errors = loaded
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count();
        return Err(format!("{errors} problem(s) found; nothing was run"));
    }
    Ok((runner_config, loaded.definitions))
}
