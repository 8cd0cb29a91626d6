//! The KSML runtime: validated definitions (from `millrace-ksml`) compiled into a topology of
//! operators, producers, and the runner that executes them over a [`Log`].
//!
//! [`Log`]: millrace_log::Log

mod datum;
mod process;
mod producer;
pub mod runner;
mod task;
pub mod topology;
