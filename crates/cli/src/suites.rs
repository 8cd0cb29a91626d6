//! `millrace test`: KSML test-runner suites, each test on a fresh embedded log.

use std::path::{Path, PathBuf};

use millrace_ksml::suite::Suite;
use millrace_stream::suite::run_suite;

/// Runs every suite; prints each test's result; fails when a suite does not load or a test
/// fails.
pub fn run(suites: &[PathBuf]) -> Result<(), String> {
    if suites.is_empty() {
        return Err("name one or more test suite files".into());
    }
    let (mut passed, mut failed) = (0, 0);
    for (index, path) in suites.iter().enumerate() {
        let suite = Suite::load(path).map_err(|problems| {
            problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        })?;
        println!("suite {} ({})", suite.name, path.display());
        let work = WorkDir::new(index)?;
        let outcomes = run_suite(&suite, work.path())
            .map_err(|e| format!("{}: the definition does not load:\n{e}", path.display()))?;
        for outcome in outcomes {
            match outcome.failure {
                None => {
                    passed += 1;
                    println!("  PASS {}", outcome.name);
                }
                Some(why) => {
                    failed += 1;
                    println!("  FAIL {}", outcome.name);
                    for line in why.lines() {
                        println!("       {line}");
                    }
                }
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    match failed {
        0 => Ok(()),
        _ => Err(format!("{failed} test(s) failed")),
    }
}

/// A scratch folder for a suite's logs, removed afterwards.
struct WorkDir(PathBuf);

impl WorkDir {
    fn new(index: usize) -> Result<WorkDir, String> {
        let path =
            std::env::temp_dir().join(format!("millrace-test-{}-{index}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Ok(WorkDir(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
