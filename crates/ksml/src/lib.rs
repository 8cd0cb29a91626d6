//! The KSML front end: definition files read into a validated [`model::Definition`], with every
//! problem reported as `file:line:col`, and the runner config (`ksml-runner.yaml`). Nothing here
//! runs a pipeline; `millrace-stream` executes what this crate produces.

pub mod config;
pub mod diagnostics;
pub mod fuzz;
pub mod load;
pub mod model;
mod parse;
pub mod stages;
pub mod suite;
mod validate;
pub mod yaml;
