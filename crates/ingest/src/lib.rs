//! Streaming ingestion as Druid's Kafka indexing service does it: supervisors run one task per
//! task group, tasks index records into per-chunk realtime indexes that queries see at once,
//! and publish Parquet segments together with their end offsets, exactly once.
//!
//! [`Ingestion`] is the overlord: it keeps the supervisors (stored in the catalog, resumed on
//! start-up) and the registry of what queries see ([`visible::Visible`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use millrace_catalog::{
    Catalog, CatalogError, StreamOffsets, SupervisorRecord, TaskKind, TaskStatus,
};
use millrace_log::{Log, LogError};
use millrace_segments::input::RowReader;
use millrace_segments::spec::{SpecError, SupervisorSpec, fields_not_acted_on};
use millrace_segments::transform::RowTransformer;

pub mod compact;
pub mod coordinator;
pub mod locks;
pub mod publish;
pub mod stream;
pub mod submitted;
pub mod supervisor;
pub mod task;
pub mod visible;

use locks::IntervalLocks;
use submitted::Compactions;
use supervisor::Supervisor;
pub use supervisor::{ActiveTask, RecentError, SupervisorStatus};
use visible::Visible;

/// Errors of ingestion.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("writing a segment: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("building columns: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("segment metadata: {0}")]
    Json(#[from] serde_json::Error),
    /// The spec is not valid; the path says where.
    #[error("{0}")]
    Spec(SpecError),
    #[error("supervisor '{0}' does not exist")]
    NoSupervisor(String),
    /// Another task works on the interval.
    #[error("{0}")]
    Locked(String),
}

/// Milliseconds since the Unix epoch now.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Opens a Kafka cluster as a log, from a spec's consumer properties (those with
/// `bootstrap.servers`): how supervisors read external clusters without this crate linking a
/// Kafka client.
pub type ClusterConnector =
    Arc<dyn Fn(&[(String, String)]) -> Result<Arc<dyn Log>, String> + Send + Sync>;

/// What tasks and supervisors share: the server's own log, the catalog they publish to, the
/// data directory segment files go in, the registry of visible data, and how to reach the
/// Kafka clusters specs name.
pub struct Context {
    pub log: Arc<dyn Log>,
    pub connect: Option<ClusterConnector>,
    pub catalog: Arc<dyn Catalog>,
    pub data_dir: PathBuf,
    pub visible: Arc<Visible>,
    /// Held while a publish allocates partition numbers and writes to the catalog.
    publish_lock: Mutex<()>,
    /// The intervals compactions and kills work on.
    locks: IntervalLocks,
    /// Set when the server shuts down: tasks retrying a publish give up at once.
    shutting_down: AtomicBool,
}

/// The overlord: supervisors by id (the datasource name), and the compactions started.
pub struct Ingestion {
    context: Arc<Context>,
    supervisors: Mutex<BTreeMap<String, Supervisor>>,
    compactions: Compactions,
    duties: Mutex<coordinator::DutyState>,
}

/// Checks a spec completely: its shape, its expressions and filters, its input format, and
/// that the stream it names can be read.
pub fn check_spec(body: &[u8]) -> Result<SupervisorSpec, SpecError> {
    let spec = SupervisorSpec::from_json(body)?;
    RowTransformer::new(&spec.spec.data_schema, &spec.spec.io_config)?;
    RowReader::new(&spec.spec.io_config.input_format).map_err(|message| SpecError {
        path: "spec.ioConfig.inputFormat".into(),
        message,
    })?;
    let io = &spec.spec.io_config;
    stream::Stream::of(&spec)?;
    if io.replicas > 1 {
        return Err(SpecError {
            path: "spec.ioConfig.replicas".into(),
            message: "only 1 replica is supported".into(),
        });
    }
    Ok(spec)
}

/// The stored spec JSON with its `suspended` flag set.
fn with_suspended(mut spec: serde_json::Value, suspended: bool) -> serde_json::Value {
    if let Some(object) = spec.as_object_mut() {
        object.insert("suspended".into(), suspended.into());
    }
    spec
}

impl Ingestion {
    /// Starts ingestion over a data directory: loads visible segments, marks tasks a crash
    /// left RUNNING as failed, and resumes every stored supervisor from its stored offsets.
    pub fn open(
        log: Arc<dyn Log>,
        catalog: Arc<dyn Catalog>,
        data_dir: &Path,
        connect: Option<ClusterConnector>,
    ) -> Result<Ingestion, IngestError> {
        // Rows tasks persisted before the server stopped are read again from the log.
        let persisted = data_dir.join("tasks");
        if persisted.exists() {
            std::fs::remove_dir_all(&persisted)
                .map_err(|e| IngestError::Io(format!("removing {}", persisted.display()), e))?;
        }
        remove_unpublished_files(data_dir, catalog.as_ref())?;
        let visible = Arc::new(Visible::new(data_dir));
        visible.load(catalog.as_ref())?;
        for mut task in catalog.tasks()? {
            if task.status == TaskStatus::Running {
                task.status = TaskStatus::Failed;
                let why = match task.kind {
                    TaskKind::IndexKafka => {
                        "the server stopped before the task finished; a later task reads its records again"
                    }
                    _ => "the server stopped before the task finished; nothing was published",
                };
                if let Some(payload) = task.payload.as_object_mut() {
                    payload.insert("errorMsg".into(), why.into());
                }
                catalog.put_task(&task)?;
            }
        }
        let context = Arc::new(Context {
            log,
            connect,
            catalog,
            data_dir: data_dir.to_path_buf(),
            visible,
            publish_lock: Mutex::new(()),
            locks: IntervalLocks::default(),
            shutting_down: AtomicBool::new(false),
        });
        let ingestion = Ingestion {
            context,
            supervisors: Mutex::new(BTreeMap::new()),
            compactions: Compactions::default(),
            duties: Mutex::default(),
        };
        for record in ingestion.context.catalog.supervisors()? {
            let body = serde_json::to_vec(&record.spec)?;
            match check_spec(&body) {
                // A supervisor reading a Kafka cluster reaches it from its own thread, so an
                // unreachable cluster neither delays the start nor keeps the server from
                // serving: the supervisor retries, its status saying why it waits.
                Ok(spec) => match supervisor::log_of_own(&ingestion.context, &spec)
                    .and_then(|log| Supervisor::start(ingestion.context.clone(), spec, log))
                {
                    Ok(supervisor) => {
                        ingestion.lock().insert(record.id, supervisor);
                    }
                    Err(IngestError::Spec(e)) => tracing::error!(
                        supervisor = %record.id,
                        "not started: {e}; submit its spec again to start it"
                    ),
                    Err(e) => return Err(e),
                },
                Err(e) => {
                    tracing::error!(supervisor = %record.id, "stored spec is not valid any more: {e}")
                }
            }
        }
        Ok(ingestion)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Supervisor>> {
        self.supervisors.lock().expect("supervisors lock")
    }

    /// What queries see.
    pub fn visible(&self) -> &Arc<Visible> {
        &self.context.visible
    }

    pub fn catalog(&self) -> &Arc<dyn Catalog> {
        &self.context.catalog
    }

    pub fn log(&self) -> &Arc<dyn Log> {
        &self.context.log
    }

    /// Creates or replaces a supervisor. A bad spec, or one naming a Kafka cluster that cannot
    /// be reached, is refused before anything running is touched; a replaced supervisor's
    /// tasks publish first.
    pub fn submit(&self, body: &[u8]) -> Result<String, IngestError> {
        let spec = check_spec(body).map_err(IngestError::Spec)?;
        let json: serde_json::Value = serde_json::from_slice(body)?;
        let id = spec.id().to_string();
        let ignored = fields_not_acted_on(&json);
        if !ignored.is_empty() {
            tracing::warn!(
                supervisor = %id,
                "spec fields accepted but not acted on: {}",
                ignored.join(", ")
            );
        }
        // Reaching the cluster may take a while: not under the supervisors' lock.
        let log = supervisor::log_of(&self.context, &spec)?;
        let mut supervisors = self.lock();
        if let Some(old) = supervisors.remove(&id) {
            old.stop(true);
        }
        self.context.catalog.put_supervisor(&SupervisorRecord {
            id: id.clone(),
            spec: with_suspended(json, spec.suspended),
            suspended: spec.suspended,
            created: now_millis(),
        })?;
        let supervisor = Supervisor::start(self.context.clone(), spec, Some(log))?;
        supervisors.insert(id.clone(), supervisor);
        Ok(id)
    }

    /// Ids of the supervisors.
    pub fn supervisor_ids(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// A supervisor's spec as submitted (with its current `suspended` flag).
    pub fn spec(&self, id: &str) -> Result<serde_json::Value, IngestError> {
        self.context
            .catalog
            .supervisors()?
            .into_iter()
            .find(|s| s.id == id)
            .map(|s| s.spec)
            .ok_or_else(|| IngestError::NoSupervisor(id.to_string()))
    }

    /// A supervisor's status.
    pub fn status(&self, id: &str) -> Result<SupervisorStatus, IngestError> {
        self.lock()
            .get(id)
            .map(Supervisor::status)
            .ok_or_else(|| IngestError::NoSupervisor(id.to_string()))
    }

    /// Suspends or resumes a supervisor; returns its spec.
    pub fn set_suspended(
        &self,
        id: &str,
        suspended: bool,
    ) -> Result<serde_json::Value, IngestError> {
        let supervisors = self.lock();
        let supervisor = supervisors
            .get(id)
            .ok_or_else(|| IngestError::NoSupervisor(id.to_string()))?;
        let mut record = self
            .context
            .catalog
            .supervisors()?
            .into_iter()
            .find(|s| s.id == id)
            .ok_or_else(|| IngestError::NoSupervisor(id.to_string()))?;
        record.spec = with_suspended(record.spec, suspended);
        record.suspended = suspended;
        self.context.catalog.put_supervisor(&record)?;
        supervisor.set_suspended(suspended);
        Ok(record.spec)
    }

    /// Stops a supervisor's tasks unpublished and clears (None) or sets its stored offsets
    /// (partitions not named keep theirs). The offsets must be of the supervisor's stream.
    pub fn reset(&self, id: &str, offsets: Option<StreamOffsets>) -> Result<(), IngestError> {
        let supervisors = self.lock();
        let supervisor = supervisors
            .get(id)
            .ok_or_else(|| IngestError::NoSupervisor(id.to_string()))?;
        if let Some(offsets) = &offsets
            && offsets.stream != supervisor.stream_name()
        {
            return Err(IngestError::Spec(SpecError {
                path: "partitions.stream".into(),
                message: format!(
                    "supervisor '{id}' reads '{}', not '{}'",
                    supervisor.stream_name(),
                    offsets.stream
                ),
            }));
        }
        supervisor.reset(offsets);
        Ok(())
    }

    /// Shuts a running task down unpublished; false when no running task has that id.
    pub fn stop_task(&self, task_id: &str) -> bool {
        self.lock().values().any(|s| s.stop_task(task_id)) || self.compactions.cancel(task_id)
    }

    /// Terminates a supervisor: its tasks publish, then it is removed. Waits for that.
    pub fn terminate(&self, id: &str) -> Result<(), IngestError> {
        // The lock is held until the record is gone, so a spec submitted meanwhile for the
        // same datasource waits instead of starting tasks beside the publishing ones.
        let mut supervisors = self.lock();
        let supervisor = supervisors
            .remove(id)
            .ok_or_else(|| IngestError::NoSupervisor(id.to_string()))?;
        supervisor.stop(true);
        self.context.catalog.delete_supervisor(id)?;
        Ok(())
    }

    /// Deletes a datasource's unused segments within an interval, rows and files (Druid's
    /// `kill` task `task_id`); returns how many. It holds the interval's lock, so no
    /// compaction reads a file it deletes; publishes wait meanwhile, so none can take a
    /// killed segment's partition number (and file name) before its file is gone.
    pub fn kill_unused(
        &self,
        task_id: &str,
        datasource: &str,
        interval: (i64, i64),
    ) -> Result<usize, IngestError> {
        let _lock = self
            .context
            .locks
            .try_lock(task_id, datasource, interval)
            .map_err(IngestError::Locked)?;
        let _publishes = self.context.publish_lock.lock().expect("publish lock");
        let killed = self.context.catalog.delete_unused(datasource, interval)?;
        for segment in &killed {
            if let Some(file) = visible::segment_file(&self.context.data_dir, segment) {
                let _ = std::fs::remove_file(file.path);
            }
        }
        Ok(killed.len())
    }

    /// Stops every supervisor without publishing (server shutdown): nothing is half-done,
    /// and the next start reads the unpublished records again.
    pub fn shutdown(&self) {
        // Set before taking the lock: a terminate holding it while a task retries a failing
        // publish would otherwise keep the shutdown waiting.
        self.context.shutting_down.store(true, Ordering::SeqCst);
        let supervisors = std::mem::take(&mut *self.lock());
        for (_, supervisor) in supervisors {
            supervisor.stop(false);
        }
        self.compactions.stop_all();
    }
}

/// Removes segment files no catalog record names: those of a publish or compaction that the
/// server stopped before it committed, and half-written ones.
fn remove_unpublished_files(data_dir: &Path, catalog: &dyn Catalog) -> Result<(), IngestError> {
    let root = data_dir.join("segments");
    let Ok(directories) = std::fs::read_dir(&root) else {
        return Ok(());
    };
    for directory in directories.flatten() {
        let datasource = directory.file_name().to_string_lossy().into_owned();
        let named: std::collections::HashSet<PathBuf> = catalog
            .segments(&datasource, false)?
            .iter()
            .map(|s| data_dir.join(&s.descriptor.load_spec.path))
            .collect();
        let Ok(files) = std::fs::read_dir(directory.path()) else {
            continue;
        };
        for file in files.flatten() {
            let path = file.path();
            if path.is_file() && !named.contains(&path) {
                tracing::info!(file = %path.display(), "removing a segment file nothing published");
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    Ok(())
}
