//! B3.3 with two routing replicas as separate processes: many conversations
//! arrive at once for several agents; no agent is ever offered beyond its free
//! slots and no conversation is ever offered to two agents at once — checked
//! on the event log itself, event by event.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use e2e::{Cluster, drive::*, eventually};
use sb_proto::{
    AgentPresenceEvent, ConversationEvent, Service,
    v1::{self, PresenceState},
    verbs,
};

const AGENTS: [&str; 4] = ["a1", "a2", "a3", "a4"];
const CAPACITY: u32 = 2;
const CUSTOMERS: usize = 12;

/// Walks the log and checks B3.3 at every event; returns live offers (offer id → (conversation, agent)).
async fn check_invariants(cluster: &Cluster) -> BTreeMap<String, (String, String)> {
    for a in AGENTS {
        let mut held: i64 = 0;
        for e in cluster.events(&format!("agent-{a}")).await {
            match AgentPresenceEvent::from_json(&e.event_type, &e.data).unwrap() {
                AgentPresenceEvent::SlotReserved(_) => held += 1,
                AgentPresenceEvent::SlotReleased(_) => held -= 1,
                _ => {}
            }
            assert!(
                (0..=i64::from(CAPACITY)).contains(&held),
                "{a} holds {held} slots at event {}",
                e.event_number
            );
        }
    }
    let mut live: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut per_conversation: BTreeMap<String, u32> = BTreeMap::new();
    for e in cluster.events("conversation-").await {
        match ConversationEvent::from_json(&e.event_type, &e.data).unwrap() {
            ConversationEvent::OfferMade(o) => {
                let n = per_conversation.entry(o.conversation_id.clone()).or_default();
                *n += 1;
                assert_eq!(
                    *n, 1,
                    "conversation {} offered to two agents at once",
                    o.conversation_id
                );
                live.insert(o.offer_id, (o.conversation_id, o.agent_id));
            }
            ConversationEvent::OfferAccepted(o) => {
                *per_conversation.get_mut(&o.conversation_id).unwrap() -= 1;
                live.remove(&o.offer_id);
            }
            ConversationEvent::OfferWithdrawn(o) => {
                *per_conversation.get_mut(&o.conversation_id).unwrap() -= 1;
                live.remove(&o.offer_id);
            }
            _ => {}
        }
    }
    live
}

async fn slots(cluster: &Cluster) -> u32 {
    let mut total = 0;
    for a in AGENTS {
        let p: v1::AgentPresence = cluster
            .call(
                Service::AgentPresence,
                verbs::presence::GET,
                &v1::GetAgent { agent_id: a.into() },
            )
            .await;
        assert!(p.slots_used <= p.capacity, "{a}: {} of {}", p.slots_used, p.capacity);
        total += p.slots_used;
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b3_3_two_routing_replicas_never_overbook_an_agent_nor_offer_a_conversation_twice() {
    let mut cluster = Cluster::start().await;
    for s in ["agent-presence", "wrap-up", "conversation"] {
        cluster.start_service(s).await;
    }
    cluster.start_replica("routing-1", "routing").await;
    cluster.start_replica("routing-2", "routing").await;

    put_reason(&cluster, "done", "Done").await;
    for a in AGENTS {
        register(&cluster, a, &format!("Agent {a}"), CAPACITY).await;
        set_state(&cluster, a, PresenceState::Available).await;
    }

    // Twelve customers at once, into the default queue (created on first use, B3.4).
    let arrivals = (0..CUSTOMERS).map(|i| {
        let cluster = &cluster;
        async move {
            let _: v1::CustomerMessageStored = cluster
                .call(
                    Service::Conversation,
                    verbs::conversation::RECEIVE,
                    &v1::ReceiveCustomerMessage {
                        source_number: "15550009999".into(),
                        phone_number_id: "pn".into(),
                        customer: Some(v1::Customer {
                            name: format!("Customer {i}"),
                            phone: format!("+1555000{i:04}"),
                        }),
                        whatsapp_message_id: format!("wamid.{i}"),
                        r#type: v1::MessageType::Text as i32,
                        text: "hi".into(),
                        sent_at: Some(sb_proto::timestamp_from_millis(cluster.now())),
                        ..Default::default()
                    },
                )
                .await;
        }
    });
    futures_util::future::join_all(arrivals).await;

    // Every slot gets an offer, and no more.
    let capacity = CAPACITY * AGENTS.len() as u32;
    eventually("all slots offered", || async { (slots(&cluster).await == capacity).then_some(()) })
        .await;
    let live = check_invariants(&cluster).await;
    assert_eq!(live.len(), capacity as usize);

    // Each agent takes, ends and wraps up its conversations; the rest are offered next.
    for (conversation_id, agent_id) in live.values() {
        let _: v1::ConversationSummary = cluster
            .call(
                Service::Conversation,
                verbs::conversation::ACCEPT,
                &v1::AcceptOffer {
                    conversation_id: conversation_id.clone(),
                    agent_id: agent_id.clone(),
                    agent_name: format!("Agent {agent_id}"),
                },
            )
            .await;
        let _: v1::ConversationSummary = cluster
            .call(
                Service::Conversation,
                verbs::conversation::END,
                &v1::EndConversation {
                    conversation_id: conversation_id.clone(),
                    by: agent_actor(agent_id),
                },
            )
            .await;
    }
    for (conversation_id, agent_id) in live.values() {
        eventually("the wrap-up owed", || async {
            let p: v1::PendingWrapupList = cluster
                .call(
                    Service::WrapUp,
                    verbs::wrapup::PENDING,
                    &v1::ListPendingWrapups { agent_id: agent_id.clone() },
                )
                .await;
            p.wrapups.iter().any(|w| &w.conversation_id == conversation_id).then_some(())
        })
        .await;
        let _: v1::PendingWrapupList = cluster
            .call(
                Service::WrapUp,
                verbs::wrapup::SUBMIT,
                &v1::SubmitWrapup {
                    agent_id: agent_id.clone(),
                    conversation_id: conversation_id.clone(),
                    reason_code: "done".into(),
                    note: String::new(),
                },
            )
            .await;
    }
    let remaining = CUSTOMERS - capacity as usize;
    eventually("the rest offered", || async {
        let live = check_invariants(&cluster).await;
        (live.len() == remaining).then_some(())
    })
    .await;
    let live = check_invariants(&cluster).await;
    let mut per_agent: BTreeMap<&str, u32> = BTreeMap::new();
    for (_, a) in live.values() {
        *per_agent.entry(a.as_str()).or_default() += 1;
    }
    assert!(per_agent.values().all(|n| *n <= CAPACITY), "{per_agent:?}");
}
