//! The proto mapping: every event round-trips, bad input is a typed error.

mod support;

use sb_proto::{WrapUpEvent, timestamp_from_millis, v1};
use support::*;
use wrap_up::domain::catalogue::{self, ReasonStatus};
use wrap_up::domain::pending::{self, LeaveReason};
use wrap_up::domain::*;
use wrap_up::wire::*;

fn round_trip(wire: &WrapUpEvent) -> Vec<WrapUpEvent> {
    let json = wire.to_json();
    let bytes = wire.to_proto();
    vec![
        wire.clone(),
        WrapUpEvent::from_json(wire.event_type(), &json).expect("valid proto3 JSON"),
        WrapUpEvent::from_proto(wire.event_type(), &bytes).expect("valid protobuf"),
    ]
}

#[test]
fn b9_1_every_catalogue_event_round_trips() {
    let agent = Actor::Agent(alice());
    for event in [
        added("resolved", "Issue resolved", T0),
        renamed("resolved", "Resolved", T0 + 1),
        retired("resolved", -1_001),
        catalogue::Event::ReasonAdded { code: code("x"), label: "X".into(), by: agent, at_ms: 0 },
    ] {
        let wire = catalogue_event_to_proto(&event);
        assert_eq!(wire.event_type(), event.event_type());
        for back in round_trip(&wire) {
            assert_eq!(event_from_proto(&back), Ok(Decoded::Catalogue(event.clone())));
        }
    }
}

#[test]
fn b9_1_every_pending_event_round_trips() {
    let mut events = vec![
        owed_as("w2", "c1", LeaveReason::Transferred, T0, None),
        submitted("w1", "c1", "resolved", T0 + 1),
        auto_submitted("w2", "c1", T0 + AUTO_MS),
        pending::Event::WrapupSubmitted {
            agent_id: alice(),
            wrapup_id: wid("w3"),
            conversation_id: conv("c3"),
            reason_code: code("resolved"),
            note: "line one\nline two — ✓".into(),
            automatic: false,
            at_ms: T0,
        },
    ];
    for reason in [
        LeaveReason::Ended,
        LeaveReason::Transferred,
        LeaveReason::LeftConference,
        LeaveReason::ConferenceEnded,
        LeaveReason::Reassigned,
    ] {
        events.push(owed_as("w1", "c1", reason, T0, Some(T0 + AUTO_MS)));
    }
    for event in events {
        let wire = pending_event_to_proto(&event);
        assert_eq!(wire.event_type(), event.event_type());
        for back in round_trip(&wire) {
            assert_eq!(event_from_proto(&back), Ok(Decoded::Pending(event.clone())));
        }
    }
}

#[test]
fn b9_2_wrapup_events_carry_what_analytics_needs() {
    let WrapUpEvent::WrapupSubmitted(e) = pending_event_to_proto(&auto_submitted("w1", "c1", T0))
    else {
        panic!()
    };
    assert_eq!((e.agent_id.as_str(), e.conversation_id.as_str()), ("alice", "c1"));
    assert_eq!((e.reason_code.as_str(), e.automatic), ("auto", true));
    let WrapUpEvent::WrapupOwed(e) = pending_event_to_proto(&owed("w1", "c1", T0)) else {
        panic!()
    };
    assert_eq!(e.leave_reason, v1::LeaveReason::Ended as i32);
    assert_eq!(e.auto_at, Some(timestamp_from_millis(T0 + AUTO_MS)));
}

#[test]
fn b9_1_bad_events_are_typed_errors_not_panics() {
    let no_since = WrapUpEvent::from(v1::WrapupOwed {
        wrapup_id: "w1".into(),
        agent_id: "alice".into(),
        conversation_id: "c1".into(),
        leave_reason: v1::LeaveReason::Ended as i32,
        since: None,
        auto_at: None,
    });
    assert_eq!(event_from_proto(&no_since), Err(WireError::Missing("since")));
    let no_reason = WrapUpEvent::from(v1::WrapupOwed {
        wrapup_id: "w1".into(),
        agent_id: "alice".into(),
        conversation_id: "c1".into(),
        leave_reason: 0,
        since: Some(timestamp_from_millis(T0)),
        auto_at: None,
    });
    assert_eq!(event_from_proto(&no_reason), Err(WireError::Missing("leave_reason")));
    let bad_reason = WrapUpEvent::from(v1::WrapupOwed {
        leave_reason: 42,
        ..match no_reason {
            WrapUpEvent::WrapupOwed(e) => e,
            _ => unreachable!(),
        }
    });
    assert!(matches!(
        event_from_proto(&bad_reason),
        Err(WireError::Invalid { field: "leave_reason", .. })
    ));
    assert_eq!(
        event_from_proto(&WrapUpEvent::from(v1::WrapupSubmitted::default())),
        Err(WireError::Missing("agent_id"))
    );
    assert_eq!(
        event_from_proto(&WrapUpEvent::from(v1::WrapupReasonAdded::default())),
        Err(WireError::Missing("code"))
    );
    let no_actor = WrapUpEvent::from(v1::WrapupReasonRetired {
        code: "spam".into(),
        by: None,
        at: Some(timestamp_from_millis(T0)),
    });
    assert_eq!(event_from_proto(&no_actor), Err(WireError::Missing("by")));
    let bad_actor = WrapUpEvent::from(v1::WrapupReasonRetired {
        code: "spam".into(),
        by: Some(v1::Actor { kind: 77, id: "x".into() }),
        at: Some(timestamp_from_millis(T0)),
    });
    assert!(matches!(
        event_from_proto(&bad_actor),
        Err(WireError::Invalid { field: "by.kind", .. })
    ));
}

fn supervisor() -> Option<v1::Actor> {
    Some(v1::Actor { kind: v1::ActorKind::Supervisor as i32, id: "sue".into() })
}

#[test]
fn b7_2_catalogue_commands_from_proto() {
    let msg =
        v1::PutWrapupReason { code: "resolved".into(), label: "Resolved".into(), by: supervisor() };
    assert_eq!(put_reason_from_proto(&msg, &auto(), T0), Ok(put("resolved", "Resolved", T0)));
    let msg = v1::PutWrapupReason { code: String::new(), ..msg };
    assert_eq!(put_reason_from_proto(&msg, &auto(), T0), Err(WireError::Missing("code")));
    let msg = v1::RetireWrapupReason { code: "spam".into(), by: supervisor() };
    assert_eq!(retire_reason_from_proto(&msg, T0), Ok(retire("spam", T0)));
    let msg = v1::RetireWrapupReason { code: "spam".into(), by: None };
    assert_eq!(retire_reason_from_proto(&msg, T0), Err(WireError::Missing("by")));
}

#[test]
fn b7_3_submit_command_from_proto_asks_the_catalogue_about_the_reason() {
    let catalogue = catalogue::replay(&[
        added("resolved", "Resolved", T0),
        added("spam", "Spam", T0),
        retired("spam", T0),
    ]);
    let msg = v1::SubmitWrapup {
        agent_id: "alice".into(),
        conversation_id: "c1".into(),
        reason_code: "resolved".into(),
        note: "ok".into(),
    };
    let (agent, command) = submit_from_proto(&msg, T0, |c| catalogue.status(c)).unwrap();
    assert_eq!(agent, alice());
    assert_eq!(
        command,
        pending::Command::SubmitWrapup {
            agent_id: alice(),
            conversation_id: conv("c1"),
            reason_code: code("resolved"),
            note: "ok".into(),
            reason_status: ReasonStatus::Active,
            now_ms: T0,
        }
    );
    for (reason, status) in [("spam", ReasonStatus::Retired), ("nope", ReasonStatus::Unknown)] {
        let msg = v1::SubmitWrapup { reason_code: reason.into(), ..msg.clone() };
        let (_, pending::Command::SubmitWrapup { reason_status, .. }) =
            submit_from_proto(&msg, T0, |c| catalogue.status(c)).unwrap()
        else {
            panic!()
        };
        assert_eq!(reason_status, status);
    }
    let msg = v1::SubmitWrapup { conversation_id: String::new(), ..msg };
    assert_eq!(
        submit_from_proto(&msg, T0, |c| catalogue.status(c)),
        Err(WireError::Missing("conversation_id"))
    );
}

#[test]
fn b7_2_list_reasons_answers_active_matches_only() {
    let state = catalogue::replay(&[
        added("resolved", "Issue resolved", T0),
        added("spam", "Spam", T0),
        retired("spam", T0),
        added("sales", "Sales lead", T0),
    ]);
    let list = list_reasons(&state, &v1::ListWrapupReasons { search: "S".into() });
    let codes: Vec<_> = list.reasons.iter().map(|r| (r.code.as_str(), r.retired)).collect();
    assert_eq!(codes, [("resolved", false), ("sales", false)]);
}

#[test]
fn b7_1_pending_list_is_oldest_first_with_deadlines() {
    let state = pending::replay(&[
        owed("w2", "c2", T0 + 5),
        owed_as("w1", "c1", LeaveReason::Ended, T0, None),
    ]);
    let list = pending_list_to_proto(&alice(), &state);
    let got: Vec<_> =
        list.wrapups.iter().map(|w| (w.wrapup_id.as_str(), w.auto_at.is_some())).collect();
    assert_eq!(got, [("w1", false), ("w2", true)]);
    assert_eq!(list.wrapups[0].since, Some(timestamp_from_millis(T0)));
    assert_eq!(list.wrapups[1].agent_id, "alice");
}

#[test]
fn errors_map_to_command_errors_with_stable_codes_and_kinds() {
    let cases = [
        (Error::UnknownReason(code("x")), "unknown_reason", v1::ErrorKind::Rule),
        (Error::ReasonRetired(code("x")), "reason_retired", v1::ErrorKind::Rule),
        (Error::NothingOwed(conv("c")), "nothing_owed", v1::ErrorKind::Conflict),
        (
            Error::WrapupAlreadySubmitted(conv("c")),
            "wrapup_already_submitted",
            v1::ErrorKind::Conflict,
        ),
        (Error::NoSuchReason(code("x")), "unknown_reason", v1::ErrorKind::NotFound),
        (Error::NoteTooLong(2001), "note_too_long", v1::ErrorKind::Invalid),
        (Error::SupervisorOnly, "supervisor_only", v1::ErrorKind::Forbidden),
    ];
    for (error, code, kind) in cases {
        let reply = error_to_proto(&error);
        assert_eq!((reply.code.as_str(), reply.kind), (code, kind as i32));
        assert_eq!(reply.message, error.to_string());
    }
    let wire = WireError::Missing("code").to_proto();
    assert_eq!((wire.code.as_str(), wire.kind), ("missing_field", v1::ErrorKind::Invalid as i32));
}

#[test]
fn b7_1_a_participant_leaving_owes_a_wrapup_from_the_time_it_left() {
    let left = v1::ParticipantLeft {
        conversation_id: "c1".into(),
        agent_id: "alice".into(),
        reason: v1::LeaveReason::Transferred as i32,
        at: Some(timestamp_from_millis(T0)),
    };
    let (agent, command) = owe_for_participant_left(&left, wid("w1"), 120).unwrap();
    assert_eq!(agent, alice());
    assert_eq!(
        command,
        pending::Command::OweWrapup {
            agent_id: alice(),
            wrapup_id: wid("w1"),
            conversation_id: conv("c1"),
            leave_reason: LeaveReason::Transferred,
            now_ms: T0,
            auto_at_ms: Some(T0 + 120_000),
        }
    );
    let (_, pending::Command::OweWrapup { auto_at_ms, .. }) =
        owe_for_participant_left(&left, wid("w1"), 0).unwrap()
    else {
        panic!()
    };
    assert_eq!(auto_at_ms, None);
    let no_reason = v1::ParticipantLeft { reason: 0, ..left.clone() };
    assert_eq!(
        owe_for_participant_left(&no_reason, wid("w1"), 120),
        Err(WireError::Missing("reason"))
    );
    let no_time = v1::ParticipantLeft { at: None, ..left };
    assert_eq!(owe_for_participant_left(&no_time, wid("w1"), 120), Err(WireError::Missing("at")));
}

#[test]
fn b9_1_events_are_stored_as_type_and_proto3_json_per_aggregate() {
    let reason = added("resolved", "Issue resolved", T0);
    let (event_type, json) = catalogue_event_to_json(&reason);
    assert_eq!(event_type, "WrapupReasonAdded");
    assert_eq!(catalogue_event_from_json(event_type, &json), Ok(reason));
    assert!(pending_event_from_json(event_type, &json).is_err());

    let owed = owed("w1", "c1", T0);
    let (event_type, json) = pending_event_to_json(&owed);
    assert_eq!(event_type, "WrapupOwed");
    let text = std::str::from_utf8(&json).unwrap();
    assert!(text.contains(r#""leaveReason":"LEAVE_REASON_ENDED""#), "{text}");
    assert_eq!(pending_event_from_json(event_type, &json), Ok(owed));
    assert!(catalogue_event_from_json(event_type, &json).is_err());

    assert!(pending_event_from_json("WrapupOwed", b"{").is_err());
    assert!(pending_event_from_json("Nope", b"{}").is_err());
    assert!(pending_event_from_json("WrapupOwed", b"{}").unwrap_err().contains("agent_id"));
}
