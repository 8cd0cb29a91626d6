//! Every error answer of the server is JSON in Druid's shapes: answers the handlers build are
//! already; this layer rewrites the rest (axum's rejections of bad paths, queries and bodies,
//! the body size limit, unknown routes and methods), keeping their status and text.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// The most of a plain-text error body kept as the message.
const MESSAGE_LIMIT: usize = 64 << 10;
/// The most of a request path repeated in a message.
const PATH_LIMIT: usize = 200;

/// Rewrites an error answer that is not JSON into Druid's error shape for its path.
pub async fn json_errors(request: Request, next: Next) -> Response {
    let sql = request.uri().path().starts_with("/druid/v2/sql");
    let method = request.method().clone();
    let mut path = request.uri().path().to_string();
    if path.len() > PATH_LIMIT {
        let cut = (0..=PATH_LIMIT)
            .rev()
            .find(|&i| path.is_char_boundary(i))
            .unwrap_or(0);
        path.truncate(cut);
        path.push_str("...");
    }
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MESSAGE_LIMIT)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let reason = status.canonical_reason().unwrap_or("Error");
    let message = if text.is_empty() {
        format!("{reason}: {method} {path}")
    } else {
        text
    };
    let body = if sql {
        let (code, category) = sql_code(status);
        druid_exception(status, code, category, &message)
    } else {
        json!({"error": message})
    };
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body.to_string())).into_response()
}

/// Refuses at once a request whose `Content-Length` is over the body limit, rather than
/// reading the body up to the limit: the client gets its 413 before uploading the rest.
pub async fn refuse_oversized_bodies(request: Request, next: Next) -> Response {
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match announced {
        Some(length) if length > crate::MAX_BODY_BYTES as u64 => (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "length limit exceeded: the body announces {length} bytes, more than {}",
                crate::MAX_BODY_BYTES
            ),
        )
            .into_response(),
        _ => next.run(request).await,
    }
}

/// The code and category Druid's SQL API gives an error of a status.
fn sql_code(status: StatusCode) -> (&'static str, &'static str) {
    match status {
        StatusCode::UNAUTHORIZED => ("unauthorized", "UNAUTHORIZED"),
        StatusCode::FORBIDDEN => ("forbidden", "FORBIDDEN"),
        StatusCode::NOT_FOUND => ("notFound", "NOT_FOUND"),
        StatusCode::REQUEST_TIMEOUT => ("timeout", "TIMEOUT"),
        s if s.is_client_error() => ("invalidInput", "INVALID_INPUT"),
        _ => ("internalServerError", "RUNTIME_FAILURE"),
    }
}

/// Druid's error shape of the SQL API (`druidException`).
pub fn druid_exception(
    status: StatusCode,
    code: &str,
    category: &str,
    message: &str,
) -> serde_json::Value {
    let persona = if status.is_client_error() {
        "USER"
    } else {
        "OPERATOR"
    };
    json!({
        "error": "druidException",
        "errorCode": code,
        "persona": persona,
        "category": category,
        "errorMessage": message,
        "context": {},
    })
}
