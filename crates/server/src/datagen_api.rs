//! The data generator's HTTP API with learn-druid's shapes: `POST /start`, `GET
//! /status/{name}`, `POST /stop/{name}`, `GET /list`, `GET /jobs`, and the files of `file`
//! targets (`GET /files`, `GET /file/{name}`). Served under `/datagen` and, as learn-druid's
//! clients call them, at the bare paths (Druid's `/status`, `/status/health` and
//! `/status/properties` keep their meaning; a job cannot be asked about under those names
//! there). Errors are `{"message": ...}` with status 400, as learn-druid answers.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use millrace_datagen::{FileSink, Jobs, LogSink, Sink, StdoutSink, Target};
use millrace_kafka::{KafkaLog, KafkaSettings};
use millrace_log::Log;
use serde_json::{Value, json};

use crate::{ApiError, AppState, blocking};

/// The folder of a data directory that `file` targets write into (by file name only, as
/// learn-druid keeps them in `/files`).
pub const FILES_DIR: &str = "datagen-files";

/// The jobs of a server: `log` targets reach the server's log, `kafka` targets the cluster
/// they name, `file` targets a file in the data directory's [`FILES_DIR`].
pub fn jobs(log: Arc<dyn Log>, data_dir: &FsPath) -> Jobs {
    let files = data_dir.join(FILES_DIR);
    Jobs::new(Box::new(
        move |target: &Target| -> Result<Box<dyn Sink>, String> {
            Ok(match target {
                Target::Log {
                    topic,
                    partitions,
                    key_fields,
                } => Box::new(LogSink::open(
                    log.clone(),
                    topic,
                    *partitions,
                    key_fields.clone(),
                )?),
                Target::Kafka {
                    endpoint,
                    topic,
                    key_fields,
                } => {
                    // learn-druid's notebooks sometimes write the endpoint as a URL.
                    let servers = endpoint
                        .trim_start_matches("http://")
                        .trim_start_matches("https://");
                    let kafka = KafkaLog::open(KafkaSettings::new(vec![(
                        "bootstrap.servers".into(),
                        servers.to_string(),
                    )]))?;
                    Box::new(LogSink::open(kafka, topic, None, key_fields.clone())?)
                }
                Target::File { path } => {
                    std::fs::create_dir_all(&files)
                        .map_err(|e| format!("{}: {e}", files.display()))?;
                    Box::new(FileSink::create(files.join(file_name(path)?))?)
                }
                Target::Stdout => Box::new(StdoutSink::default()),
            })
        },
    ))
}

/// The file name of a target path: where in [`FILES_DIR`] it goes.
fn file_name(path: &FsPath) -> Result<PathBuf, String> {
    path.file_name()
        .map(PathBuf::from)
        .ok_or_else(|| format!("target.path '{}' names no file", path.display()))
}

pub fn routes() -> Router<Arc<AppState>> {
    let mut router = Router::new();
    for prefix in ["/datagen", ""] {
        router = router
            .route(&format!("{prefix}/start"), post(start))
            .route(&format!("{prefix}/status/{{name}}"), get(status))
            .route(&format!("{prefix}/stop/{{name}}"), post(stop))
            .route(&format!("{prefix}/list"), get(list))
            .route(&format!("{prefix}/jobs"), get(reports))
            .route(&format!("{prefix}/files"), get(files))
            .route(&format!("{prefix}/file/{{name}}"), get(file));
    }
    router
        .route("/datagen", get(about))
        .route("/datagen/", get(about))
}

/// learn-druid's error answer.
fn message(text: String) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, json!({"message": text}))
}

type Answer = Result<Json<Value>, ApiError>;

async fn about() -> Json<Value> {
    Json(json!({"message": "Data Generator server. POST to /start to initiate an data generator."}))
}

async fn start(State(app): State<Arc<AppState>>, body: Bytes) -> Answer {
    blocking(move || app.datagen.start(&body).map(Json).map_err(message)).await
}

async fn status(State(app): State<Arc<AppState>>, Path(name): Path<String>) -> Answer {
    app.datagen.status(&name).map(Json).map_err(message)
}

async fn stop(State(app): State<Arc<AppState>>, Path(name): Path<String>) -> Answer {
    blocking(move || app.datagen.stop(&name).map(Json).map_err(message)).await
}

async fn list(State(app): State<Arc<AppState>>) -> Json<Value> {
    Json(app.datagen.list())
}

async fn reports(State(app): State<Arc<AppState>>) -> Json<Value> {
    Json(app.datagen.reports())
}

/// The files `file` targets wrote.
async fn files(State(app): State<Arc<AppState>>) -> Json<Value> {
    let mut names: Vec<String> = std::fs::read_dir(app.data_dir.join(FILES_DIR))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    Json(json!(names))
}

/// One file's JSON lines.
async fn file(
    State(app): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let path = app
        .data_dir
        .join(FILES_DIR)
        .join(file_name(FsPath::new(&name)).map_err(message)?);
    let size = tokio::fs::metadata(&path)
        .await
        .map_err(|e| message(format!("ERROR retrieving file [{name}]: {e}")))?
        .len();
    // Answers are built in memory: a file bigger than a request may be is read from the
    // data directory instead.
    if size > crate::MAX_BODY_BYTES as u64 {
        return Err(message(format!(
            "ERROR retrieving file [{name}]: it holds {size} bytes, more than this API returns; read it from the data directory's {FILES_DIR} folder"
        )));
    }
    let text = tokio::fs::read(&path)
        .await
        .map_err(|e| message(format!("ERROR retrieving file [{name}]: {e}")))?;
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], text).into_response())
}
