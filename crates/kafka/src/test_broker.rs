//! A Kafka-protocol broker for tests: `scripts/kafka-broker` started on a free loopback port,
//! stopped when dropped. Tests of every crate that talks to Kafka use it.

use std::path::PathBuf;
use std::process::Command;

/// A running test broker.
pub struct TestBroker {
    port: u16,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/kafka-broker")
}

impl TestBroker {
    /// Starts a broker; panics when it cannot (a test cannot go on without it).
    pub fn start() -> TestBroker {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free loopback port")
            .port();
        let status = Command::new(script())
            .args(["start", &port.to_string()])
            .status()
            .expect("scripts/kafka-broker runs");
        assert!(status.success(), "the test broker did not start");
        TestBroker { port }
    }

    /// Freezes the broker: its connections stay open but nothing answers (a hung broker,
    /// or a network partition); it keeps its topics.
    pub fn pause(&self) {
        self.signal("pause");
    }

    /// Lets a paused broker go on.
    pub fn resume(&self) {
        self.signal("resume");
    }

    fn signal(&self, command: &str) {
        let status = Command::new(script())
            .args([command, &self.port.to_string()])
            .status()
            .expect("scripts/kafka-broker runs");
        assert!(status.success(), "scripts/kafka-broker {command} failed");
    }

    /// `bootstrap.servers` for it.
    pub fn bootstrap_servers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        let _ = Command::new(script())
            .args(["stop", &self.port.to_string()])
            .status();
    }
}
