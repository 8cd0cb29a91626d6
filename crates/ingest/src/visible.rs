//! What queries see of each datasource: the visible published segments (as the catalog has
//! them) and the realtime indexes of running tasks.
//!
//! A task's publish swaps its realtime rows for the segments it wrote under the write lock,
//! and a query takes its view under the read lock, so no query ever sees rows twice or not
//! at all.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use millrace_catalog::{Catalog, CatalogError, PublishOutcome, SegmentRecord, ShardSpec};
use millrace_segments::columns::SegmentSchema;
use millrace_segments::index::ChunkIndex;
use millrace_segments::shard::ShardKeys;
use millrace_segments::timeline::{SegmentPlace, visibility};
use millrace_segments::view::{DatasourceView, RealtimeChunk, SegmentFile};

/// The chunk indexes a running task holds (several per time chunk once one is full).
pub type TaskIndexes = Arc<Mutex<Vec<ChunkIndex>>>;

#[derive(Default)]
struct Datasource {
    segments: Vec<Arc<SegmentFile>>,
    /// Realtime indexes by task id.
    tasks: BTreeMap<String, TaskIndexes>,
}

/// A chunk index a running task holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealtimeSegment {
    pub datasource: String,
    pub task: String,
    pub start: i64,
    pub end: i64,
    pub rows: usize,
}

/// The registry of visible data, shared by tasks (writers) and queries (readers).
pub struct Visible {
    data_dir: PathBuf,
    datasources: RwLock<BTreeMap<String, Datasource>>,
}

/// The segment file a catalog record describes (its descriptor names the file and columns).
pub fn segment_file(data_dir: &Path, record: &SegmentRecord) -> Option<SegmentFile> {
    let descriptor = &record.descriptor;
    let schema: SegmentSchema = serde_json::from_value(descriptor.columns.clone()).ok()?;
    Some(SegmentFile {
        id: record.id.clone(),
        start: record.start,
        end: record.end,
        path: data_dir.join(&descriptor.load_spec.path),
        size: descriptor.size,
        num_rows: descriptor.num_rows,
        schema,
        keys: shard_keys(&descriptor.shard_spec),
    })
}

/// What a shard spec says of the rows its segment holds.
fn shard_keys(spec: &ShardSpec) -> ShardKeys {
    match spec {
        ShardSpec::Numbered { .. } | ShardSpec::Linear { .. } => ShardKeys::Any,
        ShardSpec::Single {
            dimension,
            start,
            end,
            ..
        } => ShardKeys::Range {
            dimensions: vec![dimension.clone()],
            start: start.as_ref().map(|s| vec![Some(s.clone())]),
            end: end.as_ref().map(|e| vec![Some(e.clone())]),
        },
        ShardSpec::Range {
            dimensions,
            start,
            end,
            ..
        } => ShardKeys::Range {
            dimensions: dimensions.clone(),
            start: start.clone(),
            end: end.clone(),
        },
        // Only buckets of Druid's murmur3_32_abs can be computed here.
        ShardSpec::Hashed {
            partition_dimensions,
            bucket_id,
            num_buckets,
            partition_function,
            ..
        } if partition_function.as_deref() == Some("murmur3_32_abs") => ShardKeys::Hashed {
            dimensions: partition_dimensions.clone(),
            bucket: *bucket_id,
            buckets: *num_buckets,
        },
        ShardSpec::Hashed { .. } => ShardKeys::Any,
    }
}

/// The place of a segment record in its timeline.
pub fn segment_place(record: &SegmentRecord) -> SegmentPlace {
    SegmentPlace {
        datasource: record.datasource.clone(),
        start: record.start,
        end: record.end,
        version: record.version.clone(),
        partition_num: record.partition_num,
        core_partitions: record.descriptor.shard_spec.core_partitions(),
    }
}

impl Visible {
    pub fn new(data_dir: &Path) -> Visible {
        Visible {
            data_dir: data_dir.to_path_buf(),
            datasources: RwLock::new(BTreeMap::new()),
        }
    }

    /// Loads every datasource's visible segments from the catalog (at start-up).
    pub fn load(&self, catalog: &dyn Catalog) -> Result<(), CatalogError> {
        for datasource in catalog.datasources()? {
            self.refresh(catalog, &datasource)?;
        }
        Ok(())
    }

    /// Reloads one datasource's visible segments (after segments were marked used or unused).
    pub fn refresh(&self, catalog: &dyn Catalog, datasource: &str) -> Result<(), CatalogError> {
        let mut datasources = self.datasources.write().expect("visible lock");
        self.reload(&mut datasources, catalog, datasource)
    }

    fn reload(
        &self,
        datasources: &mut BTreeMap<String, Datasource>,
        catalog: &dyn Catalog,
        datasource: &str,
    ) -> Result<(), CatalogError> {
        let records = catalog.segments(datasource, true)?;
        let places: Vec<SegmentPlace> = records.iter().map(segment_place).collect();
        let visible = visibility(&places).visible;
        let segments: Vec<Arc<SegmentFile>> = visible
            .into_iter()
            .filter_map(|i| segment_file(&self.data_dir, &records[i]))
            .map(Arc::new)
            .collect();
        let entry = datasources.entry(datasource.to_string()).or_default();
        entry.segments = segments;
        if entry.segments.is_empty() && entry.tasks.is_empty() {
            datasources.remove(datasource);
        }
        Ok(())
    }

    /// Shows a running task's realtime indexes to queries.
    pub fn add_task(&self, datasource: &str, task_id: &str, indexes: TaskIndexes) {
        let mut datasources = self.datasources.write().expect("visible lock");
        datasources
            .entry(datasource.to_string())
            .or_default()
            .tasks
            .insert(task_id.to_string(), indexes);
    }

    /// Stops showing a task's realtime indexes (a task that ends without publishing).
    pub fn remove_task(&self, datasource: &str, task_id: &str) {
        let mut datasources = self.datasources.write().expect("visible lock");
        if let Some(entry) = datasources.get_mut(datasource) {
            entry.tasks.remove(task_id);
            if entry.segments.is_empty() && entry.tasks.is_empty() {
                datasources.remove(datasource);
            }
        }
    }

    /// Runs a task's catalog publish and, when it succeeds, shows the published segments in
    /// place of the task's realtime rows, all under the write lock.
    pub fn publish(
        &self,
        catalog: &dyn Catalog,
        datasource: &str,
        task_id: &str,
        publish: impl FnOnce() -> Result<PublishOutcome, CatalogError>,
    ) -> Result<PublishOutcome, CatalogError> {
        let mut datasources = self.datasources.write().expect("visible lock");
        let outcome = publish()?;
        if outcome == PublishOutcome::Published {
            if let Some(entry) = datasources.get_mut(datasource) {
                entry.tasks.remove(task_id);
            }
            // Published is published: the caller must not undo it (its files are in the
            // catalog now). Queries see the segments at the datasource's next reload.
            if let Err(e) = self.reload(&mut datasources, catalog, datasource) {
                tracing::error!(
                    datasource,
                    "published segments are not shown to queries until the next publish or restart: reading the catalog failed: {e}"
                );
            }
        }
        Ok(outcome)
    }

    /// Names of datasources with segments or realtime rows.
    pub fn names(&self) -> Vec<String> {
        let datasources = self.datasources.read().expect("visible lock");
        datasources.keys().cloned().collect()
    }

    /// A datasource's rows as a query sees them now.
    pub fn view(&self, datasource: &str) -> Option<DatasourceView> {
        let datasources = self.datasources.read().expect("visible lock");
        let entry = datasources.get(datasource)?;
        let (mut realtime, mut persisted) = (Vec::new(), Vec::new());
        for indexes in entry.tasks.values() {
            let mut indexes = indexes.lock().expect("task indexes lock");
            for index in indexes.iter_mut() {
                let (start, end) = index.interval();
                persisted.extend(index.persisted().iter().cloned());
                for batch in index.unwritten() {
                    realtime.push(RealtimeChunk {
                        start,
                        end,
                        schema: index.schema().clone(),
                        batch: batch.clone(),
                    });
                }
                if index.in_memory_rows() == 0 {
                    continue;
                }
                // Building a batch only fails on a column type mismatch, which the index rules out.
                if let Ok(batch) = index.batch() {
                    realtime.push(RealtimeChunk {
                        start,
                        end,
                        schema: index.schema().clone(),
                        batch,
                    });
                }
            }
        }
        Some(DatasourceView {
            segments: entry.segments.clone(),
            persisted,
            realtime,
        })
    }

    /// The columns of a datasource's rows now, without building its realtime batches.
    pub fn schema(&self, datasource: &str) -> Option<SegmentSchema> {
        let datasources = self.datasources.read().expect("visible lock");
        let entry = datasources.get(datasource)?;
        let mut schemas: Vec<SegmentSchema> =
            entry.segments.iter().map(|s| s.schema.clone()).collect();
        for indexes in entry.tasks.values() {
            let indexes = indexes.lock().expect("task indexes lock");
            schemas.extend(indexes.iter().map(|i| i.schema().clone()));
        }
        Some(SegmentSchema::merge(&schemas))
    }

    /// The chunk indexes running tasks hold now (for sys.segments).
    pub fn realtime_segments(&self) -> Vec<RealtimeSegment> {
        let datasources = self.datasources.read().expect("visible lock");
        let mut segments = Vec::new();
        for (datasource, entry) in datasources.iter() {
            for (task, indexes) in &entry.tasks {
                for index in indexes.lock().expect("task indexes lock").iter() {
                    let (start, end) = index.interval();
                    segments.push(RealtimeSegment {
                        datasource: datasource.clone(),
                        task: task.clone(),
                        start,
                        end,
                        rows: index.len(),
                    });
                }
            }
        }
        segments
    }
}
