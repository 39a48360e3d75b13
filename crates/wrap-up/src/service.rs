//! The wrap-up service shell.
//!
//! - Commands: the reason catalogue (`config-wrapup-reasons`) and submissions
//!   (`wrapup-<agentId>`).
//! - Reaction: every agent that leaves a conversation — `ParticipantLeft`
//!   (transfer, leave) or `ConversationEnded` (End, End Conference) — owes one
//!   wrap-up (B7.1). The wrap-up id is derived from the event id and the
//!   agent, so a redelivered event owes nothing twice.
//! - Deadlines: each owed wrap-up's auto time (B7.4) is scheduled from the log
//!   (so also after a restart) and fired as an automatic submission.

use std::{sync::Arc, time::Duration};

use eventlog::{EventStore, RecordedEvent};
use kernel::{
    DomainError, Runtime,
    aggregate::{Aggregate, EventMetadata, ExecError, Repository},
    commands::{self, Request},
    deadlines::Deadlines,
    react::Outcome,
};
use sb_proto::{
    ConversationEvent, Service, millis_from_timestamp,
    v1::{self, CommandReply, ErrorKind},
    verbs,
};

use crate::{
    AgentId, ConversationId, Error, LeaveReason, ReasonCode, WrapupId, catalogue, pending, wire,
};

impl DomainError for Error {
    fn code(&self) -> &'static str {
        Error::code(self)
    }

    fn kind(&self) -> ErrorKind {
        wire::error_kind_to_proto(Error::kind(self))
    }
}

pub const CATALOGUE_STREAM: &str = "config-wrapup-reasons";

pub struct Catalogue;

impl Aggregate for Catalogue {
    type State = catalogue::State;
    type Event = catalogue::Event;
    type Error = Error;

    fn encode(_id: &str, event: &Self::Event) -> (&'static str, Vec<u8>) {
        wire::catalogue_event_to_json(event)
    }

    fn decode(event_type: &str, data: &[u8]) -> Result<Self::Event, String> {
        wire::catalogue_event_from_json(event_type, data)
    }

    fn evolve(state: Self::State, event: &Self::Event) -> Self::State {
        catalogue::evolve(state, event)
    }
}

pub struct Pending;

impl Aggregate for Pending {
    type State = pending::State;
    type Event = pending::Event;
    type Error = Error;

    fn encode(_id: &str, event: &Self::Event) -> (&'static str, Vec<u8>) {
        wire::pending_event_to_json(event)
    }

    fn decode(event_type: &str, data: &[u8]) -> Result<Self::Event, String> {
        wire::pending_event_from_json(event_type, data)
    }

    fn evolve(state: Self::State, event: &Self::Event) -> Self::State {
        pending::evolve(state, event)
    }
}

pub fn pending_stream(agent: &AgentId) -> String {
    format!("wrapup-{}", agent.0)
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Auto wrap-up time (B7.4); `None` disables it.
    pub auto_wrapup: Option<Duration>,
    /// Reason recorded by an automatic wrap-up (a system reason, not in the list).
    pub auto_reason: String,
}

type WrapupKey = (String, String);

struct Shell<S> {
    catalogue: Repository<Catalogue, S>,
    pending: Repository<Pending, S>,
    deadlines: Deadlines<WrapupKey>,
    runtime: Runtime<S>,
    options: Options,
}

pub async fn run<S: EventStore + Clone + 'static>(
    runtime: Runtime<S>,
    options: Options,
) -> anyhow::Result<()> {
    let shell = Arc::new(Shell {
        catalogue: Repository::new(runtime.store.clone()),
        pending: Repository::new(runtime.store.clone()),
        deadlines: Deadlines::new(),
        runtime: runtime.clone(),
        options,
    });
    let projection = tokio::spawn({
        let shell = shell.clone();
        kernel::follow::run_projection(
            runtime.store.clone(),
            vec!["wrapup-".into()],
            move |e| shell.schedule(e),
            runtime.ready.clone(),
            runtime.shutdown.clone(),
        )
    });
    let relay = tokio::spawn(kernel::follow::run_relay(
        runtime.store.clone(),
        runtime.bus.clone(),
        Service::WrapUp,
        vec!["wrapup-".into(), CATALOGUE_STREAM.into()],
        runtime.shutdown.clone(),
    ));
    let timers = tokio::spawn({
        let shell = shell.clone();
        async move {
            let fire = shell.clone();
            shell
                .deadlines
                .run(
                    shell.runtime.clock.clone(),
                    move |key| {
                        let shell = fire.clone();
                        async move { shell.auto_wrapup(key).await }
                    },
                    shell.runtime.shutdown.clone(),
                )
                .await
        }
    });
    let leaves = tokio::spawn({
        let shell = shell.clone();
        let (bus, shutdown) = (runtime.bus.clone(), runtime.shutdown.clone());
        async move {
            kernel::react::run(
                bus,
                "wrap-up-leaves",
                bus::subjects::events_of(Service::Conversation),
                move |envelope| {
                    let shell = shell.clone();
                    async move { shell.on_conversation_event(envelope).await }
                },
                shutdown,
            )
            .await
        }
    });
    let handler = {
        let shell = shell.clone();
        move |request: Request| {
            let shell = shell.clone();
            async move { shell.handle(request).await }
        }
    };
    commands::serve(runtime.bus.clone(), Service::WrapUp, handler, runtime.shutdown.clone())
        .await?;
    let _ = tokio::join!(projection, relay, timers, leaves);
    Ok(())
}

fn wire_error(e: wire::WireError) -> CommandReply {
    CommandReply {
        result: Some(v1::command_reply::Result::Error(e.to_proto())),
        ..Default::default()
    }
}

impl<S: EventStore + Clone + 'static> Shell<S> {
    /// Keeps the auto wrap-up timers in step with the log.
    fn schedule(&self, recorded: &RecordedEvent) {
        match wire::pending_event_from_json(&recorded.event_type, &recorded.data) {
            Ok(pending::Event::WrapupOwed {
                agent_id, wrapup_id, auto_at_ms: Some(at), ..
            }) => {
                self.deadlines.schedule((agent_id.0, wrapup_id.0), at);
            }
            Ok(pending::Event::WrapupSubmitted { agent_id, wrapup_id, .. }) => {
                self.deadlines.cancel(&(agent_id.0, wrapup_id.0));
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(stream = %recorded.stream, error = %e, "unreadable wrap-up event")
            }
        }
    }

    async fn auto_wrapup(&self, (agent, wrapup): WrapupKey) -> bool {
        let now = self.runtime.clock.now();
        let agent_id = AgentId(agent);
        let command = pending::Command::AutoWrapup {
            agent_id: agent_id.clone(),
            wrapup_id: WrapupId(wrapup),
            reason_code: ReasonCode(self.options.auto_reason.clone()),
            now_ms: now,
        };
        let meta = EventMetadata { occurred_at: now, ..Default::default() };
        match self
            .pending
            .execute(&pending_stream(&agent_id), &meta, |s, _| pending::decide(s, &command))
            .await
        {
            Ok(_) => true,
            Err(ExecError::Domain(e)) => {
                tracing::warn!(error = %e, "auto wrap-up refused");
                e.code() != "auto_wrapup_not_due"
            }
            Err(e) => {
                tracing::warn!(error = %e, "auto wrap-up failed");
                false
            }
        }
    }

    async fn handle(&self, request: Request) -> CommandReply {
        let now = self.runtime.clock.now();
        let meta = EventMetadata {
            traceparent: request.trace.map(|t| t.to_string()).unwrap_or_default(),
            occurred_at: now,
            ..Default::default()
        };
        macro_rules! decoded {
            ($t:ty) => {
                match request.decode::<$t>() {
                    Ok(c) => c,
                    Err(reply) => return reply,
                }
            };
        }
        use verbs::wrapup as verb;
        match request.verb.as_str() {
            verb::PUT_REASON | verb::RETIRE_REASON => {
                let (code, command) = if request.verb == verb::PUT_REASON {
                    let c = decoded!(v1::PutWrapupReason);
                    let system = ReasonCode(self.options.auto_reason.clone());
                    (c.code.clone(), wire::put_reason_from_proto(&c, &system, now))
                } else {
                    let c = decoded!(v1::RetireWrapupReason);
                    (c.code.clone(), wire::retire_reason_from_proto(&c, now))
                };
                let command = match command {
                    Ok(c) => c,
                    Err(e) => return wire_error(e),
                };
                match self
                    .catalogue
                    .execute(CATALOGUE_STREAM, &meta, |s, _| catalogue::decide(s, &command))
                    .await
                {
                    Ok(done) => match done.state.reason(&ReasonCode(code)) {
                        Some(reason) => commands::ok_at(
                            "WrapupReason",
                            &wire::reason_to_proto(reason),
                            CATALOGUE_STREAM,
                            done.version,
                        ),
                        None => commands::error_reply(
                            "unknown_reason",
                            "unknown reason",
                            ErrorKind::NotFound,
                        ),
                    },
                    Err(e) => commands::from_exec_error(&e),
                }
            }
            verb::LIST_REASONS => {
                let c = decoded!(v1::ListWrapupReasons);
                match self.catalogue.load(CATALOGUE_STREAM).await {
                    Ok((state, _)) => {
                        commands::ok("WrapupReasonList", &wire::list_reasons(&state, &c))
                    }
                    Err(e) => commands::from_exec_error(&e),
                }
            }
            verb::SUBMIT => {
                let c = decoded!(v1::SubmitWrapup);
                let reasons = match self.catalogue.load(CATALOGUE_STREAM).await {
                    Ok((state, _)) => state,
                    Err(e) => return commands::from_exec_error(&e),
                };
                let (agent, command) =
                    match wire::submit_from_proto(&c, now, |code| reasons.status(code)) {
                        Ok(pair) => pair,
                        Err(e) => return wire_error(e),
                    };
                let stream = pending_stream(&agent);
                match self
                    .pending
                    .execute(&stream, &meta, |s, _| pending::decide(s, &command))
                    .await
                {
                    Ok(done) => commands::ok_at(
                        "PendingWrapupList",
                        &wire::pending_list_to_proto(&agent, &done.state),
                        &stream,
                        done.version,
                    ),
                    Err(e) => commands::from_exec_error(&e),
                }
            }
            verb::PENDING => {
                let c = decoded!(v1::ListPendingWrapups);
                let agent = AgentId(c.agent_id);
                let stream = pending_stream(&agent);
                match self.pending.load(&stream).await {
                    Ok((state, version)) => commands::ok_at(
                        "PendingWrapupList",
                        &wire::pending_list_to_proto(&agent, &state),
                        &stream,
                        version,
                    ),
                    Err(e) => commands::from_exec_error(&e),
                }
            }
            other => commands::unknown_verb(other),
        }
    }

    /// B7.1: each agent leaving a conversation owes one wrap-up.
    async fn on_conversation_event(&self, envelope: v1::EventEnvelope) -> Outcome {
        let auto_secs =
            self.options.auto_wrapup.map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
        let owes: Vec<(AgentId, pending::Command)> =
            match ConversationEvent::from_proto(&envelope.event_type, &envelope.payload) {
                Ok(ConversationEvent::ParticipantLeft(e)) => {
                    let wrapup_id =
                        WrapupId(kernel::derived_id(&[&envelope.event_id, &e.agent_id]));
                    match wire::owe_for_participant_left(&e, wrapup_id, auto_secs) {
                        Ok(pair) => vec![pair],
                        Err(err) => return Outcome::Skip(err.to_string()),
                    }
                }
                Ok(ConversationEvent::ConversationEnded(e)) => {
                    let at = e.at.as_ref().map_or(self.runtime.clock.now(), millis_from_timestamp);
                    e.agent_ids
                        .iter()
                        .map(|agent| {
                            let agent_id = AgentId(agent.clone());
                            (
                                agent_id.clone(),
                                pending::Command::OweWrapup {
                                    agent_id,
                                    wrapup_id: WrapupId(kernel::derived_id(&[
                                        &envelope.event_id,
                                        agent,
                                    ])),
                                    conversation_id: ConversationId(e.conversation_id.clone()),
                                    leave_reason: LeaveReason::Ended,
                                    now_ms: at,
                                    auto_at_ms: pending::auto_deadline(at, auto_secs),
                                },
                            )
                        })
                        .collect()
                }
                Ok(_) => return Outcome::Done,
                Err(e) => return Outcome::Skip(e.to_string()),
            };
        for (agent, command) in owes {
            let meta = EventMetadata {
                causation_id: envelope.event_id.clone(),
                correlation_id: envelope.correlation_id.clone(),
                occurred_at: self.runtime.clock.now(),
                ..Default::default()
            };
            match self
                .pending
                .execute(&pending_stream(&agent), &meta, |s, _| pending::decide(s, &command))
                .await
            {
                Ok(_) => {}
                Err(ExecError::Domain(e)) => tracing::warn!(error = %e, "wrap-up not owed"),
                Err(e) => return Outcome::Retry(e.to_string()),
            }
        }
        Outcome::Done
    }
}
