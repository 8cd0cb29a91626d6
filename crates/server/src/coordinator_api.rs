//! Druid's coordinator API (datasources, their segments, marking segments used and unused,
//! metadata) and the /status endpoints.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use millrace_catalog::{SegmentRecord, SegmentSelection};
use millrace_segments::time::{format_iso, parse_interval};
use serde_json::{Value, json};

use crate::{ApiError, AppState, blocking};

type Params = Query<HashMap<String, String>>;
type Answer = Result<Json<Value>, ApiError>;

pub fn routes() -> Router<Arc<AppState>> {
    let datasources = "/druid/coordinator/v1/datasources";
    Router::new()
        .route(datasources, get(list_datasources))
        .route(
            &format!("{datasources}/{{ds}}"),
            get(get_datasource).delete(mark_all_unused),
        )
        .route(
            &format!("{datasources}/{{ds}}/segments"),
            get(list_segments),
        )
        .route(
            &format!("{datasources}/{{ds}}/loadstatus"),
            get(load_status),
        )
        .route(
            &format!("{datasources}/{{ds}}/markUnused"),
            post(mark_unused),
        )
        .route(&format!("{datasources}/{{ds}}/markUsed"), post(mark_used))
        .route(
            "/druid/coordinator/v1/metadata/segments",
            get(metadata_segments),
        )
        .route("/status", get(status))
        .route("/status/properties", get(properties))
        .route("/status/health", get(|| async { Json(json!(true)) }))
}

/// A segment as Druid's APIs list it.
fn descriptor_json(segment: &SegmentRecord) -> Value {
    json!(segment.descriptor)
}

/// Druid's `segments` summary of a datasource.
fn summary(segments: &[SegmentRecord]) -> Value {
    let size: u64 = segments.iter().map(|s| s.descriptor.size).sum();
    let min = segments.iter().map(|s| s.start).min();
    let max = segments.iter().map(|s| s.end).max();
    json!({
        "tiers": {"_default_tier": {"size": size, "segmentCount": segments.len()}},
        "segments": {
            "minTime": min.map(format_iso),
            "maxTime": max.map(format_iso),
            "size": size,
            "count": segments.len(),
        }
    })
}

async fn list_datasources(State(app): State<Arc<AppState>>, Query(params): Params) -> Answer {
    blocking(move || {
        let catalog = app.ingestion.catalog();
        let names = catalog.datasources()?;
        if !params.contains_key("simple") && !params.contains_key("full") {
            return Ok(Json(json!(names)));
        }
        let mut list = Vec::new();
        for name in names {
            let segments = catalog.segments(&name, true)?;
            let mut entry = json!({"name": name, "properties": {}});
            if params.contains_key("full") {
                entry["segments"] = Value::Array(segments.iter().map(descriptor_json).collect());
            } else {
                let s = summary(&segments);
                entry["properties"] = json!({"tiers": s["tiers"]});
                entry["segments"] = s["segments"].clone();
            }
            list.push(entry);
        }
        Ok(Json(Value::Array(list)))
    })
    .await
}

async fn get_datasource(State(app): State<Arc<AppState>>, Path(ds): Path<String>) -> Answer {
    blocking(move || {
        let segments = app.ingestion.catalog().segments(&ds, true)?;
        if segments.is_empty() {
            return Err(ApiError::not_found(format!(
                "datasource [{ds}] has no used segments"
            )));
        }
        Ok(Json(summary(&segments)))
    })
    .await
}

async fn list_segments(
    State(app): State<Arc<AppState>>,
    Path(ds): Path<String>,
    Query(params): Params,
) -> Answer {
    blocking(move || {
        let segments = app.ingestion.catalog().segments(&ds, true)?;
        Ok(Json(if params.contains_key("full") {
            Value::Array(segments.iter().map(descriptor_json).collect())
        } else {
            json!(segments.into_iter().map(|s| s.id).collect::<Vec<_>>())
        }))
    })
    .await
}

async fn load_status(State(app): State<Arc<AppState>>, Path(ds): Path<String>) -> Answer {
    blocking(move || {
        if app.ingestion.catalog().segments(&ds, true)?.is_empty() {
            return Err(ApiError::not_found(format!(
                "datasource [{ds}] has no used segments"
            )));
        }
        // Published segments are readable as soon as they are published.
        Ok(Json(json!({ ds: 100.0 })))
    })
    .await
}

/// Marks segments (all of a datasource, or as the body selects) used or unused, and shows
/// queries the change.
fn mark(app: &AppState, ds: &str, selection: SegmentSelection, used: bool) -> Answer {
    let catalog = app.ingestion.catalog();
    let changed = if used {
        catalog.mark_used(ds, &selection)?
    } else {
        catalog.mark_unused(ds, &selection)?
    };
    app.ingestion.visible().refresh(catalog.as_ref(), ds)?;
    Ok(Json(json!({"numChangedSegments": changed})))
}

async fn mark_all_unused(State(app): State<Arc<AppState>>, Path(ds): Path<String>) -> Answer {
    blocking(move || mark(&app, &ds, SegmentSelection::All, false)).await
}

/// `{"interval": "start/end"}` or `{"segmentIds": [...]}`.
fn selection(body: &[u8]) -> Result<SegmentSelection, ApiError> {
    let body: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?;
    if let Some(interval) = body.get("interval").and_then(|i| i.as_str()) {
        let (start, end) = parse_interval(interval).ok_or_else(|| {
            ApiError::bad_request(format!("interval '{interval}' is not an ISO interval"))
        })?;
        return Ok(SegmentSelection::Interval(start, end));
    }
    if let Some(ids) = body.get("segmentIds").and_then(|i| i.as_array()) {
        return Ok(SegmentSelection::Ids(
            ids.iter()
                .filter_map(|i| i.as_str().map(String::from))
                .collect(),
        ));
    }
    Err(ApiError::bad_request(
        "the body needs an interval or segmentIds",
    ))
}

async fn mark_unused(
    State(app): State<Arc<AppState>>,
    Path(ds): Path<String>,
    body: Bytes,
) -> Answer {
    let selection = selection(&body)?;
    blocking(move || mark(&app, &ds, selection, false)).await
}

async fn mark_used(
    State(app): State<Arc<AppState>>,
    Path(ds): Path<String>,
    body: Bytes,
) -> Answer {
    let selection = selection(&body)?;
    blocking(move || mark(&app, &ds, selection, true)).await
}

async fn metadata_segments(State(app): State<Arc<AppState>>, Query(params): Params) -> Answer {
    blocking(move || {
        let catalog = app.ingestion.catalog();
        let names: Vec<String> = match params.get("datasources") {
            Some(list) => list.split(',').map(String::from).collect(),
            None => catalog.datasources()?,
        };
        let mut all = Vec::new();
        for name in names {
            all.extend(catalog.segments(&name, true)?.iter().map(descriptor_json));
        }
        Ok(Json(Value::Array(all)))
    })
    .await
}

/// The server's settings under the names of Druid's runtime properties that mean the same.
async fn properties(State(app): State<Arc<AppState>>) -> Json<Value> {
    let mut properties = json!({"druid.service": "millrace"});
    if let Some(listening) = app.identity.listening.get() {
        let (plaintext, tls) = listening.ports();
        properties["druid.host"] = json!(listening.address.ip().to_string());
        properties["druid.plaintextPort"] = json!(plaintext.to_string());
        properties["druid.tlsPort"] = json!(tls.to_string());
        properties["druid.enableTlsPort"] = json!(listening.tls.to_string());
    }
    Json(properties)
}

async fn status() -> Json<Value> {
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "modules": [],
        "memory": {},
    }))
}
