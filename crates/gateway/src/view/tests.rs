#![allow(clippy::unwrap_used)]

use super::*;
use sb_proto::{
    AgentPresenceEvent, ConversationEvent, RoutingEvent, WrapUpEvent, timestamp_from_millis,
};

const T0: Millis = 1_764_000_000_000;

/// A log in memory: events get per-stream numbers like the store gives them.
#[derive(Default)]
struct Log {
    numbers: HashMap<String, u64>,
    view: View,
}

impl Log {
    fn with_ring(n: usize) -> Log {
        Log { numbers: HashMap::new(), view: View::new(n) }
    }

    fn append(&mut self, stream: &str, event_type: &str, data: Vec<u8>) -> Vec<Frame> {
        let n = self.numbers.entry(stream.to_owned()).or_insert(0);
        let recorded = RecordedEvent {
            stream: stream.to_owned(),
            event_number: *n,
            event_id: uuid::Uuid::new_v4(),
            event_type: event_type.to_owned(),
            data: data.into(),
            metadata: Default::default(),
            is_json: true,
            created: time::OffsetDateTime::UNIX_EPOCH,
        };
        *n += 1;
        self.view.apply(&recorded)
    }

    fn conv(&mut self, id: &str, e: impl Into<ConversationEvent>) -> Vec<Frame> {
        let e = e.into();
        self.append(&format!("conversation-{id}"), e.event_type(), e.to_json())
    }

    fn agent(&mut self, id: &str, e: impl Into<AgentPresenceEvent>) -> Vec<Frame> {
        let e = e.into();
        self.append(&format!("agent-{id}"), e.event_type(), e.to_json())
    }

    fn wrapup(&mut self, stream: &str, e: impl Into<WrapUpEvent>) -> Vec<Frame> {
        let e = e.into();
        self.append(stream, e.event_type(), e.to_json())
    }

    fn routing(&mut self, e: impl Into<RoutingEvent>) -> Vec<Frame> {
        let e = e.into();
        self.append("config-queues", e.event_type(), e.to_json())
    }
}

fn ts(ms: Millis) -> Option<sb_proto::Timestamp> {
    Some(timestamp_from_millis(ms))
}

fn json_of(frame: &Frame) -> Value {
    serde_json::from_str(&frame.text).unwrap()
}

fn types(frames: &[Frame]) -> Vec<String> {
    frames.iter().map(|f| json_of(f)["type"].as_str().unwrap().to_owned()).collect()
}

fn start(log: &mut Log, id: &str) {
    log.conv(
        id,
        v1::ConversationStarted {
            conversation_id: id.into(),
            customer: Some(v1::Customer {
                name: "Maria Lopez".into(),
                phone: "+15551234567".into(),
            }),
            source_number: "15550001111".into(),
            phone_number_id: "pn1".into(),
            at: ts(T0),
        },
    );
    log.conv(
        id,
        v1::ConversationQueued {
            conversation_id: id.into(),
            queue_id: "sales".into(),
            queue_name: "Sales".into(),
            queued_since: ts(T0),
            at: ts(T0),
            kind: v1::OfferKind::New as i32,
        },
    );
    log.conv(
        id,
        v1::CustomerMessageReceived {
            conversation_id: id.into(),
            message_id: "m1".into(),
            whatsapp_message_id: "wamid.1".into(),
            r#type: v1::MessageType::Text as i32,
            text: "Hello".into(),
            sent_at: ts(T0 - 5_000),
            received_at: ts(T0),
            customer: Some(v1::Customer {
                name: "Maria Lopez".into(),
                phone: "+15551234567".into(),
            }),
            ..Default::default()
        },
    );
}

fn offer(
    log: &mut Log,
    id: &str,
    offer_id: &str,
    agent: &str,
    kind: v1::OfferKind,
    at: Millis,
) -> Vec<Frame> {
    log.conv(
        id,
        v1::OfferMade {
            conversation_id: id.into(),
            offer_id: offer_id.into(),
            agent_id: agent.into(),
            kind: kind as i32,
            queue_id: "sales".into(),
            queue_name: "Sales".into(),
            offered_at: ts(at),
            expires_at: ts(at + 30_000),
            requested_by: String::new(),
        },
    )
}

fn accept(log: &mut Log, id: &str, offer_id: &str, agent: &str, name: &str) -> Vec<Frame> {
    log.conv(
        id,
        v1::OfferAccepted {
            conversation_id: id.into(),
            offer_id: offer_id.into(),
            agent_id: agent.into(),
            agent_name: name.into(),
            at: ts(T0 + 2_000),
        },
    )
}

#[test]
fn b2_1_an_offer_carries_customer_source_number_queue_and_times() {
    let mut log = Log::default();
    start(&mut log, "c1");
    let frames = offer(&mut log, "c1", "o1", "alice", v1::OfferKind::New, T0 + 1_000);
    assert_eq!(types(&frames), ["offer", "conversation"]);
    assert!(frames[0].audience.includes("alice", false));
    assert!(!frames[0].audience.includes("bob", false));
    assert!(frames[0].audience.includes("bob", true), "supervisors see everything");
    let offer = &json_of(&frames[0])["offer"];
    assert_eq!(offer["offerId"], "o1");
    assert_eq!(offer["conversationId"], "c1");
    assert_eq!(offer["kind"], "new");
    assert_eq!(offer["customerName"], "Maria Lopez");
    assert_eq!(offer["customerPhone"], "+15551234567");
    assert_eq!(offer["sourceNumber"], "15550001111");
    assert_eq!(offer["queueName"], "Sales");
    assert_eq!(offer["offeredAt"], "2025-11-24T16:00:01.000Z");
    assert_eq!(offer["expiresAt"], "2025-11-24T16:00:31.000Z");
    assert_eq!(log.view.offers_of("alice").len(), 1);
    assert!(log.view.offers_of("bob").is_empty());
    let c = &log.view.conversations["c1"];
    assert_eq!(c.state, dto::ConversationState::Offered);
    assert!(c.visible_to("alice"), "B3.6: the offered agent may read it");
}

#[test]
fn b2_5_accepting_gives_the_whole_transcript_with_initials_and_window() {
    let mut log = Log::default();
    start(&mut log, "c1");
    offer(&mut log, "c1", "o1", "alice", v1::OfferKind::New, T0 + 1_000);
    let frames = accept(&mut log, "c1", "o1", "alice", "Alice Smith");
    assert_eq!(types(&frames), ["offer_withdrawn", "conversation"]);
    assert!(log.view.offers_of("alice").is_empty());
    let c = log.view.conversations["c1"].to_dto(true);
    assert_eq!(c.state, dto::ConversationState::Active);
    assert_eq!(c.owner.as_deref(), Some("alice"));
    assert_eq!(c.participants[0].initials, "AS");
    assert_eq!(c.participants[0].role, "owner");
    assert_eq!(c.customer.initials, "ML");
    let messages = c.messages.unwrap();
    assert_eq!(messages.len(), 1);
    let m = serde_json::to_value(&messages[0]).unwrap();
    assert_eq!(m["direction"], "inbound");
    assert_eq!(m["sender"]["kind"], "customer");
    assert_eq!(m["sender"]["initials"], "ML");
    assert_eq!(m["type"], "text");
    assert!(m.get("status").is_none());
    // B4.6: by the message's own WhatsApp timestamp, not its arrival.
    assert_eq!(c.window_closes_at.as_deref(), Some("2025-11-25T15:59:55.000Z"));
    assert_eq!(log.view.conversations_of("alice").len(), 1);
}

#[test]
fn b4_1_agent_messages_go_out_pending_and_follow_their_status_including_failure() {
    let mut log = Log::default();
    start(&mut log, "c1");
    offer(&mut log, "c1", "o1", "alice", v1::OfferKind::New, T0);
    accept(&mut log, "c1", "o1", "alice", "Alice Smith");
    let frames = log.conv(
        "c1",
        v1::AgentMessageAdded {
            conversation_id: "c1".into(),
            message_id: "a1".into(),
            agent_id: "alice".into(),
            agent_name: "Alice Smith".into(),
            text: "Hi Maria".into(),
            at: ts(T0 + 3_000),
        },
    );
    assert_eq!(types(&frames), ["message"]);
    let m = &json_of(&frames[0])["message"];
    assert_eq!(
        (m["direction"].as_str(), m["status"].as_str()),
        (Some("outbound"), Some("pending"))
    );
    assert_eq!(m["sender"]["id"], "alice");
    assert_eq!(m["sender"]["initials"], "AS");
    let frames = log.conv(
        "c1",
        v1::MessageStatusChanged {
            conversation_id: "c1".into(),
            message_id: "a1".into(),
            status: v1::DeliveryStatus::Failed as i32,
            failure_code: 131047,
            failure_reason: "Re-engagement message".into(),
            at: ts(T0 + 4_000),
            ..Default::default()
        },
    );
    assert_eq!(types(&frames), ["message_status"]);
    let f = json_of(&frames[0]);
    assert_eq!(f["status"], "failed");
    assert_eq!(f["failure"]["code"], 131047);
    let c = log.view.conversations["c1"].to_dto(true);
    let m = &c.messages.unwrap()[1];
    assert_eq!(m.status, Some(dto::DeliveryStatus::Failed));
    assert_eq!(m.failure.as_ref().unwrap().reason, "Re-engagement message");
}

#[test]
fn b6_1_a_conference_accept_adds_the_joined_line_and_leaving_adds_a_left_line() {
    let mut log = Log::default();
    start(&mut log, "c1");
    offer(&mut log, "c1", "o1", "alice", v1::OfferKind::New, T0);
    accept(&mut log, "c1", "o1", "alice", "Alice Smith");
    log.conv(
        "c1",
        v1::ConferenceRequested {
            conversation_id: "c1".into(),
            by_agent_id: "alice".into(),
            to_agent_id: "bob".into(),
            at: ts(T0 + 5_000),
            ..Default::default()
        },
    );
    assert_eq!(log.view.conversations["c1"].state, dto::ConversationState::ConferenceRequested);
    offer(&mut log, "c1", "o2", "bob", v1::OfferKind::Conference, T0 + 5_000);
    assert_eq!(log.view.conversations["c1"].state, dto::ConversationState::ConferenceRequested);
    let frames = accept(&mut log, "c1", "o2", "bob", "Bob Stone");
    assert_eq!(types(&frames), ["offer_withdrawn", "message", "conversation"]);
    let c = log.view.conversations["c1"].to_dto(true);
    assert_eq!(c.state, dto::ConversationState::Conference);
    assert_eq!(c.owner.as_deref(), Some("alice"));
    assert_eq!(c.participants[1].role, "participant");
    let line = c.messages.as_ref().unwrap().last().unwrap();
    assert_eq!(line.direction, dto::Direction::System);
    assert_eq!(line.text, "Bob Stone has joined the chat");
    let frames = log.conv(
        "c1",
        v1::ParticipantLeft {
            conversation_id: "c1".into(),
            agent_id: "bob".into(),
            reason: v1::LeaveReason::LeftConference as i32,
            at: ts(T0 + 9_000),
        },
    );
    assert!(
        frames.iter().all(|f| f.audience.includes("bob", false)),
        "the leaver hears that it left"
    );
    let c = &log.view.conversations["c1"];
    assert_eq!(c.state, dto::ConversationState::Active);
    // B8.1: bob no longer takes part, but may still read it (its wrap-up).
    assert!(!c.is_participant("bob") && c.visible_to("bob"));
    assert_eq!(c.messages.last().unwrap().text, "Bob Stone left the chat");
}

#[test]
fn b5_4_a_failed_agent_transfer_says_so_and_goes_back_to_the_queue() {
    let mut log = Log::default();
    log.agent(
        "bob",
        v1::AgentRegistered {
            agent_id: "bob".into(),
            name: "Bob Stone".into(),
            capacity: 2,
            at: ts(T0),
            ..Default::default()
        },
    );
    start(&mut log, "c1");
    offer(&mut log, "c1", "o1", "alice", v1::OfferKind::New, T0);
    accept(&mut log, "c1", "o1", "alice", "Alice Smith");
    log.conv(
        "c1",
        v1::TransferRequested {
            conversation_id: "c1".into(),
            from_agent_id: "alice".into(),
            to_agent_id: "bob".into(),
            at: ts(T0 + 5_000),
            ..Default::default()
        },
    );
    let frames = log.conv(
        "c1",
        v1::ParticipantLeft {
            conversation_id: "c1".into(),
            agent_id: "alice".into(),
            reason: v1::LeaveReason::Transferred as i32,
            at: ts(T0 + 5_000),
        },
    );
    assert!(frames.iter().any(|f| f.audience.includes("alice", false)));
    offer(&mut log, "c1", "o2", "bob", v1::OfferKind::Transfer, T0 + 5_000);
    log.conv(
        "c1",
        v1::OfferWithdrawn {
            conversation_id: "c1".into(),
            offer_id: "o2".into(),
            agent_id: "bob".into(),
            reason: v1::WithdrawReason::Expired as i32,
            at: ts(T0 + 35_000),
        },
    );
    let frames = log.conv(
        "c1",
        v1::TransferFailed {
            conversation_id: "c1".into(),
            to_agent_id: "bob".into(),
            at: ts(T0 + 35_000),
        },
    );
    assert_eq!(types(&frames), ["message", "conversation"]);
    let c = &log.view.conversations["c1"];
    assert_eq!(c.messages.last().unwrap().text, "Transfer to Bob Stone failed");
    assert_eq!(c.state, dto::ConversationState::Queued);
    assert!(c.owner.is_none());
    assert_eq!(log.view.waiting_in("sales"), 1);
}

#[test]
fn b1_4_presence_tracks_state_reason_since_and_slots() {
    let mut log = Log::default();
    let frames = log.agent(
        "alice",
        v1::AgentRegistered {
            agent_id: "alice".into(),
            name: "Alice Smith".into(),
            capacity: 0,
            skills: vec!["es".into()],
            at: ts(T0),
            ..Default::default()
        },
    );
    assert_eq!(types(&frames), ["presence"]);
    let a = log.view.agents["alice"].to_dto();
    assert_eq!((a.state, a.capacity, a.slots_used), (dto::PresenceState::LoggedOut, 3, 0));
    log.agent(
        "alice",
        v1::AgentStateChanged {
            agent_id: "alice".into(),
            state: v1::PresenceState::Idle as i32,
            idle_reason: "lunch".into(),
            at: ts(T0 + 1_000),
            ..Default::default()
        },
    );
    let a = log.view.agents["alice"].to_dto();
    assert_eq!(a.idle_reason.as_deref(), Some("lunch"));
    assert_eq!(a.state_since.as_deref(), Some("2025-11-24T16:00:01.000Z"));
    log.agent(
        "alice",
        v1::SlotReserved {
            agent_id: "alice".into(),
            conversation_id: "c1".into(),
            offer_id: "o1".into(),
            at: ts(T0),
        },
    );
    log.agent(
        "alice",
        v1::SlotReserved {
            agent_id: "alice".into(),
            conversation_id: "c1".into(),
            offer_id: "o2".into(),
            at: ts(T0),
        },
    );
    assert_eq!(log.view.agents["alice"].slots_used(), 2);
    log.agent(
        "alice",
        v1::SlotReleased {
            agent_id: "alice".into(),
            conversation_id: "c1".into(),
            offer_id: "o1".into(),
            cause: "wrapup_submitted".into(),
            at: ts(T0),
        },
    );
    assert_eq!(log.view.agents["alice"].holdings, vec![("o2".to_owned(), "c1".to_owned())]);
    let json = serde_json::to_value(log.view.agents["alice"].to_dto()).unwrap();
    assert_eq!(json["state"], "Idle");
    assert!(json.get("stateSince").is_some() && json.get("slotsUsed").is_some());
}

#[test]
fn b7_wrapups_are_owed_and_settled_and_reasons_retire() {
    let mut log = Log::default();
    log.wrapup(
        "config-wrapup-reasons",
        v1::WrapupReasonAdded {
            code: "resolved".into(),
            label: "Issue resolved".into(),
            ..Default::default()
        },
    );
    log.wrapup(
        "config-wrapup-reasons",
        v1::WrapupReasonAdded { code: "spam".into(), label: "Spam".into(), ..Default::default() },
    );
    log.wrapup(
        "config-wrapup-reasons",
        v1::WrapupReasonRetired { code: "spam".into(), ..Default::default() },
    );
    assert!(log.view.reasons["spam"].retired && !log.view.reasons["resolved"].retired);
    let frames = log.wrapup(
        "wrapup-alice",
        v1::WrapupOwed {
            wrapup_id: "w1".into(),
            agent_id: "alice".into(),
            conversation_id: "c1".into(),
            since: ts(T0),
            auto_at: ts(T0 + 120_000),
            ..Default::default()
        },
    );
    assert_eq!(types(&frames), ["wrapup_required"]);
    let pending = log.view.pending_wrapups_of("alice");
    assert_eq!(pending[0].auto_at.as_deref(), Some("2025-11-24T16:02:00.000Z"));
    let frames = log.wrapup(
        "wrapup-alice",
        v1::WrapupSubmitted {
            wrapup_id: "w1".into(),
            agent_id: "alice".into(),
            conversation_id: "c1".into(),
            reason_code: "resolved".into(),
            ..Default::default()
        },
    );
    assert_eq!(types(&frames), ["wrapup_done"]);
    assert!(log.view.pending_wrapups_of("alice").is_empty());
}

#[test]
fn b3_1_queues_and_entry_points_come_from_the_routing_config() {
    let mut log = Log::default();
    log.routing(v1::QueueDefined {
        queue_id: "sales".into(),
        name: "Sales".into(),
        offer_timeout_secs: 30,
        priority: 2,
        ..Default::default()
    });
    log.routing(v1::EntryPointMapped {
        business_number: "15550001111".into(),
        queue_id: "sales".into(),
        ..Default::default()
    });
    start(&mut log, "c1");
    let q = log.view.queue_dto(&log.view.queues["sales"]);
    assert_eq!((q.priority, q.waiting), (2, 1));
    assert_eq!(log.view.entry_points["15550001111"], "sales");
}

#[test]
fn b9_3_applied_versions_track_each_stream_for_read_your_writes() {
    let mut log = Log::default();
    start(&mut log, "c1");
    assert!(log.view.has_applied("conversation-c1", 2));
    assert!(!log.view.has_applied("conversation-c1", 3));
    assert!(!log.view.has_applied("conversation-c2", 0));
    // An undecodable event still counts as applied, and never panics.
    log.append("conversation-c1", "OfferMade", b"{not json".to_vec());
    log.append("agent-x", "NoSuchEvent", b"{}".to_vec());
    assert!(log.view.has_applied("conversation-c1", 3));
    assert!(log.view.has_applied("agent-x", 0));
}

#[test]
fn since_replays_what_a_caller_may_see_and_asks_for_resync_past_the_ring() {
    let mut log = Log::with_ring(4);
    start(&mut log, "c1"); // 3 frames: conversation, conversation, message
    let made = offer(&mut log, "c1", "o1", "alice", v1::OfferKind::New, T0); // offer, conversation
    assert_eq!(log.view.head_position(), 5);
    let positions: Vec<u64> = made.iter().map(|f| f.position).collect();
    assert_eq!(positions, [4, 5]);
    assert_eq!(json_of(&made[0])["position"], 4);
    match log.view.replay(3, "alice", false) {
        Replay::Frames(frames) => assert_eq!(types(&frames), ["offer", "conversation"]),
        other => panic!("{other:?}"),
    }
    match log.view.replay(3, "bob", false) {
        Replay::Frames(frames) => assert!(frames.is_empty()),
        other => panic!("{other:?}"),
    }
    match log.view.replay(5, "alice", false) {
        Replay::Frames(frames) => assert!(frames.is_empty()),
        other => panic!("{other:?}"),
    }
    // The ring holds positions 2..=5: since=1 still works, since=0 does not.
    assert!(matches!(log.view.replay(1, "bob", true), Replay::Frames(f) if f.len() == 4));
    assert_eq!(log.view.replay(0, "bob", true), Replay::Resync);
    assert_eq!(log.view.replay(99, "bob", true), Replay::Resync);
}

#[test]
fn initials_and_phones_are_shaped_for_the_api() {
    assert_eq!(initials("Maria Lopez"), "ML");
    assert_eq!(initials("maria de la lopez"), "ML");
    assert_eq!(initials("Zoë"), "Z");
    assert_eq!(initials("  "), "?");
    assert_eq!(e164("15551234567"), "+15551234567");
    assert_eq!(e164("+15551234567"), "+15551234567");
    assert_eq!(rfc3339(T0 + 123), "2025-11-24T16:00:00.123Z");
}

#[test]
fn ended_conversations_leave_everyone_and_show_a_line() {
    let mut log = Log::default();
    start(&mut log, "c1");
    offer(&mut log, "c1", "o1", "alice", v1::OfferKind::New, T0);
    accept(&mut log, "c1", "o1", "alice", "Alice Smith");
    let frames = log.conv(
        "c1",
        v1::ConversationEnded {
            conversation_id: "c1".into(),
            agent_ids: vec!["alice".into()],
            at: ts(T0 + 60_000),
            ..Default::default()
        },
    );
    assert!(frames.iter().all(|f| f.audience.includes("alice", false)));
    let c = log.view.conversations["c1"].to_dto(true);
    assert_eq!(c.state, dto::ConversationState::Ended);
    assert!(c.participants.is_empty() && c.owner.is_none());
    assert_eq!(c.ended_at.as_deref(), Some("2025-11-24T16:01:00.000Z"));
    assert!(log.view.conversations_of("alice").is_empty());
}

#[test]
fn events_of_a_conversation_never_started_here_do_not_invent_one() {
    let mut log = Log::default();
    let frames = log.conv(
        "gone",
        v1::MessageStatusChanged {
            conversation_id: "gone".into(),
            message_id: "a1".into(),
            status: v1::DeliveryStatus::Read as i32,
            ..Default::default()
        },
    );
    assert!(frames.is_empty());
    assert!(log.view.conversations.is_empty());
    assert!(log.view.has_applied("conversation-gone", 0));
}
