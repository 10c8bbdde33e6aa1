//! `flashsale-dev-registry`: serves the development stand-in for the Confluent
//! Schema Registry. NOT FOR PRODUCTION — production points at a real Confluent
//! Schema Registry. See the library docs for what is supported.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use flashsale_dev_registry::{app, AppState, BANNER};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// DEVELOPMENT STAND-IN for a Confluent Schema Registry. NOT FOR PRODUCTION:
/// production points at a real Confluent Schema Registry.
///
/// Speaks the subset of the Schema Registry REST API that our clients use
/// (Avro only), keeping its state in one JSON file under --data-dir.
/// Log verbosity follows RUST_LOG (default: info).
#[derive(Debug, Parser)]
#[command(name = "flashsale-dev-registry", version)]
struct Args {
    /// Address and port to listen on. Default: 127.0.0.1:18081 (loopback only,
    /// on purpose: the stand-in has no authentication).
    #[arg(
        long,
        env = "FLASHSALE_DEV_REGISTRY_LISTEN",
        default_value = "127.0.0.1:18081"
    )]
    listen: SocketAddr,

    /// Directory for the state file (registry.json), created if missing.
    /// Default: .dev/registry, relative to the working directory.
    #[arg(
        long,
        env = "FLASHSALE_DEV_REGISTRY_DATA_DIR",
        default_value = ".dev/registry"
    )]
    data_dir: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only help a person at a terminal; they garble log files.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    eprintln!("{BANNER}");
    tracing::warn!("development stand-in for the Confluent Schema Registry; not for production");

    let state = AppState::open(&args.data_dir)
        .with_context(|| format!("cannot open data dir {}", args.data_dir.display()))?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let local = listener
        .local_addr()
        .context("listener has no local address")?;
    tracing::info!(address = %local, data_dir = %args.data_dir.display(), "listening");

    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .context("server failed")?;
    tracing::info!("stopped");
    Ok(())
}

/// Cancels `token` on SIGINT or SIGTERM, so in-flight requests (and the state
/// file write they may be doing) finish before the process exits.
async fn cancel_on_signal(token: CancellationToken) {
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => tracing::info!("SIGINT received, shutting down"),
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
    token.cancel();
}
