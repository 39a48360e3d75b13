#![allow(clippy::unwrap_used)]

use super::*;
use sb_proto::timestamp_from_millis;

const T0: Millis = 1_764_000_000_000; // 2025-11-24T16:00:00Z

fn ts(ms: Millis) -> Option<sb_proto::Timestamp> {
    Some(timestamp_from_millis(ms))
}

fn rec(event_type: &str, data: Vec<u8>) -> RecordedEvent {
    RecordedEvent {
        stream: "s".into(),
        event_number: 0,
        event_id: uuid::Uuid::nil(),
        event_type: event_type.to_owned(),
        data: data.into(),
        metadata: Default::default(),
        is_json: true,
        created: time::OffsetDateTime::UNIX_EPOCH,
    }
}

fn conv(s: &mut Stats, e: impl Into<ConversationEvent>) {
    let e = e.into();
    s.apply(&rec(e.event_type(), e.to_json()));
}

fn wrap(s: &mut Stats, e: impl Into<WrapUpEvent>) {
    let e = e.into();
    s.apply(&rec(e.event_type(), e.to_json()));
}

fn queued(s: &mut Stats, id: &str, at: Millis) {
    conv(
        s,
        v1::ConversationStarted { conversation_id: id.into(), at: ts(at), ..Default::default() },
    );
    conv(
        s,
        v1::ConversationQueued {
            conversation_id: id.into(),
            queue_id: "support".into(),
            queued_since: ts(at),
            at: ts(at),
            ..Default::default()
        },
    );
}

fn offer(s: &mut Stats, id: &str, offer: &str, agent: &str, at: Millis) {
    conv(
        s,
        v1::OfferMade {
            conversation_id: id.into(),
            offer_id: offer.into(),
            agent_id: agent.into(),
            queue_id: "support".into(),
            offered_at: ts(at),
            ..Default::default()
        },
    );
}

/// The story: c1 queued at T0, offered to bob at +2 s, RONA at +32 s, offered
/// to alice at +33 s, accepted at +40 s (speed 40 s), transferred to a queue
/// at +100 s (alice handled 60 s), c2 queued at +50 s, accepted by alice at
/// +60 s (speed 10 s), ended at +160 s (handle 100 s); alice's wrap-ups owed
/// at +100 s and +160 s, submitted at +130 s (30 s, `sale`) and +170 s
/// (10 s, `sale`); c1 still waiting in `support` since T0.
fn story() -> Stats {
    let mut s = Stats::default();
    queued(&mut s, "c1", T0);
    offer(&mut s, "c1", "o1", "bob", T0 + 2_000);
    conv(
        &mut s,
        v1::OfferWithdrawn {
            conversation_id: "c1".into(),
            offer_id: "o1".into(),
            agent_id: "bob".into(),
            reason: v1::WithdrawReason::Expired as i32,
            at: ts(T0 + 32_000),
        },
    );
    offer(&mut s, "c1", "o2", "alice", T0 + 33_000);
    conv(
        &mut s,
        v1::OfferAccepted {
            conversation_id: "c1".into(),
            offer_id: "o2".into(),
            agent_id: "alice".into(),
            at: ts(T0 + 40_000),
            ..Default::default()
        },
    );
    queued(&mut s, "c2", T0 + 50_000);
    offer(&mut s, "c2", "o3", "alice", T0 + 51_000);
    conv(
        &mut s,
        v1::OfferAccepted {
            conversation_id: "c2".into(),
            offer_id: "o3".into(),
            agent_id: "alice".into(),
            at: ts(T0 + 60_000),
            ..Default::default()
        },
    );
    conv(
        &mut s,
        v1::TransferRequested {
            conversation_id: "c1".into(),
            from_agent_id: "alice".into(),
            to_queue_id: "support".into(),
            at: ts(T0 + 100_000),
            ..Default::default()
        },
    );
    conv(
        &mut s,
        v1::ParticipantLeft {
            conversation_id: "c1".into(),
            agent_id: "alice".into(),
            at: ts(T0 + 100_000),
            ..Default::default()
        },
    );
    conv(
        &mut s,
        v1::ConversationQueued {
            conversation_id: "c1".into(),
            queue_id: "support".into(),
            queued_since: ts(T0),
            at: ts(T0 + 100_000),
            ..Default::default()
        },
    );
    wrap(
        &mut s,
        v1::WrapupOwed {
            wrapup_id: "w1".into(),
            agent_id: "alice".into(),
            conversation_id: "c1".into(),
            since: ts(T0 + 100_000),
            ..Default::default()
        },
    );
    wrap(
        &mut s,
        v1::WrapupSubmitted {
            wrapup_id: "w1".into(),
            agent_id: "alice".into(),
            conversation_id: "c1".into(),
            reason_code: "sale".into(),
            at: ts(T0 + 130_000),
            ..Default::default()
        },
    );
    conv(
        &mut s,
        v1::ConferenceRequested {
            conversation_id: "c2".into(),
            by_agent_id: "alice".into(),
            to_agent_id: "bob".into(),
            at: ts(T0 + 140_000),
            ..Default::default()
        },
    );
    conv(
        &mut s,
        v1::ConversationEnded {
            conversation_id: "c2".into(),
            agent_ids: vec!["alice".into()],
            at: ts(T0 + 160_000),
            ..Default::default()
        },
    );
    wrap(
        &mut s,
        v1::WrapupOwed {
            wrapup_id: "w2".into(),
            agent_id: "alice".into(),
            conversation_id: "c2".into(),
            since: ts(T0 + 160_000),
            ..Default::default()
        },
    );
    wrap(
        &mut s,
        v1::WrapupSubmitted {
            wrapup_id: "w2".into(),
            agent_id: "alice".into(),
            conversation_id: "c2".into(),
            reason_code: "sale".into(),
            at: ts(T0 + 170_000),
            ..Default::default()
        },
    );
    s
}

#[test]
fn b9_4_queue_figures_are_folded_from_the_events_as_computed_by_hand() {
    let s = story();
    let now = T0 + 200_000;
    let q = s.queues(start_of_day(now), now + 1, now);
    assert_eq!(q.len(), 1);
    let q = &q[0];
    assert_eq!(q.queue_id, "support");
    assert_eq!(q.waiting, 1, "c1 waits again after its transfer to the queue");
    assert_eq!(q.longest_wait_secs, 200, "c1 keeps its place: queued since T0");
    assert_eq!(q.figures.offered, 3);
    assert_eq!(q.figures.accepted, 2);
    assert_eq!(q.figures.rona, 1);
    assert_eq!(q.figures.avg_speed_of_answer_secs, Some(25.0), "(40 + 10) / 2");
    assert_eq!(q.figures.avg_handle_secs, Some(80.0), "(60 + 100) / 2");
    assert_eq!(q.figures.avg_wrapup_secs, Some(20.0), "(30 + 10) / 2");
    assert_eq!(q.figures.transfers, 1);
    assert_eq!(q.figures.conferences, 1);
    assert_eq!(q.figures.wrapup_reasons, BTreeMap::from([("sale".to_owned(), 2)]));
}

#[test]
fn b9_4_agent_figures_are_folded_from_the_events_as_computed_by_hand() {
    let s = story();
    let now = T0 + 200_000;
    let agents = s.agents(start_of_day(now), now + 1, now);
    let by_id: BTreeMap<_, _> = agents.iter().map(|a| (a.agent_id.as_str(), a)).collect();
    let alice = by_id["alice"];
    assert_eq!((alice.figures.offered, alice.figures.accepted, alice.figures.rona), (2, 2, 0));
    assert_eq!(alice.figures.avg_handle_secs, Some(80.0));
    assert_eq!(alice.figures.avg_wrapup_secs, Some(20.0));
    assert_eq!((alice.figures.transfers, alice.figures.conferences), (1, 1));
    let bob = by_id["bob"];
    assert_eq!((bob.figures.offered, bob.figures.accepted, bob.figures.rona), (1, 0, 1));
    assert_eq!(bob.figures.avg_handle_secs, None);
}

#[test]
fn b9_4_the_interval_counts_only_what_happened_inside_it() {
    let s = story();
    let now = T0 + 200_000;
    // [T0 + 35 s, T0 + 101 s): alice's two acceptances, c2's offer, the
    // transfer and c1's handling; not the first two offers, not the RONA.
    let q = &s.queues(T0 + 35_000, T0 + 101_000, now)[0];
    assert_eq!((q.figures.offered, q.figures.accepted, q.figures.rona), (1, 2, 0));
    assert_eq!(q.figures.transfers, 1);
    assert_eq!(q.figures.avg_handle_secs, Some(60.0));
    assert_eq!(q.figures.avg_wrapup_secs, None);
    assert!(q.figures.wrapup_reasons.is_empty());
    // Waiting is "now", whatever the interval.
    assert_eq!(q.waiting, 1);
}

#[test]
fn b9_4_folding_the_same_events_again_gives_the_same_figures() {
    let now = T0 + 200_000;
    assert_eq!(story().queues(0, now, now), story().queues(0, now, now));
    assert_eq!(story().agents(0, now, now), story().agents(0, now, now));
}

#[test]
fn b9_4_the_stats_module_is_pure() {
    let source = include_str!("../stats.rs");
    for banned in ["tokio", "SystemTime", "Utc::now", "std::fs", "reqwest", "Clock"] {
        assert!(!source.contains(banned), "stats.rs must not mention `{banned}`");
    }
}

#[test]
fn b9_4_a_transfer_acceptance_counts_but_does_not_lower_the_speed_of_answer() {
    let mut s = Stats::default();
    queued(&mut s, "c1", T0);
    offer(&mut s, "c1", "o1", "alice", T0 + 1_000);
    let accepted = |offer: &str, agent: &str, at: Millis| v1::OfferAccepted {
        conversation_id: "c1".into(),
        offer_id: offer.into(),
        agent_id: agent.into(),
        at: ts(at),
        ..Default::default()
    };
    conv(&mut s, accepted("o1", "alice", T0 + 10_000));
    conv(
        &mut s,
        v1::ParticipantLeft {
            conversation_id: "c1".into(),
            agent_id: "alice".into(),
            at: ts(T0 + 20_000),
            ..Default::default()
        },
    );
    offer(&mut s, "c1", "o2", "bob", T0 + 20_000);
    conv(&mut s, accepted("o2", "bob", T0 + 25_000));
    let q = &s.queues(0, T0 + 30_000, T0 + 30_000)[0];
    assert_eq!((q.figures.offered, q.figures.accepted), (2, 2));
    assert_eq!(q.figures.avg_speed_of_answer_secs, Some(10.0), "only the answer out of the queue");
    assert_eq!(q.figures.avg_handle_secs, Some(10.0), "alice, from accept to leave");
    assert_eq!(q.waiting, 0);
}
