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
