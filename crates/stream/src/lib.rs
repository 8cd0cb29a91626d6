//! KSML stream processing: definitions parsed and validated with `file:line:col` errors, the
//! runner config, and the runtime that executes pipelines and producers over a [`Log`].
//!
//! [`Log`]: millrace_log::Log

pub mod config;
mod datum;
pub mod diagnostics;
pub mod fuzz;
pub mod load;
pub mod model;
mod parse;
mod process;
mod producer;
pub mod runner;
pub mod topology;
mod validate;
pub mod yaml;
