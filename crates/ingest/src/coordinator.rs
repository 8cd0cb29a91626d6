//! The coordinator's duties over published segments: auto-compaction (the configs, and the
//! duty that starts compaction tasks; see [`crate::compact::auto`]) and marking overshadowed
//! segments unused, as Druid's coordinator does, so that a later kill can delete them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use millrace_catalog::{SegmentRecord, SegmentSelection};
use millrace_segments::timeline::{SegmentPlace, visibility};
use serde_json::{Value, json};

use crate::compact::auto::{self, AutoConfig, Snapshot};
use crate::compact::spec::CompactionSpec;
use crate::submitted::SubmittedTask;
use crate::visible::segment_place;
use crate::{IngestError, Ingestion};

/// What the duties remember between runs.
#[derive(Debug, Default)]
pub(crate) struct DutyState {
    /// The last run's survey of each configured datasource.
    snapshots: BTreeMap<String, Snapshot>,
    /// Segments found overshadowed by the last run: those still overshadowed at the next
    /// are marked unused (so a query or compaction that just started on them finishes).
    overshadowed: BTreeSet<String>,
}

impl Ingestion {
    /// Druid's coordinator compaction document: every datasource's config and the task
    /// slots.
    pub fn compaction_document(&self) -> Result<Value, IngestError> {
        Ok(self
            .catalog()
            .setting(auto::SETTING)?
            .unwrap_or_else(auto::empty_document))
    }

    fn put_compaction_document(&self, document: &Value) -> Result<(), IngestError> {
        Ok(self.catalog().put_setting(auto::SETTING, document)?)
    }

    /// Adds or replaces a datasource's auto-compaction config; a wrong one is refused with
    /// the field's path.
    pub fn set_compaction_config(&self, body: &Value) -> Result<(), IngestError> {
        let config = AutoConfig::from_json(body).map_err(IngestError::Spec)?;
        if !config.not_acted_on.is_empty() {
            tracing::warn!(datasource = %config.datasource,
                "compaction config fields accepted but not acted on: {}",
                config.not_acted_on.join(", "));
        }
        let mut document = self.compaction_document()?;
        let configs = configs_of(&mut document);
        configs.retain(|c| c["dataSource"] != json!(config.datasource));
        configs.push(config.json);
        self.put_compaction_document(&document)
    }

    /// A datasource's auto-compaction config, as stored.
    pub fn compaction_config(&self, datasource: &str) -> Result<Option<Value>, IngestError> {
        let mut document = self.compaction_document()?;
        Ok(configs_of(&mut document)
            .iter()
            .find(|c| c["dataSource"] == json!(datasource))
            .cloned())
    }

    /// Removes a datasource's config; false when it had none.
    pub fn delete_compaction_config(&self, datasource: &str) -> Result<bool, IngestError> {
        let mut document = self.compaction_document()?;
        let configs = configs_of(&mut document);
        let before = configs.len();
        configs.retain(|c| c["dataSource"] != json!(datasource));
        let removed = configs.len() < before;
        if removed {
            self.put_compaction_document(&document)?;
            self.duties
                .lock()
                .expect("duty state")
                .snapshots
                .remove(datasource);
        }
        Ok(removed)
    }

    /// Sets the task slots (`compactionTaskSlotRatio`, `maxCompactionTaskSlots`).
    pub fn set_compaction_slots(
        &self,
        ratio: Option<f64>,
        max: Option<u64>,
    ) -> Result<(), IngestError> {
        let mut document = self.compaction_document()?;
        if let Some(ratio) = ratio {
            document["compactionTaskSlotRatio"] = json!(ratio);
        }
        if let Some(max) = max {
            document["maxCompactionTaskSlots"] = json!(max);
        }
        self.put_compaction_document(&document)
    }

    /// The last duty run's status of each configured datasource (or of one).
    pub fn compaction_status(&self, datasource: Option<&str>) -> Vec<Snapshot> {
        let state = self.duties.lock().expect("duty state");
        state
            .snapshots
            .values()
            .filter(|s| datasource.is_none_or(|d| d == s.data_source))
            .cloned()
            .collect()
    }

    /// Runs the coordinator's duties once: starts compaction tasks for chunks awaiting
    /// compaction (newest first, within the free task slots) and marks segments unused that
    /// stayed overshadowed since the last run. Returns the ids of the tasks started.
    pub fn run_coordinator_duties(&self) -> Result<Vec<String>, IngestError> {
        let document = self.compaction_document()?;
        let slots = auto::task_slots(&document) as usize;
        let mut started = Vec::new();
        let mut snapshots = BTreeMap::new();
        for body in document["compactionConfigs"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let config = match AutoConfig::from_json(body) {
                Ok(config) => config,
                Err(e) => {
                    tracing::error!("a stored compaction config is not valid any more: {e}");
                    continue;
                }
            };
            let used = self.catalog().segments(&config.datasource, true)?;
            let visible = visible_of(&used);
            let survey = auto::survey(&config, &visible);
            snapshots.insert(config.datasource.clone(), survey.snapshot);
            for chunk in survey.awaiting {
                if self.compactions.running() >= slots {
                    break;
                }
                if self
                    .compactions
                    .is_working_on(&config.datasource, chunk.interval)
                {
                    continue;
                }
                let mut spec = CompactionSpec::from_json(&config.task_spec(chunk.interval))
                    .map_err(IngestError::Spec)?;
                spec.id = Some(crate::submitted::task_id(
                    self,
                    "coordinator-issued_compact",
                    &config.datasource,
                )?);
                started.push(self.run_task(SubmittedTask::Compact(Box::new(spec)))?);
            }
        }
        self.duties.lock().expect("duty state").snapshots = snapshots;
        self.mark_overshadowed_unused()?;
        Ok(started)
    }

    /// Marks unused the segments that were overshadowed at the last run and still are.
    fn mark_overshadowed_unused(&self) -> Result<(), IngestError> {
        // Under the publish lock: a compaction checks the used segments of its chunks when
        // it publishes, and must not see them change between its check and its commit.
        let _publishes = self.context.publish_lock.lock().expect("publish lock");
        let mut now_overshadowed = BTreeSet::new();
        for datasource in self.catalog().datasources()? {
            let used = self.catalog().segments(&datasource, true)?;
            let places: Vec<SegmentPlace> = used.iter().map(segment_place).collect();
            let overshadowed: Vec<String> = visibility(&places)
                .overshadowed
                .into_iter()
                .map(|i| used[i].id.clone())
                .collect();
            let state = self.duties.lock().expect("duty state");
            let stale: Vec<String> = overshadowed
                .iter()
                .filter(|id| state.overshadowed.contains(*id))
                .cloned()
                .collect();
            drop(state);
            if !stale.is_empty() {
                let marked = self
                    .catalog()
                    .mark_unused(&datasource, &SegmentSelection::Ids(stale))?;
                tracing::info!(datasource, marked, "overshadowed segments marked unused");
            }
            now_overshadowed.extend(overshadowed);
        }
        self.duties.lock().expect("duty state").overshadowed = now_overshadowed;
        Ok(())
    }

    /// Runs the duties every `period` on their own thread until the server shuts down.
    pub fn start_coordinator(self: &Arc<Self>, period: Duration) -> std::thread::JoinHandle<()> {
        let ingestion = self.clone();
        std::thread::Builder::new()
            .name("coordinator".into())
            .spawn(move || {
                let mut next = Instant::now() + period;
                while !ingestion.context.shutting_down.load(Ordering::SeqCst) {
                    if Instant::now() < next {
                        std::thread::sleep(Duration::from_millis(50).min(period));
                        continue;
                    }
                    if let Err(e) = ingestion.run_coordinator_duties() {
                        tracing::error!("coordinator duties failed: {e}");
                    }
                    next = Instant::now() + period;
                }
            })
            .expect("starting the coordinator thread")
    }
}

/// The configs of the document (made a list when absent).
fn configs_of(document: &mut Value) -> &mut Vec<Value> {
    if !document["compactionConfigs"].is_array() {
        document["compactionConfigs"] = json!([]);
    }
    document["compactionConfigs"]
        .as_array_mut()
        .expect("made a list above")
}

fn visible_of(used: &[SegmentRecord]) -> Vec<&SegmentRecord> {
    let places: Vec<SegmentPlace> = used.iter().map(segment_place).collect();
    visibility(&places)
        .visible
        .into_iter()
        .map(|i| &used[i])
        .collect()
}
