//! Property tests: no command sequence breaks an invariant, and the state
//! rebuilt from the emitted events equals the state the commands ran against.

mod support;

use std::collections::BTreeMap;

use proptest::prelude::*;
use support::*;
use wrap_up::domain::catalogue::{self, ReasonStatus};
use wrap_up::domain::pending::{self, LeaveReason};
use wrap_up::domain::*;

fn status() -> impl Strategy<Value = ReasonStatus> {
    prop_oneof![
        6 => Just(ReasonStatus::Active),
        1 => Just(ReasonStatus::Retired),
        1 => Just(ReasonStatus::Unknown),
    ]
}

/// A pending-wrap-up command at time 0; the driver stamps a growing time.
fn pending_command() -> impl Strategy<Value = pending::Command> {
    prop_oneof![
        3 => ((0..8u8), (0..3u8), proptest::option::of(0..200_000i64)).prop_map(|(w, c, auto)| {
            pending::Command::OweWrapup {
                agent_id: alice(),
                wrapup_id: wid(&format!("w{w}")),
                conversation_id: conv(&format!("c{c}")),
                leave_reason: LeaveReason::Ended,
                now_ms: 0,
                // Relative for now; `at` makes it absolute.
                auto_at_ms: auto,
            }
        }),
        3 => ((0..3u8), status(), prop_oneof![Just(String::new()), Just("x".repeat(MAX_NOTE_CHARS + 1))])
            .prop_map(|(c, reason_status, note)| pending::Command::SubmitWrapup {
                agent_id: alice(),
                conversation_id: conv(&format!("c{c}")),
                reason_code: code("resolved"),
                note,
                reason_status,
                now_ms: 0,
            }),
        2 => (0..8u8).prop_map(|w| pending::Command::AutoWrapup {
            agent_id: alice(),
            wrapup_id: wid(&format!("w{w}")),
            reason_code: auto(),
            now_ms: 0,
        }),
    ]
}

fn at(mut command: pending::Command, now: i64) -> pending::Command {
    match &mut command {
        pending::Command::OweWrapup { now_ms, auto_at_ms, .. } => {
            *now_ms = now;
            *auto_at_ms = auto_at_ms.map(|delay| now + delay);
        }
        pending::Command::SubmitWrapup { now_ms, .. }
        | pending::Command::AutoWrapup { now_ms, .. } => *now_ms = now,
    }
    command
}

/// Runs a command against the running state, checks the per-step invariants,
/// and appends what it emitted to the log.
fn step(
    state: &mut pending::State,
    log: &mut Vec<pending::Event>,
    command: &pending::Command,
) -> Result<(), TestCaseError> {
    let Ok(events) = pending::decide(state, command) else { return Ok(()) };
    for event in &events {
        if let pending::Event::WrapupSubmitted {
            wrapup_id,
            conversation_id,
            automatic,
            at_ms,
            ..
        } = event
        {
            let Some(owed) = state.owed(wrapup_id) else {
                return Err(TestCaseError::fail(format!(
                    "submitted {wrapup_id}, which is not owed"
                )));
            };
            prop_assert_eq!(&owed.conversation_id, conversation_id);
            if *automatic {
                prop_assert!(
                    owed.auto_at_ms.is_some_and(|a| *at_ms >= a),
                    "auto before its deadline"
                );
            } else {
                // B7.3: a submission settles the oldest owed for the conversation.
                let oldest = state.oldest_owed_for(conversation_id).map(|w| &w.wrapup_id);
                prop_assert_eq!(oldest, Some(wrapup_id));
            }
        }
        *state = pending::evolve(std::mem::take(state), event);
    }
    log.extend(events);
    prop_assert!(state.settled_total <= state.owed_total);
    prop_assert_eq!(state.owed.len() as u64, state.owed_total - state.settled_total);
    prop_assert!(state.owed.windows(2).all(|w| w[0].since_ms <= w[1].since_ms));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn b7_exactly_one_submission_per_owed_wrapup(
        commands in proptest::collection::vec(pending_command(), 1..60),
        steps in proptest::collection::vec(0..60_000i64, 60),
    ) {
        let mut state = pending::State::default();
        let mut log = Vec::new();
        let mut now = T0;
        for (command, dt) in commands.into_iter().zip(&steps) {
            now += dt;
            step(&mut state, &mut log, &at(command, now))?;
        }
        prop_assert_eq!(&pending::replay(&log), &state);

        // Drain: fire every deadline, then submit by hand what has none.
        now += 10_000_000;
        let due: Vec<_> = pending::due_auto_wrapups(&state, now).iter().map(|w| w.wrapup_id.clone()).collect();
        for wrapup_id in due {
            step(&mut state, &mut log, &pending::Command::AutoWrapup { agent_id: alice(), wrapup_id, reason_code: auto(), now_ms: now })?;
        }
        prop_assert_eq!(pending::next_deadline(&state), None);
        while let Some(w) = state.owed.first().cloned() {
            step(&mut state, &mut log, &submit(&w.conversation_id.0, "resolved", ReasonStatus::Active, now))?;
            prop_assert!(state.owed(&w.wrapup_id).is_none());
        }
        // Every owed wrap-up was submitted exactly once.
        let mut count: BTreeMap<&WrapupId, (u32, u32)> = BTreeMap::new();
        for event in &log {
            match event {
                pending::Event::WrapupOwed { wrapup_id, .. } => count.entry(wrapup_id).or_default().0 += 1,
                pending::Event::WrapupSubmitted { wrapup_id, .. } => count.entry(wrapup_id).or_default().1 += 1,
            }
        }
        for (wrapup_id, (owed, submitted)) in count {
            prop_assert_eq!((owed, submitted), (1, 1), "{}", wrapup_id);
        }
        prop_assert_eq!(state.owed_total, state.settled_total);
        prop_assert_eq!(&pending::replay(&log), &state);
    }

    #[test]
    fn b7_2_catalogue_invariants_hold_and_replay_matches(
        commands in proptest::collection::vec(
            ((0..5u8), prop_oneof![Just("A"), Just("B"), Just(" "), Just("Label a")], any::<bool>()),
            1..40,
        ),
    ) {
        let mut state = catalogue::State::default();
        let mut log = Vec::new();
        let codes = ["resolved", "spam", "auto", "Bad Code", "sales"];
        for (i, (c, label, is_put)) in commands.into_iter().enumerate() {
            let now = T0 + i as i64;
            let command = if is_put { put(codes[c as usize], label, now) } else { retire(codes[c as usize], now) };
            let before = state.status(&code(codes[c as usize]));
            let Ok(events) = catalogue::decide(&state, &command) else { continue };
            for event in &events {
                state = catalogue::evolve(state, event);
            }
            log.extend(events);
            let after = state.status(&code(codes[c as usize]));
            // Only a retire retires; only a put (re)activates.
            if after == ReasonStatus::Retired && before != ReasonStatus::Retired {
                prop_assert!(!is_put);
            }
            if after == ReasonStatus::Active && before != ReasonStatus::Active {
                prop_assert!(is_put);
            }
        }
        prop_assert!(state.reason(&auto()).is_none(), "the system reason is never managed");
        for reason in state.reasons.values() {
            prop_assert!(catalogue::validate_code(&reason.code).is_ok());
            prop_assert!(!reason.label.trim().is_empty());
        }
        prop_assert_eq!(catalogue::replay(&log), state);
    }
}

#[test]
fn purity_guard_domain_does_no_io_and_reads_no_clock() {
    for (file, source) in [
        ("domain.rs", include_str!("../src/domain.rs")),
        ("domain/catalogue.rs", include_str!("../src/domain/catalogue.rs")),
        ("domain/pending.rs", include_str!("../src/domain/pending.rs")),
    ] {
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
            assert!(!source.contains(banned), "{file} mentions `{banned}`: keep it pure");
        }
    }
}
