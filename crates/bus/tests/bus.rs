//! The bus against a real `nats-server -js` started per test on a free port.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::time::Duration;

use bus::{Bus, BusConfig, BusError, ConsumerOptions, subjects};
use bytes::Bytes;
use sb_proto::{Service, v1::EventEnvelope};
use testkit::NatsServer;

async fn connect(server: &NatsServer) -> Bus {
    let bus = Bus::connect(BusConfig::new(server.url())).await.expect("connect");
    bus.ensure_events_stream().await.expect("SB_EVENTS");
    bus
}

fn envelope(event_id: &str, agent: &str, event_type: &str) -> EventEnvelope {
    EventEnvelope {
        event_id: event_id.to_owned(),
        stream: format!("agent-{agent}"),
        event_type: event_type.to_owned(),
        service: Service::AgentPresence.as_str().to_owned(),
        aggregate_id: agent.to_owned(),
        payload: vec![1, 2, 3],
        trace_context: [(
            "traceparent".to_owned(),
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned(),
        )]
        .into(),
        ..Default::default()
    }
}

fn id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[tokio::test]
async fn b9_1_published_event_is_consumed_with_subject_envelope_and_trace() {
    let server = NatsServer::start();
    let bus = connect(&server).await;
    let sent = envelope(&id(), "alice", "AgentStateChanged");
    let published = bus.publish_event(&sent).await.unwrap();
    assert!(!published.duplicate);

    let mut consumer = bus.event_consumer(ConsumerOptions::new("roundtrip")).await.unwrap();
    let delivery = consumer.next().await.unwrap().unwrap();
    assert_eq!(delivery.subject(), "sb.evt.agent-presence.alice.AgentStateChanged");
    assert_eq!(delivery.envelope.as_ref().unwrap(), &sent);
    assert_eq!(
        delivery.traceparent().unwrap().to_string(),
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    );
    delivery.ack().await.unwrap();
}

#[tokio::test]
async fn ensure_events_stream_is_idempotent() {
    let server = NatsServer::start();
    let bus = connect(&server).await;
    let again = bus.ensure_events_stream().await.unwrap();
    assert_eq!(again.config.name, "SB_EVENTS");
    assert_eq!(again.config.duplicate_window, Duration::from_secs(120));
}

#[tokio::test]
async fn republishing_an_event_id_is_deduplicated() {
    let server = NatsServer::start();
    let bus = connect(&server).await;
    let event_id = id();
    let first = bus.publish_event(&envelope(&event_id, "bob", "SlotReserved")).await.unwrap();
    let second = bus.publish_event(&envelope(&event_id, "bob", "SlotReserved")).await.unwrap();
    assert!(!first.duplicate);
    assert!(second.duplicate, "same Nats-Msg-Id must be dropped");
    assert_eq!(first.sequence, second.sequence);
    let other = bus.publish_event(&envelope(&id(), "bob", "SlotReleased")).await.unwrap();
    assert_eq!(other.sequence, first.sequence + 1);

    let mut info = bus.jetstream().get_stream("SB_EVENTS").await.unwrap();
    assert_eq!(info.info().await.unwrap().state.messages, 2);
}

#[tokio::test]
async fn a_consumer_that_dies_before_ack_gets_the_event_again() {
    let server = NatsServer::start();
    let event_id = id();
    let options =
        ConsumerOptions { ack_wait: Duration::from_millis(500), ..ConsumerOptions::new("crashy") };
    {
        let bus = connect(&server).await;
        bus.publish_event(&envelope(&event_id, "carol", "AgentRegistered")).await.unwrap();
        let mut consumer = bus.event_consumer(options.clone()).await.unwrap();
        let delivery = consumer.next().await.unwrap().unwrap();
        assert_eq!(delivery.envelope.as_ref().unwrap().event_id, event_id);
        assert_eq!(delivery.delivered(), 1);
        // The process "dies" here: connection dropped, no ack.
    }
    let bus = connect(&server).await;
    let mut consumer = bus.event_consumer(options).await.unwrap();
    let again = tokio::time::timeout(Duration::from_secs(10), consumer.next())
        .await
        .expect("redelivered after ack_wait")
        .unwrap()
        .unwrap();
    assert_eq!(again.envelope.as_ref().unwrap().event_id, event_id);
    assert!(again.delivered() >= 2);
    again.ack().await.unwrap();
}

#[tokio::test]
async fn acked_events_are_not_delivered_again_to_the_same_durable() {
    let server = NatsServer::start();
    let bus = connect(&server).await;
    let (a, b) = (id(), id());
    bus.publish_event(&envelope(&a, "dave", "AgentRegistered")).await.unwrap();
    {
        let mut consumer = bus.event_consumer(ConsumerOptions::new("resume")).await.unwrap();
        consumer.next().await.unwrap().unwrap().ack().await.unwrap();
    }
    bus.publish_event(&envelope(&b, "dave", "AgentStateChanged")).await.unwrap();
    let mut consumer = bus.event_consumer(ConsumerOptions::new("resume")).await.unwrap();
    let next = consumer.next().await.unwrap().unwrap();
    assert_eq!(next.envelope.unwrap().event_id, b, "resumes after the last ack");
}

#[tokio::test]
async fn request_with_no_responder_or_a_slow_one_gives_typed_errors() {
    let server = NatsServer::start();
    let bus = connect(&server).await;

    let err = bus
        .request(Service::WrapUp, "submit", Bytes::new(), None, Duration::from_millis(500))
        .await
        .unwrap_err();
    assert!(
        matches!(err, BusError::NoResponders { ref subject } if subject == "sb.cmd.wrap-up.submit"),
        "{err}"
    );

    // A responder that never answers: the caller gets a Timeout, not a hang.
    let mut commands = bus.serve_commands(Service::WrapUp).await.unwrap();
    bus.flush().await.unwrap();
    let silent = tokio::spawn(async move {
        let _held = commands.next().await;
        std::future::pending::<()>().await;
    });
    let err = bus
        .request(Service::WrapUp, "submit", Bytes::new(), None, Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(err, BusError::Timeout { .. }), "{err}");
    assert!(err.is_transient());
    silent.abort();
}

#[tokio::test]
async fn commands_are_answered_by_one_replica_of_the_queue_group() {
    let server = NatsServer::start();
    let bus = connect(&server).await;
    let mut replicas = Vec::new();
    for replica in 0..2u8 {
        let mut commands = bus.serve_commands(Service::Routing).await.unwrap();
        replicas.push(tokio::spawn(async move {
            while let Some(cmd) = commands.next().await {
                let mut answer = cmd.payload.to_vec();
                answer.push(replica);
                cmd.reply(Bytes::from(answer)).await.unwrap();
            }
        }));
    }
    bus.flush().await.unwrap();
    for i in 0..20u8 {
        let reply = bus
            .request(
                Service::Routing,
                "put-queue",
                Bytes::from(vec![i]),
                None,
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        // Exactly one replica answered (a second reply would be dropped, but the
        // payload names one replica and echoes the request).
        assert_eq!(reply.len(), 2);
        assert_eq!(reply[0], i);
    }
    for r in replicas {
        r.abort();
    }
}

#[tokio::test]
async fn connect_to_an_absent_server_fails_clearly_after_retrying() {
    let port = testkit::free_port();
    let config = BusConfig {
        connect_timeout: Duration::from_millis(600),
        ..BusConfig::new(format!("nats://127.0.0.1:{port}"))
    };
    let err = Bus::connect(config).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, BusError::Unreachable { attempts, .. } if attempts > 1), "{text}");
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(text.contains("SWITCHBOARD_NATS_URL"), "{text}");
}

#[tokio::test]
async fn publishing_an_event_whose_id_breaks_the_subject_is_refused() {
    let server = NatsServer::start();
    let bus = connect(&server).await;
    let err = bus.publish_event(&envelope(&id(), "a.b", "AgentRegistered")).await.unwrap_err();
    assert!(matches!(err, BusError::InvalidSubject(_)), "{err}");
    assert!(subjects::check_token("alice").is_ok());
}
