//! An entry point for fuzzing and property tests: arbitrary text as a KSML definition file.
//! Loading must never panic, and every problem must point into the text.

use std::path::PathBuf;

use crate::config::DefinitionSource;
use crate::load::load_definitions;
use crate::yaml;

/// Loads `data` as a definition file (parse, validate, Python syntax check, nothing run);
/// panics (a finding) when a problem's line lies outside the text.
pub fn ksml_definition(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Lines as YAML counts them: a lone carriage return ends a line too.
    let lines = text.replace("\r\n", "\n").matches(['\n', '\r']).count() + 1;
    let node = match yaml::parse(text) {
        Ok(node) => node,
        Err(e) => {
            assert!(
                (1..=lines + 1).contains(&e.mark.line),
                "YAML error at line {} of a {lines}-line text: {}",
                e.mark.line,
                e.message
            );
            return;
        }
    };
    let source = DefinitionSource::Inline {
        node,
        file: PathBuf::from("fuzz.yaml"),
    };
    let loaded = load_definitions(&[("fuzz".into(), source)], false);
    for diagnostic in &loaded.diagnostics {
        assert!(
            (1..=lines + 1).contains(&diagnostic.mark.line),
            "problem at line {} of a {lines}-line text: {}",
            diagnostic.mark.line,
            diagnostic.message
        );
    }
}
