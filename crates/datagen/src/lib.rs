//! The data generator: learn-druid datagen configs (emitters, states, distributions) run as a
//! seeded discrete-event simulation, writing JSON records to a log topic, Kafka, a file or
//! standard output. [`jobs::Jobs`] runs jobs behind learn-druid's HTTP API shapes; the
//! command line runs one with [`run::run`].

pub mod builtin;
pub mod config;
pub mod dimension;
pub mod distribution;
pub mod fields;
pub mod jobs;
pub mod random;
pub mod run;
pub mod simulation;
pub mod target;

pub use config::Config;
pub use fields::ConfigError;
pub use jobs::{JobRequest, Jobs};
pub use run::{Pacing, Progress};
pub use simulation::{Limit, Settings, Simulation, Step};
pub use target::{FileSink, LogSink, Sink, StdoutSink, Target};
