//! `HttpEventStore` against the embedded server over real HTTP: the typed API
//! services use.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::TestServer;
use eventlog::{
    AllFilter, AllPosition, AllSubscription, DeleteMode, EventStore, ExpectedVersion,
    HttpEventStore, HttpEventStoreConfig, NewEvent, StoreError, StreamStart,
};
use serde_json::json;
use uuid::Uuid;

fn ev(n: u64) -> NewEvent {
    NewEvent::json(Uuid::new_v4(), "Counted", &json!({ "n": n })).unwrap()
}

#[tokio::test]
async fn append_then_load_round_trips_data_metadata_and_numbers() {
    let srv = TestServer::start().await;
    let store = srv.client();
    let first = ev(0).with_metadata(&json!({"correlationId": "c-1"})).unwrap();
    let r =
        store.append("conv-1", ExpectedVersion::NoStream, &[first.clone(), ev(1)]).await.unwrap();
    assert_eq!(r.first_event_number, 0);
    assert_eq!(r.next_expected_version, ExpectedVersion::Exact(1));
    let loaded = store.load_stream("conv-1").await.unwrap();
    assert_eq!(loaded.version(), Some(1));
    assert_eq!(loaded.expected_version(), ExpectedVersion::Exact(1));
    let e0 = &loaded.events[0];
    assert_eq!((e0.stream.as_str(), e0.event_number, e0.event_id), ("conv-1", 0, first.event_id));
    assert_eq!(e0.event_type, "Counted");
    assert_eq!(e0.json::<serde_json::Value>().unwrap(), json!({"n": 0}));
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&e0.metadata).unwrap(),
        json!({"correlationId": "c-1"})
    );
    assert!(e0.is_json);
    assert!(e0.created.year() >= 2024);
}

#[tokio::test]
async fn load_of_a_missing_stream_is_empty_and_expects_no_stream() {
    let srv = TestServer::start().await;
    let loaded = srv.client().load_stream("nothing-here").await.unwrap();
    assert!(loaded.events.is_empty());
    assert_eq!(loaded.expected_version(), ExpectedVersion::NoStream);
}

#[tokio::test]
async fn load_stream_reads_across_many_pages() {
    let srv = TestServer::start().await;
    let store = srv.client();
    let events: Vec<NewEvent> = (0..2500).map(ev).collect();
    store.append("big", ExpectedVersion::NoStream, &events).await.unwrap();
    let loaded = store.load_stream("big").await.unwrap();
    assert_eq!(loaded.events.len(), 2500);
    assert!(loaded.events.iter().enumerate().all(|(i, e)| e.event_number == i as u64));
}

#[tokio::test]
async fn wrong_expected_version_is_typed_with_the_current_version() {
    let srv = TestServer::start().await;
    let store = srv.client();
    store.append("s", ExpectedVersion::NoStream, &[ev(0), ev(1)]).await.unwrap();
    let err = store.append("s", ExpectedVersion::Exact(0), &[ev(2)]).await.unwrap_err();
    assert!(err.is_conflict());
    match err {
        StoreError::WrongExpectedVersion { current, expected, .. } => {
            assert_eq!(current, Some(1));
            assert_eq!(expected, ExpectedVersion::Exact(0));
        }
        other => panic!("{other:?}"),
    }
    let err = store.append("absent", ExpectedVersion::Exact(3), &[ev(0)]).await.unwrap_err();
    assert!(matches!(err, StoreError::WrongExpectedVersion { current: None, .. }), "{err:?}");
    let err = store.append("absent", ExpectedVersion::StreamExists, &[ev(0)]).await.unwrap_err();
    assert!(matches!(err, StoreError::WrongExpectedVersion { current: None, .. }), "{err:?}");
    store.append("s", ExpectedVersion::StreamExists, &[ev(3)]).await.unwrap();
    store.append("s", ExpectedVersion::Any, &[ev(4)]).await.unwrap();
}

#[tokio::test]
async fn re_appending_the_same_event_ids_is_idempotent() {
    let srv = TestServer::start().await;
    let store = srv.client();
    let batch = [ev(0), ev(1)];
    let a = store.append("s", ExpectedVersion::NoStream, &batch).await.unwrap();
    let b = store.append("s", ExpectedVersion::NoStream, &batch).await.unwrap();
    let c = store.append("s", ExpectedVersion::Any, &batch).await.unwrap();
    assert_eq!(a, b);
    assert_eq!(a, c);
    assert_eq!(store.load_stream("s").await.unwrap().events.len(), 2);
}

#[tokio::test]
async fn concurrent_appends_racing_on_one_expected_version_exactly_one_wins() {
    let srv = TestServer::start().await;
    let store = srv.client();
    store.append("agent-7", ExpectedVersion::NoStream, &[ev(0)]).await.unwrap();
    for round in 0..5u64 {
        let mut tasks = Vec::new();
        for i in 0..32 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store.append("agent-7", ExpectedVersion::Exact(round), &[ev(100 * round + i)]).await
            }));
        }
        let mut wins = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(r) => {
                    wins += 1;
                    assert_eq!(r.first_event_number, round + 1);
                }
                Err(StoreError::WrongExpectedVersion { current, .. }) => {
                    assert_eq!(current, Some(round + 1));
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(wins, 1, "round {round}: exactly one append wins");
    }
    assert_eq!(store.load_stream("agent-7").await.unwrap().events.len(), 6);
}

#[tokio::test]
async fn backward_reads_page_down_to_event_zero() {
    let srv = TestServer::start().await;
    let store = srv.client();
    store
        .append("s", ExpectedVersion::NoStream, &(0..5).map(ev).collect::<Vec<_>>())
        .await
        .unwrap();
    let page = store.read_stream_backward("s", StreamStart::Head, 2).await.unwrap();
    assert_eq!(page.events.iter().map(|e| e.event_number).collect::<Vec<_>>(), [3, 4]);
    assert!(page.head_of_stream);
    assert_eq!(page.next, Some(2));
    let page = store.read_stream_backward("s", StreamStart::Number(1), 5).await.unwrap();
    assert_eq!(page.events.iter().map(|e| e.event_number).collect::<Vec<_>>(), [0, 1]);
    assert_eq!(page.next, None);
    let page = store.read_stream_forward("s", 3, 10, None).await.unwrap();
    assert_eq!(page.events.len(), 2);
    assert!(page.head_of_stream);
    assert_eq!(page.next, Some(5));
}

#[tokio::test]
async fn deletes_are_typed_soft_404_and_hard_410() {
    let srv = TestServer::start().await;
    let store = srv.client();
    store.append("soft", ExpectedVersion::NoStream, &[ev(0)]).await.unwrap();
    store.delete_stream("soft", ExpectedVersion::Exact(0), DeleteMode::Soft).await.unwrap();
    let err = store.read_stream_forward("soft", 0, 10, None).await.unwrap_err();
    assert!(matches!(err, StoreError::StreamNotFound { .. }), "{err:?}");
    assert!(store.load_stream("soft").await.unwrap().events.is_empty());
    let r = store.append("soft", ExpectedVersion::NoStream, &[ev(1)]).await.unwrap();
    assert_eq!(r.first_event_number, 1, "numbering continues after a soft delete");

    store.append("hard", ExpectedVersion::NoStream, &[ev(0)]).await.unwrap();
    let err =
        store.delete_stream("hard", ExpectedVersion::Exact(5), DeleteMode::Hard).await.unwrap_err();
    assert!(err.is_conflict());
    store.delete_stream("hard", ExpectedVersion::Any, DeleteMode::Hard).await.unwrap();
    let err = store.append("hard", ExpectedVersion::Any, &[ev(1)]).await.unwrap_err();
    assert!(matches!(err, StoreError::StreamDeleted { .. }), "{err:?}");
    let err = store.load_stream("hard").await.unwrap_err();
    assert!(matches!(err, StoreError::StreamDeleted { .. }), "{err:?}");
}

#[tokio::test]
async fn read_all_forward_pages_through_every_stream_in_commit_order() {
    let srv = TestServer::start().await;
    let store = srv.client();
    for i in 0..10u64 {
        store.append(&format!("s-{}", i % 3), ExpectedVersion::Any, &[ev(i)]).await.unwrap();
    }
    let mut pos = AllPosition::START;
    let mut seen = Vec::new();
    loop {
        let slice = store.read_all_forward(pos, 4, &AllFilter::None, None).await.unwrap();
        seen.extend(
            slice
                .events
                .iter()
                .map(|e| e.json::<serde_json::Value>().unwrap()["n"].as_u64().unwrap()),
        );
        assert!(slice.next_position >= pos);
        pos = slice.next_position;
        if slice.head_of_stream {
            break;
        }
    }
    assert_eq!(seen, (0..10).collect::<Vec<_>>());
    let tail = store.read_all_forward(pos, 4, &AllFilter::None, None).await.unwrap();
    assert!(tail.events.is_empty());
    assert_eq!(tail.next_position, pos);
}

#[tokio::test]
async fn read_all_filtered_by_stream_prefix_skips_other_streams() {
    let srv = TestServer::start().await;
    let store = srv.client();
    for i in 0..6u64 {
        let stream = if i % 2 == 0 { format!("conversation-{i}") } else { format!("agent-{i}") };
        store.append(&stream, ExpectedVersion::Any, &[ev(i)]).await.unwrap();
    }
    store.append("queue-1", ExpectedVersion::Any, &[ev(6)]).await.unwrap();
    let filter = AllFilter::StreamPrefixes(vec!["conversation-".into(), "queue-".into()]);
    let slice = store.read_all_forward(AllPosition::START, 100, &filter, None).await.unwrap();
    let streams: Vec<_> = slice.events.iter().map(|e| e.stream.as_str()).collect();
    assert_eq!(streams, ["conversation-0", "conversation-2", "conversation-4", "queue-1"]);
    assert!(slice.head_of_stream);
}

#[tokio::test]
async fn all_subscription_follows_new_events_with_long_poll() {
    let srv = TestServer::start().await;
    let store = srv.client();
    store.append("a-1", ExpectedVersion::Any, &[ev(0)]).await.unwrap();
    let mut sub = AllSubscription::new(
        store.clone(),
        AllPosition::START,
        AllFilter::StreamPrefixes(vec!["a-".into()]),
    )
    .with_long_poll(Duration::from_secs(20));
    let first = sub.next_page().await.unwrap();
    assert_eq!(first.len(), 1);
    let checkpoint = sub.position();
    let follower = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let page = sub.next_page().await.unwrap();
        (started.elapsed(), page, sub.position())
    });
    tokio::task::yield_now().await;
    store.append("b-1", ExpectedVersion::Any, &[ev(1)]).await.unwrap(); // filtered out
    store.append("a-2", ExpectedVersion::Any, &[ev(2)]).await.unwrap();
    let (elapsed, page, pos) = follower.await.unwrap();
    assert!(elapsed < Duration::from_secs(20), "woken by the append");
    assert_eq!(page.iter().map(|e| e.stream.as_str()).collect::<Vec<_>>(), ["a-2"]);
    assert!(pos > checkpoint);
    // A subscription resumed from the saved checkpoint sees the same page.
    let mut resumed = AllSubscription::new(
        store.clone(),
        checkpoint,
        AllFilter::StreamPrefixes(vec!["a-".into()]),
    );
    assert_eq!(resumed.next_page().await.unwrap()[0].stream, "a-2");
}

#[tokio::test]
async fn long_poll_on_a_stream_read_returns_the_new_event() {
    let srv = TestServer::start().await;
    let store = srv.client();
    store.append("s", ExpectedVersion::NoStream, &[ev(0)]).await.unwrap();
    let reader = {
        let store = store.clone();
        tokio::spawn(async move {
            store.read_stream_forward("s", 1, 10, Some(Duration::from_secs(20))).await
        })
    };
    tokio::task::yield_now().await;
    store.append("s", ExpectedVersion::Exact(0), &[ev(1)]).await.unwrap();
    let slice = reader.await.unwrap().unwrap();
    assert_eq!(slice.events.len(), 1);
    assert_eq!(slice.events[0].event_number, 1);
}

#[tokio::test]
async fn check_accepts_the_embedded_server_and_rejects_bad_credentials() {
    let srv = TestServer::start().await;
    let info = srv.client().check().await.unwrap();
    assert!(info.atom_pub);
    assert_eq!(info.state, "leader");
    let bad =
        HttpEventStore::new(HttpEventStoreConfig::new(&srv.url).with_credentials("admin", "nope"))
            .unwrap();
    let err = bad.check().await.unwrap_err();
    assert!(matches!(err, StoreError::Unauthorized { status: 401 }), "{err:?}");
    let err = bad.append("s", ExpectedVersion::Any, &[ev(0)]).await.unwrap_err();
    assert!(matches!(err, StoreError::Unauthorized { .. }), "{err:?}");
    // Credentials in the URL work too.
    let url = srv.url.replace("http://", "http://admin:changeit@");
    HttpEventStore::connect(&url).unwrap().check().await.unwrap();
}

#[tokio::test]
async fn check_reports_atompub_disabled_on_a_real_server_that_has_it_off() {
    // A stand-in for a real KurrentDB with AtomPub off: /info says so and
    // every stream route is a 404.
    let app = axum::Router::new().route(
        "/info",
        axum::routing::get(|| async {
            axum::Json(json!({"dbVersion": "26.1.0", "state": "leader",
                "features": {"projections": false, "userManagement": true, "atomPub": false}}))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let store = HttpEventStore::connect(&format!("http://{addr}")).unwrap();
    let err = store.check().await.unwrap_err();
    assert!(matches!(err, StoreError::AtomPubDisabled { .. }), "{err:?}");
    assert!(err.to_string().contains("--enable-atom-pub-over-http"));
}

#[tokio::test]
async fn unreachable_store_is_a_retryable_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let store = HttpEventStore::connect(&format!("http://{addr}")).unwrap();
    let err = store.append("s", ExpectedVersion::Any, &[ev(0)]).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
}

#[tokio::test]
async fn kurrent_header_family_works_against_the_embedded_server() {
    let srv = TestServer::start().await;
    let mut config = HttpEventStoreConfig::new(&srv.url).with_credentials("admin", "changeit");
    config.headers = eventlog::HeaderFamily::Kurrent;
    let store = HttpEventStore::new(config).unwrap();
    store.append("k", ExpectedVersion::NoStream, &[ev(0)]).await.unwrap();
    let err = store.append("k", ExpectedVersion::NoStream, &[ev(1)]).await.unwrap_err();
    assert!(err.is_conflict());
    store.delete_stream("k", ExpectedVersion::Exact(0), DeleteMode::Hard).await.unwrap();
}

#[tokio::test]
async fn events_survive_a_server_restart_on_the_same_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let srv = TestServer::start_in(dir.path(), eventlog::server::Auth::default()).await;
    let store = srv.client();
    store.append("s", ExpectedVersion::NoStream, &[ev(0), ev(1)]).await.unwrap();
    store.append("gone", ExpectedVersion::NoStream, &[ev(0)]).await.unwrap();
    store.delete_stream("gone", ExpectedVersion::Any, DeleteMode::Hard).await.unwrap();
    store.append("soft", ExpectedVersion::NoStream, &[ev(0)]).await.unwrap();
    store.delete_stream("soft", ExpectedVersion::Any, DeleteMode::Soft).await.unwrap();
    srv.stop().await;

    let srv = TestServer::start_in(dir.path(), eventlog::server::Auth::default()).await;
    let store = srv.client();
    let loaded = store.load_stream("s").await.unwrap();
    assert_eq!(loaded.events.len(), 2);
    let err = store.append("s", ExpectedVersion::NoStream, &[ev(9)]).await.unwrap_err();
    assert!(matches!(err, StoreError::WrongExpectedVersion { current: Some(1), .. }));
    assert!(matches!(store.load_stream("gone").await, Err(StoreError::StreamDeleted { .. })));
    assert!(store.load_stream("soft").await.unwrap().events.is_empty());
    let r = store.append("soft", ExpectedVersion::NoStream, &[ev(1)]).await.unwrap();
    assert_eq!(r.first_event_number, 1);
    // Idempotency survives the restart too (the id index is rebuilt).
    let again = store
        .append(
            "s",
            ExpectedVersion::Any,
            &loaded
                .events
                .iter()
                .map(|e| NewEvent {
                    event_id: e.event_id,
                    event_type: e.event_type.clone(),
                    data: e.data.clone(),
                    metadata: None,
                })
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    assert_eq!(again.first_event_number, 0);
    srv.stop().await;
}

#[tokio::test]
async fn a_second_server_on_the_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let srv = TestServer::start_in(dir.path(), eventlog::server::Auth::default()).await;
    let err = eventlog::server::Server::bind(eventlog::server::ServerConfig {
        data_dir: dir.path().to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        auth: eventlog::server::Auth::default(),
    })
    .await
    .unwrap_err();
    assert!(err.to_string().contains("in use"), "{err}");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_committed_appends_read_back_the_same_live_and_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let srv = TestServer::start_in(dir.path(), eventlog::server::Auth::default()).await;
    let store = srv.client();
    let mut tasks = Vec::new();
    for w in 0..64u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let stream = format!("g-{w}");
            let mut expected = ExpectedVersion::NoStream;
            for i in 0..20u64 {
                let batch: Vec<NewEvent> =
                    (0..1 + i % 3).map(|k| ev(w * 1000 + i * 10 + k)).collect();
                expected =
                    store.append(&stream, expected, &batch).await.unwrap().next_expected_version;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let read_everything = |store: HttpEventStore| async move {
        let mut pos = AllPosition::START;
        let mut events = Vec::new();
        loop {
            let slice = store.read_all_forward(pos, 500, &AllFilter::None, None).await.unwrap();
            events.extend(slice.events);
            pos = slice.next_position;
            if slice.head_of_stream {
                break;
            }
        }
        events
    };
    let live = read_everything(store.clone()).await;
    // Per writer: 20 batches of 1, 2, 3, 1, 2, 3… events = 39.
    assert_eq!(live.len(), 64 * 39);
    for w in 0..64 {
        let loaded = store.load_stream(&format!("g-{w}")).await.unwrap();
        assert_eq!(loaded.events.len(), 39);
    }
    srv.stop().await;
    let srv = TestServer::start_in(dir.path(), eventlog::server::Auth::default()).await;
    let after = read_everything(srv.client()).await;
    assert_eq!(live, after);
    srv.stop().await;
}

#[tokio::test]
async fn stopping_the_server_ends_waiting_long_polls_instead_of_waiting_them_out() {
    let srv = TestServer::start().await;
    let store = srv.client();
    store.append("s", ExpectedVersion::NoStream, &[ev(0)]).await.unwrap();
    let (sent_tx, sent_rx) = tokio::sync::oneshot::channel();
    let poll = {
        let store = store.clone();
        tokio::spawn(async move {
            let _ = sent_tx.send(());
            store.read_stream_forward("s", 1, 10, Some(Duration::from_secs(50))).await
        })
    };
    sent_rx.await.unwrap();
    // Wait until the server holds the poll: a second read (no long poll) is
    // answered after the first one was accepted on its own connection.
    store.read_stream_forward("s", 0, 1, None).await.unwrap();
    let stopped = tokio::time::timeout(Duration::from_secs(20), srv.stop()).await;
    assert!(stopped.is_ok(), "graceful stop did not wait out the 50 s long poll");
    let answer = poll.await.unwrap();
    assert!(answer.map(|s| s.events.is_empty()).unwrap_or(true));
}
