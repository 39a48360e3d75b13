//! `GET /api/v1/ws`: the caller's live changes as JSON text frames
//! `{"type", "at", "position", ...}`.
//!
//! - Auth: the same token, as `?access_token=` or `Authorization: Bearer`.
//! - `?since=<position>` replays the frames after it from a bounded ring;
//!   a position the ring no longer holds gets one `resync` frame (re-GET).
//! - Every client has a bounded queue ([`crate::GatewayConfig::ws_client_buffer`]);
//!   a client that lets it fill, or whose socket does not take a frame within
//!   `ws_send_timeout`, is closed with code [`CLOSE_TOO_SLOW`] instead of
//!   making the gateway hold more memory.
//! - The first frame is `hello` with the current `position`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{
    CloseFrame, Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection,
};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;

use crate::api::bearer;
use crate::auth::Caller;
use crate::problem::Problem;
use crate::view::{Frame, Replay, rfc3339};
use crate::{Shared, Stats};

/// Close code for a client that does not keep up (application range 4000–4999).
pub const CLOSE_TOO_SLOW: u16 = 4008;
/// Close code when the token expires: reconnect with a fresh one.
pub const CLOSE_TOKEN_EXPIRED: u16 = 4001;
/// Close code sent when the gateway shuts down ("going away").
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// Largest message a client may send us (we expect none but pings).
const MAX_CLIENT_MESSAGE_BYTES: usize = 4 * 1024;
/// How long the close handshake may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

struct Client {
    agent_id: String,
    supervisor: bool,
    tx: mpsc::Sender<Frame>,
    too_slow: Arc<AtomicBool>,
}

/// The connected WebSocket clients.
#[derive(Default)]
pub struct Hub {
    next_id: AtomicU64,
    clients: Mutex<HashMap<u64, Client>>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").field("clients", &self.len()).finish()
    }
}

impl Hub {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Client>> {
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn register(&self, caller: &Caller, tx: mpsc::Sender<Frame>, too_slow: Arc<AtomicBool>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(
            id,
            Client {
                agent_id: caller.id.clone(),
                supervisor: caller.is_supervisor(),
                tx,
                too_slow,
            },
        );
        id
    }

    fn unregister(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Queues each frame for the clients that may see it, never waiting: a
    /// client whose queue is full is dropped as too slow.
    pub fn dispatch(&self, frames: &[Frame], stats: &Stats) {
        let mut clients = self.lock();
        clients.retain(|_, client| {
            for frame in frames {
                if !frame.audience.includes(&client.agent_id, client.supervisor) {
                    continue;
                }
                match client.tx.try_send(frame.clone()) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        client.too_slow.store(true, Ordering::Release);
                        stats.ws_clients_too_slow.fetch_add(1, Ordering::Relaxed);
                        kernel::metrics::global().add("sb_gateway_ws_too_slow_total", "gateway", 1);
                        return false; // dropping the sender ends the client's queue
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return false,
                }
            }
            true
        });
    }
}

#[derive(Debug, Deserialize)]
pub struct WsQuery {
    access_token: Option<String>,
    since: Option<String>,
}

/// `GET /api/v1/ws`.
#[utoipa::path(
    get,
    path = "/api/v1/ws",
    tag = "live",
    params(
        ("access_token" = Option<String>, Query, description = "The JWT, when no Authorization header can be set"),
        ("since" = Option<u64>, Query, description = "Last position seen: replay what came after it"),
    ),
    responses(
        (status = 101, description = "WebSocket of JSON text frames: hello, offer, offer_withdrawn, conversation, message, message_status, wrapup_required, wrapup_done, presence, resync"),
        (status = 400, description = "Not a WebSocket request or a bad `since`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing, expired or badly signed token", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn handler(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    query: Result<Query<WsQuery>, axum::extract::rejection::QueryRejection>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let query = match query {
        Ok(Query(q)) => q,
        Err(e) => return Problem::bad_request("invalid_query", e.body_text()).into_response(),
    };
    let token = match bearer(&headers) {
        Some(t) => Some(t.to_owned()),
        None => query.access_token.clone(),
    };
    let caller = match crate::api::authenticate(&shared, token.as_deref()) {
        Ok(c) => c,
        Err(p) => return p.into_response(),
    };
    let since = match query.since.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => match s.parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => {
                return Problem::bad_request(
                    "invalid_since",
                    "`since` must be a frame position (an unsigned integer)",
                )
                .into_response();
            }
        },
    };
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(e) => return Problem::bad_request("not_a_websocket", e.body_text()).into_response(),
    };
    if shared.hub.len() >= shared.config.max_ws_clients {
        return Problem::unavailable(
            "too_many_connections",
            "the gateway has as many WebSockets open as it takes; retry later",
        )
        .into_response();
    }
    upgrade
        .max_message_size(MAX_CLIENT_MESSAGE_BYTES)
        .on_upgrade(move |socket| serve_socket(shared, caller, since, socket))
}

async fn serve_socket(
    shared: Arc<Shared>,
    caller: Caller,
    since: Option<u64>,
    mut socket: WebSocket,
) {
    let (tx, mut rx) = mpsc::channel(shared.config.ws_client_buffer.max(1));
    let too_slow = Arc::new(AtomicBool::new(false));
    // Register and read the replay under the view's read lock: no frame can be
    // produced in between, so each one is either replayed or queued live.
    let (client_id, head, replay) = {
        let view = shared.view();
        let id = shared.hub.register(&caller, tx, too_slow.clone());
        let replay = since.map(|s| view.replay(s, &caller.id, caller.is_supervisor()));
        (id, view.head_position(), replay)
    };
    shared.sessions.socket_opened(&caller.id, shared.clock.now());
    let now = rfc3339(shared.clock.now());
    let mut greeting = vec![
        json!({ "type": "hello", "at": now, "position": head, "agentId": caller.id }).to_string(),
    ];
    match replay {
        None => {}
        Some(Replay::Resync) => {
            greeting.push(json!({ "type": "resync", "at": now, "position": head }).to_string())
        }
        Some(Replay::Frames(frames)) => greeting.extend(frames.iter().map(|f| f.text.to_string())),
    }
    let timeout = shared.config.ws_send_timeout;
    let mut shutdown = shared.shutdown_signal();
    let mut outcome = Outcome::ClientLeft;
    for text in greeting {
        if !send(&mut socket, text, timeout).await {
            outcome = Outcome::TooSlow;
            break;
        }
    }
    // Heartbeat: a client that answers nothing (not even our pings) for two
    // intervals is gone (a laptop that lost its network never closes its
    // socket), so its session can be found lost (B1.5).
    let heartbeat = heartbeat_interval(shared.config.session_timeout);
    let mut pings = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    let mut last_heard = tokio::time::Instant::now();
    if outcome == Outcome::ClientLeft {
        outcome = loop {
            tokio::select! {
                _ = pings.tick() => {
                    if last_heard.elapsed() > heartbeat * 2 {
                        tracing::info!(agent = %caller.id, "closing a silent WebSocket");
                        break Outcome::Silent;
                    }
                    if !matches!(tokio::time::timeout(timeout, socket.send(Message::Ping(Default::default()))).await, Ok(Ok(()))) {
                        break Outcome::TooSlow;
                    }
                }
                frame = rx.recv() => match frame {
                    Some(frame) => {
                        if !send(&mut socket, frame.text.to_string(), timeout).await {
                            break Outcome::TooSlow;
                        }
                    }
                    None => break if too_slow.load(Ordering::Acquire) { Outcome::TooSlow } else { Outcome::ClientLeft },
                },
                incoming = socket.recv() => match incoming {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break Outcome::ClientLeft,
                    // Pings are answered by the library; pongs and anything else only prove life.
                    Some(Ok(_)) => last_heard = tokio::time::Instant::now(),
                },
                () = shared.clock.sleep_until(caller.expires_at.saturating_mul(1000)) => break Outcome::TokenExpired,
                () = shutdown.wait() => break Outcome::ShuttingDown,
            }
        };
    }
    shared.hub.unregister(client_id);
    // A silent client was last alive when it was last heard from.
    let silent_ms = if outcome == Outcome::Silent {
        i64::try_from(last_heard.elapsed().as_millis()).unwrap_or(0)
    } else {
        0
    };
    shared.sessions.socket_closed(&caller.id, shared.clock.now() - silent_ms);
    let close = match outcome {
        Outcome::ClientLeft => None,
        Outcome::Silent => Some((CLOSE_GOING_AWAY, "no answer to pings")),
        Outcome::TokenExpired => {
            Some((CLOSE_TOKEN_EXPIRED, "the token expired: reconnect with a fresh one"))
        }
        Outcome::TooSlow => {
            if !too_slow.swap(true, Ordering::AcqRel) {
                shared.stats.ws_clients_too_slow.fetch_add(1, Ordering::Relaxed);
                kernel::metrics::global().add("sb_gateway_ws_too_slow_total", "gateway", 1);
            }
            tracing::info!(agent = %caller.id, "closing a WebSocket client that does not keep up");
            Some((CLOSE_TOO_SLOW, "too slow: reconnect with ?since= to catch up"))
        }
        Outcome::ShuttingDown => Some((CLOSE_GOING_AWAY, "the gateway is shutting down")),
    };
    if let Some((code, reason)) = close {
        let frame = Message::Close(Some(CloseFrame { code, reason: reason.into() }));
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, socket.send(frame)).await;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    ClientLeft,
    TokenExpired,
    Silent,
    TooSlow,
    ShuttingDown,
}

/// How often the server pings: often enough that a dead client is noticed
/// well within the session timeout, never more than every 20 s.
fn heartbeat_interval(session_timeout: Duration) -> Duration {
    (session_timeout / 4).clamp(Duration::from_secs(1), Duration::from_secs(20))
}

async fn send(socket: &mut WebSocket, text: String, timeout: Duration) -> bool {
    matches!(
        tokio::time::timeout(timeout, socket.send(Message::Text(text.into()))).await,
        Ok(Ok(()))
    )
}
