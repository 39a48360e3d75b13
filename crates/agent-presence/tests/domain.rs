//! Presence rules (PRODUCT.md B1, B2.2–B2.3): given events, when a command,
//! then events or a typed refusal.

mod support;

use agent_presence::domain::*;
use support::*;

// ---- B1.1 / B1.2 registration and profile ----------------------------------------------

#[test]
fn b1_1_a_new_agent_is_logged_out_with_default_capacity_3() {
    let profile = Profile { name: " Alice Smith ".into(), capacity: None, skills: vec![] };
    let state = given([])
        .when(Command::Register { agent_id: alice(), profile, by: sup(), now_ms: T0 })
        .then([registered(3)]);
    let agent = state.agent().unwrap();
    assert_eq!(agent.presence, Presence::LoggedOut);
    assert_eq!((agent.capacity, agent.slots_used(), agent.state_since_ms), (3, 0, T0));
    assert_eq!(agent.changed_by, sup());
    assert!(!state.is_routable());
}

#[test]
fn b1_2_re_registering_updates_the_profile_and_keeps_state_and_slots() {
    let profile = Profile {
        name: "Alice S.".into(),
        capacity: Some(5),
        skills: vec!["es".into(), "billing".into(), "es".into()],
    };
    let state = given([registered(3), available(T0 + 1), reserved("c1", "o1", T0 + 2)])
        .when(Command::Register { agent_id: alice(), profile, by: sup(), now_ms: T0 + 3 })
        .then([Event::AgentProfileUpdated {
            agent_id: alice(),
            name: "Alice S.".into(),
            capacity: 5,
            skills: vec!["billing".into(), "es".into()],
            by: sup(),
            at_ms: T0 + 3,
        }]);
    let agent = state.agent().unwrap();
    assert_eq!((agent.presence.clone(), agent.slots_used()), (Presence::Available, 1));
}

#[test]
fn b1_2_registering_the_same_profile_again_changes_nothing() {
    let profile = Profile { name: "Alice Smith".into(), capacity: Some(3), skills: vec![] };
    given([registered(3)])
        .when(Command::Register { agent_id: alice(), profile, by: sup(), now_ms: T0 + 1 })
        .then([]);
}

#[test]
fn b1_2_capacity_must_be_between_1_and_the_limit() {
    for capacity in [0, MAX_CAPACITY + 1] {
        let profile = Profile { name: "Alice".into(), capacity: Some(capacity), skills: vec![] };
        given([])
            .when(Command::Register { agent_id: alice(), profile, by: sup(), now_ms: T0 })
            .then_error("invalid_capacity", ErrorKind::Invalid);
    }
    let profile = Profile { name: "Alice".into(), capacity: Some(MAX_CAPACITY), skills: vec![] };
    given([]).when(Command::Register { agent_id: alice(), profile, by: sup(), now_ms: T0 }).then([
        Event::AgentRegistered {
            agent_id: alice(),
            name: "Alice".into(),
            capacity: MAX_CAPACITY,
            skills: vec![],
            by: sup(),
            at_ms: T0,
        },
    ]);
}

#[test]
fn b1_2_blank_names_and_blank_skills_are_refused() {
    let blank = Profile { name: "  ".into(), capacity: None, skills: vec![] };
    given([])
        .when(Command::Register { agent_id: alice(), profile: blank, by: sup(), now_ms: T0 })
        .then_error("invalid_name", ErrorKind::Invalid);
    let skill = Profile { name: "A".into(), capacity: None, skills: vec![" ".into()] };
    given([])
        .when(Command::Register { agent_id: alice(), profile: skill, by: sup(), now_ms: T0 })
        .then_error("invalid_skill", ErrorKind::Invalid);
}

#[test]
fn b8_1_only_supervisors_register_agents() {
    let profile = Profile { name: "Alice".into(), capacity: None, skills: vec![] };
    given([])
        .when(Command::Register { agent_id: alice(), profile, by: me(), now_ms: T0 })
        .then_error("supervisor_only", ErrorKind::Forbidden);
}

#[test]
fn b1_1_lowering_capacity_below_slots_in_use_is_allowed_but_blocks_new_offers() {
    let profile = Profile { name: "Alice Smith".into(), capacity: Some(1), skills: vec![] };
    let mut events =
        vec![registered(3), available(T0), reserved("c1", "o1", 1), reserved("c2", "o2", 2)];
    let state = given(events.clone())
        .when(Command::Register { agent_id: alice(), profile, by: sup(), now_ms: 3 })
        .then([Event::AgentProfileUpdated {
            agent_id: alice(),
            name: "Alice Smith".into(),
            capacity: 1,
            skills: vec![],
            by: sup(),
            at_ms: 3,
        }]);
    assert_eq!(state.slots_used(), 2);
    events.push(Event::AgentProfileUpdated {
        agent_id: alice(),
        name: "Alice Smith".into(),
        capacity: 1,
        skills: vec![],
        by: sup(),
        at_ms: 3,
    });
    given(events).when(reserve("c3", "o3", 4)).then_error("no_free_slot", ErrorKind::Conflict);
}

// ---- B1.1 / B1.4 state changes --------------------------------------------------------------

#[test]
fn b1_1_choosing_available_while_logged_out_is_the_login() {
    let state = given([registered(3)])
        .when(choose(Choice::Available, me(), T0 + 10))
        .then([available(T0 + 10)]);
    let agent = state.agent().unwrap();
    assert!(state.is_routable());
    assert_eq!((agent.state_since_ms, agent.idle_since_ms), (T0 + 10, T0 + 10));
}

#[test]
fn b1_4_every_state_change_records_who_and_when() {
    let state = given([registered(3), available(T0)])
        .when(choose(Choice::Idle("lunch".into()), sup(), T0 + 5))
        .then([changed(PresenceKind::Available, Presence::Idle("lunch".into()), sup(), T0 + 5)]);
    let agent = state.agent().unwrap();
    assert_eq!(agent.changed_by, sup());
    assert_eq!(agent.state_since_ms, T0 + 5);
    assert_eq!(agent.presence.idle_reason(), Some("lunch"));
}

#[test]
fn b1_1_idle_needs_a_non_blank_reason() {
    given([registered(3)])
        .when(choose(Choice::Idle("  ".into()), me(), T0))
        .then_error("idle_reason_required", ErrorKind::Invalid);
    given([registered(3)])
        .when(choose(Choice::Idle("x".repeat(MAX_IDLE_REASON_CHARS + 1)), me(), T0))
        .then_error("invalid_idle_reason", ErrorKind::Invalid);
}

#[test]
fn b1_1_idle_with_another_reason_is_a_change_the_same_reason_is_not() {
    let idle = changed(PresenceKind::LoggedOut, Presence::Idle("break".into()), me(), T0);
    given([registered(3), idle.clone()])
        .when(choose(Choice::Idle("lunch".into()), me(), T0 + 1))
        .then([changed(PresenceKind::Idle, Presence::Idle("lunch".into()), me(), T0 + 1)]);
    given([registered(3), idle]).when(choose(Choice::Idle("break".into()), me(), T0 + 1)).then([]);
}

#[test]
fn b1_1_choosing_the_current_state_again_changes_nothing() {
    let state = given([registered(3), available(T0)])
        .when(choose(Choice::Available, me(), T0 + 9))
        .then([]);
    assert_eq!(state.agent().unwrap().state_since_ms, T0);
}

#[test]
fn b1_1_logged_out_from_any_state_keeps_the_slots() {
    let state = given([registered(3), available(T0), reserved("c1", "o1", T0 + 1)])
        .when(choose(Choice::LoggedOut, me(), T0 + 2))
        .then([changed(PresenceKind::Available, Presence::LoggedOut, me(), T0 + 2)]);
    assert_eq!(state.slots_used(), 1);
}

#[test]
fn b1_1_state_changes_of_an_unknown_agent_are_refused() {
    given([])
        .when(choose(Choice::Available, me(), T0))
        .then_error("unknown_agent", ErrorKind::NotFound);
    given([]).when(reserve("c1", "o1", T0)).then_error("unknown_agent", ErrorKind::NotFound);
    given([])
        .when(Command::EnterRona { offer_id: None, now_ms: T0 })
        .then_error("unknown_agent", ErrorKind::NotFound);
    given([])
        .when(Command::ReleaseSlot { release: Release::Offer(offer("o1")), now_ms: T0 })
        .then_error("unknown_agent", ErrorKind::NotFound);
}

#[test]
fn b8_1_an_agent_changes_only_its_own_state() {
    let bob = Actor::Agent(AgentId::new("bob"));
    given([registered(3)])
        .when(choose(Choice::Available, bob, T0))
        .then_error("not_your_agent", ErrorKind::Forbidden);
}

#[test]
fn b1_1_nothing_but_a_choice_makes_an_agent_available_not_even_the_system() {
    given([registered(3)])
        .when(choose(Choice::Available, Actor::System, T0))
        .then_error("system_cannot_make_available", ErrorKind::Rule);
}

#[test]
fn b1_5_the_system_may_move_a_lost_agent_to_idle_disconnected() {
    given([registered(3), available(T0), reserved("c1", "o1", T0 + 1)])
        .when(choose(Choice::Idle(IDLE_REASON_DISCONNECTED.into()), Actor::System, T0 + 60_000))
        .then([changed(
            PresenceKind::Available,
            Presence::Idle("disconnected".into()),
            Actor::System,
            T0 + 60_000,
        )]);
}

// ---- B2.2 / B2.3 RONA ---------------------------------------------------------------------------

#[test]
fn b2_2_an_expired_offer_puts_an_available_agent_in_rona_and_frees_its_slot() {
    let state = given([registered(3), available(T0), reserved("c1", "o1", T0 + 1)])
        .when(Command::EnterRona { offer_id: Some(offer("o1")), now_ms: T0 + 30_001 })
        .then([
            released("c1", "o1", ReleaseCause::OfferWithdrawn, T0 + 30_001),
            changed(PresenceKind::Available, Presence::Rona, Actor::System, T0 + 30_001),
        ]);
    let agent = state.agent().unwrap();
    assert_eq!((agent.presence.clone(), agent.slots_used()), (Presence::Rona, 0));
    assert_eq!(agent.changed_by, Actor::System);
}

#[test]
fn b2_2_entering_rona_twice_is_a_no_op() {
    let rona = changed(PresenceKind::Available, Presence::Rona, Actor::System, T0 + 1);
    given([registered(3), available(T0), rona])
        .when(Command::EnterRona { offer_id: Some(offer("o1")), now_ms: T0 + 2 })
        .then([]);
}

#[test]
fn b2_2_a_repeated_rona_for_the_same_offer_changes_nothing() {
    // The agent already came back from RONA; the repeat must not send it back.
    let events = [
        registered(3),
        available(T0),
        reserved("c1", "o1", T0 + 1),
        released("c1", "o1", ReleaseCause::OfferWithdrawn, T0 + 30_001),
        changed(PresenceKind::Available, Presence::Rona, Actor::System, T0 + 30_001),
        changed(PresenceKind::Rona, Presence::Available, me(), T0 + 40_000),
    ];
    let state = given(events)
        .when(Command::EnterRona { offer_id: Some(offer("o1")), now_ms: T0 + 41_000 })
        .then([]);
    assert!(state.is_routable());
}

#[test]
fn b2_2_rona_without_an_offer_id_only_changes_the_state() {
    given([registered(3), available(T0), reserved("c1", "o1", T0 + 1)])
        .when(Command::EnterRona { offer_id: None, now_ms: T0 + 2 })
        .then([changed(PresenceKind::Available, Presence::Rona, Actor::System, T0 + 2)]);
}

#[test]
fn b2_2_an_agent_that_chose_idle_meanwhile_keeps_its_choice_on_rona() {
    let idle = changed(PresenceKind::Available, Presence::Idle("break".into()), me(), T0 + 2);
    given([registered(3), available(T0), reserved("c1", "o1", T0 + 1), idle])
        .when(Command::EnterRona { offer_id: Some(offer("o1")), now_ms: T0 + 3 })
        .then([released("c1", "o1", ReleaseCause::OfferWithdrawn, T0 + 3)]);
}

#[test]
fn b2_3_rona_takes_no_offers() {
    let rona = changed(PresenceKind::Available, Presence::Rona, Actor::System, T0 + 1);
    let state = replay(&[registered(3), available(T0), rona.clone()]);
    assert!(!state.is_routable());
    given([registered(3), available(T0), rona])
        .when(reserve("c2", "o2", T0 + 2))
        .then_error("agent_not_available", ErrorKind::Conflict);
}

#[test]
fn b2_3_rona_left_only_by_explicit_change() {
    let rona = changed(PresenceKind::Available, Presence::Rona, Actor::System, T0 + 1);
    let base = vec![registered(3), available(T0), reserved("c1", "o1", T0), rona];
    // Releases, profile updates and repeated RONAs leave it in RONA.
    let mut events = base.clone();
    for command in [
        Command::ReleaseSlot { release: Release::Offer(offer("o1")), now_ms: T0 + 2 },
        Command::EnterRona { offer_id: None, now_ms: T0 + 3 },
        Command::Register {
            agent_id: alice(),
            profile: Profile { name: "Alice".into(), capacity: Some(4), skills: vec![] },
            by: sup(),
            now_ms: T0 + 4,
        },
    ] {
        let state = replay(&events);
        let emitted = decide(&state, &command).unwrap();
        events.extend(emitted);
        assert_eq!(replay(&events).agent().unwrap().presence, Presence::Rona);
    }
    // The system cannot take it out to Available …
    given(base.clone())
        .when(choose(Choice::Available, Actor::System, T0 + 5))
        .then_error("system_cannot_make_available", ErrorKind::Rule);
    // … nor move it to Idle or LoggedOut (a lost session leaves it in RONA) …
    for to in [Choice::Idle(IDLE_REASON_DISCONNECTED.into()), Choice::LoggedOut] {
        given(base.clone())
            .when(choose(to, Actor::System, T0 + 5))
            .then_error("rona_left_only_by_choice", ErrorKind::Rule);
    }
    // … the agent can.
    given(base).when(choose(Choice::Available, me(), T0 + 5)).then([changed(
        PresenceKind::Rona,
        Presence::Available,
        me(),
        T0 + 5,
    )]);
}

#[test]
fn b2_3_rona_to_idle_without_going_available_is_allowed() {
    let rona = changed(PresenceKind::Available, Presence::Rona, Actor::System, T0 + 1);
    given([registered(3), available(T0), rona])
        .when(choose(Choice::Idle("break".into()), me(), T0 + 2))
        .then([changed(PresenceKind::Rona, Presence::Idle("break".into()), me(), T0 + 2)]);
}

// ---- B1.2 / B1.3 slots ----------------------------------------------------------------------------

#[test]
fn b1_2_offers_only_while_available() {
    given([registered(3)])
        .when(reserve("c1", "o1", T0))
        .then_error("agent_not_available", ErrorKind::Conflict);
    let idle = changed(PresenceKind::LoggedOut, Presence::Idle("break".into()), me(), T0);
    given([registered(3), idle])
        .when(reserve("c1", "o1", T0))
        .then_error("agent_not_available", ErrorKind::Conflict);
}

#[test]
fn b1_2_offers_only_with_a_free_slot() {
    let full = [registered(2), available(T0), reserved("c1", "o1", 1), reserved("c2", "o2", 2)];
    assert!(!replay(&full).is_routable());
    let error =
        given(full).when(reserve("c3", "o3", 3)).then_error("no_free_slot", ErrorKind::Conflict);
    assert_eq!(error, Error::NoFreeSlot { used: 2, capacity: 2 });
}

#[test]
fn b1_2_reserving_takes_one_slot_and_the_same_offer_twice_is_idempotent() {
    let state = given([registered(3), available(T0)])
        .when(reserve("c1", "o1", T0 + 1))
        .then([reserved("c1", "o1", T0 + 1)]);
    assert_eq!((state.slots_used(), state.agent().unwrap().idle_since_ms), (1, T0 + 1));
    given([registered(3), available(T0), reserved("c1", "o1", T0 + 1)])
        .when(reserve("c1", "o1", T0 + 2))
        .then([]);
    // Even when full: a retry of a reservation that succeeded is not a refusal.
    given([registered(1), available(T0), reserved("c1", "o1", T0 + 1)])
        .when(reserve("c1", "o1", T0 + 2))
        .then([]);
}

#[test]
fn b1_2_an_offer_id_reused_for_another_conversation_is_a_conflict() {
    given([registered(3), available(T0), reserved("c1", "o1", T0 + 1)])
        .when(reserve("c2", "o1", T0 + 2))
        .then_error("offer_id_reused", ErrorKind::Conflict);
}

#[test]
fn b1_3_a_withdrawn_offer_frees_its_slot_once() {
    let events = vec![registered(3), available(T0), reserved("c1", "o1", T0 + 1)];
    let release = Command::ReleaseSlot { release: Release::Offer(offer("o1")), now_ms: T0 + 2 };
    let state = given(events.clone()).when(release.clone()).then([released(
        "c1",
        "o1",
        ReleaseCause::OfferWithdrawn,
        T0 + 2,
    )]);
    assert_eq!(state.slots_used(), 0);
    assert_eq!(state.agent().unwrap().idle_since_ms, T0 + 2);
    let mut after = events;
    after.push(released("c1", "o1", ReleaseCause::OfferWithdrawn, T0 + 2));
    given(after).when(release).then([]);
}

#[test]
fn b1_3_slot_held_until_wrapup_submitted() {
    // Offer, accept and end happen in other services: presence only sees the
    // reservation, and keeps it until the wrap-up release.
    let events = vec![registered(1), available(T0), reserved("c1", "o1", T0 + 1)];
    let state = replay(&events);
    assert_eq!(state.slots_used(), 1);
    assert!(!state.has_free_slot());
    let state = given(events).when(release_wrapup("c1", "w1", T0 + 9)).then([released(
        "c1",
        "o1",
        by_wrapup("w1"),
        T0 + 9,
    )]);
    assert!(state.is_routable());
}

#[test]
fn b7_5_a_wrapup_release_for_a_conversation_without_a_slot_changes_nothing() {
    given([registered(3), available(T0)]).when(release_wrapup("c9", "w1", T0 + 1)).then([]);
}

#[test]
fn b7_1_two_slots_for_one_conversation_are_freed_one_per_wrapup_oldest_first() {
    // Left c1 by transfer (still owes its wrap-up, holds o1), then invited back (o2).
    let events = vec![
        registered(3),
        available(T0),
        reserved("c1", "o1", T0 + 1),
        reserved("c1", "o2", T0 + 5),
    ];
    let state = replay(&events);
    assert_eq!(state.slots_used(), 2);
    assert_eq!(
        state.agent().unwrap().slot_conversation_ids().cloned().collect::<Vec<_>>(),
        [conv("c1"), conv("c1")]
    );
    let state = given(events.clone()).when(release_wrapup("c1", "w1", T0 + 9)).then([released(
        "c1",
        "o1",
        by_wrapup("w1"),
        T0 + 9,
    )]);
    assert_eq!(state.slots_used(), 1);
    let mut events = events;
    events.push(released("c1", "o1", by_wrapup("w1"), T0 + 9));
    given(events).when(release_wrapup("c1", "w2", T0 + 10)).then([released(
        "c1",
        "o2",
        by_wrapup("w2"),
        T0 + 10,
    )]);
}

#[test]
fn b7_5_a_repeated_release_for_the_same_wrapup_frees_nothing_more() {
    // The reaction to one WrapupSubmitted runs twice: the second slot for c1
    // (the agent is back in the conference) stays held.
    let events = vec![
        registered(3),
        available(T0),
        reserved("c1", "o1", T0 + 1),
        reserved("c1", "o2", T0 + 5),
        released("c1", "o1", by_wrapup("w1"), T0 + 9),
    ];
    let state = given(events).when(release_wrapup("c1", "w1", T0 + 10)).then([]);
    assert_eq!(state.slots_used(), 1);
    assert_eq!(state.agent().unwrap().released_wrapups, [WrapupId::new("w1")]);
}

#[test]
fn b7_5_released_wrapup_memory_is_bounded() {
    let mut events = vec![registered(1), available(T0)];
    for i in 0..(RELEASED_WRAPUP_MEMORY + 5) {
        let (c, o, w) = (format!("c{i}"), format!("o{i}"), format!("w{i}"));
        events.push(reserved(&c, &o, T0 + i as i64));
        events.push(released(&c, &o, by_wrapup(&w), T0 + i as i64));
    }
    let agent = replay(&events).agent.unwrap();
    assert_eq!(agent.released_wrapups.len(), RELEASED_WRAPUP_MEMORY);
    assert_eq!(
        agent.released_wrapups.back(),
        Some(&WrapupId::new(format!("w{}", RELEASED_WRAPUP_MEMORY + 4)))
    );
}

#[test]
fn b3_2_idle_since_is_reset_by_becoming_available_not_by_other_changes() {
    let idle = changed(PresenceKind::Available, Presence::Idle("break".into()), me(), T0 + 5);
    let state = replay(&[registered(3), available(T0 + 1), idle]);
    assert_eq!(state.agent().unwrap().idle_since_ms, T0 + 1);
    let state = replay(&[
        registered(3),
        available(T0 + 1),
        changed(PresenceKind::Available, Presence::Idle("break".into()), me(), T0 + 5),
        changed(PresenceKind::Idle, Presence::Available, me(), T0 + 7),
    ]);
    assert_eq!(state.agent().unwrap().idle_since_ms, T0 + 7);
}

#[test]
fn b9_events_before_registration_are_ignored_when_replaying() {
    let state = replay(&[reserved("c1", "o1", T0), available(T0)]);
    assert_eq!(state, State::default());
}

#[test]
fn b5_1_the_agent_directory_filters_by_name_and_availability() {
    let state = replay(&[registered(1), available(T0)]);
    let agent = state.agent().unwrap();
    assert!(agent.listed(true, "SMITH"));
    assert!(agent.listed(false, "ice s"));
    assert!(agent.listed(true, " "));
    assert!(!agent.listed(false, "bob"));
    let full = replay(&[registered(1), available(T0), reserved("c1", "o1", T0)]);
    assert!(!full.agent().unwrap().listed(true, ""));
    assert!(full.agent().unwrap().listed(false, ""));
    let away = replay(&[registered(1)]);
    assert!(!away.agent().unwrap().listed(true, "alice"));
}

#[test]
fn b9_3_another_agents_event_does_not_change_this_agent() {
    let state = replay(&[registered(3), available(T0)]);
    let bob = Event::SlotReserved {
        agent_id: AgentId::new("bob"),
        conversation_id: conv("c1"),
        offer_id: offer("o1"),
        at_ms: T0,
    };
    assert_eq!(evolve(state.clone(), &bob), state);
    assert!(
        decide(&state, &reserve("c1", "o1", T0)).unwrap().iter().all(|e| e.agent_id() == &alice())
    );
}
