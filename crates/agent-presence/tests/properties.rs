//! Property tests: no command sequence breaks an invariant, and the state
//! rebuilt from the emitted events equals the state the commands ran against.

mod support;

use agent_presence::domain::*;
use proptest::prelude::*;
use support::*;

fn actor() -> impl Strategy<Value = Actor> {
    prop_oneof![
        Just(me()),
        Just(Actor::Agent(AgentId::new("bob"))),
        Just(sup()),
        Just(Actor::System),
    ]
}

fn choice() -> impl Strategy<Value = Choice> {
    prop_oneof![
        Just(Choice::LoggedOut),
        Just(Choice::Available),
        Just(Choice::Available),
        prop_oneof![Just("break"), Just("lunch"), Just(""), Just("disconnected")]
            .prop_map(|r| Choice::Idle(r.to_owned())),
    ]
}

fn offer_id() -> impl Strategy<Value = OfferId> {
    (0..6u8).prop_map(|i| offer(&format!("o{i}")))
}

fn conversation_id() -> impl Strategy<Value = ConversationId> {
    (0..3u8).prop_map(|i| conv(&format!("c{i}")))
}

/// A command at time 0; the driver stamps a growing `now_ms` with [`at`].
fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        1 => ((0..6u32), actor()).prop_map(|(capacity, by)| Command::Register {
            agent_id: alice(),
            profile: Profile { name: "Alice".into(), capacity: Some(capacity), skills: vec![] },
            by,
            now_ms: 0,
        }),
        3 => (choice(), actor()).prop_map(|(to, by)| Command::ChangeState { to, by, now_ms: 0 }),
        1 => proptest::option::of(offer_id())
            .prop_map(|offer_id| Command::EnterRona { offer_id, now_ms: 0 }),
        4 => (conversation_id(), offer_id()).prop_map(|(conversation_id, offer_id)| {
            Command::ReserveSlot { conversation_id, offer_id, now_ms: 0 }
        }),
        2 => offer_id()
            .prop_map(|o| Command::ReleaseSlot { release: Release::Offer(o), now_ms: 0 }),
        2 => (conversation_id(), (0..6u8)).prop_map(|(conversation_id, w)| Command::ReleaseSlot {
            release: Release::Wrapup { conversation_id, wrapup_id: WrapupId::new(format!("w{w}")) },
            now_ms: 0,
        }),
    ]
}

fn at(mut command: Command, now: i64) -> Command {
    match &mut command {
        Command::Register { now_ms, .. }
        | Command::ChangeState { now_ms, .. }
        | Command::EnterRona { now_ms, .. }
        | Command::ReserveSlot { now_ms, .. }
        | Command::ReleaseSlot { now_ms, .. } => *now_ms = now,
    }
    command
}

fn explicit_choice_by_person(command: &Command) -> bool {
    matches!(command, Command::ChangeState { by: Actor::Agent(_) | Actor::Supervisor(_), .. })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn b1_no_command_sequence_breaks_an_invariant(
        commands in proptest::collection::vec(command(), 1..60),
        steps in proptest::collection::vec(0..40_000i64, 60),
    ) {
        let mut state = State::default();
        let mut log: Vec<Event> = Vec::new();
        let mut now_ms = T0;
        // Register first most of the time, so the sequence does something.
        let register = Command::Register {
            agent_id: alice(),
            profile: Profile { name: "Alice".into(), capacity: None, skills: vec![] },
            by: sup(),
            now_ms,
        };
        let mut all: Vec<Command> = vec![register];
        for (command, step) in commands.into_iter().zip(&steps) {
            now_ms += step;
            all.push(at(command, now_ms));
        }
        for command in &all {
            let before = state.clone();
            let Ok(events) = decide(&state, command) else {
                // A refusal emits nothing; the state stays as it was.
                continue;
            };
            for event in &events {
                state = evolve(state, event);
            }
            log.extend(events.iter().cloned());
            let (Some(was), Some(now)) = (before.agent(), state.agent()) else { continue };

            // Slots: each holding is one distinct offer; reservations never exceed capacity.
            let mut offers: Vec<_> = now.holdings.iter().map(|h| &h.offer_id).collect();
            offers.sort();
            offers.dedup();
            prop_assert_eq!(offers.len(), now.holdings.len());
            if events.iter().any(|e| matches!(e, Event::SlotReserved { .. })) {
                prop_assert!(now.slots_used() <= now.capacity, "{:?}", now);
                prop_assert_eq!(was.presence.clone(), Presence::Available);
            }
            // RONA is left only by an explicit choice of the agent or a supervisor …
            if was.presence == Presence::Rona && now.presence != Presence::Rona {
                prop_assert!(explicit_choice_by_person(command), "{command:?}");
            }
            // … entered only by EnterRona …
            if was.presence != Presence::Rona && now.presence == Presence::Rona {
                prop_assert!(matches!(command, Command::EnterRona { .. }), "{command:?}");
            }
            // … and only a person's choice makes an agent Available (B1.1).
            if was.presence != Presence::Available && now.presence == Presence::Available {
                prop_assert!(explicit_choice_by_person(command), "{command:?}");
            }
            if let Presence::Idle(reason) = &now.presence {
                prop_assert!(!reason.trim().is_empty());
            }
            prop_assert!(now.capacity >= 1 && now.capacity <= MAX_CAPACITY);
        }
        // Rebuilding from the log gives the running state.
        prop_assert_eq!(replay(&log), state.clone());
        // Every release matched a reservation: holdings = reserved - released.
        // A wrap-up frees at most one slot, however often its release comes.
        let mut by_wrapup: Vec<_> = log
            .iter()
            .filter_map(|e| match e {
                Event::SlotReleased { cause: ReleaseCause::WrapupSubmitted(w), .. } => Some(w),
                _ => None,
            })
            .collect();
        let total = by_wrapup.len();
        by_wrapup.sort();
        by_wrapup.dedup();
        prop_assert_eq!(by_wrapup.len(), total);
        let reserved = log.iter().filter(|e| matches!(e, Event::SlotReserved { .. })).count();
        let released = log.iter().filter(|e| matches!(e, Event::SlotReleased { .. })).count();
        prop_assert_eq!(state.slots_used() as usize, reserved - released);
    }
}

#[test]
fn purity_guard_domain_does_no_io_and_reads_no_clock() {
    let source = include_str!("../src/domain.rs");
    for banned in [
        "tokio",
        "std::time::SystemTime",
        "SystemTime",
        "Instant::now",
        "Uuid::new_v4",
        "uuid",
        "reqwest",
        "async_nats",
        "std::fs",
        "std::net",
        "async fn",
        "rand::",
    ] {
        assert!(!source.contains(banned), "domain.rs mentions `{banned}`: keep it pure");
    }
}
