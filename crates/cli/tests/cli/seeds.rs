//! The seeds end to end: the data generator from the command line and over `serve`'s HTTP
//! API into the log and Kafka, and KSML definitions running inside `serve` while a
//! supervisor ingests their output.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::path::Path;

use serde_json::{Value as Json, json};

use super::{ServeProcess, consumed, examples, millrace, run_ok, wait_for};

/// An HTTP call answering (status, JSON body).
fn call(method: &str, url: &str, body: Option<&Json>) -> (u16, Json) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = match (method, body) {
        ("GET", _) => agent.get(url).call(),
        (_, Some(body)) => agent
            .post(url)
            .header("Content-Type", "application/json")
            .send(body.to_string()),
        (_, None) => agent.post(url).send_empty(),
    }
    .unwrap();
    let text = response.body_mut().read_to_string().unwrap();
    let json = serde_json::from_str(&text).unwrap_or(Json::String(text));
    (response.status().as_u16(), json)
}

fn datagen(args: &[&str]) -> std::process::Command {
    let mut command = millrace();
    command.arg("datagen").args(args);
    command
}

#[test]
fn datagen_writes_reproducible_records_to_files_stdout_and_topics() {
    let dir = tempfile::tempdir().unwrap();
    let social = ["--config", "social/social_posts.json"];
    let file_of = |name: &str, seed: &str| {
        let path = dir.path().join(name);
        run_ok(
            datagen(&social)
                .args(["--total-events", "3000", "--seed", seed])
                .args(["--start", "2025-01-01T00:00:00Z", "--file"])
                .arg(&path),
        );
        std::fs::read_to_string(path).unwrap()
    };
    let first = file_of("a.json", "7");
    assert!(
        first == file_of("b.json", "7"),
        "a seed makes the same records"
    );
    assert!(first != file_of("c.json", "8"), "another seed makes others");
    let posts: Vec<Json> = first
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(posts.len(), 3000);
    assert!(
        posts
            .iter()
            .all(|p| p["username"].is_string() && p["views"].is_i64())
    );

    // Piped: records on stdout, one summary line on stderr and no progress bar.
    let output = run_ok(datagen(&social).args(["--total-events", "1000", "--stdout"]));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).lines().count(),
        1000
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.starts_with("1000 events in "), "{stderr}");
    assert!(!stderr.contains('\r'), "{stderr}");

    let data = dir.path().join("data");
    run_ok(
        datagen(&social)
            .args([
                "--total-events",
                "4000",
                "--topic",
                "posts",
                "--partitions",
                "4",
            ])
            .arg("--data-dir")
            .arg(&data),
    );
    let records = consumed(&data, "posts");
    assert_eq!(records.len(), 4000);
    // Key-less records go to each partition in turn, 1000 at a time.
    let partitions: HashSet<i64> = records
        .iter()
        .map(|r| r["partition"].as_i64().unwrap())
        .collect();
    assert_eq!(partitions.len(), 4);

    let failed = |command: &mut std::process::Command| {
        let output = command.output().unwrap();
        assert!(!output.status.success());
        String::from_utf8_lossy(&output.stderr).to_string()
    };
    let unknown = failed(&mut datagen(&["--config", "nope.json", "--stdout"]));
    assert!(
        unknown.contains("built-in configs: social/social_posts.json"),
        "{unknown}"
    );
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"emitters": [{"name": "e", "dimensions": [{"type": "int", "name": "n"}]}],
            "interarrival": {"type": "constant", "value": 1},
            "states": [{"name": "s", "emitter": "e", "delay": {"type": "constant", "value": 1},
                        "transitions": [{"next": "s", "probability": 1}]}]}"#,
    )
    .unwrap();
    let message = failed(datagen(&["--stdout", "--config"]).arg(&bad));
    assert!(
        message.contains("bad.json: emitters[0].dimensions[0].distribution: is required"),
        "{message}"
    );
    let nowhere = failed(&mut datagen(&social));
    assert!(
        nowhere.contains("name where records go: --topic, --file or --stdout"),
        "{nowhere}"
    );
}

#[test]
fn datagen_reaches_kafka_from_the_command_line_and_from_the_servers_api() {
    let broker = millrace_kafka::test_broker::TestBroker::start();
    let servers = broker.bootstrap_servers();
    run_ok(
        datagen(&["--config", "iot/sensors.json", "--total-events", "1500"])
            .args([
                "--topic",
                "readings",
                "--partitions",
                "2",
                "--key",
                "device_id",
            ])
            .args(["--bootstrap-servers", &servers]),
    );
    let dir = tempfile::tempdir().unwrap();
    let server = ServeProcess::start(dir.path());
    let request = json!({
        "name": "to_kafka",
        "target": {"type": "kafka", "endpoint": servers, "topic": "readings"},
        "config_file": "iot/sensors.json",
        "total_events": 500,
        "concurrency": 50
    });
    let (status, _) = call("POST", &format!("{}/start", server.url), Some(&request));
    assert_eq!(status, 200);
    wait_for("the job completes", || {
        call("GET", &format!("{}/status/to_kafka", server.url), None).1["status"] == "COMPLETE"
    });
    let output = run_ok(millrace().args([
        "topic",
        "consume",
        "readings",
        "--from-beginning",
        "--bootstrap-servers",
        &servers,
    ]));
    let records: Vec<Json> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 2000);
    let keyed = records.iter().filter(|r| !r["key"].is_null()).count();
    assert_eq!(
        keyed, 1500,
        "records from the command line are keyed by device_id"
    );
}

/// A datagen job through serve's API, as learn-druid's notebooks send it, feeds a supervisor.
#[test]
fn the_servers_datagen_api_feeds_a_supervisor() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServeProcess::start(dir.path());
    let url = |path: &str| format!("{}{path}", server.url);
    let (status, created) = call(
        "POST",
        &url("/topics"),
        Some(&json!({"name": "social", "partitions": 4})),
    );
    assert_eq!(status, 200, "{created}");
    // Two days back, as learn-druid's notebook starts its posts: caught up at full speed.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let start = millrace_segments::time::format_iso(now - now % 3_600_000 - 48 * 3_600_000);
    let request = json!({
        "name": "social_stream",
        "target": {"type": "log", "topic": "social"},
        "config_file": "social/social_posts.json",
        "total_events": 20000,
        "concurrency": 500,
        "time_type": start
    });
    let (status, answer) = call("POST", &url("/start"), Some(&request));
    assert_eq!((status, &answer["request"]), (200, &request));
    wait_for("the job completes", || {
        call("GET", &url("/status/social_stream"), None).1["status"] == "COMPLETE"
    });
    let (_, report) = call("GET", &url("/datagen/status/social_stream"), None);
    assert_eq!(report["total_records"], 20000);
    assert_eq!(report["config_file"], "social/social_posts.json");
    assert_eq!(
        sample(
            &metrics_text(&server.url),
            "millrace_datagen_records_total{job=\"social_stream\"}"
        ),
        20000.0
    );
    // The command line reaches the same server with --url.
    run_ok(
        datagen(&["--config", "iot/sensors.json", "--total-events", "500"]).args([
            "--topic",
            "readings",
            "--partitions",
            "2",
            "--url",
            &server.url,
        ]),
    );
    let (_, readings) = call("GET", &url("/topics/readings"), None);
    let offsets: Vec<u64> = readings["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["latest_offset"].as_u64().unwrap())
        .collect();
    assert_eq!(
        (offsets.len(), offsets.iter().sum::<u64>()),
        (2, 500),
        "{readings}"
    );
    let (_, jobs) = call("GET", &url("/jobs"), None);
    assert_eq!(jobs.as_array().unwrap().len(), 1);
    let (_, list) = call("GET", &url("/list"), None);
    assert!(
        list.as_array()
            .unwrap()
            .contains(&json!("social/social_posts.json"))
    );
    let (status, error) = call(
        "POST",
        &url("/start"),
        Some(&json!({"name": "x", "target": {"type": "log", "topic": "t"}, "config_file": "nope"})),
    );
    assert_eq!(status, 400);
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("no built-in config is named 'nope'"),
        "{error}"
    );
    let (status, error) = call("GET", &url("/status/nobody"), None);
    assert_eq!(
        (status, error),
        (400, json!({"message": "Job [nobody] not found"}))
    );
    let (status, health) = call("GET", &url("/status/health"), None);
    assert_eq!(
        (status, health),
        (200, json!(true)),
        "Druid's /status paths keep their meaning"
    );

    let mut spec: Json = serde_json::from_str(include_str!(
        "../../../../examples/druid/social-media-supervisor.json"
    ))
    .unwrap();
    spec["spec"]["ioConfig"]["topic"] = json!("social");
    spec["spec"]["ioConfig"]["taskCount"] = json!(4);
    spec["spec"]["dataSchema"]["dataSource"] = json!("social_media_4task");
    server.post_json("/druid/indexer/v1/supervisor", &spec);
    wait_for("every post is ingested", || {
        server.count("social_media_4task") == 20000
    });
}

/// A producer that sends one event every 10 ms, 1500 in all.
const SLOW_PRODUCER: &str = r#"
functions:
  make_event:
    type: generator
    globalCode: |
      import random
      counter = 0
    code: |
      global counter
      counter += 1
      event = {"event_id": "evt_" + str(counter), "user_id": "user_" + str(counter % 50),
               "event_type": random.choice(["click", "purchase", "view"]),
               "category": "books", "value": 10.0, "timestamp": counter}
    expression: (event["user_id"], event)
    resultType: (string, json)
producers:
  slow_producer:
    generator: make_event
    interval: 10ms
    count: 1500
    to:
      topic: high_volume_events
      keyType: string
      valueType: json
"#;

#[test]
fn ksml_definitions_run_inside_serve_while_a_supervisor_ingests_their_output() {
    let dir = tempfile::tempdir().unwrap();
    let producer = dir.path().join("slow-producer.yaml");
    std::fs::write(&producer, SLOW_PRODUCER).unwrap();
    let broken = dir.path().join("broken.yaml");
    std::fs::write(
        &broken,
        "pipelines:\n  p:\n    from: nowhere\n    to: out\n",
    )
    .unwrap();
    let processor = examples().join("processor-efficient-processing.yaml");
    let args: Vec<&OsStr> = vec![
        OsStr::new("--definitions"),
        producer.as_os_str(),
        processor.as_os_str(),
        broken.as_os_str(),
    ];
    let server = ServeProcess::start_with(&dir.path().join("data"), &args);
    let url = |path: &str| format!("{}{path}", server.url);
    let spec: Json = serde_json::from_str(include_str!(
        "../../../../examples/druid/processed-events-supervisor.json"
    ))
    .unwrap();
    server.post_json("/druid/indexer/v1/supervisor", &spec);
    let ingested = || {
        let query = json!({"query": "SELECT SUM(\"count\") AS n FROM processed_events"});
        let (status, rows) = call("POST", &url("/druid/v2/sql"), Some(&query));
        if status == 200 {
            rows[0]["n"].as_i64().unwrap_or(0)
        } else {
            0
        }
    };
    wait_for("the pipeline's output is queryable", || ingested() > 0);
    let (_, producing) = call("GET", &url("/ksml/v1/definitions/slow-producer"), None);
    assert_eq!(producing["state"], "RUNNING");
    let produced = producing["metrics"]["messagesProduced"].as_u64().unwrap();
    assert!(
        produced < 1500,
        "SQL saw rows while the producer was still at {produced}"
    );

    let (_, list) = call("GET", &url("/ksml/v1/definitions"), None);
    let by_name = |name: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == name)
            .unwrap()
            .clone()
    };
    let invalid = by_name("broken");
    assert_eq!(invalid["state"], "INVALID");
    assert!(
        invalid["error"]
            .as_str()
            .unwrap()
            .contains("broken.yaml:3:"),
        "{invalid}"
    );
    let processing = by_name("processor-efficient-processing");
    assert_eq!(processing["state"], "RUNNING");
    assert_eq!(
        processing["applicationId"],
        "millrace-processor-efficient-processing"
    );

    // Stopped, the processor's output stops growing; started again, it catches up.
    let (status, stopped) = call(
        "POST",
        &url("/ksml/v1/definitions/processor-efficient-processing/stop"),
        None,
    );
    assert_eq!((status, &stopped["state"]), (200, &json!("STOPPED")));
    wait_for("the producer finishes", || {
        call("GET", &url("/ksml/v1/definitions/slow-producer"), None).1["metrics"]["messagesProduced"]
            == 1500
    });
    let (_, stopped) = call(
        "GET",
        &url("/ksml/v1/definitions/processor-efficient-processing"),
        None,
    );
    assert!(stopped["metrics"]["lag"].as_u64().unwrap() > 0, "{stopped}");
    let (status, started) = call(
        "POST",
        &url("/ksml/v1/definitions/processor-efficient-processing/start"),
        None,
    );
    assert_eq!((status, &started["state"]), (200, &json!("RUNNING")));
    wait_for("the processor catches up", || {
        call(
            "GET",
            &url("/ksml/v1/definitions/processor-efficient-processing"),
            None,
        )
        .1["metrics"]["lag"]
            == 0
    });
    let (status, _) = call("POST", &url("/ksml/v1/definitions/broken/start"), None);
    assert_eq!(status, 400);
    let (status, _) = call("POST", &url("/ksml/v1/definitions/nobody/start"), None);
    assert_eq!(status, 404);
    let written = call(
        "GET",
        &url("/ksml/v1/definitions/processor-efficient-processing"),
        None,
    )
    .1["metrics"]["recordsOut"]
        .as_i64()
        .unwrap();
    assert!(written > 0);
    // Both runs' outputs: the run stopped on request committed what it wrote.
    let before_stop = stopped["metrics"]["recordsOut"].as_i64().unwrap();
    wait_for("the supervisor ingests every processed event", || {
        ingested() == before_stop + written
    });
    let metrics = metrics_text(&server.url);
    let definition = |name: &str, definition: &str| {
        sample(&metrics, &format!("{name}{{definition=\"{definition}\"}}"))
    };
    assert_eq!(
        definition("millrace_ksml_messages_produced_total", "slow-producer"),
        1500.0
    );
    let processor = "processor-efficient-processing";
    assert_eq!(
        definition("millrace_ksml_records_out_total", processor),
        written as f64
    );
    assert_eq!(definition("millrace_ksml_lag", processor), 0.0);
    assert_eq!(definition("millrace_ksml_running", processor), 1.0);
    assert_eq!(definition("millrace_ksml_running", "broken"), 0.0);
    assert!(
        metrics.contains("millrace_ksml_python_busy_seconds_total{definition=\"processor-efficient-processing\",function=\"function 'compute_event_score'"),
        "{metrics}"
    );
}

/// The server's Prometheus metrics.
fn metrics_text(url: &str) -> String {
    match call("GET", &format!("{url}/metrics"), None) {
        (200, Json::String(text)) => text,
        other => panic!("{other:?}"),
    }
}

/// One sample's value.
fn sample(metrics: &str, name: &str) -> f64 {
    let line = metrics
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("no {name} in {metrics}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// The seed notebook's whole sequence, as its clients send it: learn-druid's druidapi
/// requests and kafka-python against a Kafka broker, then pydruid's DB-API, SQLAlchemy
/// dialect and native client on the result (crates/cli/tests/python/seed_notebook.py).
#[test]
fn the_seed_notebook_runs_with_the_clients_it_uses() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let venv = run_ok(&mut std::process::Command::new(
        manifest.join("../../scripts/python-clients"),
    ));
    let python = String::from_utf8(venv.stdout).unwrap().trim().to_string();
    let broker = millrace_kafka::test_broker::TestBroker::start();
    let dir = tempfile::tempdir().unwrap();
    let server = ServeProcess::start(dir.path());
    let output = std::process::Command::new(python)
        .arg(manifest.join("tests/python/seed_notebook.py"))
        .env("DRUID_URL", &server.url)
        .env("KAFKA_HOST", broker.bootstrap_servers())
        .env("EVENTS", "20000")
        .output()
        .unwrap();
    let printed = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{printed}");
    assert!(printed.contains("the notebook ran"), "{printed}");
}
