//! given(events).when(command).then(events | error) for the presence domain.

#![allow(dead_code)]

use agent_presence::domain::*;

pub const T0: i64 = 1_764_000_000_000;

pub fn alice() -> AgentId {
    AgentId::new("alice")
}

pub fn sup() -> Actor {
    Actor::Supervisor(SupervisorId::new("sue"))
}

pub fn me() -> Actor {
    Actor::Agent(alice())
}

pub fn conv(id: &str) -> ConversationId {
    ConversationId::new(id)
}

pub fn offer(id: &str) -> OfferId {
    OfferId::new(id)
}

pub fn registered(capacity: u32) -> Event {
    Event::AgentRegistered {
        agent_id: alice(),
        name: "Alice Smith".into(),
        capacity,
        skills: vec![],
        by: sup(),
        at_ms: T0,
    }
}

pub fn changed(from: PresenceKind, to: Presence, by: Actor, at_ms: i64) -> Event {
    Event::StateChanged { agent_id: alice(), from, to, by, at_ms }
}

pub fn available(at_ms: i64) -> Event {
    changed(PresenceKind::LoggedOut, Presence::Available, me(), at_ms)
}

pub fn reserved(c: &str, o: &str, at_ms: i64) -> Event {
    Event::SlotReserved { agent_id: alice(), conversation_id: conv(c), offer_id: offer(o), at_ms }
}

pub fn released(c: &str, o: &str, cause: ReleaseCause, at_ms: i64) -> Event {
    Event::SlotReleased {
        agent_id: alice(),
        conversation_id: conv(c),
        offer_id: offer(o),
        cause,
        at_ms,
    }
}

pub fn by_wrapup(w: &str) -> ReleaseCause {
    ReleaseCause::WrapupSubmitted(WrapupId::new(w))
}

pub fn release_wrapup(c: &str, w: &str, now_ms: i64) -> Command {
    Command::ReleaseSlot {
        release: Release::Wrapup { conversation_id: conv(c), wrapup_id: WrapupId::new(w) },
        now_ms,
    }
}

pub fn reserve(c: &str, o: &str, now_ms: i64) -> Command {
    Command::ReserveSlot { conversation_id: conv(c), offer_id: offer(o), now_ms }
}

pub fn choose(to: Choice, by: Actor, now_ms: i64) -> Command {
    Command::ChangeState { to, by, now_ms }
}

pub struct Given {
    pub events: Vec<Event>,
}

pub fn given(events: impl IntoIterator<Item = Event>) -> Given {
    Given { events: events.into_iter().collect() }
}

pub struct When {
    pub state: State,
    pub result: Result<Vec<Event>, Error>,
}

impl Given {
    pub fn when(self, command: Command) -> When {
        let state = replay(&self.events);
        let result = decide(&state, &command);
        When { state, result }
    }
}

impl When {
    /// Asserts the events and returns the state after them.
    #[track_caller]
    pub fn then(self, expected: impl IntoIterator<Item = Event>) -> State {
        let expected: Vec<Event> = expected.into_iter().collect();
        match self.result {
            Ok(events) => {
                assert_eq!(events, expected);
                events.iter().fold(self.state, evolve)
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
