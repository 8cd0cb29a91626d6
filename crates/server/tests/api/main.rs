//! The HTTP API end to end: the seed's flow (topic, supervisors with 1, 2 and 4 tasks, SQL,
//! suspend, segments), and the shapes of each endpoint's answers and errors.

mod compaction;
mod native;

use std::time::{Duration, Instant};

use millrace_log::EmbeddedLogConfig;
use millrace_segments::time::format_iso;
use millrace_server::{ServeOptions, Server};
use serde_json::{Value, json};

const HOUR: i64 = 3_600_000;
/// 2025-01-01T00:00:00Z.
const BASE: i64 = 1_735_689_600_000;

/// A server on a free port of a temporary data directory, stopped on drop.
struct Running {
    url: String,
    agent: ureq::Agent,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Running {
    fn start() -> Running {
        Running::start_with(
            tempfile::tempdir().unwrap(),
            ServeOptions::default(),
            ureq::Agent::config_builder(),
        )
    }

    /// A server on `dir` with `options`; the test's agent is built from `agent`.
    fn start_with(
        dir: tempfile::TempDir,
        options: ServeOptions,
        agent: ureq::config::ConfigBuilder<ureq::typestate::AgentScope>,
    ) -> Running {
        let scheme = if options.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let server = Server::open(
            dir.path(),
            EmbeddedLogConfig::default(),
            millrace_query::column_cache::DEFAULT_BUDGET_BYTES,
        )
        .unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (address_tx, address_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                address_tx.send(listener.local_addr().unwrap()).unwrap();
                server
                    .serve(listener, options, async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        let address = address_rx.recv().unwrap();
        Running {
            url: format!("{scheme}://{address}"),
            // A fresh connection per request: a pooled one the server has just closed (after
            // an error answer, say) would fail the next request now and then.
            agent: agent
                .http_status_as_error(false)
                .max_idle_connections(0)
                .build()
                .into(),
            stop: Some(stop),
            thread: Some(thread),
            _dir: dir,
        }
    }

    /// A server whose datasource `social` holds `posts(16, 1)`, ingested by one task.
    fn with_sixteen_posts() -> Running {
        Running::with_lines("social", &posts(16, 1), 16)
    }

    /// A server whose datasource (read by one task from a topic of the same name) holds
    /// `rows` rows of the JSON `lines`.
    fn with_lines(datasource: &str, lines: &str, rows: i64) -> Running {
        let server = Running::start();
        server.topic_with_lines(datasource, 1, lines);
        server.ok(
            "POST",
            "/druid/indexer/v1/supervisor",
            spec(datasource, datasource, 1),
        );
        wait_until("rows arrive", || server.count(datasource) == rows);
        server
    }

    /// Creates a topic and produces text lines to it.
    fn topic_with_lines(&self, topic: &str, partitions: u32, lines: &str) {
        self.ok(
            "POST",
            "/topics",
            json!({"name": topic, "partitions": partitions}),
        );
        let (status, answer) = self.call(
            "POST",
            &format!("/topics/{topic}"),
            "text/plain",
            lines.as_bytes(),
        );
        assert_eq!(status, 200, "{answer}");
    }

    fn call(&self, method: &str, path: &str, content_type: &str, body: &[u8]) -> (u16, String) {
        let url = format!("{}{path}", self.url);
        let response = match method {
            "GET" => self.agent.get(&url).call(),
            "DELETE" => self.agent.delete(&url).call(),
            _ => self
                .agent
                .post(&url)
                .header("Content-Type", content_type)
                .send(body),
        };
        let mut response = response.unwrap();
        let status = response.status().as_u16();
        (status, response.body_mut().read_to_string().unwrap())
    }

    fn json(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        let (status, text) = self.call(
            method,
            path,
            "application/json",
            body.to_string().as_bytes(),
        );
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    fn ok(&self, method: &str, path: &str, body: Value) -> Value {
        let (status, value) = self.json(method, path, body);
        assert_eq!(status, 200, "{method} {path}: {value}");
        value
    }

    /// Runs SQL and returns rows as objects.
    fn sql(&self, query: &str) -> Vec<Value> {
        let answer = self.ok("POST", "/druid/v2/sql", json!({"query": query}));
        answer.as_array().unwrap().clone()
    }

    fn count(&self, datasource: &str) -> i64 {
        let (status, answer) = self.json(
            "POST",
            "/druid/v2/sql",
            json!({"query": format!("SELECT COUNT(*) AS n FROM \"{datasource}\"")}),
        );
        if status != 200 {
            return -1;
        }
        answer[0]["n"].as_i64().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Tutorial-like social posts as text lines over `hours` hours.
fn posts(count: usize, hours: i64) -> String {
    let names = [
        "willow", "mia", "leon", "milton", "miette", "gus", "jojo", "rocket",
    ];
    let mut text = String::new();
    for i in 0..count {
        let time = BASE + (i as i64 * 7_919_000) % (hours * HOUR);
        let post = json!({"time": format_iso(time), "username": names[i % 8],
            "post_title": format!("post {i}"), "views": (i * 37) % 20000,
            "upvotes": 50 + i % 40, "comments": i % 20, "edited": if i % 3 == 0 { "True" } else { "False" }});
        text.push_str(&post.to_string());
        text.push('\n');
    }
    text
}

fn spec(datasource: &str, topic: &str, task_count: u32) -> Value {
    json!({"type": "kafka", "spec": {
        "dataSchema": {"dataSource": datasource,
            "timestampSpec": {"column": "time", "format": "iso"},
            "dimensionsSpec": {"dimensions": ["username", "post_title",
                {"type": "long", "name": "views"}, {"type": "long", "name": "upvotes"},
                {"type": "long", "name": "comments"}, "edited"]},
            "granularitySpec": {"queryGranularity": "none", "rollup": false, "segmentGranularity": "hour"}},
        "ioConfig": {"topic": topic, "inputFormat": {"type": "json"}, "useEarliestOffset": true,
            "taskCount": task_count},
        "tuningConfig": {"type": "kafka"}}})
}

#[test]
fn the_seed_flow_with_one_two_and_four_tasks() {
    let server = Running::start();
    let created = server.ok(
        "POST",
        "/topics",
        json!({"name": "social_media", "partitions": 4}),
    );
    assert_eq!(created["created"], json!(true));
    let events = 4000;
    let (status, answer) = server.call(
        "POST",
        "/topics/social_media",
        "text/plain",
        posts(events, 3).as_bytes(),
    );
    assert_eq!(status, 200, "{answer}");
    let described = server.ok("GET", "/topics/social_media", json!(null));
    let per_partition: Vec<u64> = described["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["latest_offset"].as_u64().unwrap())
        .collect();
    assert_eq!(per_partition.iter().sum::<u64>(), events as u64);
    assert!(
        per_partition.iter().all(|n| *n > 0),
        "key-less records spread: {per_partition:?}"
    );

    for task_count in [1u32, 2, 4] {
        let datasource = format!("social_media_{task_count}");
        let answer = server.ok(
            "POST",
            "/druid/indexer/v1/supervisor",
            spec(&datasource, "social_media", task_count),
        );
        assert_eq!(answer, json!({"id": datasource}));
        wait_until("COUNT(*) reaches the events", || {
            server.count(&datasource) == events as i64
        });

        let realtime = server.sql(&format!(
            "SELECT COUNT(*) AS n FROM sys.segments WHERE datasource = '{datasource}' AND is_realtime = 1"
        ));
        assert!(
            realtime[0]["n"].as_i64().unwrap() > 0,
            "rows are served from realtime segments"
        );

        let suspended = server.ok(
            "POST",
            &format!("/druid/indexer/v1/supervisor/{datasource}/suspend"),
            json!(null),
        );
        assert_eq!(suspended["suspended"], json!(true));
        wait_until("the supervisor is suspended", || {
            server.ok(
                "GET",
                &format!("/druid/indexer/v1/supervisor/{datasource}/status"),
                json!(null),
            )["payload"]["state"]
                == json!("SUSPENDED")
        });
        let per_hour = server.sql(&format!(
            "SELECT \"start\", COUNT(*) AS segments, SUM(num_rows) AS num_rows FROM sys.segments \
             WHERE datasource = '{datasource}' AND is_published = 1 GROUP BY \"start\" ORDER BY \"start\""
        ));
        assert_eq!(per_hour.len(), 3, "{per_hour:?}");
        for hour in &per_hour {
            assert_eq!(
                hour["segments"],
                json!(task_count),
                "one segment per task per hour: {hour}"
            );
        }
        let total: i64 = per_hour
            .iter()
            .map(|h| h["num_rows"].as_i64().unwrap())
            .sum();
        assert_eq!(total, events as i64);
        assert_eq!(
            server.count(&datasource),
            events as i64,
            "published rows replace realtime ones"
        );
    }

    // Queries over the published segments.
    let by_user = server.sql(
        "SELECT username, COUNT(*) AS posts FROM social_media_2 GROUP BY username ORDER BY username",
    );
    assert_eq!(by_user.len(), 8);
    assert_eq!(by_user[0], json!({"username": "gus", "posts": events / 8}));
    let hourly = server.sql(
        "SELECT TIME_FLOOR(__time, 'PT1H') AS hour, COUNT(*) AS n FROM social_media_4 \
         WHERE __time >= TIMESTAMP '2025-01-01 01:00:00' GROUP BY 1 ORDER BY 1",
    );
    assert_eq!(hourly.len(), 2);
    assert_eq!(hourly[0]["hour"], json!("2025-01-01T01:00:00.000Z"));
    // Every published segment is on this server, as sys.server_segments says.
    let held = server.sql(
        "SELECT s.datasource, COUNT(*) AS n FROM sys.server_segments AS h \
         JOIN sys.segments AS s ON h.segment_id = s.segment_id \
         WHERE s.is_published = 1 GROUP BY s.datasource ORDER BY s.datasource",
    );
    let published = server.sql(
        "SELECT datasource, COUNT(*) AS n FROM sys.segments WHERE is_published = 1 \
         GROUP BY datasource ORDER BY datasource",
    );
    assert_eq!(held, published);
    assert_eq!(held.len(), 3, "{held:?}");
}

#[test]
fn druid_aggregates_and_floor_to_unit_give_known_answers() {
    let server = Running::with_sixteen_posts();
    // What `posts` made for milton (every 8th post from the 4th): times and views. His
    // earliest post has the most views, so EARLIEST differs from MIN.
    let milton: Vec<(i64, usize)> = (0..16usize)
        .filter(|i| i % 8 == 3)
        .map(|i| ((i as i64 * 7_919_000) % HOUR, (i * 37) % 20000))
        .collect();
    let earliest = milton.iter().min().unwrap();
    let latest = milton.iter().max().unwrap();
    assert!(earliest.1 > latest.1);

    let answer = server.sql(
        "SELECT EARLIEST(views) AS e, LATEST(views) AS l, EARLIEST_BY(post_title, __time) AS eb, \
         LATEST_BY(views, __time) AS lb, ANY_VALUE(username) AS a, \
         CEIL(MIN(__time) TO HOUR) AS c FROM social WHERE username = 'milton'",
    );
    let first_post = (0..16usize)
        .filter(|i| i % 8 == 3)
        .min_by_key(|i| (*i as i64 * 7_919_000) % HOUR)
        .unwrap();
    assert_eq!(
        answer,
        vec![
            json!({"e": earliest.1, "l": latest.1, "eb": format!("post {first_post}"),
            "lb": latest.1, "a": "milton", "c": format_iso(BASE + HOUR)})
        ]
    );
    let answer = server.sql(
        "SELECT FLOOR(__time TO HOUR) AS h, APPROX_COUNT_DISTINCT(username) AS users, \
         COUNT(*) AS n FROM social GROUP BY 1",
    );
    assert_eq!(
        answer,
        vec![json!({"h": format_iso(BASE), "users": 8, "n": 16})]
    );
}

#[test]
fn sql_formats_headers_parameters_and_errors() {
    let server = Running::with_sixteen_posts();

    let query = "SELECT username, COUNT(*) AS n FROM social WHERE username = ? GROUP BY username";
    let parameters = json!([{"type": "VARCHAR", "value": "mia"}]);
    let ask = |format: &str, extra: Value| {
        let mut body = json!({"query": query, "parameters": parameters, "resultFormat": format});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        server.call(
            "POST",
            "/druid/v2/sql",
            "application/json",
            body.to_string().as_bytes(),
        )
    };
    assert_eq!(ask("object", json!({})).1, r#"[{"username":"mia","n":2}]"#);
    assert_eq!(ask("array", json!({})).1, r#"[["mia",2]]"#);
    assert_eq!(
        ask(
            "array",
            json!({"header": true, "typesHeader": true, "sqlTypesHeader": true})
        )
        .1,
        r#"[["username","n"],["STRING","LONG"],["VARCHAR","BIGINT"],["mia",2]]"#
    );
    assert_eq!(
        ask("objectLines", json!({})).1,
        "{\"username\":\"mia\",\"n\":2}\n\n"
    );
    assert_eq!(ask("arrayLines", json!({})).1, "[\"mia\",2]\n\n");
    assert_eq!(
        ask("csv", json!({"header": true})).1,
        "username,n\nmia,2\n\n"
    );

    // The query id header, and Druid's EXPR$ names; text/plain bodies are raw SQL.
    let response = server
        .agent
        .post(format!("{}/druid/v2/sql", server.url))
        .header("Content-Type", "application/json")
        .send(json!({"query": "SELECT COUNT(*), MAX(__time) FROM social", "context": {"sqlQueryId": "q-1"}}).to_string())
        .unwrap();
    assert_eq!(
        response.headers().get("X-Druid-SQL-Query-Id").unwrap(),
        "q-1"
    );
    let (_, plain) = server.call(
        "POST",
        "/druid/v2/sql/", // the trailing slash pydruid sends
        "text/plain",
        b"SELECT COUNT(*) FROM social",
    );
    assert_eq!(plain, r#"[{"EXPR$0":16}]"#);

    // Errors: unknown table, bad syntax, unknown format, wrong content type.
    let (status, error) = server.json(
        "POST",
        "/druid/v2/sql",
        json!({"query": "SELECT 1 FROM \"nope\" LIMIT 1"}),
    );
    assert_eq!(status, 400);
    assert_eq!(error["error"], json!("druidException"));
    assert_eq!(error["errorCode"], json!("invalidInput"));
    assert_eq!(
        error["errorMessage"],
        json!("Object 'nope' not found (line [1], column [16])")
    );
    let (status, error) = server.json("POST", "/druid/v2/sql", json!({"query": "SELEC 1"}));
    assert_eq!((status, &error["category"]), (400, &json!("INVALID_INPUT")));
    // SQL as a task (the multi-stage engine) is refused in Druid's error shape.
    let (status, error) = server.json(
        "POST",
        "/druid/v2/sql/task",
        json!({"query": "INSERT INTO t SELECT 1 PARTITIONED BY ALL"}),
    );
    assert_eq!((status, &error["category"]), (501, &json!("UNSUPPORTED")));
    assert!(
        error["errorMessage"]
            .as_str()
            .unwrap()
            .contains("is not supported"),
        "{error}"
    );
    let (status, _) = server.json(
        "POST",
        "/druid/v2/sql",
        json!({"query": "SELECT 1", "resultFormat": "xml"}),
    );
    assert_eq!(status, 400);
    let (status, _) = server.call(
        "POST",
        "/druid/v2/sql",
        "application/x-www-form-urlencoded",
        b"query=1",
    );
    assert_eq!(status, 415);

    // INFORMATION_SCHEMA and sys tables.
    let columns = server.sql(
        "SELECT COLUMN_NAME, DATA_TYPE FROM INFORMATION_SCHEMA.COLUMNS WHERE TABLE_NAME = 'social' ORDER BY ORDINAL_POSITION LIMIT 3",
    );
    assert_eq!(
        columns,
        vec![
            json!({"COLUMN_NAME": "__time", "DATA_TYPE": "TIMESTAMP"}),
            json!({"COLUMN_NAME": "username", "DATA_TYPE": "VARCHAR"}),
            json!({"COLUMN_NAME": "post_title", "DATA_TYPE": "VARCHAR"}),
        ]
    );
    let supervisors = server.sql("SELECT supervisor_id, state, healthy FROM sys.supervisors");
    assert_eq!(
        supervisors,
        vec![json!({"supervisor_id": "social", "state": "RUNNING", "healthy": 1})]
    );
    let tasks = server.sql("SELECT datasource, status FROM sys.tasks");
    assert_eq!(
        tasks,
        vec![json!({"datasource": "social", "status": "RUNNING"})]
    );
    // The schemas, as SQL clients (Superset through pydruid) list them.
    let schemas = server.sql(
        "SELECT CATALOG_NAME, SCHEMA_NAME FROM INFORMATION_SCHEMA.SCHEMATA ORDER BY SCHEMA_NAME",
    );
    let names: Vec<&Value> = schemas.iter().map(|s| &s["SCHEMA_NAME"]).collect();
    assert_eq!(
        names,
        [&json!("INFORMATION_SCHEMA"), &json!("druid"), &json!("sys")]
    );
    assert!(schemas.iter().all(|s| s["CATALOG_NAME"] == "druid"));
    // One process in every role, at the address it serves on.
    let servers = server.sql("SELECT server, server_type, is_leader FROM sys.servers");
    let port = server.url.rsplit(':').next().unwrap();
    assert_eq!(servers.len(), 5, "{servers:?}");
    assert!(
        servers
            .iter()
            .all(|s| s["server"].as_str().unwrap().ends_with(&format!(":{port}")))
    );
    assert!(servers.contains(
        &json!({"server": servers[0]["server"], "server_type": "historical", "is_leader": null})
    ));
    assert!(servers.contains(
        &json!({"server": servers[0]["server"], "server_type": "coordinator", "is_leader": 1})
    ));
}

#[test]
fn supervisor_task_and_coordinator_endpoints() {
    let server = Running::start();
    server.topic_with_lines("posts", 2, &posts(400, 2));
    // Key-less lines go to partitions in 16 KiB runs, so both partitions get rows of both hours.
    let base = "/druid/indexer/v1/supervisor";

    // Bad specs: 400 with the JSON path; not JSON: 415; nothing replaced.
    let mut bad = spec("social", "posts", 1);
    bad["spec"]["ioConfig"]["taskCount"] = json!("two");
    let (status, error) = server.json("POST", base, bad);
    assert_eq!(status, 400);
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("spec.ioConfig.taskCount"),
        "{error}"
    );
    let (status, _) = server.call("POST", base, "text/plain", b"{}");
    assert_eq!(status, 415);
    assert_eq!(server.ok("GET", base, json!(null)), json!([]));

    server.ok("POST", base, spec("social", "posts", 2));
    wait_until("rows arrive", || server.count("social") == 400);
    assert_eq!(server.ok("GET", base, json!(null)), json!(["social"]));
    let full = server.ok("GET", &format!("{base}?full"), json!(null));
    assert_eq!(full[0]["state"], json!("RUNNING"));
    assert_eq!(full[0]["spec"]["spec"]["ioConfig"]["taskCount"], json!(2));
    assert_eq!(
        server.ok("GET", &format!("{base}/social/health"), json!(null)),
        json!({"healthy": true})
    );
    let status = server.ok("GET", &format!("{base}/social/status"), json!(null));
    assert_eq!(
        status["payload"]["activeTasks"].as_array().unwrap().len(),
        2
    );
    assert_eq!(status["payload"]["aggregateLag"], json!(0));
    let stats = server.ok("GET", &format!("{base}/social/stats"), json!(null));
    let processed: u64 = stats
        .as_object()
        .unwrap()
        .values()
        .flat_map(|g| g.as_object().unwrap().values())
        .map(|t| t["totals"]["buildSegments"]["processed"].as_u64().unwrap())
        .sum();
    assert_eq!(processed, 400);
    let (status, error) = server.json("GET", &format!("{base}/nope/status"), json!(null));
    assert_eq!((status, error["error"].is_string()), (404, true));

    // Tasks.
    let running = server.ok(
        "GET",
        "/druid/indexer/v1/tasks?state=running&datasource=social",
        json!(null),
    );
    assert_eq!(running.as_array().unwrap().len(), 2);
    let task_id = running[0]["id"].as_str().unwrap().to_string();
    assert!(task_id.starts_with("index_kafka_social_"));
    let task = server.ok(
        "GET",
        &format!("/druid/indexer/v1/task/{task_id}/status"),
        json!(null),
    );
    assert_eq!(task["status"]["statusCode"], json!("RUNNING"));
    let (status, _) = server.json("GET", "/druid/indexer/v1/tasks?state=sleeping", json!(null));
    assert_eq!(status, 400);
    let (status, _) = server.json("GET", "/druid/indexer/v1/task/nope/status", json!(null));
    assert_eq!(status, 404);

    // Terminate publishes; the coordinator then shows the datasource's segments.
    assert_eq!(
        server.ok("POST", &format!("{base}/social/terminate"), json!(null)),
        json!({"id": "social"})
    );
    assert_eq!(server.ok("GET", base, json!(null)), json!([]));
    let complete = server.ok("GET", "/druid/indexer/v1/tasks?state=complete", json!(null));
    let statuses: Vec<&Value> = complete
        .as_array()
        .unwrap()
        .iter()
        .map(|t| &t["statusCode"])
        .collect();
    assert_eq!(statuses, vec!["SUCCESS", "SUCCESS"], "both tasks published");
    let coordinator = "/druid/coordinator/v1/datasources";
    assert_eq!(
        server.ok("GET", coordinator, json!(null)),
        json!(["social"])
    );
    let segments = server.ok(
        "GET",
        &format!("{coordinator}/social/segments"),
        json!(null),
    );
    assert_eq!(segments.as_array().unwrap().len(), 4, "2 tasks x 2 hours");
    assert_eq!(
        server.ok(
            "GET",
            &format!("{coordinator}/social/loadstatus"),
            json!(null)
        ),
        json!({"social": 100.0})
    );
    let metadata = server.ok(
        "GET",
        "/druid/coordinator/v1/metadata/segments?datasources=social",
        json!(null),
    );
    assert_eq!(metadata[0]["shardSpec"]["type"], json!("numbered"));

    // Marking unused hides rows; marking used brings them back; kill deletes unused ones.
    let unused = server.ok(
        "POST",
        &format!("{coordinator}/social/markUnused"),
        json!({"interval": "2025-01-01T00:00:00Z/2025-01-01T01:00:00Z"}),
    );
    assert_eq!(unused, json!({"numChangedSegments": 2}));
    let remaining = server.count("social");
    assert!(remaining > 0 && remaining < 400, "{remaining}");
    server.ok(
        "POST",
        &format!("{coordinator}/social/markUsed"),
        json!({"interval": "2025-01-01T00:00:00Z/2025-01-01T01:00:00Z"}),
    );
    assert_eq!(server.count("social"), 400);
    assert_eq!(
        server.ok("DELETE", &format!("{coordinator}/social"), json!(null)),
        json!({"numChangedSegments": 4})
    );
    assert_eq!(
        server.count("social"),
        -1,
        "no used segments: the table is gone"
    );
    let kill = server.ok("POST", "/druid/indexer/v1/task",
        json!({"type": "kill", "dataSource": "social", "interval": "2025-01-01T00:00:00Z/2025-01-02T00:00:00Z"}));
    assert!(kill["task"].is_string());
    let files = std::fs::read_dir(server._dir.path().join("segments/social"))
        .unwrap()
        .count();
    assert_eq!(files, 0, "kill deletes the segment files");
    assert_eq!(
        server.ok(
            "GET",
            &format!("{coordinator}/social/segments"),
            json!(null)
        ),
        json!([])
    );

    assert_eq!(server.ok("GET", "/status/health", json!(null)), json!(true));
    assert!(server.ok("GET", "/status", json!(null))["version"].is_string());
    // Runtime properties, under Druid's names, as the server runs.
    let properties = server.ok("GET", "/status/properties", json!(null));
    let port = server.url.rsplit(':').next().unwrap();
    assert_eq!(properties["druid.plaintextPort"], json!(port));
    assert_eq!(properties["druid.enableTlsPort"], json!("false"));
}

#[test]
fn reset_offsets_task_shutdown_bulk_actions_and_the_body_limit() {
    let server = Running::start();
    server.topic_with_lines("posts", 2, &posts(400, 1));
    let described = server.ok("GET", "/topics/posts", json!(null));
    let in_partition_0 = described["partitions"][0]["latest_offset"]
        .as_i64()
        .unwrap();
    assert!(in_partition_0 > 0 && in_partition_0 < 400);
    let base = "/druid/indexer/v1/supervisor";
    server.ok("POST", base, spec("a", "posts", 1));
    server.ok("POST", base, spec("b", "posts", 2));
    wait_until("both ingested", || {
        server.count("a") == 400 && server.count("b") == 400
    });

    // suspendAll: every supervisor publishes and stops.
    let success = json!({"status": "success"});
    assert_eq!(
        server.ok("POST", &format!("{base}/suspendAll"), json!(null)),
        success
    );
    let states = || server.ok("GET", &format!("{base}?state=true"), json!(null));
    wait_until("both suspended", || {
        let states = states();
        let states = states.as_array().unwrap();
        states.len() == 2 && states.iter().all(|s| s["state"] == json!("SUSPENDED"))
    });

    // reset forgets a's offsets: resumed, it reads the topic again from the earliest offset.
    assert_eq!(
        server.ok("POST", &format!("{base}/a/reset"), json!(null)),
        json!({"id": "a"})
    );
    // resetOffsets moves b's partition 0 back to 0 and keeps partition 1 where it was.
    let offsets = json!({"type": "kafka", "partitions": {"type": "end", "stream": "posts",
        "partitionOffsetMap": {"0": 0}}});
    assert_eq!(
        server.ok("POST", &format!("{base}/b/resetOffsets"), offsets),
        json!({"id": "b"})
    );
    let (status, _) = server.json(
        "POST",
        &format!("{base}/b/resetOffsets"),
        json!({"type": "kafka"}),
    );
    assert_eq!(status, 400);
    let other_stream = json!({"type": "kafka", "partitions": {"type": "end", "stream": "other",
        "partitionOffsetMap": {"0": 0}}});
    let (status, error) = server.json("POST", &format!("{base}/b/resetOffsets"), other_stream);
    assert_eq!(status, 400, "{error}");
    assert_eq!(
        server.ok("POST", &format!("{base}/resumeAll"), json!(null)),
        success
    );
    wait_until("a read everything again", || server.count("a") == 800);
    wait_until("b read partition 0 again", || {
        server.count("b") == 400 + in_partition_0
    });

    // A task shut down ends without publishing; the next task reads its records again.
    let running = server.ok(
        "GET",
        "/druid/indexer/v1/tasks?state=running&datasource=a",
        json!(null),
    );
    let task = running[0]["id"].as_str().unwrap().to_string();
    assert_eq!(
        server.ok(
            "POST",
            &format!("/druid/indexer/v1/task/{task}/shutdown"),
            json!(null)
        ),
        json!({"task": task})
    );
    wait_until("the task ended", || {
        server.ok(
            "GET",
            &format!("/druid/indexer/v1/task/{task}/status"),
            json!(null),
        )["status"]["statusCode"]
            == json!("FAILED")
    });
    let reports = server.ok(
        "GET",
        &format!("/druid/indexer/v1/task/{task}/reports"),
        json!(null),
    );
    let payload = &reports["ingestionStatsAndErrors"]["payload"];
    assert_eq!(payload["ingestionState"], json!("COMPLETED"));
    assert_eq!(
        payload["rowStats"]["buildSegments"]["processed"],
        json!(400)
    );
    wait_until("a's next task read the records again", || {
        server.count("a") == 800
    });
    let (status, _) = server.json(
        "POST",
        &format!("/druid/indexer/v1/task/{task}/shutdown"),
        json!(null),
    );
    assert_eq!(status, 400, "not running any more");

    // terminateAll publishes and removes every supervisor.
    assert_eq!(
        server.ok("POST", &format!("{base}/terminateAll"), json!(null)),
        success
    );
    assert_eq!(server.ok("GET", base, json!(null)), json!([]));
    assert_eq!(server.count("a"), 800);

    let (status, _) = server.json(
        "POST",
        "/topics",
        json!({"name": "huge", "partitions": 4_000_000_000u32}),
    );
    assert_eq!(status, 400, "partition counts are capped");

    // Bodies above the limit are refused; the server keeps serving. Announced by their length
    // (a client streaming the whole body may see the connection close before the answer).
    let address = server.url.trim_start_matches("http://");
    let request = format!(
        "POST /topics/posts HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n\
         Content-Length: {}\r\n\r\nxxxx",
        millrace_server::MAX_BODY_BYTES + 1
    );
    let answer = raw_exchange(address, request.as_bytes(), Duration::from_secs(10));
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    let answer = raw_body(&answer);
    assert!(
        answer["error"].as_str().unwrap().contains("length limit"),
        "{answer}"
    );
    assert_eq!(server.count("b"), 400 + in_partition_0);
}

/// Sends raw bytes on a new connection and reads until the server closes it or `wait` passes.
fn raw_exchange(address: &str, request: &[u8], wait: Duration) -> String {
    raw_exchange_until_closed(address, request, wait).0
}

/// Like [`raw_exchange`], and also whether the server closed the connection within `wait`.
fn raw_exchange_until_closed(address: &str, request: &[u8], wait: Duration) -> (String, bool) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(wait)).unwrap();
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    let closed = stream.read_to_end(&mut answer).is_ok();
    (String::from_utf8_lossy(&answer).into_owned(), closed)
}

/// The JSON body of a raw HTTP answer.
fn raw_body(answer: &str) -> Value {
    let (_, body) = answer
        .split_once("\r\n\r\n")
        .expect("an answer with a body");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer}"))
}

#[test]
fn every_error_answer_is_json() {
    let server = Running::start();
    server.ok("POST", "/topics", json!({"name": "t", "partitions": 1}));
    let (status, answer) = server.json("GET", "/topics/t/partitions/-1/messages", json!(null));
    assert_eq!(status, 400);
    assert_eq!(
        answer,
        json!({"error": "partition must be a whole number of at least 0, not '-1'"})
    );
    let (status, answer) = server.json("GET", "/no/such/path", json!(null));
    assert_eq!(status, 404);
    assert_eq!(answer, json!({"error": "Not Found: GET /no/such/path"}));
    let (status, answer) = server.json("DELETE", "/druid/v2/sql", json!(null));
    assert_eq!(status, 405);
    assert_eq!(answer["error"], json!("druidException"), "{answer}");
    assert_eq!(
        answer["errorMessage"],
        json!("Method Not Allowed: DELETE /druid/v2/sql")
    );
    let (status, answer) = server.call("POST", "/druid/v2/sql", "application/json", b"{nope");
    assert_eq!(status, 400);
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["errorCode"], json!("invalidInput"), "{answer}");

    // hyper's own answers to requests it cannot read get JSON bodies too.
    let address = server.url.trim_start_matches("http://");
    let long_path = format!("/{}", "a".repeat(100_000));
    let answer = raw_exchange(
        address,
        format!("GET {long_path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
        Duration::from_secs(10),
    );
    assert!(answer.starts_with("HTTP/1.1 414 "), "{answer}");
    assert_eq!(
        raw_body(&answer),
        json!({"error": "URI Too Long: the request line or headers could not be read"})
    );
    let answer = raw_exchange(address, b"NOT HTTP\r\n\r\n", Duration::from_secs(10));
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    assert!(raw_body(&answer)["error"].is_string());
    assert_eq!(server.ok("GET", "/status/health", json!(null)), json!(true));
}

#[test]
fn stalled_clients_are_cut_off_and_connections_are_bounded() {
    use std::io::{Read, Write};
    let limits = millrace_server::ConnectionLimits {
        max_connections: 2,
        header_timeout: Duration::from_secs(1),
        body_timeout: Duration::from_secs(1),
        shutdown_grace: Duration::from_secs(1),
    };
    let server = Running::start_with(
        tempfile::tempdir().unwrap(),
        ServeOptions {
            limits,
            ..ServeOptions::default()
        },
        ureq::Agent::config_builder(),
    );
    let address = server.url.trim_start_matches("http://").to_string();
    // Raw connections that close after each answer: a pooled one would hold a slot.
    let body = json!({"name": "t", "partitions": 1}).to_string();
    let created = raw_exchange(
        &address,
        format!(
            "POST /topics HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
        Duration::from_secs(20),
    );
    assert!(created.starts_with("HTTP/1.1 200"), "{created}");

    // A body that never arrives: answered once the body timeout passes, in JSON.
    let answer = raw_exchange(
        &address,
        b"POST /topics/t HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 1000000\r\n\r\npartial",
        Duration::from_secs(20),
    );
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    assert!(
        raw_body(&answer)["error"]
            .as_str()
            .unwrap()
            .contains("body"),
        "{answer}"
    );
    // Headers that never end: the connection is closed (hyper sends no answer then).
    let (cut, closed) = raw_exchange_until_closed(
        &address,
        b"GET /topics HTTP/1.1\r\nHost:",
        Duration::from_secs(20),
    );
    assert!(closed, "the header timeout closes the connection");
    assert!(!cut.starts_with("HTTP/1.1 200"), "{cut}");

    // Two connections hold both slots: a third waits until one of them goes.
    let mut first = std::net::TcpStream::connect(&address).unwrap();
    let mut second = std::net::TcpStream::connect(&address).unwrap();
    first
        .write_all(b"GET /status/health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    second
        .write_all(b"GET /status/health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buffer = [0u8; 512];
    first
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    second
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    assert!(first.read(&mut buffer).unwrap() > 0);
    assert!(second.read(&mut buffer).unwrap() > 0);
    let mut third = std::net::TcpStream::connect(&address).unwrap();
    third
        .write_all(b"GET /status/health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    third
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(
        third.read(&mut buffer).is_err(),
        "no third connection is served while two are open"
    );
    drop(first);
    third
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let n = third.read(&mut buffer).unwrap();
    assert!(
        String::from_utf8_lossy(&buffer[..n]).starts_with("HTTP/1.1 200"),
        "served once a slot is free"
    );
}

/// A self-signed certificate for 127.0.0.1 and localhost: (certificate PEM, key PEM).
fn self_signed() -> (String, String) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    (certified.cert.pem(), certified.signing_key.serialize_pem())
}

#[test]
fn basic_authentication_roles_and_tls() {
    use millrace_server::auth::{Authenticator, Role, UsersFile};
    let dir = tempfile::tempdir().unwrap();
    let users_file = dir.path().join("users.json");
    let mut users = UsersFile::default();
    users.set_user("admin", "admin-pw", Role::Admin).unwrap();
    users.set_user("reader", "reader-pw", Role::Read).unwrap();
    users.save(&users_file).unwrap();
    let (cert, key) = self_signed();
    std::fs::write(dir.path().join("cert.pem"), &cert).unwrap();
    std::fs::write(dir.path().join("key.pem"), &key).unwrap();
    let tls =
        millrace_server::tls::acceptor(&dir.path().join("cert.pem"), &dir.path().join("key.pem"))
            .unwrap();
    let options = ServeOptions {
        tls: Some(tls),
        auth: Some(std::sync::Arc::new(
            Authenticator::open(&users_file).unwrap(),
        )),
        ..ServeOptions::default()
    };
    let root = ureq::tls::Certificate::from_pem(cert.as_bytes()).unwrap();
    let agent = ureq::Agent::config_builder().tls_config(
        ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::Specific(std::sync::Arc::new(vec![
                root,
            ])))
            .build(),
    );
    let server = Running::start_with(dir, options, agent);
    assert!(server.url.starts_with("https://127.0.0.1:"));
    let as_user = |user: Option<(&str, &str)>, method: &str, path: &str, body: Value| {
        let url = format!("{}{path}", server.url);
        let authorization = user.map(|(name, password)| {
            use base64::Engine;
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{name}:{password}"))
            )
        });
        let mut response = match method {
            "GET" => {
                let request = server.agent.get(&url);
                match &authorization {
                    Some(a) => request.header("Authorization", a).call(),
                    None => request.call(),
                }
            }
            _ => {
                let request = server
                    .agent
                    .post(&url)
                    .header("Content-Type", "application/json");
                match &authorization {
                    Some(a) => request.header("Authorization", a).send(body.to_string()),
                    None => request.send(body.to_string()),
                }
            }
        }
        .unwrap();
        let status = response.status().as_u16();
        let challenge = response.headers().get("www-authenticate").is_some();
        let text = response.body_mut().read_to_string().unwrap();
        (
            status,
            serde_json::from_str::<Value>(&text).unwrap(),
            challenge,
        )
    };
    let admin = Some(("admin", "admin-pw"));
    let reader = Some(("reader", "reader-pw"));
    let sql = json!({"query": "SELECT 1 AS one"});

    let (status, answer, challenge) =
        as_user(None, "GET", "/druid/indexer/v1/supervisor", json!(null));
    assert_eq!((status, challenge), (401, true), "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .starts_with("Unauthorized")
    );
    let (status, answer, _) = as_user(
        Some(("admin", "wrong")),
        "POST",
        "/druid/v2/sql",
        sql.clone(),
    );
    assert_eq!(status, 401);
    assert_eq!(
        answer["errorCode"],
        json!("unauthorized"),
        "SQL errors keep Druid's SQL shape"
    );
    let (status, _, _) = as_user(None, "GET", "/status/health", json!(null));
    assert_eq!(status, 200, "health is open to load balancers");

    let (status, answer, _) = as_user(reader, "POST", "/druid/v2/sql", sql.clone());
    assert_eq!((status, answer), (200, json!([{"one": 1}])));
    let (status, _, _) = as_user(reader, "GET", "/druid/indexer/v1/supervisor", json!(null));
    assert_eq!(status, 200);
    let (status, answer, _) = as_user(
        reader,
        "POST",
        "/topics",
        json!({"name": "t", "partitions": 1}),
    );
    assert_eq!(status, 403);
    assert_eq!(
        answer["error"],
        json!("Forbidden: user 'reader' has the read role, which may not POST /topics")
    );
    let (status, answer, _) = as_user(
        admin,
        "POST",
        "/topics",
        json!({"name": "t", "partitions": 1}),
    );
    assert_eq!((status, answer["created"].clone()), (200, json!(true)));

    // The users file is read again when it changes.
    let mut users = UsersFile::load(&server._dir.path().join("users.json"))
        .unwrap()
        .unwrap();
    users.set_user("late", "late-pw", Role::Admin).unwrap();
    users.users.remove("reader");
    users.save(&server._dir.path().join("users.json")).unwrap();
    wait_until("the new user signs in", || {
        as_user(Some(("late", "late-pw")), "GET", "/topics", json!(null)).0 == 200
    });
    assert_eq!(as_user(reader, "GET", "/topics", json!(null)).0, 401);

    // A client that does not speak TLS is turned away; the server keeps serving.
    let plain = raw_exchange(
        server.url.trim_start_matches("https://"),
        b"GET /status/health HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(10),
    );
    assert!(!plain.contains("200 OK"), "{plain}");
    assert_eq!(as_user(admin, "GET", "/topics", json!(null)).0, 200);
}

#[test]
fn supervisors_read_a_kafka_cluster_named_in_their_spec() {
    use millrace_kafka::test_broker::TestBroker;
    use millrace_kafka::{KafkaLog, KafkaSettings};
    use millrace_log::{Log, Record};

    let broker = TestBroker::start();
    let servers = broker.bootstrap_servers();
    // One record per batch: tansu 0.6.0 answers a fetch from inside a batch with the batches
    // after it.
    let cluster = KafkaLog::connect(KafkaSettings::new(vec![
        ("bootstrap.servers".into(), servers.clone()),
        ("producer.batch.num.messages".into(), "1".into()),
    ]))
    .unwrap();
    cluster.create_topic("social_media", 4).unwrap();
    let events = 1000;
    let lines = posts(events, 3);
    let mut partitions: Vec<Vec<Record>> = vec![Vec::new(); 4];
    for (i, line) in lines.lines().enumerate() {
        partitions[i % 4].push(Record {
            value: Some(bytes::Bytes::copy_from_slice(line.as_bytes())),
            timestamp: BASE,
            ..Record::default()
        });
    }
    for (partition, records) in partitions.into_iter().enumerate() {
        cluster
            .append("social_media", partition as u32, records)
            .unwrap();
    }

    let server = Running::start();
    for task_count in [1u32, 2, 4] {
        let datasource = format!("social_media_{task_count}");
        let mut kafka_spec = spec(&datasource, "social_media", task_count);
        kafka_spec["spec"]["ioConfig"]["consumerProperties"] =
            json!({"bootstrap.servers": servers});
        let answer = server.ok("POST", "/druid/indexer/v1/supervisor", kafka_spec);
        assert_eq!(answer, json!({"id": datasource}));
        wait_until("COUNT(*) reaches the events", || {
            server.count(&datasource) == events as i64
        });
    }
    // The server's own log never got the topic.
    let topics = server.ok("GET", "/topics", json!(null));
    assert!(!topics.to_string().contains("social_media"), "{topics}");
}
