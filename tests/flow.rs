//! B1–B7 end to end over NATS, every service its own process (real
//! `nats-server`, the embedded event store over HTTP), time moved by the test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use e2e::{Cluster, SERVICES, T0, drive::*, eventually};
use eventlog::EventStore;
use sb_proto::{
    ConversationEvent, Service,
    v1::{self, PresenceState},
    verbs,
};

const BUSINESS: &str = "15550001111";

async fn setup(cluster: &Cluster) {
    put_queue(cluster, "support", "Support", 30, &[]).await;
    put_entry_point(cluster, BUSINESS, "support").await;
    for (id, name) in [("alice", "Alice Smith"), ("bob", "Bob Jones")] {
        register(cluster, id, name, 1).await;
    }
    put_reason(cluster, "resolved", "Issue resolved").await;
}

async fn customer_says(
    cluster: &Cluster,
    phone: &str,
    wa_id: &str,
    text: &str,
) -> v1::CustomerMessageStored {
    receive(cluster, BUSINESS, phone, wa_id, text).await
}

async fn offered_to(cluster: &Cluster, conversation_id: &str) -> v1::LiveOffer {
    eventually("an offer", || async { conversation(cluster, conversation_id).await.offer }).await
}

/// The whole story, with `crash` called at each step so a variant can kill
/// and restart services in the middle.
async fn story(cluster: &mut Cluster, crash: &mut dyn FnMut(usize) -> Option<&'static str>) {
    setup(cluster).await;
    set_state(cluster, "alice", PresenceState::Available).await;
    cluster.advance(Duration::from_secs(1)).await;
    set_state(cluster, "bob", PresenceState::Available).await;
    maybe_crash(cluster, crash, 0).await;

    // B4.4: the first message starts a conversation in the entry queue.
    let first = customer_says(cluster, "+15551234567", "wamid.1", "Hello, my order is late").await;
    assert!(first.started && !first.duplicate);
    let id = first.conversation_id.clone();
    // B4.3: the same WhatsApp message again is stored once.
    assert!(
        customer_says(cluster, "+15551234567", "wamid.1", "Hello, my order is late")
            .await
            .duplicate
    );

    // B3.2: offered to the agent idle longest (alice became Available first).
    let offer = offered_to(cluster, &id).await;
    assert_eq!(offer.agent_id, "alice");
    assert_eq!(offer.queue_name, "Support");
    let summary = conversation(cluster, &id).await;
    assert_eq!(summary.state, "offered");
    assert_eq!(summary.customer.as_ref().unwrap().name, "Maria Lopez");
    assert_eq!(summary.source_number, BUSINESS);
    assert_eq!(agent(cluster, "alice").await.slots_used, 1, "B1.3: the offer holds a slot");
    maybe_crash(cluster, crash, 1).await;

    // B4.4: a message while offered is kept.
    customer_says(cluster, "+15551234567", "wamid.2", "Anyone there?").await;

    // B2.2: not accepted in time → RONA and offered to the next agent.
    cluster.advance(Duration::from_secs(31)).await;
    let rona = eventually("alice in RONA", || async {
        let a = agent(cluster, "alice").await;
        (a.state == PresenceState::Rona as i32 && a.slots_used == 0).then_some(a)
    })
    .await;
    assert_eq!(rona.slots_used, 0);
    let offer = eventually("re-offer to bob", || async {
        conversation(cluster, &id).await.offer.filter(|o| o.agent_id == "bob")
    })
    .await;
    // B2.4: alice's late accept is refused.
    let late = cluster
        .refused(
            Service::Conversation,
            verbs::conversation::ACCEPT,
            &v1::AcceptOffer {
                conversation_id: id.clone(),
                agent_id: "alice".into(),
                agent_name: "Alice Smith".into(),
            },
        )
        .await;
    assert_eq!(late, "offer_expired");
    maybe_crash(cluster, crash, 2).await;

    // B2.4, B2.5: bob accepts; the transcript has what arrived while waiting.
    let accepted: v1::ConversationSummary = cluster
        .call(
            Service::Conversation,
            verbs::conversation::ACCEPT,
            &v1::AcceptOffer {
                conversation_id: id.clone(),
                agent_id: "bob".into(),
                agent_name: "Bob Jones".into(),
            },
        )
        .await;
    assert_eq!((accepted.state.as_str(), accepted.owner.as_str()), ("active", "bob"));
    let ms = |t: &Option<sb_proto::Timestamp>| sb_proto::millis_from_timestamp(t.as_ref().unwrap());
    assert_eq!(
        ms(&offer.expires_at) - ms(&offer.offered_at),
        30_000,
        "B2.1: the queue's offer timeout"
    );
    assert_eq!(count(&history(cluster, &id).await, "CustomerMessageReceived"), 2);

    // B4.2: too long is refused and nothing is stored; a normal one is pending.
    let too_long = cluster
        .refused(
            Service::Conversation,
            verbs::conversation::SEND,
            &v1::SendAgentMessage {
                conversation_id: id.clone(),
                agent_id: "bob".into(),
                agent_name: "Bob Jones".into(),
                text: "x".repeat(4097),
                message_id: String::new(),
            },
        )
        .await;
    assert_eq!(too_long, "message_too_long");
    let sent: v1::AgentMessageStored = cluster
        .call(
            Service::Conversation,
            verbs::conversation::SEND,
            &v1::SendAgentMessage {
                conversation_id: id.clone(),
                agent_id: "bob".into(),
                agent_name: "Bob Jones".into(),
                text: "Hello Maria, let me check.".into(),
                message_id: String::new(),
            },
        )
        .await;
    assert!(!sent.message_id.is_empty());
    maybe_crash(cluster, crash, 3).await;

    // B7.1: End owes bob one wrap-up; his slot stays taken until it is submitted.
    let _: v1::ConversationSummary = cluster
        .call(
            Service::Conversation,
            verbs::conversation::END,
            &v1::EndConversation { conversation_id: id.clone(), by: agent_actor("bob") },
        )
        .await;
    let owed = eventually("bob owes a wrap-up", || async {
        let p = pending(cluster, "bob").await;
        (!p.is_empty()).then_some(p)
    })
    .await;
    assert_eq!(owed.len(), 1);
    assert_eq!(owed[0].conversation_id, id);
    assert_eq!(agent(cluster, "bob").await.slots_used, 1);
    maybe_crash(cluster, crash, 4).await;

    // A second customer waits: bob has no free slot, alice is in RONA (B2.3).
    let second = customer_says(cluster, "+15557654321", "wamid.9", "Hi!").await;
    assert_ne!(second.conversation_id, id);

    // B7.3, B7.5: the submission frees the slot; the waiting customer goes to bob.
    let unknown = cluster
        .refused(
            Service::WrapUp,
            verbs::wrapup::SUBMIT,
            &v1::SubmitWrapup {
                agent_id: "bob".into(),
                conversation_id: id.clone(),
                reason_code: "nope".into(),
                note: String::new(),
            },
        )
        .await;
    assert_eq!(unknown, "unknown_reason");
    let left: v1::PendingWrapupList = cluster
        .call(
            Service::WrapUp,
            verbs::wrapup::SUBMIT,
            &v1::SubmitWrapup {
                agent_id: "bob".into(),
                conversation_id: id.clone(),
                reason_code: "resolved".into(),
                note: "refund sent".into(),
            },
        )
        .await;
    assert!(left.wrapups.is_empty());
    let again = cluster
        .refused(
            Service::WrapUp,
            verbs::wrapup::SUBMIT,
            &v1::SubmitWrapup {
                agent_id: "bob".into(),
                conversation_id: id.clone(),
                reason_code: "resolved".into(),
                note: String::new(),
            },
        )
        .await;
    assert_eq!(again, "wrapup_already_submitted");
    maybe_crash(cluster, crash, 5).await;
    let next = offered_to(cluster, &second.conversation_id).await;
    assert_eq!(next.agent_id, "bob", "the freed slot takes the next offer");
    assert_eq!(
        agent(cluster, "alice").await.state,
        PresenceState::Rona as i32,
        "B2.3: RONA is left only by choice"
    );

    // Nothing lost, nothing doubled.
    let h = history(cluster, &id).await;
    assert_eq!(count(&h, "ConversationStarted"), 1);
    assert_eq!(count(&h, "CustomerMessageReceived"), 2);
    assert_eq!(count(&h, "OfferMade"), 2);
    assert_eq!(count(&h, "OfferWithdrawn"), 1);
    assert_eq!(count(&h, "OfferAccepted"), 1);
    assert_eq!(count(&h, "AgentMessageAdded"), 1);
    assert_eq!(count(&h, "ConversationEnded"), 1);
    let wrapups = cluster.store().load_stream("wrapup-bob").await.unwrap();
    let types: Vec<_> = wrapups.events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["WrapupOwed", "WrapupSubmitted"]);
    let bob = agent(cluster, "bob").await;
    assert_eq!(bob.slots_used, 1, "only the new offer");
    let ended = ConversationEvent::from_json("ConversationEnded", &{
        let loaded = cluster.store().load_stream(&format!("conversation-{id}")).await.unwrap();
        loaded.events.last().unwrap().data.clone()
    })
    .unwrap();
    assert!(matches!(ended, ConversationEvent::ConversationEnded(e) if e.agent_ids == ["bob"]));
}

async fn maybe_crash(
    cluster: &mut Cluster,
    crash: &mut dyn FnMut(usize) -> Option<&'static str>,
    step: usize,
) {
    if let Some(service) = crash(step) {
        cluster.kill(service);
        cluster.start_service(service).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b1_b7_customer_message_to_wrapup_and_next_offer() {
    let mut cluster = Cluster::start().await;
    cluster.start_all().await;
    story(&mut cluster, &mut |_| None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b1_b7_the_story_survives_kill_9_of_each_service_in_the_middle() {
    let mut cluster = Cluster::start().await;
    cluster.start_all().await;
    // Step n kills and restarts one service; each service dies at least once.
    let plan =
        ["routing", "agent-presence", "conversation", "wrap-up", "routing", "agent-presence"];
    story(&mut cluster, &mut |step| plan.get(step).copied()).await;
    assert_eq!(SERVICES.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b7_4_a_pending_auto_wrapup_fires_after_a_restart() {
    let mut cluster = Cluster::start().await;
    cluster.env.push(("SWITCHBOARD_AUTO_WRAPUP_SECS".into(), "60".into()));
    cluster.start_all().await;
    setup(&cluster).await;
    set_state(&cluster, "alice", PresenceState::Available).await;
    let first = customer_says(&cluster, "+15551234567", "wamid.1", "Hello").await;
    offered_to(&cluster, &first.conversation_id).await;
    let _: v1::ConversationSummary = cluster
        .call(
            Service::Conversation,
            verbs::conversation::ACCEPT,
            &v1::AcceptOffer {
                conversation_id: first.conversation_id.clone(),
                agent_id: "alice".into(),
                agent_name: "Alice Smith".into(),
            },
        )
        .await;
    let _: v1::ConversationSummary = cluster
        .call(
            Service::Conversation,
            verbs::conversation::END,
            &v1::EndConversation {
                conversation_id: first.conversation_id.clone(),
                by: agent_actor("alice"),
            },
        )
        .await;
    let owed = eventually("a wrap-up owed", || async {
        let p = pending(&cluster, "alice").await;
        (!p.is_empty()).then_some(p)
    })
    .await;
    let auto_at = sb_proto::millis_from_timestamp(owed[0].auto_at.as_ref().unwrap());
    assert_eq!(auto_at, cluster.now() + 60_000);

    // The wrap-up service dies before the deadline and comes back after it.
    cluster.kill("wrap-up");
    cluster.advance(Duration::from_secs(61)).await;
    cluster.start_service("wrap-up").await;
    eventually("the auto wrap-up", || async {
        pending(&cluster, "alice").await.is_empty().then_some(())
    })
    .await;
    let log = cluster.store().load_stream("wrapup-alice").await.unwrap();
    let submitted = log.events.iter().find(|e| e.event_type == "WrapupSubmitted").unwrap();
    let e: v1::WrapupSubmitted = serde_json_from(&submitted.data);
    assert!(e.automatic);
    assert_eq!(e.reason_code, "auto");
    // B7.5: and the slot is free again.
    eventually("alice's slot back", || async {
        (agent(&cluster, "alice").await.slots_used == 0).then_some(())
    })
    .await;
    assert!(T0 < cluster.now());
}

fn serde_json_from(data: &[u8]) -> v1::WrapupSubmitted {
    match sb_proto::WrapUpEvent::from_json("WrapupSubmitted", data).unwrap() {
        sb_proto::WrapUpEvent::WrapupSubmitted(e) => e,
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b1_5_a_supervisor_reassigns_a_conversation_and_the_old_owner_owes_a_wrapup() {
    let mut cluster = Cluster::start().await;
    cluster.start_all().await;
    setup(&cluster).await;
    set_state(&cluster, "alice", PresenceState::Available).await;
    let first = customer_says(&cluster, "+15551234567", "wamid.1", "Hello").await;
    let id = first.conversation_id;
    offered_to(&cluster, &id).await;
    let _: v1::ConversationSummary = cluster
        .call(
            Service::Conversation,
            verbs::conversation::ACCEPT,
            &v1::AcceptOffer {
                conversation_id: id.clone(),
                agent_id: "alice".into(),
                agent_name: "Alice Smith".into(),
            },
        )
        .await;
    // Only a supervisor may; bob must be Available with a free slot.
    let by_agent = cluster
        .refused(
            Service::Conversation,
            verbs::conversation::REASSIGN,
            &v1::ReassignConversation {
                conversation_id: id.clone(),
                to_agent_id: "bob".into(),
                to_queue_id: String::new(),
                by: agent_actor("alice"),
            },
        )
        .await;
    assert_eq!(by_agent, "supervisor_only");
    let reassign = v1::ReassignConversation {
        conversation_id: id.clone(),
        to_agent_id: "bob".into(),
        to_queue_id: String::new(),
        by: supervisor(),
    };
    assert_eq!(
        cluster.refused(Service::Conversation, verbs::conversation::REASSIGN, &reassign).await,
        "agent_not_available"
    );
    set_state(&cluster, "bob", PresenceState::Available).await;
    let _: v1::ConversationSummary =
        cluster.call(Service::Conversation, verbs::conversation::REASSIGN, &reassign).await;
    let offer = conversation(&cluster, &id).await.offer.unwrap();
    assert_eq!((offer.agent_id.as_str(), offer.kind), ("bob", v1::OfferKind::Transfer as i32));
    // Alice owes a wrap-up for the leave and keeps its slot until she submits it (B1.3, B7.1).
    eventually("alice owes a wrap-up", || async {
        (!pending(&cluster, "alice").await.is_empty()).then_some(())
    })
    .await;
    assert_eq!(agent(&cluster, "alice").await.slots_used, 1);
    let accepted: v1::ConversationSummary = cluster
        .call(
            Service::Conversation,
            verbs::conversation::ACCEPT,
            &v1::AcceptOffer {
                conversation_id: id.clone(),
                agent_id: "bob".into(),
                agent_name: "Bob Jones".into(),
            },
        )
        .await;
    assert_eq!(accepted.owner, "bob");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b1_b7_presence_and_wrapup_state_is_the_same_after_kill_9_and_restart() {
    let mut cluster = Cluster::start().await;
    cluster.start_all().await;
    setup(&cluster).await;
    put_reason(&cluster, "callback", "Call back later").await;
    set_state(&cluster, "alice", PresenceState::Available).await;
    let first = customer_says(&cluster, "+15551234567", "wamid.1", "Hello").await;
    offered_to(&cluster, &first.conversation_id).await;
    accept(&cluster, &first.conversation_id, "alice", "Alice Smith").await;
    let _: v1::ConversationSummary = cluster
        .call(
            Service::Conversation,
            verbs::conversation::END,
            &v1::EndConversation {
                conversation_id: first.conversation_id.clone(),
                by: agent_actor("alice"),
            },
        )
        .await;
    eventually("a wrap-up owed", || async {
        (!pending(&cluster, "alice").await.is_empty()).then_some(())
    })
    .await;
    let idle: v1::AgentPresence = cluster
        .call(
            Service::AgentPresence,
            verbs::presence::CHANGE_STATE,
            &v1::ChangeAgentState {
                agent_id: "bob".into(),
                state: PresenceState::Idle as i32,
                idle_reason: "lunch".into(),
                by: agent_actor("bob"),
            },
        )
        .await;
    assert_eq!(idle.idle_reason, "lunch");

    let before = snapshot(&cluster).await;
    assert_eq!(before.0.slots_used, 1, "the wrap-up holds alice's slot");
    cluster.kill("agent-presence");
    cluster.kill("wrap-up");
    cluster.start_service("agent-presence").await;
    cluster.start_service("wrap-up").await;
    let after = snapshot(&cluster).await;
    assert_eq!(after, before, "agents, slots, pending wrap-ups and reasons rebuilt from the log");
}

/// What presence and wrap-up say about the agents, their slots, what they owe and the reasons.
async fn snapshot(
    cluster: &Cluster,
) -> (v1::AgentPresence, v1::AgentPresence, Vec<v1::PendingWrapup>, v1::WrapupReasonList) {
    let reasons: v1::WrapupReasonList = cluster
        .call(
            Service::WrapUp,
            verbs::wrapup::LIST_REASONS,
            &v1::ListWrapupReasons { search: String::new() },
        )
        .await;
    (
        agent(cluster, "alice").await,
        agent(cluster, "bob").await,
        pending(cluster, "alice").await,
        reasons,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b6_3_a_conference_asked_of_a_queue_with_nobody_eligible_is_dropped_after_its_timeout() {
    let mut cluster = Cluster::start().await;
    cluster.start_all().await;
    setup(&cluster).await;
    put_queue(&cluster, "experts", "Experts", 20, &["expert"]).await;
    set_state(&cluster, "alice", PresenceState::Available).await;
    set_state(&cluster, "bob", PresenceState::Available).await;
    let first = customer_says(&cluster, "+15551234567", "wamid.1", "Hello").await;
    let id = first.conversation_id;
    let offer = offered_to(&cluster, &id).await;
    let owner = offer.agent_id.clone();
    accept(&cluster, &id, &owner, "Owner").await;
    let _: v1::ConversationSummary = cluster
        .call(
            Service::Conversation,
            verbs::conversation::CONFERENCE,
            &v1::RequestConference {
                conversation_id: id.clone(),
                agent_id: owner.clone(),
                to_queue_id: "experts".into(),
                to_agent_id: String::new(),
            },
        )
        .await;
    assert_eq!(conversation(&cluster, &id).await.state, "conferenceRequested");
    // Nobody has the skill: after the queue's offer timeout the request is dropped.
    cluster.advance(Duration::from_secs(19)).await;
    assert_eq!(conversation(&cluster, &id).await.state, "conferenceRequested");
    cluster.advance(Duration::from_secs(2)).await;
    let back = eventually("the request dropped", || async {
        let c = conversation(&cluster, &id).await;
        (c.state == "active").then_some(c)
    })
    .await;
    assert_eq!(back.owner, owner, "the owner keeps the chat");
    assert_eq!(count(&history(&cluster, &id).await, "ConferenceDeclined"), 1);
}
