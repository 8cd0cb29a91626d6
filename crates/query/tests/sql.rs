//! Druid's time functions through DataFusion SQL, against known answers.

use std::sync::Arc;

use arrow::array::{AsArray, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use millrace_query::functions::{time_functions, timestamp_type};
use millrace_segments::time::{format_iso, parse_iso};

fn context() -> SessionContext {
    let ctx = SessionContext::new();
    for f in time_functions() {
        ctx.register_udf(f);
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("__time", timestamp_type(), false),
        Field::new("username", DataType::Utf8, true),
        Field::new("views", DataType::Int64, true),
    ]));
    let times = [
        "2024-05-01T10:15:00Z",
        "2024-05-01T10:45:00Z",
        "2024-05-01T11:05:00Z",
        "2024-05-31T23:59:59Z",
    ];
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(
                TimestampMillisecondArray::from(
                    times
                        .iter()
                        .map(|t| parse_iso(t).unwrap())
                        .collect::<Vec<_>>(),
                )
                .with_timezone("UTC"),
            ),
            Arc::new(StringArray::from(vec!["mia", "gus", "mia", "jojo"])),
            Arc::new(Int64Array::from(vec![10, 20, 30, 40])),
        ],
    )
    .unwrap();
    ctx.register_table(
        "social",
        Arc::new(MemTable::try_new(schema, vec![vec![batch]]).unwrap()),
    )
    .unwrap();
    ctx
}

async fn rows(sql: &str) -> Vec<RecordBatch> {
    context()
        .sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .collect()
        .await
        .unwrap()
}

fn times(batch: &RecordBatch, column: usize) -> Vec<String> {
    batch
        .column(column)
        .as_primitive::<arrow::datatypes::TimestampMillisecondType>()
        .iter()
        .map(|t| format_iso(t.unwrap()))
        .collect()
}

#[tokio::test]
async fn time_floor_groups_by_hour() {
    let out = rows("SELECT TIME_FLOOR(__time, 'PT1H') AS h, COUNT(*) AS n, SUM(views) AS v FROM social GROUP BY 1 ORDER BY 1").await;
    let batch = &out[0];
    assert_eq!(
        times(batch, 0),
        [
            "2024-05-01T10:00:00.000Z",
            "2024-05-01T11:00:00.000Z",
            "2024-05-31T23:00:00.000Z"
        ]
    );
    assert_eq!(
        batch
            .column(1)
            .as_primitive::<arrow::datatypes::Int64Type>()
            .values()
            .to_vec(),
        vec![2, 1, 1]
    );
    assert_eq!(
        batch
            .column(2)
            .as_primitive::<arrow::datatypes::Int64Type>()
            .values()
            .to_vec(),
        vec![30, 30, 40]
    );
}

#[tokio::test]
async fn ceil_shift_and_conversions() {
    let out = rows(
        "SELECT TIME_CEIL(__time, 'PT1H'), TIME_SHIFT(__time, 'P1M', 1), TIMESTAMP_TO_MILLIS(__time), \
         MILLIS_TO_TIMESTAMP(0), TIME_FORMAT(TIME_FLOOR(__time, 'P1D')), TIME_PARSE('2024-01-02T03:04:05Z') \
         FROM social WHERE username = 'jojo'",
    )
    .await;
    let batch = &out[0];
    assert_eq!(times(batch, 0), ["2024-06-01T00:00:00.000Z"]);
    assert_eq!(
        times(batch, 1),
        ["2024-06-30T23:59:59.000Z"],
        "May 31 plus a month is June 30"
    );
    assert_eq!(
        batch
            .column(2)
            .as_primitive::<arrow::datatypes::Int64Type>()
            .value(0),
        parse_iso("2024-05-31T23:59:59Z").unwrap()
    );
    assert_eq!(times(batch, 3), ["1970-01-01T00:00:00.000Z"]);
    assert_eq!(
        batch.column(4).as_string::<i32>().value(0),
        "2024-05-31T00:00:00.000Z"
    );
    assert_eq!(times(batch, 5), ["2024-01-02T03:04:05.000Z"]);
}

#[tokio::test]
async fn extract_and_interval() {
    let out = rows(
        "SELECT TIME_EXTRACT(__time, 'HOUR'), TIME_EXTRACT(__time, 'DOW'), TIME_EXTRACT(__time, 'MONTH'), \
         TIME_EXTRACT(__time, 'QUARTER'), TIME_EXTRACT(__time, 'WEEK'), TIME_EXTRACT(__time, 'EPOCH') \
         FROM social WHERE TIME_IN_INTERVAL(__time, '2024-05-01T11:00:00Z/2024-05-02T00:00:00Z')",
    )
    .await;
    let batch = &out[0];
    assert_eq!(batch.num_rows(), 1);
    let value = |c: usize| {
        batch
            .column(c)
            .as_primitive::<arrow::datatypes::Int64Type>()
            .value(0)
    };
    assert_eq!(
        (value(0), value(1), value(2), value(3), value(4)),
        (11, 3, 5, 2, 18),
        "a Wednesday in ISO week 18"
    );
    assert_eq!(value(5), parse_iso("2024-05-01T11:05:00Z").unwrap() / 1000);
}

#[tokio::test]
async fn bad_arguments_are_planning_errors() {
    let ctx = context();
    let err = ctx
        .sql("SELECT TIME_FLOOR(__time) FROM social")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("TIME_FLOOR takes 2 to 4 arguments"), "{err}");
    let err = match ctx
        .sql("SELECT TIME_FLOOR(__time, 'hourly') FROM social")
        .await
    {
        Ok(df) => df.collect().await.unwrap_err().to_string(),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("'hourly' is not an ISO-8601 period"), "{err}");
}

/// One datasource, by name, of the given rows.
struct OneDatasource(&'static str, millrace_segments::view::DatasourceView);

impl millrace_query::QuerySource for OneDatasource {
    fn datasource_names(&self) -> Vec<String> {
        vec![self.0.into()]
    }
    fn datasource(&self, name: &str) -> Option<millrace_segments::view::DatasourceView> {
        (name == self.0).then(|| self.1.clone())
    }
    fn datasource_schema(&self, name: &str) -> Option<millrace_segments::columns::SegmentSchema> {
        (name == self.0).then(|| self.1.schema())
    }
    fn system_table(&self, _name: &str) -> Option<RecordBatch> {
        None
    }
}

/// The answers of the engine over segment files (read through the column cache with any
/// budget, cold and warm), a persisted file and realtime rows, against the same questions
/// answered by walking the rows.
mod against_a_straightforward_evaluation {
    use std::collections::BTreeMap;
    use std::path::Path;

    use millrace_query::SqlEngine;
    use millrace_query::values::object_rows;
    use millrace_segments::columns::{SegmentSchema, write_parquet};
    use millrace_segments::shard::ShardKeys;
    use millrace_segments::spec::DimensionType;
    use millrace_segments::view::{DatasourceView, PersistedFile, RealtimeChunk, SegmentFile};
    use serde_json::Value;

    use super::*;

    const HOUR: i64 = 3_600_000;
    const START: i64 = 1_735_689_600_000;
    const NAMES: [&str; 8] = [
        "willow", "mia", "leon", "milton", "miette", "gus", "jojo", "rocket",
    ];

    #[derive(Clone)]
    struct Row {
        time: i64,
        username: Option<String>,
        views: Option<i64>,
    }

    /// Deterministic rows over three hours; some usernames and views are null.
    fn generated(count: usize) -> Vec<Row> {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut rows: Vec<Row> = (0..count)
            .map(|_| {
                let r = next();
                Row {
                    time: START + (r % (3 * HOUR as u64)) as i64,
                    username: (r >> 40 & 15 != 0).then(|| NAMES[(r >> 20) as usize % 8].into()),
                    views: (r >> 44 & 31 != 0).then_some((r >> 24) as i64 % 20_000),
                }
            })
            .collect();
        rows.sort_by_key(|row| row.time);
        rows
    }

    fn schema() -> SegmentSchema {
        SegmentSchema {
            dimensions: vec![
                ("username".into(), DimensionType::String),
                ("views".into(), DimensionType::Long),
            ],
            metrics: vec![],
        }
    }

    fn batch(rows: &[Row]) -> RecordBatch {
        RecordBatch::try_new(
            schema().arrow(),
            vec![
                Arc::new(
                    TimestampMillisecondArray::from(
                        rows.iter().map(|r| r.time).collect::<Vec<_>>(),
                    )
                    .with_timezone("UTC"),
                ),
                Arc::new(StringArray::from(
                    rows.iter().map(|r| r.username.clone()).collect::<Vec<_>>(),
                )),
                Arc::new(Int64Array::from(
                    rows.iter().map(|r| r.views).collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap()
    }

    fn file(dir: &Path, name: &str, rows: &[Row], start: i64) -> SegmentFile {
        let path = dir.join(name);
        let size = write_parquet(&path, &batch(rows)).unwrap();
        SegmentFile {
            id: name.into(),
            start,
            end: start + HOUR,
            path,
            size,
            num_rows: rows.len() as u64,
            schema: schema(),
            keys: ShardKeys::Any,
        }
    }

    /// The first hour in two published segments, the second as a file a running task
    /// persisted, the third in memory.
    fn view(dir: &Path, rows: &[Row]) -> DatasourceView {
        let hour = |h: i64| -> Vec<Row> {
            rows.iter()
                .filter(|r| r.time >= START + h * HOUR && r.time < START + (h + 1) * HOUR)
                .cloned()
                .collect()
        };
        let first = hour(0);
        let (a, b) = first.split_at(first.len() / 3);
        DatasourceView {
            segments: vec![
                Arc::new(file(dir, "0a.parquet", a, START)),
                Arc::new(file(dir, "0b.parquet", b, START)),
            ],
            persisted: vec![Arc::new(PersistedFile(file(
                dir,
                "1.parquet",
                &hour(1),
                START + HOUR,
            )))],
            realtime: vec![RealtimeChunk {
                start: START + 2 * HOUR,
                end: START + 3 * HOUR,
                schema: schema(),
                // A task's rows in memory come in no particular order.
                batch: batch(&hour(2).into_iter().rev().collect::<Vec<_>>()),
            }],
        }
    }

    async fn answer(engine: &SqlEngine, sql: &str) -> Vec<Vec<Value>> {
        let output = engine
            .query(sql, vec![])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        object_rows(&output)
            .into_iter()
            .map(|row| row.into_iter().map(|(_, v)| v).collect())
            .collect()
    }

    fn sum(values: impl Iterator<Item = Option<i64>>) -> Value {
        let present: Vec<i64> = values.flatten().collect();
        if present.is_empty() {
            Value::Null
        } else {
            Value::from(present.iter().sum::<i64>())
        }
    }

    /// Each question's SQL and its answer by walking the rows (rows in the SQL's order).
    fn questions(rows: &[Row]) -> Vec<(String, Vec<Vec<Value>>)> {
        let mut by_user: BTreeMap<Option<String>, Vec<&Row>> = BTreeMap::new();
        for row in rows {
            by_user.entry(row.username.clone()).or_default().push(row);
        }
        // ORDER BY username puts NULL last.
        let mut users: Vec<_> = by_user.iter().filter(|(u, _)| u.is_some()).collect();
        users.extend(by_user.iter().filter(|(u, _)| u.is_none()));
        let mut by_hour: BTreeMap<i64, usize> = BTreeMap::new();
        for row in rows {
            *by_hour
                .entry(row.time - (row.time - START).rem_euclid(HOUR))
                .or_default() += 1;
        }
        let mia: Vec<&Row> = rows
            .iter()
            .filter(|r| r.username.as_deref() == Some("mia"))
            .collect();
        let (from, to) = (START + HOUR / 2, START + 2 * HOUR + HOUR / 4);
        let within = rows
            .iter()
            .filter(|r| r.time >= from && r.time < to)
            .count();
        let views = || rows.iter().filter_map(|r| r.views);
        // Buckets a file's time chunk spans (a quarter hour; hours from the half hour) and
        // one that holds every chunk (a day), counted by TIME_FLOOR's rule worked out here.
        // Rows counted by bucket, as `TIME_FLOOR(__time, period[, origin])` puts them (buckets
        // of `size` from `offset` past START), of the rows `filter` keeps (as `condition`).
        let series = |period: &str,
                      origin: &str,
                      size: i64,
                      offset: i64,
                      condition: &str,
                      filter: &dyn Fn(i64) -> bool| {
            let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
            for row in rows.iter().filter(|r| filter(r.time)) {
                let floor = row.time - (row.time - START - offset).rem_euclid(size);
                *counts.entry(floor).or_default() += 1;
            }
            (
                format!(
                    "SELECT TIME_FLOOR(__time, '{period}'{origin}) AS b, COUNT(*) AS n, COUNT(1) AS m FROM posts {condition} GROUP BY 1 ORDER BY 1"
                ),
                counts
                    .iter()
                    .map(|(b, n)| {
                        vec![
                            Value::from(format_iso(*b)),
                            Value::from(*n),
                            Value::from(*n),
                        ]
                    })
                    .collect::<Vec<_>>(),
            )
        };
        let all = |_: i64| true;
        // Bounds within files, and bounds that hold files whole, in several forms.
        let (first, last) = (format_iso(from), format_iso(to));
        let within_from_to = move |t: i64| (from..to).contains(&t);
        let bounded = [
            format!("WHERE __time >= '{first}' AND __time < '{last}'"),
            format!(
                "WHERE __time >= TIMESTAMP '{}' AND __time < TIME_PARSE('{last}')",
                first.trim_end_matches('Z').replace('T', " ")
            ),
            format!(
                "WHERE __time BETWEEN '{first}' AND MILLIS_TO_TIMESTAMP({})",
                to - 1
            ),
        ];
        let whole_hours = |t: i64| (START + HOUR..=START + 3 * HOUR).contains(&t);
        let half_past = format!(
            ", TIMESTAMP '{}'",
            format_iso(START + HOUR / 2)
                .trim_end_matches('Z')
                .replace('T', " ")
        );
        vec![
            series("PT15M", "", HOUR / 4, 0, "", &all),
            series("PT1H", &half_past, HOUR, HOUR / 2, "", &all),
            series("P1D", "", 24 * HOUR, 0, "", &all),
            series("PT1H", "", HOUR, 0, &bounded[0], &within_from_to),
            series("PT15M", "", HOUR / 4, 0, &bounded[1], &within_from_to),
            series("P1D", "", 24 * HOUR, 0, &bounded[2], &within_from_to),
            series(
                "PT1H",
                "",
                HOUR,
                0,
                &format!("p WHERE p.__time >= '{first}' AND p.__time < '{last}'"),
                &within_from_to,
            ),
            series(
                "PT1H",
                "",
                HOUR,
                0,
                &format!("WHERE __time > '{}' AND __time <= '{}'", format_iso(START + HOUR - 1), format_iso(START + 3 * HOUR)),
                &whole_hours,
            ),
            (
                "SELECT COUNT(*) FROM posts".into(),
                vec![vec![Value::from(rows.len())]],
            ),
            (
                "SELECT username, COUNT(*) AS n, SUM(views) AS v FROM posts GROUP BY username ORDER BY username".into(),
                users
                    .iter()
                    .map(|(user, rows)| {
                        vec![
                            user.as_deref().map_or(Value::Null, Value::from),
                            Value::from(rows.len()),
                            sum(rows.iter().map(|r| r.views)),
                        ]
                    })
                    .collect(),
            ),
            (
                "SELECT TIME_FLOOR(__time, 'PT1H') AS h, COUNT(*) AS n FROM posts GROUP BY 1 ORDER BY 1".into(),
                by_hour
                    .iter()
                    .map(|(h, n)| vec![Value::from(format_iso(*h)), Value::from(*n)])
                    .collect(),
            ),
            (
                "SELECT COUNT(*) AS n, SUM(views) AS v FROM posts WHERE username = 'mia'".into(),
                vec![vec![Value::from(mia.len()), sum(mia.iter().map(|r| r.views))]],
            ),
            (
                format!(
                    "SELECT COUNT(*) FROM posts WHERE __time >= '{}' AND __time < '{}'",
                    format_iso(from),
                    format_iso(to)
                ),
                vec![vec![Value::from(within)]],
            ),
            (
                "SELECT MIN(views), MAX(views), COUNT(views) FROM posts".into(),
                vec![vec![
                    Value::from(views().min().unwrap()),
                    Value::from(views().max().unwrap()),
                    Value::from(views().count()),
                ]],
            ),
        ]
    }

    #[tokio::test]
    async fn answers_match_with_any_cache_budget_cold_and_warm() {
        let dir = tempfile::tempdir().unwrap();
        // The persisted hour holds more rows than one slice the scan hands on.
        let rows = generated(240_000);
        let posts = Arc::new(OneDatasource("posts", view(dir.path(), &rows)));
        let questions = questions(&rows);
        // No cache, one that holds a column or two (so columns come and go), the default.
        for budget in [
            0,
            200_000,
            millrace_query::column_cache::DEFAULT_BUDGET_BYTES,
        ] {
            let engine = SqlEngine::with_column_cache(posts.clone(), budget);
            for round in ["cold", "warm"] {
                for (sql, expected) in &questions {
                    assert_eq!(
                        &answer(&engine, sql).await,
                        expected,
                        "{sql} ({round}, cache of {budget} bytes)"
                    );
                }
            }
        }
    }

    /// Counting rows by `TIME_FLOOR` reads the segments' row counts and times, not their rows;
    /// any other aggregate, or a filter, plans the scan.
    #[tokio::test]
    async fn row_counts_by_time_floor_skip_the_scan() {
        let dir = tempfile::tempdir().unwrap();
        let rows = generated(1_000);
        let engine = SqlEngine::new(Arc::new(OneDatasource("posts", view(dir.path(), &rows))));
        let plan = |sql: String| {
            let engine = &engine;
            async move {
                let output = engine
                    .query(&format!("EXPLAIN PLAN FOR {sql}"), vec![])
                    .await;
                let rows = object_rows(&output.unwrap_or_else(|e| panic!("{sql}: {e}")));
                rows[0]["PLAN"].as_str().unwrap().to_string()
            }
        };
        let counted = [
            "SELECT TIME_FLOOR(__time, 'PT1H') AS h, COUNT(*) AS n FROM posts GROUP BY 1 ORDER BY 1",
            "SELECT FLOOR(__time TO DAY), COUNT(*), COUNT(1) FROM posts GROUP BY 1",
            "SELECT TIME_FLOOR(__time, 'PT1H', TIMESTAMP '2025-01-01 00:30:00', 'UTC'), COUNT(*) FROM posts GROUP BY 1",
            "SELECT TIME_FLOOR(__time, 'PT1H'), COUNT(*) FROM posts WHERE __time >= '2025-01-01T00:30:00Z' AND __time < TIMESTAMP '2025-01-01 02:00:00' GROUP BY 1",
            "SELECT TIME_FLOOR(p.__time, 'PT1H'), COUNT(*) FROM posts p WHERE p.__time >= '2025-01-01T00:30:00Z' GROUP BY 1",
            // The buckets alone (DataFusion plans the distinct count as a grouping without
            // aggregates under one that counts the groups).
            "SELECT TIME_FLOOR(__time, 'PT1H'), COUNT(DISTINCT 1) FROM posts GROUP BY 1",
        ];
        for sql in counted {
            let plan = plan(sql.to_string()).await;
            assert!(
                !plan.contains("SegmentScan") && plan.contains("StreamingTableExec"),
                "{sql}: {plan}"
            );
        }
        let scanned = [
            "SELECT TIME_FLOOR(__time, 'PT1H'), SUM(1) FROM posts GROUP BY 1",
            "SELECT TIME_FLOOR(__time, 'PT1H'), COUNT(username) FROM posts GROUP BY 1",
            "SELECT TIME_FLOOR(__time, 'PT1H'), COUNT(*) FROM posts WHERE username = 'mia' GROUP BY 1",
            "SELECT TIME_CEIL(__time, 'PT1H'), COUNT(*) FROM posts GROUP BY 1",
            "SELECT TIME_FLOOR(__time, 'PT1H'), COUNT(*) FROM posts WHERE __time >= '2025-01-01T00:30:00Z' OR username = 'mia' GROUP BY 1",
            "SELECT TIME_FLOOR(__time, 'PT1H'), COUNT(*) FROM posts WHERE __time >= '2025-01-01T00:30:00Z' AND username = 'mia' GROUP BY 1",
            "SELECT TIME_FLOOR(__time, 'PT1H'), COUNT(*) FROM posts WHERE CAST(__time AS DATE) = DATE '2025-01-01' GROUP BY 1",
            "SELECT TIME_FLOOR(__time, 'PT1H'), username, COUNT(*) FROM posts GROUP BY 1, 2",
        ];
        for sql in scanned {
            let plan = plan(sql.to_string()).await;
            assert!(plan.contains("SegmentScan"), "{sql}: {plan}");
        }
        // A zone the function refuses is refused as before.
        let refused = engine
            .query(
                "SELECT TIME_FLOOR(__time, 'PT1H', NULL, 'Europe/Paris'), COUNT(*) FROM posts GROUP BY 1",
                vec![],
            )
            .await
            .unwrap_err();
        assert!(refused.to_string().contains("Europe/Paris"), "{refused}");
    }
}

/// Segments written at different times differ: a column added later, a dimension whose type
/// changed, a name with a dot (as the kafka input format's columns have).
mod segments_that_differ {
    use millrace_query::SqlEngine;
    use millrace_query::values::object_rows;
    use millrace_segments::columns::{SegmentSchema, write_parquet};
    use millrace_segments::shard::ShardKeys;
    use millrace_segments::spec::DimensionType;
    use millrace_segments::view::{DatasourceView, SegmentFile};
    use serde_json::{Value, json};

    use super::*;

    /// A segment file of `rows` rows at time 0 with the given dimensions (strings or longs).
    fn segment(
        dir: &std::path::Path,
        name: &str,
        rows: usize,
        dimensions: &[(&str, DimensionType)],
    ) -> Arc<SegmentFile> {
        let schema = SegmentSchema {
            dimensions: dimensions
                .iter()
                .map(|(n, t)| (n.to_string(), *t))
                .collect(),
            metrics: vec![],
        };
        let mut columns: Vec<arrow::array::ArrayRef> = vec![Arc::new(
            TimestampMillisecondArray::from(vec![0; rows]).with_timezone("UTC"),
        )];
        for (i, (_, kind)) in dimensions.iter().enumerate() {
            columns.push(match kind {
                DimensionType::Long => Arc::new(Int64Array::from_iter_values(
                    (0..rows).map(|r| (r + i) as i64),
                )),
                _ => Arc::new(StringArray::from_iter_values(
                    (0..rows).map(|r| format!("{}", (r + i) % 2)),
                )),
            });
        }
        let batch = RecordBatch::try_new(schema.arrow(), columns).unwrap();
        let path = dir.join(name);
        let size = write_parquet(&path, &batch).unwrap();
        Arc::new(SegmentFile {
            id: name.into(),
            start: 0,
            end: 3_600_000,
            path,
            size,
            num_rows: rows as u64,
            schema,
            keys: ShardKeys::Any,
        })
    }

    async fn answer(engine: &SqlEngine, sql: &str) -> Vec<serde_json::Map<String, Value>> {
        let output = engine
            .query(sql, vec![])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        object_rows(&output)
    }

    #[tokio::test]
    async fn old_and_new_segments_read_together() {
        use DimensionType::{Long, String as Text};
        let dir = tempfile::tempdir().unwrap();
        let view = DatasourceView {
            segments: vec![
                // `level` was a long here and a string later; `added` came later.
                segment(dir.path(), "old.parquet", 10, &[("level", Long)]),
                segment(
                    dir.path(),
                    "new.parquet",
                    6,
                    &[("level", Text), ("added", Text), ("kafka.key", Text)],
                ),
            ],
            ..DatasourceView::default()
        };
        let source = Arc::new(OneDatasource("events", view));
        for budget in [0, millrace_query::column_cache::DEFAULT_BUDGET_BYTES] {
            let engine = SqlEngine::with_column_cache(source.clone(), budget);
            for _ in ["cold", "warm"] {
                assert_eq!(
                    answer(
                        &engine,
                        "SELECT COUNT(*) AS n FROM events WHERE added IS NULL"
                    )
                    .await,
                    vec![json!({"n": 10}).as_object().unwrap().clone()],
                    "the old file's rows lack `added`: null, not gone"
                );
                let keys = answer(
                    &engine,
                    r#"SELECT "kafka.key" AS k, COUNT(*) AS n FROM events GROUP BY 1 ORDER BY 1"#,
                )
                .await;
                assert_eq!(
                    keys,
                    [
                        json!({"k": "0", "n": 3}),
                        json!({"k": "1", "n": 3}),
                        json!({"k": null, "n": 10})
                    ]
                    .iter()
                    .map(|v| v.as_object().unwrap().clone())
                    .collect::<Vec<_>>(),
                    "a dotted name is a column of its own"
                );
                // The first type met (long) is the table's: "0"/"1" cast to numbers.
                let levels = answer(&engine, "SELECT SUM(level) AS s FROM events").await;
                assert_eq!(
                    levels[0]["s"],
                    json!((0..10).sum::<i64>() + 3),
                    "{levels:?}"
                );
            }
        }
    }
}
