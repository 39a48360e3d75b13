//! The gateway: the one door agent desktops, supervisor tools and
//! integrations use (`shared/spec/GATEWAY-API.md`).
//!
//! It holds no domain rules. It
//! - authenticates every call (HS256 JWT, [`auth`]) and authorizes it (B8.1:
//!   agents see and act on their own presence, offers and conversations;
//!   supervisors on everything);
//! - turns calls into commands over NATS (`kernel::commands::call_answer`,
//!   verbs from `sb_proto::verbs`) and answers with the new state once its
//!   read model has applied the stream version the service reported
//!   (read-your-writes, bounded by [`READ_YOUR_WRITES_WAIT`]);
//! - serves read models folded from the event log ([`view`]), and pushes
//!   the caller's changes over a WebSocket ([`ws`]) with `since` replays;
//! - moves agents whose session is gone to `Idle(disconnected)` and sends
//!   their offers back (B1.5, [`sessions`]);
//! - publishes its OpenAPI 3.1 document ([`openapi`]) and a small web agent
//!   desktop at `/`.
//!
//! Shape: [`Gateway::bind`] then [`Gateway::run`]; [`GatewayOptions::extra_routes`]
//! is where the WhatsApp webhook router is merged in.

pub mod api;
pub mod auth;
pub mod desktop;
pub mod dto;
pub mod openapi;
pub mod problem;
pub mod replay;
pub mod sessions;
pub mod stats;
pub mod stats_api;
pub mod view;
pub mod ws;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use axum::Router;
use bus::Bus;
use eventlog::{EventStore, RecordedEvent};
use kernel::{Clock, Readiness, Shutdown};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use auth::{Caller, Role, issue_token, verify_token};

/// The longest a call that changed something waits for the read model to
/// show the change before answering anyway.
pub const READ_YOUR_WRITES_WAIT: Duration = Duration::from_secs(2);
/// Largest request body (a 4096-character message is at most 16 KiB of UTF-8).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Stream prefixes the gateway's read models follow.
pub const FOLLOWED_PREFIXES: [&str; 5] =
    ["agent-", "wrapup-", "config-", "conversation-", "queue-"];

/// Configuration (`SWITCHBOARD_GATEWAY_LISTEN`, `SWITCHBOARD_JWT_SECRET`,
/// `SWITCHBOARD_SESSION_TIMEOUT_SECS`).
#[derive(Clone)]
pub struct GatewayConfig {
    pub listen: SocketAddr,
    pub jwt_secret: String,
    /// B1.5: no WebSocket and no authenticated call for this long = session lost.
    pub session_timeout: Duration,
    /// Frames kept for `since` replays.
    pub ws_ring_frames: usize,
    /// Frames queued for one WebSocket client before it is cut off as too slow.
    pub ws_client_buffer: usize,
    /// Longest one WebSocket write may take before the client is cut off as too slow.
    pub ws_send_timeout: Duration,
    /// Open WebSockets at most; more are refused with 503 `too_many_connections`.
    pub max_ws_clients: usize,
    /// API calls handled at once; more are refused with 503 `overloaded`.
    pub max_in_flight: usize,
}

impl std::fmt::Debug for GatewayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayConfig")
            .field("listen", &self.listen)
            .field("jwt_secret", &"<redacted>")
            .field("session_timeout", &self.session_timeout)
            .field("ws_ring_frames", &self.ws_ring_frames)
            .field("ws_client_buffer", &self.ws_client_buffer)
            .field("ws_send_timeout", &self.ws_send_timeout)
            .field("max_ws_clients", &self.max_ws_clients)
            .field("max_in_flight", &self.max_in_flight)
            .finish()
    }
}

impl GatewayConfig {
    pub fn new(listen: SocketAddr, jwt_secret: impl Into<String>) -> GatewayConfig {
        GatewayConfig {
            listen,
            jwt_secret: jwt_secret.into(),
            session_timeout: Duration::from_secs(60),
            ws_ring_frames: view::DEFAULT_RING_FRAMES,
            ws_client_buffer: 256,
            ws_send_timeout: Duration::from_secs(10),
            max_ws_clients: 10_000,
            max_in_flight: 1024,
        }
    }
}

/// Extra wiring the caller adds.
#[derive(Default)]
pub struct GatewayOptions {
    /// Merged into the gateway's router, e.g. `whatsapp::webhook::router(config, sink)`
    /// (`/webhooks/whatsapp`). It must not claim `/api/v1/*`, `/`, `/healthz`, `/readyz`, `/metrics`.
    pub extra_routes: Option<Router>,
    /// More readiness flags for `/readyz` (the gateway's own read model is always one).
    pub readiness: Vec<Readiness>,
}

impl std::fmt::Debug for GatewayOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayOptions")
            .field("extra_routes", &self.extra_routes.is_some())
            .finish()
    }
}

/// Counters a test or an operator can read.
#[derive(Debug, Default)]
pub struct Stats {
    pub ws_clients_too_slow: std::sync::atomic::AtomicU64,
    pub sessions_lost: std::sync::atomic::AtomicU64,
}

/// What every handler shares.
pub struct Shared {
    pub config: GatewayConfig,
    pub bus: Bus,
    pub clock: Clock,
    view: RwLock<view::View>,
    /// B9.4 reporting projection, fed the same events as `view`.
    report: RwLock<stats::Stats>,
    /// B9.5: the event-store client, for reading one conversation's stream.
    pub streams: std::sync::OnceLock<Arc<dyn replay::StreamReader>>,
    /// Events applied so far; read-your-writes waiters watch it.
    progress: watch::Sender<u64>,
    pub hub: ws::Hub,
    pub sessions: sessions::Sessions,
    pub stats: Stats,
    pub ready: Readiness,
    /// Permits for API calls in flight.
    in_flight: Arc<tokio::sync::Semaphore>,
    /// Triggered when [`Gateway::run`]'s shutdown is: WebSockets close on it.
    closing: (kernel::ShutdownTrigger, Shutdown),
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("listen", &self.config.listen).finish_non_exhaustive()
    }
}

impl Shared {
    pub fn new(config: GatewayConfig, bus: Bus, clock: Clock) -> Shared {
        let started = clock.now();
        Shared {
            view: RwLock::new(view::View::new(config.ws_ring_frames)),
            report: RwLock::new(stats::Stats::default()),
            streams: std::sync::OnceLock::new(),
            progress: watch::Sender::new(0),
            hub: ws::Hub::default(),
            sessions: sessions::Sessions::new(started),
            stats: Stats::default(),
            ready: Readiness::default(),
            closing: Shutdown::new(),
            in_flight: Arc::new(tokio::sync::Semaphore::new(config.max_in_flight.max(1))),
            config,
            bus,
            clock,
        }
    }

    pub fn view(&self) -> RwLockReadGuard<'_, view::View> {
        self.view.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The B9.4 statistics projection.
    pub fn report(&self) -> RwLockReadGuard<'_, stats::Stats> {
        self.report.read().unwrap_or_else(|p| p.into_inner())
    }

    fn view_mut(&self) -> RwLockWriteGuard<'_, view::View> {
        self.view.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Folds one event in and pushes its frames to the connected clients
    /// (under the write lock, so a WebSocket registering under the read lock
    /// sees each frame either in its replay or live, never both or neither).
    pub fn apply(&self, event: &RecordedEvent) {
        self.report.write().unwrap_or_else(|p| p.into_inner()).apply(event);
        let applied = {
            let mut view = self.view_mut();
            let frames = view.apply(event);
            if !frames.is_empty() {
                self.hub.dispatch(&frames, &self.stats);
            }
            view.events_applied
        };
        self.progress.send_replace(applied);
    }

    /// Waits (bounded) until the read model has applied `stream` at `version`.
    pub async fn caught_up(&self, stream: &str, version: i64) {
        let Ok(version) = u64::try_from(version) else { return };
        if stream.is_empty() {
            return;
        }
        let mut progress = self.progress.subscribe();
        let deadline = tokio::time::Instant::now() + READ_YOUR_WRITES_WAIT;
        loop {
            if self.view().has_applied(stream, version) {
                return;
            }
            match tokio::time::timeout_at(deadline, progress.changed()).await {
                Ok(Ok(())) => {}
                _ => {
                    tracing::warn!(%stream, version, "read model did not catch up in time; answering anyway");
                    return;
                }
            }
        }
    }

    pub fn shutdown_signal(&self) -> Shutdown {
        self.closing.1.clone()
    }

    pub fn now_secs(&self) -> i64 {
        self.clock.now().div_euclid(1000)
    }
}

/// A bound gateway, ready to [`run`](Gateway::run).
pub struct Gateway<S> {
    listener: TcpListener,
    shared: Arc<Shared>,
    store: S,
    router: Router,
}

impl<S> std::fmt::Debug for Gateway<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").field("shared", &self.shared).finish_non_exhaustive()
    }
}

impl<S: EventStore + Clone + 'static> Gateway<S> {
    /// Binds the listener and builds the routes; nothing runs until [`Gateway::run`].
    pub async fn bind(
        config: GatewayConfig,
        bus: Bus,
        store: S,
        clock: Clock,
    ) -> std::io::Result<Gateway<S>> {
        Gateway::bind_with(config, bus, store, clock, GatewayOptions::default()).await
    }

    pub async fn bind_with(
        config: GatewayConfig,
        bus: Bus,
        store: S,
        clock: Clock,
        options: GatewayOptions,
    ) -> std::io::Result<Gateway<S>> {
        let listener = TcpListener::bind(config.listen).await?;
        let shared = Arc::new(Shared::new(config, bus, clock));
        let _ = shared.streams.set(Arc::new(store.clone()));
        let mut readiness = vec![shared.ready.clone()];
        readiness.extend(options.readiness);
        let mut router = api::router(shared.clone())
            .merge(kernel::health::router(readiness))
            .merge(desktop::router());
        if let Some(extra) = options.extra_routes {
            router = router.merge(extra);
        }
        Ok(Gateway { listener, shared, store, router })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The shared state (read model, stats), for tests and the wiring.
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Merges more routes before running (another way to add the webhook).
    pub fn merge(mut self, routes: Router) -> Gateway<S> {
        self.router = self.router.merge(routes);
        self
    }

    /// Follows the log, sweeps lost sessions and serves HTTP until shutdown.
    pub async fn run(self, shutdown: Shutdown) -> std::io::Result<()> {
        let Gateway { listener, shared, store, router } = self;
        let projection = tokio::spawn({
            let shared = shared.clone();
            let shutdown = shutdown.clone();
            let prefixes = FOLLOWED_PREFIXES.iter().map(|p| (*p).to_owned()).collect();
            let ready = shared.ready.clone();
            async move {
                kernel::follow::run_projection(
                    store,
                    prefixes,
                    |e| shared.apply(e),
                    ready,
                    shutdown,
                )
                .await;
            }
        });
        let sweeper = tokio::spawn(sessions::run_sweeper(shared.clone(), shutdown.clone()));
        let mut stop = shutdown.clone();
        let closing = shared.closing.0.clone();
        let served = axum::serve(listener, router.into_make_service())
            .with_graceful_shutdown(async move {
                stop.wait().await;
                closing.trigger();
            })
            .await;
        let _ = projection.await;
        let _ = sweeper.await;
        served
    }
}

#[cfg(test)]
mod tests {
    /// ARCHITECTURE invariant: the gateway holds no domain rules, so it never
    /// depends on a domain crate; it only sends their commands (`sb_proto`).
    #[test]
    fn the_jwt_secret_never_shows_in_debug_output() {
        let config = super::GatewayConfig::new(
            "127.0.0.1:0".parse().unwrap_or(([127, 0, 0, 1], 0).into()),
            "hunter2",
        );
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn the_gateway_depends_on_no_domain_crate() {
        let manifest = include_str!("../Cargo.toml");
        for domain in ["agent-presence", "wrap-up", "conversation", "routing"] {
            assert!(
                !manifest.lines().any(|l| l.trim_start().starts_with(domain)),
                "the gateway must not depend on `{domain}`"
            );
        }
    }
}
