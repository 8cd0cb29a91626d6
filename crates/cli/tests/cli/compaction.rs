//! Compaction in a `millrace serve` process: the server killed with SIGKILL at moments
//! during compactions, restarted each time, then a compaction to its end and `millrace
//! segments` showing its range shards.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value as Json, json};

use super::{
    ServeProcess, create_social_media, millrace, produce_posts, run_ok, social_media_spec, wait_for,
};

const ROWS: i64 = 60_000;

fn get_json(server: &ServeProcess, path: &str) -> Json {
    let mut response = ureq::get(format!("{}{path}", server.url)).call().unwrap();
    serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap()
}

fn sql(server: &ServeProcess, query: &str) -> Json {
    server.post_json("/druid/v2/sql", &json!({ "query": query }))
}

/// Files in the datasource's segment directory.
fn segment_files(data: &Path) -> usize {
    std::fs::read_dir(data.join("segments/social_media"))
        .unwrap()
        .count()
}

/// What every restart must show: every row once, and exactly the published segments'
/// files on disk.
fn check(server: &ServeProcess, data: &Path) {
    assert_eq!(server.count("social_media"), ROWS);
    let published = sql(
        server,
        "SELECT COUNT(*) AS n FROM sys.segments WHERE datasource = 'social_media' AND is_published = 1",
    );
    assert_eq!(
        published[0]["n"].as_u64().unwrap() as usize,
        segment_files(data),
        "no file but the published segments'"
    );
}

fn range_compaction() -> Json {
    json!({"type": "compact", "dataSource": "social_media",
        "ioConfig": {"type": "compact", "inputSpec": {"type": "interval",
            "interval": "2025-01-01T00:00:00Z/2025-01-01T03:00:00Z"}},
        "tuningConfig": {"type": "compaction", "forceGuaranteedRollup": true,
            "partitionsSpec": {"type": "single_dim", "partitionDimension": "username",
                "targetRowsPerSegment": 5000}}})
}

#[test]
fn kill_9_during_compactions_loses_nothing_and_leaves_no_stray_files() {
    let data = tempfile::tempdir().unwrap();
    let mut server = ServeProcess::start(data.path());
    create_social_media(&server);
    produce_posts(&server.url, 0, ROWS as usize);
    server.post_json(
        "/druid/indexer/v1/supervisor",
        &social_media_spec(json!({}), json!({"type": "kafka"})),
    );
    wait_for("every row", || server.count("social_media") == ROWS);
    server.post_json(
        "/druid/indexer/v1/supervisor/social_media/suspend",
        &Json::Null,
    );
    wait_for("the tasks published", || {
        sql(&server, "SELECT state FROM sys.supervisors")[0]["state"] == "SUSPENDED"
    });
    check(&server, data.path());

    let mut outcomes = Vec::new();
    for delay in [0, 30, 100, 250, 600] {
        let task = server.post_json("/druid/indexer/v1/task", &range_compaction())["task"]
            .as_str()
            .unwrap()
            .to_string();
        std::thread::sleep(Duration::from_millis(delay));
        server.child.kill().unwrap();
        server.child.wait().unwrap();
        server = ServeProcess::start(data.path());
        check(&server, data.path());
        let status = get_json(&server, &format!("/druid/indexer/v1/task/{task}/status"));
        let code = status["status"]["statusCode"].as_str().unwrap().to_string();
        if code == "FAILED" {
            assert!(
                status["status"]["errorMsg"]
                    .as_str()
                    .unwrap()
                    .contains("the server stopped before the task finished"),
                "{status}"
            );
        }
        outcomes.push(code);
    }
    assert!(
        outcomes.iter().any(|c| c == "FAILED"),
        "some kill lands mid-compaction: {outcomes:?}"
    );

    // A compaction let run to its end.
    let task = server.post_json("/druid/indexer/v1/task", &range_compaction())["task"]
        .as_str()
        .unwrap()
        .to_string();
    wait_for("the compaction succeeds", || {
        get_json(&server, &format!("/druid/indexer/v1/task/{task}/status"))["status"]["statusCode"]
            == "SUCCESS"
    });
    check(&server, data.path());
    let listed = run_ok(millrace().args(["segments", "--url", &server.url, "social_media"]));
    let text = String::from_utf8(listed.stdout).unwrap();
    assert!(
        text.contains("single") && text.contains("username in [-inf, "),
        "the first range of each hour: {text}"
    );
    assert!(text.contains("appended"), "the streamed segments: {text}");
}
