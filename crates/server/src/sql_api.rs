//! POST /druid/v2/sql: Druid SQL with Druid's request and response shapes (and the answer
//! to /druid/v2/sql/task, which is not supported).

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use millrace_query::{ScalarValue, SqlError};
use millrace_segments::time::parse_iso;
use serde::Deserialize;
use serde_json::Value;

use crate::AppState;
use crate::error_bodies::druid_exception;
use crate::results::{Headers, ResultFormat, render};

pub fn routes() -> Router<Arc<AppState>> {
    // pydruid and other clients post to the path with a trailing slash, which Druid accepts.
    Router::new()
        .route("/druid/v2/sql", post(sql))
        .route("/druid/v2/sql/", post(sql))
        .route("/druid/v2/sql/task", post(sql_task))
        .route("/druid/v2/sql/task/", post(sql_task))
}

/// POST /druid/v2/sql/task: Druid's multi-stage query engine (SQL INSERT/REPLACE and
/// queries run as tasks) is not here; the answer says so in Druid's error shape.
async fn sql_task() -> Response {
    sql_error(
        StatusCode::NOT_IMPLEMENTED,
        "general",
        "UNSUPPORTED",
        "SQL run as a task (/druid/v2/sql/task: INSERT, REPLACE and the multi-stage query \
         engine) is not supported: ingest with a supervisor (/druid/indexer/v1/supervisor) and \
         query with /druid/v2/sql"
            .into(),
    )
}

/// A typed query parameter.
#[derive(Debug, Deserialize)]
struct Parameter {
    #[serde(rename = "type")]
    kind: String,
    value: Value,
}

/// The JSON request.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SqlRequest {
    query: String,
    #[serde(default)]
    result_format: Option<String>,
    #[serde(default)]
    header: bool,
    #[serde(default)]
    types_header: bool,
    #[serde(default)]
    sql_types_header: bool,
    #[serde(default)]
    context: serde_json::Map<String, Value>,
    #[serde(default)]
    parameters: Vec<Parameter>,
}

/// Druid's error answer for SQL.
fn sql_error(status: StatusCode, code: &str, category: &str, message: String) -> Response {
    (
        status,
        Json(druid_exception(status, code, category, &message)),
    )
        .into_response()
}

fn invalid(message: impl Into<String>) -> Response {
    sql_error(
        StatusCode::BAD_REQUEST,
        "invalidInput",
        "INVALID_INPUT",
        message.into(),
    )
}

/// A parameter as a SQL value of its declared type.
fn scalar(parameter: &Parameter) -> Result<ScalarValue, String> {
    let kind = parameter.kind.to_ascii_uppercase();
    let value = &parameter.value;
    let bad = || format!("parameter value {value} is not a {kind}");
    if value.is_null() {
        return Ok(ScalarValue::Null);
    }
    Ok(match kind.as_str() {
        "VARCHAR" | "CHAR" => ScalarValue::Utf8(Some(match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })),
        "BIGINT" | "INTEGER" | "SMALLINT" | "TINYINT" => ScalarValue::Int64(Some(
            value
                .as_i64()
                .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
                .ok_or_else(bad)?,
        )),
        "DOUBLE" | "FLOAT" | "DECIMAL" | "REAL" => ScalarValue::Float64(Some(
            value
                .as_f64()
                .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
                .ok_or_else(bad)?,
        )),
        "BOOLEAN" => ScalarValue::Boolean(Some(value.as_bool().ok_or_else(bad)?)),
        "TIMESTAMP" | "DATE" => ScalarValue::TimestampMillisecond(
            Some(
                value
                    .as_i64()
                    .or_else(|| value.as_str().and_then(|s| parse_iso(&s.replace(' ', "T"))))
                    .ok_or_else(bad)?,
            ),
            Some("UTC".into()),
        ),
        other => return Err(format!("parameter type {other} is not supported")),
    })
}

fn query_id() -> String {
    let random = RandomState::new().hash_one(std::time::SystemTime::now());
    let more = RandomState::new().hash_one(random);
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        random >> 32,
        random >> 16 & 0xffff,
        random & 0xffff,
        more >> 48,
        more & 0xffff_ffff_ffff
    )
}

async fn sql(State(app): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_ascii_lowercase();
    let request = if content_type.starts_with("text/plain") {
        SqlRequest {
            query: String::from_utf8_lossy(&body).into_owned(),
            result_format: None,
            header: false,
            types_header: false,
            sql_types_header: false,
            context: Default::default(),
            parameters: vec![],
        }
    } else if content_type.starts_with("application/json") {
        match serde_json::from_slice::<SqlRequest>(&body) {
            Ok(request) => request,
            Err(e) => return invalid(format!("the request is not a valid SQL query: {e}")),
        }
    } else {
        return sql_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalidInput",
            "INVALID_INPUT",
            format!(
                "unsupported Content-Type '{content_type}': send application/json or text/plain"
            ),
        );
    };
    let format = match request.result_format.as_deref() {
        None => ResultFormat::Object,
        Some(name) => match ResultFormat::parse(name) {
            Some(format) => format,
            None => return invalid(format!("unknown resultFormat '{name}'")),
        },
    };
    let parameters = match request
        .parameters
        .iter()
        .map(scalar)
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(p) => p,
        Err(e) => return invalid(e),
    };
    let id = request
        .context
        .get("sqlQueryId")
        .and_then(|v| v.as_str())
        .map_or_else(query_id, String::from);
    let started = std::time::Instant::now();
    let answer = app.engine.query(&request.query, parameters).await;
    app.metrics.sql.record(started.elapsed(), answer.is_err());
    let output = match answer {
        Ok(output) => output,
        Err(SqlError::Invalid(message)) => return invalid(message),
        Err(SqlError::Execution(message)) => {
            return sql_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internalServerError",
                "RUNTIME_FAILURE",
                message,
            );
        }
    };
    let headers_wanted = Headers {
        names: request.header,
        types: request.types_header,
        sql_types: request.sql_types_header,
    };
    let body = render(&output, format, headers_wanted);
    let mut response = (StatusCode::OK, body).into_response();
    let response_headers = response.headers_mut();
    response_headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    if let Ok(value) = HeaderValue::from_str(&id) {
        response_headers.insert("X-Druid-SQL-Query-Id", value);
    }
    if request.header {
        response_headers.insert(
            "X-Druid-SQL-Header-Included",
            HeaderValue::from_static("yes"),
        );
    }
    response
}
