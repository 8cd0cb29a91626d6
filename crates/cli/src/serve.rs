//! `millrace serve`: the server with Druid's HTTP API over a data directory, until Ctrl-C or
//! SIGTERM.

use std::net::ToSocketAddrs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use millrace_ksml::config::{DefinitionSource, RunnerConfig};
use millrace_ksml::load::namespace_of;
use millrace_log::EmbeddedLogConfig;
use millrace_server::auth::Authenticator;
use millrace_server::{ConnectionLimits, ServeOptions, Server};

use crate::hosted::Hosted;
use crate::user::UsersFileArg;

/// How `millrace serve` listens and whom it lets in.
#[derive(clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    users: UsersFileArg,
    /// The port to listen on (0: any free port; the address is printed).
    #[arg(long, default_value_t = 8888)]
    port: u16,
    /// The address to listen on. Any but a loopback address needs authentication (see
    /// `millrace user add`) or --open-to-anyone.
    #[arg(long, default_value = "127.0.0.1")]
    bind: String,
    /// Serve a non-loopback address without authentication: anyone who reaches it may do
    /// everything.
    #[arg(long)]
    open_to_anyone: bool,
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Connections served at once; more wait to be accepted.
    #[arg(long, default_value_t = ConnectionLimits::default().max_connections)]
    max_connections: usize,
    /// How often the coordinator's duties run: auto-compaction of the datasources with a
    /// compaction config, and marking segments unused that stayed overshadowed since the
    /// previous run (an ISO-8601 period, as Druid's druid.coordinator.period).
    #[arg(long, default_value = "PT60S", value_parser = coordinator_period)]
    coordinator_period: Duration,
    /// KSML definition files to run inside the server, next to its supervisors and on its log
    /// (or on the Kafka cluster --config names). Each runs as its own application,
    /// `<application.id>-<name>`, listed and started or stopped at /ksml/v1/definitions; one
    /// that fails to load is reported there and in the log, and the rest run.
    #[arg(long, num_args = 1.., value_name = "FILE")]
    definitions: Vec<PathBuf>,
    /// A KSML runner config (ksml-runner.yaml) for the definitions: its properties, and
    /// definitions of its own.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Memory for segment columns decoded by queries, in MiB: later queries read them from
    /// memory instead of the segment files; the least recently used go first (0: none kept).
    #[arg(long, default_value_t = 1024)]
    column_cache_mib: usize,
}

/// The KSML definitions `serve` was given, hosted on the server's log (or the config's Kafka
/// cluster); None when it was given none.
fn hosted_definitions(
    args: &ServeArgs,
    server: &Server,
    data_dir: &Path,
) -> Result<Option<Arc<Hosted>>, String> {
    if args.definitions.is_empty() && args.config.is_none() {
        return Ok(None);
    }
    let mut config = match &args.config {
        Some(path) => RunnerConfig::load(path).map_err(|problems| {
            problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        })?,
        None => RunnerConfig::default(),
    };
    for file in &args.definitions {
        config
            .definitions
            .push((namespace_of(file), DefinitionSource::File(file.clone())));
    }
    let mut names: Vec<&String> = config.definitions.iter().map(|(name, _)| name).collect();
    names.sort();
    if let Some(pair) = names.windows(2).find(|pair| pair[0] == pair[1]) {
        return Err(format!(
            "two definitions are named '{}' (a definition's name is its file name without extension)",
            pair[0]
        ));
    }
    let log = match config.bootstrap_servers() {
        Some(_) => crate::connect_kafka(&config)?,
        None => server.log(),
    };
    let state_dir = match config.kafka.get("state.dir") {
        Some(dir) => PathBuf::from(dir),
        None => data_dir.join("state"),
    };
    Ok(Some(Arc::new(Hosted::new(log, config, state_dir))))
}

/// A period of fixed length, at least one second.
fn coordinator_period(text: &str) -> Result<Duration, String> {
    let period = millrace_segments::spec::Period::parse(text)?;
    match period.fixed_millis() {
        Some(millis) if millis >= 1000 => Ok(Duration::from_millis(millis)),
        _ => Err(format!(
            "'{text}' must be a fixed period of at least one second, such as PT60S"
        )),
    }
}

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

/// Whether every address `bind` names is a loopback address.
fn is_loopback(bind: &str) -> bool {
    (bind, 0)
        .to_socket_addrs()
        .is_ok_and(|mut addresses| addresses.all(|a| a.ip().is_loopback()))
}

/// Serves until a shutdown signal.
pub fn run(args: ServeArgs) -> Result<(), String> {
    let users_file = args.users.path();
    let auth = Arc::new(Authenticator::open(&users_file)?);
    if !auth.is_on() && !args.open_to_anyone && !is_loopback(&args.bind) {
        return Err(format!(
            "refusing to serve {} without authentication: add a user with `millrace user add NAME --role admin` (users file {}), or pass --open-to-anyone",
            args.bind,
            users_file.display()
        ));
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(millrace_server::tls::acceptor(cert, key)?),
        _ => None,
    };
    let options = ServeOptions {
        tls,
        limits: ConnectionLimits {
            max_connections: args.max_connections,
            ..ConnectionLimits::default()
        },
        auth: Some(auth.clone()),
        coordinator_period: Some(args.coordinator_period),
    };
    let data_dir = args.users.data_dir();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))?;
    runtime.block_on(async {
        let server = Server::open(
            data_dir,
            EmbeddedLogConfig::default(),
            args.column_cache_mib.saturating_mul(1 << 20),
        )
        .map_err(|e| e.to_string())?;
        let definitions = hosted_definitions(&args, &server, data_dir)?;
        if let Some(definitions) = &definitions {
            server.host_definitions(definitions.clone());
            definitions.start_all();
        }
        let (bind, port) = (&args.bind, args.port);
        let listener = tokio::net::TcpListener::bind((bind.as_str(), port))
            .await
            .map_err(|e| format!("cannot listen on {bind}:{port}: {e}"))?;
        let address = listener
            .local_addr()
            .map_err(|e| format!("cannot listen on {bind}:{port}: {e}"))?;
        let scheme = if options.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let access = if auth.is_on() {
            format!(
                "authentication on: {} user(s) in {}",
                auth.user_count(),
                users_file.display()
            )
        } else {
            "open to anyone who reaches it".to_string()
        };
        eprintln!(
            "millrace is serving {scheme}://{address} (data directory {}; {access})",
            data_dir.display()
        );
        server.serve(listener, options, shutdown_signal()).await;
        Ok(())
    })
}
