//! The managed list of wrap-up reasons (B7.2), stream `config-wrapup-reasons`.
//!
//! - Put = add or rename: a new code is added; an active code with another
//!   label is renamed; the same label again changes nothing.
//! - Retire: a retired reason is no longer offered or accepted for new
//!   submissions, but stays in the catalogue so old wrap-ups keep their code
//!   and label. Retiring twice changes nothing.
//! - Putting a retired code again brings it back: it emits `ReasonAdded` (the
//!   code is added to the offered list again, with the label given), so a
//!   supervisor who retired a reason by mistake can undo it with the same call
//!   that created it.
//! - The system reason of automatic wrap-ups (`auto` unless configured; the
//!   command carries it) is not part of the managed list and cannot be put.

use std::collections::BTreeMap;

use super::{Actor, Error, MAX_CODE_CHARS, MAX_LABEL_CHARS, ReasonCode};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    pub code: ReasonCode,
    pub label: String,
    pub retired: bool,
}

/// What the catalogue says about a code, as a submission needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReasonStatus {
    Active,
    Retired,
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct State {
    /// Every reason ever added, retired ones included, by code.
    pub reasons: BTreeMap<ReasonCode, Reason>,
}

impl State {
    pub fn reason(&self, code: &ReasonCode) -> Option<&Reason> {
        self.reasons.get(code)
    }

    pub fn status(&self, code: &ReasonCode) -> ReasonStatus {
        match self.reasons.get(code) {
            None => ReasonStatus::Unknown,
            Some(reason) if reason.retired => ReasonStatus::Retired,
            Some(_) => ReasonStatus::Active,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Add or rename (`PUT /wrapup-reasons/{code}`). `system_reason` is the
    /// configured auto wrap-up reason, which may not be put.
    PutReason { code: ReasonCode, label: String, system_reason: ReasonCode, by: Actor, now_ms: i64 },
    /// Retire (`DELETE /wrapup-reasons/{code}`).
    RetireReason { code: ReasonCode, by: Actor, now_ms: i64 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A new code, or a retired one brought back.
    ReasonAdded {
        code: ReasonCode,
        label: String,
        by: Actor,
        at_ms: i64,
    },
    ReasonRenamed {
        code: ReasonCode,
        label: String,
        by: Actor,
        at_ms: i64,
    },
    ReasonRetired {
        code: ReasonCode,
        by: Actor,
        at_ms: i64,
    },
}

impl Event {
    /// The event type name (the proto message name).
    pub fn event_type(&self) -> &'static str {
        match self {
            Event::ReasonAdded { .. } => "WrapupReasonAdded",
            Event::ReasonRenamed { .. } => "WrapupReasonRenamed",
            Event::ReasonRetired { .. } => "WrapupReasonRetired",
        }
    }
}

pub fn decide(state: &State, command: &Command) -> Result<Vec<Event>, Error> {
    match command {
        Command::PutReason { code, label, system_reason, by, now_ms } => {
            supervisor_only(by)?;
            validate_code(code)?;
            if code == system_reason {
                return Err(Error::ReservedReasonCode(code.clone()));
            }
            let label = label.trim();
            if label.is_empty() || label.chars().count() > MAX_LABEL_CHARS {
                return Err(Error::InvalidLabel);
            }
            let (code, label, by, at_ms) = (code.clone(), label.to_owned(), by.clone(), *now_ms);
            Ok(match state.reasons.get(&code) {
                None => vec![Event::ReasonAdded { code, label, by, at_ms }],
                Some(reason) if reason.retired => {
                    vec![Event::ReasonAdded { code, label, by, at_ms }]
                }
                Some(reason) if reason.label == label => vec![],
                Some(_) => vec![Event::ReasonRenamed { code, label, by, at_ms }],
            })
        }
        Command::RetireReason { code, by, now_ms } => {
            supervisor_only(by)?;
            match state.reasons.get(code) {
                None => Err(Error::NoSuchReason(code.clone())),
                Some(reason) if reason.retired => Ok(vec![]),
                Some(_) => Ok(vec![Event::ReasonRetired {
                    code: code.clone(),
                    by: by.clone(),
                    at_ms: *now_ms,
                }]),
            }
        }
    }
}

pub fn evolve(mut state: State, event: &Event) -> State {
    match event {
        Event::ReasonAdded { code, label, .. } => {
            state.reasons.insert(
                code.clone(),
                Reason { code: code.clone(), label: label.clone(), retired: false },
            );
        }
        Event::ReasonRenamed { code, label, .. } => {
            if let Some(reason) = state.reasons.get_mut(code) {
                reason.label.clone_from(label);
            }
        }
        Event::ReasonRetired { code, .. } => {
            if let Some(reason) = state.reasons.get_mut(code) {
                reason.retired = true;
            }
        }
    }
    state
}

/// Rebuild the catalogue from its whole stream.
pub fn replay<'a>(events: impl IntoIterator<Item = &'a Event>) -> State {
    events.into_iter().fold(State::default(), evolve)
}

/// Reasons whose code or label contains `search`, case-insensitively (B7.2),
/// ordered by code. An empty search matches everything. Retired reasons only
/// when asked for (a supervisor's view); agents are offered active ones.
pub fn search<'a>(state: &'a State, search: &str, include_retired: bool) -> Vec<&'a Reason> {
    let needle = search.trim().to_lowercase();
    state
        .reasons
        .values()
        .filter(|r| include_retired || !r.retired)
        .filter(|r| {
            needle.is_empty()
                || r.code.0.to_lowercase().contains(&needle)
                || r.label.to_lowercase().contains(&needle)
        })
        .collect()
}

/// A code is a token: lowercase ASCII letters, digits, `_` and `-`, starting
/// with a letter or digit, at most [`MAX_CODE_CHARS`] long.
pub fn validate_code(code: &ReasonCode) -> Result<(), Error> {
    let code = code.as_str();
    let first_ok =
        code.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok =
        code.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if first_ok && rest_ok && code.len() <= MAX_CODE_CHARS {
        Ok(())
    } else {
        Err(Error::InvalidCode)
    }
}

fn supervisor_only(by: &Actor) -> Result<(), Error> {
    if matches!(by, Actor::Supervisor(_)) { Ok(()) } else { Err(Error::SupervisorOnly) }
}
