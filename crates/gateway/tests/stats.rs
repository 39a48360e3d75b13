//! B9.4 over real HTTP: the statistics a supervisor reads are folded from the
//! log, and a restarted gateway rebuilds exactly the same figures. A real
//! `nats-server` and the embedded event store; events appended to the store
//! the way the domain services write them; a manual clock.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bus::{Bus, BusConfig};
use eventlog::{EventStore, ExpectedVersion, HttpEventStore, HttpEventStoreConfig, NewEvent};
use gateway::{Gateway, GatewayConfig, Role, issue_token};
use kernel::{Clock, Shutdown, ShutdownTrigger};
use sb_proto::v1;
use sb_proto::{ConversationEvent, WrapUpEvent, timestamp_from_millis};
use serde_json::Value;
use testkit::NatsServer;

const SECRET: &str = "test-secret";
const T0: i64 = 1_764_000_000_000; // 2025-11-24T16:00:00Z
/// Bounded waits for a loaded machine, never a stand-in for domain time.
const WAIT: Duration = Duration::from_secs(10);

fn ts(ms: i64) -> Option<sb_proto::Timestamp> {
    Some(timestamp_from_millis(ms))
}

fn token(sub: &str, role: Role) -> String {
    issue_token(SECRET, sub, sub, role, Duration::from_secs(3600), T0 / 1000)
}

struct Running {
    base: String,
    trigger: ShutdownTrigger,
    done: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start_gateway(nats: &NatsServer, log: &HttpEventStore, clock: &Clock) -> Running {
    let bus = Bus::connect(BusConfig::new(nats.url())).await.unwrap();
    let config = GatewayConfig::new("127.0.0.1:0".parse().unwrap(), SECRET);
    let gateway = Gateway::bind(config, bus, log.clone(), clock.clone()).await.unwrap();
    let base = format!("http://{}", gateway.local_addr().unwrap());
    let (trigger, shutdown) = Shutdown::new();
    let done = tokio::spawn(gateway.run(shutdown));
    Running { base, trigger, done }
}

async fn get(base: &str, path: &str, token: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .get(format!("{base}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, serde_json::from_str(&r.text().await.unwrap()).unwrap_or(Value::Null))
}

/// Polls until `check` holds on the answer (the projection follows the log).
async fn stats_when(base: &str, path: &str, check: impl Fn(&Value) -> bool) -> Value {
    let sup = token("sup", Role::Supervisor);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Ok(r) =
            reqwest::Client::new().get(format!("{base}{path}")).bearer_auth(&sup).send().await
            && r.status() == 200
            && let Ok(v) = serde_json::from_str::<Value>(&r.text().await.unwrap_or_default())
            && check(&v)
        {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {path}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn append(log: &HttpEventStore, stream: &str, event_type: &str, data: Vec<u8>) {
    let event = NewEvent {
        event_id: uuid::Uuid::new_v4(),
        event_type: event_type.into(),
        data: data.into(),
        metadata: None,
    };
    log.append(stream, ExpectedVersion::Any, &[event]).await.unwrap();
}

async fn conv(log: &HttpEventStore, id: &str, e: impl Into<ConversationEvent>) {
    let e = e.into();
    append(log, &format!("conversation-{id}"), e.event_type(), e.to_json()).await;
}

async fn wrap(log: &HttpEventStore, agent: &str, e: impl Into<WrapUpEvent>) {
    let e = e.into();
    append(log, &format!("wrapup-{agent}"), e.event_type(), e.to_json()).await;
}

/// c1: queued at T0, offered to bob (+2 s), RONA (+32 s), offered to alice
/// (+33 s), accepted (+40 s), ended (+100 s), wrapped up `sale` (+120 s).
/// c2: queued at +50 s and still waiting.
async fn story(log: &HttpEventStore) {
    for (id, at) in [("c1", T0), ("c2", T0 + 50_000)] {
        conv(
            log,
            id,
            v1::ConversationStarted {
                conversation_id: id.into(),
                at: ts(at),
                ..Default::default()
            },
        )
        .await;
        conv(
            log,
            id,
            v1::ConversationQueued {
                conversation_id: id.into(),
                queue_id: "support".into(),
                queue_name: "Support".into(),
                queued_since: ts(at),
                at: ts(at),
                ..Default::default()
            },
        )
        .await;
    }
    let offer = |offer: &str, agent: &str, at: i64| v1::OfferMade {
        conversation_id: "c1".into(),
        offer_id: offer.into(),
        agent_id: agent.into(),
        queue_id: "support".into(),
        offered_at: ts(at),
        expires_at: ts(at + 30_000),
        ..Default::default()
    };
    conv(log, "c1", offer("o1", "bob", T0 + 2_000)).await;
    conv(
        log,
        "c1",
        v1::OfferWithdrawn {
            conversation_id: "c1".into(),
            offer_id: "o1".into(),
            agent_id: "bob".into(),
            reason: v1::WithdrawReason::Expired as i32,
            at: ts(T0 + 32_000),
        },
    )
    .await;
    conv(log, "c1", offer("o2", "alice", T0 + 33_000)).await;
    conv(
        log,
        "c1",
        v1::OfferAccepted {
            conversation_id: "c1".into(),
            offer_id: "o2".into(),
            agent_id: "alice".into(),
            agent_name: "alice".into(),
            at: ts(T0 + 40_000),
        },
    )
    .await;
    conv(
        log,
        "c1",
        v1::ConversationEnded {
            conversation_id: "c1".into(),
            agent_ids: vec!["alice".into()],
            at: ts(T0 + 100_000),
            ..Default::default()
        },
    )
    .await;
    wrap(
        log,
        "alice",
        v1::WrapupOwed {
            wrapup_id: "w1".into(),
            agent_id: "alice".into(),
            conversation_id: "c1".into(),
            since: ts(T0 + 100_000),
            auto_at: ts(T0 + 220_000),
            ..Default::default()
        },
    )
    .await;
    wrap(
        log,
        "alice",
        v1::WrapupSubmitted {
            wrapup_id: "w1".into(),
            agent_id: "alice".into(),
            conversation_id: "c1".into(),
            reason_code: "sale".into(),
            at: ts(T0 + 120_000),
            ..Default::default()
        },
    )
    .await;
}

fn complete(v: &Value) -> bool {
    v.as_array().and_then(|a| a.first()).is_some_and(|q| q["wrapupReasons"]["sale"] == 1)
}

#[tokio::test]
async fn b9_4_statistics_come_from_the_log_and_a_restart_rebuilds_the_same_figures() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let server = eventlog::server::Server::bind(eventlog::server::ServerConfig {
        data_dir: dir.path().to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        auth: eventlog::server::Auth::default(),
    })
    .await
    .unwrap();
    let url = format!("http://{}", server.local_addr());
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    let log =
        HttpEventStore::new(HttpEventStoreConfig::new(&url).with_credentials("admin", "changeit"))
            .unwrap();
    let clock = Clock::manual(T0 + 200_000);

    let first = start_gateway(&nats, &log, &clock).await;
    story(&log).await;
    let queues = stats_when(&first.base, "/api/v1/stats/queues", complete).await;
    let q = &queues[0];
    assert_eq!(q["queueId"], "support");
    assert_eq!(q["waiting"], 1, "c2 waits");
    assert_eq!(q["longestWaitSecs"], 150, "c2 queued at +50 s, now +200 s");
    assert_eq!(
        (q["offered"].as_u64(), q["accepted"].as_u64(), q["rona"].as_u64()),
        (Some(2), Some(1), Some(1))
    );
    assert_eq!(q["avgSpeedOfAnswerSecs"], 40.0);
    assert_eq!(q["avgHandleSecs"], 60.0);
    assert_eq!(q["avgWrapupSecs"], 20.0);
    let agents = stats_when(&first.base, "/api/v1/stats/agents", |v| {
        v.as_array().is_some_and(|a| a.len() == 2)
    })
    .await;
    // An interval before the RONA: only bob's offer.
    let early = stats_when(
        &first.base,
        "/api/v1/stats/queues?from=2025-11-24T16:00:00.000Z&to=2025-11-24T16:00:10.000Z",
        |_| true,
    )
    .await;
    assert_eq!((early[0]["offered"].as_u64(), early[0]["rona"].as_u64()), (Some(1), Some(0)));

    // Agents are refused with the stable code; a bad time is a 400.
    let (status, body) =
        get(&first.base, "/api/v1/stats/queues", &token("alice", Role::Agent)).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("supervisor_only")));
    let (status, body) =
        get(&first.base, "/api/v1/stats/agents", &token("alice", Role::Agent)).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("supervisor_only")));
    let (status, body) =
        get(&first.base, "/api/v1/stats/queues?from=yesterday", &token("sup", Role::Supervisor))
            .await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_time")));

    first.trigger.trigger();
    first.done.await.unwrap().unwrap();

    let second = start_gateway(&nats, &log, &clock).await;
    let queues_after = stats_when(&second.base, "/api/v1/stats/queues", complete).await;
    let agents_after = stats_when(&second.base, "/api/v1/stats/agents", |v| {
        v.as_array().is_some_and(|a| a.len() == 2)
    })
    .await;
    assert_eq!(queues_after, queues, "queue figures after a restart");
    assert_eq!(agents_after, agents, "agent figures after a restart");
}

/// B9.5: c9 started at T0 with a customer message, offered to alice (+2 s),
/// accepted (+10 s), alice writes (+20 s), delivered (+25 s), ended (+60 s).
async fn replay_story(log: &HttpEventStore) {
    let id = "c9";
    conv(
        log,
        id,
        v1::ConversationStarted { conversation_id: id.into(), at: ts(T0), ..Default::default() },
    )
    .await;
    conv(
        log,
        id,
        v1::ConversationQueued {
            conversation_id: id.into(),
            queue_id: "support".into(),
            queue_name: "Support".into(),
            queued_since: ts(T0),
            at: ts(T0),
            ..Default::default()
        },
    )
    .await;
    conv(
        log,
        id,
        v1::CustomerMessageReceived {
            conversation_id: id.into(),
            message_id: "in1".into(),
            text: "Hello, my order is late".into(),
            sent_at: ts(T0),
            received_at: ts(T0),
            ..Default::default()
        },
    )
    .await;
    conv(
        log,
        id,
        v1::OfferMade {
            conversation_id: id.into(),
            offer_id: "o9".into(),
            agent_id: "alice".into(),
            queue_id: "support".into(),
            offered_at: ts(T0 + 2_000),
            expires_at: ts(T0 + 32_000),
            ..Default::default()
        },
    )
    .await;
    conv(
        log,
        id,
        v1::OfferAccepted {
            conversation_id: id.into(),
            offer_id: "o9".into(),
            agent_id: "alice".into(),
            agent_name: "Alice Smith".into(),
            at: ts(T0 + 10_000),
        },
    )
    .await;
    conv(
        log,
        id,
        v1::AgentMessageAdded {
            conversation_id: id.into(),
            message_id: "out1".into(),
            agent_id: "alice".into(),
            agent_name: "Alice Smith".into(),
            text: "Let me check".into(),
            at: ts(T0 + 20_000),
        },
    )
    .await;
    conv(
        log,
        id,
        v1::MessageStatusChanged {
            conversation_id: id.into(),
            message_id: "out1".into(),
            status: v1::DeliveryStatus::Delivered as i32,
            at: ts(T0 + 25_000),
            ..Default::default()
        },
    )
    .await;
    conv(
        log,
        id,
        v1::ConversationEnded {
            conversation_id: id.into(),
            agent_ids: vec!["alice".into()],
            at: ts(T0 + 60_000),
            ..Default::default()
        },
    )
    .await;
}

fn outbound_status(c: &Value) -> Option<String> {
    c["messages"]
        .as_array()?
        .iter()
        .find(|m| m["id"] == "out1")
        .and_then(|m| m["status"].as_str().map(str::to_owned))
}

#[tokio::test]
async fn b9_5_a_conversation_is_shown_as_it_stood_at_several_moments() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let server = eventlog::server::Server::bind(eventlog::server::ServerConfig {
        data_dir: dir.path().to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        auth: eventlog::server::Auth::default(),
    })
    .await
    .unwrap();
    let url = format!("http://{}", server.local_addr());
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    let log =
        HttpEventStore::new(HttpEventStoreConfig::new(&url).with_credentials("admin", "changeit"))
            .unwrap();
    let clock = Clock::manual(T0 + 100_000);
    let gw = start_gateway(&nats, &log, &clock).await;
    replay_story(&log).await;
    let sup = token("sup", Role::Supervisor);
    // The live view has caught up when the conversation reads `ended`.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, c) = get(&gw.base, "/api/v1/conversations/c9", &sup).await;
        if status == 200 && c["state"] == "ended" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the live view never showed c9 ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let at = |t: &str| format!("/api/v1/conversations/c9?asOf=2025-11-24T16:00:{t}.000Z");

    let (status, body) =
        get(&gw.base, "/api/v1/conversations/c9?asOf=2025-11-24T15:59:59.000Z", &sup).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("conversation_not_found")),
        "before it started"
    );

    let (status, c) = get(&gw.base, &at("05"), &sup).await;
    assert_eq!(status, 200);
    assert_eq!(c["state"], "offered");
    assert_eq!(c["participants"].as_array().map(Vec::len), Some(0));
    assert_eq!(c["messages"].as_array().map(Vec::len), Some(1));

    let (_, c) = get(&gw.base, &at("21"), &sup).await;
    assert_eq!(c["state"], "active");
    assert_eq!(c["participants"][0]["agentId"], "alice");
    assert_eq!(outbound_status(&c).as_deref(), Some("pending"));

    let (_, c) = get(&gw.base, &at("30"), &sup).await;
    assert_eq!(c["state"], "active");
    assert_eq!(outbound_status(&c).as_deref(), Some("delivered"));

    let (_, c) =
        get(&gw.base, "/api/v1/conversations/c9?asOf=2025-11-24T16:01:00.000Z", &sup).await;
    assert_eq!(c["state"], "ended");

    // The events, oldest first, with their positions.
    let (status, events) = get(&gw.base, "/api/v1/conversations/c9/events", &sup).await;
    assert_eq!(status, 200);
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 8);
    assert_eq!(events[0]["eventType"], "ConversationStarted");
    assert_eq!(events[7]["eventType"], "ConversationEnded");
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["streamPosition"].as_u64(), Some(i as u64));
    }

    // B8.1: a former participant reads; another agent does not.
    let alice = token("alice", Role::Agent);
    let (status, _) = get(&gw.base, &at("21"), &alice).await;
    assert_eq!(status, 200, "alice took part");
    let bob = token("bob", Role::Agent);
    let (status, body) = get(&gw.base, &at("21"), &bob).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("not_a_participant")));
    let (status, _) = get(&gw.base, "/api/v1/conversations/c9/events", &bob).await;
    assert_eq!(status, 403);
    let (status, body) = get(&gw.base, "/api/v1/conversations/c9?asOf=noon", &sup).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_time")));
}
