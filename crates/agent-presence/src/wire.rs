//! Domain types <-> the `switchboard.v1` contract (`proto/agent_presence.proto`).
//!
//! Decoding never panics: a missing or invalid field is a [`WireError`], which
//! the service answers as an `ERROR_KIND_INVALID` [`v1::CommandError`] (for
//! commands) or reports as a corrupt event (for the log).
//!
//! [`event_to_json`] / [`event_from_json`] are what an event-log aggregate
//! needs (`event_type` plus the proto3 JSON of the message).

use sb_proto::v1;
use sb_proto::{AgentPresenceEvent, millis_from_timestamp, timestamp_from_millis};

use crate::domain::{
    Actor, Agent, AgentId, Choice, Command, ConversationId, Error, ErrorKind, Event, OfferId,
    Presence, PresenceKind, Profile, Release, ReleaseCause, SupervisorId, WrapupId,
};

/// A proto message that does not make a valid domain value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("field `{0}` is required")]
    Missing(&'static str),
    #[error("field `{field}` is invalid: {reason}")]
    Invalid { field: &'static str, reason: String },
}

impl WireError {
    pub fn code(&self) -> &'static str {
        match self {
            WireError::Missing(_) => "missing_field",
            WireError::Invalid { .. } => "invalid_field",
        }
    }

    pub fn kind(&self) -> ErrorKind {
        ErrorKind::Invalid
    }

    pub fn to_proto(&self) -> v1::CommandError {
        v1::CommandError {
            code: self.code().to_owned(),
            message: self.to_string(),
            kind: error_kind_to_proto(self.kind()) as i32,
        }
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> WireError {
    WireError::Invalid { field, reason: reason.into() }
}

pub fn error_kind_to_proto(kind: ErrorKind) -> v1::ErrorKind {
    match kind {
        ErrorKind::Invalid => v1::ErrorKind::Invalid,
        ErrorKind::NotFound => v1::ErrorKind::NotFound,
        ErrorKind::Conflict => v1::ErrorKind::Conflict,
        ErrorKind::Rule => v1::ErrorKind::Rule,
        ErrorKind::Forbidden => v1::ErrorKind::Forbidden,
    }
}

/// A domain refusal as the command reply's error.
pub fn error_to_proto(error: &Error) -> v1::CommandError {
    v1::CommandError {
        code: error.code().to_owned(),
        message: error.to_string(),
        kind: error_kind_to_proto(error.kind()) as i32,
    }
}

// ---- small pieces --------------------------------------------------------------

fn id<T>(field: &'static str, value: &str, make: fn(String) -> T) -> Result<T, WireError> {
    if value.trim().is_empty() {
        Err(WireError::Missing(field))
    } else {
        Ok(make(value.to_owned()))
    }
}

fn at_to_proto(ms: i64) -> Option<sb_proto::Timestamp> {
    Some(timestamp_from_millis(ms))
}

fn at_from_proto(field: &'static str, at: Option<&sb_proto::Timestamp>) -> Result<i64, WireError> {
    at.map(millis_from_timestamp).ok_or(WireError::Missing(field))
}

pub fn actor_to_proto(actor: &Actor) -> v1::Actor {
    match actor {
        Actor::Agent(id) => v1::Actor { kind: v1::ActorKind::Agent as i32, id: id.0.clone() },
        Actor::Supervisor(id) => {
            v1::Actor { kind: v1::ActorKind::Supervisor as i32, id: id.0.clone() }
        }
        Actor::System => v1::Actor { kind: v1::ActorKind::System as i32, id: String::new() },
    }
}

pub fn actor_from_proto(actor: Option<&v1::Actor>) -> Result<Actor, WireError> {
    let actor = actor.ok_or(WireError::Missing("by"))?;
    match v1::ActorKind::try_from(actor.kind) {
        Ok(v1::ActorKind::Agent) => id("by.id", &actor.id, AgentId).map(Actor::Agent),
        Ok(v1::ActorKind::Supervisor) => {
            id("by.id", &actor.id, SupervisorId).map(Actor::Supervisor)
        }
        Ok(v1::ActorKind::System) => Ok(Actor::System),
        Ok(v1::ActorKind::Unspecified) => Err(WireError::Missing("by.kind")),
        Err(_) => Err(invalid("by.kind", format!("unknown actor kind {}", actor.kind))),
    }
}

fn presence_to_proto(presence: &Presence) -> (v1::PresenceState, String) {
    match presence {
        Presence::LoggedOut => (v1::PresenceState::LoggedOut, String::new()),
        Presence::Idle(reason) => (v1::PresenceState::Idle, reason.clone()),
        Presence::Available => (v1::PresenceState::Available, String::new()),
        Presence::Rona => (v1::PresenceState::Rona, String::new()),
    }
}

/// `SlotReleased.cause` on the wire: `offer_withdrawn`, or
/// `wrapup_submitted:<wrapupId>`. The wrap-up id rides in the cause because
/// `SlotReleased` has no field for it, and the state needs it to recognise a
/// repeated release (see [`Release::Wrapup`]).
pub fn cause_to_proto(cause: &ReleaseCause) -> String {
    match cause {
        ReleaseCause::OfferWithdrawn => WIRE_OFFER_WITHDRAWN.to_owned(),
        ReleaseCause::WrapupSubmitted(wrapup_id) => format!("{WIRE_WRAPUP_SUBMITTED}:{wrapup_id}"),
    }
}

pub fn cause_from_proto(cause: &str) -> Result<ReleaseCause, WireError> {
    if cause == WIRE_OFFER_WITHDRAWN {
        return Ok(ReleaseCause::OfferWithdrawn);
    }
    match cause.split_once(':') {
        Some((WIRE_WRAPUP_SUBMITTED, wrapup_id)) if !wrapup_id.trim().is_empty() => {
            Ok(ReleaseCause::WrapupSubmitted(WrapupId(wrapup_id.to_owned())))
        }
        _ if cause == WIRE_WRAPUP_SUBMITTED => Err(invalid(
            "cause",
            "`wrapup_submitted` needs its wrap-up id: `wrapup_submitted:<id>`",
        )),
        _ => Err(invalid("cause", format!("unknown cause `{cause}`"))),
    }
}

const WIRE_OFFER_WITHDRAWN: &str = "offer_withdrawn";
const WIRE_WRAPUP_SUBMITTED: &str = "wrapup_submitted";

fn kind_to_proto(kind: PresenceKind) -> v1::PresenceState {
    match kind {
        PresenceKind::LoggedOut => v1::PresenceState::LoggedOut,
        PresenceKind::Idle => v1::PresenceState::Idle,
        PresenceKind::Available => v1::PresenceState::Available,
        PresenceKind::Rona => v1::PresenceState::Rona,
    }
}

fn presence_from_proto(
    field: &'static str,
    state: i32,
    idle_reason: &str,
) -> Result<Presence, WireError> {
    match v1::PresenceState::try_from(state) {
        Ok(v1::PresenceState::LoggedOut) => Ok(Presence::LoggedOut),
        Ok(v1::PresenceState::Idle) => Ok(Presence::Idle(idle_reason.to_owned())),
        Ok(v1::PresenceState::Available) => Ok(Presence::Available),
        Ok(v1::PresenceState::Rona) => Ok(Presence::Rona),
        Ok(v1::PresenceState::Unspecified) => Err(WireError::Missing(field)),
        Err(_) => Err(invalid(field, format!("unknown presence state {state}"))),
    }
}

// ---- events ----------------------------------------------------------------------

/// Encode a domain event for the log and the bus.
pub fn event_to_proto(event: &Event) -> AgentPresenceEvent {
    match event {
        Event::AgentRegistered { agent_id, name, capacity, skills, by, at_ms } => {
            v1::AgentRegistered {
                agent_id: agent_id.0.clone(),
                name: name.clone(),
                capacity: *capacity,
                skills: skills.clone(),
                by: Some(actor_to_proto(by)),
                at: at_to_proto(*at_ms),
            }
            .into()
        }
        Event::AgentProfileUpdated { agent_id, name, capacity, skills, by, at_ms } => {
            v1::AgentProfileUpdated {
                agent_id: agent_id.0.clone(),
                name: name.clone(),
                capacity: *capacity,
                skills: skills.clone(),
                by: Some(actor_to_proto(by)),
                at: at_to_proto(*at_ms),
            }
            .into()
        }
        Event::StateChanged { agent_id, from, to, by, at_ms } => {
            let (state, idle_reason) = presence_to_proto(to);
            v1::AgentStateChanged {
                agent_id: agent_id.0.clone(),
                state: state as i32,
                idle_reason,
                previous_state: kind_to_proto(*from) as i32,
                by: Some(actor_to_proto(by)),
                at: at_to_proto(*at_ms),
            }
            .into()
        }
        Event::SlotReserved { agent_id, conversation_id, offer_id, at_ms } => v1::SlotReserved {
            agent_id: agent_id.0.clone(),
            conversation_id: conversation_id.0.clone(),
            offer_id: offer_id.0.clone(),
            at: at_to_proto(*at_ms),
        }
        .into(),
        Event::SlotReleased { agent_id, conversation_id, offer_id, cause, at_ms } => {
            v1::SlotReleased {
                agent_id: agent_id.0.clone(),
                conversation_id: conversation_id.0.clone(),
                offer_id: offer_id.0.clone(),
                cause: cause_to_proto(cause),
                at: at_to_proto(*at_ms),
            }
            .into()
        }
    }
}

/// Decode an event from the log or the bus.
pub fn event_from_proto(event: &AgentPresenceEvent) -> Result<Event, WireError> {
    Ok(match event {
        AgentPresenceEvent::AgentRegistered(e) => Event::AgentRegistered {
            agent_id: id("agent_id", &e.agent_id, AgentId)?,
            name: e.name.clone(),
            capacity: e.capacity,
            skills: e.skills.clone(),
            by: actor_from_proto(e.by.as_ref())?,
            at_ms: at_from_proto("at", e.at.as_ref())?,
        },
        AgentPresenceEvent::AgentProfileUpdated(e) => Event::AgentProfileUpdated {
            agent_id: id("agent_id", &e.agent_id, AgentId)?,
            name: e.name.clone(),
            capacity: e.capacity,
            skills: e.skills.clone(),
            by: actor_from_proto(e.by.as_ref())?,
            at_ms: at_from_proto("at", e.at.as_ref())?,
        },
        AgentPresenceEvent::AgentStateChanged(e) => Event::StateChanged {
            agent_id: id("agent_id", &e.agent_id, AgentId)?,
            to: presence_from_proto("state", e.state, &e.idle_reason)?,
            from: presence_from_proto("previous_state", e.previous_state, "")?.kind(),
            by: actor_from_proto(e.by.as_ref())?,
            at_ms: at_from_proto("at", e.at.as_ref())?,
        },
        AgentPresenceEvent::SlotReserved(e) => Event::SlotReserved {
            agent_id: id("agent_id", &e.agent_id, AgentId)?,
            conversation_id: id("conversation_id", &e.conversation_id, ConversationId)?,
            offer_id: id("offer_id", &e.offer_id, OfferId)?,
            at_ms: at_from_proto("at", e.at.as_ref())?,
        },
        AgentPresenceEvent::SlotReleased(e) => Event::SlotReleased {
            agent_id: id("agent_id", &e.agent_id, AgentId)?,
            conversation_id: id("conversation_id", &e.conversation_id, ConversationId)?,
            offer_id: id("offer_id", &e.offer_id, OfferId)?,
            cause: cause_from_proto(&e.cause)?,
            at_ms: at_from_proto("at", e.at.as_ref())?,
        },
    })
}

/// The event type and proto3 JSON of an event, as stored in the log.
pub fn event_to_json(event: &Event) -> (&'static str, Vec<u8>) {
    let wire = event_to_proto(event);
    (wire.event_type(), wire.to_json())
}

/// The inverse of [`event_to_json`]; input from the log, so never a panic.
pub fn event_from_json(event_type: &str, data: &[u8]) -> Result<Event, String> {
    let wire = AgentPresenceEvent::from_json(event_type, data).map_err(|e| e.to_string())?;
    event_from_proto(&wire).map_err(|e| e.to_string())
}

// ---- commands ----------------------------------------------------------------------
//
// Proto commands carry no time: the service passes its clock's `now_ms`.

/// verb `register`. A capacity of 0 means the default.
pub fn register_from_proto(
    msg: &v1::RegisterAgent,
    now_ms: i64,
) -> Result<(AgentId, Command), WireError> {
    let agent_id = id("agent_id", &msg.agent_id, AgentId)?;
    let command = Command::Register {
        agent_id: agent_id.clone(),
        profile: Profile {
            name: msg.name.clone(),
            capacity: (msg.capacity != 0).then_some(msg.capacity),
            skills: msg.skills.clone(),
        },
        by: actor_from_proto(msg.by.as_ref())?,
        now_ms,
    };
    Ok((agent_id, command))
}

/// verb `change-state`. `PRESENCE_STATE_RONA` becomes [`Command::EnterRona`]
/// (without an offer id) and is accepted from the system only.
pub fn change_state_from_proto(
    msg: &v1::ChangeAgentState,
    now_ms: i64,
) -> Result<(AgentId, Command), WireError> {
    let agent_id = id("agent_id", &msg.agent_id, AgentId)?;
    let by = actor_from_proto(msg.by.as_ref())?;
    let to = match presence_from_proto("state", msg.state, &msg.idle_reason)? {
        Presence::LoggedOut => Choice::LoggedOut,
        Presence::Idle(reason) => Choice::Idle(reason),
        Presence::Available => Choice::Available,
        Presence::Rona if by == Actor::System => {
            return Ok((agent_id, Command::EnterRona { offer_id: None, now_ms }));
        }
        Presence::Rona => {
            return Err(invalid("state", "RONA is entered only by the system (B2.2)"));
        }
    };
    Ok((agent_id, Command::ChangeState { to, by, now_ms }))
}

/// verb `reserve-slot`. Also returns the agent stream version routing decided
/// on (`None` for "any", i.e. a negative `expected_version`).
pub fn reserve_slot_from_proto(
    msg: &v1::ReserveSlot,
    now_ms: i64,
) -> Result<(AgentId, Command, Option<u64>), WireError> {
    let agent_id = id("agent_id", &msg.agent_id, AgentId)?;
    let command = Command::ReserveSlot {
        conversation_id: id("conversation_id", &msg.conversation_id, ConversationId)?,
        offer_id: id("offer_id", &msg.offer_id, OfferId)?,
        now_ms,
    };
    Ok((agent_id, command, u64::try_from(msg.expected_version).ok()))
}

/// verb `release-slot`. Cause `offer_withdrawn` (or empty) releases the
/// holding of `offer_id`; cause `wrapup_submitted:<wrapupId>` (no offer id)
/// releases the oldest holding for `conversation_id`, once per wrap-up id.
pub fn release_slot_from_proto(
    msg: &v1::ReleaseSlot,
    now_ms: i64,
) -> Result<(AgentId, Command), WireError> {
    let agent_id = id("agent_id", &msg.agent_id, AgentId)?;
    let cause = if msg.cause.is_empty() {
        ReleaseCause::OfferWithdrawn
    } else {
        cause_from_proto(&msg.cause)?
    };
    let release = match cause {
        ReleaseCause::OfferWithdrawn => Release::Offer(id("offer_id", &msg.offer_id, OfferId)?),
        ReleaseCause::WrapupSubmitted(wrapup_id) => {
            if !msg.offer_id.is_empty() {
                return Err(invalid(
                    "offer_id",
                    "a wrap-up release names the conversation, not an offer",
                ));
            }
            let conversation_id = id("conversation_id", &msg.conversation_id, ConversationId)?;
            Release::Wrapup { conversation_id, wrapup_id }
        }
    };
    Ok((agent_id, Command::ReleaseSlot { release, now_ms }))
}

/// The reaction to the wrap-up service's `WrapupSubmitted` event (B1.3, B7.5):
/// free one slot of that agent for that conversation. Idempotent per wrap-up
/// id, so a redelivered event changes nothing.
pub fn release_for_wrapup_submitted(
    event: &v1::WrapupSubmitted,
    now_ms: i64,
) -> Result<(AgentId, Command), WireError> {
    let agent_id = id("agent_id", &event.agent_id, AgentId)?;
    let release = Release::Wrapup {
        conversation_id: id("conversation_id", &event.conversation_id, ConversationId)?,
        wrapup_id: id("wrapup_id", &event.wrapup_id, WrapupId)?,
    };
    Ok((agent_id, Command::ReleaseSlot { release, now_ms }))
}

/// verb `enter-rona` (routing, as the system, B2.2). With an offer id the
/// offer's slot is released in the same append, and the command is a no-op
/// once that offer holds no slot — so send it *before* any `release-slot` for
/// the same offer, and a repeat is harmless. An empty offer id only changes
/// the state.
pub fn enter_rona_from_proto(
    msg: &v1::EnterRona,
    now_ms: i64,
) -> Result<(AgentId, Command), WireError> {
    let agent_id = id("agent_id", &msg.agent_id, AgentId)?;
    let offer_id = (!msg.offer_id.trim().is_empty()).then(|| OfferId(msg.offer_id.clone()));
    Ok((agent_id, Command::EnterRona { offer_id, now_ms }))
}

/// The reaction to routing's `OfferExpired` (B2.2): withdraw the offer's slot
/// and put the agent in RONA, at the event's time. Idempotent per offer.
pub fn rona_for_offer_expired(event: &v1::OfferExpired) -> Result<(AgentId, Command), WireError> {
    let agent_id = id("agent_id", &event.agent_id, AgentId)?;
    let command = Command::EnterRona {
        offer_id: Some(id("offer_id", &event.offer_id, OfferId)?),
        now_ms: at_from_proto("at", event.at.as_ref())?,
    };
    Ok((agent_id, command))
}

/// The reaction to the conversation's `OfferWithdrawn` (B1.3, B1.5, B2.2): an
/// expired offer is [`rona_for_offer_expired`]'s RONA; any other withdrawal
/// (session lost, conversation ended) only gives the slot back. Idempotent
/// per offer, so it may run alongside the `OfferExpired` reaction.
pub fn release_for_offer_withdrawn(
    event: &v1::OfferWithdrawn,
) -> Result<(AgentId, Command), WireError> {
    let agent_id = id("agent_id", &event.agent_id, AgentId)?;
    let offer_id = id("offer_id", &event.offer_id, OfferId)?;
    let now_ms = at_from_proto("at", event.at.as_ref())?;
    let command = match v1::WithdrawReason::try_from(event.reason) {
        Ok(v1::WithdrawReason::Expired) => Command::EnterRona { offer_id: Some(offer_id), now_ms },
        Ok(v1::WithdrawReason::SessionLost | v1::WithdrawReason::ConversationEnded) => {
            Command::ReleaseSlot { release: Release::Offer(offer_id), now_ms }
        }
        Ok(v1::WithdrawReason::Unspecified) => return Err(WireError::Missing("reason")),
        Err(_) => {
            return Err(invalid("reason", format!("unknown withdraw reason {}", event.reason)));
        }
    };
    Ok((agent_id, command))
}

// ---- state ---------------------------------------------------------------------------

/// The command reply and list entry for an agent. `version` is the agent
/// stream version after its last event.
pub fn agent_to_proto(agent: &Agent, version: i64) -> v1::AgentPresence {
    let (state, idle_reason) = presence_to_proto(&agent.presence);
    v1::AgentPresence {
        agent_id: agent.id.0.clone(),
        name: agent.name.clone(),
        capacity: agent.capacity,
        skills: agent.skills.clone(),
        state: state as i32,
        idle_reason,
        state_since: at_to_proto(agent.state_since_ms),
        slots_used: agent.slots_used(),
        slot_conversation_ids: agent.slot_conversation_ids().map(|c| c.0.clone()).collect(),
        version,
        idle_since: at_to_proto(agent.idle_since_ms),
    }
}
