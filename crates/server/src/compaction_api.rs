//! Druid's coordinator compaction API: auto-compaction configs per datasource, the task
//! slots, and the status and progress of the compaction duty.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::{ApiError, AppState, blocking};

type Params = Query<HashMap<String, String>>;
type Answer = Result<Json<Value>, ApiError>;

pub fn routes() -> Router<Arc<AppState>> {
    let config = "/druid/coordinator/v1/config/compaction";
    Router::new()
        .route(config, get(get_document).post(set_config))
        .route(&format!("{config}/taskslots"), post(set_slots))
        .route(
            &format!("{config}/{{ds}}"),
            get(get_config).delete(delete_config),
        )
        .route("/druid/coordinator/v1/compaction/status", get(status))
        .route("/druid/coordinator/v1/compaction/progress", get(progress))
}

async fn get_document(State(app): State<Arc<AppState>>) -> Answer {
    blocking(move || Ok(Json(app.ingestion.compaction_document()?))).await
}

/// Adds or replaces a datasource's config; 200 with no body, as Druid answers.
async fn set_config(State(app): State<Arc<AppState>>, body: Bytes) -> Result<StatusCode, ApiError> {
    let config: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the config is not JSON: {e}")))?;
    blocking(move || {
        app.ingestion.set_compaction_config(&config)?;
        Ok(StatusCode::OK)
    })
    .await
}

async fn set_slots(
    State(app): State<Arc<AppState>>,
    Query(params): Params,
) -> Result<StatusCode, ApiError> {
    let number = |name: &str| -> Result<Option<f64>, ApiError> {
        params
            .get(name)
            .map(|v| {
                v.parse::<f64>().ok().filter(|n| *n >= 0.0).ok_or_else(|| {
                    ApiError::bad_request(format!("{name} must be a number, not '{v}'"))
                })
            })
            .transpose()
    };
    let (ratio, max) = (number("ratio")?, number("max")?);
    blocking(move || {
        app.ingestion
            .set_compaction_slots(ratio, max.map(|m| m as u64))?;
        Ok(StatusCode::OK)
    })
    .await
}

async fn get_config(State(app): State<Arc<AppState>>, Path(ds): Path<String>) -> Answer {
    blocking(move || {
        app.ingestion
            .compaction_config(&ds)?
            .map(Json)
            .ok_or_else(|| {
                ApiError::not_found(format!("datasource [{ds}] has no compaction config"))
            })
    })
    .await
}

async fn delete_config(
    State(app): State<Arc<AppState>>,
    Path(ds): Path<String>,
) -> Result<StatusCode, ApiError> {
    blocking(move || {
        if app.ingestion.delete_compaction_config(&ds)? {
            Ok(StatusCode::OK)
        } else {
            Err(ApiError::not_found(format!(
                "datasource [{ds}] has no compaction config"
            )))
        }
    })
    .await
}

/// The snapshots of the last duty run (of one datasource with `?dataSource=`).
fn snapshots(app: &AppState, params: &HashMap<String, String>) -> Result<Vec<Value>, ApiError> {
    let datasource = params.get("dataSource").map(String::as_str);
    let found: Vec<Value> = app
        .ingestion
        .compaction_status(datasource)
        .into_iter()
        .map(|s| json!(s))
        .collect();
    if let Some(ds) = datasource
        && found.is_empty()
    {
        return Err(ApiError::not_found(format!("unknown dataSource [{ds}]")));
    }
    Ok(found)
}

async fn status(State(app): State<Arc<AppState>>, Query(params): Params) -> Answer {
    Ok(Json(json!({"latestStatus": snapshots(&app, &params)?})))
}

async fn progress(State(app): State<Arc<AppState>>, Query(params): Params) -> Answer {
    if !params.contains_key("dataSource") {
        return Err(ApiError::bad_request("dataSource is required"));
    }
    let found = snapshots(&app, &params)?;
    Ok(Json(
        json!({"remainingSegmentSize": found[0]["bytesAwaitingCompaction"]}),
    ))
}
