//! Sending through the Graph API: `POST {graph_url}/{version}/{phone_number_id}/messages`
//! (reference §6), Meta's error body as a typed [`SendError`] classified by
//! code (§7.4), a pure [`RetryPolicy`], and the 24-hour window (B4.6, §7.2).

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Secret;
use crate::inbound::send_to;

/// Meta's limit for a text body, in characters (Unicode scalar values, B4.2).
pub const MAX_TEXT_CHARS: usize = 4096;

/// Default for the whole request (connect + answer).
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(15);

/// Graph answers are small; anything past this is not read.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// How much of a non-Meta error body is kept for the log.
const MAX_ERROR_BODY_CHARS: usize = 512;

/// Where and as whom to send (`SWITCHBOARD_WHATSAPP_GRAPH_URL`, `_GRAPH_VERSION`, `_ACCESS_TOKEN`).
#[derive(Debug, Clone)]
pub struct GraphConfig {
    /// `https://graph.facebook.com`, or the sandbox's `http://127.0.0.1:8090`.
    pub base_url: String,
    /// The version segment, e.g. `v23.0`.
    pub version: String,
    pub access_token: Secret,
    pub timeout: Duration,
}

impl GraphConfig {
    pub fn new(
        base_url: impl Into<String>,
        version: impl Into<String>,
        token: impl Into<Secret>,
    ) -> Self {
        GraphConfig {
            base_url: base_url.into(),
            version: version.into(),
            access_token: token.into(),
            timeout: DEFAULT_SEND_TIMEOUT,
        }
    }

    /// The send endpoint for one business number.
    pub fn messages_url(&self, phone_number_id: &str) -> String {
        format!(
            "{}/{}/{}/messages",
            self.base_url.trim_end_matches('/'),
            self.version,
            phone_number_id
        )
    }
}

/// One agent text message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundText {
    /// The customer: E.164 (`+447700900123`) or bare digits; sent as bare digits.
    pub to: String,
    pub body: String,
    /// Quote this customer message (`context.message_id`).
    pub reply_to_whatsapp_id: Option<String>,
}

/// What Meta answered to an accepted send. Accepted, not delivered: statuses follow by webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendReceipt {
    /// `messages[0].id`, the wamid statuses will name.
    pub whatsapp_message_id: String,
    /// `contacts[0].wa_id`, which may differ from the input (Brazil, Mexico).
    pub wa_id: String,
}

/// Whether trying again can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Throttling, transient server trouble, network: back off and try again.
    Retryable,
    /// Will fail the same way again: record it on the message.
    Permanent,
}

/// A send that did not return a message id.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Meta's error body (`{"error":{"code",…}}`).
    #[error("whatsapp error {code} (HTTP {http_status}): {message}")]
    Api { http_status: u16, code: i64, message: String, details: String, fbtrace_id: String },
    /// A non-2xx answer without Meta's error body (a proxy, an outage page).
    #[error("graph answered HTTP {http_status}: {body}")]
    Http { http_status: u16, body: String },
    /// No answer: connect, timeout, reset.
    #[error("graph unreachable: {0}")]
    Network(String),
    /// 2xx but no `messages[0].id`.
    #[error("graph answer is not a send receipt: {0}")]
    Malformed(String),
}

impl SendError {
    /// WhatsApp's error code, for the message's failure record.
    pub fn code(&self) -> Option<i64> {
        match self {
            SendError::Api { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Classified by code first (Meta: "build logic on code", not on HTTP
    /// status), then by HTTP status for bodies without a code.
    pub fn retry(&self) -> Retry {
        match self {
            SendError::Api { code, http_status, .. } => classify(*code, *http_status),
            SendError::Http { http_status, .. } => {
                if *http_status == 429 || *http_status >= 500 {
                    Retry::Retryable
                } else {
                    Retry::Permanent
                }
            }
            SendError::Network(_) => Retry::Retryable,
            // Meta accepted something we cannot read; sending again could duplicate it.
            SendError::Malformed(_) => Retry::Permanent,
        }
    }

    pub fn is_retryable(&self) -> bool {
        self.retry() == Retry::Retryable
    }

    /// A short reason for the message's failure record: `(#131047) Re-engagement message`.
    pub fn reason(&self) -> String {
        match self {
            SendError::Api { message, details, .. } if !details.is_empty() => {
                format!("{message}: {details}")
            }
            other => other.to_string(),
        }
    }
}

/// Throughput (130429), pair rate (131056), WABA/app rate (80007, 4),
/// transient (1, 2, 131000, 131016), maintenance (131057) are worth retrying;
/// every other code (131047 window, 131026 undeliverable, 100 invalid
/// parameter, 131030 not allowed, 190 token, …) is permanent. Unknown codes
/// on a 5xx are treated as transient.
pub fn classify(code: i64, http_status: u16) -> Retry {
    match code {
        1 | 2 | 4 | 80007 | 130429 | 131000 | 131016 | 131056 | 131057 => Retry::Retryable,
        0
        | 10
        | 100
        | 190
        | 200..=299
        | 368
        | 131008
        | 131009
        | 131021
        | 131026
        | 131030
        | 131031
        | 131042
        | 131047
        | 131048
        | 131049
        | 131050
        | 131051
        | 131052
        | 131053 => Retry::Permanent,
        _ if http_status >= 500 || http_status == 429 => Retry::Retryable,
        _ => Retry::Permanent,
    }
}

#[derive(Serialize)]
struct TextRequest<'a> {
    messaging_product: &'static str,
    recipient_type: &'static str,
    to: String,
    r#type: &'static str,
    text: TextBody<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    context: Option<Context<'a>>,
}

#[derive(Serialize)]
struct TextBody<'a> {
    preview_url: bool,
    body: &'a str,
}

#[derive(Serialize)]
struct Context<'a> {
    message_id: &'a str,
}

/// The JSON body of a text send (reference §6.1).
pub fn text_request_body(msg: &OutboundText) -> Value {
    let req = TextRequest {
        messaging_product: "whatsapp",
        recipient_type: "individual",
        to: send_to(&msg.to),
        r#type: "text",
        text: TextBody { preview_url: false, body: &msg.body },
        context: msg.reply_to_whatsapp_id.as_deref().map(|message_id| Context { message_id }),
    };
    serde_json::to_value(req).unwrap_or(Value::Null)
}

/// A Graph API client for sends. Cheap to clone.
#[derive(Debug, Clone)]
pub struct GraphClient {
    http: reqwest::Client,
    config: GraphConfig,
}

impl GraphClient {
    pub fn new(config: GraphConfig) -> Result<Self, SendError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|e| SendError::Network(e.to_string()))?;
        Ok(GraphClient { http, config })
    }

    pub fn config(&self) -> &GraphConfig {
        &self.config
    }

    /// Sends one text message from `phone_number_id`. One attempt: the caller
    /// decides about retries with [`RetryPolicy`] (it owns ordering per
    /// conversation). The body is sent as given; limits are the domain's
    /// (B4.2) and Meta's to enforce.
    pub async fn send_text(
        &self,
        phone_number_id: &str,
        msg: &OutboundText,
    ) -> Result<SendReceipt, SendError> {
        let response = self
            .http
            .post(self.config.messages_url(phone_number_id))
            .bearer_auth(self.config.access_token.expose())
            .json(&text_request_body(msg))
            .send()
            .await
            .map_err(|e| SendError::Network(e.without_url().to_string()))?;
        let status = response.status().as_u16();
        let bytes = read_bounded(response, MAX_RESPONSE_BYTES).await?;
        if (200..300).contains(&status) {
            parse_receipt(&bytes)
        } else {
            Err(parse_error(status, &bytes))
        }
    }
}

impl GraphClient {
    /// [`send_text`](Self::send_text), retried on retryable errors after the
    /// delays of `policy`; `random` supplies the jitter (`rand::random` in
    /// production, a constant in tests). Returns the last error when the
    /// policy gives up.
    ///
    /// A network error after the request left can mean Meta accepted it: a
    /// retry may then send the message twice. Meta offers no idempotency key
    /// for sends, so this is the price of not losing messages.
    pub async fn send_text_retrying(
        &self,
        phone_number_id: &str,
        msg: &OutboundText,
        policy: &RetryPolicy,
        mut random: impl FnMut() -> f64 + Send,
    ) -> Result<SendReceipt, SendError> {
        let mut attempt = 0;
        loop {
            match self.send_text(phone_number_id, msg).await {
                Ok(receipt) => return Ok(receipt),
                Err(error) => match policy.delay_after(&error, attempt, random()) {
                    Some(delay) => {
                        tracing::warn!(%error, attempt, delay_ms = delay.as_millis() as u64, "send failed; retrying");
                        tokio::time::sleep(delay).await;
                        attempt += 1;
                    }
                    None => return Err(error),
                },
            }
        }
    }
}

/// Reads at most `limit` bytes of a response body; a longer one is cut (an
/// error body is only logged, a receipt is a few hundred bytes).
async fn read_bounded(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, SendError> {
    let mut out = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| SendError::Network(e.to_string()))? {
        let room = limit.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= limit {
            break;
        }
    }
    Ok(out)
}

#[derive(Deserialize)]
struct ReceiptBody {
    #[serde(default)]
    contacts: Vec<ReceiptContact>,
    #[serde(default)]
    messages: Vec<ReceiptMessage>,
}

#[derive(Deserialize)]
struct ReceiptContact {
    #[serde(default)]
    wa_id: String,
}

#[derive(Deserialize)]
struct ReceiptMessage {
    #[serde(default)]
    id: String,
}

/// Reads a success body: `{"messages":[{"id":"wamid…"}], "contacts":[{"wa_id"}]}`.
pub fn parse_receipt(body: &[u8]) -> Result<SendReceipt, SendError> {
    let parsed: ReceiptBody =
        serde_json::from_slice(body).map_err(|e| SendError::Malformed(e.to_string()))?;
    let id = parsed.messages.into_iter().next().map(|m| m.id).unwrap_or_default();
    if id.is_empty() {
        return Err(SendError::Malformed("no messages[0].id".into()));
    }
    Ok(SendReceipt {
        whatsapp_message_id: id,
        wa_id: parsed.contacts.into_iter().next().map(|c| c.wa_id).unwrap_or_default(),
    })
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    message: String,
    code: i64,
    #[serde(default)]
    error_data: Option<ErrorData>,
    #[serde(default)]
    fbtrace_id: String,
}

#[derive(Deserialize)]
struct ErrorData {
    #[serde(default)]
    details: String,
}

/// Reads a non-2xx answer: Meta's error body when it is one, else the status
/// and the start of the body.
pub fn parse_error(http_status: u16, body: &[u8]) -> SendError {
    match serde_json::from_slice::<ErrorEnvelope>(body) {
        Ok(ErrorEnvelope { error }) => SendError::Api {
            http_status,
            code: error.code,
            message: error.message,
            details: error.error_data.map(|d| d.details).unwrap_or_default(),
            fbtrace_id: error.fbtrace_id,
        },
        Err(_) => SendError::Http {
            http_status,
            body: String::from_utf8_lossy(body).chars().take(MAX_ERROR_BODY_CHARS).collect(),
        },
    }
}

/// Capped exponential backoff with jitter, as a pure function: the caller
/// passes the attempt number and a random value, so tests and simulations are
/// deterministic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Delay before the first retry (attempt 0), before jitter.
    pub base: Duration,
    /// No delay is longer than this.
    pub max_delay: Duration,
    /// Retries after the first try; `attempt >= max_retries` gives up.
    pub max_retries: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_millis(500),
            max_delay: Duration::from_secs(64),
            max_retries: 6,
        }
    }
}

impl RetryPolicy {
    /// The capped delay for `attempt` (0-based) with "equal jitter": half
    /// fixed, half scaled by `random` (taken in `[0, 1]`, clamped): never
    /// zero, never above `max_delay`.
    pub fn backoff(&self, attempt: u32, random: f64) -> Duration {
        self.jittered(self.base.saturating_mul(2u32.saturating_pow(attempt)), random)
    }

    /// Whether and how long to wait before retrying after `error` on
    /// `attempt` (0-based): `None` for permanent errors or when retries are
    /// used up. Pair rate limits (131056) wait 4^attempt seconds as Meta asks
    /// (reference §7.3), capped and jittered the same way.
    pub fn delay_after(&self, error: &SendError, attempt: u32, random: f64) -> Option<Duration> {
        if attempt >= self.max_retries || !error.is_retryable() {
            return None;
        }
        if error.code() == Some(131056) {
            let secs = 4u64.saturating_pow(attempt);
            return Some(self.jittered(Duration::from_secs(secs), random));
        }
        Some(self.backoff(attempt, random))
    }

    fn jittered(&self, raw: Duration, random: f64) -> Duration {
        let capped = raw.min(self.max_delay);
        let random = if random.is_nan() { 0.0 } else { random.clamp(0.0, 1.0) };
        let half = capped / 2;
        half + half.mul_f64(random)
    }
}

/// WhatsApp's customer-service window: 24 h after the customer's last message (B4.6).
pub const CUSTOMER_SERVICE_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

/// When the window closes, from the WhatsApp `timestamp` of the customer's
/// last message (not the time it reached us).
pub fn window_closes_at(last_customer_message_at: SystemTime) -> SystemTime {
    last_customer_message_at + CUSTOMER_SERVICE_WINDOW
}

/// A free-form message would arrive after the window closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the 24-hour WhatsApp customer-service window closed {closed_secs_ago} s ago; only a template can be sent"
)]
pub struct WindowClosed {
    pub closed_at: SystemTime,
    pub closed_secs_ago: u64,
}

/// `Ok` while `now` is before `closes_at`.
pub fn check_window(now: SystemTime, closes_at: SystemTime) -> Result<(), WindowClosed> {
    match now.duration_since(closes_at) {
        Err(_) => Ok(()),
        Ok(ago) => Err(WindowClosed { closed_at: closes_at, closed_secs_ago: ago.as_secs() }),
    }
}

/// A WhatsApp `timestamp` (Unix seconds) as a `SystemTime`; `None` if negative.
pub fn unix_seconds(seconds: i64) -> Option<SystemTime> {
    let secs = u64::try_from(seconds).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: i64, http_status: u16) -> SendError {
        SendError::Api {
            http_status,
            code,
            message: String::new(),
            details: String::new(),
            fbtrace_id: String::new(),
        }
    }

    #[test]
    fn throttling_and_transient_codes_are_retryable() {
        for code in [130429, 131056, 131000, 131016, 131057, 80007, 4, 1, 2] {
            assert!(api(code, 400).is_retryable(), "{code}");
        }
        assert!(SendError::Network("reset".into()).is_retryable());
        assert!(SendError::Http { http_status: 502, body: String::new() }.is_retryable());
        assert!(api(999_999, 503).is_retryable());
    }

    #[test]
    fn b4_6_window_and_permanent_codes_are_not_retried() {
        for code in [131047, 131026, 100, 131030, 190, 10, 368, 131051] {
            assert_eq!(api(code, 400).retry(), Retry::Permanent, "{code}");
        }
        // Code wins over status.
        assert_eq!(api(131047, 500).retry(), Retry::Permanent);
        assert!(!SendError::Http { http_status: 404, body: String::new() }.is_retryable());
    }

    #[test]
    fn backoff_grows_is_capped_and_jitter_is_bounded() {
        let p = RetryPolicy {
            base: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
            max_retries: 5,
        };
        assert_eq!(p.backoff(0, 0.0), Duration::from_millis(50));
        assert_eq!(p.backoff(0, 1.0), Duration::from_millis(100));
        assert_eq!(p.backoff(3, 1.0), Duration::from_millis(800));
        assert_eq!(p.backoff(10, 1.0), Duration::from_secs(2));
        assert_eq!(p.backoff(u32::MAX, 0.5), Duration::from_millis(1500));
        assert_eq!(p.backoff(1, f64::NAN), Duration::from_millis(100));
        assert_eq!(p.backoff(1, 7.0), Duration::from_millis(200));
        assert_eq!(p.delay_after(&api(130429, 400), 5, 0.0), None);
        assert_eq!(p.delay_after(&api(131047, 400), 0, 0.0), None);
        assert_eq!(p.delay_after(&api(131056, 400), 1, 1.0), Some(Duration::from_secs(2)));
        let p = RetryPolicy { max_delay: Duration::from_secs(600), ..p };
        assert_eq!(p.delay_after(&api(131056, 400), 2, 1.0), Some(Duration::from_secs(16)));
    }

    #[test]
    fn b4_6_window_closes_24h_after_the_customers_whatsapp_timestamp() {
        let last = unix_seconds(1_761_739_200).unwrap();
        let closes = window_closes_at(last);
        assert_eq!(closes, unix_seconds(1_761_739_200 + 86_400).unwrap());
        assert_eq!(check_window(closes - Duration::from_secs(1), closes), Ok(()));
        let err = check_window(closes + Duration::from_secs(90), closes).unwrap_err();
        assert_eq!(err.closed_secs_ago, 90);
        assert!(check_window(closes, closes).is_err());
        assert_eq!(unix_seconds(-1), None);
    }

    #[test]
    fn text_body_matches_the_reference_shape() {
        let body = text_request_body(&OutboundText {
            to: "+44 7700-900123".into(),
            body: "hello".into(),
            reply_to_whatsapp_id: Some("wamid.X".into()),
        });
        assert_eq!(
            body,
            serde_json::json!({"messaging_product":"whatsapp","recipient_type":"individual","to":"447700900123",
                "type":"text","text":{"preview_url":false,"body":"hello"},"context":{"message_id":"wamid.X"}})
        );
    }

    #[test]
    fn meta_error_bodies_are_typed() {
        let e = parse_error(400, br#"{"error":{"message":"(#100) Param text['body'] must be at most 4096 characters long.","type":"OAuthException","code":100,"fbtrace_id":"Ab"}}"#);
        assert_eq!(e.code(), Some(100));
        assert!(e.reason().contains("4096"));
        let e = parse_error(502, b"<html>bad gateway</html>");
        assert!(matches!(e, SendError::Http { http_status: 502, .. }));
        assert!(parse_receipt(br#"{"messages":[]}"#).is_err());
    }
}
