//! The WhatsApp edge wired end to end: signed Cloud API webhooks into the real
//! `switchboard serve whatsapp` process, agent messages out through the
//! sandbox Graph API, statuses back — with every service its own process on a
//! real nats-server and the embedded event store.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use e2e::{Cluster, T0, drive::*, eventually};
use eventlog::EventStore;
use sb_proto::{
    ConversationEvent, Service,
    v1::{self, DeliveryStatus, PresenceState},
    verbs,
};
use whatsapp::{
    Secret,
    sandbox::{DEFAULT_SANDBOX_ACCESS_TOKEN, FailNext, Sandbox, SandboxConfig},
    simulate::{self, BusinessNumber, CustomerText},
};

const SECRET: &str = "e2e-app-secret";
const BUSINESS: &str = "15550001111";

struct Edge {
    cluster: Cluster,
    webhook: String,
    sandbox: whatsapp::sandbox::SandboxHandle,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start() -> Edge {
    let mut cluster = Cluster::start().await;
    let port = testkit::free_port();
    let webhook = format!("http://127.0.0.1:{port}/webhooks/whatsapp");
    let mut config =
        SandboxConfig::new("127.0.0.1:0".parse().unwrap(), DEFAULT_SANDBOX_ACCESS_TOKEN, SECRET);
    config.webhook_url = Some(webhook.clone());
    let sandbox = Sandbox::bind(config).await.unwrap();
    let handle = sandbox.handle();
    let graph = sandbox.base_url();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(sandbox.run(async move {
        let _ = stopped.await;
    }));
    for (k, v) in [
        ("SWITCHBOARD_WHATSAPP_APP_SECRET", SECRET.to_owned()),
        ("SWITCHBOARD_WHATSAPP_VERIFY_TOKEN", "e2e-verify".to_owned()),
        ("SWITCHBOARD_WHATSAPP_GRAPH_URL", graph),
        ("SWITCHBOARD_WHATSAPP_LISTEN", format!("127.0.0.1:{port}")),
    ] {
        cluster.env.push((k.into(), v));
    }
    cluster.start_all().await;
    cluster.start_service("whatsapp").await;
    put_queue(&cluster, "support", "Support", 30, &[]).await;
    put_entry_point(&cluster, BUSINESS, "support").await;
    register(&cluster, "alice", "Alice Smith", 3).await;
    set_state(&cluster, "alice", PresenceState::Available).await;
    Edge { cluster, webhook, sandbox: handle, _stop: stop }
}

fn customer(wamid: &str, text: &str) -> CustomerText {
    CustomerText {
        name: "Maria Lopez".into(),
        phone: "15551234567".into(),
        to: BusinessNumber {
            phone_number_id: "pn-1".into(),
            display_phone_number: BUSINESS.into(),
        },
        text: text.into(),
        whatsapp_message_id: wamid.into(),
        timestamp: T0 / 1000,
        reply_to_whatsapp_id: None,
    }
}

async fn conversation_events(cluster: &Cluster) -> Vec<ConversationEvent> {
    let store = cluster.store();
    let mut out = Vec::new();
    let mut position = eventlog::AllPosition::START;
    loop {
        let page = store
            .read_all_forward(
                position,
                1000,
                &eventlog::AllFilter::StreamPrefixes(vec!["conversation-".into()]),
                None,
            )
            .await
            .unwrap();
        for e in &page.events {
            out.push(ConversationEvent::from_json(&e.event_type, &e.data).unwrap());
        }
        if page.head_of_stream || page.events.is_empty() {
            return out;
        }
        position = page.next_position;
    }
}

/// The one conversation the tests create.
async fn the_conversation(cluster: &Cluster) -> String {
    eventually("a conversation", || async {
        conversation_events(cluster).await.into_iter().find_map(|e| match e {
            ConversationEvent::ConversationStarted(s) => Some(s.conversation_id),
            _ => None,
        })
    })
    .await
}

async fn accept_and_send(edge: &Edge, id: &str, text: &str) -> String {
    let summary: v1::ConversationSummary = edge
        .cluster
        .call(
            Service::Conversation,
            verbs::conversation::GET,
            &v1::GetConversation { conversation_id: id.into() },
        )
        .await;
    if summary.owner.is_empty() {
        eventually("the offer", || async {
            let s: v1::ConversationSummary = edge
                .cluster
                .call(
                    Service::Conversation,
                    verbs::conversation::GET,
                    &v1::GetConversation { conversation_id: id.into() },
                )
                .await;
            s.offer
        })
        .await;
        let _: v1::ConversationSummary = edge
            .cluster
            .call(
                Service::Conversation,
                verbs::conversation::ACCEPT,
                &v1::AcceptOffer {
                    conversation_id: id.into(),
                    agent_id: "alice".into(),
                    agent_name: "Alice Smith".into(),
                },
            )
            .await;
    }
    let sent: v1::AgentMessageStored = edge
        .cluster
        .call(
            Service::Conversation,
            verbs::conversation::SEND,
            &v1::SendAgentMessage {
                conversation_id: id.into(),
                agent_id: "alice".into(),
                agent_name: "Alice Smith".into(),
                text: text.into(),
                message_id: String::new(),
            },
        )
        .await;
    sent.message_id
}

async fn statuses_of(cluster: &Cluster, message_id: &str) -> Vec<(i32, i64)> {
    conversation_events(cluster)
        .await
        .into_iter()
        .filter_map(|e| match e {
            ConversationEvent::MessageStatusChanged(s) if s.message_id == message_id => {
                Some((s.status, s.failure_code))
            }
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b4_inbound_webhook_to_conversation_and_agent_message_out_with_statuses() {
    let edge = start().await;
    let secret = Secret::new(SECRET);

    // B8.2: a payload signed with the wrong secret is refused and nothing is stored.
    let wrong = simulate::customer_text(
        &edge.webhook,
        &Secret::new("not-the-secret"),
        &customer("wamid.X", "hi"),
    )
    .await;
    assert!(wrong.is_err());

    // B4.4, B4.3: a message starts a conversation; the same id again is stored once.
    simulate::customer_text(
        &edge.webhook,
        &secret,
        &customer("wamid.A1", "Hello, my order is late"),
    )
    .await
    .unwrap();
    simulate::customer_text(
        &edge.webhook,
        &secret,
        &customer("wamid.A1", "Hello, my order is late"),
    )
    .await
    .unwrap();
    let id = the_conversation(&edge.cluster).await;
    let received: Vec<_> = conversation_events(&edge.cluster)
        .await
        .into_iter()
        .filter_map(|e| match e {
            ConversationEvent::CustomerMessageReceived(m) => Some(m),
            _ => None,
        })
        .collect();
    assert_eq!(received.len(), 1, "stored once");
    assert_eq!(received[0].customer.as_ref().unwrap().phone, "+15551234567");
    assert_eq!(received[0].customer.as_ref().unwrap().name, "Maria Lopez");
    assert!(!conversation_events(&edge.cluster).await.iter().any(|e| matches!(e, ConversationEvent::CustomerMessageReceived(m) if m.whatsapp_message_id == "wamid.X")));

    // B4.1: an agent message goes out through the Graph API, statuses come back in order.
    let message_id = accept_and_send(&edge, &id, "Hello Maria").await;
    let sent = eventually("the send in the outbox", || async {
        edge.sandbox.outbox().into_iter().find(|m| m.text.as_deref() == Some("Hello Maria"))
    })
    .await;
    assert_eq!(sent.to, "15551234567", "bare digits towards WhatsApp");
    assert_eq!(sent.phone_number_id, "pn-1", "sent from the number the customer wrote to");
    let statuses = eventually("sent, delivered, read", || async {
        let s = statuses_of(&edge.cluster, &message_id).await;
        (s.len() >= 3).then_some(s)
    })
    .await;
    let order: Vec<i32> = statuses.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        order,
        [
            DeliveryStatus::Sent as i32,
            DeliveryStatus::Delivered as i32,
            DeliveryStatus::Read as i32
        ]
    );

    // A permanent error (131047, outside the window on WhatsApp's side) is recorded, not retried.
    edge.sandbox.fail_next(FailNext { code: 131047, http_status: None, asynchronous: false });
    let failed_id = accept_and_send(&edge, &id, "Are you still there?").await;
    let failed = eventually("the failure recorded", || async {
        let s = statuses_of(&edge.cluster, &failed_id).await;
        (!s.is_empty()).then_some(s)
    })
    .await;
    assert_eq!(failed[0], (DeliveryStatus::Failed as i32, 131047));

    // Throttling (130429) is retried with backoff and then goes out.
    edge.sandbox.fail_next(FailNext { code: 130429, http_status: None, asynchronous: false });
    let retried = accept_and_send(&edge, &id, "One more thing").await;
    let s = eventually("sent after a retry", || async {
        let s = statuses_of(&edge.cluster, &retried).await;
        (!s.is_empty()).then_some(s)
    })
    .await;
    assert_eq!(s[0].0, DeliveryStatus::Sent as i32);

    // B4.6: after 24 h without a customer message a free-form message is refused before sending.
    let mut cluster = edge.cluster;
    cluster.advance(Duration::from_secs(24 * 3600)).await;
    let code = cluster
        .refused(
            Service::Conversation,
            verbs::conversation::SEND,
            &v1::SendAgentMessage {
                conversation_id: id.clone(),
                agent_id: "alice".into(),
                agent_name: "Alice Smith".into(),
                text: "late".into(),
                message_id: String::new(),
            },
        )
        .await;
    assert_eq!(code, "window_closed");
    let store = cluster.store();
    let loaded = store.load_stream(&format!("conversation-{id}")).await.unwrap();
    assert_eq!(
        loaded.events.iter().filter(|e| e.event_type == "AgentMessageAdded").count(),
        3,
        "nothing stored for the refused one"
    );
}

fn received_ids(events: &[ConversationEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            ConversationEvent::CustomerMessageReceived(m) => Some(m.whatsapp_message_id.clone()),
            _ => None,
        })
        .collect()
}

fn started(events: &[ConversationEvent]) -> usize {
    events.iter().filter(|e| matches!(e, ConversationEvent::ConversationStarted(_))).count()
}

/// Issue 11.2: writes to one conversation are serialized inside the replica,
/// so 64 messages in flight at once for one conversation are all stored, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b8_3_64_concurrent_customer_messages_to_one_conversation_are_all_stored_once() {
    let edge = start().await;
    let secret = Secret::new(SECRET);
    simulate::customer_text(&edge.webhook, &secret, &customer("wamid.C-first", "hi"))
        .await
        .unwrap();
    let posts = (0..64).map(|i| {
        let (url, secret) = (edge.webhook.clone(), secret.clone());
        tokio::spawn(async move {
            simulate::customer_text(&url, &secret, &customer(&format!("wamid.C{i}"), "more")).await
        })
    });
    let answers = futures_util::future::join_all(posts).await;
    let refused: Vec<_> = answers.into_iter().filter_map(|a| a.unwrap().err()).collect();
    assert!(refused.is_empty(), "every POST answered 200: {refused:?}");
    let events = conversation_events(&edge.cluster).await;
    let mut ids = received_ids(&events);
    assert_eq!(ids.len(), 65, "every acknowledged message stored");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 65, "none twice");
    assert_eq!(started(&events), 1, "one conversation");
}

/// B4.3 over the whole life of a conversation: a re-delivery after End (and
/// after a restart of the conversation service) is stored once and starts
/// nothing; a new message after End does start a new conversation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b4_3_a_message_redelivered_after_end_and_after_a_restart_is_stored_once() {
    let mut edge = start().await;
    let secret = Secret::new(SECRET);
    let first = customer("wamid.E1", "Hello");
    simulate::customer_text(&edge.webhook, &secret, &first).await.unwrap();
    let id = the_conversation(&edge.cluster).await;
    accept_and_send(&edge, &id, "Hi Maria").await;
    let _: v1::ConversationSummary = edge
        .cluster
        .call(
            Service::Conversation,
            verbs::conversation::END,
            &v1::EndConversation { conversation_id: id.clone(), by: agent_actor("alice") },
        )
        .await;
    simulate::customer_text(&edge.webhook, &secret, &first).await.unwrap();
    edge.cluster.kill("conversation");
    edge.cluster.start_service("conversation").await;
    simulate::customer_text(&edge.webhook, &secret, &first).await.unwrap();
    let events = conversation_events(&edge.cluster).await;
    assert_eq!(received_ids(&events), ["wamid.E1"], "stored once");
    assert_eq!(started(&events), 1, "the re-delivery started nothing");
    // A genuinely new message after End starts the next conversation.
    simulate::customer_text(&edge.webhook, &secret, &customer("wamid.E2", "again")).await.unwrap();
    let events = conversation_events(&edge.cluster).await;
    assert_eq!(started(&events), 2);
    assert_eq!(received_ids(&events), ["wamid.E1", "wamid.E2"]);
}

/// B8.3: with the event store down the webhook answers 5xx (Meta delivers
/// again), never 200 for a message it did not store; once the store is back
/// the re-delivery is stored once. A status of a message Switchboard never
/// sent is acknowledged (200), not a 503 that would hold back the POST.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b8_3_webhook_answers_5xx_while_the_store_is_down_and_stores_the_redelivery_once() {
    let mut edge = start().await;
    let secret = Secret::new(SECRET);
    let message = customer("wamid.S1", "is anyone there?");
    edge.cluster.kill_store();
    match simulate::customer_text(&edge.webhook, &secret, &message).await {
        Err(simulate::PostError::Refused { status, .. }) => {
            assert!(status >= 500, "retryable failure answered {status}")
        }
        other => panic!("expected a 5xx while the store is down, got {other:?}"),
    }
    edge.cluster.start_store();
    eventually("the re-delivery stored", || async {
        simulate::customer_text(&edge.webhook, &secret, &message).await.ok()
    })
    .await;
    simulate::customer_text(&edge.webhook, &secret, &message).await.unwrap();
    let events = conversation_events(&edge.cluster).await;
    assert_eq!(received_ids(&events), ["wamid.S1"]);

    let foreign = simulate::status_value(
        &BusinessNumber { phone_number_id: "pn-1".into(), display_phone_number: BUSINESS.into() },
        &[simulate::StatusUpdate {
            whatsapp_message_id: "wamid.SENT-BY-ANOTHER-APP".into(),
            status: "delivered".into(),
            recipient_id: "15551234567".into(),
            timestamp: T0 / 1000,
            error: None,
        }],
    );
    simulate::post_signed(
        &reqwest::Client::new(),
        &edge.webhook,
        &secret,
        simulate::wire_bytes(&foreign),
    )
    .await
    .unwrap();
}
