//! Druid's overlord API: supervisors (/druid/indexer/v1/supervisor...) and tasks
//! (/druid/indexer/v1/task[s]...).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use millrace_catalog::{PartitionOffsets, StreamOffsets, TaskRecord, TaskStatus, TopicPartition};
use millrace_ingest::publish::offsets_json;
use millrace_ingest::submitted::SubmittedTask;
use millrace_ingest::{SupervisorStatus, now_millis};
use millrace_segments::time::format_iso;
use serde_json::{Value, json};

use crate::{ApiError, AppState, blocking};

type Params = Query<HashMap<String, String>>;
type Answer = Result<Json<Value>, ApiError>;

pub fn routes() -> Router<Arc<AppState>> {
    let supervisor = "/druid/indexer/v1/supervisor";
    Router::new()
        .route(supervisor, post(create_supervisor).get(list_supervisors))
        .route(&format!("{supervisor}/suspendAll"), post(suspend_all))
        .route(&format!("{supervisor}/resumeAll"), post(resume_all))
        .route(&format!("{supervisor}/terminateAll"), post(terminate_all))
        .route(&format!("{supervisor}/{{id}}"), get(get_spec))
        .route(&format!("{supervisor}/{{id}}/status"), get(get_status))
        .route(&format!("{supervisor}/{{id}}/health"), get(get_health))
        .route(&format!("{supervisor}/{{id}}/stats"), get(get_stats))
        .route(&format!("{supervisor}/{{id}}/suspend"), post(suspend))
        .route(&format!("{supervisor}/{{id}}/resume"), post(resume))
        .route(&format!("{supervisor}/{{id}}/reset"), post(reset))
        .route(
            &format!("{supervisor}/{{id}}/resetOffsets"),
            post(reset_offsets),
        )
        .route(&format!("{supervisor}/{{id}}/terminate"), post(terminate))
        .route("/druid/indexer/v1/tasks", get(list_tasks))
        .route("/druid/indexer/v1/task", post(submit_task))
        .route("/druid/indexer/v1/task/{id}", get(get_task))
        .route("/druid/indexer/v1/task/{id}/status", get(task_status))
        .route("/druid/indexer/v1/task/{id}/reports", get(task_reports))
        .route("/druid/indexer/v1/task/{id}/shutdown", post(shutdown_task))
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.to_ascii_lowercase().contains("json"))
}

async fn create_supervisor(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    if !is_json(&headers) {
        return Ok((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Json(json!({"error": "the supervisor spec must be sent as application/json"})),
        )
            .into_response());
    }
    let id = blocking(move || Ok(app.ingestion.submit(&body)?)).await?;
    Ok(Json(json!({"id": id})).into_response())
}

/// The status as Druid's `/status` payload.
fn status_payload(id: &str, status: &SupervisorStatus, task_duration_seconds: u64) -> Value {
    let lag = |current: &PartitionOffsets| status.lag(current);
    let offsets = |offsets: &PartitionOffsets| offsets_json(&status.stream, offsets);
    let mut current_all = PartitionOffsets::new();
    let (mut active, mut publishing) = (Vec::new(), Vec::new());
    for task in &status.active_tasks {
        current_all.extend(task.current_offsets.clone());
        let entry = json!({
            "id": task.id,
            "startingOffsets": offsets(&task.start_offsets),
            "startTime": format_iso(task.started_millis),
            "remainingSeconds": task.remaining_seconds,
            "type": if task.publishing { "PUBLISHING" } else { "ACTIVE" },
            "currentOffsets": offsets(&task.current_offsets),
            "lag": offsets(&lag(&task.current_offsets)),
        });
        if task.publishing {
            publishing.push(entry);
        } else {
            active.push(entry);
        }
    }
    let lags = lag(&current_all);
    let errors: Vec<Value> = status
        .recent_errors
        .iter()
        .map(|e| {
            json!({"timestamp": format_iso(e.timestamp), "exceptionClass": "org.apache.druid.java.util.common.ISE",
                   "message": e.message, "streamException": false})
        })
        .collect();
    json!({
        "dataSource": id,
        "stream": status.stream,
        "partitions": status.partitions,
        "replicas": 1,
        "durationSeconds": task_duration_seconds,
        "activeTasks": active,
        "publishingTasks": publishing,
        "latestOffsets": offsets(&status.latest_offsets),
        "minimumLag": offsets(&lags),
        "aggregateLag": lags.values().sum::<u64>(),
        "offsetsLastUpdated": status.offsets_read_millis.map(format_iso),
        "suspended": status.suspended,
        "healthy": status.healthy,
        "state": status.state,
        "detailedState": status.detailed_state,
        "recentErrors": errors,
    })
}

fn task_duration_seconds(spec: &Value) -> u64 {
    spec.pointer("/spec/ioConfig/taskDuration")
        .and_then(|v| v.as_str())
        .and_then(|p| millrace_segments::spec::Period::parse(p).ok())
        .and_then(|p| p.fixed_millis())
        .unwrap_or(3_600_000)
        / 1000
}

async fn list_supervisors(State(app): State<Arc<AppState>>, Query(params): Params) -> Answer {
    blocking(move || {
        let ids = app.ingestion.supervisor_ids();
        let full = params.contains_key("full");
        let state = params.get("state").is_some_and(|v| v != "false");
        if !full && !state {
            return Ok(Json(json!(ids)));
        }
        let mut list = Vec::new();
        for id in ids {
            let status = app.ingestion.status(&id)?;
            let mut entry = json!({
                "id": id, "state": status.state, "detailedState": status.detailed_state,
                "healthy": status.healthy, "suspended": status.suspended,
            });
            if full {
                entry["spec"] = app.ingestion.spec(&id)?;
            }
            list.push(entry);
        }
        Ok(Json(Value::Array(list)))
    })
    .await
}

async fn get_spec(State(app): State<Arc<AppState>>, Path(id): Path<String>) -> Answer {
    blocking(move || Ok(Json(app.ingestion.spec(&id)?))).await
}

async fn get_status(State(app): State<Arc<AppState>>, Path(id): Path<String>) -> Answer {
    blocking(move || {
        let status = app.ingestion.status(&id)?;
        let spec = app.ingestion.spec(&id)?;
        Ok(Json(json!({
            "id": id,
            "generationTime": format_iso(now_millis()),
            "payload": status_payload(&id, &status, task_duration_seconds(&spec)),
        })))
    })
    .await
}

async fn get_health(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let status = blocking(move || Ok(app.ingestion.status(&id)?)).await?;
    let code = if status.healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok((code, Json(json!({"healthy": status.healthy}))).into_response())
}

async fn get_stats(State(app): State<Arc<AppState>>, Path(id): Path<String>) -> Answer {
    blocking(move || {
        let status = app.ingestion.status(&id)?;
        let mut groups = serde_json::Map::new();
        for task in status.active_tasks {
            groups.insert(
                task.group.to_string(),
                json!({ task.id: {
                    "movingAverages": {},
                    "totals": {"buildSegments": task.counts},
                }}),
            );
        }
        Ok(Json(Value::Object(groups)))
    })
    .await
}

async fn suspend(State(app): State<Arc<AppState>>, Path(id): Path<String>) -> Answer {
    blocking(move || Ok(Json(app.ingestion.set_suspended(&id, true)?))).await
}

async fn resume(State(app): State<Arc<AppState>>, Path(id): Path<String>) -> Answer {
    blocking(move || Ok(Json(app.ingestion.set_suspended(&id, false)?))).await
}

async fn reset(State(app): State<Arc<AppState>>, Path(id): Path<String>) -> Answer {
    blocking(move || {
        app.ingestion.reset(&id, None)?;
        Ok(Json(json!({"id": id})))
    })
    .await
}

/// `{"type":"kafka","partitions":{"type":"end","stream":topic,"partitionOffsetMap":{"0":100}}}`
/// (partitions of a topicPattern's topics as `"topic:0"`).
async fn reset_offsets(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Answer {
    let body: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?;
    let partitions = body
        .get("partitions")
        .ok_or_else(|| ApiError::bad_request("partitions is missing"))?;
    let stream = partitions
        .get("stream")
        .and_then(|s| s.as_str())
        .ok_or_else(|| ApiError::bad_request("partitions.stream is missing"))?
        .to_string();
    let map = partitions
        .get("partitionOffsetMap")
        .and_then(|m| m.as_object())
        .ok_or_else(|| ApiError::bad_request("partitions.partitionOffsetMap is missing"))?;
    let mut offsets = PartitionOffsets::new();
    for (partition, offset) in map {
        let key = match partition.parse::<u32>() {
            Ok(number) => Ok(TopicPartition::new(&stream, number)),
            Err(_) => partition.parse::<TopicPartition>(),
        };
        let (Ok(p), Some(o)) = (key, offset.as_u64()) else {
            return Err(ApiError::bad_request(format!(
                "partitions.partitionOffsetMap.{partition}: expected a partition (number, or topic:number) and an offset"
            )));
        };
        offsets.insert(p, o);
    }
    blocking(move || {
        app.ingestion.reset(
            &id,
            Some(StreamOffsets {
                stream,
                partitions: offsets,
            }),
        )?;
        Ok(Json(json!({"id": id})))
    })
    .await
}

async fn terminate(State(app): State<Arc<AppState>>, Path(id): Path<String>) -> Answer {
    blocking(move || {
        app.ingestion.terminate(&id)?;
        Ok(Json(json!({"id": id})))
    })
    .await
}

async fn for_all(
    app: Arc<AppState>,
    action: fn(&AppState, &str) -> Result<(), ApiError>,
) -> Answer {
    blocking(move || {
        for id in app.ingestion.supervisor_ids() {
            action(&app, &id)?;
        }
        Ok(Json(json!({"status": "success"})))
    })
    .await
}

async fn suspend_all(State(app): State<Arc<AppState>>) -> Answer {
    for_all(app, |app, id| {
        Ok(app.ingestion.set_suspended(id, true).map(drop)?)
    })
    .await
}

async fn resume_all(State(app): State<Arc<AppState>>) -> Answer {
    for_all(app, |app, id| {
        Ok(app.ingestion.set_suspended(id, false).map(drop)?)
    })
    .await
}

async fn terminate_all(State(app): State<Arc<AppState>>) -> Answer {
    for_all(app, |app, id| Ok(app.ingestion.terminate(id)?)).await
}

/// A task as Druid lists it.
fn task_json(task: &TaskRecord) -> Value {
    let running = task.status == TaskStatus::Running;
    json!({
        "id": task.id,
        "groupId": task.id,
        "type": task.kind.as_str(),
        "createdTime": format_iso(task.created),
        "queueInsertionTime": format_iso(task.created),
        "statusCode": task.status.as_str(),
        "status": task.status.as_str(),
        "runnerStatusCode": if running { "RUNNING" } else { "NONE" },
        "duration": task.payload.get("duration").cloned().unwrap_or(json!(-1)),
        "location": {"host": null, "port": -1, "tlsPort": -1},
        "dataSource": task.datasource,
        "errorMsg": task.payload.get("errorMsg").cloned().unwrap_or(Value::Null),
    })
}

async fn list_tasks(State(app): State<Arc<AppState>>, Query(params): Params) -> Answer {
    let state = params.get("state").map(|s| s.to_ascii_lowercase());
    let wanted: Option<&'static [TaskStatus]> = match state.as_deref() {
        None => None,
        Some("running") => Some(&[TaskStatus::Running]),
        Some("complete") => Some(&[TaskStatus::Success, TaskStatus::Failed]),
        // Tasks start at once here: none ever wait.
        Some("waiting") | Some("pending") => Some(&[]),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "Invalid task state [{other}]: use running, complete, waiting or pending"
            )));
        }
    };
    let max = params.get("max").and_then(|m| m.parse::<usize>().ok());
    blocking(move || {
        let mut tasks = app.ingestion.catalog().tasks()?;
        tasks.sort_by_key(|t| std::cmp::Reverse(t.created));
        let list: Vec<Value> = tasks
            .iter()
            .filter(|t| wanted.is_none_or(|w| w.contains(&t.status)))
            .filter(|t| params.get("datasource").is_none_or(|d| *d == t.datasource))
            .filter(|t| params.get("type").is_none_or(|k| k == t.kind.as_str()))
            .take(max.unwrap_or(usize::MAX))
            .map(task_json)
            .collect();
        Ok(Json(Value::Array(list)))
    })
    .await
}

fn find_task(app: &AppState, id: &str) -> Result<TaskRecord, ApiError> {
    app.ingestion
        .catalog()
        .task(id)?
        .ok_or_else(|| ApiError::not_found(format!("Cannot find any task with id: [{id}]")))
}

async fn task_status(State(app): State<Arc<AppState>>, Path(id): Path<String>) -> Answer {
    blocking(move || {
        let task = find_task(&app, &id)?;
        Ok(Json(json!({"task": id, "status": task_json(&task)})))
    })
    .await
}

async fn get_task(State(app): State<Arc<AppState>>, Path(id): Path<String>) -> Answer {
    blocking(move || {
        let task = find_task(&app, &id)?;
        let mut payload = task.payload.clone();
        if let Some(object) = payload.as_object_mut() {
            object.insert("id".into(), json!(task.id));
            object.insert("type".into(), json!(task.kind.as_str()));
            object.insert("dataSource".into(), json!(task.datasource));
        }
        Ok(Json(json!({"task": id, "payload": payload})))
    })
    .await
}

async fn task_reports(State(app): State<Arc<AppState>>, Path(id): Path<String>) -> Answer {
    blocking(move || {
        let task = find_task(&app, &id)?;
        Ok(Json(json!({"ingestionStatsAndErrors": {
            "type": "ingestionStatsAndErrors",
            "taskId": id,
            "payload": {
                "ingestionState": if task.status == TaskStatus::Running { "BUILD_SEGMENTS" } else { "COMPLETED" },
                "rowStats": {"buildSegments": task.payload.get("rowStats").cloned().unwrap_or(json!({}))},
                "unparseableEvents": {"buildSegments": task.payload.get("parseExceptions").cloned().unwrap_or(json!([]))},
                "errorMsg": task.payload.get("errorMsg").cloned().unwrap_or(Value::Null),
                "segmentsRead": task.payload.pointer("/compaction/segmentsRead").cloned(),
                "segmentsPublished": task.payload.pointer("/compaction/segmentsPublished").cloned(),
                "compaction": task.payload.get("compaction").cloned(),
            }
        }})))
    })
    .await
}

async fn shutdown_task(State(app): State<Arc<AppState>>, Path(id): Path<String>) -> Answer {
    blocking(move || {
        if app.ingestion.stop_task(&id) {
            Ok(Json(json!({"task": id})))
        } else {
            find_task(&app, &id)?;
            Err(ApiError::bad_request(format!("task [{id}] is not running")))
        }
    })
    .await
}

/// POST /druid/indexer/v1/task: the task is read and run by ingestion (see
/// [`SubmittedTask`]).
async fn submit_task(State(app): State<Arc<AppState>>, body: Bytes) -> Answer {
    let spec: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the task is not JSON: {e}")))?;
    let task = SubmittedTask::parse(&spec)?;
    blocking(move || Ok(Json(json!({"task": app.ingestion.run_task(task)?})))).await
}
