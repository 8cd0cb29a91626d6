//! The `millrace` binary as users run it: the seed examples end to end, `check` diagnostics,
//! topics from the shell, the data directory lock, stopOnFail and Ctrl-C.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

mod broker_outage;
mod compaction;
mod examples_on_kafka;
mod properties;
mod scale_out;
mod seeds;
mod soak;

fn millrace() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_millrace"));
    command.env("MILLRACE_LOG", "warn");
    command
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/ksml")
}

fn run_ok(command: &mut Command) -> Output {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{:?} failed: {}",
        command,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The records of a topic as `topic consume --from-beginning` prints them.
fn consumed(data: &Path, topic: &str) -> Vec<Json> {
    let output = run_ok(
        millrace()
            .args(["topic", "consume", topic, "--from-beginning", "--data-dir"])
            .arg(data),
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<Json>(line).unwrap())
        .collect()
}

/// The values of a topic.
fn values(data: &Path, topic: &str) -> Vec<Json> {
    consumed(data, topic)
        .into_iter()
        .map(|record| record["value"].clone())
        .collect()
}

/// Runs a producer and a processor until idle; returns the run's summary line.
fn run_example(data: &Path, producer: &str, processor: &str) -> String {
    let output = run_ok(
        millrace()
            .args(["run", "--until-idle", "--data-dir"])
            .arg(data)
            .arg(examples().join(producer))
            .arg(examples().join(processor)),
    );
    String::from_utf8(output.stderr).unwrap().trim().to_string()
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[test]
fn efficient_processing_example() {
    let dir = tempfile::tempdir().unwrap();
    let summary = run_example(
        dir.path(),
        "producer-high-volume.yaml",
        "processor-efficient-processing.yaml",
    );
    let inputs = values(dir.path(), "high_volume_events");
    assert_eq!(inputs.len(), 2000);
    let expected: Vec<&Json> = inputs
        .iter()
        .filter(|e| !matches!(e["event_type"].as_str(), Some("scroll" | "hover")))
        .collect();
    let outputs = values(dir.path(), "processed_events");
    assert!(
        summary.starts_with(&format!(
            "pipelines processed 2000 records and wrote {}, producers sent 2000 messages, in ",
            outputs.len()
        )),
        "{summary}"
    );
    assert_eq!(outputs.len(), expected.len());
    assert!(!outputs.is_empty() && outputs.len() < inputs.len());
    for (input, output) in expected.iter().zip(&outputs) {
        let priority = match input["event_type"].as_str().unwrap() {
            "purchase" => 3.0,
            "click" => 1.5,
            _ => 1.0,
        };
        let category = match input["category"].as_str().unwrap() {
            "electronics" => 1.5,
            "clothing" => 1.2,
            "home" => 1.1,
            "sports" => 1.3,
            _ => 1.0,
        };
        let score = input["value"].as_f64().unwrap() * priority * category;
        assert_eq!(output["event_id"], input["event_id"]);
        assert!(
            (output["score"].as_f64().unwrap() - round2(score)).abs() < 0.011,
            "{input} -> {output}"
        );
        assert_eq!(output["high_priority"], Json::Bool(round2(score) > 500.0));
    }
}

#[test]
fn pipeline_optimization_example() {
    let dir = tempfile::tempdir().unwrap();
    run_example(
        dir.path(),
        "producer-mixed-events.yaml",
        "processor-pipeline-optimization.yaml",
    );
    let inputs = values(dir.path(), "mixed_quality_events");
    assert_eq!(inputs.len(), 1000);
    let worth: Vec<&Json> = inputs
        .iter()
        .filter(|e| {
            e["valid"] == Json::Bool(true)
                && e["priority"] != "spam"
                && !e["user_agent"].as_str().unwrap().contains("bot")
        })
        .collect();
    let filtered = values(dir.path(), "filtered_events");
    assert_eq!(
        filtered.iter().collect::<Vec<_>>(),
        worth,
        "stage 0 keeps exactly the valid, non-spam, human events"
    );
    let enriched = values(dir.path(), "enriched_events");
    let finals = values(dir.path(), "final_processed_events");
    assert_eq!(enriched.len(), worth.len());
    assert_eq!(finals.len(), worth.len());
    for ((input, stage1), stage2) in worth.iter().zip(&enriched).zip(&finals) {
        assert_eq!(stage1["status"], "enriched");
        assert_eq!(
            stage1["is_high_priority"],
            Json::Bool(input["priority"] == "high")
        );
        let weight = match input["event_type"].as_str().unwrap() {
            "payment" => 1.5,
            "signup" => 0.5,
            "support" => 0.2,
            _ => 1.0,
        };
        let boost = if input["priority"] == "high" {
            2.0
        } else {
            1.0
        };
        let score = round2(input["amount"].as_f64().unwrap() * weight * boost);
        assert_eq!(stage2["status"], "processed");
        assert!(
            (stage2["final_score"].as_f64().unwrap() - score).abs() < 0.011,
            "{input} -> {stage2}"
        );
    }
}

#[test]
fn serialization_optimization_example() {
    let dir = tempfile::tempdir().unwrap();
    run_example(
        dir.path(),
        "producer-binary-data.yaml",
        "processor-serialization-optimization.yaml",
    );
    let inputs = values(dir.path(), "binary_events");
    assert_eq!(inputs.len(), 1000);
    let kept: Vec<&Json> = inputs
        .iter()
        .filter(|e| e["score"].as_i64().unwrap() >= 10)
        .collect();
    let optimized = values(dir.path(), "optimized_events");
    let readable = values(dir.path(), "readable_events");
    assert_eq!(optimized.len(), kept.len());
    assert_eq!(readable.len(), kept.len());
    for ((input, opt), read) in kept.iter().zip(&optimized).zip(&readable) {
        let (name, value, score) = match input["event_type_id"].as_i64().unwrap() {
            1 => (
                "view",
                input["value"].as_f64().unwrap(),
                input["score"].as_i64().unwrap(),
            ),
            2 => (
                "click",
                input["value"].as_f64().unwrap(),
                input["score"].as_i64().unwrap(),
            ),
            _ => (
                "purchase",
                round2(input["value"].as_f64().unwrap() * 1.1),
                input["score"].as_i64().unwrap() + 20,
            ),
        };
        assert_eq!(opt["type"], name);
        assert_eq!(opt["score"].as_i64().unwrap(), score);
        assert!((opt["value"].as_f64().unwrap() - value).abs() < 0.011);
        assert_eq!(&read["event"], opt);
        assert!(read["summary"].as_str().unwrap().contains(name));
    }
}

#[test]
fn check_reports_every_problem_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "streams:\n  in:\n    topic: in\n    keyType: string\n    valueType: json\npipelines:\n  p:\n    from: in\n    via:\n      - type: mapValues\n        mapper: missing\n    to:\n      topic: out\n",
    )
    .unwrap();
    let output = millrace().arg("check").arg(&bad).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "{}:11:17: unknown function 'missing'",
            bad.display()
        )),
        "{stderr}"
    );
    for example in std::fs::read_dir(examples()).unwrap() {
        let path = example.unwrap().path();
        if path.is_dir() {
            continue;
        }
        if path.ends_with("ksml-runner.yaml") {
            run_ok(
                millrace()
                    .args(["check", "--strict", "--config"])
                    .arg(&path),
            );
        } else {
            run_ok(millrace().args(["check", "--strict"]).arg(&path));
        }
    }
}

#[test]
fn topics_from_the_shell() {
    let dir = tempfile::tempdir().unwrap();
    topics_through(&["--data-dir", dir.path().to_str().unwrap()]);
}

#[test]
fn topics_from_the_shell_on_kafka() {
    let broker = millrace_kafka::test_broker::TestBroker::start();
    topics_through(&["--bootstrap-servers", &broker.bootstrap_servers()]);
}

/// Sends `key:value` lines with long values to a topic with `millrace topic produce` on the
/// log `target` names.
fn produce_longs(target: &[&str], topic: &str, lines: &str) {
    let mut produce = millrace()
        .args(["topic", "produce", topic, "--key-separator", ":"])
        .args(["--value-type", "long"])
        .args(target)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    produce
        .stdin
        .take()
        .unwrap()
        .write_all(lines.as_bytes())
        .unwrap();
    assert!(produce.wait().unwrap().success());
}

/// Starts `millrace run --config CONFIG` with its own data directory and `extra` arguments;
/// its log (at info level) goes to `log`.
fn start_run(config: &Path, data: &Path, log: &Path, extra: &[&str]) -> std::process::Child {
    millrace()
        .env("MILLRACE_LOG", "info")
        .args(["run", "--config"])
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .args(extra)
        .stderr(std::fs::File::create(log).unwrap())
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

/// Creates, fills, lists and reads a topic with `millrace topic` on the log `target` names.
fn topics_through(target: &[&str]) {
    run_ok(
        millrace()
            .args(["topic", "create", "nums", "--partitions", "3"])
            .args(target),
    );
    let lines: String = (0..30).map(|i| format!("k{i}:{i}\n")).collect();
    produce_longs(target, "nums", &lines);
    let listed = run_ok(millrace().args(["topic", "list"]).args(target));
    assert!(String::from_utf8_lossy(&listed.stdout).contains("nums\t3 partition(s)"));
    let output = run_ok(
        millrace()
            .args([
                "topic",
                "consume",
                "nums",
                "--from-beginning",
                "--value-type",
                "long",
            ])
            .args(target),
    );
    let records: Vec<Json> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 30);
    let partitions: std::collections::BTreeSet<i64> = records
        .iter()
        .map(|r| r["partition"].as_i64().unwrap())
        .collect();
    assert!(partitions.len() > 1, "keyed records spread over partitions");
    for r in &records {
        let n = r["value"].as_i64().unwrap();
        assert_eq!(r["key"], Json::String(format!("k{n}")));
        assert_eq!(r["topic"], "nums");
    }

    // Deleted, the topic is gone with its records; it can be made again, empty.
    run_ok(millrace().args(["topic", "delete", "nums"]).args(target));
    let listed = run_ok(millrace().args(["topic", "list"]).args(target));
    assert!(!String::from_utf8_lossy(&listed.stdout).contains("nums"));
    let again = millrace()
        .args(["topic", "delete", "nums"])
        .args(target)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("topic 'nums' does not exist"));
    run_ok(
        millrace()
            .args(["topic", "create", "nums", "--partitions", "2"])
            .args(target),
    );
    let emptied = run_ok(
        millrace()
            .args(["topic", "consume", "nums", "--from-beginning"])
            .args(target),
    );
    assert!(emptied.stdout.is_empty());
}

#[test]
fn produce_sets_bad_lines_aside_names_them_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut produce = millrace()
        .args([
            "topic",
            "produce",
            "nums",
            "--value-type",
            "long",
            "--data-dir",
        ])
        .arg(dir.path())
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    produce
        .stdin
        .take()
        .unwrap()
        .write_all(b"1\n\xff\xfe2\nthree\n4\r\n")
        .unwrap();
    let output = produce.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("produced 2 record(s) to 'nums'"),
        "{stderr}"
    );
    assert!(
        stderr.contains("line 2: not UTF-8 (invalid byte at column 1)"),
        "{stderr}"
    );
    assert!(stderr.contains("line 3: value: cannot write"), "{stderr}");
    assert!(
        stderr.contains("error: 2 line(s) were not produced"),
        "{stderr}"
    );
    let output = run_ok(
        millrace()
            .args([
                "topic",
                "consume",
                "nums",
                "--from-beginning",
                "--value-type",
                "long",
                "--data-dir",
            ])
            .arg(dir.path()),
    );
    let produced: Vec<i64> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Json>(l).unwrap()["value"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(produced, [1, 4]);
}

#[test]
fn ctrl_c_interrupts_an_endless_python_function_which_is_reported_first() {
    let dir = tempfile::tempdir().unwrap();
    let definition = dir.path().join("spin.yaml");
    std::fs::write(
        &definition,
        "functions:\n  spin:\n    type: valueTransformer\n    code: |\n      while True:\n        pass\n    expression: value\nproducers:\n  p:\n    generator:\n      expression: \"('k', {'n': 1})\"\n      resultType: (string, json)\n    to:\n      topic: in\n      keyType: string\n      valueType: json\nstreams:\n  in:\n    topic: in\n    keyType: string\n    valueType: json\npipelines:\n  forever:\n    from: in\n    via:\n      - type: mapValues\n        mapper: spin\n    to:\n      topic: out\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let mut child = Running::spawn(
        millrace()
            .args(["run", "--data-dir"])
            .arg(&data)
            .arg(&definition)
            .stderr(Stdio::piped()),
    );
    let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let (stderr, mut pipe) = (stderr.clone(), child.stderr.take().unwrap());
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n @ 1..) = std::io::Read::read(&mut pipe, &mut buffer) {
                stderr
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        })
    };
    let warning = format!(
        "function 'spin' in {} has been running for",
        definition.display()
    );
    wait_for("the slow function is reported", || {
        stderr.lock().unwrap().contains(&warning)
    });
    assert!(
        stderr
            .lock()
            .unwrap()
            .contains("s on topic 'in' partition 0 offset 0"),
        "{}",
        stderr.lock().unwrap()
    );
    let interrupted = Instant::now();
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("Ctrl-C did not stop the run within 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    reader.join().unwrap();
    let stderr = stderr.lock().unwrap().clone();
    assert!(status.success(), "{stderr}");
    assert!(interrupted.elapsed() < Duration::from_secs(10));
    assert!(
        stderr.contains("pipelines processed 0 records and wrote 0, producers sent 1 messages"),
        "{stderr}"
    );
}

#[test]
fn a_second_process_is_told_who_owns_the_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    run_ok(
        millrace()
            .args(["topic", "create", "t", "--data-dir"])
            .arg(data),
    );
    let mut owner = Running::spawn(
        millrace()
            .args(["topic", "consume", "t", "--data-dir"])
            .arg(data)
            .stdout(Stdio::null()),
    );
    // Wait until the owner holds the lock (it writes its pid into the lock file then).
    let deadline = Instant::now() + Duration::from_secs(30);
    let pid = format!("pid {}", owner.id());
    while !std::fs::read_to_string(data.join("LOCK")).is_ok_and(|t| t.contains(&pid)) {
        assert!(Instant::now() < deadline, "the owner never took the lock");
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = millrace()
        .args(["topic", "list", "--data-dir"])
        .arg(data)
        .output()
        .unwrap();
    let message = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "{message}");
    owner.kill().unwrap();
    owner.wait().unwrap();
    assert!(
        message.contains(&format!("pid {}", owner.id())),
        "{message}"
    );
}

#[test]
fn stop_on_fail_exits_non_zero_with_the_traceback() {
    let dir = tempfile::tempdir().unwrap();
    let definition = dir.path().join("fails.yaml");
    std::fs::write(
        &definition,
        "functions:\n  make:\n    type: generator\n    globalCode: |\n      n = 0\n    code: |\n      global n\n      n += 1\n    expression: \"(str(n), {'n': n})\"\n    resultType: (string, json)\n  boom:\n    type: valueTransformer\n    code: |\n      if value['n'] == 3:\n        raise ValueError('three is too many')\n    expression: value\n    resultType: json\nproducers:\n  p:\n    generator: make\n    count: 5\n    to:\n      topic: in\n      keyType: string\n      valueType: json\nstreams:\n  in:\n    topic: in\n    keyType: string\n    valueType: json\npipelines:\n  fail:\n    from: in\n    via:\n      - type: mapValues\n        mapper: boom\n    to:\n      topic: out\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let output = millrace()
        .args(["run", "--until-idle", "--data-dir"])
        .arg(&data)
        .arg(&definition)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("ValueError: three is too many"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "File \"{}\", line 15, in boom",
            definition.display()
        )),
        "{stderr}"
    );
    let out: Vec<i64> = values(&data, "out")
        .iter()
        .map(|v| v["n"].as_i64().unwrap())
        .collect();
    assert_eq!(out, [1, 2], "results before the failing record are kept");
}

#[test]
fn runner_config_and_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("defs")).unwrap();
    std::fs::write(
        dir.path().join("defs/tick.yaml"),
        "producers:\n  ticker:\n    generator:\n      expression: \"('k', {'at': 1})\"\n      resultType: (string, json)\n    interval: 10ms\n    to:\n      topic: ticks\n      keyType: string\n      valueType: json\nstreams:\n  ticks:\n    topic: ticks\n    keyType: string\n    valueType: json\npipelines:\n  copy:\n    from: ticks\n    to:\n      topic: copied\n",
    )
    .unwrap();
    let config = dir.path().join("ksml-runner.yaml");
    std::fs::write(
        &config,
        "kafka:\n  application.id: ${APP_ID:-ticker-app}\nksml:\n  definitions:\n    tick: defs/tick.yaml\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let child = millrace()
        .args(["run", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let ticks = values(&data, "ticks").len();
    let copied = values(&data, "copied").len();
    assert!(ticks > 5, "the producer ran: {ticks}");
    assert!(copied > 0 && copied <= ticks, "{copied} of {ticks}");
}

#[test]
fn benchmarks_run_and_print_figures() {
    let output = run_ok(millrace().args(["bench", "log", "--records", "2000", "--runs", "2"]));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("run 2: append") && text.contains("median: append"),
        "{text}"
    );
    let output = run_ok(
        millrace()
            .args([
                "bench",
                "pipeline",
                "--events",
                "2000",
                "--runs",
                "1",
                "--definition",
            ])
            .arg(examples().join("processor-efficient-processing.yaml")),
    );
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("pipeline / bare loop:"), "{text}");
    // Events from a file, without a predicate (the mapper alone), figures as JSON.
    let events_dir = tempfile::tempdir().unwrap();
    let events = events_dir.path().join("events.json");
    let kinds = ["click", "scroll", "purchase", "hover", "view"];
    let lines: Vec<String> = (0..500)
        .map(|i| {
            format!(
                r#"{{"event_id":"e{i}","user_id":"u","event_type":"{}","category":"books","value":2.5}}"#,
                kinds[i % 5]
            )
        })
        .collect();
    std::fs::write(&events, lines.join("\n")).unwrap();
    let figures = events_dir.path().join("pipeline.json");
    run_ok(
        millrace()
            .args(["bench", "pipeline", "--runs", "1", "--predicate", ""])
            .arg("--definition")
            .arg(examples().join("processor-efficient-processing.yaml"))
            .arg("--input")
            .arg(&events)
            .arg("--json")
            .arg(&figures),
    );
    let json: Json = serde_json::from_str(&std::fs::read_to_string(&figures).unwrap()).unwrap();
    assert_eq!(json["events"], 500, "{json}");
    // The pipeline filters scrolls and hovers (2 of every 5) before its mapper.
    assert_eq!(json["results"], 300, "{json}");
    assert!(json["messages_per_second"].as_f64().unwrap() > 0.0);
    // The pipeline wrote one result per event that is not a scroll or hover.
    let results: u64 = text
        .split("results)")
        .next()
        .and_then(|before| before.rsplit('(').next())
        .and_then(|n| n.trim().parse().ok())
        .expect("a result count");
    assert!(results > 0 && results < 2000, "{text}");

    let output = run_ok(
        millrace()
            .args([
                "bench",
                "stateful",
                "--events",
                "3000",
                "--keys",
                "7",
                "--optimized-state",
            ])
            .arg(examples().join("processor-optimized-state.yaml")),
    );
    let text = String::from_utf8_lossy(&output.stdout);
    // Cached counts: one result per key; 3000 records span 3 seconds, so one window per key.
    for figure in [
        "count ",
        "(3000 processed, 7 results)",
        "window ",
        "optimized-state ",
        "(3000 processed, 3000 results)",
        "peak memory",
    ] {
        assert!(text.contains(figure), "{figure}: {text}");
    }

    let output = run_ok(millrace().args([
        "bench",
        "druid",
        "--events",
        "3000",
        "--tasks",
        "1,2",
        "--query-runs",
        "1",
    ]));
    let text = String::from_utf8_lossy(&output.stdout);
    for figure in [
        "taskCount 1: ingested",
        "taskCount 2: ingested",
        "SQL over 3000 published rows of social_media_2",
        "COUNT(*)",
        "TIME_FLOOR hourly",
    ] {
        assert!(text.contains(figure), "{figure}: {text}");
    }

    // Posts from a file, figures and answers as JSON (as scripts/bench-peers reads them).
    let figures_dir = tempfile::tempdir().unwrap();
    let posts = figures_dir.path().join("posts.json");
    let names = ["mia", "gus", "jojo"];
    let lines: Vec<String> = (0..3000)
        .map(|i| {
            format!(
                r#"{{"time":"2025-01-01T00:{:02}:00.000","username":"{}","post_title":"t","views":{i},"upvotes":1,"comments":0,"edited":"False"}}"#,
                i % 60,
                names[i % 3]
            )
        })
        .collect();
    std::fs::write(&posts, lines.join("\n") + "\n\n").unwrap();
    let figures = figures_dir.path().join("druid.json");
    run_ok(
        millrace()
            .args([
                "bench",
                "druid",
                "--tasks",
                "2",
                "--query-runs",
                "1",
                "--file",
            ])
            .arg(&posts)
            .arg("--json")
            .arg(&figures),
    );
    let json: Json = serde_json::from_str(&std::fs::read_to_string(&figures).unwrap()).unwrap();
    assert_eq!(json["rows"], 3000, "{json}");
    assert_eq!(json["ingestion"][0]["tasks"], 2, "{json}");
    let answer = |name: &str| {
        json["queries"]["timed"]
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["name"] == name)
            .map(|q| q["answer"].clone())
            .unwrap_or_else(|| panic!("{name}: {json}"))
    };
    assert_eq!(answer("COUNT(*)")[0]["EXPR$0"], 3000, "{json}");
    // mia posted every third post, with views 0, 3, 6, ...
    let mia_views: u64 = (0..3000).step_by(3).sum();
    assert_eq!(
        answer("WHERE username")[0],
        serde_json::json!({"posts": 1000, "views": mia_views})
    );
    assert_eq!(answer("GROUP BY username").as_array().unwrap().len(), 3);

    // The seeds' experiments in one run, as JSON too (definitions named from the repository).
    let figures_dir = tempfile::tempdir().unwrap();
    let figures = figures_dir.path().join("seeds.json");
    let output = run_ok(
        millrace()
            .current_dir(examples().join("../.."))
            .args([
                "bench",
                "seeds",
                "--posts",
                "4000",
                "--pipeline-events",
                "3000",
                "--json",
            ])
            .arg(&figures),
    );
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("4000 posts in"), "{text}");
    let json: Json = serde_json::from_str(&std::fs::read_to_string(&figures).unwrap()).unwrap();
    assert!(json["generator"]["eventsPerSecond"].as_f64().unwrap() > 0.0);
    let runs = json["ingestion"]["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3);
    for run in runs {
        // 4000 posts from 500 sessions span minutes: one hour, one segment per task.
        assert_eq!(run["segments"], run["taskCount"], "{run}");
        assert_eq!(run["hours"], 1, "{run}");
    }
    let pipelines = json["pipelines"].as_array().unwrap();
    assert_eq!(pipelines.len(), 2);
    for pipeline in pipelines {
        let results = pipeline["results"].as_u64().unwrap();
        // Scrolls and hovers are dropped: 2 of 5 event types here, 2 of 6 in the tutorial's.
        assert!(results > 1500 && results < 2500, "{pipeline}");
    }

    // The run fails unless every row comes through both compactions.
    let output =
        run_ok(millrace().args(["bench", "compaction", "--rows", "4000", "--query-runs", "1"]));
    let text = String::from_utf8_lossy(&output.stdout);
    for figure in [
        "4000 tutorial posts of one hour ingested by 4 tasks",
        "merge (dynamic)",
        "(4 segments in, 1 out;",
        "range on username",
        "(1 segments in, 4 out;",
        "over 4 range segments (3 pruned): WHERE username = 'mia'",
        "WHERE TRIM(username) = 'mia' (not pruned)",
    ] {
        assert!(text.contains(figure), "{figure}: {text}");
    }

    // Through a Kafka broker: the run fails unless every post is counted once.
    let output = run_ok(millrace().args([
        "bench",
        "druid",
        "--kafka",
        "--events",
        "3000",
        "--tasks",
        "2",
        "--query-runs",
        "1",
    ]));
    let text = String::from_utf8_lossy(&output.stdout);
    for figure in ["of a Kafka broker (tansu)", "taskCount 2: ingested"] {
        assert!(text.contains(figure), "{figure}: {text}");
    }
}

/// A `millrace serve` child process on a free port.
struct ServeProcess {
    child: std::process::Child,
    url: String,
}

impl ServeProcess {
    fn start(data: &Path) -> ServeProcess {
        ServeProcess::start_with(data, &[])
    }

    /// Starts `serve` with more arguments.
    fn start_with(data: &Path, extra: &[&std::ffi::OsStr]) -> ServeProcess {
        use std::io::BufRead;
        let mut child = millrace()
            .args(["serve", "--port", "0", "--data-dir"])
            .arg(data)
            .args(extra)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut lines = std::io::BufReader::new(stderr).lines();
        let url = loop {
            let line = lines.next().expect("serve printed its address").unwrap();
            if let Some(rest) = line.strip_prefix("millrace is serving ") {
                break rest.split_whitespace().next().unwrap().to_string();
            }
        };
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        ServeProcess { child, url }
    }

    fn post_json(&self, path: &str, body: &Json) -> Json {
        let mut response = ureq::post(format!("{}{path}", self.url))
            .header("Content-Type", "application/json")
            .send(body.to_string())
            .unwrap();
        serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap()
    }

    fn count(&self, datasource: &str) -> i64 {
        let query =
            serde_json::json!({"query": format!("SELECT COUNT(*) AS n FROM \"{datasource}\"")});
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut response = agent
            .post(format!("{}/druid/v2/sql", self.url))
            .header("Content-Type", "application/json")
            .send(query.to_string())
            .unwrap();
        if response.status() != 200 {
            return -1;
        }
        let rows: Json =
            serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
        rows[0]["n"].as_i64().unwrap()
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A child process killed when the test ends, however it ends: a failing assertion must not
/// leave a run spinning in the background.
struct Running(std::process::Child);

impl Running {
    fn spawn(command: &mut Command) -> Running {
        Running(command.spawn().unwrap())
    }
}

impl std::ops::Deref for Running {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Tutorial-like posts `first..first+count`, as JSON lines.
fn post_lines(first: usize, count: usize) -> Vec<String> {
    let names = [
        "willow", "mia", "leon", "milton", "miette", "gus", "jojo", "rocket",
    ];
    (first..first + count)
        .map(|i| {
            let minute = i % 180;
            format!(
                "{{\"time\":\"2025-01-01T{:02}:{:02}:{:02}Z\",\"username\":\"{}\",\"post_title\":\"post {i}\",\"views\":{},\"edited\":\"False\"}}",
                minute / 60, minute % 60, i % 60, names[i % 8], i % 977
            )
        })
        .collect()
}

/// Produces tutorial-like posts `first..first+count` through `topic produce --url`.
fn produce_posts(url: &str, first: usize, count: usize) {
    use std::io::Write;
    let text: String = post_lines(first, count)
        .into_iter()
        .map(|line| line + "\n")
        .collect();
    let mut child = millrace()
        .args(["topic", "produce", "social_media", "--url", url])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Creates the `social_media` topic with 4 partitions on a server.
fn create_social_media(server: &ServeProcess) {
    run_ok(millrace().args([
        "topic",
        "create",
        "social_media",
        "--partitions",
        "4",
        "--url",
        &server.url,
    ]));
}

/// The tutorial's spec for `social_media` with 2 tasks, `io` fields added to its ioConfig,
/// and `tuning` as its tuningConfig.
fn social_media_spec(io: Json, tuning: Json) -> Json {
    let mut spec = serde_json::json!({"type": "kafka", "spec": {
        "dataSchema": {"dataSource": "social_media", "timestampSpec": {"column": "time", "format": "iso"},
            "dimensionsSpec": {"dimensions": ["username", "post_title", {"type": "long", "name": "views"}, "edited"]},
            "granularitySpec": {"queryGranularity": "none", "rollup": false, "segmentGranularity": "hour"}},
        "ioConfig": {"topic": "social_media", "inputFormat": {"type": "json"}, "useEarliestOffset": true, "taskCount": 2},
        "tuningConfig": tuning}});
    for (name, value) in io.as_object().unwrap() {
        spec["spec"]["ioConfig"][name] = value.clone();
    }
    spec
}

/// Posts to a topic the `social_media` supervisor reads: (server, first post, count).
type ProducePosts<'a> = &'a dyn Fn(&ServeProcess, usize, usize);

/// Ingests posts with the `social_media` supervisor (`io` added to its ioConfig), publishes
/// some, kills the server with SIGKILL while it holds more, restarts it on the same data
/// directory, and checks every post is counted once; returns the restarted server.
fn survive_kill_9(
    data: &Path,
    server: ServeProcess,
    io: Json,
    produce: ProducePosts<'_>,
) -> ServeProcess {
    produce(&server, 0, 30_000);
    let spec = social_media_spec(io, serde_json::json!({"type": "kafka"}));
    assert_eq!(
        server.post_json("/druid/indexer/v1/supervisor", &spec),
        serde_json::json!({"id": "social_media"})
    );
    wait_for("the first 30000 rows", || {
        server.count("social_media") == 30_000
    });
    // Publish what is there, then ingest more without publishing it, and kill the server.
    server.post_json(
        "/druid/indexer/v1/supervisor/social_media/suspend",
        &Json::Null,
    );
    wait_for("the first segments are published", || {
        let status = server.post_json(
            "/druid/v2/sql",
            &serde_json::json!({"query": "SELECT state FROM sys.supervisors"}),
        );
        status[0]["state"] == "SUSPENDED"
    });
    server.post_json(
        "/druid/indexer/v1/supervisor/social_media/resume",
        &Json::Null,
    );
    produce(&server, 30_000, 20_000);
    wait_for("rows beyond the published ones", || {
        server.count("social_media") > 30_000
    });
    drop(server); // SIGKILL: nothing gets to run.

    let server = ServeProcess::start(data);
    produce(&server, 50_000, 10_000);
    wait_for("all 60000 rows after the restart", || {
        server.count("social_media") == 60_000
    });
    server.post_json(
        "/druid/indexer/v1/supervisor/social_media/suspend",
        &Json::Null,
    );
    let published = || {
        server.post_json(
            "/druid/v2/sql",
            &serde_json::json!({"query": "SELECT SUM(num_rows) AS n FROM sys.segments WHERE is_published = 1"}),
        )[0]["n"]
            .as_i64()
    };
    wait_for("everything is published", || published() == Some(60_000));
    assert_eq!(
        server.count("social_media"),
        60_000,
        "no loss, no duplicates"
    );
    server
}

/// The same on a Kafka cluster: the spec names it in its consumer properties, and offsets
/// are kept with the segments, so the restart neither loses nor repeats a post.
#[test]
fn ingestion_from_kafka_survives_kill_9_of_the_server_without_loss_or_duplicates() {
    let broker = millrace_kafka::test_broker::TestBroker::start();
    let servers = broker.bootstrap_servers();
    // One record per batch: tansu loses the rest of a batch when a read starts inside it, as
    // a task restarted from published offsets does.
    let kafka = millrace_kafka::KafkaLog::connect(millrace_kafka::KafkaSettings::new(vec![
        ("bootstrap.servers".into(), servers.clone()),
        ("batch.num.messages".into(), "1".into()),
    ]))
    .unwrap();
    use millrace_log::Log;
    kafka.create_topic("social_media", 4).unwrap();
    let produce = |_: &ServeProcess, first: usize, count: usize| {
        let mut partitions: Vec<Vec<millrace_log::Record>> = vec![Vec::new(); 4];
        for (n, line) in post_lines(first, count).into_iter().enumerate() {
            partitions[n % 4].push(millrace_log::Record {
                key: None,
                value: Some(line.into()),
                timestamp: 1_700_000_000_000,
                headers: Vec::new(),
            });
        }
        for (partition, records) in partitions.into_iter().enumerate() {
            kafka
                .append("social_media", partition as u32, records)
                .unwrap();
        }
    };
    let data = tempfile::tempdir().unwrap();
    let io = serde_json::json!({"consumerProperties": {"bootstrap.servers": servers}});
    survive_kill_9(data.path(), ServeProcess::start(data.path()), io, &produce);
}

#[test]
fn the_server_survives_kill_9_without_loss_or_duplicates() {
    let data = tempfile::tempdir().unwrap();
    let server = ServeProcess::start(data.path());
    create_social_media(&server);
    let server = survive_kill_9(
        data.path(),
        server,
        serde_json::json!({}),
        &|server, first, count| produce_posts(&server.url, first, count),
    );

    let table = run_ok(millrace().args([
        "sql",
        "--url",
        &server.url,
        "SELECT username, COUNT(*) AS posts FROM social_media GROUP BY username ORDER BY username LIMIT 2",
    ]));
    assert_eq!(
        String::from_utf8(table.stdout).unwrap(),
        "username  posts\n--------  -----\ngus        7500\njojo       7500\n(2 rows)\n"
    );
    let listed = run_ok(millrace().args(["topic", "list", "--url", &server.url]));
    assert_eq!(
        String::from_utf8(listed.stdout).unwrap(),
        "social_media\t4 partition(s)\n"
    );

    // Records read through the server print as they do from a data directory: fields in
    // the same order, JSON values with their keys as written.
    use std::io::Write;
    let mut produce = millrace()
        .args([
            "topic",
            "produce",
            "small",
            "--key-separator",
            ":",
            "--url",
            &server.url,
        ])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    produce
        .stdin
        .take()
        .unwrap()
        .write_all(b"k:{\"z\":1,\"a\":[2]}\n")
        .unwrap();
    assert!(produce.wait().unwrap().success());
    let consumed = run_ok(millrace().args([
        "topic",
        "consume",
        "small",
        "--from-beginning",
        "--url",
        &server.url,
    ]));
    let line = String::from_utf8(consumed.stdout).unwrap();
    assert!(
        line.starts_with("{\"topic\":\"small\",\"partition\":0,\"offset\":0,\"timestamp\":")
            && line.ends_with(",\"key\":\"k\",\"value\":{\"z\":1,\"a\":[2]}}\n"),
        "{line}"
    );
    run_ok(millrace().args(["topic", "delete", "small", "--url", &server.url]));
    let listed = run_ok(millrace().args(["topic", "list", "--url", &server.url]));
    assert_eq!(
        String::from_utf8(listed.stdout).unwrap(),
        "social_media\t4 partition(s)\n"
    );
    let again = millrace()
        .args(["topic", "delete", "small", "--url", &server.url])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("Topic not found: small"));
}

#[test]
fn users_and_authentication_from_the_command_line() {
    let data = tempfile::tempdir().unwrap();
    let refused = millrace()
        .args(["serve", "--bind", "0.0.0.0", "--port", "0", "--data-dir"])
        .arg(data.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("refusing to serve 0.0.0.0 without authentication"),
        "{stderr}"
    );

    use std::io::Write;
    let mut add = millrace()
        .args(["user", "add", "ann", "--role", "admin", "--data-dir"])
        .arg(data.path())
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    add.stdin.take().unwrap().write_all(b"s3cret:pw\n").unwrap();
    assert!(add.wait().unwrap().success());
    let listed = run_ok(
        millrace()
            .args(["user", "list", "--data-dir"])
            .arg(data.path()),
    );
    assert_eq!(
        String::from_utf8(listed.stdout).unwrap(),
        "[{\"user\":\"ann\",\"role\":\"admin\"}]\n"
    );

    let server = ServeProcess::start(data.path());
    let address = server.url.trim_start_matches("http://");
    let query = |url: &str, password: Option<&str>| {
        let mut command = millrace();
        command.args(["sql", "--url", url, "SELECT 1 AS one"]);
        if let Some(password) = password {
            command.env("MILLRACE_PASSWORD", password);
        }
        command.output().unwrap()
    };
    let anonymous = query(&server.url, None);
    assert_eq!(anonymous.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&anonymous.stderr)
            .contains("the server answered 401: Unauthorized"),
        "{}",
        String::from_utf8_lossy(&anonymous.stderr)
    );
    let table = "one\n---\n  1\n(1 row)\n";
    let signed_in = run_ok(millrace().args([
        "sql",
        "--url",
        &format!("http://ann:s3cret%3Apw@{address}"),
        "SELECT 1 AS one",
    ]));
    assert_eq!(String::from_utf8(signed_in.stdout).unwrap(), table);
    let from_env = query(&format!("http://ann@{address}"), Some("s3cret:pw"));
    assert_eq!(String::from_utf8(from_env.stdout).unwrap(), table);

    run_ok(
        millrace()
            .args(["user", "remove", "ann", "--data-dir"])
            .arg(data.path()),
    );
    wait_for("the removed user is turned away", || {
        !query(&format!("http://ann@{address}"), Some("s3cret:pw"))
            .status
            .success()
    });
}

#[test]
fn topic_configs_are_set_at_creation_and_described_by_the_server() {
    let data = tempfile::tempdir().unwrap();
    let server = ServeProcess::start(data.path());
    run_ok(millrace().args([
        "topic",
        "create",
        "store-changelog",
        "--config",
        "cleanup.policy=compact",
        "--config",
        "delete.retention.ms=1000",
        "--url",
        &server.url,
    ]));
    let mut response = ureq::get(format!("{}/topics/store-changelog", server.url))
        .call()
        .unwrap();
    let described: Json =
        serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(
        described["configs"],
        serde_json::json!({"cleanup.policy": "compact", "delete.retention.ms": "1000"})
    );
    let refused = millrace()
        .args(["topic", "create", "x", "--config", "segment.ms=5", "--url"])
        .arg(&server.url)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("'segment.ms'"), "{message}");
}

/// (events, total score) by user.
type UserFigures = BTreeMap<String, (i64, i64)>;

/// Per user: the figures of the activity events, and those of the last summary.
fn user_totals(data: &Path) -> (UserFigures, UserFigures) {
    let mut inputs = BTreeMap::new();
    for event in values(data, "user_activity") {
        let entry = inputs
            .entry(event["user_id"].as_str().unwrap().to_string())
            .or_insert((0, 0));
        entry.0 += 1;
        entry.1 += event["score"].as_i64().unwrap();
    }
    let mut summaries = BTreeMap::new();
    for summary in values(data, "user_metrics_summary") {
        let figures = (
            summary["total_events"].as_i64().unwrap(),
            summary["total_score"].as_i64().unwrap(),
        );
        summaries.insert(summary["user_id"].as_str().unwrap().to_string(), figures);
    }
    (inputs, summaries)
}

#[test]
fn the_seeds_runner_config_runs_the_state_store_pair() {
    let dir = tempfile::tempdir().unwrap();
    let output = run_ok(
        millrace()
            .args(["run", "--until-idle", "--config"])
            .arg(examples().join("ksml-runner.yaml"))
            .arg("--data-dir")
            .arg(dir.path())
            .env("MILLRACE_LOG", "warn"),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("not acted on: bootstrap.servers, consumer.fetch.max.bytes"),
        "{stderr}"
    );
    assert!(stderr.contains("topology.optimization"), "{stderr}");
    let (inputs, summaries) = user_totals(dir.path());
    assert_eq!(inputs.values().map(|(n, _)| n).sum::<i64>(), 2000);
    assert_eq!(summaries, inputs);
    // The application id names the store's changelog.
    let topics = run_ok(
        millrace()
            .args(["topic", "list", "--data-dir"])
            .arg(dir.path()),
    );
    assert!(
        String::from_utf8_lossy(&topics.stdout)
            .contains("optimized-ksml-app-user_metrics_store-changelog"),
    );
}

#[test]
fn optimized_state_example_keeps_per_user_metrics_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let pair = (
        "producer-user-metrics.yaml",
        "processor-optimized-state.yaml",
    );
    run_example(dir.path(), pair.0, pair.1);
    let (inputs, summaries) = user_totals(dir.path());
    assert_eq!(inputs.values().map(|(n, _)| n).sum::<i64>(), 2000);
    assert_eq!(summaries, inputs);
    // Losing the persistent store's files: it is rebuilt from its changelog.
    std::fs::remove_dir_all(dir.path().join("state")).unwrap();
    run_example(dir.path(), pair.0, pair.1);
    let (inputs, summaries) = user_totals(dir.path());
    assert_eq!(inputs.values().map(|(n, _)| n).sum::<i64>(), 4000);
    assert_eq!(summaries, inputs);
}

/// The latest value of each key of a topic.
fn latest_by_key(data: &Path, topic: &str) -> BTreeMap<String, Json> {
    consumed(data, topic)
        .into_iter()
        .map(|record| {
            (
                record["key"].as_str().unwrap().to_string(),
                record["value"].clone(),
            )
        })
        .collect()
}

#[test]
fn windowed_count_and_join_examples() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    // Profiles first, so that every activity event finds its user's profile.
    run_ok(
        millrace()
            .args(["run", "--until-idle", "--data-dir"])
            .arg(data)
            .arg(examples().join("producer-user-profiles.yaml")),
    );
    run_ok(
        millrace()
            .args(["run", "--until-idle", "--data-dir"])
            .arg(data)
            .arg(examples().join("producer-user-metrics.yaml"))
            .arg(examples().join("processor-activity-windows.yaml"))
            .arg(examples().join("processor-activity-joins.yaml")),
    );
    let enriched = values(data, "enriched_activity");
    assert_eq!(enriched.len(), 2000);
    assert!(
        enriched.iter().all(|e| e["tier"].is_string()),
        "{enriched:?}"
    );
    // Users 1..=50 by user % 3: free 16, plus 17, pro 17 (a long, as 8 bytes).
    let per_tier: BTreeMap<String, i64> = latest_by_key(data, "users_per_tier")
        .into_iter()
        .map(|(tier, value)| {
            let bytes: Vec<u8> = value.as_str().unwrap().chars().map(|c| c as u8).collect();
            (tier, i64::from_be_bytes(bytes.try_into().unwrap()))
        })
        .collect();
    assert_eq!(
        per_tier,
        [("free".into(), 16), ("plus".into(), 17), ("pro".into(), 17)].into()
    );
    // The latest count of every user's windows adds up to every event.
    let windows = latest_by_key(data, "activity_per_minute");
    let events: i64 = windows
        .values()
        .map(|w| w["events"].as_i64().unwrap())
        .sum();
    assert_eq!(events, 2000);
    assert!(
        windows
            .keys()
            .all(|k| k.starts_with("user_") && k.contains('@'))
    );
}

/// A count per key without caching (every update is a result) behind a slow function, with
/// the store options given; the function creates `marker` at its 4500th record.
fn slow_count_definition(store_options: &str, marker: &Path) -> String {
    format!(
        "streams:
  input:
    topic: input
    keyType: string
    valueType: string
functions:
  slow:
    type: valueTransformer
    globalCode: |
      import time
      seen = 0
    code: |
      global seen
      seen += 1
      if seen == 4500:
        open({marker:?}, 'w').close()
      time.sleep(0.0005)
    expression: value
pipelines:
  counting:
    from: input
    via:
      - type: mapValues
        mapper: slow
      - type: groupByKey
      - type: count
        store:
          name: counts
          type: keyValue
          caching: false
          {store_options}
      - type: toStream
    to:
      topic: output
      keyType: string
      valueType: long
"
    )
}

#[test]
fn a_stateful_run_killed_with_sigkill_resumes_exactly_once() {
    for store_options in ["persistent: true\n          logging: true", "logging: true"] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let definition = dir.path().join("count.yaml");
        let marker = dir.path().join("4500-seen");
        std::fs::write(&definition, slow_count_definition(store_options, &marker)).unwrap();
        // Frequent commits, so that the kill falls between two of them.
        let config = dir.path().join("runner.yaml");
        std::fs::write(
            &config,
            "kafka:\n  commit.interval.ms: 100\nksml:\n  definitions:\n    count: count.yaml\n",
        )
        .unwrap();
        run_ok(
            millrace()
                .args([
                    "topic",
                    "create",
                    "input",
                    "--partitions",
                    "3",
                    "--data-dir",
                ])
                .arg(&data),
        );
        let lines: String = (0..6000).map(|i| format!("k{}:x\n", i % 20)).collect();
        let mut produce = Running::spawn(
            millrace()
                .args([
                    "topic",
                    "produce",
                    "input",
                    "--key-separator",
                    ":",
                    "--data-dir",
                ])
                .arg(&data)
                .stdin(Stdio::piped()),
        );
        use std::io::Write;
        produce
            .stdin
            .take()
            .unwrap()
            .write_all(lines.as_bytes())
            .unwrap();
        assert!(produce.wait().unwrap().success());
        let run = |until_idle: bool| {
            let mut command = millrace();
            command
                .arg("run")
                .arg("--config")
                .arg(&config)
                .arg("--data-dir")
                .arg(&data);
            if until_idle {
                command.arg("--until-idle");
            }
            command
        };
        // Killed mid-run, after some commits, then run again to the end.
        let mut first = Running::spawn(&mut run(false));
        wait_for("4500 records processed", || marker.exists());
        first.kill().unwrap();
        first.wait().unwrap();
        let before: usize = output_counts(&data).values().map(Vec::len).sum();
        assert!(
            (1..6000).contains(&before),
            "the kill must fall mid-run: {before}"
        );
        run_ok(&mut run(true));
        let per_key = output_counts(&data);
        // Every key counted 1, 2, ..., 300: no update lost, none repeated.
        assert_eq!(per_key.len(), 20, "{store_options}");
        for (key, counts) in per_key {
            assert_eq!(
                counts,
                (1..=300).collect::<Vec<i64>>(),
                "{key} with {store_options}"
            );
        }
    }
}

/// The counts in `output`, per key in offset order.
fn output_counts(data: &Path) -> BTreeMap<String, Vec<i64>> {
    let output = run_ok(
        millrace()
            .args([
                "topic",
                "consume",
                "output",
                "--from-beginning",
                "--value-type",
                "long",
                "--data-dir",
            ])
            .arg(data),
    );
    let mut per_key: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for line in String::from_utf8(output.stdout).unwrap().lines() {
        let record: Json = serde_json::from_str(line).unwrap();
        per_key
            .entry(record["key"].as_str().unwrap().to_string())
            .or_default()
            .push(record["value"].as_i64().unwrap());
    }
    per_key
}

#[test]
fn test_suites_pass_and_fail_with_the_assertion_named() {
    let suite = examples().join("suites/counting-suite.yaml");
    let output = run_ok(millrace().arg("test").arg(&suite));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("PASS counts_every_click") && text.contains("2 passed, 0 failed"),
        "{text}"
    );
    // The same suite with a wrong expectation fails, naming the test and the line.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        examples().join("suites/counting.yaml"),
        dir.path().join("counting.yaml"),
    )
    .unwrap();
    let wrong = std::fs::read_to_string(&suite).unwrap().replace(
        "clicks_per_user.get('ann') == 2",
        "clicks_per_user.get('ann') == 5",
    );
    let wrong_suite = dir.path().join("wrong.yaml");
    std::fs::write(&wrong_suite, wrong).unwrap();
    let output = millrace().arg("test").arg(&wrong_suite).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("FAIL counts_every_click"), "{text}");
    assert!(text.contains("AssertionError"), "{text}");
    assert!(text.contains("wrong.yaml\", line 31"), "{text}");
    assert!(text.contains("PASS generated_clicks"), "{text}");
}

/// A producer of 300 words (keyed by word, deterministic) and two pipelines: a filter and a
/// per-word count.
const WORD_COUNT: &str = "
streams:
  words:
    topic: words
    keyType: string
    valueType: string
  long_words:
    topic: long_words
    keyType: string
    valueType: string
  counts:
    topic: counts
    keyType: string
    valueType: long
functions:
  next_word:
    type: generator
    globalCode: |
      WORDS = ['stream', 'table', 'join', 'window', 'store', 'kafka', 'druid']
      n = 0
    code: |
      global n
      n += 1
      word = WORDS[(n * n) % len(WORDS)]
    expression: (word, word + str(n))
    resultType: (string, string)
producers:
  words:
    generator: next_word
    count: 300
    to: words
pipelines:
  keep_long:
    from: words
    via:
      - type: filter
        if:
          expression: len(key) > 5
    to: long_words
  count_words:
    from: words
    via:
      - type: groupByKey
      - type: count
      - type: toStream
    to: counts
";

/// Runs the word count on the log the runner config's `kafka:` lines name; returns the
/// latest count per word and the number of long words.
fn word_count(dir: &Path, kafka_lines: &str, target: &[&str]) -> (BTreeMap<String, Json>, usize) {
    std::fs::write(dir.join("words.yaml"), WORD_COUNT).unwrap();
    std::fs::write(
        dir.join("runner.yaml"),
        format!("kafka:\n  application.id: wordcount\n{kafka_lines}ksml:\n  definitions:\n    words: words.yaml\n"),
    )
    .unwrap();
    run_ok(
        millrace()
            .args(["run", "--until-idle", "--config"])
            .arg(dir.join("runner.yaml"))
            .arg("--data-dir")
            .arg(dir.join("data")),
    );
    let consume = |topic: &str, value_type: &str| {
        let output = run_ok(
            millrace()
                .args([
                    "topic",
                    "consume",
                    topic,
                    "--from-beginning",
                    "--value-type",
                    value_type,
                ])
                .args(target),
        );
        String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str::<Json>(line).unwrap())
            .collect::<Vec<_>>()
    };
    let counts = consume("counts", "long")
        .into_iter()
        .map(|r| (r["key"].as_str().unwrap().to_string(), r["value"].clone()))
        .collect();
    (counts, consume("long_words", "string").len())
}

#[test]
fn ksml_runs_on_kafka_with_the_embedded_results() {
    let embedded = tempfile::tempdir().unwrap();
    let data = embedded.path().join("data");
    let on_embedded = word_count(embedded.path(), "", &["--data-dir", data.to_str().unwrap()]);
    let broker = millrace_kafka::test_broker::TestBroker::start();
    let servers = broker.bootstrap_servers();
    let kafka = tempfile::tempdir().unwrap();
    let on_kafka = word_count(
        kafka.path(),
        &format!("  bootstrap.servers: {servers}\n"),
        &["--bootstrap-servers", &servers],
    );
    assert_eq!(on_kafka, on_embedded);
    let total: i64 = on_kafka.0.values().map(|n| n.as_i64().unwrap()).sum();
    assert_eq!(total, 300);
}

/// With `auto.create.topics.enable: false`, a topic the run needs and does not find is an
/// error naming it, for sources and outputs alike.
#[test]
fn missing_topics_are_named_when_creating_them_is_off() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("words.yaml"), WORD_COUNT).unwrap();
    std::fs::write(
        dir.path().join("runner.yaml"),
        "kafka:\n  auto.create.topics.enable: false\nksml:\n  definitions:\n    words: words.yaml\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let run = || {
        millrace()
            .args(["run", "--until-idle", "--config"])
            .arg(dir.path().join("runner.yaml"))
            .arg("--data-dir")
            .arg(&data)
            .output()
            .unwrap()
    };
    let missing = |output: &Output, topic: &str| {
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(&format!(
                "topic '{topic}' does not exist, and auto.create.topics.enable is false"
            )),
            "{stderr}"
        );
    };
    missing(&run(), "words");
    run_ok(
        millrace()
            .args(["topic", "create", "words", "--data-dir"])
            .arg(&data),
    );
    let output = run();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let named = ["long_words", "counts"]
        .iter()
        .find(|t| stderr.contains(&format!("topic '{t}' does not exist")));
    missing(&output, named.unwrap_or(&"long_words"));
    for topic in ["long_words", "counts"] {
        run_ok(
            millrace()
                .args(["topic", "create", topic, "--data-dir"])
                .arg(&data),
        );
    }
    run_ok(
        millrace()
            .args(["run", "--until-idle", "--config"])
            .arg(dir.path().join("runner.yaml"))
            .arg("--data-dir")
            .arg(&data),
    );
}

/// tansu has no transactions: exactly-once stops with an error naming what is missing and
/// the guarantee that needs it, rather than running weaker.
#[test]
fn exactly_once_on_a_cluster_without_transactions_stops_with_a_clear_error() {
    let broker = millrace_kafka::test_broker::TestBroker::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("words.yaml"), WORD_COUNT).unwrap();
    std::fs::write(
        dir.path().join("runner.yaml"),
        format!(
            "kafka:\n  bootstrap.servers: {}\n  processing.guarantee: exactly_once_v2\n\
             ksml:\n  definitions:\n    words: words.yaml\n",
            broker.bootstrap_servers()
        ),
    )
    .unwrap();
    let output = millrace()
        .args(["run", "--until-idle", "--config"])
        .arg(dir.path().join("runner.yaml"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "the cluster does not support Kafka transactions, which processing.guarantee \
             exactly_once_v2 needs"
        ),
        "{stderr}"
    );
}
