//! The KSML runtime: validated definitions (from `millrace-ksml`) compiled into a topology of
//! operators, producers, and the runner that executes them over a [`Log`].
//!
//! [`Log`]: millrace_log::Log

mod assignment;
mod datum;
mod global;
mod process;
mod producer;
mod py_stores;
pub mod runner;
mod stalls;
pub mod suite;
mod suppress;
mod task;
mod task_stores;
pub mod topology;
