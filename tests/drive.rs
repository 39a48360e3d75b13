//! Driving the services as a supervisor, an agent or WhatsApp would: one
//! command each, over NATS, panicking with the refusal if one is refused.

use eventlog::EventStore;
use sb_proto::{
    Service,
    v1::{self, ActorKind, PresenceState},
    verbs,
};

use crate::Cluster;

pub fn supervisor() -> Option<v1::Actor> {
    Some(v1::Actor { kind: ActorKind::Supervisor as i32, id: "sup".into() })
}

pub fn agent_actor(id: &str) -> Option<v1::Actor> {
    Some(v1::Actor { kind: ActorKind::Agent as i32, id: id.into() })
}

pub async fn put_queue(
    cluster: &Cluster,
    id: &str,
    name: &str,
    offer_timeout_secs: u32,
    skills: &[&str],
) {
    let _: v1::Queue = cluster
        .call(
            Service::Routing,
            verbs::routing::PUT_QUEUE,
            &v1::PutQueue {
                queue_id: id.into(),
                name: name.into(),
                offer_timeout_secs,
                skills: skills.iter().map(|s| s.to_string()).collect(),
                by: supervisor(),
                ..Default::default()
            },
        )
        .await;
}

pub async fn put_entry_point(cluster: &Cluster, business_number: &str, queue_id: &str) {
    let _: v1::EntryPoint = cluster
        .call(
            Service::Routing,
            verbs::routing::PUT_ENTRY_POINT,
            &v1::PutEntryPoint {
                business_number: business_number.into(),
                queue_id: queue_id.into(),
                by: supervisor(),
            },
        )
        .await;
}

pub async fn register(cluster: &Cluster, id: &str, name: &str, capacity: u32) {
    let _: v1::AgentPresence = cluster
        .call(
            Service::AgentPresence,
            verbs::presence::REGISTER,
            &v1::RegisterAgent {
                agent_id: id.into(),
                name: name.into(),
                capacity,
                by: supervisor(),
                ..Default::default()
            },
        )
        .await;
}

pub async fn put_reason(cluster: &Cluster, code: &str, label: &str) {
    let _: v1::WrapupReason = cluster
        .call(
            Service::WrapUp,
            verbs::wrapup::PUT_REASON,
            &v1::PutWrapupReason { code: code.into(), label: label.into(), by: supervisor() },
        )
        .await;
}

/// The agent chooses a state (B1.1).
pub async fn set_state(cluster: &Cluster, agent: &str, state: PresenceState) -> v1::AgentPresence {
    cluster
        .call(
            Service::AgentPresence,
            verbs::presence::CHANGE_STATE,
            &v1::ChangeAgentState {
                agent_id: agent.into(),
                state: state as i32,
                idle_reason: String::new(),
                by: agent_actor(agent),
            },
        )
        .await
}

/// A customer text as the WhatsApp edge hands it on, sent now (by the cluster's clock).
pub async fn receive(
    cluster: &Cluster,
    business_number: &str,
    phone: &str,
    wa_id: &str,
    text: &str,
) -> v1::CustomerMessageStored {
    cluster
        .call(
            Service::Conversation,
            verbs::conversation::RECEIVE,
            &v1::ReceiveCustomerMessage {
                source_number: business_number.into(),
                phone_number_id: "pn-1".into(),
                customer: Some(v1::Customer { name: "Maria Lopez".into(), phone: phone.into() }),
                whatsapp_message_id: wa_id.into(),
                r#type: v1::MessageType::Text as i32,
                text: text.into(),
                sent_at: Some(sb_proto::timestamp_from_millis(cluster.now())),
                ..Default::default()
            },
        )
        .await
}

pub async fn conversation(cluster: &Cluster, id: &str) -> v1::ConversationSummary {
    cluster
        .call(
            Service::Conversation,
            verbs::conversation::GET,
            &v1::GetConversation { conversation_id: id.into() },
        )
        .await
}

pub async fn agent(cluster: &Cluster, id: &str) -> v1::AgentPresence {
    cluster
        .call(Service::AgentPresence, verbs::presence::GET, &v1::GetAgent { agent_id: id.into() })
        .await
}

pub async fn accept(
    cluster: &Cluster,
    conversation_id: &str,
    agent: &str,
    name: &str,
) -> v1::ConversationSummary {
    cluster
        .call(
            Service::Conversation,
            verbs::conversation::ACCEPT,
            &v1::AcceptOffer {
                conversation_id: conversation_id.into(),
                agent_id: agent.into(),
                agent_name: name.into(),
            },
        )
        .await
}

/// What `agent` owes, oldest first.
pub async fn pending(cluster: &Cluster, agent: &str) -> Vec<v1::PendingWrapup> {
    let list: v1::PendingWrapupList = cluster
        .call(
            Service::WrapUp,
            verbs::wrapup::PENDING,
            &v1::ListPendingWrapups { agent_id: agent.into() },
        )
        .await;
    list.wrapups
}

/// Event types of a conversation's stream, in order.
pub async fn history(cluster: &Cluster, conversation_id: &str) -> Vec<String> {
    let loaded = cluster
        .store()
        .load_stream(&format!("conversation-{conversation_id}"))
        .await
        .expect("the conversation's stream");
    loaded.events.iter().map(|e| e.event_type.clone()).collect()
}

pub fn count(history: &[String], event_type: &str) -> usize {
    history.iter().filter(|t| *t == event_type).count()
}
