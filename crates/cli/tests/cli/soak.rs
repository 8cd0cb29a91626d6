//! Soak tests: the real binary killed with SIGKILL at random moments, ten times over, for both
//! halves. Each run prints its seed; `MILLRACE_SOAK_SEED=N` repeats a run's moments.

use super::*;

/// Kill cycles per soak test.
const CYCLES: usize = 10;
/// Input records added before each killed run of a pipeline.
const RECORDS_PER_CYCLE: usize = 5_000;

/// A seeded xorshift generator: the soak's moments, repeatable from the printed seed.
struct Moments(u64);

impl Moments {
    fn new(test: &str) -> Moments {
        let seed = std::env::var("MILLRACE_SOAK_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("{test}: soak seed {seed} (MILLRACE_SOAK_SEED={seed} repeats these moments)");
        Moments(seed | 1)
    }

    /// A number in `0..bound`.
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

/// One SQL answer's first row.
fn first_row(server: &ServeProcess, query: &str) -> Json {
    server.post_json("/druid/v2/sql", &serde_json::json!({"query": query}))[0].clone()
}

#[test]
fn serve_keeps_every_row_exactly_once_across_kill_9_at_random_moments() {
    let mut moments = Moments::new("serve");
    let data = tempfile::tempdir().unwrap();
    let mut server = ServeProcess::start(data.path());
    create_social_media(&server);
    // Short tasks that persist often: kills land while rows are in memory, persisted,
    // being published and handed off.
    let spec = social_media_spec(
        serde_json::json!({"taskDuration": "PT2S"}),
        serde_json::json!({"type": "kafka", "maxRowsInMemory": 1500, "intermediatePersistPeriod": "PT1S"}),
    );
    server.post_json("/druid/indexer/v1/supervisor", &spec);
    let mut produced = 0;
    for cycle in 0..CYCLES {
        let count = 1000 + moments.below(4000) as usize;
        produce_posts(&server.url, produced, count);
        produced += count;
        let pause = moments.below(2500);
        eprintln!("serve cycle {cycle}: {count} posts, SIGKILL after {pause} ms");
        std::thread::sleep(Duration::from_millis(pause));
        drop(server);
        server = ServeProcess::start(data.path());
    }
    wait_for("every row is queryable", || {
        server.count("social_media") == produced as i64
    });
    server.post_json(
        "/druid/indexer/v1/supervisor/social_media/suspend",
        &Json::Null,
    );
    wait_for("every row is published", || {
        first_row(
            &server,
            "SELECT SUM(num_rows) AS n FROM sys.segments WHERE is_published = 1",
        )["n"]
            .as_i64()
            == Some(produced as i64)
    });
    // Post i has title "post i" and i % 977 views (see produce_posts).
    let row = first_row(
        &server,
        "SELECT COUNT(*) AS n, COUNT(DISTINCT post_title) AS titles, SUM(views) AS views FROM social_media",
    );
    let views: i64 = (0..produced).map(|i| (i % 977) as i64).sum();
    assert_eq!(
        row,
        serde_json::json!({"n": produced, "titles": produced, "views": views}),
        "no row lost, none twice"
    );
}

/// The output topic's values per key, in the order written. Results of different input
/// partitions interleave as the tasks' batches happen to, which restarts change; results of
/// one key come from one input partition and keep its order.
fn outputs(data: &Path) -> BTreeMap<String, Vec<Json>> {
    let output = run_ok(
        millrace()
            .args(["topic", "consume", "out", "--from-beginning", "--data-dir"])
            .arg(data),
    );
    let mut by_key = BTreeMap::<String, Vec<Json>>::new();
    let mut lines: Vec<Json> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    lines.sort_by_key(|r| (r["partition"].as_i64(), r["offset"].as_i64()));
    for record in lines {
        let key = record["key"].as_str().unwrap().to_string();
        by_key.entry(key).or_default().push(record["value"].clone());
    }
    by_key
}

fn result_count(outputs: &BTreeMap<String, Vec<Json>>) -> usize {
    outputs.values().map(Vec::len).sum()
}

#[test]
fn run_output_equals_an_uninterrupted_run_across_kill_9_at_random_moments() {
    let mut moments = Moments::new("run");
    let dir = tempfile::tempdir().unwrap();
    let definition = dir.path().join("square.yaml");
    std::fs::write(
        &definition,
        "streams:\n  in:\n    topic: in\n    keyType: string\n    valueType: json\nfunctions:\n  square:\n    type: valueTransformer\n    globalCode: import time\n    code: time.sleep(0.0001)\n    expression: \"{'n': value['n'], 'square': value['n'] * value['n'], 'key': key}\"\n    resultType: json\npipelines:\n  squares:\n    from: in\n    via:\n      - type: mapValues\n        mapper: square\n    to:\n      topic: out\n      keyType: string\n      valueType: json\n",
    )
    .unwrap();
    // Input arrives in chunks, one before each killed run, and each record takes the function
    // a tenth of a millisecond, so that kills find work in progress.
    let chunk = |index: usize| -> String {
        (index * RECORDS_PER_CYCLE..(index + 1) * RECORDS_PER_CYCLE)
            .map(|i| format!("k{}:{{\"n\": {i}}}\n", i % 97))
            .collect()
    };
    let produce = |data: &Path, input: &str| {
        let mut produce = millrace()
            .args([
                "topic",
                "produce",
                "in",
                "--key-separator",
                ":",
                "--data-dir",
            ])
            .arg(data)
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        produce
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        assert!(produce.wait().unwrap().success());
    };
    let create = |data: &Path| {
        run_ok(
            millrace()
                .args(["topic", "create", "in", "--partitions", "3", "--data-dir"])
                .arg(data),
        );
    };
    let run_until_idle = |data: &Path| {
        run_ok(
            millrace()
                .args(["run", "--until-idle", "--data-dir"])
                .arg(data)
                .arg(&definition),
        );
    };

    let total = CYCLES * RECORDS_PER_CYCLE;
    let uninterrupted = dir.path().join("uninterrupted");
    create(&uninterrupted);
    produce(&uninterrupted, &(0..CYCLES).map(chunk).collect::<String>());
    run_until_idle(&uninterrupted);

    let killed = dir.path().join("killed");
    create(&killed);
    for cycle in 0..CYCLES {
        produce(&killed, &chunk(cycle));
        let mut child = millrace()
            .args(["run", "--data-dir"])
            .arg(&killed)
            .arg(&definition)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pause = 50 + moments.below(500);
        eprintln!("run cycle {cycle}: SIGKILL after {pause} ms");
        std::thread::sleep(Duration::from_millis(pause));
        child.kill().unwrap();
        child.wait().unwrap();
    }
    eprintln!(
        "run: {} of {total} results before the last, uninterrupted run",
        result_count(&outputs(&killed))
    );
    run_until_idle(&killed);

    let expected = outputs(&uninterrupted);
    assert_eq!(result_count(&expected), total);
    assert!(
        outputs(&killed) == expected,
        "the output after kills differs from the uninterrupted run's"
    );
}
