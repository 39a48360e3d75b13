//! `switchboard eventstore`: the embedded EventStoreDB-compatible event store
//! as a process of its own (the server lives in the `eventlog` crate).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use eventlog::server::{Auth, Server, ServerConfig};

/// Where the embedded store keeps its log inside Switchboard's data directory.
/// `switchboard dev` uses the same place, so both see the same events.
pub fn log_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("eventstore")
}

#[derive(Debug, Clone, Args)]
pub struct EventStoreArgs {
    /// Switchboard's data directory; the event log lives in `<DIR>/eventstore/`.
    #[arg(
        long = "data",
        visible_alias = "data-dir",
        value_name = "DIR",
        env = "SWITCHBOARD_DATA_DIR",
        default_value = "./.switchboard"
    )]
    pub data: PathBuf,
    /// Address to serve the EventStoreDB HTTP API on (port 0 picks a free one).
    #[arg(
        long,
        value_name = "ADDR",
        env = "SWITCHBOARD_EVENTSTORE_LISTEN",
        default_value = "127.0.0.1:2113"
    )]
    pub listen: SocketAddr,
    /// Basic-auth user (the real server's default).
    #[arg(long, env = "SWITCHBOARD_EVENTSTORE_USER", default_value = "admin")]
    pub user: String,
    /// Basic-auth password (the real server's default).
    #[arg(
        long,
        env = "SWITCHBOARD_EVENTSTORE_PASSWORD",
        default_value = "changeit",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub password: String,
    /// Accept requests without credentials (like the real server's --insecure).
    #[arg(long, env = "SWITCHBOARD_EVENTSTORE_INSECURE")]
    pub insecure: bool,
}

impl EventStoreArgs {
    pub fn server_config(&self) -> ServerConfig {
        ServerConfig {
            data_dir: log_dir(&self.data),
            listen: self.listen,
            auth: if self.insecure {
                Auth::Insecure
            } else {
                Auth::Basic { user: self.user.clone(), password: self.password.clone() }
            },
        }
    }
}

/// Serves until SIGINT or SIGTERM. Every acknowledged append is already on
/// disk, so a stop (or a kill) loses nothing that was acknowledged.
pub async fn run(args: EventStoreArgs) -> anyhow::Result<()> {
    let config = args.server_config();
    let data_dir = config.data_dir.clone();
    let server = Server::bind(config)
        .await
        .with_context(|| format!("cannot start the event store in {}", data_dir.display()))?;
    println!("event store listening on http://{}", server.local_addr());
    server.run(shutdown_signal()).await.context("event store failed")?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
