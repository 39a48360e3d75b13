//! Given events, when a command, then events or a refusal — one test per rule,
//! and property tests over random command sequences.

use super::*;
use proptest::prelude::*;

const T0: Millis = 1_764_000_000_000;

fn q(id: &str) -> QueueRef {
    QueueRef { id: id.into(), name: format!("Queue {id}") }
}

fn maria() -> Customer {
    Customer { name: "Maria Lopez".into(), phone: "+15551234567".into() }
}

fn text(wa: &str, sent_at: Millis) -> CustomerMessage {
    CustomerMessage {
        message_id: format!("m-{wa}"),
        whatsapp_message_id: wa.into(),
        kind: MessageKind::Text,
        text: format!("hello {wa}"),
        media_id: String::new(),
        sent_at,
        reply_to_whatsapp_id: String::new(),
    }
}

fn receive(wa: &str, now: Millis) -> Command {
    Command::ReceiveCustomerMessage {
        conversation_id: "c1".into(),
        customer: maria(),
        source_number: "15550001111".into(),
        phone_number_id: "pn1".into(),
        entry_queue: q("sales"),
        message: text(wa, now),
        now,
    }
}

fn offer(offer_id: &str, agent: &str, now: Millis) -> Command {
    Command::MakeOffer {
        offer_id: offer_id.into(),
        agent_id: agent.into(),
        expires_at: now + 30_000,
        now,
    }
}

fn accept(agent: &str, now: Millis) -> Command {
    Command::AcceptOffer { agent_id: agent.into(), agent_name: format!("{agent} name"), now }
}

fn send(agent: &str, id: &str, body: &str, now: Millis) -> Command {
    Command::SendAgentMessage {
        message_id: id.into(),
        agent_id: agent.into(),
        agent_name: agent.into(),
        text: body.into(),
        now,
    }
}

struct Given(Conversation);

fn given(commands: &[Command]) -> Given {
    let mut state = Conversation::default();
    for c in commands {
        let events = decide(&state, c).unwrap_or_else(|e| panic!("given {c:?}: {e}"));
        state = events.iter().fold(state, evolve);
    }
    Given(state)
}

impl Given {
    fn when(&self, command: Command) -> Result<Vec<Event>, Error> {
        decide(&self.0, &command)
    }

    fn then_state(&self, command: Command) -> Conversation {
        let events = self.when(command).expect("command accepted");
        events.iter().fold(self.0.clone(), evolve)
    }
}

/// A conversation Active with alice as owner.
fn active() -> Vec<Command> {
    vec![receive("w1", T0), offer("o1", "alice", T0 + 10), accept("alice", T0 + 20)]
}

#[test]
fn b4_4_first_customer_message_starts_a_queued_conversation_in_the_entry_queue() {
    let events = given(&[]).when(receive("w1", T0)).unwrap();
    assert!(
        matches!(&events[0], Event::Started { conversation_id, .. } if conversation_id == "c1")
    );
    assert!(
        matches!(&events[1], Event::Queued { queue, queued_since: T0, kind: OfferKind::New, .. } if queue.id == "sales")
    );
    assert!(matches!(&events[2], Event::CustomerMessageReceived { .. }));
    let state = events.iter().fold(Conversation::default(), evolve);
    assert_eq!(state.status, Status::Queued);
    assert_eq!(state.window_closes_at(), Some(T0 + WINDOW_MS));
}

#[test]
fn b4_3_the_same_whatsapp_message_is_stored_once() {
    let g = given(&[receive("w1", T0)]);
    assert_eq!(g.when(receive("w1", T0 + 5)).unwrap(), vec![]);
    let more = g.when(receive("w2", T0 + 5)).unwrap();
    assert_eq!(more.len(), 1);
}

#[test]
fn b4_4_messages_are_appended_in_every_open_state() {
    for prefix in
        [vec![receive("w1", T0)], vec![receive("w1", T0), offer("o1", "alice", T0)], active()]
    {
        let events = given(&prefix).when(receive("w9", T0 + 50)).unwrap();
        assert!(matches!(events.as_slice(), [Event::CustomerMessageReceived { .. }]));
    }
}

#[test]
fn b4_4_an_ended_conversation_takes_no_more_messages() {
    let mut cmds = active();
    cmds.push(Command::End { by: Actor::Agent("alice".into()), now: T0 + 100 });
    assert_eq!(given(&cmds).when(receive("w2", T0 + 200)), Err(Error::ConversationEnded));
}

#[test]
fn b4_3_a_message_redelivered_after_end_is_stored_once_not_refused() {
    let mut cmds = active();
    cmds.push(Command::End { by: Actor::Agent("alice".into()), now: T0 + 100 });
    // Meta re-delivers w1 days later: nothing new, and no refusal that would start a conversation.
    assert_eq!(given(&cmds).when(receive("w1", T0 + 86_400_000)), Ok(vec![]));
}

#[test]
fn b4_1_a_status_after_end_still_counts() {
    let mut cmds = active();
    cmds.push(send("alice", "a1", "bye", T0 + 30));
    cmds.push(Command::End { by: Actor::Agent("alice".into()), now: T0 + 40 });
    let g = given(&cmds);
    let sent = Command::RecordStatus {
        message_id: "a1".into(),
        status: DeliveryStatus::Sent,
        whatsapp_message_id: "wamid.1".into(),
        failure: None,
        now: T0 + 50,
    };
    let state = g.then_state(sent);
    assert_eq!(state.agent_messages.get("a1"), Some(&DeliveryStatus::Sent));
    assert_eq!(state.status, Status::Ended);
    // Other commands are still refused after End.
    assert_eq!(g.when(send("alice", "a2", "more", T0 + 60)), Err(Error::ConversationEnded));
}

#[test]
fn b2_1_offer_carries_queue_and_deadline() {
    let events = given(&[receive("w1", T0)]).when(offer("o1", "alice", T0 + 10)).unwrap();
    let [Event::OfferMade(o)] = events.as_slice() else { panic!("{events:?}") };
    assert_eq!(
        (o.queue.name.as_str(), o.offered_at, o.expires_at),
        ("Queue sales", T0 + 10, T0 + 30_010)
    );
    assert_eq!(o.kind, OfferKind::New);
}

#[test]
fn b3_3_a_conversation_is_never_offered_to_two_agents_at_once() {
    let g = given(&[receive("w1", T0), offer("o1", "alice", T0)]);
    assert_eq!(g.when(offer("o2", "bob", T0 + 1)), Err(Error::AlreadyOffered));
}

#[test]
fn b2_4_only_the_offered_agent_can_accept_and_only_while_live() {
    let g = given(&[receive("w1", T0), offer("o1", "alice", T0)]);
    assert_eq!(g.when(accept("bob", T0 + 1)), Err(Error::NotOfferedToYou));
    assert_eq!(g.when(accept("alice", T0 + 30_000)), Err(Error::OfferExpired));
    let state = g.then_state(accept("alice", T0 + 29_999));
    assert_eq!(state.status, Status::Active);
    assert_eq!(state.owner.as_deref(), Some("alice"));
}

#[test]
fn b2_4_a_repeated_or_late_accept_is_a_conflict() {
    assert_eq!(given(&active()).when(accept("alice", T0 + 30)), Err(Error::AlreadyAccepted));
    let late = given(&[
        receive("w1", T0),
        offer("o1", "alice", T0),
        Command::ExpireOffer { offer_id: "o1".into(), now: T0 + 30_000 },
    ]);
    let err = late.when(accept("alice", T0 + 30_001)).unwrap_err();
    assert_eq!(err, Error::OfferExpired);
    assert_eq!(err.kind(), ErrorKind::Conflict);
}

#[test]
fn b2_2_expired_offer_is_withdrawn_and_the_conversation_keeps_its_place() {
    let g = given(&[receive("w1", T0), offer("o1", "alice", T0 + 10)]);
    assert_eq!(
        g.when(Command::ExpireOffer { offer_id: "o1".into(), now: T0 + 30_009 }),
        Err(Error::NotYetDue)
    );
    let events = g.when(Command::ExpireOffer { offer_id: "o1".into(), now: T0 + 30_010 }).unwrap();
    assert_eq!(
        events,
        vec![Event::OfferWithdrawn {
            offer_id: "o1".into(),
            agent_id: "alice".into(),
            reason: WithdrawReason::Expired,
            at: T0 + 30_010
        }]
    );
    let state = events.iter().fold(g.0.clone(), evolve);
    assert_eq!(state.status, Status::Queued);
    assert_eq!(state.queued_since, T0, "original place");
    // The next agent can be offered it.
    assert!(decide(&state, &offer("o2", "bob", T0 + 30_011)).is_ok());
}

#[test]
fn b2_2_expiring_an_offer_twice_or_after_accept_changes_nothing() {
    let g = given(&active());
    assert_eq!(
        g.when(Command::ExpireOffer { offer_id: "o1".into(), now: T0 + 99_999 }),
        Ok(vec![])
    );
}

#[test]
fn b4_2_agent_messages_are_checked_blank_length_and_participant() {
    let g = given(&active());
    assert_eq!(g.when(send("alice", "a1", "  \n\t", T0 + 30)), Err(Error::MessageBlank));
    let long = "é".repeat(MAX_MESSAGE_CHARS + 1);
    assert_eq!(g.when(send("alice", "a1", &long, T0 + 30)), Err(Error::MessageTooLong(4097)));
    assert_eq!(Error::MessageTooLong(4097).code(), "message_too_long");
    // 4096 multi-byte characters are fine: the limit is in characters, not bytes.
    assert!(g.when(send("alice", "a1", &"é".repeat(MAX_MESSAGE_CHARS), T0 + 30)).is_ok());
    assert_eq!(g.when(send("bob", "a1", "hi", T0 + 30)), Err(Error::NotAParticipant));
    let state = g.then_state(send("alice", "a1", "hi", T0 + 30));
    assert_eq!(state.agent_messages.get("a1"), Some(&DeliveryStatus::Pending));
    assert_eq!(decide(&state, &send("alice", "a1", "hi", T0 + 31)), Ok(vec![]), "idempotent retry");
}

#[test]
fn b4_6_free_form_messages_after_the_24h_window_are_refused() {
    let g = given(&active());
    let closes = T0 + WINDOW_MS;
    assert!(g.when(send("alice", "a1", "hi", closes - 1)).is_ok());
    assert_eq!(g.when(send("alice", "a1", "hi", closes)), Err(Error::WindowClosed(closes)));
    // A later customer message (by its own WhatsApp timestamp) reopens it.
    let mut cmds = active();
    cmds.push(receive("w2", T0 + 60_000));
    assert!(given(&cmds).when(send("alice", "a1", "hi", closes + 10)).is_ok());
}

#[test]
fn b4_1_delivery_statuses_move_forward_only() {
    let mut cmds = active();
    cmds.push(send("alice", "a1", "hi", T0 + 30));
    let status = |s: DeliveryStatus| Command::RecordStatus {
        message_id: "a1".into(),
        status: s,
        whatsapp_message_id: "wamid.1".into(),
        failure: None,
        now: T0 + 40,
    };
    let g = given(&cmds);
    let read = g.then_state(status(DeliveryStatus::Read));
    assert_eq!(decide(&read, &status(DeliveryStatus::Delivered)), Ok(vec![]));
    assert_eq!(decide(&read, &status(DeliveryStatus::Failed)), Ok(vec![]));
    let delivered = g.then_state(status(DeliveryStatus::Delivered));
    assert_eq!(decide(&delivered, &status(DeliveryStatus::Sent)), Ok(vec![]));
    assert_eq!(decide(&delivered, &status(DeliveryStatus::Read)).unwrap().len(), 1);
    assert_eq!(
        g.when(Command::RecordStatus {
            message_id: "nope".into(),
            status: DeliveryStatus::Sent,
            whatsapp_message_id: String::new(),
            failure: None,
            now: T0
        }),
        Err(Error::UnknownMessage)
    );
}

#[test]
fn b5_2_b5_3_transfer_to_a_queue_removes_the_owner_and_requeues() {
    let g = given(&active());
    let events = g
        .when(Command::Transfer {
            agent_id: "alice".into(),
            to: Target::Queue(q("billing")),
            now: T0 + 40,
        })
        .unwrap();
    assert!(events.contains(&Event::ParticipantLeft {
        agent_id: "alice".into(),
        reason: LeaveReason::Transferred,
        at: T0 + 40
    }));
    let state = events.iter().fold(g.0.clone(), evolve);
    assert_eq!(state.status, Status::Queued);
    assert_eq!(state.owner, None);
    assert_eq!(state.queue.as_ref().map(|q| q.id.as_str()), Some("billing"));
    let next = state_after(&state, &offer("o2", "bob", T0 + 50));
    assert_eq!(next.offer.as_ref().map(|o| o.kind), Some(OfferKind::Transfer));
}

fn state_after(state: &Conversation, command: &Command) -> Conversation {
    decide(state, command).unwrap().iter().fold(state.clone(), evolve)
}

fn to_agent(agent: &str, offer_id: &str, expires_at: Millis) -> Target {
    Target::Agent { agent_id: agent.into(), offer_id: offer_id.into(), expires_at }
}

#[test]
fn b5_4_agent_transfer_not_accepted_goes_back_to_its_queue_at_its_place() {
    let state = given(&active()).then_state(Command::Transfer {
        agent_id: "alice".into(),
        to: to_agent("bob", "o2", T0 + 30_100),
        now: T0 + 100,
    });
    assert_eq!(state.status, Status::Offered);
    assert_eq!(decide(&state, &accept("carol", T0 + 200)), Err(Error::NotOfferedToYou));
    let events =
        decide(&state, &Command::ExpireOffer { offer_id: "o2".into(), now: T0 + 30_100 }).unwrap();
    assert!(events.contains(&Event::TransferFailed { to_agent_id: "bob".into(), at: T0 + 30_100 }));
    let after = events.iter().fold(state, evolve);
    assert_eq!(after.status, Status::Queued);
    assert_eq!(after.queued_since, T0, "original place in the queue");
    assert_eq!(after.queue.as_ref().map(|q| q.id.as_str()), Some("sales"));
}

#[test]
fn b5_5_transfer_refusals() {
    let g = given(&active());
    assert_eq!(
        g.when(Command::Transfer {
            agent_id: "alice".into(),
            to: to_agent("alice", "o2", T0),
            now: T0 + 1
        }),
        Err(Error::SelfTarget)
    );
    assert_eq!(
        g.when(Command::Transfer {
            agent_id: "bob".into(),
            to: Target::Queue(q("x")),
            now: T0 + 1
        }),
        Err(Error::NotAParticipant)
    );
    let queued = given(&[receive("w1", T0)]);
    assert_eq!(
        queued.when(Command::Transfer {
            agent_id: "alice".into(),
            to: Target::Queue(q("x")),
            now: T0
        }),
        Err(Error::NotAParticipant)
    );
}

fn conference() -> Vec<Command> {
    let mut cmds = active();
    cmds.push(Command::RequestConference {
        agent_id: "alice".into(),
        to: to_agent("bob", "o2", T0 + 30_100),
        now: T0 + 100,
    });
    cmds.push(accept("bob", T0 + 200));
    cmds
}

#[test]
fn b6_1_conference_requested_then_joined() {
    let mut cmds = active();
    cmds.push(Command::RequestConference {
        agent_id: "alice".into(),
        to: to_agent("bob", "o2", T0 + 30_100),
        now: T0 + 100,
    });
    assert_eq!(given(&cmds).0.status, Status::ConferenceRequested);
    let state = given(&conference()).0;
    assert_eq!(state.status, Status::Conference);
    assert_eq!(state.owner.as_deref(), Some("alice"));
    assert!(state.is_participant("bob"));
}

#[test]
fn b6_2_every_conference_agent_can_write() {
    let g = given(&conference());
    assert!(g.when(send("bob", "b1", "hello from bob", T0 + 300)).is_ok());
    assert!(g.when(send("alice", "a1", "hello from alice", T0 + 300)).is_ok());
}

#[test]
fn b6_3_conference_not_accepted_stays_with_the_owner() {
    let mut cmds = active();
    cmds.push(Command::RequestConference {
        agent_id: "alice".into(),
        to: to_agent("bob", "o2", T0 + 30_100),
        now: T0 + 100,
    });
    let g = given(&cmds);
    let events = g.when(Command::ExpireOffer { offer_id: "o2".into(), now: T0 + 30_100 }).unwrap();
    assert!(
        events.contains(&Event::ConferenceDeclined { agent_id: "bob".into(), at: T0 + 30_100 })
    );
    let state = events.iter().fold(g.0.clone(), evolve);
    assert_eq!(state.status, Status::Active);
    assert_eq!(state.owner.as_deref(), Some("alice"));
}

#[test]
fn b6_4_end_conference_ends_for_everyone_and_each_agent_leaves_once() {
    let g = given(&conference());
    assert_eq!(
        g.when(Command::EndConference { agent_id: "bob".into(), now: T0 + 400 }),
        Err(Error::NotOwner)
    );
    let events =
        g.when(Command::EndConference { agent_id: "alice".into(), now: T0 + 400 }).unwrap();
    let [Event::Ended { agent_ids, .. }] = events.as_slice() else { panic!("{events:?}") };
    assert_eq!(agent_ids, &vec!["alice".to_string(), "bob".to_string()]);
}

#[test]
fn b6_4_a_non_owner_may_leave_and_the_chat_goes_on() {
    let g = given(&conference());
    assert_eq!(
        g.when(Command::Leave { agent_id: "alice".into(), now: T0 + 400 }),
        Err(Error::OwnerCannotLeave)
    );
    let state = g.then_state(Command::Leave { agent_id: "bob".into(), now: T0 + 400 });
    assert_eq!(state.status, Status::Active);
    assert!(!state.is_participant("bob"));
    assert!(decide(&state, &send("alice", "a9", "still here", T0 + 500)).is_ok());
    assert_eq!(decide(&state, &send("bob", "b9", "gone", T0 + 500)), Err(Error::NotAParticipant));
}

#[test]
fn b7_1_end_by_the_owner_names_every_agent_that_leaves() {
    let g = given(&active());
    assert_eq!(
        g.when(Command::End { by: Actor::Agent("bob".into()), now: T0 + 1 }),
        Err(Error::NotAParticipant)
    );
    let events = g.when(Command::End { by: Actor::Agent("alice".into()), now: T0 + 100 }).unwrap();
    assert!(
        matches!(events.as_slice(), [Event::Ended { agent_ids, .. }] if agent_ids == &vec!["alice".to_string()])
    );
}

#[test]
fn ending_while_offered_withdraws_the_offer() {
    let g = given(&[receive("w1", T0), offer("o1", "alice", T0)]);
    let events = g.when(Command::End { by: Actor::Supervisor("sup".into()), now: T0 + 5 }).unwrap();
    assert!(matches!(
        &events[0],
        Event::OfferWithdrawn { reason: WithdrawReason::ConversationEnded, .. }
    ));
}

#[test]
fn commands_on_a_conversation_that_does_not_exist_are_not_found() {
    assert_eq!(given(&[]).when(accept("alice", T0)), Err(Error::NotFound));
}

#[test]
fn domain_module_is_pure() {
    let source = include_str!("../domain.rs");
    for banned in [
        "tokio",
        "SystemTime",
        "Instant::now",
        "Uuid::new_v4",
        "reqwest",
        "async_nats",
        "std::fs",
        "std::net",
    ] {
        assert!(!source.contains(banned), "domain.rs must not use {banned}");
    }
}

// ---- properties -----------------------------------------------------------

fn arb_agent() -> impl Strategy<Value = String> {
    prop_oneof![Just("alice".to_string()), Just("bob".to_string()), Just("carol".to_string())]
}

fn arb_command() -> impl Strategy<Value = Command> {
    let t = 0i64..200_000;
    prop_oneof![
        (0u8..4, t.clone()).prop_map(|(w, now)| receive(&format!("w{w}"), T0 + now)),
        (arb_agent(), 0u8..4, t.clone()).prop_map(|(a, o, now)| offer(
            &format!("o{o}"),
            &a,
            T0 + now
        )),
        (arb_agent(), t.clone()).prop_map(|(a, now)| accept(&a, T0 + now)),
        (0u8..4, t.clone())
            .prop_map(|(o, now)| Command::ExpireOffer { offer_id: format!("o{o}"), now: T0 + now }),
        (arb_agent(), 0u8..3, t.clone()).prop_map(|(a, m, now)| send(
            &a,
            &format!("m{m}"),
            "hi",
            T0 + now
        )),
        (arb_agent(), prop::option::of(arb_agent()), 0u8..4, t.clone()).prop_map(
            |(a, to, o, now)| {
                Command::Transfer {
                    agent_id: a,
                    to: match to {
                        Some(b) => to_agent(&b, &format!("t{o}"), T0 + now + 30_000),
                        None => Target::Queue(q("billing")),
                    },
                    now: T0 + now,
                }
            }
        ),
        (arb_agent(), prop::option::of(arb_agent()), 0u8..4, t.clone()).prop_map(
            |(a, to, o, now)| {
                Command::RequestConference {
                    agent_id: a,
                    to: match to {
                        Some(b) => to_agent(&b, &format!("k{o}"), T0 + now + 30_000),
                        None => Target::Queue(q("experts")),
                    },
                    now: T0 + now,
                }
            }
        ),
        (arb_agent(), t.clone()).prop_map(|(a, now)| Command::Leave { agent_id: a, now: T0 + now }),
        (arb_agent(), t.clone())
            .prop_map(|(a, now)| Command::EndConference { agent_id: a, now: T0 + now }),
        (arb_agent(), t).prop_map(|(a, now)| Command::End { by: Actor::Agent(a), now: T0 + now }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// B3.3, B7.1: whatever happens, at most one live offer, participants are
    /// unique, the owner is one of them, every agent that joined leaves at most
    /// once per join (so owes at most one wrap-up per leave), and replaying the
    /// events rebuilds the same state.
    #[test]
    fn invariants_hold_for_any_command_sequence(commands in prop::collection::vec(arb_command(), 1..60)) {
        let mut state = Conversation::default();
        let mut log = Vec::new();
        let mut joins: BTreeMap<String, i32> = BTreeMap::new();
        let mut leaves: BTreeMap<String, i32> = BTreeMap::new();
        for command in &commands {
            if let Ok(events) = decide(&state, command) {
                for e in &events {
                    match e {
                        Event::OfferAccepted { agent_id, .. } => *joins.entry(agent_id.clone()).or_default() += 1,
                        Event::ParticipantLeft { agent_id, .. } => *leaves.entry(agent_id.clone()).or_default() += 1,
                        Event::Ended { agent_ids, .. } => for a in agent_ids { *leaves.entry(a.clone()).or_default() += 1 },
                        _ => {}
                    }
                    state = evolve(state, e);
                }
                log.extend(events);
            }
            let mut ids: Vec<_> = state.participants.iter().map(|p| &p.agent_id).collect();
            let n = ids.len();
            ids.sort();
            ids.dedup();
            prop_assert_eq!(ids.len(), n, "participants unique");
            if let Some(owner) = &state.owner {
                prop_assert!(state.is_participant(owner));
            }
            if let Some(offer) = &state.offer {
                prop_assert!(!state.is_participant(&offer.agent_id), "offered agent is not already in");
            }
            if state.status == Status::Ended {
                prop_assert!(state.participants.is_empty() && state.offer.is_none());
            }
            for (agent, l) in &leaves {
                let j = joins.get(agent).copied().unwrap_or(0);
                let still_in = i32::from(state.is_participant(agent));
                prop_assert_eq!(j, l + still_in, "each join ends in exactly one leave");
            }
        }
        let rebuilt = log.iter().fold(Conversation::default(), evolve);
        prop_assert_eq!(rebuilt, state);
    }
}

#[test]
fn b1_5_a_supervisor_reassigns_an_active_conversation_from_its_owner() {
    let g = given(&active());
    let events = g
        .when(Command::Reassign {
            supervisor_id: "sup".into(),
            to: to_agent("bob", "o9", T0 + 30_100),
            now: T0 + 100,
        })
        .unwrap();
    assert!(events.contains(&Event::ParticipantLeft {
        agent_id: "alice".into(),
        reason: LeaveReason::Reassigned,
        at: T0 + 100
    }));
    let state = events.iter().fold(g.0.clone(), evolve);
    assert_eq!(state.status, Status::Offered);
    assert_eq!(
        state.offer.as_ref().map(|o| (o.agent_id.as_str(), o.kind)),
        Some(("bob", OfferKind::Transfer))
    );
    let accepted = state_after(&state, &accept("bob", T0 + 200));
    assert_eq!(accepted.owner.as_deref(), Some("bob"));
    // To the owner itself, or when nobody owns it: refused.
    assert_eq!(
        g.when(Command::Reassign {
            supervisor_id: "sup".into(),
            to: to_agent("alice", "o9", T0),
            now: T0
        }),
        Err(Error::SelfTarget)
    );
    let queued = given(&[receive("w1", T0)]);
    assert_eq!(
        queued.when(Command::Reassign {
            supervisor_id: "sup".into(),
            to: to_agent("bob", "o9", T0),
            now: T0
        }),
        Err(Error::WrongState(Status::Queued))
    );
}

#[test]
fn b6_3_a_conference_asked_of_a_queue_nobody_was_offered_is_dropped_at_its_deadline() {
    let mut cmds = active();
    cmds.push(Command::RequestConference {
        agent_id: "alice".into(),
        to: Target::Queue(q("experts")),
        now: T0 + 100,
    });
    let g = given(&cmds);
    assert_eq!(g.0.status, Status::ConferenceRequested);
    // A timer for an older request changes nothing.
    assert_eq!(
        g.when(Command::ExpireConferenceRequest { requested_at: T0 + 99, now: T0 + 30_100 }),
        Ok(vec![])
    );
    let state =
        g.then_state(Command::ExpireConferenceRequest { requested_at: T0 + 100, now: T0 + 30_100 });
    assert_eq!(state.status, Status::Active);
    assert_eq!(state.owner.as_deref(), Some("alice"));
    assert_eq!(state.conference_queue, None);
    // Once an agent has been offered it, that offer's own expiry decides.
    let offered = state_after(&g.0, &offer("k1", "bob", T0 + 200));
    assert_eq!(
        decide(
            &offered,
            &Command::ExpireConferenceRequest { requested_at: T0 + 100, now: T0 + 30_100 }
        ),
        Ok(vec![])
    );
}
