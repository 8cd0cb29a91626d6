//! KSML definitions running inside the server: `GET /ksml/v1/definitions` lists them with
//! their state and metrics, `GET /ksml/v1/definitions/{name}` shows one, and `POST
//! /ksml/v1/definitions/{name}/start` and `/stop` control them. The command line provides
//! the host (it links the KSML runtime; the server does not).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::Value;

use crate::{ApiError, AppState, blocking};

/// Why a definition could not be started or found.
#[derive(Debug)]
pub enum HostError {
    NotFound(String),
    /// It would not start: it fails to load (the diagnostics say where) or already runs.
    Invalid(String),
}

/// The KSML definitions a server runs. Each is a JSON object: `name`, `file`,
/// `applicationId`, `state` (RUNNING, STOPPING, STOPPED, FAILED or INVALID), `error`, `startedAt`,
/// `pipelines`, `producers` and `metrics` (`recordsIn`, `recordsOut`, `messagesProduced`,
/// `lateRecordsDropped`, `recordsFailed`, `lag`, `storeEntries` per store, and
/// `pythonBusySeconds`: per function, the seconds threads were seen running it, sampled every
/// 100 ms).
pub trait DefinitionHost: Send + Sync {
    fn list(&self) -> Vec<Value>;
    fn get(&self, name: &str) -> Option<Value>;
    /// Loads the definition's file again and runs it.
    fn start(&self, name: &str) -> Result<Value, HostError>;
    /// Stops a run after its current batch is committed.
    fn stop(&self, name: &str) -> Result<Value, HostError>;
    /// Stops every run (the server is shutting down).
    fn shutdown(&self);
}

impl From<HostError> for ApiError {
    fn from(error: HostError) -> ApiError {
        match error {
            HostError::NotFound(message) => ApiError::not_found(message),
            HostError::Invalid(message) => ApiError::bad_request(message),
        }
    }
}

pub fn routes() -> Router<Arc<AppState>> {
    let base = "/ksml/v1/definitions";
    Router::new()
        .route(base, get(list))
        .route(&format!("{base}/{{name}}"), get(one))
        .route(&format!("{base}/{{name}}/start"), post(start))
        .route(&format!("{base}/{{name}}/stop"), post(stop))
}

type Answer = Result<Json<Value>, ApiError>;

fn host(app: &AppState) -> Result<Arc<dyn DefinitionHost>, ApiError> {
    app.definitions.get().cloned().ok_or_else(|| {
        ApiError::plain(
            StatusCode::NOT_FOUND,
            "this server runs no KSML definitions (start it with --definitions)",
        )
    })
}

async fn list(State(app): State<Arc<AppState>>) -> Answer {
    let host = host(&app)?;
    blocking(move || Ok(Json(Value::Array(host.list())))).await
}

async fn one(State(app): State<Arc<AppState>>, Path(name): Path<String>) -> Answer {
    let host = host(&app)?;
    blocking(move || {
        host.get(&name)
            .map(Json)
            .ok_or_else(|| ApiError::not_found(format!("no definition is named '{name}'")))
    })
    .await
}

async fn start(State(app): State<Arc<AppState>>, Path(name): Path<String>) -> Answer {
    let host = host(&app)?;
    blocking(move || Ok(Json(host.start(&name)?))).await
}

async fn stop(State(app): State<Arc<AppState>>, Path(name): Path<String>) -> Answer {
    let host = host(&app)?;
    blocking(move || Ok(Json(host.stop(&name)?))).await
}
