//! The runner config (`ksml-runner.yaml`): `kafka:` properties and the `ksml:` section, with
//! `${VAR}` / `${VAR:-default}` taken from the environment. Unknown keys fail at start-up.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::diagnostics::{Diagnostic, Diagnostics, read_yaml_file};
use crate::parse::Fields;
use crate::yaml::{self, Node};

/// What happens to a record whose handling failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    /// Stop the application at the failing record (nothing after it is processed).
    StopOnFail,
    /// Log and skip the record.
    ContinueOnFail,
}

/// Error handling for one kind of failure (consume, produce or process).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorHandler {
    pub log: bool,
    pub log_payload: bool,
    pub logger_name: Option<String>,
    pub handler: Handler,
}

impl Default for ErrorHandler {
    fn default() -> Self {
        ErrorHandler {
            log: true,
            log_payload: false,
            logger_name: None,
            handler: Handler::StopOnFail,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorHandling {
    /// Records whose key or value cannot be read.
    pub consume: ErrorHandler,
    /// Results that cannot be written.
    pub produce: ErrorHandler,
    /// Python functions that raise.
    pub process: ErrorHandler,
}

/// A definition listed in the config: a file, or inline YAML (in the config `file`).
#[derive(Debug, Clone)]
pub enum DefinitionSource {
    File(PathBuf),
    Inline { node: Node, file: PathBuf },
}

#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Kafka and Kafka Streams properties (`application.id`, `num.stream.threads`, ...).
    pub kafka: BTreeMap<String, String>,
    /// Definitions by namespace, in the order listed.
    pub definitions: Vec<(String, DefinitionSource)>,
    pub error_handling: ErrorHandling,
    pub enable_producers: bool,
    pub enable_pipelines: bool,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        RunnerConfig {
            kafka: BTreeMap::new(),
            definitions: Vec::new(),
            error_handling: ErrorHandling::default(),
            enable_producers: true,
            enable_pipelines: true,
        }
    }
}

impl RunnerConfig {
    /// The consumer group of the application (`application.id`, default `millrace`).
    pub fn application_id(&self) -> &str {
        self.kafka
            .get("application.id")
            .map_or("millrace", String::as_str)
    }

    /// Worker threads (`num.stream.threads`, default 1).
    pub fn stream_threads(&self) -> usize {
        self.kafka
            .get("num.stream.threads")
            .and_then(|n| n.parse().ok())
            .filter(|n| *n > 0)
            .unwrap_or(1)
    }

    /// True with `processing.guarantee` exactly_once / exactly_once_v2.
    pub fn exactly_once(&self) -> bool {
        self.kafka
            .get("processing.guarantee")
            .is_some_and(|g| g.starts_with("exactly_once"))
    }

    /// How long a task or producer keeps trying while the Kafka cluster does not answer
    /// (`task.timeout.ms`, Kafka Streams' default 300000: five minutes), counted from its
    /// first failure since it last made progress.
    pub fn task_timeout(&self) -> Duration {
        let millis = self
            .kafka
            .get("task.timeout.ms")
            .and_then(|n| n.trim().parse::<u64>().ok())
            .unwrap_or(300_000);
        Duration::from_millis(millis)
    }

    /// How often tasks commit (`commit.interval.ms`; Kafka Streams' default is 30 s, or
    /// 100 ms with exactly-once).
    pub fn commit_interval(&self) -> Duration {
        let default = if self.exactly_once() { 100 } else { 30_000 };
        let millis = self
            .kafka
            .get("commit.interval.ms")
            .and_then(|n| n.trim().parse::<u64>().ok())
            .unwrap_or(default);
        Duration::from_millis(millis)
    }

    /// The bytes all tasks' store write buffers may hold (`cache.max.bytes.buffering`,
    /// default 10 MiB as in Kafka Streams).
    pub fn cache_max_bytes(&self) -> usize {
        self.kafka
            .get("cache.max.bytes.buffering")
            .or_else(|| self.kafka.get("statestore.cache.max.bytes"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(10 << 20)
    }

    /// The Kafka cluster to run on (`bootstrap.servers`, when set and not empty); None runs
    /// on the embedded log.
    pub fn bootstrap_servers(&self) -> Option<&str> {
        self.kafka
            .get("bootstrap.servers")
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
    }

    /// The properties that go to Kafka clients: all but those this runner acts on itself.
    pub fn client_properties(&self) -> Vec<(String, String)> {
        self.kafka
            .iter()
            .filter(|(name, _)| !APPLIED_PROPERTIES.contains(&name.as_str()))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect()
    }

    /// The properties given that this runner does not act on, in name order.
    pub fn inapplicable_properties(&self) -> Vec<&str> {
        self.kafka
            .keys()
            .map(String::as_str)
            .filter(|name| !APPLIED_PROPERTIES.contains(name))
            .collect()
    }

    /// Error handlers as Kafka Streams' default exception handler properties set them
    /// (`LogAndContinue...` continues, `LogAndFail...` and the default production handler
    /// stop); the `ksml.errorHandling` section overrides them.
    fn handlers_from_properties(&self) -> ErrorHandling {
        let handler = |property: &str| {
            let class = self.kafka.get(property)?;
            let handler = if class.contains("Continue") {
                Handler::ContinueOnFail
            } else {
                Handler::StopOnFail
            };
            Some(ErrorHandler {
                handler,
                ..ErrorHandler::default()
            })
        };
        ErrorHandling {
            consume: handler("default.deserialization.exception.handler").unwrap_or_default(),
            produce: handler("default.production.exception.handler").unwrap_or_default(),
            process: handler("processing.exception.handler").unwrap_or_default(),
        }
    }

    /// Reads a config file; relative definition paths resolve against its folder.
    pub fn load(path: &Path) -> Result<RunnerConfig, Vec<Diagnostic>> {
        let base = path.parent().unwrap_or(Path::new("."));
        read_yaml_file(
            path,
            |text, diags| substitute_env(&text, diags),
            |root, diags| parse_config(root, path, base, diags),
        )
    }
}

/// Replaces `${VAR}` and `${VAR:-default}`; an unset variable without default is an error.
fn substitute_env(text: &str, diags: &mut Diagnostics) -> String {
    let mut out = String::with_capacity(text.len());
    for (line_index, line) in text.split_inclusive('\n').enumerate() {
        let mut rest = line;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let Some(len) = rest[start..].find('}') else {
                out.push_str(&rest[start..]);
                rest = "";
                break;
            };
            let inner = &rest[start + 2..start + len];
            let (name, default) = match inner.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (inner, None),
            };
            match (std::env::var(name), default) {
                (Ok(value), _) => out.push_str(&value),
                (Err(_), Some(default)) => out.push_str(default),
                (Err(_), None) => {
                    diags.error(
                        yaml::Mark {
                            line: line_index + 1,
                            col: line[..line.len() - rest.len() + start].chars().count() + 1,
                        },
                        format!("environment variable '{name}' is not set and has no default"),
                    );
                }
            }
            rest = &rest[start + len + 1..];
        }
        out.push_str(rest);
    }
    out
}

fn parse_config(
    root: &Node,
    path: &Path,
    base: &Path,
    diags: &mut Diagnostics,
) -> Option<RunnerConfig> {
    let mut config = RunnerConfig::default();
    let mut top = Fields::of(root, "the runner config", diags)?;
    if let Some(kafka) = top.take("kafka") {
        read_properties(kafka, "'kafka'", &mut config, diags);
    }
    // The form KSML's docs also use: `runner: {type: streams, config: {...}}`.
    if let Some(runner) = top.take("runner")
        && let Some(mut f) = Fields::of(runner, "'runner'", diags)
    {
        match f.text("type", diags).as_deref() {
            Some("streams") | None => {}
            Some(other) => diags.error(
                runner.mark,
                format!("runner type '{other}' is not supported (use streams)"),
            ),
        }
        if let Some(properties) = f.take("config") {
            read_properties(properties, "'runner.config'", &mut config, diags);
        }
        f.finish_strict(diags);
    }
    config.error_handling = config.handlers_from_properties();
    match top.take("ksml") {
        Some(ksml) => parse_ksml(ksml, path, base, &mut config, diags),
        None => diags.error(root.mark, "the runner config needs a 'ksml' section"),
    }
    top.finish_strict(diags);
    Some(config)
}

/// Kafka and Kafka Streams properties: a mapping of scalars.
fn read_properties(node: &Node, what: &str, config: &mut RunnerConfig, diags: &mut Diagnostics) {
    match node.as_map() {
        Some(entries) => {
            for (k, v) in entries {
                if let (Some(k), Some(v)) = (k.as_scalar(), v.as_scalar()) {
                    config.kafka.insert(k.to_string(), v.to_string());
                } else {
                    diags.error(
                        k.mark,
                        format!("{what} properties must be scalar key: value pairs"),
                    );
                }
            }
        }
        None => diags.error(node.mark, format!("{what} must be a mapping of properties")),
    }
}

/// Kafka Streams and broker properties this runner acts on; every other property is named in
/// a warning at start.
pub const APPLIED_PROPERTIES: [&str; 18] = [
    "application.id",
    "task.timeout.ms",
    "num.stream.threads",
    "commit.interval.ms",
    "cache.max.bytes.buffering",
    "statestore.cache.max.bytes",
    "processing.guarantee",
    "state.dir",
    "default.deserialization.exception.handler",
    "default.production.exception.handler",
    "processing.exception.handler",
    "num.partitions",
    "log.segment.bytes",
    "log.retention.bytes",
    "log.retention.ms",
    "log.retention.hours",
    "log.flush.interval.messages",
    "auto.create.topics.enable",
];

fn parse_ksml(
    node: &Node,
    path: &Path,
    base: &Path,
    config: &mut RunnerConfig,
    diags: &mut Diagnostics,
) {
    let Some(mut f) = Fields::of(node, "'ksml'", diags) else {
        return;
    };
    match f
        .take("definitions")
        .and_then(|d| d.as_map().map(|m| (d, m)))
    {
        Some((_, entries)) => {
            for (key, value) in entries {
                let Some(namespace) = key.as_scalar() else {
                    diags.error(key.mark, "definition namespaces must be scalars");
                    continue;
                };
                let source = match value.as_scalar() {
                    Some(path) => DefinitionSource::File(base.join(path)),
                    None => DefinitionSource::Inline {
                        node: value.clone(),
                        file: path.to_path_buf(),
                    },
                };
                config.definitions.push((namespace.to_string(), source));
            }
        }
        None => diags.error(node.mark, "'ksml' needs 'definitions' (namespace: file)"),
    }
    for key in [
        "storageDirectory",
        "configDirectory",
        "schemaDirectory",
        "createStorageDirectory",
        "applicationServer",
        "prometheus",
        "pythonContext",
        "schemaRegistries",
        "notations",
    ] {
        // Accepted and checked for shape by the features that use them.
        let _ = f.take(key);
    }
    if let Some(v) = f.take("enableProducers") {
        config.enable_producers = v.as_bool().unwrap_or(true);
    }
    if let Some(v) = f.take("enablePipelines") {
        config.enable_pipelines = v.as_bool().unwrap_or(true);
    }
    if let Some(eh) = f.take("errorHandling")
        && let Some(mut ef) = Fields::of(eh, "'errorHandling'", diags)
    {
        for (kind, slot) in [
            ("consume", &mut config.error_handling.consume),
            ("produce", &mut config.error_handling.produce),
            ("process", &mut config.error_handling.process),
        ] {
            if let Some(node) = ef.take(kind) {
                *slot = parse_handler(node, kind, diags);
            }
        }
        ef.finish_strict(diags);
    }
    f.finish_strict(diags);
}

fn parse_handler(node: &Node, kind: &str, diags: &mut Diagnostics) -> ErrorHandler {
    let mut handler = ErrorHandler::default();
    let Some(mut f) = Fields::of(node, format!("'errorHandling.{kind}'"), diags) else {
        return handler;
    };
    if let Some(v) = f.take("log") {
        handler.log = v.as_bool().unwrap_or(true);
    }
    handler.log_payload = f.boolean("logPayload", diags);
    handler.logger_name = f.text("loggerName", diags);
    if let Some(h) = f.take("handler") {
        handler.handler = match h.as_scalar() {
            Some("stopOnFail") => Handler::StopOnFail,
            Some("continueOnFail") => Handler::ContinueOnFail,
            Some("retryOnFail") => {
                diags.error(h.mark, "handler 'retryOnFail' is not supported yet");
                Handler::StopOnFail
            }
            _ => {
                diags.error(
                    h.mark,
                    "handler must be stopOnFail, continueOnFail or retryOnFail",
                );
                Handler::StopOnFail
            }
        };
    }
    f.finish_strict(diags);
    handler
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runner_form_sets_properties_and_handlers() {
        let config = load(
            "runner:\n  type: streams\n  config:\n    application.id: app\n    commit.interval.ms: 250\n    task.timeout.ms: 9000\n    producer.linger.ms: 100\n    default.deserialization.exception.handler: org.apache.kafka.streams.errors.LogAndContinueExceptionHandler\nksml:\n  definitions:\n    main: main.yaml\n",
        )
        .unwrap();
        assert_eq!(config.application_id(), "app");
        assert_eq!(config.commit_interval(), Duration::from_millis(250));
        assert_eq!(config.task_timeout(), Duration::from_millis(9000));
        assert_eq!(config.inapplicable_properties(), ["producer.linger.ms"]);
        assert_eq!(
            config.error_handling.consume.handler,
            Handler::ContinueOnFail
        );
        assert_eq!(config.error_handling.process.handler, Handler::StopOnFail);
        // errorHandling in the ksml section wins over the property.
        let config = load(
            "runner:\n  config:\n    default.deserialization.exception.handler: LogAndContinueExceptionHandler\nksml:\n  definitions:\n    main: main.yaml\n  errorHandling:\n    consume:\n      handler: stopOnFail\n",
        )
        .unwrap();
        assert_eq!(config.error_handling.consume.handler, Handler::StopOnFail);
        let problems = load("runner:\n  type: flink\nksml:\n  definitions:\n    main: main.yaml\n")
            .unwrap_err();
        assert!(
            problems[0].to_string().contains("runner type 'flink'"),
            "{problems:?}"
        );
    }

    fn load(text: &str) -> Result<RunnerConfig, Vec<Diagnostic>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ksml-runner.yaml");
        std::fs::write(&path, text).unwrap();
        RunnerConfig::load(&path)
    }

    #[test]
    fn reads_definitions_kafka_and_error_handling() {
        // SAFETY: tests in this binary do not read this variable concurrently.
        unsafe { std::env::set_var("MILLRACE_TEST_APP", "from-env") };
        let config = load(
            "kafka:\n  application.id: ${MILLRACE_TEST_APP}\n  num.stream.threads: 2\n  bootstrap.servers: ${MILLRACE_NOPE:-localhost:9092}\nksml:\n  definitions:\n    main: defs/main.yaml\n  errorHandling:\n    process:\n      handler: continueOnFail\n      logPayload: true\n",
        )
        .unwrap();
        assert_eq!(config.application_id(), "from-env");
        assert_eq!(config.stream_threads(), 2);
        assert_eq!(config.kafka["bootstrap.servers"], "localhost:9092");
        assert!(
            matches!(&config.definitions[0], (ns, DefinitionSource::File(p)) if ns == "main" && p.ends_with("defs/main.yaml"))
        );
        assert_eq!(
            config.error_handling.process.handler,
            Handler::ContinueOnFail
        );
        assert!(config.error_handling.process.log_payload);
        assert_eq!(config.error_handling.consume, ErrorHandler::default());
    }

    #[test]
    fn unknown_keys_and_unset_variables_fail() {
        let errors = load(
            "ksml:\n  definitions: {a: a.yaml}\n  definitons: {}\n  x: ${MILLRACE_SURELY_UNSET}\n",
        )
        .unwrap_err();
        let text: Vec<String> = errors.iter().map(|d| d.to_string()).collect();
        assert!(
            text.iter()
                .any(|t| t.ends_with(":3:3: unknown key 'definitons' in 'ksml'")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t.contains(":4:6: environment variable 'MILLRACE_SURELY_UNSET'")),
            "{text:?}"
        );
    }
}
