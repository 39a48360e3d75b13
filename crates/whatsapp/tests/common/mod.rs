//! Shared helpers: the webhook router on a free port with a recording sink,
//! the sandbox on a free port, reference payloads.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use whatsapp::Secret;
use whatsapp::inbound::InboundBatch;
use whatsapp::sandbox::{Sandbox, SandboxConfig, SandboxHandle};
use whatsapp::signature;
use whatsapp::webhook::{self, InboundSink, SinkError, WebhookConfig};

pub const APP_SECRET: &str = "test_app_secret";
pub const VERIFY_TOKEN: &str = "verify-me";
pub const ACCESS_TOKEN: &str = "sandbox-token-for-tests";
/// Reference §4.5 identities.
pub const PHONE_NUMBER_ID: &str = "110220330440550";
pub const BUSINESS_NUMBER: &str = "15550001234";

/// How long a test waits for a real HTTP callback before failing.
pub const CALLBACK_TIMEOUT: Duration = Duration::from_secs(10);

/// Records every delivered batch; fails while `failing` is set.
pub struct RecordingSink {
    tx: mpsc::UnboundedSender<InboundBatch>,
    pub failing: AtomicBool,
}

impl InboundSink for RecordingSink {
    async fn deliver(&self, batch: InboundBatch) -> Result<(), SinkError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(SinkError::Unavailable("conversation service down (test)".into()));
        }
        self.tx.send(batch).map_err(|_| SinkError::Failed("test receiver gone".into()))
    }
}

/// A webhook router served on 127.0.0.1:0; stops when dropped.
pub struct WebhookServer {
    pub addr: SocketAddr,
    pub sink: Arc<RecordingSink>,
    pub delivered: mpsc::UnboundedReceiver<InboundBatch>,
    _stop: oneshot::Sender<()>,
}

impl WebhookServer {
    pub async fn start() -> Self {
        Self::start_with(WebhookConfig::new(APP_SECRET, VERIFY_TOKEN)).await
    }

    pub async fn start_with(config: WebhookConfig) -> Self {
        let (tx, delivered) = mpsc::unbounded_channel();
        let sink = Arc::new(RecordingSink { tx, failing: AtomicBool::new(false) });
        let app = webhook::router(config, sink.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        WebhookServer { addr, sink, delivered, _stop: stop }
    }

    pub fn url(&self) -> String {
        format!("http://{}{}", self.addr, webhook::WEBHOOK_PATH)
    }

    /// POSTs `body` signed with `secret` (None: no signature header).
    pub async fn post(&self, body: &[u8], secret: Option<&str>) -> reqwest::Response {
        let mut req = reqwest::Client::new()
            .post(self.url())
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(secret) = secret {
            req = req.header("x-hub-signature-256", signature::sign(&Secret::new(secret), body));
        }
        req.send().await.unwrap()
    }

    /// Everything delivered so far, without waiting.
    pub fn drain(&mut self) -> Vec<InboundBatch> {
        let mut out = Vec::new();
        while let Ok(b) = self.delivered.try_recv() {
            out.push(b);
        }
        out
    }

    /// The next delivered batch, waiting for a real callback at most [`CALLBACK_TIMEOUT`].
    pub async fn next(&mut self) -> InboundBatch {
        tokio::time::timeout(CALLBACK_TIMEOUT, self.delivered.recv())
            .await
            .expect("no webhook delivery before the timeout")
            .expect("sink channel closed")
    }
}

/// The sandbox on 127.0.0.1:0, status webhooks to `webhook_url`.
pub struct SandboxServer {
    pub base_url: String,
    pub handle: SandboxHandle,
    _stop: oneshot::Sender<()>,
}

impl SandboxServer {
    pub async fn start(webhook_url: Option<String>) -> Self {
        let mut config =
            SandboxConfig::new("127.0.0.1:0".parse().unwrap(), ACCESS_TOKEN, APP_SECRET);
        config.webhook_url = webhook_url;
        config.status_delay = Duration::from_millis(5);
        config.numbers = vec![whatsapp::simulate::BusinessNumber {
            phone_number_id: PHONE_NUMBER_ID.into(),
            display_phone_number: BUSINESS_NUMBER.into(),
        }];
        let sandbox = Sandbox::bind(config).await.unwrap();
        let base_url = sandbox.base_url();
        let handle = sandbox.handle();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(sandbox.run(async {
            let _ = stopped.await;
        }));
        SandboxServer { base_url, handle, _stop: stop }
    }
}

/// Reference §4.5 example 1 envelope around `value`.
pub fn envelope(value: serde_json::Value) -> Vec<u8> {
    let mut value = value;
    let obj = value.as_object_mut().unwrap();
    obj.insert("messaging_product".into(), "whatsapp".into());
    obj.insert(
        "metadata".into(),
        serde_json::json!({ "display_phone_number": BUSINESS_NUMBER, "phone_number_id": PHONE_NUMBER_ID }),
    );
    serde_json::to_vec(&serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": "100200300400500", "changes": [{ "field": "messages", "value": value }] }]
    }))
    .unwrap()
}

/// An envelope with Ana Souza's contact and the given `messages[]`.
pub fn from_ana(messages: serde_json::Value) -> Vec<u8> {
    envelope(serde_json::json!({
        "contacts": [{ "profile": { "name": "Ana Souza" }, "wa_id": "447700900123" }],
        "messages": messages,
    }))
}
