//! The agent-presence service shell: commands over NATS, events appended to
//! `agent-<id>` with their expected version and relayed to the bus, the agent
//! directory as a read model, and the reaction to `WrapupSubmitted` (B1.3:
//! the wrap-up service emits, presence frees the slot).
//!
//! `reserve-slot` carries the agent stream version the routing decision was
//! made on: if the agent changed since, the reservation is refused
//! (`agent_changed`), so two routing replicas can never book the same free
//! slot twice (B3.3).

use std::{
    collections::BTreeMap,
    sync::{Arc, RwLock},
};

use eventlog::{EventStore, RecordedEvent};
use kernel::{
    DomainError, Runtime,
    aggregate::{Aggregate, EventMetadata, ExecError, Executed, Repository},
    commands::{self, Request},
    react::Outcome,
};
use sb_proto::{
    Service, WrapUpEvent,
    v1::{self, CommandReply, ErrorKind},
    verbs,
};

use crate::{AgentId, Command, Error, Event, State, decide, evolve, wire};

/// A presence refusal: the domain's, or a stale expected version.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error(transparent)]
    Domain(#[from] Error),
    #[error("the agent changed since version {expected} (now {current:?}); decide again")]
    Stale { expected: u64, current: Option<u64> },
}

impl DomainError for Refusal {
    fn code(&self) -> &'static str {
        match self {
            Refusal::Domain(e) => e.code(),
            Refusal::Stale { .. } => "agent_changed",
        }
    }

    fn kind(&self) -> ErrorKind {
        match self {
            Refusal::Domain(e) => wire::error_kind_to_proto(e.kind()),
            Refusal::Stale { .. } => ErrorKind::Conflict,
        }
    }
}

pub struct AgentAggregate;

impl Aggregate for AgentAggregate {
    type State = State;
    type Event = Event;
    type Error = Refusal;

    fn encode(_id: &str, event: &Event) -> (&'static str, Vec<u8>) {
        wire::event_to_json(event)
    }

    fn decode(event_type: &str, data: &[u8]) -> Result<Event, String> {
        wire::event_from_json(event_type, data)
    }

    fn evolve(state: State, event: &Event) -> State {
        evolve(state, event)
    }
}

pub fn stream_name(agent: &AgentId) -> String {
    format!("agent-{}", agent.0)
}

/// The directory (B1.4, B5.1): every agent's state, from the log.
#[derive(Debug, Default)]
struct Directory {
    agents: BTreeMap<String, (State, u64)>,
}

impl Directory {
    fn apply(&mut self, recorded: &RecordedEvent) {
        let Some(id) = recorded.stream.strip_prefix("agent-") else { return };
        match wire::event_from_json(&recorded.event_type, &recorded.data) {
            Ok(event) => {
                let entry = self.agents.entry(id.to_owned()).or_default();
                entry.0 = evolve(std::mem::take(&mut entry.0), &event);
                entry.1 = recorded.event_number;
            }
            Err(e) => {
                tracing::error!(stream = %recorded.stream, error = %e, "unreadable presence event")
            }
        }
    }
}

struct Shell<S> {
    repo: Repository<AgentAggregate, S>,
    directory: RwLock<Directory>,
    runtime: Runtime<S>,
}

pub async fn run<S: EventStore + Clone + 'static>(runtime: Runtime<S>) -> anyhow::Result<()> {
    let shell = Arc::new(Shell {
        repo: Repository::new(runtime.store.clone()),
        directory: RwLock::new(Directory::default()),
        runtime: runtime.clone(),
    });
    let projection = tokio::spawn({
        let shell = shell.clone();
        kernel::follow::run_projection(
            runtime.store.clone(),
            vec!["agent-".into()],
            move |e| shell.directory.write().unwrap_or_else(|p| p.into_inner()).apply(e),
            runtime.ready.clone(),
            runtime.shutdown.clone(),
        )
    });
    let relay = tokio::spawn(kernel::follow::run_relay(
        runtime.store.clone(),
        runtime.bus.clone(),
        Service::AgentPresence,
        vec!["agent-".into()],
        runtime.shutdown.clone(),
    ));
    let wrapups = tokio::spawn({
        let shell = shell.clone();
        let filter = bus::subjects::events_of_type(Service::WrapUp, "WrapupSubmitted")?;
        let (bus, shutdown) = (runtime.bus.clone(), runtime.shutdown.clone());
        async move {
            kernel::react::run(
                bus,
                "agent-presence-wrapup-submitted",
                filter,
                move |envelope| {
                    let shell = shell.clone();
                    async move { shell.on_wrapup_submitted(envelope).await }
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
    commands::serve(runtime.bus.clone(), Service::AgentPresence, handler, runtime.shutdown.clone())
        .await?;
    let _ = tokio::join!(projection, relay, wrapups);
    Ok(())
}

fn reply(
    agent: &AgentId,
    result: Result<Executed<State, Event>, ExecError<Refusal>>,
) -> CommandReply {
    match result {
        Ok(done) => match done.state.agent() {
            Some(a) => commands::ok_at(
                "AgentPresence",
                &wire::agent_to_proto(a, done.version.map_or(-1, |v| v as i64)),
                &stream_name(agent),
                done.version,
            ),
            None => commands::refused(&Refusal::Domain(Error::UnknownAgent)),
        },
        Err(e) => commands::from_exec_error(&e),
    }
}

impl<S: EventStore + Clone + 'static> Shell<S> {
    async fn execute(
        &self,
        agent: &AgentId,
        meta: &EventMetadata,
        command: &Command,
        expected: Option<u64>,
    ) -> CommandReply {
        let result = self
            .repo
            .execute(&stream_name(agent), meta, |state, version| {
                if let Some(expected) = expected
                    && version != Some(expected)
                {
                    return Err(Refusal::Stale { expected, current: version });
                }
                decide(state, command).map_err(Refusal::Domain)
            })
            .await;
        reply(agent, result)
    }

    async fn handle(&self, request: Request) -> CommandReply {
        let now = self.runtime.clock.now();
        let meta = EventMetadata {
            traceparent: request.trace.map(|t| t.to_string()).unwrap_or_default(),
            occurred_at: now,
            ..Default::default()
        };
        use verbs::presence as verb;
        let wire_error = |e: wire::WireError| CommandReply {
            result: Some(v1::command_reply::Result::Error(e.to_proto())),
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
        match request.verb.as_str() {
            verb::REGISTER => match wire::register_from_proto(&decoded!(v1::RegisterAgent), now) {
                Ok((agent, command)) => self.execute(&agent, &meta, &command, None).await,
                Err(e) => wire_error(e),
            },
            verb::CHANGE_STATE => {
                match wire::change_state_from_proto(&decoded!(v1::ChangeAgentState), now) {
                    Ok((agent, command)) => self.execute(&agent, &meta, &command, None).await,
                    Err(e) => wire_error(e),
                }
            }
            verb::ENTER_RONA => match wire::enter_rona_from_proto(&decoded!(v1::EnterRona), now) {
                Ok((agent, command)) => self.execute(&agent, &meta, &command, None).await,
                Err(e) => wire_error(e),
            },
            verb::RESERVE_SLOT => {
                match wire::reserve_slot_from_proto(&decoded!(v1::ReserveSlot), now) {
                    Ok((agent, command, expected)) => {
                        self.execute(&agent, &meta, &command, expected).await
                    }
                    Err(e) => wire_error(e),
                }
            }
            verb::RELEASE_SLOT => {
                match wire::release_slot_from_proto(&decoded!(v1::ReleaseSlot), now) {
                    Ok((agent, command)) => self.execute(&agent, &meta, &command, None).await,
                    Err(e) => wire_error(e),
                }
            }
            verb::GET => {
                let c = decoded!(v1::GetAgent);
                let agent = AgentId(c.agent_id);
                reply(
                    &agent,
                    self.repo.load(&stream_name(&agent)).await.map(|(state, version)| Executed {
                        state,
                        events: vec![],
                        version,
                    }),
                )
            }
            verb::LIST => {
                let c = decoded!(v1::ListAgents);
                let directory = self.directory.read().unwrap_or_else(|p| p.into_inner());
                let agents = directory
                    .agents
                    .values()
                    .filter_map(|(state, version)| state.agent().map(|a| (a, *version)))
                    .filter(|(a, _)| a.listed(c.available_only, &c.search))
                    .map(|(a, version)| wire::agent_to_proto(a, version as i64))
                    .collect();
                commands::ok("AgentList", &v1::AgentList { agents })
            }
            other => commands::unknown_verb(other),
        }
    }

    /// B1.3, B7.5: a submitted wrap-up frees the agent's slot for that conversation.
    async fn on_wrapup_submitted(&self, envelope: v1::EventEnvelope) -> Outcome {
        let event = match WrapUpEvent::from_proto(&envelope.event_type, &envelope.payload) {
            Ok(WrapUpEvent::WrapupSubmitted(e)) => e,
            Ok(_) => return Outcome::Done,
            Err(e) => return Outcome::Skip(e.to_string()),
        };
        let now = self.runtime.clock.now();
        let (agent, command) = match wire::release_for_wrapup_submitted(&event, now) {
            Ok(pair) => pair,
            Err(e) => return Outcome::Skip(e.to_string()),
        };
        let meta = EventMetadata {
            causation_id: envelope.event_id.clone(),
            correlation_id: envelope.correlation_id.clone(),
            occurred_at: now,
            ..Default::default()
        };
        match self
            .repo
            .execute(&stream_name(&agent), &meta, |s, _| {
                decide(s, &command).map_err(Refusal::Domain)
            })
            .await
        {
            Ok(_) => Outcome::Done,
            Err(ExecError::Domain(e)) => Outcome::Skip(e.to_string()),
            Err(e) => Outcome::Retry(e.to_string()),
        }
    }
}
