//! The conversation service shell: NATS commands in, events appended to
//! `conversation-<id>` with their expected version, relayed to the bus.
//!
//! Which conversation a customer message belongs to: conversation ids are
//! derived from (business number, customer phone, n), n counting that pair's
//! conversations. The service tries n from its read model's hint; a stream
//! that does not exist yet is started (`NoStream`, so two replicas racing on
//! the same first message start it once), an ended one moves on to n + 1.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use eventlog::{EventStore, RecordedEvent};
use kernel::{
    DomainError, Millis, Runtime,
    aggregate::{Aggregate, EventMetadata, ExecError, Repository},
    commands::{self, CallError, Request},
};
use sb_proto::{
    ConversationEvent, RoutingEvent, Service, millis_from_timestamp,
    v1::{self, CommandReply, ErrorKind},
    verbs,
};

use crate::{
    domain::{self, Command, Conversation, CustomerMessage, Error, QueueRef, Target},
    wire,
};

/// How many of a pair's ended conversations a message may skip over at most.
const MAX_CONVERSATIONS_PER_PAIR: u32 = 100_000;
/// Offer timeout when the queue is unknown to the read model (B2.2 default).
const DEFAULT_OFFER_TIMEOUT_SECS: u32 = 30;

pub struct ConversationAggregate;

/// What a redirect of the conversation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Redirect {
    Transfer,
    Conference,
    Reassign,
}

impl DomainError for Error {
    fn code(&self) -> &'static str {
        Error::code(self)
    }

    fn kind(&self) -> ErrorKind {
        match Error::kind(self) {
            domain::ErrorKind::NotFound => ErrorKind::NotFound,
            domain::ErrorKind::Conflict => ErrorKind::Conflict,
            domain::ErrorKind::Rule => ErrorKind::Rule,
            domain::ErrorKind::Forbidden => ErrorKind::Forbidden,
        }
    }
}

impl Aggregate for ConversationAggregate {
    type State = Conversation;
    type Event = domain::Event;
    type Error = Error;

    fn encode(id: &str, event: &Self::Event) -> (&'static str, Vec<u8>) {
        let proto = wire::event_to_proto(id, event);
        (proto.event_type(), proto.to_json())
    }

    fn decode(event_type: &str, data: &[u8]) -> Result<Self::Event, String> {
        let proto = ConversationEvent::from_json(event_type, data).map_err(|e| e.to_string())?;
        wire::event_from_proto(&proto).map_err(|e| e.to_string())
    }

    fn evolve(state: Conversation, event: &Self::Event) -> Conversation {
        domain::evolve(state, event)
    }
}

pub fn stream_name(conversation_id: &str) -> String {
    format!("conversation-{conversation_id}")
}

/// The id of the `n`-th conversation of a customer with a business number.
pub fn conversation_id_for(source_number: &str, phone: &str, n: u32) -> String {
    kernel::derived_id(&["conversation", source_number, phone, &n.to_string()])
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Queue for business numbers with no entry point (B3.4).
    pub default_queue: String,
}

/// What the service reads from the log: the conversations per customer and
/// the queues (names, timeouts, entry points) it needs to start and transfer.
#[derive(Debug, Default)]
struct View {
    /// (source number, phone) → conversations started so far.
    pairs: HashMap<(String, String), u32>,
    /// B4.3 over a conversation's whole life: WhatsApp message id → the
    /// conversation that stored it, for Meta's re-delivery window.
    inbound: InboundIds,
    queues: HashMap<String, (String, u32)>,
    entry_points: HashMap<String, String>,
}

impl View {
    fn apply(&mut self, recorded: &RecordedEvent) {
        if recorded.stream.starts_with("conversation-") {
            if recorded.event_type == "ConversationStarted"
                && let Ok(ConversationEvent::ConversationStarted(e)) =
                    ConversationEvent::from_json(&recorded.event_type, &recorded.data)
            {
                let phone = e.customer.map(|c| c.phone).unwrap_or_default();
                *self.pairs.entry((e.source_number, phone)).or_default() += 1;
            } else if recorded.event_type == "CustomerMessageReceived"
                && let Ok(ConversationEvent::CustomerMessageReceived(e)) =
                    ConversationEvent::from_json(&recorded.event_type, &recorded.data)
            {
                let at = e.received_at.as_ref().map_or(0, millis_from_timestamp);
                self.inbound.remember(e.whatsapp_message_id, e.conversation_id, at);
            }
            return;
        }
        match RoutingEvent::from_json(&recorded.event_type, &recorded.data) {
            Ok(RoutingEvent::QueueDefined(q)) => {
                self.queues.insert(q.queue_id, (q.name, q.offer_timeout_secs));
            }
            Ok(RoutingEvent::EntryPointMapped(m)) => {
                self.entry_points.insert(m.business_number, m.queue_id);
            }
            _ => {}
        }
    }
}

/// How long Meta re-delivers a webhook (7 days), with a day's margin.
const REDELIVERY_WINDOW_MS: Millis = 8 * 24 * 3_600_000;

/// WhatsApp message ids stored in the last [`REDELIVERY_WINDOW_MS`], oldest
/// forgotten first (memory stays proportional to a week of traffic).
#[derive(Debug, Default)]
struct InboundIds {
    by_id: HashMap<String, String>,
    order: std::collections::VecDeque<(Millis, String)>,
}

impl InboundIds {
    fn remember(&mut self, whatsapp_id: String, conversation_id: String, at: Millis) {
        if self.by_id.insert(whatsapp_id.clone(), conversation_id).is_none() {
            self.order.push_back((at, whatsapp_id));
        }
        while let Some((oldest, _)) = self.order.front() {
            if at.saturating_sub(*oldest) <= REDELIVERY_WINDOW_MS {
                break;
            }
            if let Some((_, id)) = self.order.pop_front() {
                self.by_id.remove(&id);
            }
        }
    }

    fn conversation_of(&self, whatsapp_id: &str) -> Option<&String> {
        self.by_id.get(whatsapp_id)
    }
}

struct Shell<S> {
    repo: Repository<ConversationAggregate, S>,
    view: RwLock<View>,
    runtime: Runtime<S>,
    options: Options,
}

/// Runs the service until shutdown.
pub async fn run<S: EventStore + Clone + 'static>(
    runtime: Runtime<S>,
    options: Options,
) -> anyhow::Result<()> {
    let shell = Arc::new(Shell {
        repo: Repository::new(runtime.store.clone()),
        view: RwLock::new(View::default()),
        runtime: runtime.clone(),
        options,
    });
    let projection = tokio::spawn({
        let shell = shell.clone();
        kernel::follow::run_projection(
            runtime.store.clone(),
            vec!["conversation-".into(), "config-queues".into()],
            move |e| shell.view.write().unwrap_or_else(|p| p.into_inner()).apply(e),
            runtime.ready.clone(),
            runtime.shutdown.clone(),
        )
    });
    let relay = tokio::spawn(kernel::follow::run_relay(
        runtime.store.clone(),
        runtime.bus.clone(),
        Service::Conversation,
        vec!["conversation-".into()],
        runtime.shutdown.clone(),
    ));
    let handler = {
        let shell = shell.clone();
        move |request: Request| {
            let shell = shell.clone();
            async move { shell.handle(request).await }
        }
    };
    commands::serve(runtime.bus.clone(), Service::Conversation, handler, runtime.shutdown.clone())
        .await?;
    let _ = tokio::join!(projection, relay);
    Ok(())
}

fn metadata(request: &Request, now: Millis) -> EventMetadata {
    EventMetadata {
        traceparent: request.trace.map(|t| t.to_string()).unwrap_or_default(),
        occurred_at: now,
        ..Default::default()
    }
}

fn reply(
    executed: Result<kernel::aggregate::Executed<Conversation, domain::Event>, ExecError<Error>>,
    stream: &str,
) -> CommandReply {
    match executed {
        Ok(done) => commands::ok_at(
            "ConversationSummary",
            &wire::summary(&done.state),
            stream,
            done.version,
        ),
        Err(e) => commands::from_exec_error(&e),
    }
}

fn passthrough(error: CallError) -> CommandReply {
    match error {
        CallError::Refused(e) => {
            CommandReply { result: Some(v1::command_reply::Result::Error(e)), ..Default::default() }
        }
        other => commands::error_reply("unavailable", &other.to_string(), ErrorKind::Unavailable),
    }
}

fn required(field: &str, value: &str) -> Result<(), CommandReply> {
    if value.is_empty() { Err(commands::invalid(format!("`{field}` is required"))) } else { Ok(()) }
}

impl<S: EventStore + Clone + 'static> Shell<S> {
    async fn handle(&self, request: Request) -> CommandReply {
        match self.dispatch(&request).await {
            Ok(reply) | Err(reply) => reply,
        }
    }

    async fn dispatch(&self, request: &Request) -> Result<CommandReply, CommandReply> {
        let now = self.runtime.clock.now();
        let meta = metadata(request, now);
        use verbs::conversation as verb;
        match request.verb.as_str() {
            verb::RECEIVE => self.receive(request.decode()?, &meta, now).await,
            verb::OFFER => {
                let c: v1::MakeOffer = request.decode()?;
                required("conversation_id", &c.conversation_id)?;
                let expires_at = c
                    .expires_at
                    .as_ref()
                    .map(millis_from_timestamp)
                    .ok_or_else(|| commands::invalid("`expires_at` is required"))?;
                let command = Command::MakeOffer {
                    offer_id: c.offer_id,
                    agent_id: c.agent_id,
                    expires_at,
                    now,
                };
                Ok(self.execute(&c.conversation_id, &meta, &command).await)
            }
            verb::ACCEPT => {
                let c: v1::AcceptOffer = request.decode()?;
                required("agent_id", &c.agent_id)?;
                let command =
                    Command::AcceptOffer { agent_id: c.agent_id, agent_name: c.agent_name, now };
                Ok(self.execute(&c.conversation_id, &meta, &command).await)
            }
            verb::EXPIRE_OFFER => {
                let c: v1::ExpireOffer = request.decode()?;
                Ok(self
                    .execute(
                        &c.conversation_id,
                        &meta,
                        &Command::ExpireOffer { offer_id: c.offer_id, now },
                    )
                    .await)
            }
            verb::EXPIRE_CONFERENCE => {
                let c: v1::ExpireConferenceRequest = request.decode()?;
                let requested_at = c
                    .requested_at
                    .as_ref()
                    .map(millis_from_timestamp)
                    .ok_or_else(|| commands::invalid("`requested_at` is required"))?;
                let command = Command::ExpireConferenceRequest { requested_at, now };
                Ok(self.execute(&c.conversation_id, &meta, &command).await)
            }
            verb::WITHDRAW_OFFER => {
                let c: v1::WithdrawOffer = request.decode()?;
                let reason = wire::withdraw_reason_from_proto(c.reason)
                    .map_err(|e| commands::invalid(e.to_string()))?;
                Ok(self
                    .execute(
                        &c.conversation_id,
                        &meta,
                        &Command::WithdrawOffer { offer_id: c.offer_id, reason, now },
                    )
                    .await)
            }
            verb::SEND => {
                let c: v1::SendAgentMessage = request.decode()?;
                required("agent_id", &c.agent_id)?;
                let message_id =
                    if c.message_id.is_empty() { kernel::new_id() } else { c.message_id };
                let command = Command::SendAgentMessage {
                    message_id: message_id.clone(),
                    agent_id: c.agent_id,
                    agent_name: c.agent_name,
                    text: c.text,
                    now,
                };
                let stream = stream_name(&c.conversation_id);
                match self.repo.execute(&stream, &meta, |s, _| domain::decide(s, &command)).await {
                    Ok(done) => Ok(commands::ok_at(
                        "AgentMessageStored",
                        &v1::AgentMessageStored {
                            conversation_id: c.conversation_id,
                            message_id,
                            at: Some(sb_proto::timestamp_from_millis(now)),
                        },
                        &stream,
                        done.version,
                    )),
                    Err(e) => Ok(commands::from_exec_error(&e)),
                }
            }
            verb::RECORD_STATUS => {
                let c: v1::RecordMessageStatus = request.decode()?;
                let status = wire::status_from_proto(c.status)
                    .map_err(|e| commands::invalid(e.to_string()))?;
                let failure = (c.failure_code != 0 || !c.failure_reason.is_empty())
                    .then_some((c.failure_code, c.failure_reason));
                let command = Command::RecordStatus {
                    message_id: c.message_id,
                    status,
                    whatsapp_message_id: c.whatsapp_message_id,
                    failure,
                    now,
                };
                Ok(self.execute(&c.conversation_id, &meta, &command).await)
            }
            verb::TRANSFER => {
                let c: v1::TransferConversation = request.decode()?;
                self.redirect(
                    &c.conversation_id,
                    &c.agent_id,
                    &c.to_queue_id,
                    &c.to_agent_id,
                    Redirect::Transfer,
                    &meta,
                    now,
                )
                .await
            }
            verb::REASSIGN => {
                let c: v1::ReassignConversation = request.decode()?;
                let by = match wire::actor_from_proto(c.by.as_ref()) {
                    Ok(domain::Actor::Supervisor(id)) => id,
                    _ => {
                        return Err(commands::error_reply(
                            "supervisor_only",
                            "only a supervisor may reassign",
                            ErrorKind::Forbidden,
                        ));
                    }
                };
                self.redirect(
                    &c.conversation_id,
                    &by,
                    &c.to_queue_id,
                    &c.to_agent_id,
                    Redirect::Reassign,
                    &meta,
                    now,
                )
                .await
            }
            verb::CONFERENCE => {
                let c: v1::RequestConference = request.decode()?;
                self.redirect(
                    &c.conversation_id,
                    &c.agent_id,
                    &c.to_queue_id,
                    &c.to_agent_id,
                    Redirect::Conference,
                    &meta,
                    now,
                )
                .await
            }
            verb::END_CONFERENCE => {
                let c: v1::EndConference = request.decode()?;
                Ok(self
                    .execute(
                        &c.conversation_id,
                        &meta,
                        &Command::EndConference { agent_id: c.agent_id, now },
                    )
                    .await)
            }
            verb::LEAVE => {
                let c: v1::LeaveConversation = request.decode()?;
                Ok(self
                    .execute(
                        &c.conversation_id,
                        &meta,
                        &Command::Leave { agent_id: c.agent_id, now },
                    )
                    .await)
            }
            verb::END => {
                let c: v1::EndConversation = request.decode()?;
                let by = wire::actor_from_proto(c.by.as_ref())
                    .map_err(|e| commands::invalid(e.to_string()))?;
                Ok(self.execute(&c.conversation_id, &meta, &Command::End { by, now }).await)
            }
            verb::GET => {
                let c: v1::GetConversation = request.decode()?;
                required("conversation_id", &c.conversation_id)?;
                let stream = stream_name(&c.conversation_id);
                match self.repo.load(&stream).await {
                    Ok((state, _)) if state.status == domain::Status::New => {
                        Ok(commands::refused(&Error::NotFound))
                    }
                    Ok((state, version)) => Ok(commands::ok_at(
                        "ConversationSummary",
                        &wire::summary(&state),
                        &stream,
                        version,
                    )),
                    Err(e) => Ok(commands::from_exec_error(&e)),
                }
            }
            other => Ok(commands::unknown_verb(other)),
        }
    }

    async fn execute(
        &self,
        conversation_id: &str,
        meta: &EventMetadata,
        command: &Command,
    ) -> CommandReply {
        if conversation_id.is_empty() {
            return commands::invalid("`conversation_id` is required");
        }
        let stream = stream_name(conversation_id);
        reply(self.repo.execute(&stream, meta, |s, _| domain::decide(s, command)).await, &stream)
    }

    /// B4.3, B4.4: store a customer message once, in the pair's open
    /// conversation or a new one in the business number's entry queue.
    async fn receive(
        &self,
        c: v1::ReceiveCustomerMessage,
        meta: &EventMetadata,
        now: Millis,
    ) -> Result<CommandReply, CommandReply> {
        required("source_number", &c.source_number)?;
        required("whatsapp_message_id", &c.whatsapp_message_id)?;
        let customer = wire::customer_from_proto(c.customer.as_ref());
        required("customer.phone", &customer.phone)?;
        let entry_queue = self.entry_queue(&c.source_number).await;
        let message = CustomerMessage {
            message_id: kernel::derived_id(&["whatsapp", &c.whatsapp_message_id]),
            whatsapp_message_id: c.whatsapp_message_id.clone(),
            kind: wire::message_kind_from_proto(c.r#type, &c.type_name),
            text: c.text.clone(),
            media_id: c.media_id.clone(),
            sent_at: c.sent_at.as_ref().map_or(now, millis_from_timestamp),
            reply_to_whatsapp_id: c.reply_to_whatsapp_id.clone(),
        };
        let key = (c.source_number.clone(), customer.phone.clone());
        let (hint, stored_in) = {
            let view = self.view.read().unwrap_or_else(|p| p.into_inner());
            (
                view.pairs.get(&key).copied().unwrap_or(0),
                view.inbound.conversation_of(&c.whatsapp_message_id).cloned(),
            )
        };
        // B4.3: a message already stored (in an open or an ended conversation)
        // goes back to that conversation, whose decide answers "nothing new".
        let candidates = stored_in.into_iter().chain(
            (hint.saturating_sub(1)..MAX_CONVERSATIONS_PER_PAIR)
                .map(|n| conversation_id_for(&c.source_number, &customer.phone, n)),
        );
        for conversation_id in candidates {
            let stream = stream_name(&conversation_id);
            let command = Command::ReceiveCustomerMessage {
                conversation_id: conversation_id.clone(),
                customer: customer.clone(),
                source_number: c.source_number.clone(),
                phone_number_id: c.phone_number_id.clone(),
                entry_queue: entry_queue.clone(),
                message: message.clone(),
                now,
            };
            match self.repo.execute(&stream, meta, |s, _| domain::decide(s, &command)).await {
                Ok(done) => {
                    let started =
                        done.events.iter().any(|e| matches!(e, domain::Event::Started { .. }));
                    return Ok(commands::ok_at(
                        "CustomerMessageStored",
                        &v1::CustomerMessageStored {
                            conversation_id,
                            message_id: message.message_id.clone(),
                            duplicate: done.events.is_empty(),
                            started,
                        },
                        &stream,
                        done.version,
                    ));
                }
                Err(ExecError::Domain(Error::ConversationEnded)) => continue,
                Err(e) => return Ok(commands::from_exec_error(&e)),
            }
        }
        Err(commands::error_reply(
            "too_many_conversations",
            "this customer has too many conversations",
            ErrorKind::Rule,
        ))
    }

    /// The entry queue of a business number (B3.1), or the default queue,
    /// which routing creates when first needed (B3.4).
    async fn entry_queue(&self, source_number: &str) -> QueueRef {
        let (queue_id, known) = {
            let view = self.view.read().unwrap_or_else(|p| p.into_inner());
            let id = view
                .entry_points
                .get(source_number)
                .filter(|q| view.queues.contains_key(*q))
                .cloned()
                .unwrap_or_else(|| self.options.default_queue.clone());
            let known = view.queues.get(&id).map(|(name, _)| name.clone());
            (id, known)
        };
        if let Some(name) = known {
            return QueueRef { id: queue_id, name };
        }
        let ensured: Result<v1::Queue, _> = commands::call(
            &self.runtime.bus,
            Service::Routing,
            verbs::routing::ENSURE_QUEUE,
            &v1::EnsureQueue { queue_id: queue_id.clone() },
            None,
        )
        .await;
        match ensured {
            Ok(q) => QueueRef { id: q.queue_id, name: q.name },
            Err(e) => {
                // Routing will create it when it sees the conversation queued there.
                tracing::warn!(error = %e, queue = %queue_id, "could not ensure the default queue");
                QueueRef { id: queue_id.clone(), name: queue_id }
            }
        }
    }

    fn offer_timeout_ms(&self, queue_id: &str) -> Millis {
        let view = self.view.read().unwrap_or_else(|p| p.into_inner());
        let secs = view.queues.get(queue_id).map_or(DEFAULT_OFFER_TIMEOUT_SECS, |(_, t)| *t);
        Millis::from(secs) * 1000
    }

    /// Transfer (B5) or conference (B6) to a queue or an agent. For an agent,
    /// its slot is reserved first (refused when it is not Available or has no
    /// free slot) and given back if the conversation then refuses.
    #[allow(clippy::too_many_arguments)]
    async fn redirect(
        &self,
        conversation_id: &str,
        agent_id: &str,
        to_queue_id: &str,
        to_agent_id: &str,
        mode: Redirect,
        meta: &EventMetadata,
        now: Millis,
    ) -> Result<CommandReply, CommandReply> {
        required("conversation_id", conversation_id)?;
        required("agent_id", agent_id)?;
        let make = |to: Target| match mode {
            Redirect::Conference => {
                Command::RequestConference { agent_id: agent_id.to_owned(), to, now }
            }
            Redirect::Transfer => Command::Transfer { agent_id: agent_id.to_owned(), to, now },
            Redirect::Reassign => Command::Reassign { supervisor_id: agent_id.to_owned(), to, now },
        };
        match (to_queue_id.is_empty(), to_agent_id.is_empty()) {
            (false, true) => {
                let name = self
                    .view
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .queues
                    .get(to_queue_id)
                    .map(|(n, _)| n.clone());
                let Some(name) = name else {
                    return Err(commands::error_reply(
                        "unknown_queue",
                        &format!("unknown queue `{to_queue_id}`"),
                        ErrorKind::NotFound,
                    ));
                };
                let command = make(Target::Queue(QueueRef { id: to_queue_id.to_owned(), name }));
                Ok(self.execute(conversation_id, meta, &command).await)
            }
            (true, false) => {
                if mode != Redirect::Reassign && to_agent_id == agent_id {
                    return Err(commands::refused(&Error::SelfTarget));
                }
                let stream = stream_name(conversation_id);
                // Check the conversation allows it before touching the target's slot.
                let (state, _) =
                    self.repo.load(&stream).await.map_err(|e| commands::from_exec_error(&e))?;
                let probe = make(Target::Agent {
                    agent_id: to_agent_id.to_owned(),
                    offer_id: String::new(),
                    expires_at: now,
                });
                if let Err(e) = domain::decide(&state, &probe) {
                    return Err(commands::refused(&e));
                }
                let offer_id = kernel::new_id();
                let queue_id = state.queue.as_ref().map(|q| q.id.clone()).unwrap_or_default();
                let expires_at = now + self.offer_timeout_ms(&queue_id);
                let reserve = v1::ReserveSlot {
                    agent_id: to_agent_id.to_owned(),
                    conversation_id: conversation_id.to_owned(),
                    offer_id: offer_id.clone(),
                    expected_version: -1,
                };
                commands::call::<_, v1::AgentPresence>(
                    &self.runtime.bus,
                    Service::AgentPresence,
                    verbs::presence::RESERVE_SLOT,
                    &reserve,
                    None,
                )
                .await
                .map_err(passthrough)?;
                let command = make(Target::Agent {
                    agent_id: to_agent_id.to_owned(),
                    offer_id: offer_id.clone(),
                    expires_at,
                });
                let result =
                    self.repo.execute(&stream, meta, |s, _| domain::decide(s, &command)).await;
                if result.is_err() {
                    let release = v1::ReleaseSlot {
                        agent_id: to_agent_id.to_owned(),
                        conversation_id: conversation_id.to_owned(),
                        offer_id,
                        cause: "offer_withdrawn".into(),
                    };
                    if let Err(e) = commands::call::<_, v1::AgentPresence>(
                        &self.runtime.bus,
                        Service::AgentPresence,
                        verbs::presence::RELEASE_SLOT,
                        &release,
                        None,
                    )
                    .await
                    {
                        tracing::error!(error = %e, "could not give back a reserved slot");
                    }
                }
                Ok(reply(result, &stream))
            }
            _ => Err(commands::invalid("give exactly one of `to_queue_id` and `to_agent_id`")),
        }
    }
}
