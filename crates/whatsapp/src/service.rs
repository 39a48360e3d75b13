//! The whatsapp service: the Cloud API edge wired to Switchboard.
//!
//! - **Inbound** ([`BusSink`]): every customer message of a webhook delivery
//!   becomes a `receive` command to the conversation service, and every status
//!   a `record-status`; the webhook answers 200 only when all of them were
//!   stored, so Meta's retry covers a crash or an outage (B4.3: the
//!   conversation service stores each WhatsApp id once).
//! - **Outbound** ([`run`]): a durable consumer of `AgentMessageAdded` sends
//!   each agent message through the Graph API, in log order, after checking
//!   the 24-hour window (B4.6); the WhatsApp id of the accepted send is
//!   recorded as `sent`, a permanent error as `failed` with WhatsApp's code,
//!   and throttling (130429, 131056) is retried with backoff.
//! - **Statuses** map back to messages through the WhatsApp ids this service
//!   recorded, rebuilt from the log on start.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{Arc, RwLock},
};

use bus::Bus;
use eventlog::{EventStore, RecordedEvent};
use kernel::{
    Clock, Readiness, Shutdown,
    commands::{self, CallError},
    react::Outcome,
};
use sb_proto::{
    ConversationEvent, Service, millis_from_timestamp,
    v1::{self, DeliveryStatus},
    verbs,
};

use crate::{
    Secret,
    graph::{GraphClient, GraphConfig, OutboundText, RetryPolicy, SendError},
    inbound::InboundBatch,
    webhook::{InboundSink, SinkError},
};

/// Configuration of the edge.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// Graph API base, version and the default access token.
    pub graph: GraphConfig,
    /// Access tokens of business numbers that have their own (phone number id → token).
    pub tokens: HashMap<String, Secret>,
    pub retry: RetryPolicy,
}

/// WhatsApp ids remembered for mapping statuses back (newest kept): statuses
/// follow a send within minutes, rarely days; an older one gets a 503 and is
/// dropped by Meta after its retries.
const MAX_REMEMBERED_WAMIDS: usize = 250_000;
/// Dispatched agent messages remembered against a redelivery (which comes
/// within seconds of the first delivery).
const MAX_REMEMBERED_DISPATCHES: usize = 100_000;

/// What the edge knows about messages it sent, bounded (oldest forgotten first).
#[derive(Debug, Default)]
struct Sent {
    /// WhatsApp message id → (conversation id, message id).
    by_wamid: HashMap<String, (String, String)>,
    wamid_order: VecDeque<String>,
    /// Agent messages already handed to WhatsApp (never send twice on redelivery).
    dispatched: HashSet<String>,
    dispatched_order: VecDeque<String>,
}

impl Sent {
    fn apply(&mut self, recorded: &RecordedEvent) {
        if recorded.event_type != "MessageStatusChanged" {
            return;
        }
        if let Ok(ConversationEvent::MessageStatusChanged(e)) =
            ConversationEvent::from_json(&recorded.event_type, &recorded.data)
        {
            self.remember_dispatched(&e.message_id);
            if !e.whatsapp_message_id.is_empty() {
                self.remember_wamid(e.whatsapp_message_id, e.conversation_id, e.message_id);
            }
        }
    }

    fn remember_dispatched(&mut self, message_id: &str) {
        if self.dispatched.insert(message_id.to_owned()) {
            self.dispatched_order.push_back(message_id.to_owned());
            while self.dispatched_order.len() > MAX_REMEMBERED_DISPATCHES {
                if let Some(old) = self.dispatched_order.pop_front() {
                    self.dispatched.remove(&old);
                }
            }
        }
    }

    fn remember_wamid(&mut self, wamid: String, conversation_id: String, message_id: String) {
        if self.by_wamid.insert(wamid.clone(), (conversation_id, message_id)).is_none() {
            self.wamid_order.push_back(wamid);
            while self.wamid_order.len() > MAX_REMEMBERED_WAMIDS {
                if let Some(old) = self.wamid_order.pop_front() {
                    self.by_wamid.remove(&old);
                }
            }
        }
    }
}

/// The shared state of the edge: the inbound sink and the outbound sender.
#[derive(Clone)]
pub struct Edge {
    bus: Bus,
    clock: Clock,
    sent: Arc<RwLock<Sent>>,
    clients: Arc<HashMap<String, GraphClient>>,
    default_client: GraphClient,
    retry: RetryPolicy,
}

impl std::fmt::Debug for Edge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Edge").finish_non_exhaustive()
    }
}

impl Edge {
    pub fn new(bus: Bus, clock: Clock, config: EdgeConfig) -> Result<Edge, SendError> {
        let default_client = GraphClient::new(config.graph.clone())?;
        let mut clients = HashMap::new();
        for (phone_number_id, token) in config.tokens {
            let graph = GraphConfig { access_token: token, ..config.graph.clone() };
            clients.insert(phone_number_id, GraphClient::new(graph)?);
        }
        Ok(Edge {
            bus,
            clock,
            sent: Arc::default(),
            clients: Arc::new(clients),
            default_client,
            retry: config.retry,
        })
    }

    /// The webhook's sink.
    pub fn sink(&self) -> BusSink {
        BusSink { edge: self.clone() }
    }

    fn client(&self, phone_number_id: &str) -> &GraphClient {
        self.clients.get(phone_number_id).unwrap_or(&self.default_client)
    }

    async fn record(&self, record: v1::RecordMessageStatus) -> Result<(), CallError> {
        commands::call::<_, v1::ConversationSummary>(
            &self.bus,
            Service::Conversation,
            verbs::conversation::RECORD_STATUS,
            &record,
            None,
        )
        .await
        .map(|_| ())
    }

    /// Sends one agent message (the reaction to `AgentMessageAdded`).
    async fn dispatch(&self, envelope: v1::EventEnvelope) -> Outcome {
        let added = match ConversationEvent::from_proto(&envelope.event_type, &envelope.payload) {
            Ok(ConversationEvent::AgentMessageAdded(e)) => e,
            Ok(_) => return Outcome::Done,
            Err(e) => return Outcome::Skip(e.to_string()),
        };
        if self
            .sent
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .dispatched
            .contains(&added.message_id)
        {
            return Outcome::Done; // redelivered after it was sent
        }
        let conversation: v1::ConversationSummary = match commands::call(
            &self.bus,
            Service::Conversation,
            verbs::conversation::GET,
            &v1::GetConversation { conversation_id: added.conversation_id.clone() },
            None,
        )
        .await
        {
            Ok(c) => c,
            Err(e) if e.is_retryable() => return Outcome::Retry(e.to_string()),
            Err(CallError::Refused(e)) => return Outcome::Skip(e.message),
            Err(e) => return Outcome::Retry(e.to_string()),
        };
        let failed = |code: i64, reason: String| v1::RecordMessageStatus {
            conversation_id: added.conversation_id.clone(),
            message_id: added.message_id.clone(),
            status: DeliveryStatus::Failed as i32,
            whatsapp_message_id: String::new(),
            failure_code: code,
            failure_reason: reason,
        };
        // B4.6: the window may have closed between storing and sending.
        let closes_at = conversation.window_closes_at.as_ref().map(millis_from_timestamp);
        let outcome = if closes_at.is_none_or(|closes| self.clock.now() >= closes) {
            self.record(failed(
                0,
                "window_closed: the 24-hour customer service window closed".into(),
            ))
            .await
        } else {
            let to = conversation.customer.as_ref().map(|c| c.phone.clone()).unwrap_or_default();
            let message = OutboundText { to, body: added.text.clone(), reply_to_whatsapp_id: None };
            let client = self.client(&conversation.phone_number_id);
            match client
                .send_text_retrying(
                    &conversation.phone_number_id,
                    &message,
                    &self.retry,
                    rand::random::<f64>,
                )
                .await
            {
                Ok(receipt) => {
                    {
                        let mut sent = self.sent.write().unwrap_or_else(|p| p.into_inner());
                        sent.remember_dispatched(&added.message_id);
                        sent.remember_wamid(
                            receipt.whatsapp_message_id.clone(),
                            added.conversation_id.clone(),
                            added.message_id.clone(),
                        );
                    }
                    self.record(v1::RecordMessageStatus {
                        status: DeliveryStatus::Sent as i32,
                        whatsapp_message_id: receipt.whatsapp_message_id,
                        ..failed(0, String::new())
                    })
                    .await
                }
                Err(error) if !error.is_retryable() => {
                    tracing::warn!(%error, conversation = %added.conversation_id, "send failed permanently");
                    self.record(failed(error.code().unwrap_or(0), error.reason())).await
                }
                Err(error) => return Outcome::Retry(error.to_string()),
            }
        };
        match outcome {
            Ok(()) => Outcome::Done,
            Err(e) if e.is_retryable() => Outcome::Retry(e.to_string()),
            Err(CallError::Refused(e)) => Outcome::Skip(e.message),
            Err(e) => Outcome::Retry(e.to_string()),
        }
    }
}

/// The webhook's sink: customer messages and statuses to the conversation service.
#[derive(Clone, Debug)]
pub struct BusSink {
    edge: Edge,
}

impl InboundSink for BusSink {
    /// B8.3: every element is tried (one that fails never holds back the
    /// rest); a permanent refusal is logged and acknowledged (Meta would send
    /// it again for ever), a retryable failure makes the whole POST a 5xx so
    /// Meta delivers it again — which doubles nothing (B4.3, forward-only
    /// statuses).
    async fn deliver(&self, batch: InboundBatch) -> Result<(), SinkError> {
        let mut retry: Option<String> = None;
        for message in batch.messages {
            let stored: Result<v1::CustomerMessageStored, _> = commands::call(
                &self.edge.bus,
                Service::Conversation,
                verbs::conversation::RECEIVE,
                &message,
                None,
            )
            .await;
            match stored {
                Ok(_) => {}
                Err(e) if e.is_retryable() => {
                    tracing::warn!(error = %e, "customer message not stored yet; Meta will retry");
                    retry.get_or_insert_with(|| e.to_string());
                }
                Err(e) => {
                    tracing::error!(code = %e.code(), detail = %e, "customer message refused");
                    kernel::metrics::global().add(
                        "sb_webhook_elements_refused_total",
                        "kind=\"message\"",
                        1,
                    );
                }
            }
        }
        for status in batch.statuses {
            if status.status == DeliveryStatus::Unspecified {
                continue; // e.g. `played`: moves nothing forward
            }
            let known = self
                .edge
                .sent
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .by_wamid
                .get(&status.whatsapp_message_id)
                .cloned();
            let Some((conversation_id, message_id)) = known else {
                // A message Switchboard did not send (another app on the same
                // WhatsApp Business Account): nothing to record (B8.3).
                tracing::info!(wamid = %status.whatsapp_message_id, "status of a message we did not send; ignored");
                kernel::metrics::global().add(
                    "sb_whatsapp_statuses_ignored_total",
                    "reason=\"unknown_message\"",
                    1,
                );
                continue;
            };
            match self.edge.record(status.to_record(&conversation_id, &message_id)).await {
                Ok(()) => {}
                Err(e) if e.is_retryable() => {
                    tracing::warn!(error = %e, "status not recorded yet; Meta will retry");
                    retry.get_or_insert_with(|| e.to_string());
                }
                Err(e) => tracing::warn!(code = %e.code(), detail = %e, "status refused"),
            }
        }
        match retry {
            Some(why) => Err(SinkError::Unavailable(why)),
            None => Ok(()),
        }
    }
}

/// Runs the outbound side until shutdown: the read model of sent messages and
/// the sender. The webhook router ([`crate::webhook::router`] with
/// [`Edge::sink`]) is mounted by whoever hosts the HTTP listener.
pub async fn run<S: EventStore + Clone + 'static>(
    edge: Edge,
    store: S,
    ready: Readiness,
    shutdown: Shutdown,
) {
    let projection = tokio::spawn({
        let sent = edge.sent.clone();
        kernel::follow::run_projection(
            store,
            vec!["conversation-".into()],
            move |e| sent.write().unwrap_or_else(|p| p.into_inner()).apply(e),
            ready,
            shutdown.clone(),
        )
    });
    let filter = match bus::subjects::events_of_type(Service::Conversation, "AgentMessageAdded") {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(error = %e, "bad subject");
            return;
        }
    };
    let sender = edge.clone();
    kernel::react::run(
        edge.bus.clone(),
        "whatsapp-outbound",
        filter,
        move |envelope| {
            let edge = sender.clone();
            async move { edge.dispatch(envelope).await }
        },
        shutdown,
    )
    .await;
    let _ = projection.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_edge_remembers_is_bounded_oldest_first() {
        let mut sent = Sent::default();
        for i in 0..MAX_REMEMBERED_DISPATCHES + 10 {
            sent.remember_dispatched(&format!("m{i}"));
        }
        assert_eq!(sent.dispatched.len(), MAX_REMEMBERED_DISPATCHES);
        assert!(
            !sent.dispatched.contains("m0")
                && sent.dispatched.contains(&format!("m{}", MAX_REMEMBERED_DISPATCHES + 9))
        );
        sent.remember_wamid("w1".into(), "c".into(), "m".into());
        sent.remember_wamid("w1".into(), "c".into(), "m".into());
        assert_eq!(sent.wamid_order.len(), 1, "a repeat is not counted twice");
    }
}
