//! `GET`/`POST /webhooks/whatsapp`: the Cloud API callback (B8.2, B4).
//!
//! The POST answers 200 only after the [`InboundSink`] accepted the whole
//! payload, so a crash or a failing sink makes Meta deliver it again (Meta
//! retries anything but 200 for up to 7 days; reference §3). Duplicates that
//! this causes are the sink's to absorb (idempotent by WhatsApp message id).
//!
//! | case | answer |
//! |---|---|
//! | handshake with `hub.mode=subscribe` and the configured verify token | 200, `hub.challenge` as `text/plain` |
//! | handshake otherwise | 403 |
//! | POST with a missing, malformed or wrong `X-Hub-Signature-256` | 401, nothing delivered |
//! | POST body over [`WebhookConfig::max_body_bytes`] | 413 |
//! | POST signed but not a JSON object | 400 |
//! | sink failed | 503 ([`SinkError::Unavailable`]) or 500 ([`SinkError::Failed`]) |
//! | delivered (or nothing to deliver) | 200 |

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use subtle::ConstantTimeEq;

use crate::Secret;
use crate::inbound::{InboundBatch, parse_notification};
use crate::signature::{self, SIGNATURE_HEADER};

/// Where the webhook is mounted.
pub const WEBHOOK_PATH: &str = "/webhooks/whatsapp";

/// Meta sends at most 3 MB per delivery (reference §3); a smaller limit would
/// refuse real payloads forever.
pub const MAX_WEBHOOK_BODY_BYTES: usize = 3 * 1024 * 1024;

/// Receives what a webhook delivery carried. Implemented by the wiring (NATS
/// commands to the conversation service); must be idempotent by WhatsApp
/// message id, since Meta delivers at least once.
pub trait InboundSink: Send + Sync + 'static {
    /// Hands the whole batch on; `Ok` only when all of it is durably accepted.
    fn deliver(&self, batch: InboundBatch) -> impl Future<Output = Result<(), SinkError>> + Send;
}

impl<T: InboundSink> InboundSink for Arc<T> {
    fn deliver(&self, batch: InboundBatch) -> impl Future<Output = Result<(), SinkError>> + Send {
        T::deliver(self, batch)
    }
}

/// Why a batch was not accepted; either way Meta will deliver it again.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// A dependency is down or timed out (→ 503).
    #[error("inbound sink unavailable: {0}")]
    Unavailable(String),
    /// Anything else (→ 500).
    #[error("inbound sink failed: {0}")]
    Failed(String),
}

/// The webhook's settings (`SWITCHBOARD_WHATSAPP_APP_SECRET`, `SWITCHBOARD_WHATSAPP_VERIFY_TOKEN`).
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Key of `X-Hub-Signature-256`.
    pub app_secret: Secret,
    /// Expected `hub.verify_token`.
    pub verify_token: Secret,
    pub max_body_bytes: usize,
}

impl WebhookConfig {
    pub fn new(app_secret: impl Into<Secret>, verify_token: impl Into<Secret>) -> Self {
        WebhookConfig {
            app_secret: app_secret.into(),
            verify_token: verify_token.into(),
            max_body_bytes: MAX_WEBHOOK_BODY_BYTES,
        }
    }
}

struct Shared<S> {
    config: WebhookConfig,
    sink: S,
}

/// The router for [`WEBHOOK_PATH`]; merge it into the gateway's router (or
/// serve it alone): `axum::serve(listener, whatsapp::webhook::router(config, sink))`.
pub fn router<S: InboundSink>(config: WebhookConfig, sink: S) -> Router {
    let limit = config.max_body_bytes;
    Router::new()
        .route(WEBHOOK_PATH, get(handshake::<S>).post(notification::<S>))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(Arc::new(Shared { config, sink }))
}

async fn handshake<S: InboundSink>(
    State(shared): State<Arc<Shared<S>>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let mode = query.get("hub.mode").map(String::as_str);
    let token = query.get("hub.verify_token").map(String::as_str).unwrap_or_default();
    let expected = shared.config.verify_token.expose();
    let token_ok = !expected.is_empty() && bool::from(token.as_bytes().ct_eq(expected.as_bytes()));
    if mode != Some("subscribe") || !token_ok {
        tracing::warn!(mode = mode.unwrap_or_default(), "webhook verification refused");
        return StatusCode::FORBIDDEN.into_response();
    }
    match query.get("hub.challenge") {
        Some(challenge) => {
            tracing::info!("webhook verification answered");
            ([(header::CONTENT_TYPE, "text/plain")], challenge.clone()).into_response()
        }
        None => (StatusCode::BAD_REQUEST, "missing hub.challenge").into_response(),
    }
}

async fn notification<S: InboundSink>(
    State(shared): State<Arc<Shared<S>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = headers.get(SIGNATURE_HEADER).map(|v| v.as_bytes());
    if let Err(error) = signature::verify(&shared.config.app_secret, header, &body) {
        // Log what was received, never the secret or the expected value.
        tracing::warn!(%error, received = ?header.map(String::from_utf8_lossy), bytes = body.len(), "webhook refused");
        return (StatusCode::UNAUTHORIZED, error.to_string()).into_response();
    }
    let batch = match parse_notification(&body) {
        Ok(batch) => batch,
        Err(error) => {
            tracing::warn!(%error, bytes = body.len(), "signed webhook body is not a notification");
            return (StatusCode::BAD_REQUEST, error.to_string()).into_response();
        }
    };
    for skipped in &batch.skipped {
        tracing::warn!(kind = skipped.kind, id = %skipped.whatsapp_message_id, reason = skipped.reason, "webhook element skipped");
        kernel::metrics::global().add(
            "sb_webhook_elements_skipped_total",
            &format!("kind=\"{}\"", skipped.kind),
            1,
        );
    }
    for error in &batch.errors {
        tracing::warn!(code = error.code, title = %error.title, details = %error.details, phone_number_id = %error.phone_number_id, "whatsapp reported an error");
    }
    if batch.is_empty() {
        return StatusCode::OK.into_response();
    }
    let (messages, statuses) = (batch.messages.len(), batch.statuses.len());
    match shared.sink.deliver(batch).await {
        Ok(()) => {
            tracing::debug!(messages, statuses, "webhook delivered");
            StatusCode::OK.into_response()
        }
        Err(error) => {
            tracing::error!(%error, messages, statuses, "webhook not delivered; Meta will retry");
            let status = match error {
                SinkError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
                SinkError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            status.into_response()
        }
    }
}
