//! Wrap-up rules (PRODUCT.md B7): given events, when a command, then events
//! or a typed refusal.

mod support;

use support::*;
use wrap_up::domain::catalogue::{self, ReasonStatus};
use wrap_up::domain::pending::{self, LeaveReason};
use wrap_up::domain::*;

// ---- B7.2 the reason catalogue ----------------------------------------------------------

#[test]
fn b7_2_a_supervisor_adds_a_reason() {
    let state = given_catalogue([]).when(put("resolved", " Issue resolved ", T0)).then([added(
        "resolved",
        "Issue resolved",
        T0,
    )]);
    assert_eq!(state.status(&code("resolved")), ReasonStatus::Active);
    assert_eq!(state.reason(&code("resolved")).unwrap().label, "Issue resolved");
}

#[test]
fn b7_2_putting_an_existing_code_renames_it_and_the_same_label_changes_nothing() {
    given_catalogue([added("resolved", "Issue resolved", T0)])
        .when(put("resolved", "Resolved", T0 + 1))
        .then([renamed("resolved", "Resolved", T0 + 1)]);
    given_catalogue([added("resolved", "Issue resolved", T0)])
        .when(put("resolved", "Issue resolved", T0 + 1))
        .then([]);
}

#[test]
fn b7_2_codes_are_tokens_and_labels_are_not_blank() {
    for bad in ["", "Resolved", "issue resolved", "_x", "é", &"x".repeat(MAX_CODE_CHARS + 1)] {
        given_catalogue([])
            .when(put(bad, "Label", T0))
            .then_error("invalid_code", ErrorKind::Invalid);
    }
    for good in ["resolved", "no-answer", "call_back_2", "2nd_try"] {
        given_catalogue([]).when(put(good, "Label", T0)).then([added(good, "Label", T0)]);
    }
    given_catalogue([])
        .when(put("resolved", "   ", T0))
        .then_error("invalid_label", ErrorKind::Invalid);
    given_catalogue([])
        .when(put("resolved", &"x".repeat(MAX_LABEL_CHARS + 1), T0))
        .then_error("invalid_label", ErrorKind::Invalid);
}

#[test]
fn b7_4_the_system_reason_is_not_part_of_the_managed_list() {
    given_catalogue([])
        .when(put(DEFAULT_AUTO_REASON, "Automatic", T0))
        .then_error("reserved_reason_code", ErrorKind::Rule);
    // The system reason is configurable: with another one, `auto` is an ordinary code.
    given_catalogue([])
        .when(catalogue::Command::PutReason {
            code: code("timeout"),
            label: "Timed out".into(),
            system_reason: code("timeout"),
            by: sup(),
            now_ms: T0,
        })
        .then_error("reserved_reason_code", ErrorKind::Rule);
    given_catalogue([])
        .when(catalogue::Command::PutReason {
            code: auto(),
            label: "Automatic".into(),
            system_reason: code("timeout"),
            by: sup(),
            now_ms: T0,
        })
        .then([added("auto", "Automatic", T0)]);
}

#[test]
fn b8_1_only_supervisors_manage_reasons() {
    for by in [Actor::Agent(alice()), Actor::System] {
        given_catalogue([])
            .when(catalogue::Command::PutReason {
                code: code("resolved"),
                label: "Resolved".into(),
                system_reason: auto(),
                by: by.clone(),
                now_ms: T0,
            })
            .then_error("supervisor_only", ErrorKind::Forbidden);
        given_catalogue([added("resolved", "Resolved", T0)])
            .when(catalogue::Command::RetireReason { code: code("resolved"), by, now_ms: T0 })
            .then_error("supervisor_only", ErrorKind::Forbidden);
    }
}

#[test]
fn b7_2_retired_reasons_are_not_offered_but_kept() {
    let state =
        given_catalogue([added("resolved", "Issue resolved", T0), added("spam", "Spam", T0)])
            .when(retire("spam", T0 + 1))
            .then([retired("spam", T0 + 1)]);
    assert_eq!(state.status(&code("spam")), ReasonStatus::Retired);
    let offered: Vec<_> =
        catalogue::search(&state, "", false).iter().map(|r| r.code.0.clone()).collect();
    assert_eq!(offered, ["resolved"]);
    let all: Vec<_> =
        catalogue::search(&state, "", true).iter().map(|r| r.code.0.clone()).collect();
    assert_eq!(all, ["resolved", "spam"]);
    assert_eq!(state.reason(&code("spam")).unwrap().label, "Spam");
}

#[test]
fn b7_2_retiring_twice_changes_nothing_and_an_unknown_code_is_not_found() {
    given_catalogue([added("spam", "Spam", T0), retired("spam", T0 + 1)])
        .when(retire("spam", T0 + 2))
        .then([]);
    given_catalogue([]).when(retire("spam", T0)).then_error("unknown_reason", ErrorKind::NotFound);
}

#[test]
fn b7_2_putting_a_retired_code_again_brings_it_back() {
    let state = given_catalogue([added("spam", "Spam", T0), retired("spam", T0 + 1)])
        .when(put("spam", "Spam or abuse", T0 + 2))
        .then([added("spam", "Spam or abuse", T0 + 2)]);
    assert_eq!(state.status(&code("spam")), ReasonStatus::Active);
}

#[test]
fn b7_2_search_is_a_case_insensitive_substring_of_code_or_label() {
    let state = catalogue::replay(&[
        added("resolved", "Issue resolved", T0),
        added("call_back", "Customer will call back", T0),
        added("spam", "Spam", T0),
    ]);
    let find = |q: &str| -> Vec<String> {
        catalogue::search(&state, q, false).iter().map(|r| r.code.0.clone()).collect()
    };
    assert_eq!(find("ISSUE"), ["resolved"]);
    assert_eq!(find("back"), ["call_back"]);
    assert_eq!(find("_BA"), ["call_back"]);
    assert_eq!(find("s"), ["call_back", "resolved", "spam"]);
    assert_eq!(find("  "), ["call_back", "resolved", "spam"]);
    assert!(find("nothing like it").is_empty());
}

// ---- B7.1 owing -----------------------------------------------------------------------------

#[test]
fn b7_1_leaving_a_conversation_owes_one_wrapup() {
    let state = given_pending([]).when(owe("w1", "c1", T0)).then([owed("w1", "c1", T0)]);
    assert!(state.owes_for(&conv("c1")));
    assert_eq!(state.owed_total, 1);
}

#[test]
fn b7_1_a_duplicate_owe_is_idempotent_even_after_submission() {
    given_pending([owed("w1", "c1", T0)]).when(owe("w1", "c1", T0 + 5)).then([]);
    given_pending([owed("w1", "c1", T0), submitted("w1", "c1", "resolved", T0 + 1)])
        .when(owe("w1", "c1", T0 + 5))
        .then([]);
    given_pending([owed("w1", "c1", T0)])
        .when(owe("w1", "c2", T0 + 5))
        .then_error("wrapup_id_reused", ErrorKind::Conflict);
}

#[test]
fn b7_1_leaving_the_same_conversation_twice_owes_two() {
    let state = given_pending([owed_as("w1", "c1", LeaveReason::Transferred, T0, None)])
        .when(pending::Command::OweWrapup {
            agent_id: alice(),
            wrapup_id: wid("w2"),
            conversation_id: conv("c1"),
            leave_reason: LeaveReason::ConferenceEnded,
            now_ms: T0 + 10,
            auto_at_ms: None,
        })
        .then([owed_as("w2", "c1", LeaveReason::ConferenceEnded, T0 + 10, None)]);
    assert_eq!(state.owed.len(), 2);
}

#[test]
fn b7_1_pending_wrapups_stay_ordered_by_when_they_were_owed() {
    // Reactions may arrive out of order; `owed` stays oldest first.
    let state = pending::replay(&[
        owed("w2", "c1", T0 + 10),
        owed("w3", "c2", T0 + 10),
        owed("w1", "c1", T0),
    ]);
    let order: Vec<_> = state.owed.iter().map(|w| w.wrapup_id.0.clone()).collect();
    assert_eq!(order, ["w1", "w2", "w3"]);
}

// ---- B7.3 submission ----------------------------------------------------------------------------

#[test]
fn b7_3_submission_settles_oldest_owed() {
    let events = [owed("w1", "c1", T0), owed("w9", "c9", T0 + 1), owed("w2", "c1", T0 + 5)];
    let state = given_pending(events.clone())
        .when(submit("c1", "resolved", ReasonStatus::Active, T0 + 20))
        .then([submitted("w1", "c1", "resolved", T0 + 20)]);
    assert_eq!(state.oldest_owed_for(&conv("c1")).unwrap().wrapup_id, wid("w2"));
    given_pending(events.into_iter().chain([submitted("w1", "c1", "resolved", T0 + 20)]))
        .when(submit("c1", "spam", ReasonStatus::Active, T0 + 21))
        .then([submitted("w2", "c1", "spam", T0 + 21)]);
}

#[test]
fn b7_3_a_submission_carries_its_note() {
    given_pending([owed("w1", "c1", T0)])
        .when(pending::Command::SubmitWrapup {
            agent_id: alice(),
            conversation_id: conv("c1"),
            reason_code: code("resolved"),
            note: "Refund sent — ñ".into(),
            reason_status: ReasonStatus::Active,
            now_ms: T0 + 1,
        })
        .then([pending::Event::WrapupSubmitted {
            agent_id: alice(),
            wrapup_id: wid("w1"),
            conversation_id: conv("c1"),
            reason_code: code("resolved"),
            note: "Refund sent — ñ".into(),
            automatic: false,
            at_ms: T0 + 1,
        }]);
}

#[test]
fn b7_3_unknown_reason_is_refused_with_422() {
    let error = given_pending([owed("w1", "c1", T0)])
        .when(submit("c1", "nope", ReasonStatus::Unknown, T0 + 1))
        .then_error("unknown_reason", ErrorKind::Rule);
    assert_eq!(error, Error::UnknownReason(code("nope")));
}

#[test]
fn b7_3_retired_reason_is_refused_with_422() {
    given_pending([owed("w1", "c1", T0)])
        .when(submit("c1", "spam", ReasonStatus::Retired, T0 + 1))
        .then_error("reason_retired", ErrorKind::Rule);
}

#[test]
fn b7_3_a_blank_reason_or_a_long_note_is_malformed() {
    given_pending([owed("w1", "c1", T0)])
        .when(submit("c1", " ", ReasonStatus::Unknown, T0 + 1))
        .then_error("reason_required", ErrorKind::Invalid);
    let long = |n: usize| pending::Command::SubmitWrapup {
        agent_id: alice(),
        conversation_id: conv("c1"),
        reason_code: code("resolved"),
        note: "é".repeat(n),
        reason_status: ReasonStatus::Active,
        now_ms: T0 + 1,
    };
    given_pending([owed("w1", "c1", T0)])
        .when(long(MAX_NOTE_CHARS + 1))
        .then_error("note_too_long", ErrorKind::Invalid);
    // The limit counts characters, not bytes.
    assert!(
        pending::decide(&pending::replay(&[owed("w1", "c1", T0)]), &long(MAX_NOTE_CHARS)).is_ok()
    );
}

#[test]
fn b7_3_nothing_owed_is_refused_with_409() {
    given_pending([])
        .when(submit("c1", "resolved", ReasonStatus::Active, T0))
        .then_error("nothing_owed", ErrorKind::Conflict);
    // Another conversation's wrap-up does not count.
    given_pending([owed("w1", "c2", T0)])
        .when(submit("c1", "resolved", ReasonStatus::Active, T0))
        .then_error("nothing_owed", ErrorKind::Conflict);
    // Nothing owed wins over a bad reason: the submission is the conflict.
    given_pending([])
        .when(submit("c1", "nope", ReasonStatus::Unknown, T0))
        .then_error("nothing_owed", ErrorKind::Conflict);
}

#[test]
fn b7_3_a_second_submission_for_a_single_wrapup_is_already_submitted() {
    given_pending([owed("w1", "c1", T0), submitted("w1", "c1", "resolved", T0 + 1)])
        .when(submit("c1", "resolved", ReasonStatus::Active, T0 + 2))
        .then_error("wrapup_already_submitted", ErrorKind::Conflict);
    // Also after an automatic submission.
    given_pending([owed("w1", "c1", T0), auto_submitted("w1", "c1", T0 + AUTO_MS)])
        .when(submit("c1", "resolved", ReasonStatus::Active, T0 + AUTO_MS + 1))
        .then_error("wrapup_already_submitted", ErrorKind::Conflict);
}

// ---- B7.4 auto wrap-up ------------------------------------------------------------------------------

#[test]
fn b7_4_auto_deadline_comes_from_configuration_and_zero_disables_it() {
    assert_eq!(pending::auto_deadline(T0, DEFAULT_AUTO_WRAPUP_SECS), Some(T0 + 120_000));
    assert_eq!(pending::auto_deadline(T0, 0), None);
}

#[test]
fn b7_4_an_unsubmitted_wrapup_is_submitted_automatically_at_its_deadline() {
    let state = given_pending([owed("w1", "c1", T0)])
        .when(fire("w1", T0 + AUTO_MS))
        .then([auto_submitted("w1", "c1", T0 + AUTO_MS)]);
    assert!(state.owed.is_empty());
    assert_eq!(state.settled_total, 1);
}

#[test]
fn b7_4_auto_wrapup_before_its_deadline_or_when_disabled_is_refused() {
    given_pending([owed("w1", "c1", T0)])
        .when(fire("w1", T0 + AUTO_MS - 1))
        .then_error("auto_wrapup_not_due", ErrorKind::Conflict);
    given_pending([owed_as("w1", "c1", LeaveReason::Ended, T0, None)])
        .when(fire("w1", T0 + 10 * AUTO_MS))
        .then_error("auto_wrapup_not_due", ErrorKind::Conflict);
}

#[test]
fn b7_4_auto_wrapup_after_a_manual_submission_is_a_no_op() {
    given_pending([owed("w1", "c1", T0), submitted("w1", "c1", "resolved", T0 + 5)])
        .when(fire("w1", T0 + AUTO_MS))
        .then([]);
    given_pending([])
        .when(fire("w1", T0 + AUTO_MS))
        .then_error("unknown_wrapup", ErrorKind::NotFound);
}

#[test]
fn b7_4_auto_wrapup_settles_its_own_wrapup_even_when_an_older_one_waits() {
    // w1 has auto wrap-up disabled (configuration changed in between); w2 fires.
    given_pending([
        owed_as("w1", "c1", LeaveReason::Transferred, T0, None),
        owed("w2", "c1", T0 + 5),
    ])
    .when(fire("w2", T0 + 5 + AUTO_MS))
    .then([auto_submitted("w2", "c1", T0 + 5 + AUTO_MS)]);
}

#[test]
fn b7_4_timers_know_what_is_due_and_the_next_deadline() {
    let state = pending::replay(&[
        owed("w2", "c2", T0 + 10),
        owed("w1", "c1", T0),
        owed_as("w3", "c3", LeaveReason::Ended, T0, None),
    ]);
    assert_eq!(pending::next_deadline(&state), Some(T0 + AUTO_MS));
    assert!(pending::due_auto_wrapups(&state, T0 + AUTO_MS - 1).is_empty());
    let due: Vec<_> = pending::due_auto_wrapups(&state, T0 + AUTO_MS + 10)
        .iter()
        .map(|w| w.wrapup_id.0.clone())
        .collect();
    assert_eq!(due, ["w1", "w2"]);
    assert_eq!(pending::next_deadline(&pending::State::default()), None);
}

// ---- B7.5 the slot comes back --------------------------------------------------------------------------

#[test]
fn b7_5_a_submitted_wrapup_asks_presence_to_release_one_slot() {
    let release = pending::slot_release_for(&submitted("w1", "c1", "resolved", T0));
    assert_eq!(
        release,
        Some(pending::SlotRelease {
            agent_id: alice(),
            conversation_id: conv("c1"),
            wrapup_id: wid("w1")
        })
    );
    assert!(pending::slot_release_for(&auto_submitted("w1", "c1", T0)).is_some());
    assert_eq!(pending::slot_release_for(&owed("w1", "c1", T0)), None);
}

#[test]
fn b7_1_settled_memory_is_bounded() {
    let mut events = Vec::new();
    for i in 0..(pending::SETTLED_MEMORY + 10) {
        let (w, c) = (format!("w{i}"), format!("c{i}"));
        events.push(owed(&w, &c, T0 + i as i64));
        events.push(submitted(&w, &c, "resolved", T0 + i as i64));
    }
    let state = pending::replay(&events);
    assert_eq!(state.recently_settled.len(), pending::SETTLED_MEMORY);
    assert_eq!(state.settled_total, state.owed_total);
    // The most recent ones are remembered.
    given_pending(events)
        .when(submit(
            &format!("c{}", pending::SETTLED_MEMORY + 9),
            "resolved",
            ReasonStatus::Active,
            T0,
        ))
        .then_error("wrapup_already_submitted", ErrorKind::Conflict);
}
