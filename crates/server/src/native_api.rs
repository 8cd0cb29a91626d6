//! Druid's native query endpoint: `POST /druid/v2` (and `/druid/v2/`, with `?pretty`), the
//! JSON queries pydruid's client, Grafana's and Superset's Druid connectors and Turnilo send;
//! and `GET /druid/v2/datasources`. Errors carry Druid's legacy fields (error,
//! errorMessage, errorClass, host) next to the newer druidException ones.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use millrace_query::native::{self, NativeError};
use serde_json::{Value, json};

use crate::AppState;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/druid/v2", post(query))
        .route("/druid/v2/", post(query))
        .route("/druid/v2/datasources", get(datasources))
}

/// An error answer with both of Druid's shapes.
fn error(status: StatusCode, error: &str, class: &str, message: String) -> Response {
    let category = if status.is_client_error() {
        "INVALID_INPUT"
    } else {
        "RUNTIME_FAILURE"
    };
    let body = json!({
        "error": error,
        "errorMessage": message,
        "errorClass": class,
        "host": null,
        "errorCode": if status.is_client_error() { "invalidInput" } else { "runtimeFailure" },
        "persona": if status.is_client_error() { "USER" } else { "OPERATOR" },
        "category": category,
        "context": {},
    });
    (status, Json(body)).into_response()
}

async fn query(
    State(app): State<Arc<AppState>>,
    Query(params): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let request: Value = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "Json parse failed",
                "com.fasterxml.jackson.core.JsonParseException",
                e.to_string(),
            );
        }
    };
    let started = std::time::Instant::now();
    let answer = native::run(&app.engine, &request).await;
    app.metrics
        .native
        .record(started.elapsed(), answer.is_err());
    match answer {
        Ok(answer) => {
            let text = match params.contains_key("pretty") {
                true => serde_json::to_string_pretty(&answer),
                false => serde_json::to_string(&answer),
            }
            .unwrap_or_else(|_| "[]".into());
            ([(header::CONTENT_TYPE, "application/json")], text).into_response()
        }
        Err(NativeError::Invalid(message)) => error(
            StatusCode::BAD_REQUEST,
            "Unknown exception",
            "org.apache.druid.error.DruidException",
            message,
        ),
        Err(NativeError::Execution(message)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Unknown exception",
            "org.apache.druid.query.QueryException",
            message,
        ),
    }
}

/// The queryable datasources' names, as a broker lists them.
async fn datasources(State(app): State<Arc<AppState>>) -> Json<Value> {
    let mut names = app.ingestion.visible().names();
    names.sort();
    Json(json!(names))
}
