//! The embedded EventStoreDB-compatible server: the subset of the HTTP
//! (AtomPub) API in reference §11, over a durable single-node log.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use eventlog::server::{Auth, Server, ServerConfig};
//! let server = Server::bind(ServerConfig {
//!     data_dir: "/var/lib/switchboard/eventstore".into(),
//!     listen: "127.0.0.1:2113".parse()?,
//!     auth: Auth::default(),
//! })
//! .await?;
//! println!("event store at http://{}", server.local_addr());
//! server.run(async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```

mod http;
pub mod log;
pub mod store;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

pub use store::StoreOpenError;

/// Largest request body accepted (a whole append batch); above it: 413.
pub const MAX_REQUEST_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Largest event (data + metadata); above it: 413, like the real server's 4 MiB cap.
pub const MAX_EVENT_BYTES: usize = 4 * 1024 * 1024;
/// Largest `{count}` of a feed read. The real server fails with 500 above
/// 4096; we answer 400.
pub const MAX_PAGE_EVENTS: u64 = 4096;
/// Page size of `GET /streams/{s}` and `GET /streams/%24all` without a count.
pub const DEFAULT_PAGE_EVENTS: u64 = 20;
/// A feed page stops early (with correct links) once its events reach this size.
pub const MAX_PAGE_BYTES: usize = 32 * 1024 * 1024;
/// A filtered `$all` read examines at most this many events per request and
/// then answers with what it found and a link to continue (maybe empty).
pub const MAX_FILTER_SCAN_EVENTS: usize = 262_144;
/// Long polls (`ES-LongPoll`) are cut to this many seconds.
pub const MAX_LONG_POLL_SECS: u64 = 60;
/// Longest stream name, in bytes.
pub const MAX_STREAM_NAME_BYTES: usize = 2048;
/// Longest event type, in bytes.
pub const MAX_EVENT_TYPE_BYTES: usize = 1024;

/// Who may use the server.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// HTTP Basic with these credentials, sent pre-emptively; `/ping` and
    /// `/info` stay anonymous, as on the real server.
    Basic { user: String, password: String },
    /// No authentication (the real server's `--insecure`).
    Insecure,
}

impl Default for Auth {
    /// The real server's default `admin:changeit`.
    fn default() -> Self {
        Auth::Basic { user: "admin".to_owned(), password: "changeit".to_owned() }
    }
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Basic { user, .. } => write!(f, "Basic({user}:***)"),
            Auth::Insecure => f.write_str("Insecure"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Directory of the log file (created if missing).
    pub data_dir: PathBuf,
    /// Address to listen on; port 0 picks a free one (see [`Server::local_addr`]).
    pub listen: SocketAddr,
    pub auth: Auth,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Open(#[from] StoreOpenError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("the HTTP server failed: {0}")]
    Serve(std::io::Error),
}

/// A bound, recovered, not yet serving event store.
#[derive(Debug)]
pub struct Server {
    listener: tokio::net::TcpListener,
    local_addr: SocketAddr,
    store: Arc<store::Store>,
    auth: Auth,
}

impl Server {
    /// Opens the log (recovering it after a crash) and binds the listener.
    pub async fn bind(config: ServerConfig) -> Result<Server, ServerError> {
        let data_dir = config.data_dir.clone();
        let store = tokio::task::spawn_blocking(move || store::Store::open(&data_dir))
            .await
            .map_err(|e| ServerError::Serve(std::io::Error::other(e)))??;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| ServerError::Listen { addr: config.listen, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| ServerError::Listen { addr: config.listen, source })?;
        Ok(Server { listener, local_addr, store, auth: config.auth })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` completes, then lets requests in flight finish
    /// (long polls end early) and stops the writer. Every acknowledged append
    /// is already on disk, so stopping loses nothing.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let app = http::router(http::AppState {
            store: self.store.clone(),
            auth: http::AuthCheck::new(&self.auth),
            local_addr: self.local_addr,
            stopping: stop_rx,
        });
        tracing::info!(addr = %self.local_addr, auth = ?self.auth, "event store listening");
        use axum::serve::ListenerExt as _;
        let listener = self.listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                shutdown.await;
                let _ = stop_tx.send(true);
            })
            .await;
        self.store.stop().await;
        tracing::info!("event store stopped");
        served.map_err(ServerError::Serve)
    }
}
