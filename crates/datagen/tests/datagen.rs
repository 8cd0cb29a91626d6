//! The generator as users run it: built-in and inline configs, seeded runs, every dimension
//! type, state machines, time types, targets and the jobs API.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use millrace_datagen::target::now_ms;
use millrace_datagen::{
    Config, FileSink, Jobs, Limit, LogSink, Pacing, Progress, Settings, Simulation, Sink, Step,
    Target, builtin,
};
use millrace_log::{EmbeddedLog, EmbeddedLogConfig, Log};
use serde_json::{Value, json};

const START: i64 = 1_735_689_600_000; // 2025-01-01T00:00:00Z

fn settings(concurrency: usize, limit: Limit, seed: u64) -> Settings {
    Settings {
        start_ms: START,
        concurrency,
        limit,
        seed,
    }
}

fn records(config: &Value, settings: Settings) -> Vec<Value> {
    let mut simulation = Simulation::new(Config::parse(config).unwrap(), settings).unwrap();
    let mut out = Vec::new();
    let mut all = Vec::new();
    while let Step::Record(_) = simulation.next_record(&mut out, None) {
        all.push(
            serde_json::from_slice(&out)
                .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out))),
        );
    }
    all
}

fn builtin_config(name: &str) -> Value {
    serde_json::from_str(builtin::find(name).unwrap()).unwrap()
}

fn mean(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let values: Vec<f64> = values.collect();
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64;
    (mean, var.sqrt())
}

fn millis(value: &Value) -> i64 {
    millrace_types::time::parse_iso(value.as_str().unwrap()).unwrap()
}

#[test]
fn social_posts_have_the_tutorials_distributions() {
    let posts = records(
        &builtin_config("social/social_posts.json"),
        settings(50, Limit::Events(40_000), 1),
    );
    assert_eq!(posts.len(), 40_000);
    let first = posts[0].as_object().unwrap();
    let keys: Vec<&str> = first.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "time",
            "username",
            "post_title",
            "views",
            "upvotes",
            "comments",
            "edited"
        ]
    );
    let mut users: HashMap<&str, usize> = HashMap::new();
    for post in &posts {
        *users.entry(post["username"].as_str().unwrap()).or_default() += 1;
    }
    assert_eq!(users.len(), 8, "{users:?}");
    assert!(
        users.values().all(|&n| (4300..=5700).contains(&n)),
        "{users:?}"
    );
    let lengths: Vec<usize> = posts
        .iter()
        .map(|p| p["post_title"].as_str().unwrap().len())
        .collect();
    assert_eq!(
        (
            *lengths.iter().min().unwrap(),
            *lengths.iter().max().unwrap()
        ),
        (1, 140)
    );
    let (views, _) = mean(posts.iter().map(|p| p["views"].as_i64().unwrap() as f64));
    assert!((9600.0..10_100.0).contains(&views), "views mean {views}");
    let (upvotes, sd) = mean(posts.iter().map(|p| p["upvotes"].as_i64().unwrap() as f64));
    assert!(
        (69.0..70.5).contains(&upvotes) && (19.0..21.0).contains(&sd),
        "upvotes {upvotes} sd {sd}"
    );
    let (comments, sd) = mean(posts.iter().map(|p| p["comments"].as_i64().unwrap() as f64));
    assert!(
        (9.3..10.2).contains(&comments) && (4.6..5.4).contains(&sd),
        "comments {comments} sd {sd}"
    );
    let edited = posts.iter().filter(|p| p["edited"] == "True").count();
    assert!((19_000..21_000).contains(&edited), "{edited}");
    assert!(
        posts
            .iter()
            .all(|p| p["edited"] == "True" || p["edited"] == "False")
    );
    // 50 sessions, one joining per second, each posting once a second.
    let times: Vec<i64> = posts.iter().map(|p| millis(&p["time"])).collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "records come in time order"
    );
    assert_eq!(times[0], START);
    assert_eq!(times.iter().filter(|&&t| t == START + 100_000).count(), 50);
    assert_eq!(times.iter().filter(|&&t| t == START + 10_000).count(), 11);
}

#[test]
fn a_seed_makes_the_same_records_again() {
    let config = builtin_config("clickstream/clickstream.json");
    let run = |seed| records(&config, settings(20, Limit::Events(2000), seed));
    assert_eq!(run(9), run(9));
    assert_ne!(run(9), run(10));
}

#[test]
fn cardinality_repeats_a_fixed_set_and_says_when_it_cannot() {
    let config = |cardinality: u64, max: i64| {
        json!({
            "emitters": [{"name": "e", "dimensions": [
                {"type": "int", "name": "n", "distribution": {"type": "uniform", "min": 0, "max": max},
                 "cardinality": cardinality, "cardinality_distribution": {"type": "uniform", "min": 0, "max": cardinality - 1}}
            ]}],
            "interarrival": {"type": "constant", "value": 1},
            "states": [{"name": "s", "emitter": "e", "delay": {"type": "constant", "value": 1},
                        "transitions": [{"next": "s", "probability": 1}]}]
        })
    };
    let values: HashSet<i64> = records(&config(5, 1_000_000), settings(10, Limit::Events(500), 2))
        .iter()
        .map(|r| r["n"].as_i64().unwrap())
        .collect();
    assert_eq!(values.len(), 5);
    let err = Simulation::new(
        Config::parse(&config(10, 2)).unwrap(),
        settings(1, Limit::None, 1),
    )
    .err()
    .unwrap();
    assert_eq!(err.path, "emitters[0].dimensions[0].cardinality");
    assert!(
        err.message
            .contains("10 distinct values asked for, but only 3"),
        "{err}"
    );
}

#[test]
fn every_dimension_type_writes_its_shape() {
    let config = json!({
        "emitters": [{"name": "e", "dimensions": [
            {"type": "counter", "name": "seq", "start": 10, "increment": 5},
            {"type": "ipaddress", "name": "ip", "distribution": {"type": "constant", "value": 2130706433}},
            {"type": "timestamp", "name": "ts", "distribution": {"type": "uniform", "min": "2024-01-01T00:00:00", "max": "2024-01-01T00:00:09"}},
            {"type": "float", "name": "f", "distribution": {"type": "normal", "mean": 5, "stddev": 1}, "precision": 2},
            {"type": "float", "name": "whole", "distribution": {"type": "constant", "value": 3}},
            {"type": "string", "name": "s", "length_distribution": {"type": "constant", "value": 40}},
            {"type": "object", "name": "o", "dimensions": [
                {"type": "enum", "name": "flag", "values": [true, 7, "x"]},
                {"type": "variable", "name": "v", "variable": "var"}
            ]},
            {"type": "list", "name": "l", "elements": [
                {"type": "enum", "name": "a", "values": ["a"]},
                {"type": "int", "name": "b", "distribution": {"type": "constant", "value": 2}}
            ], "length_distribution": {"type": "constant", "value": 3}, "selection_distribution": {"type": "uniform", "min": 0, "max": 1}},
            {"type": "clock", "name": "at"},
            {"type": "int", "name": "maybe", "distribution": {"type": "constant", "value": 1}, "percent_nulls": 30},
            {"type": "int", "name": "sometimes", "distribution": {"type": "constant", "value": 1}, "percent_missing": 40}
        ]}],
        "interarrival": {"type": "constant", "value": 1},
        "states": [{"name": "s", "emitter": "e", "delay": {"type": "constant", "value": 0.25},
                    "variables": [{"type": "int", "name": "var", "distribution": {"type": "constant", "value": 42}}],
                    "transitions": [{"next": "s", "probability": 1}]}]
    });
    let all = records(&config, settings(1, Limit::Events(4000), 3));
    let first = &all[0];
    assert_eq!(first["seq"], "10");
    assert_eq!(all[3]["seq"], "25");
    assert_eq!(first["ip"], "127.0.0.1");
    let ts = millis(&first["ts"]);
    assert!((1_704_067_200_000..1_704_067_210_000).contains(&ts), "{ts}");
    let f = first["f"].as_f64().unwrap();
    assert_eq!(format!("{f:.2}").parse::<f64>().unwrap(), f);
    assert_eq!(first["whole"], json!(3.0));
    assert!(first["whole"].is_f64());
    assert_eq!(
        first["s"].as_str().unwrap().chars().count(),
        40,
        "escaped and read back"
    );
    assert!(["True", "7", "x"].contains(&first["o"]["flag"].as_str().unwrap()));
    assert_eq!(first["o"]["v"], "42");
    let list = first["l"].as_array().unwrap();
    assert_eq!(list.len(), 3);
    assert!(list.iter().all(|v| *v == json!("a") || *v == json!(2)));
    assert_eq!(millis(&all[1]["at"]), START + 250);
    assert_eq!(millis(&all[1]["at"]), millis(&all[1]["time"]));
    let nulls = all.iter().filter(|r| r["maybe"].is_null()).count();
    assert!((1000..1400).contains(&nulls), "{nulls}");
    let missing = all.iter().filter(|r| r.get("sometimes").is_none()).count();
    assert!((1400..1800).contains(&missing), "{missing}");
}

fn sessions_config() -> Value {
    json!({
        "emitters": [{"name": "e", "dimensions": [
            {"type": "variable", "name": "user", "variable": "user"},
            {"type": "variable", "name": "step", "variable": "step"}
        ]}],
        "interarrival": {"type": "constant", "value": 1},
        "states": [
            {"name": "login", "emitter": "e", "delay": {"type": "constant", "value": 10},
             "variables": [{"type": "counter", "name": "user"}, {"type": "enum", "name": "step", "values": ["login"]}],
             "transitions": [{"next": "browse", "probability": 0.7}, {"next": "buy", "probability": 0.3}]},
            {"name": "browse", "emitter": "e", "delay": {"type": "constant", "value": 10},
             "variables": [{"type": "enum", "name": "step", "values": ["browse"]}],
             "transitions": [{"next": "stop", "probability": 1}]},
            {"name": "buy", "emitter": "e", "delay": {"type": "constant", "value": 10},
             "variables": [{"type": "enum", "name": "step", "values": ["buy"]}],
             "transitions": [{"next": "stop", "probability": 1}]}
        ]
    })
}

#[test]
fn sessions_follow_their_transitions_and_keep_their_variables() {
    let all = records(&sessions_config(), settings(1000, Limit::Events(20_000), 4));
    let mut by_user: HashMap<&str, Vec<&str>> = HashMap::new();
    for record in &all {
        by_user
            .entry(record["user"].as_str().unwrap())
            .or_default()
            .push(record["step"].as_str().unwrap());
    }
    let complete: Vec<&Vec<&str>> = by_user.values().filter(|steps| steps.len() == 2).collect();
    assert!(complete.len() > 9000, "{}", complete.len());
    assert!(
        by_user
            .values()
            .all(|steps| steps[0] == "login" && steps.len() <= 2),
        "every session starts at login and stops after one more step"
    );
    let buys =
        complete.iter().filter(|steps| steps[1] == "buy").count() as f64 / complete.len() as f64;
    assert!((0.28..0.32).contains(&buys), "{buys}");
}

#[test]
fn concurrency_caps_the_live_sessions() {
    // Sessions that never end: with 3 allowed, only 3 users ever appear.
    let mut config = sessions_config();
    config["states"][1]["transitions"] = json!([{"next": "browse", "probability": 1}]);
    config["states"][2]["transitions"] = json!([{"next": "buy", "probability": 1}]);
    let all = records(&config, settings(3, Limit::Events(300), 5));
    let users: HashSet<&str> = all.iter().map(|r| r["user"].as_str().unwrap()).collect();
    assert_eq!(users.len(), 3);
}

#[test]
fn a_duration_limit_ends_on_the_simulated_clock() {
    let all = records(
        &builtin_config("social/social_posts.json"),
        settings(10, Limit::Duration(60_000), 6),
    );
    let last = all.iter().map(|r| millis(&r["time"])).max().unwrap();
    assert_eq!(last, START + 60_000);
    // 10 sessions join in the first 10 seconds; then 10 posts a second.
    assert_eq!(all.len(), (1..=10).sum::<usize>() + 51 * 10);
}

/// Records each write with the wall-clock time it was made.
struct Stamped(Arc<Mutex<Vec<(i64, Value)>>>);

impl Sink for Stamped {
    fn write(&mut self, record: &[u8]) -> Result<(), String> {
        self.0
            .lock()
            .unwrap()
            .push((now_ms(), serde_json::from_slice(record).unwrap()));
        Ok(())
    }
    fn flush(&mut self) -> Result<(), String> {
        Ok(())
    }
}

#[test]
fn wall_clock_pacing_catches_up_then_waits_for_each_record() {
    let config = sessions_config();
    let mut one_session = config.clone();
    one_session["states"][0]["delay"] = json!({"type": "constant", "value": 0.4});
    one_session["states"][0]["transitions"] = json!([{"next": "login", "probability": 1}]);
    let now = now_ms();
    let settings = Settings {
        start_ms: now - 2000,
        concurrency: 1,
        limit: Limit::Events(9),
        seed: 1,
    };
    let mut simulation = Simulation::new(Config::parse(&one_session).unwrap(), settings).unwrap();
    let written = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    millrace_datagen::run::run(
        &mut simulation,
        &mut Stamped(written.clone()),
        Pacing::WallClock,
        &Progress::default(),
        &AtomicBool::new(false),
    )
    .unwrap();
    let written = written.lock().unwrap();
    assert_eq!(written.len(), 9);
    // The records of the past 2 seconds come at once; the ones after now wait their time.
    for (wall, record) in written.iter() {
        assert!(
            *wall >= millis(&record["time"]),
            "written at {wall}, due {}",
            record["time"]
        );
    }
    assert!(written[0].0 - now < 500);
    assert!(started.elapsed() >= Duration::from_millis(1100));
}

/// Runs a simulation to its limit into a sink.
fn run_into(simulation: &mut Simulation, sink: &mut dyn Sink) {
    millrace_datagen::run::run(
        simulation,
        sink,
        Pacing::Simulated,
        &Progress::default(),
        &AtomicBool::new(false),
    )
    .unwrap();
}

fn embedded_log(dir: &std::path::Path) -> Arc<dyn Log> {
    Arc::new(EmbeddedLog::open(dir, EmbeddedLogConfig::default()).unwrap())
}

fn topic_records(log: &dyn Log, topic: &str) -> Vec<(u32, millrace_log::StoredRecord)> {
    let mut all = Vec::new();
    for partition in 0..log.partition_count(topic).unwrap().unwrap() {
        let fetched = log.read(topic, partition, 0, 1_000_000).unwrap();
        all.extend(fetched.records.into_iter().map(|r| (partition, r)));
    }
    all
}

#[test]
fn log_targets_spread_keyless_records_and_place_keyed_ones_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let log = embedded_log(dir.path());
    let config = Config::parse(&builtin_config("social/social_posts.json")).unwrap();
    let mut simulation =
        Simulation::new(config.clone(), settings(100, Limit::Events(10_000), 7)).unwrap();
    let mut sink = LogSink::open(log.clone(), "posts", Some(4), Vec::new()).unwrap();
    run_into(&mut simulation, &mut sink);
    let stored = topic_records(log.as_ref(), "posts");
    assert_eq!(stored.len(), 10_000);
    let partitions: HashSet<u32> = stored.iter().map(|(p, _)| *p).collect();
    assert_eq!(partitions.len(), 4);
    assert!(stored.iter().all(|(_, r)| r.record.key.is_none()));

    let mut simulation = Simulation::new(config, settings(100, Limit::Events(2000), 7)).unwrap();
    let mut sink = LogSink::open(log.clone(), "by_user", Some(3), vec!["username".into()]).unwrap();
    run_into(&mut simulation, &mut sink);
    for (partition, stored) in topic_records(log.as_ref(), "by_user") {
        let value: Value = serde_json::from_slice(stored.record.value.as_ref().unwrap()).unwrap();
        let key = stored.record.key.unwrap();
        assert_eq!(key, value["username"].as_str().unwrap().as_bytes());
        assert_eq!(partition, millrace_log::murmur2_partition(&key, 3));
    }
}

#[test]
fn keyless_records_move_on_to_the_next_partition_with_each_append() {
    // A job paced to the wall clock flushes often, long before 1000 records gather.
    let dir = tempfile::tempdir().unwrap();
    let log = embedded_log(dir.path());
    let mut sink = LogSink::open(log.clone(), "paced", Some(3), Vec::new()).unwrap();
    for i in 0..6 {
        sink.write(format!("{{\"n\":{i}}}").as_bytes()).unwrap();
        sink.flush().unwrap();
    }
    let partitions: Vec<u32> = topic_records(log.as_ref(), "paced")
        .iter()
        .map(|(p, _)| *p)
        .collect();
    assert_eq!(partitions, [0, 0, 1, 1, 2, 2]);
}

#[test]
fn object_variables_stay_valid_json() {
    let config = json!({
        "emitters": [{"name": "e", "dimensions": [{"type": "variable", "name": "device", "variable": "device"}]}],
        "interarrival": {"type": "constant", "value": 1},
        "states": [{"name": "s", "emitter": "e", "delay": {"type": "constant", "value": 1},
                    "variables": [{"type": "object", "name": "device", "dimensions": [
                        {"type": "enum", "name": "kind", "values": ["probe"]}]}],
                    "transitions": [{"next": "s", "probability": 1}]}]
    });
    let all = records(&config, settings(1, Limit::Events(2), 1));
    assert_eq!(all[0]["device"], json!("{\"kind\":\"probe\"}"));
}

#[test]
fn file_targets_hold_one_json_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("posts.json");
    let config = Config::parse(&builtin_config("iot/sensors.json")).unwrap();
    let mut simulation = Simulation::new(config, settings(20, Limit::Events(500), 8)).unwrap();
    let mut sink = FileSink::create(path.clone()).unwrap();
    run_into(&mut simulation, &mut sink);
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 500);
    assert!(
        lines
            .iter()
            .all(|l| l["device_id"].is_string() && l["time"].is_string())
    );
}

#[test]
fn errors_name_the_field() {
    let bad = |config: Value| Config::parse(&config).err().unwrap().to_string();
    let mut config = sessions_config();
    config["states"][0]["transitions"][0]["next"] = json!("checkout");
    assert_eq!(
        bad(config),
        "states[0].transitions[0].next: no state is named 'checkout'"
    );
    let mut config = sessions_config();
    config["emitters"][0]["dimensions"][0]["type"] = json!("uuid");
    assert!(
        bad(config).starts_with("emitters[0].dimensions[0].type: unknown dimension type 'uuid'")
    );
    let mut config = sessions_config();
    config["emitters"][0]["dimensions"][1]["variable"] = json!("nowhere");
    assert_eq!(
        bad(config),
        "emitters[0].dimensions[1].variable: no state sets a variable named 'nowhere'"
    );
    assert_eq!(
        bad(json!({"type": "replay"})),
        "type: 'replay' configs are not supported; only generator configs (emitters and states) are"
    );
    let target = Target::parse(&json!({"type": "kafka", "topic": "t"}), "target")
        .err()
        .unwrap();
    assert_eq!(target.to_string(), "target.endpoint: is required");
}

fn jobs_on(log: Arc<dyn Log>) -> Jobs {
    Jobs::new(Box::new(
        move |target: &Target| -> Result<Box<dyn Sink>, String> {
            match target {
                Target::Log {
                    topic,
                    partitions,
                    key_fields,
                } => Ok(Box::new(LogSink::open(
                    log.clone(),
                    topic,
                    *partitions,
                    key_fields.clone(),
                )?)),
                other => Err(format!("{other:?} is not available here")),
            }
        },
    ))
}

fn wait_for_status(jobs: &Jobs, name: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let report = jobs.status(name).unwrap();
        if report["status"] == status {
            return report;
        }
        assert!(Instant::now() < deadline, "{report}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_jobs_api_answers_as_learn_druids_server() {
    let dir = tempfile::tempdir().unwrap();
    let log = embedded_log(dir.path());
    let jobs = jobs_on(log.clone());
    assert_eq!(
        jobs.reports(),
        json!({"message": "Data generation is NOT running."})
    );
    assert_eq!(
        jobs.status("x").unwrap(),
        json!({"message": "Data generation is NOT running."})
    );
    assert!(
        jobs.list()
            .as_array()
            .unwrap()
            .contains(&json!("social/social_posts.json"))
    );

    let request = json!({
        "name": "social_stream",
        "target": {"type": "log", "topic": "social", "partitions": 4},
        "config_file": "social/social_posts.json",
        "total_events": 20000,
        "concurrency": 500,
        "time_type": "2025-01-01 00:00:00",
        "seed": 1
    });
    let answer = jobs.start(request.to_string().as_bytes()).unwrap();
    assert_eq!(answer["message"], "Starting generator for request.");
    assert_eq!(answer["request"], request);
    let report = wait_for_status(&jobs, "social_stream", "COMPLETE");
    assert_eq!(report["total_records"], 20000);
    assert_eq!(report["config_file"], "social/social_posts.json");
    assert_eq!(report["target"], request["target"]);
    assert_eq!(report["start_time"], "2025-01-01 00:00:00");
    assert!(report["run_time"].as_f64().unwrap() > 0.0);
    assert_eq!(topic_records(log.as_ref(), "social").len(), 20_000);
    assert_eq!(jobs.reports().as_array().unwrap().len(), 1);

    // A finished job's name may be used again; a running one's may not.
    let endless = json!({"name": "social_stream", "target": {"type": "log", "topic": "endless"},
                         "config_file": "social/social_posts.json", "concurrency": 5, "time_type": "REAL"});
    jobs.start(endless.to_string().as_bytes()).unwrap();
    let again = jobs.start(endless.to_string().as_bytes()).unwrap_err();
    assert_eq!(
        again,
        "A Job with name [social_stream] is already running. Use /stop/social_stream to cancel it and try again."
    );
    std::thread::sleep(Duration::from_millis(300));
    let report = jobs.status("social_stream").unwrap();
    assert_eq!(report["status"], "RUNNING");
    assert_eq!(
        jobs.stop("social_stream").unwrap(),
        json!({"message": "Job [social_stream] stopped successfully."})
    );
    assert!(
        !topic_records(log.as_ref(), "endless").is_empty(),
        "what a stopped job made is kept"
    );
    assert_eq!(
        jobs.stop("social_stream").unwrap_err(),
        "Job [social_stream] not found."
    );

    let bad = |request: Value| jobs.start(request.to_string().as_bytes()).unwrap_err();
    assert_eq!(
        bad(json!({"target": {"type": "stdout"}})),
        "ERROR job must have a \"name\" property."
    );
    assert_eq!(
        bad(
            json!({"name": "a", "target": {"type": "log", "topic": "t"}, "config_file": "nope.json"})
        ),
        "ERROR starting data generator job: config_file: no built-in config is named 'nope.json' (GET /list names them)"
    );
    assert_eq!(
        bad(
            json!({"name": "a", "target": {"type": "log", "topic": "t"}, "config_file": "social/social_posts.json", "total_events": 5, "time": "1m"})
        ),
        "ERROR starting data generator job: time: use either \"time\" or \"total_events\", not both"
    );
    assert_eq!(
        bad(
            json!({"name": "a", "target": {"type": "log", "topic": "t"}, "config": {"states": []}})
        ),
        "ERROR starting data generator job: config.emitters: is required"
    );
    assert_eq!(
        bad(
            json!({"name": "a", "target": {"type": "file", "path": "x"}, "config_file": "social/social_posts.json"})
        ),
        "ERROR starting data generator job: File { path: \"x\" } is not available here"
    );
    assert_eq!(
        jobs.status("a").unwrap(),
        json!({"message": "Data generation is NOT running."})
    );
    jobs.start(request.to_string().as_bytes()).unwrap();
    assert_eq!(jobs.status("a").unwrap_err(), "Job [a] not found");
    let writing = json!({"name": "w1", "target": {"type": "file", "path": "/x/out.json"},
                         "config_file": "social/social_posts.json"});
    let files = tempfile::tempdir().unwrap();
    let file_jobs = Jobs::new(Box::new({
        let files = files.path().to_path_buf();
        move |target: &Target| -> Result<Box<dyn Sink>, String> {
            match target {
                Target::File { path } => Ok(Box::new(FileSink::create(
                    files.join(path.file_name().unwrap()),
                )?)),
                other => Err(format!("{other:?}")),
            }
        }
    }));
    file_jobs.start(writing.to_string().as_bytes()).unwrap();
    let mut second = writing.clone();
    second["name"] = json!("w2");
    second["target"]["path"] = json!("/y/out.json");
    assert_eq!(
        file_jobs.start(second.to_string().as_bytes()).unwrap_err(),
        "ERROR starting data generator job: job [w1] is writing the file /y/out.json"
    );
    file_jobs.stop_all();
    jobs.stop_all();
    assert_eq!(
        jobs.reports(),
        json!({"message": "Data generation is NOT running."})
    );
}
