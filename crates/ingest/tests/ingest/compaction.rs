//! Compaction over streamed segments: every partitionsSpec, rollup, overshadowing, appends
//! while a compaction runs, validation errors in the task status, kill after drop, and a
//! restart after a compaction the server never finished.

use arrow::array::AsArray;
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type};
use millrace_catalog::{Catalog, SegmentRecord, SegmentSelection, ShardSpec, TaskStatus};
use millrace_ingest::Ingestion;
use millrace_ingest::compact::spec::CompactionSpec;
use millrace_ingest::submitted::SubmittedTask;
use millrace_ingest::visible::{segment_file, segment_place};
use millrace_log::Log;
use millrace_segments::columns::read_parquet;
use millrace_segments::timeline::visibility;
use serde_json::{Value, json};

use super::{BASE, HOUR, Server, spec, suspend_and_wait, visible_rows, wait_until};

/// A server whose datasource `d` holds `rows` posts over 3 hours, published by 4 tasks.
fn streamed(rows: usize) -> (Server, Ingestion) {
    let server = Server::new();
    server.log.create_topic("posts", 4).unwrap();
    server.produce("posts", 0, rows, 3);
    let ingestion = server.ingestion();
    ingestion.submit(&spec("d", "posts", 4)).unwrap();
    wait_until("rows are visible", || {
        visible_rows(&ingestion, "d") == rows as u64
    });
    suspend_and_wait(&ingestion, "d");
    (server, ingestion)
}

fn hour_interval(hour: i64) -> String {
    millrace_segments::time::format_interval((BASE + hour * HOUR, BASE + (hour + 1) * HOUR))
}

fn compaction(extra: Value) -> CompactionSpec {
    let mut spec = json!({"type": "compact", "dataSource": "d",
        "ioConfig": {"type": "compact", "inputSpec": {"type": "interval", "interval": hour_interval(0)}}});
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    CompactionSpec::from_json(&spec).unwrap()
}

/// The visible published segments of `d` in an hour (0 is the first).
fn visible_in_hour(server: &Server, hour: i64) -> Vec<SegmentRecord> {
    let used = server.catalog.segments("d", true).unwrap();
    let places: Vec<_> = used.iter().map(segment_place).collect();
    visibility(&places)
        .visible
        .into_iter()
        .map(|i| used[i].clone())
        .filter(|s| s.start == BASE + hour * HOUR)
        .collect()
}

fn visible_in_first_hour(server: &Server) -> Vec<SegmentRecord> {
    visible_in_hour(server, 0)
}

/// The usernames of a segment's rows.
fn usernames(server: &Server, segment: &SegmentRecord) -> Vec<Option<String>> {
    let file = segment_file(server.dir.path(), segment).unwrap();
    let mut names = Vec::new();
    for batch in read_parquet(&file.path).unwrap() {
        let column = cast(batch.column_by_name("username").unwrap(), &DataType::Utf8).unwrap();
        names.extend(
            column
                .as_string::<i32>()
                .iter()
                .map(|v| v.map(str::to_string)),
        );
    }
    names
}

fn compact_now(
    ingestion: &Ingestion,
    spec: &CompactionSpec,
) -> millrace_ingest::compact::CompactionReport {
    let prepared = ingestion.prepare_compaction("test", spec).unwrap();
    ingestion.publish_compaction(prepared).unwrap()
}

#[test]
fn each_partitions_spec_makes_its_shards_and_overshadows_the_inputs() {
    let (server, ingestion) = streamed(4000);
    let before = visible_in_first_hour(&server);
    assert_eq!(before.len(), 4, "one segment per task");
    let hour_rows: u64 = before.iter().map(|s| s.descriptor.num_rows).sum();

    // Dynamic: one segment; the four inputs are overshadowed, still used.
    let report = compact_now(
        &ingestion,
        &compaction(json!({"granularitySpec": {"segmentGranularity": "hour"}})),
    );
    assert_eq!((report.segments_read, report.segments_published), (4, 1));
    assert_eq!(
        (report.rows_read, report.rows_written),
        (hour_rows, hour_rows)
    );
    let merged = visible_in_first_hour(&server);
    assert_eq!(merged.len(), 1);
    assert_eq!(
        merged[0].descriptor.shard_spec,
        ShardSpec::Numbered {
            partition_num: 0,
            partitions: 1
        }
    );
    let state = merged[0].descriptor.last_compaction_state.clone().unwrap();
    assert_eq!(state["partitionsSpec"]["type"], json!("dynamic"));
    assert_eq!(
        state["granularitySpec"]["segmentGranularity"],
        json!("hour")
    );
    let used = server.catalog.segments("d", true).unwrap();
    let places: Vec<_> = used.iter().map(segment_place).collect();
    let overshadowed: Vec<&str> = visibility(&places)
        .overshadowed
        .iter()
        .map(|&i| used[i].id.as_str())
        .collect();
    for input in &before {
        assert!(
            overshadowed.contains(&input.id.as_str()),
            "{} overshadowed",
            input.id
        );
    }
    assert_eq!(visible_rows(&ingestion, "d"), 4000);

    // Dynamic with a row limit: several numbered segments of a complete set.
    let limit = hour_rows / 3 + 1;
    compact_now(
        &ingestion,
        &compaction(
            json!({"tuningConfig": {"partitionsSpec": {"type": "dynamic", "maxRowsPerSegment": limit}}}),
        ),
    );
    let pieces = visible_in_first_hour(&server);
    assert_eq!(
        pieces.len(),
        3,
        "{:#?}",
        pieces
            .iter()
            .map(|s| (&s.id, &s.descriptor.shard_spec, s.descriptor.num_rows))
            .collect::<Vec<_>>()
    );
    assert!(pieces.iter().all(|s| s.descriptor.num_rows <= limit));

    // Single-dimension range: four segments of two users each, every row within its range.
    compact_now(
        &ingestion,
        &compaction(
            json!({"tuningConfig": {"forceGuaranteedRollup": true, "partitionsSpec":
            {"type": "range", "partitionDimensions": ["username"], "targetRowsPerSegment": hour_rows / 4}}}),
        ),
    );
    let ranges = visible_in_first_hour(&server);
    assert_eq!(ranges.len(), 4);
    for segment in &ranges {
        let ShardSpec::Single {
            dimension,
            start,
            end,
            num_core_partitions,
            ..
        } = &segment.descriptor.shard_spec
        else {
            panic!("{:?}", segment.descriptor.shard_spec)
        };
        assert_eq!((dimension.as_str(), *num_core_partitions), ("username", 4));
        let names = usernames(&server, segment);
        assert_eq!(names.len() as u64, segment.descriptor.num_rows);
        for name in names.iter().flatten() {
            assert!(
                start.as_ref().is_none_or(|s| name >= s),
                "{name} >= {start:?}"
            );
            assert!(end.as_ref().is_none_or(|e| name < e), "{name} < {end:?}");
        }
        let share = segment.descriptor.num_rows as f64 / hour_rows as f64;
        assert!((0.15..0.35).contains(&share), "near a quarter: {share}");
    }

    // Multi-dimension range: `range` shard specs.
    compact_now(
        &ingestion,
        &compaction(
            json!({"tuningConfig": {"forceGuaranteedRollup": true, "partitionsSpec":
            {"type": "range", "partitionDimensions": ["username", "edited"], "maxRowsPerSegment": hour_rows / 2}}}),
        ),
    );
    let tuples = visible_in_first_hour(&server);
    assert!(tuples.len() >= 2);
    assert!(
        tuples
            .iter()
            .all(|s| matches!(s.descriptor.shard_spec, ShardSpec::Range { .. }))
    );

    // Hashed: rows of a user all in one bucket.
    compact_now(
        &ingestion,
        &compaction(
            json!({"tuningConfig": {"forceGuaranteedRollup": true, "partitionsSpec":
            {"type": "hashed", "numShards": 3, "partitionDimensions": ["username"]}}}),
        ),
    );
    let hashed = visible_in_first_hour(&server);
    let mut seen = std::collections::BTreeMap::new();
    for segment in &hashed {
        let ShardSpec::Hashed {
            bucket_id,
            num_buckets,
            ..
        } = segment.descriptor.shard_spec
        else {
            panic!("{:?}", segment.descriptor.shard_spec)
        };
        assert_eq!(num_buckets, 3);
        for name in usernames(&server, segment) {
            let key = vec![name.clone()];
            assert_eq!(millrace_segments::shard::hash_bucket(&key, 3), bucket_id);
            assert!(seen.insert(name, bucket_id).is_none_or(|b| b == bucket_id));
        }
    }
    assert_eq!(seen.len(), 8, "every user's rows are in one bucket");
    assert_eq!(
        visible_rows(&ingestion, "d"),
        4000,
        "no row lost or doubled throughout"
    );
    ingestion.shutdown();
}

#[test]
fn rollup_during_compaction_combines_rows_and_keeps_the_metrics_totals() {
    let (server, ingestion) = streamed(2000);
    let hour_rows: u64 = visible_in_first_hour(&server)
        .iter()
        .map(|s| s.descriptor.num_rows)
        .sum();
    let views_before: i64 = (0..2000usize)
        .filter(|i| (*i as i64 * 7_919_000) % (3 * HOUR) < HOUR)
        .map(|i| (i % 1000) as i64)
        .sum();
    compact_now(
        &ingestion,
        &compaction(json!({
            "dimensionsSpec": {"dimensions": ["username"]},
            "metricsSpec": [{"type": "count", "name": "count"},
                            {"type": "longSum", "name": "views", "fieldName": "views"}],
            "granularitySpec": {"queryGranularity": "hour", "rollup": true}})),
    );
    let rolled = visible_in_first_hour(&server);
    assert_eq!(rolled.len(), 1);
    assert_eq!(
        rolled[0].descriptor.num_rows, 8,
        "one row per user in the hour"
    );
    let file = segment_file(server.dir.path(), &rolled[0]).unwrap();
    let batch = &read_parquet(&file.path).unwrap()[0];
    let sum = |name: &str| -> i64 {
        batch
            .column_by_name(name)
            .unwrap()
            .as_primitive::<Int64Type>()
            .values()
            .iter()
            .sum()
    };
    assert_eq!(sum("count") as u64, hour_rows);
    assert_eq!(sum("views"), views_before);
    // Compacting the rolled-up rows again keeps the counts (a count becomes a sum).
    compact_now(&ingestion, &compaction(json!({})));
    let again = visible_in_first_hour(&server);
    let file = segment_file(server.dir.path(), &again[0]).unwrap();
    let batch = &read_parquet(&file.path).unwrap()[0];
    let counts: i64 = batch
        .column_by_name("count")
        .unwrap()
        .as_primitive::<Int64Type>()
        .values()
        .iter()
        .sum();
    assert_eq!(counts as u64, hour_rows);
    assert!(
        batch.column_by_name("post_title").is_none(),
        "dropped dimensions stay dropped"
    );
    ingestion.shutdown();
}

#[test]
fn segments_appended_while_a_compaction_runs_are_carried_over() {
    let (server, ingestion) = streamed(2000);
    let prepared = ingestion
        .prepare_compaction(
            "test",
            &compaction(json!({"granularitySpec": {"segmentGranularity": "hour"}})),
        )
        .unwrap();
    // Streaming appends to the same hour before the compaction publishes.
    server.produce("posts", 2000, 400, 1);
    ingestion.set_suspended("d", false).unwrap();
    wait_until("the new rows are visible", || {
        visible_rows(&ingestion, "d") == 2400
    });
    suspend_and_wait(&ingestion, "d");
    let report = ingestion.publish_compaction(prepared).unwrap();
    assert_eq!(report.segments_carried_over, 4, "one per task");
    assert_eq!(
        visible_rows(&ingestion, "d"),
        2400,
        "nothing lost, nothing twice"
    );
    let visible = visible_in_first_hour(&server);
    assert_eq!(
        visible.len(),
        5,
        "the compacted segment and the carried-over ones"
    );
    let versions: std::collections::BTreeSet<&str> =
        visible.iter().map(|s| s.version.as_str()).collect();
    assert_eq!(versions.len(), 1, "all of the new version");

    // Dropping the hour and killing it leaves no file of it behind, carried-over or not.
    let hour = (BASE, BASE + HOUR);
    server
        .catalog
        .mark_unused("d", &SegmentSelection::Interval(hour.0, hour.1))
        .unwrap();
    ingestion
        .visible()
        .refresh(server.catalog.as_ref(), "d")
        .unwrap();
    let files_before: Vec<_> = server
        .catalog
        .segments("d", false)
        .unwrap()
        .into_iter()
        .filter(|s| s.start == BASE)
        .map(|s| server.dir.path().join(&s.descriptor.load_spec.path))
        .collect();
    assert!(files_before.iter().all(|f| f.exists()));
    let id = ingestion
        .run_task(
            SubmittedTask::parse(&json!({"type": "kill", "dataSource": "d",
            "interval": millrace_segments::time::format_interval(hour)}))
            .unwrap(),
        )
        .unwrap();
    let task = server.catalog.task(&id).unwrap().unwrap();
    assert_eq!(task.status, TaskStatus::Success);
    assert!(
        files_before.iter().all(|f| !f.exists()),
        "every file of the hour is gone"
    );
    assert!(
        server
            .catalog
            .segments("d", false)
            .unwrap()
            .iter()
            .all(|s| s.start != BASE)
    );
    assert_eq!(
        visible_rows(&ingestion, "d"),
        2400 - visible.iter().map(|s| s.descriptor.num_rows).sum::<u64>()
    );
    ingestion.shutdown();
}

/// Submits a compaction task and waits for its end; returns its status and details.
fn run_task(server: &Server, ingestion: &Ingestion, spec: Value) -> (TaskStatus, Value) {
    let id = ingestion
        .run_task(SubmittedTask::parse(&spec).unwrap())
        .unwrap();
    let mut ended = None;
    wait_until("the task ends", || {
        let task = server.catalog.task(&id).unwrap().unwrap();
        let done = task.status != TaskStatus::Running;
        if done {
            ended = Some((task.status, task.payload));
        }
        done
    });
    ended.unwrap()
}

#[test]
fn invalid_compactions_fail_with_druids_reasons_and_change_nothing() {
    let (server, ingestion) = streamed(1000);
    let before = server.catalog.segments("d", false).unwrap();
    let base = |interval: String, extra: Value| {
        let mut spec = json!({"type": "compact", "dataSource": "d",
            "ioConfig": {"type": "compact", "inputSpec": {"type": "interval", "interval": interval}}});
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        spec
    };
    let cases = [
        (
            base(hour_interval(5), json!({})),
            "no segments to compact in",
        ),
        (
            base(
                millrace_segments::time::format_interval((BASE + HOUR / 2, BASE + 3 * HOUR / 2)),
                json!({"granularitySpec": {"segmentGranularity": "hour"}}),
            ),
            "reaches beyond the interval to compact",
        ),
        (
            base(
                hour_interval(0),
                json!({"granularitySpec": {"segmentGranularity": "day"}}),
            ),
            "to compact is not aligned with segmentGranularity[day]",
        ),
        (
            base(
                hour_interval(0),
                json!({"tuningConfig": {"forceGuaranteedRollup": true,
                "partitionsSpec": {"type": "range", "partitionDimensions": ["views"], "targetRowsPerSegment": 10}}}),
            ),
            "partition dimension 'views' must be a string dimension",
        ),
    ];
    for (spec, reason) in cases {
        let (status, payload) = run_task(&server, &ingestion, spec);
        assert_eq!(status, TaskStatus::Failed);
        let message = payload["errorMsg"].as_str().unwrap();
        assert!(message.contains(reason), "{message}");
    }
    assert_eq!(server.catalog.segments("d", false).unwrap(), before);
    let (status, payload) = run_task(&server, &ingestion, base(hour_interval(1), json!({})));
    assert_eq!(status, TaskStatus::Success, "{payload}");
    assert_eq!(payload["compaction"]["segmentsRead"], json!(4));
    ingestion.shutdown();
}

#[test]
fn a_compaction_the_server_never_finished_leaves_the_old_segments_and_no_files() {
    let (server, ingestion) = streamed(1000);
    let before = server.catalog.segments("d", true).unwrap();
    let segment_files = || -> usize {
        std::fs::read_dir(server.dir.path().join("segments/d"))
            .unwrap()
            .count()
    };
    let files = segment_files();
    let prepared = ingestion
        .prepare_compaction("test", &compaction(json!({})))
        .unwrap();
    assert_eq!(
        segment_files(),
        files + 1,
        "the compacted segment is written"
    );
    // The server dies before the compaction publishes: its file stays behind.
    std::mem::forget(prepared);
    ingestion.shutdown();
    drop(ingestion);
    let reopened = server.ingestion();
    assert_eq!(
        segment_files(),
        files,
        "the unpublished file is removed at start-up"
    );
    assert_eq!(server.catalog.segments("d", true).unwrap(), before);
    assert_eq!(visible_rows(&reopened, "d"), 1000);
    reopened.shutdown();
}

/// Waits until no compaction task is running.
fn tasks_done(server: &Server) {
    wait_until("the compactions end", || {
        server
            .catalog
            .tasks()
            .unwrap()
            .iter()
            .all(|t| t.status != TaskStatus::Running)
    });
}

#[test]
fn auto_compaction_compacts_older_chunks_newest_first_once_and_retires_what_it_overshadows() {
    let (server, ingestion) = streamed(3000);
    ingestion
        .set_compaction_config(&json!({"dataSource": "d", "skipOffsetFromLatest": "PT1H",
            "granularitySpec": {"segmentGranularity": "hour"}}))
        .unwrap();
    let hour_segments = |hour: i64| -> Vec<SegmentRecord> {
        server
            .catalog
            .segments("d", true)
            .unwrap()
            .into_iter()
            .filter(|s| s.start == BASE + hour * HOUR)
            .collect()
    };
    let inputs_of_hour_1: Vec<String> = hour_segments(1).into_iter().map(|s| s.id).collect();

    // One slot: the newest chunk old enough (hour 1; hour 2 is within the skip offset).
    let first = ingestion.run_coordinator_duties().unwrap();
    assert_eq!(first.len(), 1);
    assert!(first[0].starts_with("coordinator-issued_compact_d_"));
    tasks_done(&server);
    let status = &ingestion.compaction_status(Some("d"))[0];
    assert_eq!(
        (
            status.interval_count_awaiting_compaction,
            status.interval_count_skipped
        ),
        (2, 1)
    );
    assert_eq!(status.segment_count_skipped, 4);
    let compacted_hour = visible_in_hour(&server, 1);
    assert_eq!(compacted_hour.len(), 1, "hour 1 first");

    let second = ingestion.run_coordinator_duties().unwrap();
    assert_eq!(second.len(), 1, "then hour 0");
    tasks_done(&server);
    assert_eq!(visible_in_first_hour(&server).len(), 1);
    // Both old chunks are compacted as asked: nothing more to do, ever.
    assert!(ingestion.run_coordinator_duties().unwrap().is_empty());
    assert!(ingestion.run_coordinator_duties().unwrap().is_empty());
    let status = &ingestion.compaction_status(Some("d"))[0];
    assert_eq!(
        (
            status.interval_count_awaiting_compaction,
            status.interval_count_compacted,
            status.interval_count_skipped
        ),
        (0, 2, 1)
    );
    // Overshadowed inputs were marked unused by the later runs.
    let used: Vec<String> = server
        .catalog
        .segments("d", true)
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert!(
        inputs_of_hour_1.iter().all(|id| !used.contains(id)),
        "{used:?}"
    );
    assert_eq!(used.len(), 2 + 4, "two compacted hours and the skipped one");
    assert_eq!(visible_rows(&ingestion, "d"), 3000);

    // A different spec makes the chunks await compaction again; two slots run both.
    ingestion.set_compaction_slots(None, Some(2)).unwrap();
    ingestion
        .set_compaction_config(&json!({"dataSource": "d", "skipOffsetFromLatest": "PT1H",
            "tuningConfig": {"partitionsSpec": {"type": "range", "partitionDimensions": ["username"],
                "targetRowsPerSegment": 300}}}))
        .unwrap();
    assert_eq!(ingestion.run_coordinator_duties().unwrap().len(), 2);
    tasks_done(&server);
    assert!(visible_in_first_hour(&server).len() > 1);
    assert!(
        visible_in_first_hour(&server)
            .iter()
            .all(|s| matches!(s.descriptor.shard_spec, ShardSpec::Single { .. }))
    );
    assert!(ingestion.run_coordinator_duties().unwrap().is_empty());
    assert_eq!(visible_rows(&ingestion, "d"), 3000);
    assert!(ingestion.delete_compaction_config("d").unwrap());
    assert!(ingestion.compaction_status(None).is_empty());
    ingestion.shutdown();
}

#[test]
fn auto_compaction_configs_are_checked_with_the_fields_path() {
    let server = Server::new();
    let ingestion = server.ingestion();
    let refused = |body: Value| {
        ingestion
            .set_compaction_config(&body)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        refused(json!({"skipOffsetFromLatest": "P1D"})),
        "dataSource: is missing"
    );
    assert_eq!(
        refused(json!({"dataSource": "d", "skipOffsetFromLatest": "P1M"})),
        "skipOffsetFromLatest: must be a period of fixed length (weeks, days, hours, ...), not months or years"
    );
    assert_eq!(
        refused(json!({"dataSource": "d", "tuningConfig": {"partitionsSpec": {"type": "range"}}})),
        "tuningConfig.partitionsSpec.partitionDimensions: must name at least one dimension"
    );
    assert!(
        refused(json!({"dataSource": "d", "skipOfset": "P1D"}))
            .starts_with("skipOfset: unknown field")
    );
    ingestion
        .set_compaction_config(&json!({"dataSource": "d", "taskPriority": 10}))
        .unwrap();
    let stored = ingestion.compaction_config("d").unwrap().unwrap();
    assert_eq!(
        stored["skipOffsetFromLatest"],
        json!("P1D"),
        "Druid's default filled in"
    );
    assert_eq!(stored["taskPriority"], json!(10));
}
