//! A local stand-in for the Graph API (`switchboard dev`, and a test helper).
//!
//! `POST /{version}/{phone_number_id}/messages` answers like Meta (reference
//! §6, §8): a missing or wrong Bearer token gets 401 with code 190; an unknown
//! phone number id, a missing field or a text body over 4096 characters gets
//! 400 with code 100 and Meta's wording; an accepted send gets
//! `{"messaging_product","contacts":[{"input","wa_id"}],"messages":[{"id"}]}`,
//! is recorded in the outbox, and is followed by signed `sent` → `delivered` →
//! `read` status webhooks to [`SandboxConfig::webhook_url`], in that order.
//!
//! Test knobs, over HTTP:
//!
//! | route | what |
//! |---|---|
//! | `GET /sandbox/outbox` | JSON list of accepted sends ([`OutboxEntry`]), oldest first |
//! | `DELETE /sandbox/outbox` | clears it |
//! | `POST /sandbox/fail-next` `{"code":131047}` | the next valid send fails with Meta's error for that code; `"async":true` accepts it and posts a `failed` status instead; `"http_status"` overrides the status |
//! | `GET /sandbox/webhooks` | JSON list of status webhook attempts ([`WebhookAttempt`]) and their outcome |
//! | `GET /healthz` | `ok` |

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;

use crate::Secret;
use crate::graph::MAX_TEXT_CHARS;
use crate::inbound::bare_digits;
use crate::simulate::{self, BusinessNumber, StatusUpdate};

/// The access token `switchboard dev` gives both the sandbox and the sender.
pub const DEFAULT_SANDBOX_ACCESS_TOKEN: &str = "sandbox-access-token";

/// Pause before each status webhook: small, so statuses follow the send
/// visibly but quickly.
pub const DEFAULT_STATUS_DELAY: Duration = Duration::from_millis(50);

/// The outbox keeps the newest sends only.
pub const MAX_OUTBOX_ENTRIES: usize = 10_000;

/// Queued fail-next requests at most.
pub const MAX_FAIL_NEXT: usize = 100;

/// The webhook attempt log keeps the newest entries only.
pub const MAX_WEBHOOK_LOG_ENTRIES: usize = 10_000;

/// A status webhook that is not answered 200 is tried this many times in all.
pub const STATUS_WEBHOOK_ATTEMPTS: u32 = 3;

/// Pause before the first retry of a status webhook; doubles after each.
const STATUS_WEBHOOK_RETRY_DELAY: Duration = Duration::from_millis(100);

/// Largest send request accepted.
pub const MAX_SEND_BODY_BYTES: usize = 1024 * 1024;

/// Message types the sandbox accepts besides `text` (with their object present).
const OTHER_TYPES: &[&str] = &[
    "audio",
    "contacts",
    "document",
    "image",
    "interactive",
    "location",
    "reaction",
    "sticker",
    "template",
    "video",
];

#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// `SWITCHBOARD_SANDBOX_LISTEN`; port 0 picks a free one.
    pub listen: SocketAddr,
    /// The Bearer token sends must carry.
    pub access_token: Secret,
    /// Signs the status webhooks.
    pub app_secret: Secret,
    /// Where status webhooks go (`…/webhooks/whatsapp`); `None` posts none.
    pub webhook_url: Option<String>,
    /// Pause before each status webhook.
    pub status_delay: Duration,
    /// Business numbers the sandbox knows; empty accepts any phone number id
    /// (its display number is then the id itself).
    pub numbers: Vec<BusinessNumber>,
}

impl SandboxConfig {
    pub fn new(
        listen: SocketAddr,
        access_token: impl Into<Secret>,
        app_secret: impl Into<Secret>,
    ) -> Self {
        SandboxConfig {
            listen,
            access_token: access_token.into(),
            app_secret: app_secret.into(),
            webhook_url: None,
            status_delay: DEFAULT_STATUS_DELAY,
            numbers: Vec::new(),
        }
    }
}

/// One accepted send, as `GET /sandbox/outbox` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// The wamid answered.
    pub id: String,
    pub phone_number_id: String,
    /// `to` as sent.
    pub to: String,
    /// Bare digits of `to`.
    pub wa_id: String,
    #[serde(rename = "type")]
    pub message_type: String,
    /// `text.body` for text messages.
    pub text: Option<String>,
    /// `context.message_id`.
    pub reply_to: Option<String>,
    /// Unix seconds.
    pub accepted_at: i64,
    /// The request body as received.
    pub request: Value,
}

/// A `POST /sandbox/fail-next` request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailNext {
    pub code: i64,
    /// Default: 401 for 190, else 400 (Meta's status for most send errors).
    #[serde(default)]
    pub http_status: Option<u16>,
    /// Accept with 200 and report the failure as a `failed` status webhook
    /// (how 131047 often arrives, reference §7.4).
    #[serde(default, rename = "async")]
    pub asynchronous: bool,
}

/// One attempt to post a status webhook, as `GET /sandbox/webhooks` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookAttempt {
    /// The wamid the status is about.
    pub whatsapp_message_id: String,
    /// `sent`, `delivered`, `read`, `failed`.
    pub status: String,
    /// 1-based.
    pub attempt: u32,
    /// HTTP status answered; `None` when the webhook was unreachable.
    pub http_status: Option<u16>,
    pub delivered: bool,
}

#[derive(Default)]
struct Book {
    outbox: VecDeque<OutboxEntry>,
    fail_next: VecDeque<FailNext>,
    webhooks: VecDeque<WebhookAttempt>,
    sent: u64,
}

struct Inner {
    config: SandboxConfig,
    book: Mutex<Book>,
    http: reqwest::Client,
    nonce: u32,
    attempts: tokio::sync::broadcast::Sender<WebhookAttempt>,
}

impl Inner {
    fn book(&self) -> MutexGuard<'_, Book> {
        // A panic elsewhere cannot leave the book half-written: every update is one push/pop.
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// In-process access to the sandbox's records (the same as the HTTP knobs).
#[derive(Clone)]
pub struct SandboxHandle(Arc<Inner>);

impl std::fmt::Debug for SandboxHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxHandle").field("config", &self.0.config).finish_non_exhaustive()
    }
}

impl SandboxHandle {
    pub fn outbox(&self) -> Vec<OutboxEntry> {
        self.0.book().outbox.iter().cloned().collect()
    }

    pub fn clear_outbox(&self) {
        self.0.book().outbox.clear();
    }

    /// Status webhook attempts so far, oldest first.
    pub fn webhook_attempts(&self) -> Vec<WebhookAttempt> {
        self.0.book().webhooks.iter().cloned().collect()
    }

    /// Every status webhook attempt from now on, as it completes (a lagging
    /// receiver loses the oldest).
    pub fn subscribe_webhook_attempts(&self) -> tokio::sync::broadcast::Receiver<WebhookAttempt> {
        self.0.attempts.subscribe()
    }

    /// The sandbox's routes, to mount in another server instead of [`Sandbox::run`].
    pub fn router(&self) -> Router {
        router(self.clone())
    }

    fn record_attempt(&self, attempt: WebhookAttempt) {
        {
            let mut book = self.0.book();
            if book.webhooks.len() >= MAX_WEBHOOK_LOG_ENTRIES {
                book.webhooks.pop_front();
            }
            book.webhooks.push_back(attempt.clone());
        }
        // No subscriber is fine.
        let _ = self.0.attempts.send(attempt);
    }

    pub fn fail_next(&self, fail: FailNext) {
        let mut book = self.0.book();
        if book.fail_next.len() < MAX_FAIL_NEXT {
            book.fail_next.push_back(fail);
        }
    }
}

/// The sandbox server: `bind`, then `run` until `shutdown` resolves.
#[derive(Debug)]
pub struct Sandbox {
    listener: TcpListener,
    local_addr: SocketAddr,
    handle: SandboxHandle,
}

impl Sandbox {
    pub async fn bind(config: SandboxConfig) -> io::Result<Self> {
        let listener = TcpListener::bind(config.listen).await?;
        let local_addr = listener.local_addr()?;
        let http = reqwest::Client::builder()
            .timeout(simulate::WEBHOOK_POST_TIMEOUT)
            .build()
            .map_err(io::Error::other)?;
        let (attempts, _) = tokio::sync::broadcast::channel(256);
        let inner = Inner { config, book: Mutex::default(), http, nonce: rand::random(), attempts };
        Ok(Sandbox { listener, local_addr, handle: SandboxHandle(Arc::new(inner)) })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `http://<local_addr>`: the `SWITCHBOARD_WHATSAPP_GRAPH_URL` for senders.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.local_addr)
    }

    pub fn handle(&self) -> SandboxHandle {
        self.handle.clone()
    }

    /// Serves until `shutdown` resolves. Status webhooks already scheduled
    /// keep going on the runtime.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> io::Result<()> {
        tracing::info!(addr = %self.local_addr, "whatsapp sandbox listening");
        axum::serve(self.listener, router(self.handle)).with_graceful_shutdown(shutdown).await
    }
}

fn router(handle: SandboxHandle) -> Router {
    Router::new()
        .route("/{version}/{phone_number_id}/messages", post(send))
        .route("/sandbox/outbox", get(outbox).delete(clear_outbox))
        .route("/sandbox/fail-next", post(fail_next))
        .route("/sandbox/webhooks", get(webhook_attempts))
        .route("/healthz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(MAX_SEND_BODY_BYTES))
        .with_state(handle)
}

async fn outbox(State(handle): State<SandboxHandle>) -> Response {
    axum::Json(handle.outbox()).into_response()
}

async fn webhook_attempts(State(handle): State<SandboxHandle>) -> Response {
    axum::Json(handle.webhook_attempts()).into_response()
}

async fn clear_outbox(State(handle): State<SandboxHandle>) -> StatusCode {
    handle.clear_outbox();
    StatusCode::NO_CONTENT
}

async fn fail_next(State(handle): State<SandboxHandle>, body: Bytes) -> Response {
    match serde_json::from_slice::<FailNext>(&body) {
        Ok(fail) => {
            handle.fail_next(fail);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => {
            (StatusCode::BAD_REQUEST, format!("expected {{\"code\":<int>}}: {e}")).into_response()
        }
    }
}

/// Meta's error body.
fn meta_error(http_status: u16, code: i64, message: &str, details: &str) -> Response {
    let mut error = json!({
        "message": message,
        "type": "OAuthException",
        "code": code,
        "fbtrace_id": format!("Sbx{:016X}", rand::random::<u64>()),
    });
    if let (false, Some(obj)) = (details.is_empty(), error.as_object_mut()) {
        obj.insert(
            "error_data".into(),
            json!({ "messaging_product": "whatsapp", "details": details }),
        );
    }
    let status = StatusCode::from_u16(http_status).unwrap_or(StatusCode::BAD_REQUEST);
    (status, axum::Json(json!({ "error": error }))).into_response()
}

fn invalid(message: &str) -> Response {
    meta_error(400, 100, message, "")
}

/// Titles and details for the codes tests ask for (reference §7.4).
fn title_of(code: i64) -> (&'static str, &'static str) {
    match code {
        190 => ("Error validating access token", "The access token has expired or is invalid."),
        130429 => ("Rate limit hit", "Cloud API message throughput has been reached."),
        131000 => ("Something went wrong", "Something went wrong."),
        131016 => ("Service unavailable", "A service is temporarily unavailable."),
        131026 => ("Message undeliverable", "Unable to deliver message."),
        131047 => (
            "Re-engagement message",
            "Message failed to send because more than 24 hours have passed since the customer last replied to this number.",
        ),
        131056 => (
            "(Business Account, Consumer Account) pair rate limit hit",
            "Message failed to send because there were too many messages sent from this phone number to the same phone number in a short period of time.",
        ),
        _ => ("Sandbox failure", "Failure requested with POST /sandbox/fail-next."),
    }
}

/// The sandbox plays Meta, whose timestamps come from its own clock.
#[allow(clippy::disallowed_methods)]
fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

async fn send(
    State(handle): State<SandboxHandle>,
    Path((_version, phone_number_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let inner = &handle.0;
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let expected = inner.config.access_token.expose();
    if token.is_empty() || !bool::from(token.as_bytes().ct_eq(expected.as_bytes())) {
        return meta_error(401, 190, "Invalid OAuth access token - Cannot parse access token", "");
    }
    let Some(number) = business_number(&inner.config, &phone_number_id) else {
        return invalid(&format!(
            "Unsupported post request. Object with ID '{phone_number_id}' does not exist, cannot be loaded due to missing permissions, or does not support this operation"
        ));
    };
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        _ => return invalid("(#100) Invalid parameter"),
    };
    let field = |k: &str| request.get(k).and_then(Value::as_str).unwrap_or_default();

    match field("messaging_product") {
        "whatsapp" => {}
        "" => return invalid("(#100) The parameter messaging_product is required."),
        other => {
            return invalid(&format!(
                "(#100) Param messaging_product must be one of {{WHATSAPP}} - got \"{other}\"."
            ));
        }
    }
    // Mark as read / typing indicator.
    if field("status") == "read" {
        if field("message_id").is_empty() {
            return invalid("(#100) The parameter message_id is required.");
        }
        return axum::Json(json!({ "success": true })).into_response();
    }
    if !matches!(field("recipient_type"), "" | "individual" | "group") {
        return invalid("(#100) Param recipient_type must be one of {INDIVIDUAL, GROUP}.");
    }
    let to = field("to");
    if to.is_empty() {
        return invalid("(#100) The parameter to is required.");
    }
    let message_type = match field("type") {
        "" => "text",
        t => t,
    };
    let mut text = None;
    if message_type == "text" {
        let Some(b) = request.get("text").and_then(|t| t.get("body")).and_then(Value::as_str)
        else {
            return invalid("(#100) The parameter text['body'] is required.");
        };
        if b.chars().count() > MAX_TEXT_CHARS {
            return invalid("(#100) Param text['body'] must be at most 4096 characters long.");
        }
        text = Some(b.to_owned());
    } else if !OTHER_TYPES.contains(&message_type) {
        return invalid(&format!(
            "(#100) Param type must be one of the supported types - got \"{message_type}\"."
        ));
    } else if !request.get(message_type).is_some_and(Value::is_object) {
        return invalid(&format!("(#100) The parameter {message_type} is required."));
    }

    let fail = inner.book().fail_next.pop_front();
    if let Some(fail) = fail.filter(|f| !f.asynchronous) {
        let (title, details) = title_of(fail.code);
        let status = fail.http_status.unwrap_or(if fail.code == 190 { 401 } else { 400 });
        tracing::info!(code = fail.code, "sandbox failing a send as asked");
        return meta_error(status, fail.code, &format!("(#{}) {title}", fail.code), details);
    }

    let wa_id = bare_digits(to);
    let id = {
        let mut book = inner.book();
        book.sent += 1;
        let id = format!("wamid.SBX{:08X}{:016X}", inner.nonce, book.sent);
        let entry = OutboxEntry {
            id: id.clone(),
            phone_number_id: phone_number_id.clone(),
            to: to.to_owned(),
            wa_id: wa_id.clone(),
            message_type: message_type.to_owned(),
            text,
            reply_to: request
                .get("context")
                .and_then(|c| c.get("message_id"))
                .and_then(Value::as_str)
                .map(str::to_owned),
            accepted_at: now_unix(),
            request: request.clone(),
        };
        if book.outbox.len() >= MAX_OUTBOX_ENTRIES {
            book.outbox.pop_front();
        }
        book.outbox.push_back(entry);
        id
    };
    tracing::info!(%id, phone_number_id = %phone_number_id, "sandbox accepted a send");

    let statuses: Vec<(&'static str, Option<i64>)> = match fail {
        Some(f) => vec![("failed", Some(f.code))],
        None => vec![("sent", None), ("delivered", None), ("read", None)],
    };
    if let Some(url) = inner.config.webhook_url.clone() {
        tokio::spawn(post_statuses(
            handle.clone(),
            url,
            number,
            id.clone(),
            wa_id.clone(),
            statuses,
        ));
    }

    axum::Json(json!({
        "messaging_product": "whatsapp",
        "contacts": [{ "input": to, "wa_id": wa_id }],
        "messages": [{ "id": id }],
    }))
    .into_response()
}

fn business_number(config: &SandboxConfig, phone_number_id: &str) -> Option<BusinessNumber> {
    if config.numbers.is_empty() {
        return Some(BusinessNumber {
            phone_number_id: phone_number_id.to_owned(),
            display_phone_number: phone_number_id.to_owned(),
        });
    }
    config.numbers.iter().find(|n| n.phone_number_id == phone_number_id).cloned()
}

/// Posts each status as its own signed webhook, in order, one after the
/// other. A status not answered 200 is tried [`STATUS_WEBHOOK_ATTEMPTS`]
/// times (Meta retries too), then given up and logged; the next one still goes.
async fn post_statuses(
    handle: SandboxHandle,
    url: String,
    from: BusinessNumber,
    id: String,
    recipient_id: String,
    statuses: Vec<(&'static str, Option<i64>)>,
) {
    let inner = &handle.0;
    for (status, code) in statuses {
        tokio::time::sleep(inner.config.status_delay).await;
        let error = code.map(|code| {
            let (title, details) = title_of(code);
            (code, title.to_owned(), details.to_owned())
        });
        let update = StatusUpdate {
            whatsapp_message_id: id.clone(),
            status: status.to_owned(),
            recipient_id: recipient_id.clone(),
            timestamp: now_unix(),
            error,
        };
        let body = simulate::wire_bytes(&simulate::status_value(&from, &[update]));
        let mut retry_delay = STATUS_WEBHOOK_RETRY_DELAY;
        for attempt in 1..=STATUS_WEBHOOK_ATTEMPTS {
            let result =
                simulate::post_signed(&inner.http, &url, &inner.config.app_secret, body.clone())
                    .await;
            let http_status = match &result {
                Ok(()) => Some(200),
                Err(simulate::PostError::Refused { status, .. }) => Some(*status),
                Err(simulate::PostError::Network(_)) => None,
            };
            handle.record_attempt(WebhookAttempt {
                whatsapp_message_id: id.clone(),
                status: status.to_owned(),
                attempt,
                http_status,
                delivered: result.is_ok(),
            });
            match result {
                Ok(()) => {
                    tracing::debug!(%id, status, "sandbox status webhook delivered");
                    break;
                }
                Err(error) => {
                    tracing::warn!(%error, %id, status, attempt, %url, "sandbox status webhook not delivered");
                    if attempt < STATUS_WEBHOOK_ATTEMPTS {
                        tokio::time::sleep(retry_delay).await;
                        retry_delay *= 2;
                    }
                }
            }
        }
    }
}
