//! Native queries at `/druid/v2`, each checked against the same question asked in SQL (or
//! worked out from the posts directly): timeseries with zero-filled buckets, topN, groupBy
//! with having and limit specs, scan, timeBoundary, segmentMetadata, dataSourceMetadata, the
//! request forms pydruid sends, and errors.

use serde_json::{Value, json};

use super::{BASE, HOUR, Running};

const NAMES: [&str; 4] = ["ann", "bob", "cy", "dee"];

/// 40 posts in hours 0 and 2 (none in hour 1): post i by NAMES[i % 4] with i * 10 views.
fn gapped_posts() -> String {
    (0..40i64)
        .map(|i| {
            let hour = if i < 24 { 0 } else { 2 };
            let time = BASE + hour * HOUR + i * 60_000;
            json!({"time": millrace_segments::time::format_iso(time), "username": NAMES[i as usize % 4],
                   "post_title": format!("p{i}"), "views": i * 10, "upvotes": 1, "comments": 0, "edited": "False"})
            .to_string()
                + "\n"
        })
        .collect()
}

fn server_with_gapped_posts() -> Running {
    Running::with_lines("posts", &gapped_posts(), 40)
}

fn native(server: &Running, query: Value) -> Value {
    server.ok("POST", "/druid/v2", query)
}

const DAY: &str = "2025-01-01T00:00:00.000Z/2025-01-02T00:00:00.000Z";

#[test]
fn timeseries_fills_empty_buckets_and_matches_sql() {
    let server = server_with_gapped_posts();
    let query = json!({"queryType": "timeseries", "dataSource": "posts", "intervals": [DAY], "granularity": "hour",
        "aggregations": [{"type": "count", "name": "n"}, {"type": "longSum", "name": "views", "fieldName": "views"}],
        "postAggregations": [{"type": "arithmetic", "name": "avg", "fn": "/",
            "fields": [{"type": "fieldAccess", "fieldName": "views"}, {"type": "fieldAccess", "fieldName": "n"}]}]});
    let answer = native(&server, query.clone());
    let sql = server.sql("SELECT TIME_FLOOR(__time, 'PT1H') AS t, COUNT(*) AS n, SUM(views) AS v FROM posts GROUP BY 1 ORDER BY 1");
    assert_eq!(sql.len(), 2);
    let expected: Vec<Value> = vec![
        json!({"timestamp": sql[0]["t"], "result": {"n": sql[0]["n"], "views": sql[0]["v"],
            "avg": sql[0]["v"].as_f64().unwrap() / sql[0]["n"].as_f64().unwrap()}}),
        json!({"timestamp": "2025-01-01T01:00:00.000Z", "result": {"n": 0, "views": null, "avg": null}}),
        json!({"timestamp": sql[1]["t"], "result": {"n": sql[1]["n"], "views": sql[1]["v"],
            "avg": sql[1]["v"].as_f64().unwrap() / sql[1]["n"].as_f64().unwrap()}}),
    ];
    assert_eq!(answer, json!(expected));

    let mut skipping = query.clone();
    skipping["context"] = json!({"skipEmptyBuckets": true});
    skipping["descending"] = json!(true);
    let answer = native(&server, skipping);
    assert_eq!(answer.as_array().unwrap().len(), 2);
    assert_eq!(answer[0]["timestamp"], sql[1]["t"], "descending");

    let mut total = query.clone();
    total["granularity"] = json!("all");
    total["filter"] = json!({"type": "selector", "dimension": "username", "value": "bob"});
    total["context"] = json!({"grandTotal": true});
    let answer = native(&server, total);
    let bob = server.sql("SELECT COUNT(*) AS n, SUM(views) AS v FROM posts WHERE username = 'bob'");
    assert_eq!(answer[0]["timestamp"], json!("2025-01-01T00:00:00.000Z"));
    assert_eq!(answer[0]["result"]["n"], bob[0]["n"]);
    assert_eq!(answer[0]["result"]["views"], bob[0]["v"]);
    assert_eq!(
        answer[1]["timestamp"],
        Value::Null,
        "the grand total comes last"
    );
}

#[test]
fn top_n_and_group_by_order_limit_and_filter_as_sql_does() {
    let server = server_with_gapped_posts();
    let top = native(
        &server,
        json!({"queryType": "topN", "dataSource": "posts", "intervals": [DAY],
        "granularity": "all", "dimension": "username", "threshold": 2, "metric": "views",
        "aggregations": [{"type": "longSum", "name": "views", "fieldName": "views"}]}),
    );
    let sql = server
        .sql("SELECT username, SUM(views) AS views FROM posts GROUP BY 1 ORDER BY 2 DESC LIMIT 2");
    assert_eq!(
        top,
        json!([{"timestamp": "2025-01-01T00:00:00.000Z", "result": sql}])
    );
    let by_name = native(
        &server,
        json!({"queryType": "topN", "dataSource": "posts", "intervals": [DAY],
        "granularity": "all", "dimension": {"type": "default", "dimension": "username", "outputName": "who"},
        "threshold": 2, "metric": {"type": "inverted", "metric": {"type": "dimension", "ordering": "lexicographic"}},
        "aggregations": [{"type": "count", "name": "n"}]}),
    );
    let names: Vec<&str> = by_name[0]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["who"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["dee", "cy"]);

    let grouped = native(
        &server,
        json!({"queryType": "groupBy", "dataSource": "posts", "intervals": [DAY],
        "granularity": "all", "dimensions": ["username"],
        "filter": {"type": "not", "field": {"type": "in", "dimension": "username", "values": ["ann"]}},
        "aggregations": [{"type": "count", "name": "n"}, {"type": "longMax", "name": "most", "fieldName": "views"}],
        "having": {"type": "greaterThan", "aggregation": "most", "value": 370},
        "limitSpec": {"type": "default", "limit": 5, "columns": [{"dimension": "most", "direction": "descending", "dimensionOrder": "numeric"}]}}),
    );
    let sql = server.sql(
        "SELECT username, COUNT(*) AS n, MAX(views) AS most FROM posts WHERE username <> 'ann' \
        GROUP BY 1 HAVING MAX(views) > 370 ORDER BY 3 DESC LIMIT 5",
    );
    let expected: Vec<Value> = sql
        .into_iter()
        .map(|row| json!({"version": "v1", "timestamp": "2025-01-01T00:00:00.000Z", "event": row}))
        .collect();
    assert_eq!(grouped, json!(expected));
    assert_eq!(grouped.as_array().unwrap().len(), 2);

    let hourly = native(
        &server,
        json!({"queryType": "groupBy", "dataSource": "posts", "intervals": [DAY],
        "granularity": "hour", "dimensions": [], "aggregations": [{"type": "count", "name": "n"}]}),
    );
    assert_eq!(
        hourly,
        json!([
            {"version": "v1", "timestamp": "2025-01-01T00:00:00.000Z", "event": {"n": 24}},
            {"version": "v1", "timestamp": "2025-01-01T02:00:00.000Z", "event": {"n": 16}},
        ]),
        "groupBy leaves empty buckets out"
    );
}

#[test]
fn scan_boundaries_and_metadata() {
    let server = server_with_gapped_posts();
    let scanned = native(
        &server,
        json!({"queryType": "scan", "dataSource": "posts", "intervals": [DAY],
        "columns": ["__time", "username", "views", "nothing"], "order": "descending", "limit": 3, "batchSize": 2}),
    );
    let events: Vec<&Value> = scanned
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| b["events"].as_array().unwrap())
        .collect();
    assert_eq!(scanned.as_array().unwrap().len(), 2, "batches of 2");
    assert_eq!(
        events[0],
        &json!({"__time": BASE + 2 * HOUR + 39 * 60_000, "username": "dee", "views": 390, "nothing": null})
    );
    assert_eq!(events.len(), 3);
    let compact = native(
        &server,
        json!({"queryType": "scan", "dataSource": "posts", "intervals": [DAY],
        "columns": ["username", "views"], "resultFormat": "compactedList", "filter": {"type": "bound",
        "dimension": "views", "lower": "100", "upper": "120", "ordering": "numeric"}}),
    );
    assert_eq!(compact[0]["columns"], json!(["username", "views"]));
    let mut rows = compact[0]["events"].as_array().unwrap().clone();
    rows.sort_by_key(|r| r[1].as_i64());
    assert_eq!(
        rows,
        vec![json!(["cy", 100]), json!(["dee", 110]), json!(["ann", 120])]
    );

    let boundary = native(
        &server,
        json!({"queryType": "timeBoundary", "dataSource": "posts"}),
    );
    assert_eq!(
        boundary,
        json!([{"timestamp": "2025-01-01T00:00:00.000Z",
        "result": {"minTime": "2025-01-01T00:00:00.000Z", "maxTime": "2025-01-01T02:39:00.000Z"}}])
    );
    let latest = native(
        &server,
        json!({"queryType": "timeBoundary", "dataSource": "posts", "bound": "maxTime"}),
    );
    assert_eq!(
        latest,
        json!([{"timestamp": "2025-01-01T02:39:00.000Z", "result": {"maxTime": "2025-01-01T02:39:00.000Z"}}])
    );
    let metadata = native(
        &server,
        json!({"queryType": "dataSourceMetadata", "dataSource": "posts"}),
    );
    assert_eq!(
        metadata[0]["result"]["maxIngestedEventTime"],
        json!("2025-01-01T02:39:00.000Z")
    );

    let segments = native(
        &server,
        json!({"queryType": "segmentMetadata", "dataSource": "posts", "merge": true,
        "analysisTypes": ["cardinality", "minmax", "interval"]}),
    );
    assert_eq!(segments[0]["id"], "merged");
    assert_eq!(segments[0]["numRows"], 40);
    let columns = &segments[0]["columns"];
    assert_eq!(columns["username"]["type"], "STRING");
    assert_eq!(columns["username"]["cardinality"], 4);
    assert_eq!(
        (
            &columns["username"]["minValue"],
            &columns["username"]["maxValue"]
        ),
        (&json!("ann"), &json!("dee"))
    );
    assert_eq!(columns["views"]["type"], "LONG");
    assert_eq!(columns["__time"]["type"], "LONG");
    let per_segment = native(
        &server,
        json!({"queryType": "segmentMetadata", "dataSource": "posts", "intervals": [DAY]}),
    );
    let rows: i64 = per_segment
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["numRows"].as_i64().unwrap())
        .sum();
    assert_eq!(rows, 40);
}

/// What pydruid's client sends: intervals as one string with a lowercase period, count with
/// a fieldName, a filtered aggregator named inside, fieldAccess without a name, bound with
/// alphaNumeric and a null bound, scan with granularity and metrics.
#[test]
fn pydruids_request_forms_and_errors() {
    let server = server_with_gapped_posts();
    let answer = native(
        &server,
        json!({"queryType": "timeseries", "dataSource": "posts", "granularity": "day",
        "intervals": "2025-01-01/p1d",
        "aggregations": [{"type": "count", "fieldName": "count", "name": "n"},
            {"type": "filtered", "filter": {"type": "selector", "dimension": "username", "value": "cy"},
             "aggregator": {"type": "doubleSum", "fieldName": "views", "name": "cy_views"}}],
        "postAggregations": [{"type": "arithmetic", "name": "share", "fn": "/",
            "fields": [{"type": "fieldAccess", "fieldName": "cy_views"}, {"type": "fieldAccess", "fieldName": "n"}]}],
        "filter": {"type": "bound", "dimension": "username", "lower": null, "lowerStrict": false,
                   "upper": "cy", "upperStrict": false, "alphaNumeric": false, "ordering": "lexicographic"}}),
    );
    let cy = server.sql("SELECT SUM(views) AS v FROM posts WHERE username = 'cy'")[0]["v"]
        .as_f64()
        .unwrap();
    assert_eq!(
        answer,
        json!([{"timestamp": "2025-01-01T00:00:00.000Z",
        "result": {"n": 30, "cy_views": cy, "share": cy / 30.0}}])
    );
    // Druid's year-only intervals, and an empty `and` (every row).
    let all_time = native(
        &server,
        json!({"queryType": "timeseries", "dataSource": "posts", "granularity": "all",
            "intervals": ["1000/3000"], "filter": {"type": "and", "fields": []},
            "aggregations": [{"type": "count", "name": "n"}]}),
    );
    assert_eq!(all_time[0]["result"]["n"], 40);
    let none = native(
        &server,
        json!({"queryType": "segmentMetadata", "dataSource": "posts", "toInclude": {"type": "none"}}),
    );
    assert!(
        none.as_array()
            .unwrap()
            .iter()
            .all(|s| s["columns"] == json!({})),
        "{none}"
    );
    let scanned = native(
        &server,
        json!({"queryType": "scan", "dataSource": "posts", "granularity": "all",
        "intervals": DAY, "columns": ["username"], "metrics": [], "limit": 2}),
    );
    assert_eq!(scanned[0]["events"].as_array().unwrap().len(), 2);

    let (status, error) = server.call("POST", "/druid/v2", "application/json", b"{not json");
    assert_eq!(status, 400);
    assert!(error.contains("Json parse failed"), "{error}");
    let (status, error) = server.json(
        "POST",
        "/druid/v2/",
        json!({"queryType": "search", "dataSource": "posts"}),
    );
    assert_eq!(status, 400);
    assert!(
        error["errorMessage"]
            .as_str()
            .unwrap()
            .contains("queryType 'search' is not supported"),
        "{error}"
    );
    assert_eq!(error["errorClass"], "org.apache.druid.error.DruidException");
    let (status, error) = server.json(
        "POST",
        "/druid/v2",
        json!({"queryType": "timeseries", "dataSource": "posts"}),
    );
    assert_eq!(
        (status, &error["errorMessage"]),
        (400, &json!("'intervals' is required"))
    );
    assert_eq!(
        native(
            &server,
            json!({"queryType": "topN", "dataSource": "nothing", "intervals": [DAY],
        "dimension": "x", "threshold": 1, "metric": "n", "aggregations": [{"type": "count", "name": "n"}]})
        ),
        json!([])
    );
    assert_eq!(
        server.ok("GET", "/druid/v2/datasources", Value::Null),
        json!(["posts"])
    );

    let (status, metrics) = server.call("GET", "/metrics", "", b"");
    assert_eq!(status, 200);
    let sample = |name: &str| -> f64 {
        let line = metrics
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name}: {metrics}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert_eq!(
        sample("millrace_query_errors_total{kind=\"native\"}"),
        2.0,
        "the two refused queries"
    );
    assert!(sample("millrace_queries_total{kind=\"native\"}") >= 5.0);
    assert!(sample("millrace_queries_total{kind=\"sql\"}") >= 2.0);
    assert_eq!(
        sample("millrace_supervisor_rows_processed{supervisor=\"posts\"}"),
        40.0
    );
    assert_eq!(sample("millrace_supervisor_lag{supervisor=\"posts\"}"), 0.0);
}
