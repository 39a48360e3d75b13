//! The kernel against the real parts: the embedded event store over HTTP and
//! a real `nats-server`.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bus::{Bus, BusConfig, ConsumerOptions};
use eventlog::{HttpEventStore, HttpEventStoreConfig};
use kernel::{
    DomainError, Readiness, Shutdown,
    aggregate::{Aggregate, EventMetadata, ExecError, Repository},
};
use sb_proto::{AgentPresenceEvent, Service, v1};
use testkit::NatsServer;

/// A test aggregate: counts `AgentStateChanged` events, refuses above a limit.
struct Counter;

#[derive(Debug, thiserror::Error)]
#[error("too many")]
struct TooMany;

impl DomainError for TooMany {
    fn code(&self) -> &'static str {
        "too_many"
    }
    fn kind(&self) -> v1::ErrorKind {
        v1::ErrorKind::Rule
    }
}

impl Aggregate for Counter {
    type State = u32;
    type Event = v1::AgentStateChanged;
    type Error = TooMany;

    fn encode(_id: &str, event: &Self::Event) -> (&'static str, Vec<u8>) {
        ("AgentStateChanged", AgentPresenceEvent::from(event.clone()).to_json())
    }

    fn decode(event_type: &str, data: &[u8]) -> Result<Self::Event, String> {
        match AgentPresenceEvent::from_json(event_type, data).map_err(|e| e.to_string())? {
            AgentPresenceEvent::AgentStateChanged(e) => Ok(e),
            other => Err(format!("unexpected {}", other.event_type())),
        }
    }

    fn evolve(state: u32, _: &Self::Event) -> u32 {
        state + 1
    }
}

fn bump(agent: &str) -> v1::AgentStateChanged {
    v1::AgentStateChanged { agent_id: agent.into(), idle_reason: "x".into(), ..Default::default() }
}

struct Store {
    url: String,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start_store() -> Store {
    let dir = tempfile::tempdir().unwrap();
    let server = eventlog::server::Server::bind(eventlog::server::ServerConfig {
        data_dir: dir.path().to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        auth: eventlog::server::Auth::default(),
    })
    .await
    .unwrap();
    let url = format!("http://{}", server.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    Store { url, _dir: dir, _stop: stop }
}

fn client(store: &Store) -> HttpEventStore {
    HttpEventStore::new(HttpEventStoreConfig::new(&store.url).with_credentials("admin", "changeit"))
        .unwrap()
}

#[tokio::test]
async fn execute_appends_with_expected_version_and_retries_conflicts() {
    let store = start_store().await;
    let repo = Repository::<Counter, _>::new(client(&store));
    let other = Repository::<Counter, _>::new(client(&store)); // another replica, its own cache
    let meta = EventMetadata { correlation_id: "c".into(), occurred_at: 5, ..Default::default() };

    let first = repo
        .execute("agent-k1", &meta, |_, v| {
            assert_eq!(v, None);
            Ok(vec![bump("k1")])
        })
        .await
        .unwrap();
    assert_eq!((first.state, first.version), (1, Some(0)));

    // Ten concurrent commands from two "replicas": every one lands exactly once.
    let mut tasks = Vec::new();
    for i in 0..10 {
        let repo = if i % 2 == 0 { repo.clone() } else { other.clone() };
        let meta = meta.clone();
        tasks.push(tokio::spawn(async move {
            repo.execute("agent-k1", &meta, |_, _| Ok(vec![bump("k1")])).await.map(|e| e.version)
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let (count, version) = other.load("agent-k1").await.unwrap();
    assert_eq!((count, version), (11, Some(10)));

    // A refusal appends nothing.
    let err = repo
        .execute("agent-k1", &meta, |n, _| if *n >= 11 { Err(TooMany) } else { Ok(vec![]) })
        .await
        .unwrap_err();
    assert!(matches!(err, ExecError::Domain(TooMany)));
    assert_eq!(repo.load("agent-k1").await.unwrap().1, Some(10));
}

#[tokio::test]
async fn b9_3_relay_publishes_every_event_once_with_position_and_resumes_from_its_checkpoint() {
    let store = start_store().await;
    let nats = NatsServer::start();
    let bus = Bus::connect(BusConfig::new(nats.url())).await.unwrap();
    bus.ensure_events_stream().await.unwrap();
    let repo = Repository::<Counter, _>::new(client(&store));
    let meta = EventMetadata {
        correlation_id: "corr-1".into(),
        occurred_at: 1_764_000_000_000,
        ..Default::default()
    };
    for agent in ["r1", "r2", "r1"] {
        repo.execute(&format!("agent-{agent}"), &meta, |_, _| Ok(vec![bump(agent)])).await.unwrap();
    }
    // Not ours: another service's stream is not relayed by this one.
    repo.execute("wrapup-r1", &meta, |_, _| Ok(vec![bump("r1")])).await.unwrap();

    let run_relay = |bus: Bus| {
        let (trigger, shutdown) = Shutdown::new();
        let task = tokio::spawn(kernel::follow::run_relay(
            client(&store),
            bus,
            Service::AgentPresence,
            vec!["agent-".into()],
            shutdown,
        ));
        (trigger, task)
    };
    let (trigger, task) = run_relay(bus.clone());
    let mut consumer = bus.event_consumer(ConsumerOptions::new("relay-test")).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        let d = tokio::time::timeout(Duration::from_secs(10), consumer.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let e = d.envelope.as_ref().unwrap().clone();
        got.push((d.subject().to_owned(), e.stream_position, e.correlation_id.clone()));
        d.ack().await.unwrap();
    }
    assert_eq!(
        got,
        vec![
            ("sb.evt.agent-presence.r1.AgentStateChanged".to_owned(), 0, "corr-1".to_owned()),
            ("sb.evt.agent-presence.r2.AgentStateChanged".to_owned(), 0, "corr-1".to_owned()),
            ("sb.evt.agent-presence.r1.AgentStateChanged".to_owned(), 1, "corr-1".to_owned()),
        ]
    );
    trigger.trigger();
    task.await.unwrap();

    // Restart: the checkpoint means nothing old is published again; a new event is.
    repo.execute("agent-r3", &meta, |_, _| Ok(vec![bump("r3")])).await.unwrap();
    let (trigger, task) = run_relay(bus.clone());
    let d = tokio::time::timeout(Duration::from_secs(10), consumer.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(d.subject(), "sb.evt.agent-presence.r3.AgentStateChanged");
    d.ack().await.unwrap();
    let mut info = bus.jetstream().get_stream("SB_EVENTS").await.unwrap();
    assert_eq!(info.info().await.unwrap().state.messages, 4, "nothing doubled");
    trigger.trigger();
    task.await.unwrap();
}

#[tokio::test]
async fn projection_replays_then_follows_and_reports_ready() {
    let store = start_store().await;
    let repo = Repository::<Counter, _>::new(client(&store));
    let meta = EventMetadata::default();
    for _ in 0..3 {
        repo.execute("agent-p1", &meta, |_, _| Ok(vec![bump("p1")])).await.unwrap();
    }
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let ready = Readiness::default();
    let (trigger, shutdown) = Shutdown::new();
    let task = tokio::spawn(kernel::follow::run_projection(
        client(&store),
        vec!["agent-".into()],
        move |e| {
            let _ = seen_tx.send(e.event_number);
        },
        ready.clone(),
        shutdown,
    ));
    for expected in 0..3 {
        assert_eq!(seen.recv().await, Some(expected));
    }
    for _ in 0..1000 {
        if ready.get() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(ready.get(), "caught up after the replay");
    repo.execute("agent-p1", &meta, |_, _| Ok(vec![bump("p1")])).await.unwrap();
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(10), seen.recv()).await.unwrap(),
        Some(3),
        "follows new events"
    );
    trigger.trigger();
    task.await.unwrap();
}
