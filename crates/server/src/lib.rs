//! The millrace server: one process hosting the embedded log, the metadata catalog,
//! supervisors and tasks, and the HTTP API on Druid's paths (plus topics, the data generator
//! and KSML definitions over HTTP).

pub mod auth;
mod compaction_api;
mod connections;
mod coordinator_api;
mod datagen_api;
pub mod definitions_api;
mod error_bodies;
mod indexer_api;
mod metrics_api;
mod native_api;
pub mod results;
pub mod source;
mod sql_api;
pub mod tls;
mod topics_api;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use millrace_catalog::{Catalog, SqliteCatalog};
use millrace_datagen::Jobs;
use millrace_ingest::{IngestError, Ingestion};
use millrace_kafka::{KafkaLog, KafkaSettings};
use millrace_log::{EmbeddedLog, EmbeddedLogConfig, Log};
use millrace_query::SqlEngine;
use serde_json::{Value, json};
use tokio_rustls::TlsAcceptor;
use tower_http::timeout::RequestBodyTimeoutLayer;

use auth::Authenticator;
pub use connections::ConnectionLimits;
use source::{Listening, ServerIdentity, ServerSource};

/// The largest request body accepted (a batch of produced records is the largest).
pub const MAX_BODY_BYTES: usize = 64 << 20;

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Log(#[from] millrace_log::LogError),
    #[error(transparent)]
    Catalog(#[from] millrace_catalog::CatalogError),
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}

/// What the HTTP handlers share.
pub struct AppState {
    pub ingestion: Arc<Ingestion>,
    pub engine: SqlEngine,
    pub log: Arc<dyn Log>,
    /// Who the server is (its address is set when it listens).
    pub identity: Arc<ServerIdentity>,
    /// The data directory (absolute).
    pub data_dir: PathBuf,
    /// The data generator's jobs.
    pub datagen: Jobs,
    /// The KSML definitions the server runs, when it was given any.
    pub definitions: OnceLock<Arc<dyn definitions_api::DefinitionHost>>,
    /// Query counts and latencies, for `/metrics`.
    pub metrics: metrics_api::ServerMetrics,
}

/// A server over a data directory.
pub struct Server {
    state: Arc<AppState>,
}

/// How the server meets its clients.
#[derive(Clone, Default)]
pub struct ServeOptions {
    /// Serve HTTPS with this.
    pub tls: Option<TlsAcceptor>,
    pub limits: ConnectionLimits,
    /// Check requests against users (see [`auth`]); None serves everyone.
    pub auth: Option<Arc<Authenticator>>,
    /// How often the coordinator's duties run (auto-compaction, marking overshadowed
    /// segments unused); None: never.
    pub coordinator_period: Option<std::time::Duration>,
}

/// An error answer: a status and a JSON body.
pub struct ApiError(StatusCode, Value);

impl ApiError {
    /// Druid's `{"error": message}` shape of the indexer and coordinator APIs.
    pub fn plain(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError(status, json!({"error": message.into()}))
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::plain(StatusCode::NOT_FOUND, message)
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::plain(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(self.1)).into_response()
    }
}

impl From<IngestError> for ApiError {
    fn from(error: IngestError) -> ApiError {
        match error {
            IngestError::NoSupervisor(id) => {
                ApiError::not_found(format!("Cannot find any supervisor with id: [{id}]"))
            }
            IngestError::Spec(e) => ApiError::bad_request(e.to_string()),
            other => ApiError::plain(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
        }
    }
}

impl From<millrace_catalog::CatalogError> for ApiError {
    fn from(error: millrace_catalog::CatalogError) -> ApiError {
        ApiError::plain(StatusCode::INTERNAL_SERVER_ERROR, error.to_string())
    }
}

impl From<millrace_log::LogError> for ApiError {
    fn from(error: millrace_log::LogError) -> ApiError {
        ApiError::plain(StatusCode::INTERNAL_SERVER_ERROR, error.to_string())
    }
}

/// Runs blocking work (catalog, log, supervisor hand-offs) off the async threads.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| {
        ApiError::plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("a worker failed: {e}"),
        )
    })?
}

impl Server {
    /// Opens the data directory: the embedded log, the catalog (`catalog.db`) and ingestion,
    /// which resumes every stored supervisor. Queries keep up to `column_cache_bytes` of
    /// decoded segment columns in memory.
    pub fn open(
        data_dir: &Path,
        log_config: EmbeddedLogConfig,
        column_cache_bytes: usize,
    ) -> Result<Server, ServerError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| ServerError::Io(format!("creating {}", data_dir.display()), e))?;
        // Segment files are read by absolute path (queries address them as URLs).
        let data_dir = &std::fs::canonicalize(data_dir)
            .map_err(|e| ServerError::Io(format!("resolving {}", data_dir.display()), e))?;
        let log: Arc<dyn Log> = Arc::new(EmbeddedLog::open(data_dir, log_config)?);
        let catalog: Arc<dyn Catalog> =
            Arc::new(SqliteCatalog::open(&data_dir.join("catalog.db"))?);
        let ingestion = Arc::new(Ingestion::open(
            log.clone(),
            catalog,
            data_dir,
            Some(Arc::new(|properties: &[(String, String)]| {
                KafkaLog::open(KafkaSettings::from_given(properties.iter().cloned())?)
            })),
        )?);
        let identity = Arc::new(ServerIdentity::new());
        let source = ServerSource(ingestion.clone(), identity.clone());
        let engine = SqlEngine::with_column_cache(Arc::new(source), column_cache_bytes);
        Ok(Server {
            state: Arc::new(AppState {
                ingestion,
                engine,
                datagen: datagen_api::jobs(log.clone(), data_dir),
                log,
                identity,
                data_dir: data_dir.clone(),
                definitions: OnceLock::new(),
                metrics: Default::default(),
            }),
        })
    }

    /// The server's log, for work that runs next to it (KSML definitions).
    pub fn log(&self) -> Arc<dyn Log> {
        self.state.log.clone()
    }

    /// Hosts KSML definitions: the server lists and controls them over HTTP and stops them
    /// when it shuts down. Only the first host given counts.
    pub fn host_definitions(&self, host: Arc<dyn definitions_api::DefinitionHost>) {
        let _ = self.state.definitions.set(host);
    }

    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Every route of the API, behind authentication (when on), the body limits, and the
    /// layer that makes every error answer JSON.
    pub fn router(&self, options: &ServeOptions) -> Router {
        let mut router = Router::new()
            .merge(sql_api::routes())
            .merge(indexer_api::routes())
            .merge(coordinator_api::routes())
            .merge(compaction_api::routes())
            .merge(topics_api::routes())
            .merge(datagen_api::routes())
            .merge(native_api::routes())
            .merge(metrics_api::routes())
            .merge(definitions_api::routes())
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .layer(middleware::from_fn(error_bodies::refuse_oversized_bodies))
            .layer(RequestBodyTimeoutLayer::new(options.limits.body_timeout))
            .with_state(self.state.clone());
        if let Some(auth) = &options.auth {
            router = router.layer(middleware::from_fn_with_state(auth.clone(), auth::check));
        }
        router.layer(middleware::from_fn(error_bodies::json_errors))
    }

    /// Serves until `shutdown` completes, then stops the data generator's jobs (keeping what
    /// they made), the KSML definitions (committing what they processed) and ingestion
    /// without publishing anything half-done (unpublished records are read again on the next
    /// start).
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        options: ServeOptions,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) {
        let address: Option<SocketAddr> = listener.local_addr().ok();
        if let Some(address) = address {
            let tls = options.tls.is_some();
            let _ = self
                .state
                .identity
                .listening
                .set(Listening { address, tls });
        }
        tracing::info!(?address, tls = options.tls.is_some(), "serving");
        let router = self.router(&options);
        let coordinator = options
            .coordinator_period
            .map(|period| self.state.ingestion.start_coordinator(period));
        connections::serve_connections(listener, router, options.tls, options.limits, shutdown)
            .await;
        let state = self.state.clone();
        let _ = tokio::task::spawn_blocking(move || {
            state.datagen.stop_all();
            if let Some(definitions) = state.definitions.get() {
                definitions.shutdown();
            }
            state.ingestion.shutdown();
            if let Some(coordinator) = coordinator {
                let _ = coordinator.join();
            }
        })
        .await;
    }
}
