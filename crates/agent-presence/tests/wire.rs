//! The proto mapping: every event round-trips, bad input is a typed error.

mod support;

use agent_presence::domain::*;
use agent_presence::wire::*;
use sb_proto::{AgentPresenceEvent, v1};
use support::*;

fn every_event() -> Vec<Event> {
    vec![
        Event::AgentRegistered {
            agent_id: alice(),
            name: "Alice Smith".into(),
            capacity: 3,
            skills: vec!["billing".into(), "es".into()],
            by: sup(),
            at_ms: T0,
        },
        Event::AgentProfileUpdated {
            agent_id: alice(),
            name: "Alice S.".into(),
            capacity: 5,
            skills: vec![],
            by: sup(),
            at_ms: T0 + 1,
        },
        changed(PresenceKind::LoggedOut, Presence::Available, me(), T0 + 2),
        changed(PresenceKind::Available, Presence::Idle("lunch".into()), sup(), T0 + 3),
        changed(PresenceKind::Idle, Presence::Rona, Actor::System, -1_001),
        changed(PresenceKind::Rona, Presence::LoggedOut, me(), T0 + 4),
        reserved("c1", "o1", T0 + 5),
        released("c1", "o1", ReleaseCause::OfferWithdrawn, T0 + 6),
        released("c1", "o2", by_wrapup("w-7f3a"), T0 + 7),
    ]
}

#[test]
fn b9_1_every_event_round_trips_through_proto_json_and_protobuf() {
    for event in every_event() {
        let wire = event_to_proto(&event);
        assert_eq!(wire.event_type(), event.event_type());
        assert_eq!(event_from_proto(&wire), Ok(event.clone()));
        let json = wire.to_json();
        let back = AgentPresenceEvent::from_json(wire.event_type(), &json).unwrap();
        assert_eq!(event_from_proto(&back), Ok(event.clone()));
        let bytes = wire.to_proto();
        let back = AgentPresenceEvent::from_proto(wire.event_type(), &bytes).unwrap();
        assert_eq!(event_from_proto(&back), Ok(event));
    }
}

#[test]
fn b9_1_events_are_stored_as_type_and_proto3_json() {
    for event in every_event() {
        let (event_type, json) = event_to_json(&event);
        assert_eq!(event_type, event.event_type());
        assert!(std::str::from_utf8(&json).unwrap().contains(r#""agentId":"alice""#));
        assert_eq!(event_from_json(event_type, &json), Ok(event));
    }
    assert!(event_from_json("SlotReserved", b"{}").unwrap_err().contains("agent_id"));
    assert!(event_from_json("NoSuchEvent", b"{}").is_err());
    assert!(event_from_json("SlotReserved", b"{not json").is_err());
}

#[test]
fn b9_1_state_changed_carries_previous_state_and_idle_reason() {
    let wire =
        event_to_proto(&changed(PresenceKind::Available, Presence::Idle("lunch".into()), me(), T0));
    let AgentPresenceEvent::AgentStateChanged(e) = wire else { panic!("{wire:?}") };
    assert_eq!(e.state, v1::PresenceState::Idle as i32);
    assert_eq!(e.previous_state, v1::PresenceState::Available as i32);
    assert_eq!(e.idle_reason, "lunch");
    assert_eq!(e.agent_id, "alice");
    assert_eq!(e.by, Some(v1::Actor { kind: v1::ActorKind::Agent as i32, id: "alice".into() }));
}

#[test]
fn b9_1_bad_events_are_typed_errors_not_panics() {
    let missing_at = AgentPresenceEvent::from(v1::SlotReserved {
        agent_id: "alice".into(),
        conversation_id: "c1".into(),
        offer_id: "o1".into(),
        at: None,
    });
    assert_eq!(event_from_proto(&missing_at), Err(WireError::Missing("at")));
    let no_agent = AgentPresenceEvent::from(v1::SlotReserved::default());
    assert_eq!(event_from_proto(&no_agent), Err(WireError::Missing("agent_id")));
    let bad_state = AgentPresenceEvent::from(v1::AgentStateChanged {
        agent_id: "alice".into(),
        state: 99,
        by: Some(v1::Actor { kind: v1::ActorKind::System as i32, id: String::new() }),
        at: Some(sb_proto::timestamp_from_millis(T0)),
        ..Default::default()
    });
    assert!(matches!(event_from_proto(&bad_state), Err(WireError::Invalid { field: "state", .. })));
    let bad_cause = AgentPresenceEvent::from(v1::SlotReleased {
        agent_id: "alice".into(),
        conversation_id: "c1".into(),
        offer_id: "o1".into(),
        cause: "because".into(),
        at: Some(sb_proto::timestamp_from_millis(T0)),
    });
    assert!(matches!(event_from_proto(&bad_cause), Err(WireError::Invalid { field: "cause", .. })));
    let no_actor = AgentPresenceEvent::from(v1::AgentRegistered {
        agent_id: "alice".into(),
        at: Some(sb_proto::timestamp_from_millis(T0)),
        ..Default::default()
    });
    assert_eq!(event_from_proto(&no_actor), Err(WireError::Missing("by")));
    let anonymous_agent = AgentPresenceEvent::from(v1::AgentRegistered {
        agent_id: "alice".into(),
        by: Some(v1::Actor { kind: v1::ActorKind::Agent as i32, id: String::new() }),
        at: Some(sb_proto::timestamp_from_millis(T0)),
        ..Default::default()
    });
    assert_eq!(event_from_proto(&anonymous_agent), Err(WireError::Missing("by.id")));
}

fn by(kind: v1::ActorKind, id: &str) -> Option<v1::Actor> {
    Some(v1::Actor { kind: kind as i32, id: id.into() })
}

#[test]
fn b1_2_register_command_zero_capacity_means_default() {
    let msg = v1::RegisterAgent {
        agent_id: "alice".into(),
        name: "Alice".into(),
        capacity: 0,
        skills: vec!["es".into()],
        by: by(v1::ActorKind::Supervisor, "sue"),
    };
    let (agent, command) = register_from_proto(&msg, T0).unwrap();
    assert_eq!(agent, alice());
    assert_eq!(
        command,
        Command::Register {
            agent_id: alice(),
            profile: Profile { name: "Alice".into(), capacity: None, skills: vec!["es".into()] },
            by: sup(),
            now_ms: T0,
        }
    );
    let msg = v1::RegisterAgent { capacity: 7, ..msg };
    let (_, Command::Register { profile, .. }) = register_from_proto(&msg, T0).unwrap() else {
        panic!()
    };
    assert_eq!(profile.capacity, Some(7));
    let msg = v1::RegisterAgent { agent_id: " ".into(), ..msg };
    assert_eq!(register_from_proto(&msg, T0), Err(WireError::Missing("agent_id")));
}

#[test]
fn b1_1_change_state_command_maps_choices_and_rona_only_for_the_system() {
    let msg = |state: v1::PresenceState, reason: &str, actor| v1::ChangeAgentState {
        agent_id: "alice".into(),
        state: state as i32,
        idle_reason: reason.into(),
        by: actor,
    };
    assert_eq!(
        change_state_from_proto(
            &msg(v1::PresenceState::Idle, "lunch", by(v1::ActorKind::Agent, "alice")),
            T0
        ),
        Ok((alice(), choose(Choice::Idle("lunch".into()), me(), T0)))
    );
    assert_eq!(
        change_state_from_proto(
            &msg(v1::PresenceState::Available, "", by(v1::ActorKind::Agent, "alice")),
            T0
        ),
        Ok((alice(), choose(Choice::Available, me(), T0)))
    );
    assert_eq!(
        change_state_from_proto(
            &msg(v1::PresenceState::LoggedOut, "", by(v1::ActorKind::Supervisor, "sue")),
            T0
        ),
        Ok((alice(), choose(Choice::LoggedOut, sup(), T0)))
    );
    assert_eq!(
        change_state_from_proto(
            &msg(v1::PresenceState::Rona, "", by(v1::ActorKind::System, "")),
            T0
        ),
        Ok((alice(), Command::EnterRona { offer_id: None, now_ms: T0 }))
    );
    assert!(matches!(
        change_state_from_proto(
            &msg(v1::PresenceState::Rona, "", by(v1::ActorKind::Agent, "alice")),
            T0
        ),
        Err(WireError::Invalid { field: "state", .. })
    ));
    assert_eq!(
        change_state_from_proto(
            &msg(v1::PresenceState::Unspecified, "", by(v1::ActorKind::Agent, "alice")),
            T0
        ),
        Err(WireError::Missing("state"))
    );
    assert_eq!(
        change_state_from_proto(
            &msg(v1::PresenceState::Available, "", by(v1::ActorKind::Unspecified, "")),
            T0
        ),
        Err(WireError::Missing("by.kind"))
    );
}

#[test]
fn b3_3_reserve_slot_command_carries_the_expected_version() {
    let msg = v1::ReserveSlot {
        agent_id: "alice".into(),
        conversation_id: "c1".into(),
        offer_id: "o1".into(),
        expected_version: 4,
    };
    assert_eq!(reserve_slot_from_proto(&msg, T0), Ok((alice(), reserve("c1", "o1", T0), Some(4))));
    let any = v1::ReserveSlot { expected_version: -1, ..msg.clone() };
    assert_eq!(reserve_slot_from_proto(&any, T0).unwrap().2, None);
    let no_offer = v1::ReserveSlot { offer_id: String::new(), ..msg };
    assert_eq!(reserve_slot_from_proto(&no_offer, T0), Err(WireError::Missing("offer_id")));
}

#[test]
fn b1_3_release_slot_command_by_offer_or_by_wrapup() {
    let msg = v1::ReleaseSlot {
        agent_id: "alice".into(),
        conversation_id: "c1".into(),
        offer_id: "o1".into(),
        cause: String::new(),
    };
    let by_offer = Command::ReleaseSlot { release: Release::Offer(offer("o1")), now_ms: T0 };
    assert_eq!(release_slot_from_proto(&msg, T0), Ok((alice(), by_offer.clone())));
    let withdrawn = v1::ReleaseSlot { cause: "offer_withdrawn".into(), ..msg.clone() };
    assert_eq!(release_slot_from_proto(&withdrawn, T0), Ok((alice(), by_offer)));
    let wrapup = v1::ReleaseSlot {
        cause: "wrapup_submitted:w1".into(),
        offer_id: String::new(),
        ..msg.clone()
    };
    assert_eq!(release_slot_from_proto(&wrapup, T0), Ok((alice(), release_wrapup("c1", "w1", T0))));
    let no_id = v1::ReleaseSlot { cause: "wrapup_submitted".into(), ..wrapup.clone() };
    assert!(matches!(
        release_slot_from_proto(&no_id, T0),
        Err(WireError::Invalid { field: "cause", .. })
    ));
    let both = v1::ReleaseSlot { cause: "wrapup_submitted:w1".into(), ..msg.clone() };
    assert!(release_slot_from_proto(&both, T0).is_err());
    let unknown = v1::ReleaseSlot { cause: "whatever".into(), ..msg };
    assert!(matches!(
        release_slot_from_proto(&unknown, T0),
        Err(WireError::Invalid { field: "cause", .. })
    ));
}

#[test]
fn b1_4_agent_state_reply_lists_slots_time_in_state_and_idle_reason() {
    let state = replay(&[
        registered(3),
        available(T0 + 1),
        reserved("c1", "o1", T0 + 2),
        reserved("c1", "o2", T0 + 3),
        changed(PresenceKind::Available, Presence::Idle("lunch".into()), me(), T0 + 4),
    ]);
    let reply = agent_to_proto(state.agent().unwrap(), 4);
    assert_eq!(reply.agent_id, "alice");
    assert_eq!(reply.state, v1::PresenceState::Idle as i32);
    assert_eq!(reply.idle_reason, "lunch");
    assert_eq!(reply.slots_used, 2);
    assert_eq!(reply.slot_conversation_ids, ["c1", "c1"]);
    assert_eq!(reply.version, 4);
    assert_eq!(reply.state_since, Some(sb_proto::timestamp_from_millis(T0 + 4)));
    assert_eq!(reply.idle_since, Some(sb_proto::timestamp_from_millis(T0 + 3)));
}

#[test]
fn errors_map_to_command_errors_with_stable_codes_and_kinds() {
    let reply = error_to_proto(&Error::NoFreeSlot { used: 3, capacity: 3 });
    assert_eq!(reply.code, "no_free_slot");
    assert_eq!(reply.kind, v1::ErrorKind::Conflict as i32);
    assert!(reply.message.contains("3 of 3"), "{}", reply.message);
    assert_eq!(error_to_proto(&Error::UnknownAgent).kind, v1::ErrorKind::NotFound as i32);
    assert_eq!(error_to_proto(&Error::SystemCannotMakeAvailable).kind, v1::ErrorKind::Rule as i32);
    assert_eq!(error_to_proto(&Error::InvalidCapacity(0)).kind, v1::ErrorKind::Invalid as i32);
    assert_eq!(error_to_proto(&Error::NotYourAgent).kind, v1::ErrorKind::Forbidden as i32);
    let wire = WireError::Missing("agent_id").to_proto();
    assert_eq!((wire.code.as_str(), wire.kind), ("missing_field", v1::ErrorKind::Invalid as i32));
}

#[test]
fn b7_5_slot_released_by_a_wrapup_names_it_in_the_cause() {
    let wire = event_to_proto(&released("c1", "o1", by_wrapup("w1"), T0));
    let AgentPresenceEvent::SlotReleased(e) = wire else { panic!("{wire:?}") };
    assert_eq!(e.cause, "wrapup_submitted:w1");
    assert_eq!(e.offer_id, "o1");
    let wire = event_to_proto(&released("c1", "o1", ReleaseCause::OfferWithdrawn, T0));
    let AgentPresenceEvent::SlotReleased(e) = wire else { panic!("{wire:?}") };
    assert_eq!(e.cause, "offer_withdrawn");
    assert!(cause_from_proto("wrapup_submitted:").is_err());
    assert!(cause_from_proto("wrapup_submitted").is_err());
    assert!(cause_from_proto("nope:w1").is_err());
    assert_eq!(cause_from_proto("wrapup_submitted:a:b"), Ok(by_wrapup("a:b")));
}

#[test]
fn b7_5_presence_reacts_to_wrapup_submitted_by_releasing_one_slot() {
    let event = v1::WrapupSubmitted {
        wrapup_id: "w1".into(),
        agent_id: "alice".into(),
        conversation_id: "c1".into(),
        reason_code: "resolved".into(),
        note: String::new(),
        automatic: false,
        at: Some(sb_proto::timestamp_from_millis(T0)),
    };
    assert_eq!(
        release_for_wrapup_submitted(&event, T0 + 1),
        Ok((alice(), release_wrapup("c1", "w1", T0 + 1)))
    );
    let no_id = v1::WrapupSubmitted { wrapup_id: String::new(), ..event };
    assert_eq!(release_for_wrapup_submitted(&no_id, T0), Err(WireError::Missing("wrapup_id")));
}

#[test]
fn b2_2_presence_reacts_to_an_expired_offer_with_rona() {
    let expired = v1::OfferExpired {
        queue_id: "q".into(),
        conversation_id: "c1".into(),
        offer_id: "o1".into(),
        agent_id: "alice".into(),
        at: Some(sb_proto::timestamp_from_millis(T0)),
    };
    let rona = Command::EnterRona { offer_id: Some(offer("o1")), now_ms: T0 };
    assert_eq!(rona_for_offer_expired(&expired), Ok((alice(), rona.clone())));
    let withdrawn = v1::OfferWithdrawn {
        conversation_id: "c1".into(),
        offer_id: "o1".into(),
        agent_id: "alice".into(),
        reason: v1::WithdrawReason::Expired as i32,
        at: Some(sb_proto::timestamp_from_millis(T0)),
    };
    assert_eq!(release_for_offer_withdrawn(&withdrawn), Ok((alice(), rona)));
    for reason in [v1::WithdrawReason::SessionLost, v1::WithdrawReason::ConversationEnded] {
        let other = v1::OfferWithdrawn { reason: reason as i32, ..withdrawn.clone() };
        assert_eq!(
            release_for_offer_withdrawn(&other),
            Ok((
                alice(),
                Command::ReleaseSlot { release: Release::Offer(offer("o1")), now_ms: T0 }
            ))
        );
    }
    let unspecified = v1::OfferWithdrawn { reason: 0, ..withdrawn.clone() };
    assert_eq!(release_for_offer_withdrawn(&unspecified), Err(WireError::Missing("reason")));
    let no_time = v1::OfferExpired { at: None, ..expired };
    assert_eq!(rona_for_offer_expired(&no_time), Err(WireError::Missing("at")));
}

#[test]
fn b2_2_both_expiry_reactions_together_enter_rona_once() {
    let state = replay(&[registered(3), available(T0), reserved("c1", "o1", T0 + 1)]);
    let rona = Command::EnterRona { offer_id: Some(offer("o1")), now_ms: T0 + 30_000 };
    let first = decide(&state, &rona).unwrap();
    assert_eq!(first.len(), 2);
    let state = first.iter().fold(state, evolve);
    assert_eq!(decide(&state, &rona), Ok(vec![]));
}

#[test]
fn b2_2_enter_rona_command_from_proto() {
    let msg = v1::EnterRona { agent_id: "alice".into(), offer_id: "o1".into() };
    assert_eq!(
        enter_rona_from_proto(&msg, T0),
        Ok((alice(), Command::EnterRona { offer_id: Some(offer("o1")), now_ms: T0 }))
    );
    let no_offer = v1::EnterRona { offer_id: String::new(), ..msg.clone() };
    assert_eq!(
        enter_rona_from_proto(&no_offer, T0),
        Ok((alice(), Command::EnterRona { offer_id: None, now_ms: T0 }))
    );
    let no_agent = v1::EnterRona { agent_id: String::new(), ..msg };
    assert_eq!(enter_rona_from_proto(&no_agent, T0), Err(WireError::Missing("agent_id")));
}

#[test]
fn b2_2_routing_order_enter_rona_then_release_slot_enters_rona_and_frees_one_slot() {
    // What routing's OfferWithdrawn(EXPIRED) reaction sends, in its order.
    let mut state = replay(&[registered(3), available(T0), reserved("c1", "o1", T0 + 1)]);
    let (_, rona) = enter_rona_from_proto(
        &v1::EnterRona { agent_id: "alice".into(), offer_id: "o1".into() },
        T0 + 2,
    )
    .unwrap();
    let release = v1::ReleaseSlot {
        agent_id: "alice".into(),
        conversation_id: "c1".into(),
        offer_id: "o1".into(),
        cause: "offer_withdrawn".into(),
    };
    let (_, release) = release_slot_from_proto(&release, T0 + 3).unwrap();
    for command in [&rona, &release, &rona, &release] {
        let events = decide(&state, command).unwrap();
        state = events.iter().fold(state, evolve);
    }
    let agent = state.agent().unwrap();
    assert_eq!((agent.presence.clone(), agent.slots_used()), (Presence::Rona, 0));
}
