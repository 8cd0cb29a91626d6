//! Supervisors and tasks over the embedded log and the SQLite catalog: realtime visibility,
//! publishing on suspend, restarts from published offsets, parse errors and bad specs.

mod compaction;

use std::sync::Arc;
use std::time::{Duration, Instant};

use millrace_catalog::{Catalog, SqliteCatalog};
use millrace_ingest::{ClusterConnector, Ingestion};
use millrace_log::{EmbeddedLog, EmbeddedLogConfig, Log, Record};
use serde_json::json;

const HOUR: i64 = 3_600_000;
/// 2025-01-01T00:00:00Z.
const BASE: i64 = 1_735_689_600_000;

struct Server {
    dir: tempfile::TempDir,
    log: Arc<EmbeddedLog>,
    catalog: Arc<SqliteCatalog>,
}

impl Server {
    fn new() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(EmbeddedLog::open(dir.path(), EmbeddedLogConfig::default()).unwrap());
        let catalog = Arc::new(SqliteCatalog::open(&dir.path().join("catalog.db")).unwrap());
        Server { dir, log, catalog }
    }

    fn ingestion(&self) -> Ingestion {
        self.ingestion_reaching(None)
    }

    /// An ingestion reaching the Kafka clusters specs name through `connect`.
    fn ingestion_reaching(&self, connect: Option<ClusterConnector>) -> Ingestion {
        Ingestion::open(
            self.log.clone(),
            self.catalog.clone(),
            self.dir.path(),
            connect,
        )
        .unwrap()
    }

    /// Appends `count` social posts spread over `hours` hours and all partitions.
    fn produce(&self, topic: &str, first: usize, count: usize, hours: i64) {
        let partitions = self.log.partition_count(topic).unwrap().unwrap();
        for i in first..first + count {
            let time = BASE + (i as i64 * 7_919_000) % (hours * HOUR);
            let post = json!({"time": segments_time(time), "username": format!("user{}", i % 8),
                "post_title": format!("post {i}"), "views": i % 1000, "edited": "False"});
            let record = Record {
                key: None,
                value: Some(post.to_string().into_bytes().into()),
                timestamp: time,
                headers: vec![],
            };
            self.log
                .append(topic, i as u32 % partitions, vec![record])
                .unwrap();
        }
    }
}

fn segments_time(millis: i64) -> String {
    millrace_segments::time::format_iso(millis)
}

fn spec(datasource: &str, topic: &str, task_count: u32) -> Vec<u8> {
    json!({"type": "kafka", "spec": {
        "dataSchema": {"dataSource": datasource,
            "timestampSpec": {"column": "time", "format": "iso"},
            "dimensionsSpec": {"dimensions": ["username", "post_title", {"type": "long", "name": "views"}, "edited"]},
            "granularitySpec": {"segmentGranularity": "hour", "queryGranularity": "none", "rollup": false}},
        "ioConfig": {"topic": topic, "inputFormat": {"type": "json"}, "taskCount": task_count,
            "useEarliestOffset": true, "taskDuration": "PT1H"},
        "tuningConfig": {"type": "kafka", "maxParseExceptions": 5, "maxSavedParseExceptions": 10}}})
    .to_string()
    .into_bytes()
}

/// Rows a query would see now (realtime and published).
fn visible_rows(ingestion: &Ingestion, datasource: &str) -> u64 {
    let Some(view) = ingestion.visible().view(datasource) else {
        return 0;
    };
    let published: u64 = view.segments.iter().map(|s| s.num_rows).sum();
    let persisted: u64 = view.persisted.iter().map(|p| p.0.num_rows).sum();
    let realtime: u64 = view
        .realtime
        .iter()
        .map(|r| r.batch.num_rows() as u64)
        .sum();
    published + persisted + realtime
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Suspends a supervisor and waits until its tasks have published.
/// Rows in a datasource's published segments, as the catalog lists them.
fn published_rows(server: &Server, datasource: &str) -> u64 {
    server
        .catalog
        .segments(datasource, true)
        .unwrap()
        .iter()
        .map(|s| s.descriptor.num_rows)
        .sum()
}

fn suspend_and_wait(ingestion: &Ingestion, datasource: &str) {
    ingestion.set_suspended(datasource, true).unwrap();
    wait_until("the tasks published", || {
        ingestion.status(datasource).unwrap().state == "SUSPENDED"
    });
}

#[test]
fn each_task_publishes_one_segment_per_hour_and_rows_are_visible_before() {
    for task_count in [1u32, 2, 4] {
        let server = Server::new();
        server.log.create_topic("posts", 4).unwrap();
        server.produce("posts", 0, 2000, 3);
        let ingestion = server.ingestion();
        let datasource = format!("social_{task_count}");
        ingestion
            .submit(&spec(&datasource, "posts", task_count))
            .unwrap();
        wait_until("all rows are visible in realtime", || {
            visible_rows(&ingestion, &datasource) == 2000
        });
        assert!(
            server
                .catalog
                .segments(&datasource, true)
                .unwrap()
                .is_empty(),
            "nothing is published before the hand-off"
        );
        let status = ingestion.status(&datasource).unwrap();
        assert_eq!(status.active_tasks.len(), task_count as usize);
        // A task counts a batch's rows just after they become visible.
        wait_until("every row is counted", || {
            let status = ingestion.status(&datasource).unwrap();
            let processed: u64 = status.active_tasks.iter().map(|t| t.counts.processed).sum();
            processed == 2000
        });

        suspend_and_wait(&ingestion, &datasource);
        let segments = server.catalog.segments(&datasource, true).unwrap();
        for hour in 0..3 {
            let in_hour = segments
                .iter()
                .filter(|s| s.start == BASE + hour * HOUR)
                .count();
            assert_eq!(in_hour, task_count as usize, "hour {hour}: one per task");
        }
        let rows: u64 = segments.iter().map(|s| s.descriptor.num_rows).sum();
        assert_eq!(rows, 2000);
        assert_eq!(visible_rows(&ingestion, &datasource), 2000);
        let offsets = server.catalog.offsets(&datasource).unwrap().unwrap();
        assert_eq!(offsets.partitions.values().sum::<u64>(), 2000);
        let partition_nums: Vec<u32> = segments
            .iter()
            .filter(|s| s.start == BASE)
            .map(|s| s.partition_num)
            .collect();
        assert_eq!(
            partition_nums,
            (0..task_count).collect::<Vec<_>>(),
            "numbered partitions"
        );
        ingestion.shutdown();
    }
}

#[test]
fn tasks_persist_at_max_rows_in_memory_and_publish_every_row_once() {
    let server = Server::new();
    server.log.create_topic("posts", 1).unwrap();
    let mut body: serde_json::Value = serde_json::from_slice(&spec("d", "posts", 1)).unwrap();
    body["spec"]["tuningConfig"]["maxRowsInMemory"] = json!(100);
    let ingestion = server.ingestion();
    ingestion.submit(body.to_string().as_bytes()).unwrap();
    let persist_dir = server.dir.path().join("tasks");
    // Appended in small steps, so the task persists several times.
    for step in 0..10 {
        server.produce("posts", step * 100, 100, 2);
        wait_until("the step's rows are visible", || {
            visible_rows(&ingestion, "d") == (step as u64 + 1) * 100
        });
    }
    let view = ingestion.visible().view("d").unwrap();
    assert!(
        view.persisted.len() >= 5,
        "{} files persisted",
        view.persisted.len()
    );
    let files: Vec<_> = view.persisted.iter().map(|p| p.0.path.clone()).collect();
    assert!(
        files
            .iter()
            .all(|f| f.starts_with(&persist_dir) && f.exists())
    );
    drop(view);

    suspend_and_wait(&ingestion, "d");
    let segments = server.catalog.segments("d", true).unwrap();
    assert_eq!(
        segments.len(),
        2,
        "one segment per hour however many persists"
    );
    let rows: u64 = segments.iter().map(|s| s.descriptor.num_rows).sum();
    assert_eq!(rows, 1000);
    assert_eq!(visible_rows(&ingestion, "d"), 1000);
    assert!(
        files.iter().all(|f| !f.exists()),
        "persisted files go once their rows are published"
    );
}

#[test]
fn a_restart_resumes_from_published_offsets_without_loss_or_duplicates() {
    let server = Server::new();
    server.log.create_topic("posts", 2).unwrap();
    server.produce("posts", 0, 500, 2);
    {
        let ingestion = server.ingestion();
        ingestion.submit(&spec("d", "posts", 2)).unwrap();
        wait_until("500 rows", || visible_rows(&ingestion, "d") == 500);
        suspend_and_wait(&ingestion, "d");
        ingestion.set_suspended("d", false).unwrap();
        server.produce("posts", 500, 300, 2);
        wait_until("800 rows", || visible_rows(&ingestion, "d") == 800);
        // A shutdown publishes nothing: the 300 unpublished rows are read again after.
        ingestion.shutdown();
    }
    server.produce("posts", 800, 200, 2);
    // Checked in the catalog: a restarted ingestion may read the rest back before a query.
    let published = published_rows(&server, "d");
    assert_eq!(published, 500, "only published rows survive");
    let ingestion = server.ingestion();
    wait_until("1000 rows after the restart", || {
        visible_rows(&ingestion, "d") == 1000
    });
    suspend_and_wait(&ingestion, "d");
    assert_eq!(visible_rows(&ingestion, "d"), 1000);
    let statuses: std::collections::BTreeSet<&str> = server
        .catalog
        .tasks()
        .unwrap()
        .into_iter()
        .map(|t| t.status.as_str())
        .collect();
    assert_eq!(
        statuses,
        ["FAILED", "SUCCESS"].into(),
        "tasks stopped by the shutdown failed, the others published; none is left running"
    );
}

#[test]
fn unparseable_records_are_counted_and_too_many_fail_the_task() {
    let server = Server::new();
    server.log.create_topic("posts", 1).unwrap();
    server.produce("posts", 0, 10, 1);
    for bad in ["not json", "{\"time\": \"yesterday\"}", "[1"] {
        let record = Record {
            key: None,
            value: Some(bad.as_bytes().to_vec().into()),
            timestamp: BASE,
            headers: vec![],
        };
        server.log.append("posts", 0, vec![record]).unwrap();
    }
    let ingestion = server.ingestion();
    ingestion.submit(&spec("d", "posts", 1)).unwrap();
    wait_until("13 records read", || {
        let status = ingestion.status("d").unwrap();
        status
            .active_tasks
            .first()
            .is_some_and(|t| t.counts.processed + t.counts.unparseable == 13)
    });
    let status = ingestion.status("d").unwrap();
    let task = &status.active_tasks[0];
    assert_eq!((task.counts.processed, task.counts.unparseable), (10, 3));
    assert!(
        task.parse_errors[0].contains("offset 10"),
        "{:?}",
        task.parse_errors
    );

    // Past maxParseExceptions (5) the task fails, and the supervisor says why.
    for _ in 0..3 {
        let record = Record {
            key: None,
            value: Some(b"garbage".to_vec().into()),
            timestamp: BASE,
            headers: vec![],
        };
        server.log.append("posts", 0, vec![record]).unwrap();
    }
    // State and errors from one status: the state can turn before the error is recorded.
    wait_until("the task failed, saying why", || {
        let status = ingestion.status("d").unwrap();
        status.state == "UNHEALTHY_TASKS"
            && status
                .recent_errors
                .first()
                .is_some_and(|e| e.message.contains("Max parse exceptions [5] exceeded"))
    });
    assert!(server.catalog.segments("d", true).unwrap().is_empty());
    ingestion.shutdown();
}

#[test]
fn a_bad_spec_is_refused_with_its_path_and_leaves_the_running_one() {
    let server = Server::new();
    server.log.create_topic("posts", 1).unwrap();
    server.produce("posts", 0, 10, 1);
    let ingestion = server.ingestion();
    ingestion.submit(&spec("d", "posts", 1)).unwrap();
    let mut bad: serde_json::Value = serde_json::from_slice(&spec("d", "posts", 1)).unwrap();
    bad["spec"]["dataSchema"]["transformSpec"] =
        json!({"transforms": [{"type": "expression", "name": "x", "expression": "upper("}]});
    let error = ingestion
        .submit(bad.to_string().as_bytes())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("spec.dataSchema.transformSpec.transforms[0].expression"),
        "{error}"
    );
    wait_until("the good one still ingests", || {
        visible_rows(&ingestion, "d") == 10
    });
    let spec = ingestion.spec("d").unwrap();
    assert!(spec["spec"]["dataSchema"]["transformSpec"].is_null());
    ingestion.shutdown();
}

#[test]
fn a_topic_pattern_reads_every_matching_topic() {
    let server = Server::new();
    server.log.create_topic("events_eu", 2).unwrap();
    server.log.create_topic("events_us", 1).unwrap();
    server.log.create_topic("other", 1).unwrap();
    server.produce("events_eu", 0, 300, 1);
    server.produce("events_us", 300, 100, 1);
    server.produce("other", 400, 50, 1);
    let mut body: serde_json::Value = serde_json::from_slice(&spec("d", "x", 2)).unwrap();
    let io = body["spec"]["ioConfig"].as_object_mut().unwrap();
    io.remove("topic");
    io.insert("topicPattern".into(), json!("events_.*"));
    let ingestion = server.ingestion();

    let mut bad = body.clone();
    bad["spec"]["ioConfig"]["topicPattern"] = json!("events_(");
    let error = ingestion
        .submit(bad.to_string().as_bytes())
        .unwrap_err()
        .to_string();
    assert!(error.contains("spec.ioConfig.topicPattern"), "{error}");

    ingestion.submit(body.to_string().as_bytes()).unwrap();
    wait_until("the matching topics' rows", || {
        visible_rows(&ingestion, "d") == 400
    });
    let status = ingestion.status("d").unwrap();
    assert_eq!(
        (status.stream.as_str(), status.partitions),
        ("events_.*", 3)
    );
    suspend_and_wait(&ingestion, "d");
    let stored = server.catalog.offsets("d").unwrap().unwrap();
    assert_eq!(stored.stream, "events_.*");
    let read: Vec<String> = stored.partitions.keys().map(ToString::to_string).collect();
    assert_eq!(read, vec!["events_eu:0", "events_eu:1", "events_us:0"]);
    assert_eq!(stored.partitions.values().sum::<u64>(), 400);

    // A topic created later is read by the next tasks, from its earliest offset.
    server.log.create_topic("events_asia", 1).unwrap();
    server.produce("events_asia", 450, 25, 1);
    ingestion.set_suspended("d", false).unwrap();
    wait_until("the new topic's rows", || {
        visible_rows(&ingestion, "d") == 425
    });
    suspend_and_wait(&ingestion, "d");
    let rows = published_rows(&server, "d");
    assert_eq!(rows, 425, "every matching record once, none of 'other'");
}

#[test]
fn a_failing_publish_keeps_the_rows_queryable_and_retries_until_it_succeeds() {
    let server = Server::new();
    server.log.create_topic("posts", 2).unwrap();
    server.produce("posts", 0, 300, 2);
    // A file where the datasource's segment directory goes: every publish fails.
    let blocker = server.dir.path().join("segments").join("blocked");
    std::fs::create_dir_all(blocker.parent().unwrap()).unwrap();
    std::fs::write(&blocker, b"not a directory").unwrap();
    let ingestion = server.ingestion();
    ingestion.submit(&spec("blocked", "posts", 1)).unwrap();
    wait_until("all rows are visible in realtime", || {
        visible_rows(&ingestion, "blocked") == 300
    });
    ingestion.set_suspended("blocked", true).unwrap();
    wait_until("a publish failed", || {
        let status = ingestion.status("blocked").unwrap();
        status.state == "UNHEALTHY_TASKS"
            && status
                .recent_errors
                .iter()
                .any(|e| e.message.contains("cannot publish (retrying"))
    });
    assert_eq!(
        visible_rows(&ingestion, "blocked"),
        300,
        "rows stay queryable while the publish is retried"
    );
    assert!(server.catalog.segments("blocked", true).unwrap().is_empty());

    std::fs::remove_file(&blocker).unwrap();
    wait_until("the retried publish succeeded", || {
        ingestion.status("blocked").unwrap().state == "SUSPENDED"
    });
    let published = published_rows(&server, "blocked");
    assert_eq!(published, 300);
    assert_eq!(visible_rows(&ingestion, "blocked"), 300);
}

#[test]
fn a_publish_failing_past_completion_timeout_fails_and_shutdown_ends_the_retries() {
    let server = Server::new();
    server.log.create_topic("posts", 1).unwrap();
    server.produce("posts", 0, 50, 1);
    for blocked in ["short", "long"] {
        let path = server.dir.path().join("segments").join(blocked);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"not a directory").unwrap();
    }
    let ingestion = Arc::new(server.ingestion());
    let mut short: serde_json::Value = serde_json::from_slice(&spec("short", "posts", 1)).unwrap();
    short["spec"]["ioConfig"]["completionTimeout"] = json!("PT2S");
    ingestion.submit(short.to_string().as_bytes()).unwrap();
    ingestion.submit(&spec("long", "posts", 1)).unwrap();
    wait_until("rows are visible", || {
        visible_rows(&ingestion, "short") == 50 && visible_rows(&ingestion, "long") == 50
    });
    ingestion.set_suspended("short", true).unwrap();
    wait_until("the task failed after completionTimeout", || {
        ingestion
            .status("short")
            .unwrap()
            .recent_errors
            .iter()
            .any(|e| {
                e.message
                    .contains("publishing failed for the whole completionTimeout (2s)")
            })
    });

    // A terminate waits for a publish that keeps failing; a shutdown still ends it.
    let terminating = {
        let ingestion = ingestion.clone();
        std::thread::spawn(move || ingestion.terminate("long"))
    };
    std::thread::sleep(Duration::from_secs(1));
    assert!(!terminating.is_finished(), "the publish cannot succeed");
    assert_eq!(visible_rows(&ingestion, "long"), 50, "rows stay queryable");
    let (done, finished) = std::sync::mpsc::channel();
    {
        let ingestion = ingestion.clone();
        std::thread::spawn(move || {
            ingestion.shutdown();
            done.send(()).unwrap();
        });
    }
    finished
        .recv_timeout(Duration::from_secs(30))
        .expect("the shutdown ends the publish retries");
    terminating.join().unwrap().unwrap();
    assert!(server.catalog.segments("long", true).unwrap().is_empty());
}

/// Stores a supervisor spec for `posts` that names a Kafka cluster, as a server that
/// stopped would have left it.
fn store_cluster_spec(server: &Server) -> serde_json::Value {
    let mut stored: serde_json::Value = serde_json::from_slice(&spec("posts", "posts", 1)).unwrap();
    stored["spec"]["ioConfig"]["consumerProperties"] = json!({"bootstrap.servers": "127.0.0.1:9"});
    server
        .catalog
        .put_supervisor(&millrace_catalog::SupervisorRecord {
            id: "posts".into(),
            spec: stored.clone(),
            suspended: false,
            created: 0,
        })
        .unwrap();
    stored
}

#[test]
fn a_stored_supervisor_on_a_server_reaching_no_cluster_does_not_stop_the_start() {
    let server = Server::new();
    server.log.create_topic("posts", 1).unwrap();
    let stored = store_cluster_spec(&server);
    // This ingestion reaches no external cluster: the stored supervisor is not started, and
    // the rest goes on.
    let ingestion = server.ingestion();
    let refused = ingestion
        .submit(&serde_json::to_vec(&stored).unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("spec.ioConfig.consumerProperties"),
        "{refused}"
    );
    ingestion.submit(&spec("other", "posts", 1)).unwrap();
}

/// The server starts at once; the supervisor says it cannot reach its cluster, tries again,
/// and ingests once the cluster answers.
#[test]
fn a_stored_supervisor_waits_for_its_cluster_and_then_ingests() {
    let server = Server::new();
    server.log.create_topic("posts", 1).unwrap();
    server.produce("posts", 0, 100, 1);
    store_cluster_spec(&server);
    let reachable = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let connect: ClusterConnector = {
        let (reachable, log) = (reachable.clone(), server.log.clone());
        Arc::new(move |_: &[(String, String)]| {
            if reachable.load(std::sync::atomic::Ordering::SeqCst) {
                Ok(log.clone() as Arc<dyn Log>)
            } else {
                Err("connection refused".into())
            }
        })
    };
    let ingestion = server.ingestion_reaching(Some(connect));
    wait_until("the status names the unreachable cluster", || {
        let status = ingestion.status("posts").unwrap();
        status.detailed_state == "UNABLE_TO_CONNECT_TO_STREAM"
            && status.recent_errors.iter().any(|e| {
                e.message
                    .contains("cannot reach the Kafka cluster: connection refused")
            })
    });
    assert_eq!(visible_rows(&ingestion, "posts"), 0);
    reachable.store(true, std::sync::atomic::Ordering::SeqCst);
    wait_until("the rows are ingested", || {
        visible_rows(&ingestion, "posts") == 100
    });
    let status = ingestion.status("posts").unwrap();
    assert_eq!(status.state, "RUNNING");
    assert!(status.offsets_read_millis.is_some());
}
