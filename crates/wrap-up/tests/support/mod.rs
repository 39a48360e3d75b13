//! given(events).when(command).then(events | error), for both wrap-up aggregates.

#![allow(dead_code)]

use std::fmt::Debug;

use wrap_up::domain::catalogue::{self, ReasonStatus};
use wrap_up::domain::pending::{self, LeaveReason};
use wrap_up::domain::*;

pub const T0: i64 = 1_764_000_000_000;
pub const AUTO_MS: i64 = 120_000;

pub fn alice() -> AgentId {
    AgentId::new("alice")
}

pub fn sup() -> Actor {
    Actor::Supervisor(SupervisorId::new("sue"))
}

pub fn code(c: &str) -> ReasonCode {
    ReasonCode::new(c)
}

pub fn conv(c: &str) -> ConversationId {
    ConversationId::new(c)
}

pub fn wid(w: &str) -> WrapupId {
    WrapupId::new(w)
}

pub fn auto() -> ReasonCode {
    code(DEFAULT_AUTO_REASON)
}

// ---- catalogue ----

pub fn added(c: &str, label: &str, at_ms: i64) -> catalogue::Event {
    catalogue::Event::ReasonAdded { code: code(c), label: label.into(), by: sup(), at_ms }
}

pub fn renamed(c: &str, label: &str, at_ms: i64) -> catalogue::Event {
    catalogue::Event::ReasonRenamed { code: code(c), label: label.into(), by: sup(), at_ms }
}

pub fn retired(c: &str, at_ms: i64) -> catalogue::Event {
    catalogue::Event::ReasonRetired { code: code(c), by: sup(), at_ms }
}

pub fn put(c: &str, label: &str, now_ms: i64) -> catalogue::Command {
    catalogue::Command::PutReason {
        code: code(c),
        label: label.into(),
        system_reason: auto(),
        by: sup(),
        now_ms,
    }
}

pub fn retire(c: &str, now_ms: i64) -> catalogue::Command {
    catalogue::Command::RetireReason { code: code(c), by: sup(), now_ms }
}

// ---- pending ----

pub fn owe(w: &str, c: &str, now_ms: i64) -> pending::Command {
    pending::Command::OweWrapup {
        agent_id: alice(),
        wrapup_id: wid(w),
        conversation_id: conv(c),
        leave_reason: LeaveReason::Ended,
        now_ms,
        auto_at_ms: Some(now_ms + AUTO_MS),
    }
}

pub fn owed(w: &str, c: &str, since_ms: i64) -> pending::Event {
    owed_as(w, c, LeaveReason::Ended, since_ms, Some(since_ms + AUTO_MS))
}

pub fn owed_as(
    w: &str,
    c: &str,
    leave_reason: LeaveReason,
    since_ms: i64,
    auto_at_ms: Option<i64>,
) -> pending::Event {
    pending::Event::WrapupOwed {
        agent_id: alice(),
        wrapup_id: wid(w),
        conversation_id: conv(c),
        leave_reason,
        since_ms,
        auto_at_ms,
    }
}

pub fn submit(c: &str, reason: &str, status: ReasonStatus, now_ms: i64) -> pending::Command {
    pending::Command::SubmitWrapup {
        agent_id: alice(),
        conversation_id: conv(c),
        reason_code: code(reason),
        note: String::new(),
        reason_status: status,
        now_ms,
    }
}

pub fn submitted(w: &str, c: &str, reason: &str, at_ms: i64) -> pending::Event {
    pending::Event::WrapupSubmitted {
        agent_id: alice(),
        wrapup_id: wid(w),
        conversation_id: conv(c),
        reason_code: code(reason),
        note: String::new(),
        automatic: false,
        at_ms,
    }
}

pub fn auto_submitted(w: &str, c: &str, at_ms: i64) -> pending::Event {
    pending::Event::WrapupSubmitted {
        agent_id: alice(),
        wrapup_id: wid(w),
        conversation_id: conv(c),
        reason_code: auto(),
        note: String::new(),
        automatic: true,
        at_ms,
    }
}

pub fn fire(w: &str, now_ms: i64) -> pending::Command {
    pending::Command::AutoWrapup {
        agent_id: alice(),
        wrapup_id: wid(w),
        reason_code: auto(),
        now_ms,
    }
}

// ---- the harness, over any decide/evolve pair ----

pub trait Aggregate {
    type State: Default + Clone + Debug;
    type Command;
    type Event: Clone + Debug + PartialEq;
    fn decide(state: &Self::State, command: &Self::Command) -> Result<Vec<Self::Event>, Error>;
    fn evolve(state: Self::State, event: &Self::Event) -> Self::State;
}

pub struct Catalogue;
impl Aggregate for Catalogue {
    type State = catalogue::State;
    type Command = catalogue::Command;
    type Event = catalogue::Event;
    fn decide(state: &Self::State, command: &Self::Command) -> Result<Vec<Self::Event>, Error> {
        catalogue::decide(state, command)
    }
    fn evolve(state: Self::State, event: &Self::Event) -> Self::State {
        catalogue::evolve(state, event)
    }
}

pub struct Pending;
impl Aggregate for Pending {
    type State = pending::State;
    type Command = pending::Command;
    type Event = pending::Event;
    fn decide(state: &Self::State, command: &Self::Command) -> Result<Vec<Self::Event>, Error> {
        pending::decide(state, command)
    }
    fn evolve(state: Self::State, event: &Self::Event) -> Self::State {
        pending::evolve(state, event)
    }
}

pub struct Given<A: Aggregate> {
    state: A::State,
}

pub fn given<A: Aggregate>(events: impl IntoIterator<Item = A::Event>) -> Given<A> {
    Given { state: events.into_iter().fold(A::State::default(), |s, e| A::evolve(s, &e)) }
}

pub fn given_catalogue(events: impl IntoIterator<Item = catalogue::Event>) -> Given<Catalogue> {
    given::<Catalogue>(events)
}

pub fn given_pending(events: impl IntoIterator<Item = pending::Event>) -> Given<Pending> {
    given::<Pending>(events)
}

pub struct When<A: Aggregate> {
    state: A::State,
    result: Result<Vec<A::Event>, Error>,
}

impl<A: Aggregate> Given<A> {
    pub fn when(self, command: A::Command) -> When<A> {
        let result = A::decide(&self.state, &command);
        When { state: self.state, result }
    }
}

impl<A: Aggregate> When<A> {
    /// Asserts the events and returns the state after them.
    #[track_caller]
    pub fn then(self, expected: impl IntoIterator<Item = A::Event>) -> A::State {
        let expected: Vec<A::Event> = expected.into_iter().collect();
        match self.result {
            Ok(events) => {
                assert_eq!(events, expected);
                events.iter().fold(self.state, A::evolve)
            }
            Err(error) => panic!("expected events {expected:?}, got error {error:?}"),
        }
    }

    #[track_caller]
    pub fn then_error(self, code: &str, kind: ErrorKind) -> Error {
        match self.result {
            Ok(events) => panic!("expected error `{code}`, got events {events:?}"),
            Err(error) => {
                assert_eq!((error.code(), error.kind()), (code, kind), "{error}");
                error
            }
        }
    }
}
