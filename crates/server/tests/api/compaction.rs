//! The seed's last part over HTTP: four tasks leave four segments in an hour, a compaction
//! merges them into one, a range compaction on `username` splits them into four `single`
//! segments of near-equal size, counts stay the same throughout, and a query filtering on
//! `username` reads only the segment whose range can hold the value.

use serde_json::{Value, json};

use super::{BASE, HOUR, Running, posts, spec, wait_until};

const DATASOURCE: &str = "social_media_4task";

/// The answers that must not change while segments are rewritten.
fn counts(server: &Running) -> Vec<Value> {
    let mut answers = server.sql(&format!(
        "SELECT username, COUNT(*) AS n, SUM(views) AS views FROM \"{DATASOURCE}\" GROUP BY username ORDER BY username"
    ));
    answers.extend(server.sql(&format!(
        "SELECT COUNT(*) AS n FROM \"{DATASOURCE}\" WHERE username = 'mia' OR username >= 'rocket'"
    )));
    answers
}

/// The published segments queries use (not overshadowed), in order.
fn active_segments(server: &Running) -> Vec<Value> {
    server.sql(&format!(
        "SELECT segment_id, shard_spec, num_rows, last_compaction_state FROM sys.segments \
         WHERE datasource = '{DATASOURCE}' AND is_published = 1 AND is_overshadowed = 0 \
         ORDER BY partition_num"
    ))
}

/// Submits a compaction, checking `expected` at every poll until the task succeeds.
fn compact(server: &Running, task: Value, expected: &[Value]) -> String {
    let answer = server.ok("POST", "/druid/indexer/v1/task", task);
    let id = answer["task"].as_str().unwrap().to_string();
    wait_until("the compaction succeeds", || {
        assert_eq!(counts(server), expected, "counts while compacting");
        let status = server.ok(
            "GET",
            &format!("/druid/indexer/v1/task/{id}/status"),
            json!(null),
        );
        let code = status["status"]["statusCode"].as_str().unwrap().to_string();
        assert_ne!(code, "FAILED", "{status}");
        code == "SUCCESS"
    });
    id
}

/// How many segment files a query's physical plan reads.
fn files_read(server: &Running, query: &str) -> usize {
    let plan = server.sql(&format!("EXPLAIN PLAN FOR {query}"));
    assert_eq!(plan.len(), 1);
    plan[0]["PLAN"]
        .as_str()
        .unwrap()
        .matches(".parquet")
        .count()
}

#[test]
fn the_seeds_compactions_merge_then_range_partition_and_queries_prune() {
    let server = Running::start();
    server.ok(
        "POST",
        "/topics",
        json!({"name": "social_media", "partitions": 4}),
    );
    let events = 4000;
    server.call(
        "POST",
        "/topics/social_media",
        "text/plain",
        posts(events, 1).as_bytes(),
    );
    server.ok(
        "POST",
        "/druid/indexer/v1/supervisor",
        spec(DATASOURCE, "social_media", 4),
    );
    wait_until("every event is ingested", || {
        server.count(DATASOURCE) == events as i64
    });
    server.ok(
        "POST",
        &format!("/druid/indexer/v1/supervisor/{DATASOURCE}/suspend"),
        json!(null),
    );
    wait_until("the tasks published", || {
        active_segments(&server).len() == 4
    });
    let expected = counts(&server);
    assert_eq!(expected.len(), 9);

    let interval = millrace_segments::time::format_interval((BASE, BASE + HOUR));
    let merge = compact(
        &server,
        json!({"type": "compact", "dataSource": DATASOURCE,
            "ioConfig": {"type": "compact", "inputSpec": {"type": "interval", "interval": interval}},
            "granularitySpec": {"segmentGranularity": "hour"}}),
        &expected,
    );
    let merged = active_segments(&server);
    assert_eq!(merged.len(), 1, "{merged:?}");
    let shard: Value = serde_json::from_str(merged[0]["shard_spec"].as_str().unwrap()).unwrap();
    assert_eq!(
        shard,
        json!({"type": "numbered", "partitionNum": 0, "partitions": 1})
    );
    assert_eq!(merged[0]["num_rows"], json!(events));
    let overshadowed = server.sql(&format!(
        "SELECT COUNT(*) AS n FROM sys.segments WHERE datasource = '{DATASOURCE}' AND is_overshadowed = 1"
    ));
    assert_eq!(overshadowed[0]["n"], json!(4));
    let report = server.ok(
        "GET",
        &format!("/druid/indexer/v1/task/{merge}/reports"),
        json!(null),
    );
    let payload = &report["ingestionStatsAndErrors"]["payload"];
    assert_eq!(
        (&payload["segmentsRead"], &payload["segmentsPublished"]),
        (&json!(4), &json!(1))
    );
    assert_eq!(payload["compaction"]["rowsWritten"], json!(events));

    compact(
        &server,
        json!({"type": "compact", "dataSource": DATASOURCE,
            "ioConfig": {"type": "compact", "inputSpec": {"type": "interval", "interval": interval}},
            "tuningConfig": {"type": "compaction", "forceGuaranteedRollup": true,
                "partitionsSpec": {"type": "range", "partitionDimensions": ["username"],
                    "targetRowsPerSegment": events / 4}}}),
        &expected,
    );
    let ranges = active_segments(&server);
    assert_eq!(ranges.len(), 4, "{ranges:?}");
    let mut bounds = Vec::new();
    for segment in &ranges {
        let shard: Value = serde_json::from_str(segment["shard_spec"].as_str().unwrap()).unwrap();
        assert_eq!(shard["type"], json!("single"), "{shard}");
        assert_eq!(shard["dimension"], json!("username"));
        assert_eq!(shard["numCorePartitions"], json!(4));
        bounds.push((shard["start"].clone(), shard["end"].clone()));
        assert_eq!(
            segment["num_rows"],
            json!(events / 4),
            "eight users, two per segment"
        );
        let state: Value =
            serde_json::from_str(segment["last_compaction_state"].as_str().unwrap()).unwrap();
        assert_eq!(state["partitionsSpec"]["type"], json!("range"));
    }
    assert_eq!(
        bounds,
        vec![
            (Value::Null, json!("leon")),
            (json!("leon"), json!("miette")),
            (json!("miette"), json!("rocket")),
            (json!("rocket"), Value::Null),
        ]
    );
    assert_eq!(counts(&server), expected);

    // A sum reads the rows (a bare COUNT(*) is answered from the segments' row counts).
    let all = format!("SELECT SUM(views) FROM \"{DATASOURCE}\"");
    assert_eq!(files_read(&server, &all), 4);
    for (filter, files) in [
        ("username = 'mia'", 1),
        ("username IN ('gus', 'willow')", 2),
        ("username >= 'rocket'", 1),
        ("username = 'nobody'", 1),
        ("views > 5", 4),
    ] {
        assert_eq!(
            files_read(&server, &format!("{all} WHERE {filter}")),
            files,
            "{filter}"
        );
    }
    let mia = server.sql(&format!(
        "SELECT COUNT(*) AS n FROM \"{DATASOURCE}\" WHERE username = 'mia'"
    ));
    assert_eq!(mia[0]["n"], json!(events / 8));
}

#[test]
fn auto_compaction_through_the_coordinator_api() {
    let options = millrace_server::ServeOptions {
        coordinator_period: Some(std::time::Duration::from_millis(200)),
        ..Default::default()
    };
    let server = Running::start_with(
        tempfile::tempdir().unwrap(),
        options,
        ureq::Agent::config_builder(),
    );
    let events = 3000;
    server.topic_with_lines("posts", 2, &posts(events, 3));
    server.ok(
        "POST",
        "/druid/indexer/v1/supervisor",
        spec("social", "posts", 2),
    );
    wait_until("every event is ingested", || {
        server.count("social") == events as i64
    });
    server.ok(
        "POST",
        "/druid/indexer/v1/supervisor/social/suspend",
        json!(null),
    );
    wait_until("the tasks published", || {
        server.sql("SELECT COUNT(*) AS n FROM sys.segments WHERE datasource = 'social' AND is_published = 1")[0]["n"]
            == json!(6)
    });
    let before = server
        .sql("SELECT username, COUNT(*) AS n FROM social GROUP BY username ORDER BY username");

    let (status, answer) = server.json(
        "POST",
        "/druid/coordinator/v1/config/compaction",
        json!({"dataSource": "social", "skipOfsetFromLatest": "PT1H"}),
    );
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .starts_with("skipOfsetFromLatest: unknown field")
    );
    let (status, _) = server.call(
        "POST",
        "/druid/coordinator/v1/config/compaction",
        "application/json",
        json!({"dataSource": "social", "skipOffsetFromLatest": "PT1H",
               "tuningConfig": {"partitionsSpec": {"type": "range",
                   "partitionDimensions": ["username"], "targetRowsPerSegment": 250}}})
        .to_string()
        .as_bytes(),
    );
    assert_eq!(status, 200);
    let config = server.ok(
        "GET",
        "/druid/coordinator/v1/config/compaction/social",
        json!(null),
    );
    assert_eq!(config["skipOffsetFromLatest"], json!("PT1H"));
    let document = server.ok(
        "GET",
        "/druid/coordinator/v1/config/compaction",
        json!(null),
    );
    assert_eq!(
        document["compactionConfigs"][0]["dataSource"],
        json!("social")
    );

    wait_until("the two older hours are compacted", || {
        let (status, answer) = server.json(
            "GET",
            "/druid/coordinator/v1/compaction/status?dataSource=social",
            json!(null),
        );
        status == 200
            && answer["latestStatus"][0]["intervalCountCompacted"] == json!(2)
            && answer["latestStatus"][0]["intervalCountAwaitingCompaction"] == json!(0)
    });
    let status = server.ok(
        "GET",
        "/druid/coordinator/v1/compaction/status",
        json!(null),
    );
    let snapshot = &status["latestStatus"][0];
    assert_eq!(snapshot["scheduleStatus"], json!("RUNNING"));
    assert_eq!(
        snapshot["intervalCountSkipped"],
        json!(1),
        "the latest hour is skipped"
    );
    let progress = server.ok(
        "GET",
        "/druid/coordinator/v1/compaction/progress?dataSource=social",
        json!(null),
    );
    assert_eq!(progress["remainingSegmentSize"], json!(0));
    let single = server.sql(
        "SELECT COUNT(*) AS n FROM sys.segments WHERE datasource = 'social' AND is_overshadowed = 0 \
         AND shard_spec LIKE '%\"single\"%'",
    );
    assert_eq!(
        single[0]["n"],
        json!(8),
        "1000 rows an hour, 250 a segment, two hours"
    );
    assert_eq!(
        server
            .sql("SELECT username, COUNT(*) AS n FROM social GROUP BY username ORDER BY username"),
        before
    );
    let tasks = server.ok("GET", "/druid/indexer/v1/tasks?type=compact", json!(null));
    assert_eq!(
        tasks.as_array().unwrap().len(),
        2,
        "each hour once: {tasks}"
    );

    let (status, _) = server.call(
        "DELETE",
        "/druid/coordinator/v1/config/compaction/social",
        "",
        b"",
    );
    assert_eq!(status, 200);
    let (status, _) = server.json(
        "GET",
        "/druid/coordinator/v1/config/compaction/social",
        json!(null),
    );
    assert_eq!(status, 404);
    let (status, _) = server.call(
        "POST",
        "/druid/coordinator/v1/config/compaction/taskslots?max=3",
        "application/json",
        b"",
    );
    assert_eq!(status, 200);
    let document = server.ok(
        "GET",
        "/druid/coordinator/v1/config/compaction",
        json!(null),
    );
    assert_eq!(document["maxCompactionTaskSlots"], json!(3));
}
