//! The routing service shell.
//!
//! - Commands: queues and entry points (`config-queues`).
//! - The router: whenever its read model changes, plan offers
//!   ([`crate::decision::plan`]) and make each one in two steps — reserve the
//!   agent's slot in agent-presence *with the agent stream version the plan
//!   saw* (a stale plan loses, B3.3), then record the offer on the
//!   conversation (refused if someone else offered it first; the slot is then
//!   given back).
//! - Offer deadlines: scheduled from `OfferMade` events, fired as
//!   `expire-offer` on the conversation (B2.2), also after a restart.
//! - Reaction to `OfferWithdrawn`: RONA for an expired offer (B2.2) and the
//!   slot back in every case.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, RwLock},
};

use eventlog::EventStore;
use kernel::{
    DomainError, Millis, Runtime,
    aggregate::{Aggregate, EventMetadata, Repository},
    commands::{self, CallError, Request},
    deadlines::Deadlines,
    react::Outcome,
};
use sb_proto::{
    ConversationEvent, RoutingEvent, Service, timestamp_from_millis,
    v1::{self, CommandReply, ErrorKind},
    verbs,
};
use tokio::sync::Notify;

use crate::{
    config::{self, Command, Config, Error},
    decision::{self, Assignment},
    view::{DeadlineChange, View},
};

pub const CONFIG_STREAM: &str = "config-queues";

pub struct QueueConfig;

impl DomainError for Error {
    fn code(&self) -> &'static str {
        Error::code(self)
    }

    fn kind(&self) -> ErrorKind {
        if self.is_not_found() { ErrorKind::NotFound } else { ErrorKind::Rule }
    }
}

fn actor(by: &str) -> Option<v1::Actor> {
    Some(if by.is_empty() {
        v1::Actor { kind: v1::ActorKind::System as i32, id: String::new() }
    } else {
        v1::Actor { kind: v1::ActorKind::Supervisor as i32, id: by.to_owned() }
    })
}

impl Aggregate for QueueConfig {
    type State = Config;
    type Event = config::Event;
    type Error = Error;

    fn encode(_id: &str, event: &Self::Event) -> (&'static str, Vec<u8>) {
        let proto: RoutingEvent = match event {
            config::Event::QueueDefined { queue, by, at } => v1::QueueDefined {
                queue_id: queue.id.clone(),
                name: queue.name.clone(),
                offer_timeout_secs: queue.offer_timeout_secs,
                priority: queue.priority,
                skills: queue.skills.clone(),
                by: actor(by),
                at: Some(timestamp_from_millis(*at)),
            }
            .into(),
            config::Event::EntryPointMapped { business_number, queue_id, by, at } => {
                v1::EntryPointMapped {
                    business_number: business_number.clone(),
                    queue_id: queue_id.clone(),
                    by: actor(by),
                    at: Some(timestamp_from_millis(*at)),
                }
                .into()
            }
        };
        (proto.event_type(), proto.to_json())
    }

    fn decode(event_type: &str, data: &[u8]) -> Result<Self::Event, String> {
        let by = |a: Option<v1::Actor>| a.map(|a| a.id).unwrap_or_default();
        let at = |t: Option<sb_proto::Timestamp>| {
            t.as_ref().map(sb_proto::millis_from_timestamp).unwrap_or(0)
        };
        match RoutingEvent::from_json(event_type, data).map_err(|e| e.to_string())? {
            RoutingEvent::QueueDefined(q) => Ok(config::Event::QueueDefined {
                queue: config::Queue {
                    id: q.queue_id,
                    name: q.name,
                    offer_timeout_secs: q.offer_timeout_secs,
                    priority: q.priority,
                    skills: q.skills,
                },
                by: by(q.by),
                at: at(q.at),
            }),
            RoutingEvent::EntryPointMapped(m) => Ok(config::Event::EntryPointMapped {
                business_number: m.business_number,
                queue_id: m.queue_id,
                by: by(m.by),
                at: at(m.at),
            }),
            other => Err(format!("{} does not belong to {CONFIG_STREAM}", other.event_type())),
        }
    }

    fn evolve(state: Config, event: &Self::Event) -> Config {
        config::evolve(state, event)
    }
}

/// What routing times (B2.2, B6.3).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    /// (conversation, offer): the offer's deadline.
    Offer(String, String),
    /// (conversation, requested at): a conference asked of a queue.
    ConferenceRequest(String, Millis),
}

struct Shell<S> {
    repo: Repository<QueueConfig, S>,
    view: RwLock<View>,
    deadlines: Deadlines<Timer>,
    changed: Notify,
    /// Conversations with an offer being made by this replica (with its offer
    /// id and when it started), and the agent versions it used, so the next
    /// plan does not repeat them before the read model has seen the outcome.
    in_flight: Mutex<InFlight>,
    /// Slot reservations with no offer in the log yet, and when we saw them.
    /// One still unresolved after [`ORPHAN_AFTER`] was left by a replica that
    /// died (or lost its reply) between reserving and offering: given back.
    unresolved: Mutex<HashMap<String, (String, String, std::time::Instant)>>,
    runtime: Runtime<S>,
}

#[derive(Default)]
struct InFlight {
    conversations: HashMap<String, (String, std::time::Instant)>,
    agent_versions: HashMap<String, u64>,
}

/// Re-plan at least this often.
const RETRY_PLAN_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// Operational, not a domain deadline: well over two command timeouts, so a
/// replica still between its two calls is never undercut.
const ORPHAN_AFTER: std::time::Duration = std::time::Duration::from_secs(15);

/// When the conversation service answers an expiry with `not_yet_due`, its
/// clock is behind routing's (processes' clocks differ by milliseconds; under
/// test, each process learns a moved manual clock at its own moment). Ask again
/// after this much wall time, this many times, before leaving it to the
/// deadline set's retry, which waits on the domain clock.
const SKEW_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);
const SKEW_RETRIES: u32 = 40;

/// How long at most a conversation stays skipped after this replica tried to
/// offer it. It is skipped only until the read model shows the outcome (the
/// offer made, or its slot given back): a conversation back in its queue soon
/// after (a quick transfer, an expired agent transfer) must not lose its
/// place to a later one (B3.2, B5.4). Operational, so wall time, not the
/// domain clock.
const IN_FLIGHT: std::time::Duration = std::time::Duration::from_secs(2);

pub async fn run<S: EventStore + Clone + 'static>(runtime: Runtime<S>) -> anyhow::Result<()> {
    let shell = Arc::new(Shell {
        repo: Repository::new(runtime.store.clone()),
        view: RwLock::new(View::default()),
        deadlines: Deadlines::new(),
        changed: Notify::new(),
        in_flight: Mutex::new(InFlight::default()),
        unresolved: Mutex::new(HashMap::new()),
        runtime: runtime.clone(),
    });
    let projection = tokio::spawn({
        let shell = shell.clone();
        kernel::follow::run_projection(
            runtime.store.clone(),
            vec![CONFIG_STREAM.into(), "conversation-".into(), "agent-".into(), "wrapup-".into()],
            move |e| {
                let changes = shell.view.write().unwrap_or_else(|p| p.into_inner()).apply(
                    &e.stream,
                    e.event_number,
                    &e.event_type,
                    &e.data,
                );
                for change in changes {
                    match change {
                        DeadlineChange::Schedule { conversation_id, offer_id, at } => {
                            shell.deadlines.schedule(Timer::Offer(conversation_id, offer_id), at)
                        }
                        DeadlineChange::Cancel { conversation_id, offer_id } => {
                            shell.deadlines.cancel(&Timer::Offer(conversation_id, offer_id))
                        }
                        DeadlineChange::ConferenceRequest { conversation_id, requested_at, at } => {
                            shell.deadlines.schedule(
                                Timer::ConferenceRequest(conversation_id, requested_at),
                                at,
                            )
                        }
                        DeadlineChange::Reserved { agent_id, conversation_id, offer_id } => {
                            shell.unresolved.lock().unwrap_or_else(|p| p.into_inner()).insert(
                                offer_id,
                                (agent_id, conversation_id, std::time::Instant::now()),
                            );
                        }
                        DeadlineChange::Resolved { offer_id } => {
                            shell
                                .in_flight
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .conversations
                                .retain(|_, (tried, _)| *tried != offer_id);
                            shell
                                .unresolved
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .remove(&offer_id);
                        }
                    }
                }
                shell.changed.notify_one();
            },
            runtime.ready.clone(),
            runtime.shutdown.clone(),
        )
    });
    let relay = tokio::spawn(kernel::follow::run_relay(
        runtime.store.clone(),
        runtime.bus.clone(),
        Service::Routing,
        vec![CONFIG_STREAM.into()],
        runtime.shutdown.clone(),
    ));
    let timers = tokio::spawn({
        let shell = shell.clone();
        async move {
            let fire_shell = shell.clone();
            shell
                .deadlines
                .run(
                    shell.runtime.clock.clone(),
                    move |key| {
                        let shell = fire_shell.clone();
                        async move { shell.expire(key).await }
                    },
                    shell.runtime.shutdown.clone(),
                )
                .await
        }
    });
    let withdrawn = tokio::spawn({
        let shell = shell.clone();
        let filter = bus::subjects::events_of_type(Service::Conversation, "OfferWithdrawn")?;
        async move {
            let bus = shell.runtime.bus.clone();
            let shutdown = shell.runtime.shutdown.clone();
            kernel::react::run(
                bus,
                "routing-offer-withdrawn",
                filter,
                move |envelope| {
                    let shell = shell.clone();
                    async move { shell.on_offer_withdrawn(envelope).await }
                },
                shutdown,
            )
            .await
        }
    });
    let router = tokio::spawn({
        let shell = shell.clone();
        async move { shell.route().await }
    });
    let handler = {
        let shell = shell.clone();
        move |request: Request| {
            let shell = shell.clone();
            async move { shell.handle(request).await }
        }
    };
    commands::serve(runtime.bus.clone(), Service::Routing, handler, runtime.shutdown.clone())
        .await?;
    shell.changed.notify_one();
    let _ = tokio::join!(projection, relay, timers, withdrawn, router);
    Ok(())
}

fn queue_to_proto(q: &config::Queue, waiting: u32) -> v1::Queue {
    v1::Queue {
        queue_id: q.id.clone(),
        name: q.name.clone(),
        offer_timeout_secs: q.offer_timeout_secs,
        priority: q.priority,
        skills: q.skills.clone(),
        waiting,
    }
}

impl<S: EventStore + Clone + 'static> Shell<S> {
    async fn handle(&self, request: Request) -> CommandReply {
        let now = self.runtime.clock.now();
        let meta = EventMetadata {
            traceparent: request.trace.map(|t| t.to_string()).unwrap_or_default(),
            occurred_at: now,
            ..Default::default()
        };
        use verbs::routing as verb;
        let result = match request.verb.as_str() {
            verb::PUT_QUEUE => request.decode::<v1::PutQueue>().map(|c| {
                let by = c.by.map(|a| a.id).unwrap_or_default();
                let queue = config::Queue {
                    id: c.queue_id,
                    name: c.name,
                    offer_timeout_secs: if c.offer_timeout_secs == 0 {
                        config::DEFAULT_OFFER_TIMEOUT_SECS
                    } else {
                        c.offer_timeout_secs
                    },
                    priority: c.priority,
                    skills: c.skills,
                };
                (queue.id.clone(), Command::PutQueue { queue, by, now })
            }),
            verb::ENSURE_QUEUE => request
                .decode::<v1::EnsureQueue>()
                .map(|c| (c.queue_id.clone(), Command::EnsureQueue { queue_id: c.queue_id, now })),
            verb::PUT_ENTRY_POINT => request.decode::<v1::PutEntryPoint>().map(|c| {
                (
                    String::new(),
                    Command::PutEntryPoint {
                        business_number: c.business_number,
                        queue_id: c.queue_id,
                        by: c.by.map(|a| a.id).unwrap_or_default(),
                        now,
                    },
                )
            }),
            verb::LIST_QUEUES => {
                return match request.decode::<v1::ListQueues>() {
                    Ok(c) => {
                        let view = self.view.read().unwrap_or_else(|p| p.into_inner());
                        let counts = view.waiting_counts();
                        let queues = view
                            .config
                            .search(&c.search)
                            .into_iter()
                            .map(|q| queue_to_proto(q, counts.get(&q.id).copied().unwrap_or(0)))
                            .collect();
                        commands::ok("QueueList", &v1::QueueList { queues })
                    }
                    Err(reply) => reply,
                };
            }
            other => return commands::unknown_verb(other),
        };
        let (queue_id, command) = match result {
            Ok(pair) => pair,
            Err(reply) => return reply,
        };
        match self.repo.execute(CONFIG_STREAM, &meta, |s, _| config::decide(s, &command)).await {
            Ok(done) => match &command {
                Command::PutEntryPoint { business_number, queue_id, .. } => commands::ok_at(
                    "EntryPoint",
                    &v1::EntryPoint {
                        business_number: business_number.clone(),
                        queue_id: queue_id.clone(),
                    },
                    CONFIG_STREAM,
                    done.version,
                ),
                _ => match done.state.queues.get(&queue_id) {
                    Some(q) => {
                        commands::ok_at("Queue", &queue_to_proto(q, 0), CONFIG_STREAM, done.version)
                    }
                    None => commands::refused(&Error::UnknownQueue(queue_id)),
                },
            },
            Err(e) => commands::from_exec_error(&e),
        }
    }

    /// The router loop: plan and make offers whenever something changed.
    async fn route(self: Arc<Self>) {
        let mut shutdown = self.runtime.shutdown.clone();
        loop {
            tokio::select! {
                () = self.changed.notified() => {},
                // A safety net for plans that failed with nothing new arriving.
                () = tokio::time::sleep(RETRY_PLAN_AFTER) => {},
                () = shutdown.wait() => return,
            }
            if !self.runtime.ready.get() {
                continue;
            }
            let now = self.runtime.clock.now();
            self.release_orphans().await;
            self.ensure_unknown_queues(now).await;
            let plan = {
                let view = self.view.read().unwrap_or_else(|p| p.into_inner());
                let mut in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
                in_flight.conversations.retain(|_, (_, since)| since.elapsed() < IN_FLIGHT);
                let waiting: Vec<_> = view
                    .waiting()
                    .into_iter()
                    .filter(|w| !in_flight.conversations.contains_key(&w.conversation_id))
                    .collect();
                let agents: Vec<_> = view
                    .agent_views()
                    .into_iter()
                    .filter(|a| {
                        in_flight
                            .agent_versions
                            .get(&a.agent_id)
                            .is_none_or(|used| a.version > *used)
                    })
                    .collect();
                let plan = decision::plan(&view.config.queues, &waiting, &agents, now);
                if plan.len() < waiting.len() {
                    tracing::debug!(waiting = ?waiting, agents = ?agents, planned = plan.len(), "not every waiting conversation has an agent");
                }
                plan
            };
            for assignment in plan {
                self.offer(assignment, now).await;
            }
        }
    }

    /// Gives back slots reserved for offers that were never made.
    async fn release_orphans(&self) {
        let orphans: Vec<(String, String, String)> = {
            let unresolved = self.unresolved.lock().unwrap_or_else(|p| p.into_inner());
            unresolved
                .iter()
                .filter(|(_, (_, _, seen))| seen.elapsed() > ORPHAN_AFTER)
                .map(|(offer, (agent, conversation, _))| {
                    (agent.clone(), conversation.clone(), offer.clone())
                })
                .collect()
        };
        for (agent, conversation, offer) in orphans {
            tracing::warn!(%agent, %conversation, %offer, "giving back a slot reserved for an offer never made");
            if self.release(&agent, &conversation, &offer).await {
                self.unresolved.lock().unwrap_or_else(|p| p.into_inner()).remove(&offer);
            }
        }
    }

    /// B3.4: a conversation waiting in a queue nobody defined (the default
    /// queue on first use) gets that queue created with defaults.
    async fn ensure_unknown_queues(&self, now: Millis) {
        let unknown: Vec<String> = {
            let view = self.view.read().unwrap_or_else(|p| p.into_inner());
            let mut ids: Vec<String> = view
                .waiting()
                .into_iter()
                .map(|w| w.queue_id)
                .filter(|q| !view.config.queues.contains_key(q))
                .collect();
            ids.sort();
            ids.dedup();
            ids
        };
        for queue_id in unknown {
            let command = Command::EnsureQueue { queue_id, now };
            let meta = EventMetadata { occurred_at: now, ..Default::default() };
            if let Err(e) =
                self.repo.execute(CONFIG_STREAM, &meta, |s, _| config::decide(s, &command)).await
            {
                tracing::warn!(error = %e, "could not create a queue on first use");
            }
        }
    }

    async fn offer(&self, a: Assignment, now: Millis) {
        let offer_id = kernel::new_id();
        {
            let mut in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            in_flight
                .conversations
                .insert(a.conversation_id.clone(), (offer_id.clone(), std::time::Instant::now()));
            in_flight.agent_versions.insert(a.agent_id.clone(), a.agent_version);
        }
        let timeout_secs = {
            let view = self.view.read().unwrap_or_else(|p| p.into_inner());
            view.config
                .queues
                .get(&a.queue_id)
                .map_or(config::DEFAULT_OFFER_TIMEOUT_SECS, |q| q.offer_timeout_secs)
        };
        let reserve = v1::ReserveSlot {
            agent_id: a.agent_id.clone(),
            conversation_id: a.conversation_id.clone(),
            offer_id: offer_id.clone(),
            expected_version: i64::try_from(a.agent_version).unwrap_or(-1),
        };
        let reserved: Result<v1::AgentPresence, _> = commands::call(
            &self.runtime.bus,
            Service::AgentPresence,
            verbs::presence::RESERVE_SLOT,
            &reserve,
            None,
        )
        .await;
        if let Err(e) = reserved {
            // Typically a stale plan (the agent changed): the next plan uses
            // fresher state. (A lost reply may still have reserved the slot:
            // the orphan sweep gives it back.)
            tracing::debug!(agent = %a.agent_id, error = %e, "slot not reserved");
            let mut in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            in_flight.conversations.remove(&a.conversation_id);
            if !matches!(&e, CallError::Refused(r) if r.code == "agent_changed") {
                in_flight.agent_versions.remove(&a.agent_id);
            }
            return;
        }
        let make = v1::MakeOffer {
            conversation_id: a.conversation_id.clone(),
            offer_id: offer_id.clone(),
            agent_id: a.agent_id.clone(),
            expires_at: Some(timestamp_from_millis(now + Millis::from(timeout_secs) * 1000)),
        };
        let made: Result<v1::ConversationSummary, _> = commands::call(
            &self.runtime.bus,
            Service::Conversation,
            verbs::conversation::OFFER,
            &make,
            None,
        )
        .await;
        match made {
            Ok(_) => {
                tracing::info!(conversation = %a.conversation_id, agent = %a.agent_id, "offered")
            }
            Err(e) => {
                tracing::debug!(conversation = %a.conversation_id, error = %e, "offer not recorded; giving the slot back");
                self.release(&a.agent_id, &a.conversation_id, &offer_id).await;
                self.in_flight
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .conversations
                    .remove(&a.conversation_id);
            }
        }
    }

    async fn release(&self, agent_id: &str, conversation_id: &str, offer_id: &str) -> bool {
        let release = v1::ReleaseSlot {
            agent_id: agent_id.to_owned(),
            conversation_id: conversation_id.to_owned(),
            offer_id: offer_id.to_owned(),
            cause: "offer_withdrawn".into(),
        };
        match commands::call::<_, v1::AgentPresence>(
            &self.runtime.bus,
            Service::AgentPresence,
            verbs::presence::RELEASE_SLOT,
            &release,
            None,
        )
        .await
        {
            Ok(_) => true,
            Err(CallError::Refused(e)) if e.kind != v1::ErrorKind::Unavailable as i32 => {
                tracing::debug!(code = %e.code, "slot already released");
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not release a slot");
                false
            }
        }
    }

    /// B2.2: an offer's deadline passed; B6.3: a conference asked of a queue
    /// waited its queue's offer timeout.
    async fn expire(&self, timer: Timer) -> bool {
        match timer {
            Timer::Offer(conversation_id, offer_id) => {
                let command = v1::ExpireOffer { conversation_id, offer_id };
                self.fire(verbs::conversation::EXPIRE_OFFER, &command).await
            }
            Timer::ConferenceRequest(conversation_id, requested_at) => {
                let command = v1::ExpireConferenceRequest {
                    conversation_id,
                    requested_at: Some(timestamp_from_millis(requested_at)),
                };
                self.fire(verbs::conversation::EXPIRE_CONFERENCE, &command).await
            }
        }
    }

    /// Sends a deadline's command to the conversation service, asking again
    /// briefly when its clock is a little behind ours.
    async fn fire<C: prost::Message>(&self, verb: &str, command: &C) -> bool {
        for _ in 0..SKEW_RETRIES {
            let expired: Result<v1::ConversationSummary, _> =
                commands::call(&self.runtime.bus, Service::Conversation, verb, command, None).await;
            match expired {
                Ok(_) => return true,
                // The conversation service's clock is a little behind ours.
                Err(CallError::Refused(e)) if e.code == "not_yet_due" => {
                    tokio::time::sleep(SKEW_PAUSE).await;
                }
                Err(CallError::Refused(e)) if e.kind != v1::ErrorKind::Unavailable as i32 => {
                    tracing::debug!(code = %e.code, "nothing left to expire");
                    return true;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not fire a deadline");
                    return false;
                }
            }
        }
        false
    }

    /// RONA for an expired offer, and the slot back for any withdrawn offer.
    async fn on_offer_withdrawn(&self, envelope: v1::EventEnvelope) -> Outcome {
        let event = match ConversationEvent::from_proto(&envelope.event_type, &envelope.payload) {
            Ok(ConversationEvent::OfferWithdrawn(e)) => e,
            Ok(_) => return Outcome::Done,
            Err(e) => return Outcome::Skip(e.to_string()),
        };
        if event.reason == v1::WithdrawReason::Expired as i32 {
            let rona = v1::EnterRona {
                agent_id: event.agent_id.clone(),
                offer_id: event.offer_id.clone(),
            };
            match commands::call::<_, v1::AgentPresence>(
                &self.runtime.bus,
                Service::AgentPresence,
                verbs::presence::ENTER_RONA,
                &rona,
                None,
            )
            .await
            {
                Ok(_) => {}
                Err(e) if e.is_retryable() => return Outcome::Retry(e.to_string()),
                Err(CallError::Refused(e)) => {
                    tracing::info!(code = %e.code, agent = %event.agent_id, "RONA not entered")
                }
                Err(e) => return Outcome::Retry(e.to_string()),
            }
        }
        if self.release(&event.agent_id, &event.conversation_id, &event.offer_id).await {
            Outcome::Done
        } else {
            Outcome::Retry("slot release failed".into())
        }
    }
}
