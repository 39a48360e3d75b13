//! What one agent owes (B7.1, B7.3–B7.5), stream `wrapup-<agentId>`.
//!
//! - Each leave of a conversation owes one wrap-up ([`Command::OweWrapup`]),
//!   idempotent per wrap-up id because it is sent by a reaction that may run
//!   twice.
//! - A submission settles the **oldest** wrap-up owed for that conversation
//!   (B7.3). Refusals, checked in this order: a blank reason or a note over
//!   [`MAX_NOTE_CHARS`] (400); nothing owed for the conversation (409: code
//!   `wrapup_already_submitted` when this agent recently settled a wrap-up for
//!   it, `nothing_owed` otherwise); an unknown or retired reason (422).
//! - An automatic submission ([`Command::AutoWrapup`]) settles the wrap-up its
//!   deadline belongs to, with the configured system reason. It is a no-op
//!   when that wrap-up was already settled (the timer raced a submission), and
//!   refused when the deadline has not come (`auto_wrapup_not_due`).
//! - Each settled wrap-up frees one slot of the agent for that conversation
//!   ([`slot_release_for`], B7.5).

use std::collections::VecDeque;

use super::catalogue::ReasonStatus;
use super::{AgentId, ConversationId, Error, MAX_NOTE_CHARS, ReasonCode, WrapupId};

/// How many settled wrap-ups an agent's state remembers, to recognise a late
/// duplicate `OweWrapup` and to answer a second submission with
/// `wrapup_already_submitted`. Older ones are forgotten (the log keeps them).
pub const SETTLED_MEMORY: usize = 256;

/// How the agent left the conversation (B7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaveReason {
    Ended,
    Transferred,
    LeftConference,
    ConferenceEnded,
    Reassigned,
}

/// One wrap-up the agent still owes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwedWrapup {
    pub wrapup_id: WrapupId,
    pub conversation_id: ConversationId,
    pub leave_reason: LeaveReason,
    pub since_ms: i64,
    /// Auto wrap-up deadline (B7.4); `None` when auto wrap-up is disabled.
    pub auto_at_ms: Option<i64>,
}

impl OwedWrapup {
    pub fn is_due(&self, now_ms: i64) -> bool {
        self.auto_at_ms.is_some_and(|at| now_ms >= at)
    }
}

/// A recently settled wrap-up (see [`SETTLED_MEMORY`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettledWrapup {
    pub wrapup_id: WrapupId,
    pub conversation_id: ConversationId,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct State {
    /// Owed wrap-ups, oldest first (by `since_ms`, then by arrival).
    pub owed: Vec<OwedWrapup>,
    /// The most recently settled wrap-ups, oldest first, at most [`SETTLED_MEMORY`].
    pub recently_settled: VecDeque<SettledWrapup>,
    /// Wrap-ups ever owed and ever settled by this agent.
    pub owed_total: u64,
    pub settled_total: u64,
}

impl State {
    pub fn owed(&self, wrapup_id: &WrapupId) -> Option<&OwedWrapup> {
        self.owed.iter().find(|w| &w.wrapup_id == wrapup_id)
    }

    /// The wrap-up a submission for this conversation would settle.
    pub fn oldest_owed_for(&self, conversation_id: &ConversationId) -> Option<&OwedWrapup> {
        self.owed.iter().find(|w| &w.conversation_id == conversation_id)
    }

    pub fn owes_for(&self, conversation_id: &ConversationId) -> bool {
        self.oldest_owed_for(conversation_id).is_some()
    }

    fn recently_settled(&self, wrapup_id: &WrapupId) -> Option<&SettledWrapup> {
        self.recently_settled.iter().find(|s| &s.wrapup_id == wrapup_id)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// The agent left a conversation (reaction to the conversation's events).
    /// `auto_at_ms` is the auto wrap-up deadline, from configuration
    /// ([`auto_deadline`]).
    OweWrapup {
        agent_id: AgentId,
        wrapup_id: WrapupId,
        conversation_id: ConversationId,
        leave_reason: LeaveReason,
        now_ms: i64,
        auto_at_ms: Option<i64>,
    },
    /// The agent submits a reason and optional note (empty = none).
    /// `reason_status` is what the catalogue says about `reason_code` now.
    SubmitWrapup {
        agent_id: AgentId,
        conversation_id: ConversationId,
        reason_code: ReasonCode,
        note: String,
        reason_status: ReasonStatus,
        now_ms: i64,
    },
    /// The auto wrap-up deadline of `wrapup_id` fired (B7.4). `reason_code` is
    /// the configured system reason.
    AutoWrapup { agent_id: AgentId, wrapup_id: WrapupId, reason_code: ReasonCode, now_ms: i64 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    WrapupOwed {
        agent_id: AgentId,
        wrapup_id: WrapupId,
        conversation_id: ConversationId,
        leave_reason: LeaveReason,
        since_ms: i64,
        auto_at_ms: Option<i64>,
    },
    WrapupSubmitted {
        agent_id: AgentId,
        wrapup_id: WrapupId,
        conversation_id: ConversationId,
        reason_code: ReasonCode,
        note: String,
        automatic: bool,
        at_ms: i64,
    },
}

impl Event {
    /// The agent whose stream (`wrapup-<id>`) the event belongs to.
    pub fn agent_id(&self) -> &AgentId {
        match self {
            Event::WrapupOwed { agent_id, .. } | Event::WrapupSubmitted { agent_id, .. } => {
                agent_id
            }
        }
    }

    /// The event type name (the proto message name).
    pub fn event_type(&self) -> &'static str {
        match self {
            Event::WrapupOwed { .. } => "WrapupOwed",
            Event::WrapupSubmitted { .. } => "WrapupSubmitted",
        }
    }
}

pub fn decide(state: &State, command: &Command) -> Result<Vec<Event>, Error> {
    match command {
        Command::OweWrapup {
            agent_id,
            wrapup_id,
            conversation_id,
            leave_reason,
            now_ms,
            auto_at_ms,
        } => {
            let known = state
                .owed(wrapup_id)
                .map(|w| &w.conversation_id)
                .or_else(|| state.recently_settled(wrapup_id).map(|s| &s.conversation_id));
            match known {
                Some(c) if c == conversation_id => Ok(vec![]),
                Some(_) => Err(Error::WrapupIdReused(wrapup_id.clone())),
                None => Ok(vec![Event::WrapupOwed {
                    agent_id: agent_id.clone(),
                    wrapup_id: wrapup_id.clone(),
                    conversation_id: conversation_id.clone(),
                    leave_reason: *leave_reason,
                    since_ms: *now_ms,
                    auto_at_ms: *auto_at_ms,
                }]),
            }
        }
        Command::SubmitWrapup {
            agent_id,
            conversation_id,
            reason_code,
            note,
            reason_status,
            now_ms,
        } => {
            if reason_code.as_str().trim().is_empty() {
                return Err(Error::ReasonRequired);
            }
            let note_chars = note.chars().count();
            if note_chars > MAX_NOTE_CHARS {
                return Err(Error::NoteTooLong(note_chars));
            }
            let Some(owed) = state.oldest_owed_for(conversation_id) else {
                let settled =
                    state.recently_settled.iter().any(|s| &s.conversation_id == conversation_id);
                return Err(if settled {
                    Error::WrapupAlreadySubmitted(conversation_id.clone())
                } else {
                    Error::NothingOwed(conversation_id.clone())
                });
            };
            match reason_status {
                ReasonStatus::Active => {}
                ReasonStatus::Retired => return Err(Error::ReasonRetired(reason_code.clone())),
                ReasonStatus::Unknown => return Err(Error::UnknownReason(reason_code.clone())),
            }
            Ok(vec![Event::WrapupSubmitted {
                agent_id: agent_id.clone(),
                wrapup_id: owed.wrapup_id.clone(),
                conversation_id: conversation_id.clone(),
                reason_code: reason_code.clone(),
                note: note.clone(),
                automatic: false,
                at_ms: *now_ms,
            }])
        }
        Command::AutoWrapup { agent_id, wrapup_id, reason_code, now_ms } => {
            let Some(owed) = state.owed(wrapup_id) else {
                return if state.recently_settled(wrapup_id).is_some() {
                    Ok(vec![])
                } else {
                    Err(Error::UnknownWrapup(wrapup_id.clone()))
                };
            };
            if !owed.is_due(*now_ms) {
                return Err(Error::AutoWrapupNotDue(wrapup_id.clone()));
            }
            Ok(vec![Event::WrapupSubmitted {
                agent_id: agent_id.clone(),
                wrapup_id: wrapup_id.clone(),
                conversation_id: owed.conversation_id.clone(),
                reason_code: reason_code.clone(),
                note: String::new(),
                automatic: true,
                at_ms: *now_ms,
            }])
        }
    }
}

pub fn evolve(mut state: State, event: &Event) -> State {
    match event {
        Event::WrapupOwed {
            wrapup_id,
            conversation_id,
            leave_reason,
            since_ms,
            auto_at_ms,
            ..
        } => {
            if state.owed(wrapup_id).is_some() {
                return state;
            }
            // Keep `owed` ordered by `since_ms`; equal times keep arrival order.
            let at = state.owed.partition_point(|w| w.since_ms <= *since_ms);
            state.owed.insert(
                at,
                OwedWrapup {
                    wrapup_id: wrapup_id.clone(),
                    conversation_id: conversation_id.clone(),
                    leave_reason: *leave_reason,
                    since_ms: *since_ms,
                    auto_at_ms: *auto_at_ms,
                },
            );
            state.owed_total += 1;
        }
        Event::WrapupSubmitted { wrapup_id, conversation_id, .. } => {
            let Some(i) = state.owed.iter().position(|w| &w.wrapup_id == wrapup_id) else {
                return state;
            };
            state.owed.remove(i);
            state.settled_total += 1;
            if state.recently_settled.len() == SETTLED_MEMORY {
                state.recently_settled.pop_front();
            }
            state.recently_settled.push_back(SettledWrapup {
                wrapup_id: wrapup_id.clone(),
                conversation_id: conversation_id.clone(),
            });
        }
    }
    state
}

/// Rebuild an agent's state from its whole stream.
pub fn replay<'a>(events: impl IntoIterator<Item = &'a Event>) -> State {
    events.into_iter().fold(State::default(), evolve)
}

/// The auto wrap-up deadline for a wrap-up owed at `now_ms` (B7.4);
/// `auto_wrapup_secs == 0` disables auto wrap-up.
pub fn auto_deadline(now_ms: i64, auto_wrapup_secs: u32) -> Option<i64> {
    (auto_wrapup_secs > 0).then(|| now_ms.saturating_add(i64::from(auto_wrapup_secs) * 1000))
}

/// Owed wrap-ups whose auto deadline has come, earliest deadline first: the
/// service sends an [`Command::AutoWrapup`] for each.
pub fn due_auto_wrapups(state: &State, now_ms: i64) -> Vec<&OwedWrapup> {
    let mut due: Vec<_> = state.owed.iter().filter(|w| w.is_due(now_ms)).collect();
    due.sort_by_key(|w| w.auto_at_ms);
    due
}

/// The earliest auto wrap-up deadline still owed, for the service's timer.
pub fn next_deadline(state: &State) -> Option<i64> {
    state.owed.iter().filter_map(|w| w.auto_at_ms).min()
}

/// The presence command a submitted wrap-up calls for: free one slot of
/// `agent` for that conversation (B1.3, B7.5). As data, so the service maps it
/// onto the agent-presence `ReleaseSlot` (cause `wrapup_submitted`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotRelease {
    pub agent_id: AgentId,
    pub conversation_id: ConversationId,
    pub wrapup_id: WrapupId,
}

/// The reaction to a wrap-up event: `Some` for every submission.
pub fn slot_release_for(event: &Event) -> Option<SlotRelease> {
    match event {
        Event::WrapupSubmitted { agent_id, wrapup_id, conversation_id, .. } => Some(SlotRelease {
            agent_id: agent_id.clone(),
            conversation_id: conversation_id.clone(),
            wrapup_id: wrapup_id.clone(),
        }),
        Event::WrapupOwed { .. } => None,
    }
}
