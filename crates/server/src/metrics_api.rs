//! `GET /metrics`: both halves in Prometheus' text format. Ingestion (rows, errors and lag
//! of each supervisor's running tasks, published segments and bytes per datasource), queries
//! (count, errors and latency of SQL and native queries), the data generator's jobs, and
//! the KSML definitions the server runs (records in and out, produced, late, lag, state).

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use millrace_query::values::object_rows;
use serde_json::Value;

use crate::{AppState, blocking};

/// Upper bounds (seconds) of the query latency histogram's buckets.
const LATENCY_BUCKETS: [f64; 10] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0];

/// Counts and latencies of one kind of query.
#[derive(Debug, Default)]
pub struct QueryTimings {
    count: AtomicU64,
    errors: AtomicU64,
    micros: AtomicU64,
    /// Queries at or under each of [`LATENCY_BUCKETS`].
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
}

impl QueryTimings {
    /// Notes one query that took `took`.
    pub fn record(&self, took: Duration, failed: bool) {
        self.count.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        let seconds = took.as_secs_f64();
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&self.buckets) {
            if seconds <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// What the server measures as it answers.
#[derive(Debug, Default)]
pub struct ServerMetrics {
    pub sql: QueryTimings,
    pub native: QueryTimings,
}

pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/metrics", get(metrics))
}

/// Writes `# HELP`/`# TYPE` and then the samples of one metric.
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{labels} {value}");
    }
}

/// A label set: `{name="value",...}` with the values escaped.
fn labels(pairs: &[(&str, &str)]) -> String {
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}=\"{}\"",
                v.replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n")
            )
        })
        .collect();
    format!("{{{}}}", inner.join(","))
}

fn query_families(out: &mut String, metrics: &ServerMetrics) {
    let kinds = [("sql", &metrics.sql), ("native", &metrics.native)];
    let each = |f: &dyn Fn(&QueryTimings) -> f64| -> Vec<(String, f64)> {
        kinds
            .iter()
            .map(|(kind, t)| (labels(&[("kind", kind)]), f(t)))
            .collect()
    };
    family(
        out,
        "millrace_queries_total",
        "counter",
        "Queries answered (SQL at /druid/v2/sql, native at /druid/v2).",
        &each(&|t| t.count.load(Ordering::Relaxed) as f64),
    );
    family(
        out,
        "millrace_query_errors_total",
        "counter",
        "Queries answered with an error.",
        &each(&|t| t.errors.load(Ordering::Relaxed) as f64),
    );
    let _ = writeln!(
        out,
        "# HELP millrace_query_seconds Query latency.\n# TYPE millrace_query_seconds histogram"
    );
    for (kind, timings) in kinds {
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&timings.buckets) {
            let le = bound.to_string();
            let _ = writeln!(
                out,
                "millrace_query_seconds_bucket{} {}",
                labels(&[("kind", kind), ("le", &le)]),
                bucket.load(Ordering::Relaxed)
            );
        }
        let count = timings.count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "millrace_query_seconds_bucket{} {count}",
            labels(&[("kind", kind), ("le", "+Inf")])
        );
        let _ = writeln!(
            out,
            "millrace_query_seconds_sum{} {}",
            labels(&[("kind", kind)]),
            timings.micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "millrace_query_seconds_count{} {count}",
            labels(&[("kind", kind)])
        );
    }
}

fn ingestion_families(out: &mut String, app: &AppState) {
    let mut processed = Vec::new();
    let mut unparseable = Vec::new();
    let mut thrown_away = Vec::new();
    let mut lag = Vec::new();
    let mut healthy = Vec::new();
    for id in app.ingestion.supervisor_ids() {
        let Ok(status) = app.ingestion.status(&id) else {
            continue;
        };
        let label = labels(&[("supervisor", &id)]);
        let counts = status.active_tasks.iter().fold(
            millrace_ingest::task::RowCounts::default(),
            |mut sum, t| {
                sum += t.counts;
                sum
            },
        );
        processed.push((label.clone(), counts.processed as f64));
        unparseable.push((label.clone(), counts.unparseable as f64));
        thrown_away.push((label.clone(), counts.thrown_away as f64));
        lag.push((label.clone(), status.aggregate_lag() as f64));
        healthy.push((label, f64::from(u8::from(status.healthy))));
    }
    family(
        out,
        "millrace_supervisor_rows_processed",
        "gauge",
        "Rows the supervisor's running tasks ingested.",
        &processed,
    );
    family(
        out,
        "millrace_supervisor_rows_unparseable",
        "gauge",
        "Rows the supervisor's running tasks could not parse.",
        &unparseable,
    );
    family(
        out,
        "millrace_supervisor_rows_thrown_away",
        "gauge",
        "Rows the supervisor's running tasks filtered out or found outside their window.",
        &thrown_away,
    );
    family(
        out,
        "millrace_supervisor_lag",
        "gauge",
        "Records of the stream the supervisor's tasks have not read yet.",
        &lag,
    );
    family(
        out,
        "millrace_supervisor_healthy",
        "gauge",
        "1 when the supervisor is healthy.",
        &healthy,
    );
}

fn definition_families(out: &mut String, definitions: &[Value]) {
    let metric = |field: &str| -> Vec<(String, f64)> {
        definitions
            .iter()
            .map(|d| {
                let name = d["name"].as_str().unwrap_or("");
                (
                    labels(&[("definition", name)]),
                    d["metrics"][field].as_f64().unwrap_or(0.0),
                )
            })
            .collect()
    };
    family(
        out,
        "millrace_ksml_records_in_total",
        "counter",
        "Input records the definition's pipelines processed (this run).",
        &metric("recordsIn"),
    );
    family(
        out,
        "millrace_ksml_records_out_total",
        "counter",
        "Records the definition's pipelines wrote (this run).",
        &metric("recordsOut"),
    );
    family(
        out,
        "millrace_ksml_messages_produced_total",
        "counter",
        "Messages the definition's producers sent (this run).",
        &metric("messagesProduced"),
    );
    family(
        out,
        "millrace_ksml_errors_total",
        "counter",
        "Input records whose processing failed (this run).",
        &metric("recordsFailed"),
    );
    family(
        out,
        "millrace_ksml_late_records_dropped_total",
        "counter",
        "Records windowed operations dropped as late (this run).",
        &metric("lateRecordsDropped"),
    );
    family(
        out,
        "millrace_ksml_lag",
        "gauge",
        "Records of the definition's inputs not processed yet.",
        &metric("lag"),
    );
    let running: Vec<(String, f64)> = definitions
        .iter()
        .map(|d| {
            let name = d["name"].as_str().unwrap_or("");
            (
                labels(&[("definition", name)]),
                f64::from(u8::from(d["state"] == "RUNNING")),
            )
        })
        .collect();
    family(
        out,
        "millrace_ksml_running",
        "gauge",
        "1 while the definition runs.",
        &running,
    );
    // Per definition and name within it (a store, a function): one sample each.
    let per_name = |field: &str,
                    label: &str,
                    value_of: &dyn Fn(&Value) -> (String, f64)|
     -> Vec<(String, f64)> {
        definitions
            .iter()
            .flat_map(|d| {
                let definition = d["name"].as_str().unwrap_or("").to_string();
                let items: Vec<(String, f64)> = match &d["metrics"][field] {
                    Value::Object(map) => map
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_f64().unwrap_or(0.0)))
                        .collect(),
                    Value::Array(list) => list.iter().map(value_of).collect(),
                    _ => Vec::new(),
                };
                items.into_iter().map(move |(name, value)| {
                    (
                        labels(&[("definition", &definition), (label, &name)]),
                        value,
                    )
                })
            })
            .collect()
    };
    let function_seconds = |f: &Value| {
        (
            f["function"].as_str().unwrap_or("").to_string(),
            f["seconds"].as_f64().unwrap_or(0.0),
        )
    };
    family(
        out,
        "millrace_ksml_store_entries",
        "gauge",
        "About how many entries the definition's state store holds (at each task's last commit).",
        &per_name("storeEntries", "store", &function_seconds),
    );
    family(
        out,
        "millrace_ksml_python_busy_seconds_total",
        "counter",
        "Seconds the definition's threads were seen running a Python function (sampled every 100 ms; this run).",
        &per_name("pythonBusySeconds", "function", &function_seconds),
    );
}

async fn metrics(State(app): State<Arc<AppState>>) -> impl IntoResponse {
    let segments = app
        .engine
        .query(
            "SELECT datasource, COUNT(*) AS n, SUM(size) AS bytes FROM sys.segments \
             WHERE is_published = 1 AND is_overshadowed = 0 GROUP BY datasource",
            vec![],
        )
        .await
        .map(|output| object_rows(&output))
        .unwrap_or_default();
    let text = blocking(move || {
        let mut out = String::new();
        query_families(&mut out, &app.metrics);
        ingestion_families(&mut out, &app);
        let per_datasource = |field: &str| -> Vec<(String, f64)> {
            segments
                .iter()
                .map(|row| {
                    (
                        labels(&[("datasource", row["datasource"].as_str().unwrap_or(""))]),
                        row[field].as_f64().unwrap_or(0.0),
                    )
                })
                .collect()
        };
        family(
            &mut out,
            "millrace_segments_published",
            "gauge",
            "Published segments in use, per datasource.",
            &per_datasource("n"),
        );
        family(
            &mut out,
            "millrace_segment_bytes",
            "gauge",
            "Bytes of the published segments in use, per datasource.",
            &per_datasource("bytes"),
        );
        let jobs: Vec<(String, f64)> = match app.datagen.reports() {
            Value::Array(reports) => reports
                .iter()
                .map(|r| {
                    (
                        labels(&[("job", r["name"].as_str().unwrap_or(""))]),
                        r["total_records"].as_f64().unwrap_or(0.0),
                    )
                })
                .collect(),
            _ => Vec::new(),
        };
        family(
            &mut out,
            "millrace_datagen_records_total",
            "counter",
            "Records the data generator's job made.",
            &jobs,
        );
        if let Some(host) = app.definitions.get() {
            definition_families(&mut out, &host.list());
        }
        Ok(out)
    })
    .await
    .unwrap_or_else(|_| String::new());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}
