//! `millrace serve`: the server with Druid's HTTP API over a data directory, until Ctrl-C or
//! SIGTERM.

use std::path::Path;

use millrace_log::EmbeddedLogConfig;
use millrace_server::Server;

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {},
        _ = terminate => {},
    }
    tracing::info!(
        "stopping: tasks stop without publishing; their records are read again on the next start"
    );
}

/// Serves until a shutdown signal.
pub fn run(data_dir: &Path, bind: &str, port: u16) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))?;
    runtime.block_on(async {
        let server =
            Server::open(data_dir, EmbeddedLogConfig::default()).map_err(|e| e.to_string())?;
        let listener = tokio::net::TcpListener::bind((bind, port))
            .await
            .map_err(|e| format!("cannot listen on {bind}:{port}: {e}"))?;
        let address = listener
            .local_addr()
            .map_err(|e| format!("cannot listen on {bind}:{port}: {e}"))?;
        eprintln!(
            "millrace is serving http://{address} (data directory {})",
            data_dir.display()
        );
        server
            .serve(listener, shutdown_signal())
            .await
            .map_err(|e| e.to_string())
    })
}
