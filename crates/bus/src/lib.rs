//! Switchboard's bus: NATS JetStream for events, NATS request/reply for commands.
//!
//! - [`Bus::connect`] retries for a bounded time and then fails with a clear
//!   [`BusError::Unreachable`] naming the URL.
//! - [`Bus::ensure_events_stream`] creates or verifies `SB_EVENTS` (file
//!   storage, de-duplication window) idempotently.
//! - [`Bus::publish_event`] publishes an [`EventEnvelope`] with
//!   `Nats-Msg-Id` = event id, so a re-publish (say, after a crash between the
//!   log append and the publish) is dropped by JetStream.
//! - [`Bus::event_consumer`] is a durable pull consumer with explicit ack and
//!   a bound on un-acked deliveries.
//! - [`Bus::request`] / [`Bus::serve_commands`] are request/reply with
//!   timeouts and queue groups, so replicas share the load.
//!
//! Every message carries W3C `traceparent` in its headers ([`trace`]).

pub mod subjects;
pub mod trace;

use std::time::Duration;

use async_nats::{
    HeaderMap, HeaderValue,
    jetstream::{self, consumer, stream},
};
use bytes::Bytes;
use futures_util::StreamExt;
use prost::Message as _;
use sb_proto::{Service, v1::EventEnvelope};

pub use subjects::{ALL_EVENTS, EVENTS_STREAM};
pub use trace::TraceParent;

/// Header JetStream de-duplicates on.
pub const MSG_ID_HEADER: &str = "Nats-Msg-Id";
/// Header naming the event type, so consumers can route before decoding.
pub const EVENT_TYPE_HEADER: &str = "Sb-Event-Type";

/// How to reach NATS and how patient to be.
#[derive(Debug, Clone)]
pub struct BusConfig {
    pub url: String,
    /// Total time to keep retrying the first connection.
    pub connect_timeout: Duration,
    /// Default time a command request waits for its reply.
    pub request_timeout: Duration,
    /// JetStream de-duplication window of `SB_EVENTS`.
    pub duplicate_window: Duration,
    /// Client name shown by `nats-server` monitoring.
    pub name: String,
}

impl BusConfig {
    pub fn new(url: impl Into<String>) -> BusConfig {
        BusConfig {
            url: url.into(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(5),
            duplicate_window: Duration::from_secs(120),
            name: "switchboard".into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error(
        "NATS is not reachable at {url} after {attempts} attempts over {waited:?}: {last_error}. \
         Start one with `nats-server -js` or set SWITCHBOARD_NATS_URL"
    )]
    Unreachable { url: String, attempts: u32, waited: Duration, last_error: String },
    #[error("JetStream is not enabled on the NATS server at {url}: start it with `-js`")]
    JetStreamDisabled { url: String },
    #[error("stream {stream} exists with an incompatible configuration: {detail}")]
    StreamMismatch { stream: String, detail: String },
    #[error("no reply to {subject} within {timeout:?}")]
    Timeout { subject: String, timeout: Duration },
    #[error("nobody serves {subject}: is the service running?")]
    NoResponders { subject: String },
    #[error(transparent)]
    InvalidSubject(#[from] subjects::InvalidToken),
    #[error("malformed message on {subject}: {detail}")]
    Malformed { subject: String, detail: String },
    #[error("NATS {operation} failed: {detail}")]
    Nats { operation: &'static str, detail: String },
}

impl BusError {
    fn nats(operation: &'static str, e: impl std::fmt::Display) -> BusError {
        BusError::Nats { operation, detail: e.to_string() }
    }

    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            BusError::Unreachable { .. }
                | BusError::Timeout { .. }
                | BusError::NoResponders { .. }
                | BusError::Nats { .. }
        )
    }
}

/// A connection to NATS with its JetStream context.
#[derive(Clone)]
pub struct Bus {
    client: async_nats::Client,
    js: jetstream::Context,
    config: BusConfig,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus").field("url", &self.config.url).finish_non_exhaustive()
    }
}

impl Bus {
    /// Connects, retrying with backoff until `config.connect_timeout` has passed.
    pub async fn connect(config: BusConfig) -> Result<Bus, BusError> {
        let started = tokio::time::Instant::now();
        let mut attempts = 0u32;
        let mut backoff = Duration::from_millis(50);
        loop {
            attempts += 1;
            let options = async_nats::ConnectOptions::new()
                .name(&config.name)
                .connection_timeout(Duration::from_secs(2))
                .request_timeout(Some(config.request_timeout));
            match options.connect(config.url.as_str()).await {
                Ok(client) => {
                    let js = jetstream::new(client.clone());
                    return Ok(Bus { client, js, config });
                }
                Err(e) => {
                    let waited = started.elapsed();
                    if waited + backoff > config.connect_timeout {
                        return Err(BusError::Unreachable {
                            url: config.url.clone(),
                            attempts,
                            waited,
                            last_error: e.to_string(),
                        });
                    }
                    tracing::debug!(url = %config.url, attempts, error = %e, "NATS not reachable yet; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    pub fn config(&self) -> &BusConfig {
        &self.config
    }

    /// Creates `SB_EVENTS` (and the relay checkpoint stream `SB_RELAY`) if missing, or checks the existing one captures
    /// `sb.evt.>` on file storage. Safe to call from every replica at start.
    pub async fn ensure_events_stream(&self) -> Result<stream::Info, BusError> {
        let wanted = stream::Config {
            name: EVENTS_STREAM.to_owned(),
            subjects: vec![ALL_EVENTS.to_owned()],
            storage: stream::StorageType::File,
            duplicate_window: self.config.duplicate_window,
            retention: stream::RetentionPolicy::Limits,
            ..Default::default()
        };
        let relay = stream::Config {
            name: subjects::RELAY_STREAM.to_owned(),
            subjects: vec![subjects::RELAY_SUBJECTS.to_owned()],
            storage: stream::StorageType::File,
            max_messages_per_subject: 1,
            ..Default::default()
        };
        self.js
            .get_or_create_stream(relay)
            .await
            .map_err(|e| BusError::nats("create relay stream", e))?;
        let mut stream = self.js.get_or_create_stream(wanted).await.map_err(|e| {
            let text = e.to_string();
            if text.contains("not enabled") || text.contains("503") {
                BusError::JetStreamDisabled { url: self.config.url.clone() }
            } else {
                BusError::nats("create stream", text)
            }
        })?;
        let info = stream.info().await.map_err(|e| BusError::nats("stream info", e))?.clone();
        if info.config.storage != stream::StorageType::File
            || !info.config.subjects.iter().any(|s| s == ALL_EVENTS)
        {
            return Err(BusError::StreamMismatch {
                stream: EVENTS_STREAM.to_owned(),
                detail: format!(
                    "want file storage capturing {ALL_EVENTS}, found {:?} capturing {:?}",
                    info.config.storage, info.config.subjects
                ),
            });
        }
        Ok(info)
    }

    /// Publishes one event and waits for JetStream's ack. Returns whether
    /// JetStream recognised it as a duplicate (same event id inside the window).
    pub async fn publish_event(&self, envelope: &EventEnvelope) -> Result<Published, BusError> {
        let published = self.publish_events(std::slice::from_ref(envelope)).await?;
        published.into_iter().next().ok_or_else(|| BusError::Nats {
            operation: "publish",
            detail: "no acknowledgement".into(),
        })
    }

    /// Publishes events in order, pipelined: all are sent, then every ack is
    /// awaited. Fails if any is not acknowledged (re-publishing is safe).
    pub async fn publish_events(
        &self,
        envelopes: &[EventEnvelope],
    ) -> Result<Vec<Published>, BusError> {
        let mut pending = Vec::with_capacity(envelopes.len());
        for envelope in envelopes {
            let service = Service::parse(&envelope.service).ok_or_else(|| BusError::Malformed {
                subject: String::new(),
                detail: format!("unknown service `{}` in envelope", envelope.service),
            })?;
            let subject = subjects::event(service, &envelope.aggregate_id, &envelope.event_type)?;
            let mut headers = HeaderMap::new();
            headers.insert(MSG_ID_HEADER, envelope.event_id.as_str());
            headers.insert(EVENT_TYPE_HEADER, envelope.event_type.as_str());
            if let Some(tp) = envelope.trace_context.get(trace::TRACEPARENT) {
                headers.insert(trace::TRACEPARENT, tp.as_str());
            }
            let ack = self
                .js
                .publish_with_headers(subject, headers, Bytes::from(envelope.encode_to_vec()))
                .await
                .map_err(|e| BusError::nats("publish", e))?;
            pending.push(ack);
        }
        let mut published = Vec::with_capacity(pending.len());
        for ack in pending {
            let ack = ack.await.map_err(|e| BusError::nats("publish ack", e))?;
            published.push(Published { sequence: ack.sequence, duplicate: ack.duplicate });
        }
        Ok(published)
    }

    /// Saves a relay checkpoint: the last message on `sb.relay.<service>` in
    /// the `SB_RELAY` stream (one message kept per subject).
    pub async fn save_checkpoint(&self, service: Service, value: &str) -> Result<(), BusError> {
        self.js
            .publish(subjects::relay_checkpoint(service), Bytes::from(value.to_owned()))
            .await
            .map_err(|e| BusError::nats("save checkpoint", e))?
            .await
            .map_err(|e| BusError::nats("save checkpoint ack", e))?;
        Ok(())
    }

    /// The last saved relay checkpoint of `service`, if any.
    pub async fn load_checkpoint(&self, service: Service) -> Result<Option<String>, BusError> {
        let Ok(stream) = self.js.get_stream(subjects::RELAY_STREAM).await else {
            return Ok(None);
        };
        match stream.get_last_raw_message_by_subject(&subjects::relay_checkpoint(service)).await {
            Ok(message) => Ok(Some(String::from_utf8_lossy(&message.payload).into_owned())),
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(BusError::nats("load checkpoint", e)),
        }
    }

    /// A durable pull consumer on `SB_EVENTS` with explicit ack. Re-creating
    /// it with the same name resumes where the last acknowledged event left off.
    pub async fn event_consumer(
        &self,
        options: ConsumerOptions,
    ) -> Result<EventConsumer, BusError> {
        let stream =
            self.js.get_stream(EVENTS_STREAM).await.map_err(|e| BusError::nats("get stream", e))?;
        subjects::check_token(&options.durable_name)?;
        let config = consumer::pull::Config {
            durable_name: Some(options.durable_name.clone()),
            filter_subject: options.filter_subject.clone(),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: options.ack_wait,
            max_ack_pending: options.max_ack_pending,
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        };
        let consumer = stream
            .get_or_create_consumer(&options.durable_name, config)
            .await
            .map_err(|e| BusError::nats("create consumer", e))?;
        let messages = consumer
            .stream()
            .max_messages_per_batch(options.batch)
            .messages()
            .await
            .map_err(|e| BusError::nats("consume", e))?;
        Ok(EventConsumer { messages })
    }

    /// Sends a command and waits up to `timeout` for its reply.
    pub async fn request(
        &self,
        service: Service,
        verb: &str,
        payload: Bytes,
        trace: Option<TraceParent>,
        timeout: Duration,
    ) -> Result<Bytes, BusError> {
        let subject = subjects::command(service, verb)?;
        let mut headers = HeaderMap::new();
        let trace = trace.map(|t| t.child()).unwrap_or_else(TraceParent::new_root);
        headers.insert(trace::TRACEPARENT, HeaderValue::from(trace.to_string().as_str()));
        let request =
            async_nats::Request::new().payload(payload).headers(headers).timeout(Some(timeout));
        match self.client.send_request(subject.clone(), request).await {
            Ok(reply) => Ok(reply.payload),
            Err(e) => Err(match e.kind() {
                async_nats::RequestErrorKind::TimedOut => BusError::Timeout { subject, timeout },
                async_nats::RequestErrorKind::NoResponders => BusError::NoResponders { subject },
                _ => BusError::nats("request", e),
            }),
        }
    }

    /// Subscribes to every command of `service` in the queue group named after
    /// the service, so each request reaches exactly one replica.
    pub async fn serve_commands(&self, service: Service) -> Result<CommandStream, BusError> {
        let subscriber = self
            .client
            .queue_subscribe(subjects::commands_of(service), service.as_str().to_owned())
            .await
            .map_err(|e| BusError::nats("subscribe", e))?;
        Ok(CommandStream { service, subscriber, client: self.client.clone() })
    }

    /// Flushes buffered writes (replies, core publishes) to the server.
    pub async fn flush(&self) -> Result<(), BusError> {
        self.client.flush().await.map_err(|e| BusError::nats("flush", e))
    }
}

/// JetStream's answer to a publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub sequence: u64,
    pub duplicate: bool,
}

#[derive(Debug, Clone)]
pub struct ConsumerOptions {
    /// Durable name: one per consuming service (replicas share it).
    pub durable_name: String,
    /// Subject filter, e.g. [`subjects::events_of`]; `None` for every event.
    pub filter_subject: String,
    /// Bound on delivered-but-unacknowledged events.
    pub max_ack_pending: i64,
    /// How long JetStream waits for an ack before redelivering.
    pub ack_wait: Duration,
    /// Events pulled per batch.
    pub batch: usize,
}

impl ConsumerOptions {
    pub fn new(durable_name: impl Into<String>) -> ConsumerOptions {
        ConsumerOptions {
            durable_name: durable_name.into(),
            filter_subject: String::new(),
            max_ack_pending: 256,
            ack_wait: Duration::from_secs(30),
            batch: 64,
        }
    }
}

/// Events delivered by a durable consumer, in stream order per subject.
pub struct EventConsumer {
    messages: consumer::pull::Stream,
}

impl EventConsumer {
    /// The next delivery; `None` when the connection closed for good.
    pub async fn next(&mut self) -> Option<Result<Delivery, BusError>> {
        let message = match self.messages.next().await? {
            Ok(m) => m,
            Err(e) => return Some(Err(BusError::nats("receive", e))),
        };
        let envelope = EventEnvelope::decode(message.payload.clone()).map_err(|e| {
            BusError::Malformed { subject: message.subject.to_string(), detail: e.to_string() }
        });
        Some(Ok(Delivery { envelope, message }))
    }
}

/// One delivered event. It must be acked once handled; an un-acked delivery
/// comes again after the consumer's `ack_wait`.
pub struct Delivery {
    /// The decoded envelope, or why it could not be decoded (such a message
    /// should be acked and logged, not retried forever).
    pub envelope: Result<EventEnvelope, BusError>,
    message: jetstream::Message,
}

impl Delivery {
    pub fn subject(&self) -> &str {
        self.message.subject.as_str()
    }

    pub fn traceparent(&self) -> Option<TraceParent> {
        self.message
            .headers
            .as_ref()?
            .get(trace::TRACEPARENT)
            .and_then(|v| TraceParent::parse(v.as_str()))
    }

    /// How many times JetStream has delivered this message (1 on the first).
    pub fn delivered(&self) -> i64 {
        self.message.info().map(|i| i.delivered).unwrap_or(1)
    }

    pub async fn ack(&self) -> Result<(), BusError> {
        self.message.double_ack().await.map_err(|e| BusError::nats("ack", e))
    }

    /// Asks JetStream to deliver it again after `delay` (a transient failure).
    pub async fn nak(&self, delay: Duration) -> Result<(), BusError> {
        self.message
            .ack_with(jetstream::AckKind::Nak(Some(delay)))
            .await
            .map_err(|e| BusError::nats("nak", e))
    }
}

/// Commands arriving for one service.
pub struct CommandStream {
    service: Service,
    subscriber: async_nats::Subscriber,
    client: async_nats::Client,
}

impl CommandStream {
    pub async fn next(&mut self) -> Option<IncomingCommand> {
        loop {
            let message = self.subscriber.next().await?;
            let Some(verb) = subjects::command_verb(self.service, &message.subject) else {
                continue;
            };
            let verb = verb.to_owned();
            let trace = message
                .headers
                .as_ref()
                .and_then(|h| h.get(trace::TRACEPARENT))
                .and_then(|v| TraceParent::parse(v.as_str()));
            return Some(IncomingCommand {
                verb,
                payload: message.payload,
                reply: message.reply,
                trace,
                client: self.client.clone(),
            });
        }
    }

    /// Stops taking new commands (graceful drain); already received ones can still be answered.
    pub async fn drain(&mut self) -> Result<(), BusError> {
        self.subscriber.unsubscribe().await.map_err(|e| BusError::nats("unsubscribe", e))
    }
}

/// One command request; answer it with [`IncomingCommand::reply`].
pub struct IncomingCommand {
    pub verb: String,
    pub payload: Bytes,
    pub trace: Option<TraceParent>,
    reply: Option<async_nats::Subject>,
    client: async_nats::Client,
}

impl IncomingCommand {
    pub async fn reply(&self, payload: Bytes) -> Result<(), BusError> {
        let Some(reply) = self.reply.clone() else {
            return Ok(()); // fire-and-forget publish: nobody waits
        };
        self.client.publish(reply, payload).await.map_err(|e| BusError::nats("reply", e))
    }
}
