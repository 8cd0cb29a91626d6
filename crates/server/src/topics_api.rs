//! Topics of the server's log over HTTP, in the shapes of the Kafka REST Proxy v2 where one
//! fits: list, describe, create, delete, produce (JSON records, or text lines for bulk loads)
//! and read a partition's records.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::routing::get;
use axum::{Json, Router};
use millrace_ingest::now_millis;
use millrace_log::{KeyPartitioner, Record, TopicConfig};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{ApiError, AppState, blocking};

/// Picks partitions for key-less records across requests, as Kafka's sticky partitioner does.
static PARTITIONER: Mutex<Option<KeyPartitioner>> = Mutex::new(None);

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/topics", get(list).post(create))
        .route(
            "/topics/{topic}",
            get(describe).post(produce).delete(delete_topic),
        )
        .route("/topics/{topic}/partitions/{partition}/messages", get(read))
}

async fn list(State(app): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let names: Vec<String> = app.log.topics()?.into_iter().map(|t| t.name).collect();
        Ok(Json(json!(names)))
    })
    .await
}

#[derive(Deserialize)]
struct CreateTopic {
    name: String,
    #[serde(default = "one")]
    partitions: u32,
    /// Kafka topic configs by name (cleanup.policy, retention.ms, delete.retention.ms).
    #[serde(default)]
    configs: BTreeMap<String, String>,
}

fn one() -> u32 {
    1
}

async fn create(State(app): State<Arc<AppState>>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let request: CreateTopic = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "expected {{\"name\": ..., \"partitions\": n, \"configs\": {{...}}}}: {e}"
        ))
    })?;
    let config = TopicConfig::from_properties(
        request
            .configs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str())),
    )
    .map_err(ApiError::bad_request)?;
    blocking(move || {
        let created = app
            .log
            .create_topic_with_config(&request.name, request.partitions, &config)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let partitions = app.log.partition_count(&request.name)?.unwrap_or(0);
        Ok(Json(
            json!({"name": request.name, "partitions": partitions, "created": created}),
        ))
    })
    .await
}

/// Deletes a topic with its records and committed offsets (404 when there is none).
async fn delete_topic(
    State(app): State<Arc<AppState>>,
    Path(topic): Path<String>,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        if !app.log.delete_topic(&topic)? {
            return Err(ApiError::not_found(format!("Topic not found: {topic}")));
        }
        Ok(Json(json!({"name": topic, "deleted": true})))
    })
    .await
}

async fn describe(
    State(app): State<Arc<AppState>>,
    Path(topic): Path<String>,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let partitions = app
            .log
            .partition_count(&topic)?
            .ok_or_else(|| ApiError::not_found(format!("Topic not found: {topic}")))?;
        let mut list = Vec::new();
        for p in 0..partitions {
            let (earliest, latest) = app.log.offset_range(&topic, p)?;
            list.push(json!({
                "partition": p, "leader": 0,
                "replicas": [{"broker": 0, "leader": true, "in_sync": true}],
                "earliest_offset": earliest, "latest_offset": latest,
            }));
        }
        let configs: serde_json::Map<String, Value> = app
            .log
            .topic_config(&topic)?
            .unwrap_or_default()
            .to_properties()
            .into_iter()
            .map(|(k, v)| (k.to_string(), Value::String(v)))
            .collect();
        Ok(Json(
            json!({"name": topic, "configs": configs, "partitions": list}),
        ))
    })
    .await
}

/// A record of the JSON produce request: key and value are JSON, stored as their JSON text
/// (a string is stored as its bare text, so text records read back as they were sent).
#[derive(Deserialize)]
struct ProduceRecord {
    #[serde(default)]
    key: Value,
    #[serde(default)]
    value: Value,
    #[serde(default)]
    partition: Option<u32>,
}

#[derive(Deserialize)]
struct ProduceRequest {
    records: Vec<ProduceRecord>,
}

fn json_bytes(value: &Value) -> Option<Bytes> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(Bytes::copy_from_slice(s.as_bytes())),
        other => Some(Bytes::from(other.to_string())),
    }
}

/// Appends records grouped by partition, choosing partitions for those without one.
fn append(
    app: &AppState,
    topic: &str,
    records: Vec<(Option<u32>, Record)>,
) -> Result<Vec<(u32, u64)>, ApiError> {
    let partitions = app.log.ensure_topic(topic)?;
    let mut by_partition: BTreeMap<u32, Vec<(usize, Record)>> = BTreeMap::new();
    {
        let mut partitioner = PARTITIONER.lock().expect("partitioner lock");
        let partitioner = partitioner.get_or_insert_with(KeyPartitioner::default);
        for (i, (partition, record)) in records.into_iter().enumerate() {
            let p = match partition {
                Some(p) if p >= partitions => {
                    return Err(ApiError::bad_request(format!(
                        "records[{i}].partition: topic '{topic}' has {partitions} partition(s)"
                    )));
                }
                Some(p) => p,
                None => partitioner.partition(
                    record.key.as_deref(),
                    record.value.as_ref().map_or(0, Bytes::len),
                    partitions,
                ),
            };
            by_partition.entry(p).or_default().push((i, record));
        }
    }
    let mut placed = Vec::new();
    for (partition, records) in by_partition {
        let (indexes, records): (Vec<usize>, Vec<Record>) = records.into_iter().unzip();
        let first = app.log.append(topic, partition, records)?;
        placed.extend(
            indexes
                .into_iter()
                .enumerate()
                .map(|(n, i)| (i, (partition, first + n as u64))),
        );
    }
    placed.sort_by_key(|(i, _)| *i);
    Ok(placed.into_iter().map(|(_, at)| at).collect())
}

async fn produce(
    State(app): State<Arc<AppState>>,
    Path(topic): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_ascii_lowercase();
    let timestamp = now_millis();
    let record = |key: Option<Bytes>, value: Option<Bytes>| Record {
        key,
        value,
        timestamp,
        headers: Vec::new(),
    };
    if content_type.starts_with("text/plain") {
        // Bulk text: one record per line, split at the first keySeparator when given.
        let separator = params.get("keySeparator").cloned();
        let text = std::str::from_utf8(&body)
            .map_err(|e| ApiError::bad_request(format!("the body is not UTF-8 text: {e}")))?;
        let records: Vec<(Option<u32>, Record)> = text
            .lines()
            .filter(|l| !l.is_empty())
            .map(|line| {
                let (key, value) = match separator.as_deref().and_then(|s| line.split_once(s)) {
                    Some((k, v)) => (Some(Bytes::copy_from_slice(k.as_bytes())), v),
                    None => (None, line),
                };
                (
                    None,
                    record(key, Some(Bytes::copy_from_slice(value.as_bytes()))),
                )
            })
            .collect();
        let count = records.len();
        return blocking(move || {
            append(&app, &topic, records)?;
            Ok(Json(json!({"count": count})))
        })
        .await;
    }
    let request: ProduceRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "expected {{\"records\": [{{\"key\", \"value\"}}]}}: {e}"
        ))
    })?;
    let records = request
        .records
        .iter()
        .map(|r| {
            (
                r.partition,
                record(json_bytes(&r.key), json_bytes(&r.value)),
            )
        })
        .collect();
    blocking(move || {
        let placed = append(&app, &topic, records)?;
        let offsets: Vec<Value> = placed
            .into_iter()
            .map(|(partition, offset)| {
                json!({"partition": partition, "offset": offset, "error_code": null, "error": null})
            })
            .collect();
        Ok(Json(
            json!({"key_schema_id": null, "value_schema_id": null, "offsets": offsets}),
        ))
    })
    .await
}

/// Bytes as JSON when they are JSON text, else as a string.
fn shown(bytes: Option<&[u8]>) -> Value {
    match bytes {
        None => Value::Null,
        Some(b) => serde_json::from_slice(b)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(b).into_owned())),
    }
}

async fn read(
    State(app): State<Arc<AppState>>,
    Path((topic, partition)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let whole = |name: &str, text: &str| -> Result<u64, ApiError> {
        text.parse().map_err(|_| {
            ApiError::bad_request(format!(
                "{name} must be a whole number of at least 0, not '{text}'"
            ))
        })
    };
    let partition = u32::try_from(whole("partition", &partition)?).map_err(|_| {
        ApiError::not_found(format!("Partition {partition} of topic {topic} not found"))
    })?;
    let number = |name: &str, default: u64| -> Result<u64, ApiError> {
        params.get(name).map_or(Ok(default), |v| whole(name, v))
    };
    let offset = number("offset", 0)?;
    let count = number("count", 1000)?.min(100_000) as usize;
    blocking(move || {
        let partitions = app
            .log
            .partition_count(&topic)?
            .ok_or_else(|| ApiError::not_found(format!("Topic not found: {topic}")))?;
        if partition >= partitions {
            return Err(ApiError::not_found(format!(
                "Partition {partition} of topic {topic} not found"
            )));
        }
        let fetched = app.log.read(&topic, partition, offset, count)?;
        let list: Vec<Value> = fetched
            .records
            .iter()
            .map(|r| {
                json!({
                    "topic": topic, "partition": partition, "offset": r.offset,
                    "timestamp": r.record.timestamp,
                    "key": shown(r.record.key.as_deref()),
                    "value": shown(r.record.value.as_deref()),
                })
            })
            .collect();
        Ok(Json(Value::Array(list)))
    })
    .await
}
