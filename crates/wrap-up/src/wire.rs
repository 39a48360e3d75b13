//! Domain types <-> the `switchboard.v1` contract (`proto/wrap_up.proto`).
//!
//! Decoding never panics: a missing or invalid field is a [`WireError`], which
//! the service answers as an `ERROR_KIND_INVALID` [`v1::CommandError`] (for
//! commands) or reports as a corrupt event (for the log).
//!
//! `*_event_to_json` / `*_event_from_json` are what an event-log aggregate
//! needs (`event_type` plus the proto3 JSON of the message).

use sb_proto::v1;
use sb_proto::{WrapUpEvent, millis_from_timestamp, timestamp_from_millis};

use crate::domain::catalogue::{self, Reason, ReasonStatus};
use crate::domain::pending::{self, LeaveReason, OwedWrapup};
use crate::domain::{
    Actor, AgentId, ConversationId, Error, ErrorKind, ReasonCode, SupervisorId, WrapupId,
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

pub fn leave_reason_to_proto(reason: LeaveReason) -> v1::LeaveReason {
    match reason {
        LeaveReason::Ended => v1::LeaveReason::Ended,
        LeaveReason::Transferred => v1::LeaveReason::Transferred,
        LeaveReason::LeftConference => v1::LeaveReason::LeftConference,
        LeaveReason::ConferenceEnded => v1::LeaveReason::ConferenceEnded,
        LeaveReason::Reassigned => v1::LeaveReason::Reassigned,
    }
}

/// Also for the conversation events (`ParticipantLeft.reason`) the service reacts to.
pub fn leave_reason_from_proto(field: &'static str, value: i32) -> Result<LeaveReason, WireError> {
    match v1::LeaveReason::try_from(value) {
        Ok(v1::LeaveReason::Ended) => Ok(LeaveReason::Ended),
        Ok(v1::LeaveReason::Transferred) => Ok(LeaveReason::Transferred),
        Ok(v1::LeaveReason::LeftConference) => Ok(LeaveReason::LeftConference),
        Ok(v1::LeaveReason::ConferenceEnded) => Ok(LeaveReason::ConferenceEnded),
        Ok(v1::LeaveReason::Reassigned) => Ok(LeaveReason::Reassigned),
        Ok(v1::LeaveReason::Unspecified) => Err(WireError::Missing(field)),
        Err(_) => Err(invalid(field, format!("unknown leave reason {value}"))),
    }
}

// ---- events ----------------------------------------------------------------------

/// A decoded wrap-up event: of the catalogue, or of one agent's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    Catalogue(catalogue::Event),
    Pending(pending::Event),
}

pub fn catalogue_event_to_proto(event: &catalogue::Event) -> WrapUpEvent {
    match event {
        catalogue::Event::ReasonAdded { code, label, by, at_ms } => v1::WrapupReasonAdded {
            code: code.0.clone(),
            label: label.clone(),
            by: Some(actor_to_proto(by)),
            at: at_to_proto(*at_ms),
        }
        .into(),
        catalogue::Event::ReasonRenamed { code, label, by, at_ms } => v1::WrapupReasonRenamed {
            code: code.0.clone(),
            label: label.clone(),
            by: Some(actor_to_proto(by)),
            at: at_to_proto(*at_ms),
        }
        .into(),
        catalogue::Event::ReasonRetired { code, by, at_ms } => v1::WrapupReasonRetired {
            code: code.0.clone(),
            by: Some(actor_to_proto(by)),
            at: at_to_proto(*at_ms),
        }
        .into(),
    }
}

/// Encode an event of an agent's `wrapup-<agentId>` stream.
pub fn pending_event_to_proto(event: &pending::Event) -> WrapUpEvent {
    match event {
        pending::Event::WrapupOwed {
            agent_id,
            wrapup_id,
            conversation_id,
            leave_reason,
            since_ms,
            auto_at_ms,
        } => v1::WrapupOwed {
            wrapup_id: wrapup_id.0.clone(),
            agent_id: agent_id.0.clone(),
            conversation_id: conversation_id.0.clone(),
            leave_reason: leave_reason_to_proto(*leave_reason) as i32,
            since: at_to_proto(*since_ms),
            auto_at: auto_at_ms.map(timestamp_from_millis),
        }
        .into(),
        pending::Event::WrapupSubmitted {
            agent_id,
            wrapup_id,
            conversation_id,
            reason_code,
            note,
            automatic,
            at_ms,
        } => v1::WrapupSubmitted {
            wrapup_id: wrapup_id.0.clone(),
            agent_id: agent_id.0.clone(),
            conversation_id: conversation_id.0.clone(),
            reason_code: reason_code.0.clone(),
            note: note.clone(),
            automatic: *automatic,
            at: at_to_proto(*at_ms),
        }
        .into(),
    }
}

/// Decode an event from the log or the bus.
pub fn event_from_proto(event: &WrapUpEvent) -> Result<Decoded, WireError> {
    Ok(match event {
        WrapUpEvent::WrapupReasonAdded(e) => Decoded::Catalogue(catalogue::Event::ReasonAdded {
            code: id("code", &e.code, ReasonCode)?,
            label: e.label.clone(),
            by: actor_from_proto(e.by.as_ref())?,
            at_ms: at_from_proto("at", e.at.as_ref())?,
        }),
        WrapUpEvent::WrapupReasonRenamed(e) => {
            Decoded::Catalogue(catalogue::Event::ReasonRenamed {
                code: id("code", &e.code, ReasonCode)?,
                label: e.label.clone(),
                by: actor_from_proto(e.by.as_ref())?,
                at_ms: at_from_proto("at", e.at.as_ref())?,
            })
        }
        WrapUpEvent::WrapupReasonRetired(e) => {
            Decoded::Catalogue(catalogue::Event::ReasonRetired {
                code: id("code", &e.code, ReasonCode)?,
                by: actor_from_proto(e.by.as_ref())?,
                at_ms: at_from_proto("at", e.at.as_ref())?,
            })
        }
        WrapUpEvent::WrapupOwed(e) => Decoded::Pending(pending::Event::WrapupOwed {
            agent_id: id("agent_id", &e.agent_id, AgentId)?,
            wrapup_id: id("wrapup_id", &e.wrapup_id, WrapupId)?,
            conversation_id: id("conversation_id", &e.conversation_id, ConversationId)?,
            leave_reason: leave_reason_from_proto("leave_reason", e.leave_reason)?,
            since_ms: at_from_proto("since", e.since.as_ref())?,
            auto_at_ms: e.auto_at.as_ref().map(millis_from_timestamp),
        }),
        WrapUpEvent::WrapupSubmitted(e) => Decoded::Pending(pending::Event::WrapupSubmitted {
            agent_id: id("agent_id", &e.agent_id, AgentId)?,
            wrapup_id: id("wrapup_id", &e.wrapup_id, WrapupId)?,
            conversation_id: id("conversation_id", &e.conversation_id, ConversationId)?,
            reason_code: id("reason_code", &e.reason_code, ReasonCode)?,
            note: e.note.clone(),
            automatic: e.automatic,
            at_ms: at_from_proto("at", e.at.as_ref())?,
        }),
    })
}

/// The catalogue's events as stored in the log (`event_type`, proto3 JSON).
pub fn catalogue_event_to_json(event: &catalogue::Event) -> (&'static str, Vec<u8>) {
    let wire = catalogue_event_to_proto(event);
    (wire.event_type(), wire.to_json())
}

/// The inverse of [`catalogue_event_to_json`]; never a panic. An agent's
/// wrap-up event in the catalogue stream is an error.
pub fn catalogue_event_from_json(
    event_type: &str,
    data: &[u8],
) -> Result<catalogue::Event, String> {
    match decode_json(event_type, data)? {
        Decoded::Catalogue(event) => Ok(event),
        Decoded::Pending(_) => Err(format!("`{event_type}` is not a catalogue event")),
    }
}

/// An agent's events as stored in the log (`event_type`, proto3 JSON).
pub fn pending_event_to_json(event: &pending::Event) -> (&'static str, Vec<u8>) {
    let wire = pending_event_to_proto(event);
    (wire.event_type(), wire.to_json())
}

/// The inverse of [`pending_event_to_json`]; never a panic. A catalogue
/// event in an agent's stream is an error.
pub fn pending_event_from_json(event_type: &str, data: &[u8]) -> Result<pending::Event, String> {
    match decode_json(event_type, data)? {
        Decoded::Pending(event) => Ok(event),
        Decoded::Catalogue(_) => Err(format!("`{event_type}` is not an agent wrap-up event")),
    }
}

fn decode_json(event_type: &str, data: &[u8]) -> Result<Decoded, String> {
    let wire = WrapUpEvent::from_json(event_type, data).map_err(|e| e.to_string())?;
    event_from_proto(&wire).map_err(|e| e.to_string())
}

// ---- commands ----------------------------------------------------------------------
//
// Proto commands carry no time: the service passes its clock's `now_ms`.

/// verb `put-reason`. `system_reason` is the configured auto wrap-up reason.
pub fn put_reason_from_proto(
    msg: &v1::PutWrapupReason,
    system_reason: &ReasonCode,
    now_ms: i64,
) -> Result<catalogue::Command, WireError> {
    Ok(catalogue::Command::PutReason {
        code: id("code", &msg.code, ReasonCode)?,
        label: msg.label.clone(),
        system_reason: system_reason.clone(),
        by: actor_from_proto(msg.by.as_ref())?,
        now_ms,
    })
}

/// verb `retire-reason`.
pub fn retire_reason_from_proto(
    msg: &v1::RetireWrapupReason,
    now_ms: i64,
) -> Result<catalogue::Command, WireError> {
    Ok(catalogue::Command::RetireReason {
        code: id("code", &msg.code, ReasonCode)?,
        by: actor_from_proto(msg.by.as_ref())?,
        now_ms,
    })
}

/// verb `submit`. `reason_status` answers what the catalogue says about the
/// submitted code (usually `|code| catalogue_state.status(code)`). A blank
/// reason is left for the domain to refuse (`reason_required`).
pub fn submit_from_proto(
    msg: &v1::SubmitWrapup,
    now_ms: i64,
    reason_status: impl FnOnce(&ReasonCode) -> ReasonStatus,
) -> Result<(AgentId, pending::Command), WireError> {
    let agent_id = id("agent_id", &msg.agent_id, AgentId)?;
    let reason_code = ReasonCode(msg.reason_code.clone());
    let command = pending::Command::SubmitWrapup {
        agent_id: agent_id.clone(),
        conversation_id: id("conversation_id", &msg.conversation_id, ConversationId)?,
        reason_status: reason_status(&reason_code),
        reason_code,
        note: msg.note.clone(),
        now_ms,
    };
    Ok((agent_id, command))
}

/// The reaction to the conversation service's `ParticipantLeft` (B7.1): the
/// agent owes one wrap-up for this leave, since the leave's own time, with the
/// auto deadline `auto_wrapup_secs` later (0 disables it). `wrapup_id` must be
/// derived from the event id, so a redelivered event owes nothing twice.
pub fn owe_for_participant_left(
    event: &v1::ParticipantLeft,
    wrapup_id: WrapupId,
    auto_wrapup_secs: u32,
) -> Result<(AgentId, pending::Command), WireError> {
    let agent_id = id("agent_id", &event.agent_id, AgentId)?;
    let now_ms = at_from_proto("at", event.at.as_ref())?;
    let command = pending::Command::OweWrapup {
        agent_id: agent_id.clone(),
        wrapup_id,
        conversation_id: id("conversation_id", &event.conversation_id, ConversationId)?,
        leave_reason: leave_reason_from_proto("reason", event.reason)?,
        now_ms,
        auto_at_ms: pending::auto_deadline(now_ms, auto_wrapup_secs),
    };
    Ok((agent_id, command))
}

// ---- state ---------------------------------------------------------------------------

pub fn reason_to_proto(reason: &Reason) -> v1::WrapupReason {
    v1::WrapupReason {
        code: reason.code.0.clone(),
        label: reason.label.clone(),
        retired: reason.retired,
    }
}

/// verb `list-reasons`: the active reasons matching `msg.search` (B7.2).
pub fn list_reasons(state: &catalogue::State, msg: &v1::ListWrapupReasons) -> v1::WrapupReasonList {
    v1::WrapupReasonList {
        reasons: catalogue::search(state, &msg.search, false)
            .into_iter()
            .map(reason_to_proto)
            .collect(),
    }
}

pub fn pending_to_proto(agent: &AgentId, owed: &OwedWrapup) -> v1::PendingWrapup {
    v1::PendingWrapup {
        wrapup_id: owed.wrapup_id.0.clone(),
        agent_id: agent.0.clone(),
        conversation_id: owed.conversation_id.0.clone(),
        since: at_to_proto(owed.since_ms),
        auto_at: owed.auto_at_ms.map(timestamp_from_millis),
    }
}

/// verb `pending`: what the agent owes, oldest first.
pub fn pending_list_to_proto(agent: &AgentId, state: &pending::State) -> v1::PendingWrapupList {
    v1::PendingWrapupList {
        wrapups: state.owed.iter().map(|w| pending_to_proto(agent, w)).collect(),
    }
}
