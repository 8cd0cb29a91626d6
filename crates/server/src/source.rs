//! What SQL reads from the server: datasource views from ingestion, and the `sys` tables
//! (segments, tasks, supervisors) built from the catalog and the running supervisors, with
//! Druid's column names and types.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Builder, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema};
use millrace_catalog::{ShardSpec, TaskStatus};
use millrace_ingest::Ingestion;
use millrace_ingest::visible::segment_place;
use millrace_query::QuerySource;
use millrace_segments::columns::SegmentSchema;
use millrace_segments::time::format_iso;
use millrace_segments::timeline::visibility;
use millrace_segments::view::DatasourceView;
use serde_json::json;

/// The server's data as SQL sees it.
pub struct ServerSource(pub Arc<Ingestion>, pub Arc<ServerIdentity>);

/// Who this server is, for `sys.servers` and `/status/properties`: one process in every
/// Druid role.
pub struct ServerIdentity {
    /// Where it listens, once it does.
    pub listening: std::sync::OnceLock<Listening>,
    /// When it started, epoch milliseconds.
    pub started: i64,
}

/// The address a server listens on, and whether with TLS.
#[derive(Debug, Clone, Copy)]
pub struct Listening {
    pub address: std::net::SocketAddr,
    pub tls: bool,
}

impl Listening {
    /// The plaintext port and the TLS port, -1 for the one not used (as Druid reports them).
    pub fn ports(&self) -> (i64, i64) {
        let port = i64::from(self.address.port());
        if self.tls { (-1, port) } else { (port, -1) }
    }
}

impl ServerIdentity {
    /// A server starting now, not listening yet.
    pub fn new() -> ServerIdentity {
        ServerIdentity {
            listening: std::sync::OnceLock::new(),
            started: millrace_ingest::now_millis(),
        }
    }
}

impl Default for ServerIdentity {
    fn default() -> Self {
        ServerIdentity::new()
    }
}

/// The Druid roles this one process plays, as `sys.servers` names them.
const ROLES: [&str; 5] = ["coordinator", "overlord", "broker", "historical", "indexer"];

/// A value of a sys table cell.
enum Cell {
    Text(Option<String>),
    Long(Option<i64>),
}

fn text(value: impl Into<String>) -> Cell {
    Cell::Text(Some(value.into()))
}

fn long(value: i64) -> Cell {
    Cell::Long(Some(value))
}

/// A batch from rows of cells; each column is text or long as its first definition says.
fn batch(columns: &[(&str, DataType)], rows: Vec<Vec<Cell>>) -> Option<RecordBatch> {
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(|(name, t)| Field::new(*name, t.clone(), true))
            .collect::<Vec<_>>(),
    ));
    let arrays: Vec<ArrayRef> = (0..columns.len())
        .map(|i| match columns[i].1 {
            DataType::Int64 => {
                let mut b = Int64Builder::with_capacity(rows.len());
                for row in &rows {
                    match &row[i] {
                        Cell::Long(v) => b.append_option(*v),
                        Cell::Text(_) => b.append_null(),
                    }
                }
                Arc::new(b.finish()) as ArrayRef
            }
            _ => {
                let mut b = StringBuilder::new();
                for row in &rows {
                    match &row[i] {
                        Cell::Text(v) => b.append_option(v.as_deref()),
                        Cell::Long(v) => b.append_option(v.map(|v| v.to_string())),
                    }
                }
                Arc::new(b.finish()) as ArrayRef
            }
        })
        .collect();
    RecordBatch::try_new(schema, arrays).ok()
}

/// A JSON array of comma-separated names (sys.segments lists names as arrays).
fn name_list(names: &str) -> String {
    let names: Vec<&str> = names.split(',').filter(|n| !n.is_empty()).collect();
    json!(names).to_string()
}

impl ServerSource {
    fn segments(&self) -> Option<RecordBatch> {
        use DataType::{Int64, Utf8};
        let columns = [
            ("segment_id", Utf8),
            ("datasource", Utf8),
            ("start", Utf8),
            ("end", Utf8),
            ("size", Int64),
            ("version", Utf8),
            ("partition_num", Int64),
            ("num_replicas", Int64),
            ("num_rows", Int64),
            ("is_active", Int64),
            ("is_published", Int64),
            ("is_available", Int64),
            ("is_realtime", Int64),
            ("is_overshadowed", Int64),
            ("shard_spec", Utf8),
            ("dimensions", Utf8),
            ("metrics", Utf8),
            ("last_compaction_state", Utf8),
            ("replication_factor", Int64),
        ];
        let catalog = self.0.catalog();
        let mut rows = Vec::new();
        for datasource in catalog.datasources().ok()? {
            let records = catalog.segments(&datasource, true).ok()?;
            let places: Vec<_> = records.iter().map(segment_place).collect();
            let overshadowed = visibility(&places).overshadowed;
            for (i, record) in records.iter().enumerate() {
                let is_overshadowed = overshadowed.contains(&i);
                let descriptor = &record.descriptor;
                rows.push(vec![
                    text(&record.id),
                    text(&record.datasource),
                    text(format_iso(record.start)),
                    text(format_iso(record.end)),
                    long(descriptor.size as i64),
                    text(&record.version),
                    long(record.partition_num.into()),
                    long(1),
                    long(descriptor.num_rows as i64),
                    long((!is_overshadowed).into()),
                    long(1),
                    long(1),
                    long(0),
                    long(is_overshadowed.into()),
                    text(json!(descriptor.shard_spec).to_string()),
                    text(name_list(&descriptor.dimensions)),
                    text(name_list(&descriptor.metrics)),
                    Cell::Text(
                        descriptor
                            .last_compaction_state
                            .as_ref()
                            .map(|s| s.to_string()),
                    ),
                    long(1),
                ]);
            }
        }
        for segment in self.0.visible().realtime_segments() {
            rows.push(vec![
                text(format!(
                    "{}_{}_{}_{}",
                    segment.datasource,
                    format_iso(segment.start),
                    format_iso(segment.end),
                    segment.task
                )),
                text(&segment.datasource),
                text(format_iso(segment.start)),
                text(format_iso(segment.end)),
                long(0),
                text(&segment.task),
                long(0),
                long(1),
                long(segment.rows as i64),
                long(1),
                long(0),
                long(1),
                long(1),
                long(0),
                text(
                    json!(ShardSpec::Numbered {
                        partition_num: 0,
                        partitions: 0
                    })
                    .to_string(),
                ),
                Cell::Text(None),
                Cell::Text(None),
                Cell::Text(None),
                long(0),
            ]);
        }
        batch(&columns, rows)
    }

    fn tasks(&self) -> Option<RecordBatch> {
        use DataType::{Int64, Utf8};
        let columns = [
            ("task_id", Utf8),
            ("group_id", Utf8),
            ("type", Utf8),
            ("datasource", Utf8),
            ("created_time", Utf8),
            ("queue_insertion_time", Utf8),
            ("status", Utf8),
            ("runner_status", Utf8),
            ("duration", Int64),
            ("location", Utf8),
            ("host", Utf8),
            ("plaintext_port", Int64),
            ("tls_port", Int64),
            ("error_msg", Utf8),
        ];
        let rows = self
            .0
            .catalog()
            .tasks()
            .ok()?
            .into_iter()
            .map(|task| {
                let running = task.status == TaskStatus::Running;
                let payload = &task.payload;
                vec![
                    text(&task.id),
                    text(&task.id),
                    text(task.kind.as_str()),
                    text(&task.datasource),
                    text(format_iso(task.created)),
                    text(format_iso(task.created)),
                    text(task.status.as_str()),
                    text(if running { "RUNNING" } else { "NONE" }),
                    Cell::Long(payload.get("duration").and_then(|d| d.as_i64())),
                    Cell::Text(None),
                    Cell::Text(None),
                    long(-1),
                    long(-1),
                    Cell::Text(
                        payload
                            .get("errorMsg")
                            .and_then(|e| e.as_str())
                            .map(String::from),
                    ),
                ]
            })
            .collect();
        batch(&columns, rows)
    }

    /// `host:port`, the host, and the plaintext and TLS ports (host `localhost` and ports -1
    /// before it listens).
    fn address(&self) -> (String, String, (i64, i64)) {
        let Some(listening) = self.1.listening.get() else {
            return ("localhost:-1".into(), "localhost".into(), (-1, -1));
        };
        let host = listening.address.ip().to_string();
        let server = format!("{host}:{}", listening.address.port());
        (server, host, listening.ports())
    }

    /// The published segments queries read (each is on this server), with their bytes; None
    /// when the catalog cannot be read.
    fn published(&self) -> Option<Vec<(String, u64)>> {
        let catalog = self.0.catalog();
        let mut published = Vec::new();
        for datasource in catalog.datasources().ok()? {
            let segments = catalog.segments(&datasource, true).ok()?;
            published.extend(segments.into_iter().map(|s| (s.id, s.descriptor.size)));
        }
        Some(published)
    }

    /// A row per role of this process; the data roles hold every published segment.
    fn servers(&self) -> Option<RecordBatch> {
        use DataType::{Int64, Utf8};
        let columns = [
            ("server", Utf8),
            ("host", Utf8),
            ("plaintext_port", Int64),
            ("tls_port", Int64),
            ("server_type", Utf8),
            ("tier", Utf8),
            ("curr_size", Int64),
            ("max_size", Int64),
            ("is_leader", Int64),
            ("start_time", Utf8),
        ];
        let (server, host, (plaintext_port, tls_port)) = self.address();
        let size: u64 = self.published()?.iter().map(|(_, size)| size).sum();
        let rows = ROLES
            .iter()
            .map(|role| {
                let holds_data = matches!(*role, "historical" | "indexer");
                let leads = matches!(*role, "coordinator" | "overlord");
                vec![
                    text(&server),
                    text(&host),
                    long(plaintext_port),
                    long(tls_port),
                    text(*role),
                    Cell::Text(holds_data.then(|| "_default_tier".to_string())),
                    long(if *role == "historical" {
                        size as i64
                    } else {
                        0
                    }),
                    long(0),
                    Cell::Long(leads.then_some(1)),
                    text(format_iso(self.1.started)),
                ]
            })
            .collect();
        batch(&columns, rows)
    }

    /// Which server holds which published segment: this one's historical role, all of them.
    fn server_segments(&self) -> Option<RecordBatch> {
        use DataType::Utf8;
        let columns = [("server", Utf8), ("segment_id", Utf8)];
        let (server, _, _) = self.address();
        let rows = self
            .published()?
            .into_iter()
            .map(|(id, _)| vec![text(&server), text(id)])
            .collect();
        batch(&columns, rows)
    }

    fn supervisors(&self) -> Option<RecordBatch> {
        use DataType::{Int64, Utf8};
        let columns = [
            ("supervisor_id", Utf8),
            ("state", Utf8),
            ("detailed_state", Utf8),
            ("healthy", Int64),
            ("type", Utf8),
            ("source", Utf8),
            ("suspended", Int64),
            ("spec", Utf8),
        ];
        let rows = self
            .0
            .supervisor_ids()
            .into_iter()
            .filter_map(|id| {
                let status = self.0.status(&id).ok()?;
                let spec = self.0.spec(&id).ok()?;
                Some(vec![
                    text(&id),
                    text(status.state),
                    text(status.detailed_state),
                    long(status.healthy.into()),
                    text("kafka"),
                    text(&status.stream),
                    long(status.suspended.into()),
                    text(spec.to_string()),
                ])
            })
            .collect();
        batch(&columns, rows)
    }
}

impl QuerySource for ServerSource {
    fn datasource_names(&self) -> Vec<String> {
        self.0.visible().names()
    }

    fn datasource(&self, name: &str) -> Option<DatasourceView> {
        self.0.visible().view(name)
    }

    fn datasource_schema(&self, name: &str) -> Option<SegmentSchema> {
        self.0.visible().schema(name)
    }

    fn system_table(&self, name: &str) -> Option<RecordBatch> {
        match name {
            "segments" => self.segments(),
            "tasks" => self.tasks(),
            "supervisors" => self.supervisors(),
            "servers" => self.servers(),
            "server_segments" => self.server_segments(),
            _ => None,
        }
    }
}
