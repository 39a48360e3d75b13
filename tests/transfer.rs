//! B5 (transfer) and B6 (conference) end to end over NATS, every service its
//! own process (real `nats-server`, the embedded event store over HTTP),
//! time moved only by the test (`Cluster::advance`).
//!
//! Each test starts its own cluster. Slots are checked through presence
//! `get` (B1.3), wrap-ups through wrap-up `pending` (B7.1), and what a
//! refusal did through the conversation's stream in the log.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use e2e::{
    Cluster,
    drive::{agent, agent_actor, conversation, put_queue, supervisor},
    eventually,
};
use eventlog::EventStore;
use prost::Message;
use sb_proto::{
    ConversationEvent, Service,
    v1::{self, OfferKind, PresenceState},
    verbs,
};

const BUSINESS: &str = "15550001111";

fn name_of(agent: &str) -> &'static str {
    match agent {
        "alice" => "Alice Smith",
        "bob" => "Bob Jones",
        "carol" => "Carol White",
        _ => "Dave Brown",
    }
}

/// A command's reply, or the refusal's code.
async fn try_call<C: Message, R: Message + Default>(
    cluster: &Cluster,
    service: Service,
    verb: &str,
    command: &C,
) -> Result<R, String> {
    kernel::commands::call(&cluster.bus, service, verb, command, None)
        .await
        .map_err(|e| e.code().to_owned())
}

async fn register(cluster: &Cluster, id: &str, capacity: u32, skills: &[&str]) {
    let _: v1::AgentPresence = cluster
        .call(
            Service::AgentPresence,
            verbs::presence::REGISTER,
            &v1::RegisterAgent {
                agent_id: id.into(),
                name: name_of(id).into(),
                capacity,
                skills: skills.iter().map(|s| s.to_string()).collect(),
                by: supervisor(),
            },
        )
        .await;
}

/// Queues `support` (entry queue, 30 s) and `billing` ("Billing Desk",
/// 20 s, skill `billing`); alice, bob, carol and dave with `capacity` each,
/// only bob with the `billing` skill; the `resolved` wrap-up reason.
async fn start(capacity: u32) -> Cluster {
    let mut cluster = Cluster::start().await;
    cluster.start_all().await;
    put_queue(&cluster, "support", "Support", 30, &[]).await;
    put_queue(&cluster, "billing", "Billing Desk", 20, &["billing"]).await;
    let _: v1::EntryPoint = cluster
        .call(
            Service::Routing,
            verbs::routing::PUT_ENTRY_POINT,
            &v1::PutEntryPoint {
                business_number: BUSINESS.into(),
                queue_id: "support".into(),
                by: supervisor(),
            },
        )
        .await;
    for id in ["alice", "bob", "carol", "dave"] {
        let skills: &[&str] = if id == "bob" { &["billing"] } else { &[] };
        register(&cluster, id, capacity, skills).await;
    }
    let _: v1::WrapupReason = cluster
        .call(
            Service::WrapUp,
            verbs::wrapup::PUT_REASON,
            &v1::PutWrapupReason {
                code: "resolved".into(),
                label: "Issue resolved".into(),
                by: supervisor(),
            },
        )
        .await;
    cluster
}

async fn set_state(cluster: &Cluster, agent: &str, state: PresenceState) -> v1::AgentPresence {
    cluster
        .call(
            Service::AgentPresence,
            verbs::presence::CHANGE_STATE,
            &v1::ChangeAgentState {
                agent_id: agent.into(),
                state: state as i32,
                idle_reason: if state == PresenceState::Idle { "break".into() } else { "".into() },
                by: agent_actor(agent),
            },
        )
        .await
}

async fn customer_says(cluster: &Cluster, phone: &str, wa_id: &str) -> String {
    let stored: v1::CustomerMessageStored = cluster
        .call(
            Service::Conversation,
            verbs::conversation::RECEIVE,
            &v1::ReceiveCustomerMessage {
                source_number: BUSINESS.into(),
                phone_number_id: "pn-1".into(),
                customer: Some(v1::Customer { name: "Maria Lopez".into(), phone: phone.into() }),
                whatsapp_message_id: wa_id.into(),
                r#type: v1::MessageType::Text as i32,
                text: "Hello".into(),
                sent_at: Some(sb_proto::timestamp_from_millis(cluster.now())),
                ..Default::default()
            },
        )
        .await;
    stored.conversation_id
}

async fn slots(cluster: &Cluster, id: &str) -> u32 {
    agent(cluster, id).await.slots_used
}

/// Waits for a live offer of the conversation to `agent_id`.
async fn offered_to(cluster: &Cluster, conversation_id: &str, agent_id: &str) -> v1::LiveOffer {
    eventually(&format!("an offer to {agent_id}"), || async {
        let offer = conversation(cluster, conversation_id).await.offer;
        if let Some(o) = &offer {
            assert!(o.agent_id == agent_id, "offered to {} instead of {agent_id}", o.agent_id);
        }
        offer
    })
    .await
}

async fn accept(cluster: &Cluster, conversation_id: &str, agent: &str) -> v1::ConversationSummary {
    cluster
        .call(
            Service::Conversation,
            verbs::conversation::ACCEPT,
            &v1::AcceptOffer {
                conversation_id: conversation_id.into(),
                agent_id: agent.into(),
                agent_name: name_of(agent).into(),
            },
        )
        .await
}

/// A new conversation from `phone`, routed to and accepted by `owner` (the
/// only agent Available with a free slot at that moment).
async fn active_with(cluster: &Cluster, owner: &str, phone: &str, wa_id: &str) -> String {
    let id = customer_says(cluster, phone, wa_id).await;
    offered_to(cluster, &id, owner).await;
    let summary = accept(cluster, &id, owner).await;
    assert_eq!((summary.state.as_str(), summary.owner.as_str()), ("active", owner));
    id
}

/// Where a transfer or conference goes.
#[derive(Debug, Clone, Copy)]
enum To<'a> {
    Queue(&'a str),
    Agent(&'a str),
}

async fn transfer(
    cluster: &Cluster,
    id: &str,
    by: &str,
    to: To<'_>,
) -> Result<v1::ConversationSummary, String> {
    let (to_queue_id, to_agent_id) = match to {
        To::Queue(q) => (q.to_owned(), String::new()),
        To::Agent(a) => (String::new(), a.to_owned()),
    };
    try_call(
        cluster,
        Service::Conversation,
        verbs::conversation::TRANSFER,
        &v1::TransferConversation {
            conversation_id: id.into(),
            agent_id: by.into(),
            to_queue_id,
            to_agent_id,
        },
    )
    .await
}

async fn conference(
    cluster: &Cluster,
    id: &str,
    by: &str,
    to: To<'_>,
) -> Result<v1::ConversationSummary, String> {
    let (to_queue_id, to_agent_id) = match to {
        To::Queue(q) => (q.to_owned(), String::new()),
        To::Agent(a) => (String::new(), a.to_owned()),
    };
    try_call(
        cluster,
        Service::Conversation,
        verbs::conversation::CONFERENCE,
        &v1::RequestConference {
            conversation_id: id.into(),
            agent_id: by.into(),
            to_queue_id,
            to_agent_id,
        },
    )
    .await
}

async fn end_conference(
    cluster: &Cluster,
    id: &str,
    by: &str,
) -> Result<v1::ConversationSummary, String> {
    try_call(
        cluster,
        Service::Conversation,
        verbs::conversation::END_CONFERENCE,
        &v1::EndConference { conversation_id: id.into(), agent_id: by.into() },
    )
    .await
}

async fn leave(cluster: &Cluster, id: &str, by: &str) -> Result<v1::ConversationSummary, String> {
    try_call(
        cluster,
        Service::Conversation,
        verbs::conversation::LEAVE,
        &v1::LeaveConversation { conversation_id: id.into(), agent_id: by.into() },
    )
    .await
}

async fn end(cluster: &Cluster, id: &str, by: &str) -> Result<v1::ConversationSummary, String> {
    try_call(
        cluster,
        Service::Conversation,
        verbs::conversation::END,
        &v1::EndConversation { conversation_id: id.into(), by: agent_actor(by) },
    )
    .await
}

async fn send(cluster: &Cluster, id: &str, by: &str, text: &str) -> Result<(), String> {
    try_call::<_, v1::AgentMessageStored>(
        cluster,
        Service::Conversation,
        verbs::conversation::SEND,
        &v1::SendAgentMessage {
            conversation_id: id.into(),
            agent_id: by.into(),
            agent_name: name_of(by).into(),
            text: text.into(),
            message_id: String::new(),
        },
    )
    .await
    .map(|_| ())
}

async fn pending(cluster: &Cluster, agent: &str) -> Vec<v1::PendingWrapup> {
    let list: v1::PendingWrapupList = cluster
        .call(
            Service::WrapUp,
            verbs::wrapup::PENDING,
            &v1::ListPendingWrapups { agent_id: agent.into() },
        )
        .await;
    list.wrapups
}

/// Waits until `agent` owes exactly `n` wrap-ups for `conversation_id`.
async fn owes(cluster: &Cluster, agent: &str, conversation_id: &str, n: usize) {
    eventually(&format!("{agent} owes {n} wrap-up(s)"), || async {
        let owed = pending(cluster, agent).await;
        (owed.iter().filter(|w| w.conversation_id == conversation_id).count() == n).then_some(())
    })
    .await;
}

async fn submit(cluster: &Cluster, agent: &str, conversation_id: &str) {
    let _: v1::PendingWrapupList = cluster
        .call(
            Service::WrapUp,
            verbs::wrapup::SUBMIT,
            &v1::SubmitWrapup {
                agent_id: agent.into(),
                conversation_id: conversation_id.into(),
                reason_code: "resolved".into(),
                note: String::new(),
            },
        )
        .await;
}

async fn slots_become(cluster: &Cluster, agent: &str, n: u32) {
    eventually(&format!("{agent} holds {n} slot(s)"), || async {
        (slots(cluster, agent).await == n).then_some(())
    })
    .await;
}

/// The conversation's events, in order.
async fn events(cluster: &Cluster, conversation_id: &str) -> Vec<ConversationEvent> {
    let loaded =
        cluster.store().load_stream(&format!("conversation-{conversation_id}")).await.unwrap();
    loaded
        .events
        .iter()
        .map(|e| ConversationEvent::from_json(&e.event_type, &e.data).unwrap())
        .collect()
}

async fn history(cluster: &Cluster, conversation_id: &str) -> Vec<String> {
    events(cluster, conversation_id).await.iter().map(|e| e.event_type().to_owned()).collect()
}

fn count(history: &[String], event_type: &str) -> usize {
    history.iter().filter(|t| *t == event_type).count()
}

fn ms(t: &Option<sb_proto::Timestamp>) -> i64 {
    sb_proto::millis_from_timestamp(t.as_ref().unwrap())
}

/// Gives routing (which re-plans at least every second) the chance to make
/// an offer it must not make; the test then checks that none was made.
async fn let_routing_plan() {
    tokio::time::sleep(Duration::from_millis(1_500)).await;
}

// ---- transfer ---------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b5_3_transfer_to_a_queue_is_routed_there_and_the_transferring_slot_waits_for_its_wrapup() {
    let mut cluster = start(1).await;
    set_state(&cluster, "alice", PresenceState::Available).await;
    let id = active_with(&cluster, "alice", "+15551234567", "wamid.1").await;
    cluster.advance(Duration::from_secs(5)).await;
    set_state(&cluster, "bob", PresenceState::Available).await;

    // B5.2: the transferring agent leaves at once and owes a wrap-up.
    let moved = transfer(&cluster, &id, "alice", To::Queue("billing")).await.unwrap();
    assert_eq!(moved.owner, "");
    assert!(moved.participants.is_empty());
    assert_eq!(moved.queue_id, "billing");
    owes(&cluster, "alice", &id, 1).await;
    // B5.3: routed as in B3, to the agent with the billing skill.
    let offer = offered_to(&cluster, &id, "bob").await;
    assert_eq!(offer.kind, OfferKind::Transfer as i32);
    assert_eq!(offer.queue_name, "Billing Desk");
    assert_eq!(ms(&offer.expires_at) - ms(&offer.offered_at), 20_000, "billing's timeout");
    let summary = accept(&cluster, &id, "bob").await;
    assert_eq!((summary.state.as_str(), summary.owner.as_str()), ("active", "bob"));

    // B1.3: alice's slot is held until her wrap-up is submitted.
    assert_eq!(slots(&cluster, "alice").await, 1);
    assert_eq!(slots(&cluster, "bob").await, 1);
    submit(&cluster, "alice", &id).await;
    slots_become(&cluster, "alice", 0).await;
    assert_eq!(slots(&cluster, "bob").await, 1);

    let h = history(&cluster, &id).await;
    assert_eq!(count(&h, "TransferRequested"), 1);
    assert_eq!(count(&h, "ParticipantLeft"), 1);
    assert_eq!(count(&h, "ConversationQueued"), 2);
    assert_eq!(count(&h, "OfferAccepted"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b3_5_the_transferring_agent_is_not_offered_the_conversation_back_while_it_owes_the_wrapup()
{
    // Capacity 2: alice keeps a free slot while hers for this conversation is held.
    let cluster = start(2).await;
    set_state(&cluster, "alice", PresenceState::Available).await;
    let id = active_with(&cluster, "alice", "+15551234567", "wamid.1").await;
    // alice chats a while: routing's short memory of its own first offer
    // (operational, 2 s of wall time) must not be what keeps her out.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    transfer(&cluster, &id, "alice", To::Queue("support")).await.unwrap();
    let_routing_plan().await;
    owes(&cluster, "alice", &id, 1).await;
    let waiting = conversation(&cluster, &id).await;
    assert_eq!(waiting.state, "queued");
    assert!(waiting.offer.is_none(), "offered back to {:?}", waiting.offer);
    assert_eq!(count(&history(&cluster, &id).await, "OfferMade"), 1);
    let a = agent(&cluster, "alice").await;
    assert_eq!((a.state, a.slots_used), (PresenceState::Available as i32, 1));

    // Once the wrap-up is in, alice is eligible again (and the only one).
    submit(&cluster, "alice", &id).await;
    let offer = offered_to(&cluster, &id, "alice").await;
    assert_eq!(offer.kind, OfferKind::Transfer as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b5_4_agent_transfer_accepted_makes_the_target_the_owner() {
    let mut cluster = start(1).await;
    set_state(&cluster, "alice", PresenceState::Available).await;
    let id = active_with(&cluster, "alice", "+15551234567", "wamid.1").await;
    cluster.advance(Duration::from_secs(2)).await;
    set_state(&cluster, "bob", PresenceState::Available).await;

    let offered = transfer(&cluster, &id, "alice", To::Agent("bob")).await.unwrap();
    assert_eq!(offered.state, "offered");
    assert_eq!(offered.owner, "");
    let offer = offered.offer.unwrap();
    assert_eq!((offer.agent_id.as_str(), offer.kind), ("bob", OfferKind::Transfer as i32));
    // B3.6: the current queue's offer timeout.
    assert_eq!(ms(&offer.expires_at) - ms(&offer.offered_at), 30_000);
    assert_eq!(slots(&cluster, "bob").await, 1, "B1.3: the offer holds bob's slot");
    owes(&cluster, "alice", &id, 1).await;
    // Only the offered agent can accept.
    let not_you = try_call::<_, v1::ConversationSummary>(
        &cluster,
        Service::Conversation,
        verbs::conversation::ACCEPT,
        &v1::AcceptOffer {
            conversation_id: id.clone(),
            agent_id: "carol".into(),
            agent_name: name_of("carol").into(),
        },
    )
    .await;
    assert_eq!(not_you.unwrap_err(), "not_offered_to_you");

    cluster.advance(Duration::from_secs(10)).await;
    let summary = accept(&cluster, &id, "bob").await;
    assert_eq!((summary.state.as_str(), summary.owner.as_str()), ("active", "bob"));
    send(&cluster, &id, "bob", "Hi, Bob here").await.unwrap();
    assert_eq!(send(&cluster, &id, "alice", "still me?").await.unwrap_err(), "not_a_participant");

    // Both slots held: alice's until her wrap-up, bob's until his.
    assert_eq!((slots(&cluster, "alice").await, slots(&cluster, "bob").await), (1, 1));
    submit(&cluster, "alice", &id).await;
    slots_become(&cluster, "alice", 0).await;
    end(&cluster, &id, "bob").await.unwrap();
    owes(&cluster, "bob", &id, 1).await;
    assert_eq!(slots(&cluster, "bob").await, 1);
    submit(&cluster, "bob", &id).await;
    slots_become(&cluster, "bob", 0).await;
    let h = history(&cluster, &id).await;
    assert_eq!(count(&h, "TransferFailed"), 0);
    assert_eq!(count(&h, "OfferWithdrawn"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b5_4_agent_transfer_not_accepted_returns_to_its_queue_at_its_place() {
    let mut cluster = start(1).await;
    set_state(&cluster, "alice", PresenceState::Available).await;
    let first = active_with(&cluster, "alice", "+15551234567", "wamid.1").await;
    let first_since = ms(&conversation(&cluster, &first).await.queued_since);
    cluster.advance(Duration::from_secs(2)).await;
    set_state(&cluster, "bob", PresenceState::Available).await;
    transfer(&cluster, &first, "alice", To::Agent("bob")).await.unwrap();

    // A second customer arrives later and waits: nobody has a free slot.
    cluster.advance(Duration::from_secs(3)).await;
    let second = customer_says(&cluster, "+15557654321", "wamid.2").await;
    assert!(ms(&conversation(&cluster, &second).await.queued_since) > first_since);

    // B5.4: bob does not accept in time.
    cluster.advance(Duration::from_secs(30)).await;
    let bob = eventually("bob in RONA with his slot back", || async {
        let b = agent(&cluster, "bob").await;
        (b.state == PresenceState::Rona as i32 && b.slots_used == 0).then_some(b)
    })
    .await;
    assert_eq!(bob.slots_used, 0);
    let back = conversation(&cluster, &first).await;
    assert_eq!(back.state, "queued");
    assert_eq!(back.queue_id, "support", "the queue it was last in");
    assert_eq!(ms(&back.queued_since), first_since, "its original place");
    let late = try_call::<_, v1::ConversationSummary>(
        &cluster,
        Service::Conversation,
        verbs::conversation::ACCEPT,
        &v1::AcceptOffer {
            conversation_id: first.clone(),
            agent_id: "bob".into(),
            agent_name: name_of("bob").into(),
        },
    )
    .await;
    assert_eq!(late.unwrap_err(), "offer_expired");
    // The transcript says the transfer failed.
    let log = events(&cluster, &first).await;
    let failed = log.iter().find_map(|e| match e {
        ConversationEvent::TransferFailed(f) => Some(f.clone()),
        _ => None,
    });
    assert_eq!(failed.unwrap().to_agent_id, "bob");
    // alice still owes the wrap-up and holds her slot (B5.2, B1.3).
    owes(&cluster, "alice", &first, 1).await;
    assert_eq!(slots(&cluster, "alice").await, 1);

    // The next free agent gets the first conversation before the later one.
    set_state(&cluster, "carol", PresenceState::Available).await;
    let offer = offered_to(&cluster, &first, "carol").await;
    assert_eq!(offer.kind, OfferKind::Transfer as i32);
    assert!(conversation(&cluster, &second).await.offer.is_none());
    assert_eq!(agent(&cluster, "bob").await.state, PresenceState::Rona as i32, "B2.3");
}

/// B1.5 with B5.4: the target's session is lost while the transfer is offered:
/// the transfer fails the same way, but the target keeps its state (no RONA).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b1_5_a_transfer_offer_withdrawn_for_a_lost_session_goes_back_to_its_queue() {
    let mut cluster = start(1).await;
    set_state(&cluster, "alice", PresenceState::Available).await;
    let id = active_with(&cluster, "alice", "+15551234567", "wamid.1").await;
    let since = ms(&conversation(&cluster, &id).await.queued_since);
    cluster.advance(Duration::from_secs(2)).await;
    set_state(&cluster, "bob", PresenceState::Available).await;
    let offer = transfer(&cluster, &id, "alice", To::Agent("bob")).await.unwrap().offer.unwrap();
    let _: v1::ConversationSummary = cluster
        .call(
            Service::Conversation,
            verbs::conversation::WITHDRAW_OFFER,
            &v1::WithdrawOffer {
                conversation_id: id.clone(),
                offer_id: offer.offer_id.clone(),
                reason: v1::WithdrawReason::SessionLost as i32,
            },
        )
        .await;
    // The same way back as a timeout: TransferFailed, its queue, its place.
    let log = history(&cluster, &id).await;
    assert_eq!(count(&log, "TransferFailed"), 1);
    let requeued = events(&cluster, &id).await.into_iter().rev().find_map(|e| match e {
        ConversationEvent::ConversationQueued(q) => Some(q),
        _ => None,
    });
    let requeued = requeued.unwrap();
    assert_eq!((requeued.queue_id.as_str(), ms(&requeued.queued_since)), ("support", since));
    // bob is still Available, has his slot back and owes nothing: routing
    // offers him the conversation again, under a new offer, with one slot.
    let again = eventually("a new offer to bob", || async {
        conversation(&cluster, &id).await.offer.filter(|o| o.offer_id != offer.offer_id)
    })
    .await;
    assert_eq!((again.agent_id.as_str(), again.kind), ("bob", OfferKind::Transfer as i32));
    let bob = agent(&cluster, "bob").await;
    assert_eq!((bob.state, bob.slots_used), (PresenceState::Available as i32, 1), "no RONA");
    assert_eq!(slots(&cluster, "alice").await, 1, "alice's slot waits for her wrap-up");
}

// ---- conference -------------------------------------------------------------

/// alice owns `id` and bob has joined it as a conference participant.
async fn conference_of_alice_and_bob(cluster: &mut Cluster) -> String {
    set_state(cluster, "alice", PresenceState::Available).await;
    let id = active_with(cluster, "alice", "+15551234567", "wamid.1").await;
    cluster.advance(Duration::from_secs(2)).await;
    set_state(cluster, "bob", PresenceState::Available).await;
    let requested = conference(cluster, &id, "alice", To::Agent("bob")).await.unwrap();
    assert_eq!(requested.state, "conferenceRequested");
    assert_eq!(requested.owner, "alice");
    let offer = requested.offer.unwrap();
    assert_eq!((offer.agent_id.as_str(), offer.kind), ("bob", OfferKind::Conference as i32));
    assert_eq!(ms(&offer.expires_at) - ms(&offer.offered_at), 30_000, "B3.6");
    assert_eq!(slots(cluster, "bob").await, 1);
    // B6.1: the owner keeps chatting while the invitation is open.
    send(cluster, &id, "alice", "Let me bring in a colleague").await.unwrap();
    cluster.advance(Duration::from_secs(5)).await;
    let joined = accept(cluster, &id, "bob").await;
    assert_eq!(joined.state, "conference");
    let roles: Vec<_> =
        joined.participants.iter().map(|p| (p.agent_id.as_str(), p.role.as_str())).collect();
    assert_eq!(roles, [("alice", "owner"), ("bob", "participant")]);
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b6_1_b6_4_conference_with_an_agent_then_end_conference_owes_each_agent_one_wrapup() {
    let mut cluster = start(1).await;
    let id = conference_of_alice_and_bob(&mut cluster).await;
    // "<agent name> has joined the chat": the accept records bob's name.
    let joined = events(&cluster, &id).await.into_iter().rev().find_map(|e| match e {
        ConversationEvent::OfferAccepted(a) => Some(a),
        _ => None,
    });
    assert_eq!(joined.unwrap().agent_name, "Bob Jones");
    // B6.2: everyone can write.
    send(&cluster, &id, "bob", "Hi, Bob from billing").await.unwrap();
    send(&cluster, &id, "alice", "Bob will help").await.unwrap();

    // B6.4: only the owner ends the conference; it ends the chat for all.
    assert_eq!(end_conference(&cluster, &id, "bob").await.unwrap_err(), "not_owner");
    let ended = end_conference(&cluster, &id, "alice").await.unwrap();
    assert_eq!(ended.state, "ended");
    owes(&cluster, "alice", &id, 1).await;
    owes(&cluster, "bob", &id, 1).await;
    assert_eq!((slots(&cluster, "alice").await, slots(&cluster, "bob").await), (1, 1));
    // Each slot waits for its own agent's wrap-up.
    submit(&cluster, "bob", &id).await;
    slots_become(&cluster, "bob", 0).await;
    assert_eq!(slots(&cluster, "alice").await, 1);
    submit(&cluster, "alice", &id).await;
    slots_become(&cluster, "alice", 0).await;

    let log = events(&cluster, &id).await;
    let agents = log.iter().find_map(|e| match e {
        ConversationEvent::ConversationEnded(e) => Some(e.agent_ids.clone()),
        _ => None,
    });
    assert_eq!(agents.unwrap(), ["alice", "bob"]);
    assert_eq!(count(&history(&cluster, &id).await, "ParticipantLeft"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b6_1_conference_with_a_queue_is_routed_to_an_eligible_agent_of_that_queue() {
    let mut cluster = start(1).await;
    set_state(&cluster, "alice", PresenceState::Available).await;
    let id = active_with(&cluster, "alice", "+15551234567", "wamid.1").await;
    // carol has been idle longest but lacks the billing skill; bob has it.
    cluster.advance(Duration::from_secs(1)).await;
    set_state(&cluster, "carol", PresenceState::Available).await;
    cluster.advance(Duration::from_secs(1)).await;
    set_state(&cluster, "bob", PresenceState::Available).await;

    let requested = conference(&cluster, &id, "alice", To::Queue("billing")).await.unwrap();
    assert_eq!(requested.state, "conferenceRequested");
    let offer = offered_to(&cluster, &id, "bob").await;
    assert_eq!(offer.kind, OfferKind::Conference as i32);
    assert_eq!(offer.queue_id, "billing");
    let joined = accept(&cluster, &id, "bob").await;
    assert_eq!((joined.state.as_str(), joined.owner.as_str()), ("conference", "alice"));
    assert_eq!(joined.participants.len(), 2);
    assert_eq!(slots(&cluster, "carol").await, 0);

    let ended = end(&cluster, &id, "alice").await.unwrap();
    assert_eq!(ended.state, "ended");
    owes(&cluster, "alice", &id, 1).await;
    owes(&cluster, "bob", &id, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b6_3_conference_not_accepted_is_dropped_and_the_owner_keeps_the_chat() {
    let mut cluster = start(1).await;
    set_state(&cluster, "alice", PresenceState::Available).await;
    let id = active_with(&cluster, "alice", "+15551234567", "wamid.1").await;
    set_state(&cluster, "bob", PresenceState::Available).await;
    conference(&cluster, &id, "alice", To::Agent("bob")).await.unwrap();
    assert_eq!(slots(&cluster, "bob").await, 1);

    cluster.advance(Duration::from_secs(31)).await;
    eventually("bob in RONA with his slot back", || async {
        let b = agent(&cluster, "bob").await;
        (b.state == PresenceState::Rona as i32 && b.slots_used == 0).then_some(())
    })
    .await;
    let back = conversation(&cluster, &id).await;
    assert_eq!((back.state.as_str(), back.owner.as_str()), ("active", "alice"));
    assert!(back.offer.is_none());
    let h = history(&cluster, &id).await;
    assert_eq!(count(&h, "ConferenceDeclined"), 1);
    assert_eq!(count(&h, "ConversationQueued"), 1, "never re-queued");
    assert_eq!(count(&h, "ParticipantLeft"), 0);
    // The owner carries on; nobody owes anything yet.
    send(&cluster, &id, "alice", "Sorry, just me then").await.unwrap();
    assert!(pending(&cluster, "alice").await.is_empty());
    assert!(pending(&cluster, "bob").await.is_empty());
    assert_eq!(slots(&cluster, "alice").await, 1);
    // And may ask again, of someone else.
    set_state(&cluster, "carol", PresenceState::Available).await;
    let again = conference(&cluster, &id, "alice", To::Agent("carol")).await.unwrap();
    assert_eq!(again.state, "conferenceRequested");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b6_4_a_participant_who_leaves_owes_a_wrapup_and_the_chat_goes_on() {
    let mut cluster = start(1).await;
    let id = conference_of_alice_and_bob(&mut cluster).await;
    assert_eq!(leave(&cluster, &id, "alice").await.unwrap_err(), "owner_cannot_leave");
    assert_eq!(leave(&cluster, &id, "carol").await.unwrap_err(), "not_a_participant");

    let after = leave(&cluster, &id, "bob").await.unwrap();
    assert_eq!((after.state.as_str(), after.owner.as_str()), ("active", "alice"));
    owes(&cluster, "bob", &id, 1).await;
    assert!(pending(&cluster, "alice").await.is_empty());
    assert_eq!(slots(&cluster, "bob").await, 1, "held until bob's wrap-up");
    send(&cluster, &id, "alice", "Bob had to go").await.unwrap();
    assert_eq!(send(&cluster, &id, "bob", "bye").await.unwrap_err(), "not_a_participant");
    submit(&cluster, "bob", &id).await;
    slots_become(&cluster, "bob", 0).await;

    end(&cluster, &id, "alice").await.unwrap();
    owes(&cluster, "alice", &id, 1).await;
    assert!(pending(&cluster, "bob").await.is_empty(), "one wrap-up per leave (B7.1)");
    let log = events(&cluster, &id).await;
    let ended = log.iter().find_map(|e| match e {
        ConversationEvent::ConversationEnded(e) => Some(e.agent_ids.clone()),
        _ => None,
    });
    assert_eq!(ended.unwrap(), ["alice"]);
}

// ---- refusals ---------------------------------------------------------------

/// What a refusal must not change: the conversation's stream and the
/// presence of every agent.
async fn snapshot(cluster: &Cluster, id: &str) -> (usize, Vec<(u32, i64, i32)>) {
    let mut agents = Vec::new();
    for a in ["alice", "bob", "carol", "dave"] {
        let p = agent(cluster, a).await;
        agents.push((p.slots_used, p.version, p.state));
    }
    (history(cluster, id).await.len(), agents)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b5_5_b6_refused_transfers_and_conferences_change_nothing() {
    let mut cluster = start(1).await;
    set_state(&cluster, "alice", PresenceState::Available).await;
    let id = active_with(&cluster, "alice", "+15551234567", "wamid.1").await;
    // carol is Available but her only slot is taken by another offer.
    set_state(&cluster, "carol", PresenceState::Available).await;
    let other = customer_says(&cluster, "+15557654321", "wamid.2").await;
    offered_to(&cluster, &other, "carol").await;
    cluster.advance(Duration::from_secs(1)).await;
    set_state(&cluster, "bob", PresenceState::Available).await;
    // dave stays LoggedOut.

    let before = snapshot(&cluster, &id).await;
    for (to, code) in [
        (To::Agent("alice"), "cannot_target_self"),
        (To::Agent("dave"), "agent_not_available"),
        (To::Agent("carol"), "no_free_slot"),
        (To::Agent("nobody"), "unknown_agent"),
        (To::Queue("nope"), "unknown_queue"),
    ] {
        let result = transfer(&cluster, &id, "alice", to).await;
        assert_eq!(result.unwrap_err(), code, "transfer to {to:?}");
        let result = conference(&cluster, &id, "alice", to).await;
        assert_eq!(result.unwrap_err(), code, "conference with {to:?}");
    }
    // Not the owner: bob is in no conversation, carol only has an offer.
    assert_eq!(
        transfer(&cluster, &id, "bob", To::Queue("billing")).await.unwrap_err(),
        "not_a_participant"
    );
    assert_eq!(
        transfer(&cluster, &other, "carol", To::Queue("billing")).await.unwrap_err(),
        "not_a_participant"
    );
    assert_eq!(
        conference(&cluster, &id, "bob", To::Agent("carol")).await.unwrap_err(),
        "not_a_participant"
    );
    assert_eq!(
        end_conference(&cluster, &id, "alice").await.unwrap_err(),
        "wrong_state",
        "no conference to end"
    );
    let_routing_plan().await;
    assert_eq!(snapshot(&cluster, &id).await, before, "nothing changed");

    // In a conference: the participant is not the owner, the owner is in the wrong state.
    let requested = conference(&cluster, &id, "alice", To::Agent("bob")).await.unwrap();
    assert_eq!(requested.state, "conferenceRequested");
    let before = snapshot(&cluster, &id).await;
    assert_eq!(
        transfer(&cluster, &id, "alice", To::Queue("billing")).await.unwrap_err(),
        "wrong_state"
    );
    assert_eq!(
        conference(&cluster, &id, "alice", To::Queue("billing")).await.unwrap_err(),
        "wrong_state"
    );
    assert_eq!(snapshot(&cluster, &id).await, before, "nothing changed");
    accept(&cluster, &id, "bob").await;
    let before = snapshot(&cluster, &id).await;
    for (result, code) in [
        (transfer(&cluster, &id, "bob", To::Queue("billing")).await, "not_owner"),
        (transfer(&cluster, &id, "bob", To::Agent("dave")).await, "not_owner"),
        (conference(&cluster, &id, "bob", To::Queue("billing")).await, "not_owner"),
        (end_conference(&cluster, &id, "bob").await, "not_owner"),
        (end(&cluster, &id, "bob").await, "not_owner"),
        (transfer(&cluster, &id, "alice", To::Queue("billing")).await, "wrong_state"),
        (transfer(&cluster, &id, "alice", To::Agent("dave")).await, "wrong_state"),
    ] {
        assert_eq!(result.unwrap_err(), code);
    }
    assert_eq!(snapshot(&cluster, &id).await, before, "nothing changed");
    // An ended conversation takes none of it.
    end_conference(&cluster, &id, "alice").await.unwrap();
    assert_eq!(
        transfer(&cluster, &id, "alice", To::Queue("billing")).await.unwrap_err(),
        "conversation_ended"
    );
}

// ---- directories ------------------------------------------------------------

async fn queue_names(cluster: &Cluster, search: &str) -> Vec<String> {
    let list: v1::QueueList = cluster
        .call(
            Service::Routing,
            verbs::routing::LIST_QUEUES,
            &v1::ListQueues { search: search.into() },
        )
        .await;
    list.queues.into_iter().map(|q| q.name).collect()
}

async fn agent_names(cluster: &Cluster, available_only: bool, search: &str) -> Vec<String> {
    let list: v1::AgentList = cluster
        .call(
            Service::AgentPresence,
            verbs::presence::LIST,
            &v1::ListAgents { available_only, search: search.into() },
        )
        .await;
    let mut names: Vec<_> = list.agents.into_iter().map(|a| a.name).collect();
    names.sort();
    names
}

/// Polls a directory until it shows `expected` (it is a read model of the log).
async fn directory_shows<F, Fut>(what: &str, expected: &[&str], mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Vec<String>>,
{
    eventually(what, || {
        let fut = f();
        async move { (fut.await == expected).then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b5_1_directories_search_case_insensitively_and_follow_the_current_state() {
    let cluster = start(1).await;
    // Queues: every queue, filtered by a case-insensitive substring of the name.
    put_queue(&cluster, "vip", "VIP billing", 30, &[]).await;
    directory_shows("all queues", &["Billing Desk", "Support", "VIP billing"], || {
        queue_names(&cluster, "")
    })
    .await;
    assert_eq!(queue_names(&cluster, "BILL").await, ["Billing Desk", "VIP billing"]);
    assert_eq!(queue_names(&cluster, "port").await, ["Support"]);
    assert!(queue_names(&cluster, "zzz").await.is_empty());
    put_queue(&cluster, "escalations", "Billing escalations", 30, &[]).await;
    directory_shows("a new queue", &["Billing Desk", "Billing escalations", "VIP billing"], || {
        queue_names(&cluster, "billing")
    })
    .await;

    // Agents: all of them, or only those Available with a free slot.
    assert_eq!(agent_names(&cluster, false, "").await.len(), 4);
    assert!(agent_names(&cluster, true, "").await.is_empty(), "everyone is logged out");
    set_state(&cluster, "alice", PresenceState::Available).await;
    set_state(&cluster, "bob", PresenceState::Available).await;
    set_state(&cluster, "carol", PresenceState::Idle).await;
    directory_shows("available agents", &["Alice Smith", "Bob Jones"], || {
        agent_names(&cluster, true, "")
    })
    .await;
    assert_eq!(agent_names(&cluster, true, "SMI").await, ["Alice Smith"]);
    assert_eq!(agent_names(&cluster, false, "o").await, ["Bob Jones", "Carol White", "Dave Brown"]);
    assert!(agent_names(&cluster, true, "carol").await.is_empty());

    // An offer takes alice's only slot: she leaves the available directory.
    let id = customer_says(&cluster, "+15551234567", "wamid.1").await;
    let offer = eventually("an offer", || async { conversation(&cluster, &id).await.offer }).await;
    let (busy, free) = if offer.agent_id == "alice" {
        ("Alice Smith", "Bob Jones")
    } else {
        ("Bob Jones", "Alice Smith")
    };
    directory_shows("only the agent with a free slot", &[free], || agent_names(&cluster, true, ""))
        .await;
    assert!(agent_names(&cluster, false, "").await.contains(&busy.to_owned()));
    // Idle agents come back when they choose Available.
    set_state(&cluster, "carol", PresenceState::Available).await;
    directory_shows("carol available", &[free, "Carol White"], || agent_names(&cluster, true, ""))
        .await;
}

/// The waiting count in the queue directory follows transfers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b5_1_the_queue_directory_counts_a_conversation_transferred_into_a_queue() {
    let cluster = start(1).await;
    set_state(&cluster, "alice", PresenceState::Available).await;
    let id = active_with(&cluster, "alice", "+15551234567", "wamid.1").await;
    transfer(&cluster, &id, "alice", To::Queue("billing")).await.unwrap();
    eventually("billing counts one waiting", || async {
        let list: v1::QueueList = cluster
            .call(
                Service::Routing,
                verbs::routing::LIST_QUEUES,
                &v1::ListQueues { search: "billing".into() },
            )
            .await;
        (list.queues.len() == 1 && list.queues[0].waiting == 1).then_some(())
    })
    .await;
}
