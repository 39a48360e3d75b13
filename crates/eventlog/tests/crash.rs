//! Durability: the real server binary is killed with SIGKILL in the middle of
//! a write load and restarted on the same data directory; every acknowledged
//! event must be there, intact, and no partial batch may ever be served.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::collections::HashMap;
use std::io::Write as _;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use eventlog::{EventStore, ExpectedVersion, HttpEventStore, NewEvent, StoreError};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use uuid::Uuid;

const WRITERS: u64 = 16;

struct Running {
    child: Child,
    store: HttpEventStore,
}

/// Starts `eventlog-server` on a free port; its log goes to `stderr_log`.
async fn start(data: &Path, stderr_log: &Path) -> Running {
    let stderr = std::fs::OpenOptions::new().create(true).append(true).open(stderr_log).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_eventlog-server"))
        .args(["--data", data.to_str().unwrap(), "--listen", "127.0.0.1:0", "--insecure"])
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr))
        .kill_on_drop(true)
        .spawn()
        .expect("spawn eventlog-server");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = lines.next_line().await.unwrap().expect("server printed its address");
    let addr = line.strip_prefix("listening on ").expect("address line").to_owned();
    let store = HttpEventStore::connect(&format!("http://{addr}")).unwrap();
    Running { child, store }
}

/// An acknowledged event: what the client was told is durable.
#[derive(Clone, Debug)]
struct Acked {
    stream: String,
    number: u64,
    id: Uuid,
    data: Value,
}

/// Every stream holds dense numbers, decodable JSON, whole batches, and every
/// acknowledged event with its id and data.
async fn verify(store: &HttpEventStore, acked: &[Acked], streams: &[String]) {
    let mut by_stream: HashMap<&str, Vec<&Acked>> = HashMap::new();
    for a in acked {
        by_stream.entry(&a.stream).or_default().push(a);
    }
    for stream in streams {
        let loaded = store.load_stream(stream).await.expect("load after restart");
        let mut batches: HashMap<u64, (u64, u64)> = HashMap::new();
        for (i, e) in loaded.events.iter().enumerate() {
            assert_eq!(e.event_number, i as u64, "{stream}: dense numbering");
            let data: Value = e.json().expect("no torn event: data is whole JSON");
            let batch = data["batch"].as_u64().unwrap();
            let size = data["size"].as_u64().unwrap();
            let entry = batches.entry(batch).or_insert((size, 0));
            entry.1 += 1;
        }
        for (batch, (size, seen)) in batches {
            assert_eq!(size, seen, "{stream}: batch {batch} is all there or not at all");
        }
        for a in by_stream.get(stream.as_str()).into_iter().flatten() {
            let e = loaded
                .events
                .get(a.number as usize)
                .unwrap_or_else(|| panic!("acknowledged event {}/{} lost", a.stream, a.number));
            assert_eq!(e.event_id, a.id, "{}/{}", a.stream, a.number);
            assert_eq!(e.json::<Value>().unwrap(), a.data);
        }
    }
}

/// Runs writers until the server dies; returns what was acknowledged.
async fn write_until_killed(running: &mut Running, cycle: u64, kill_after: usize) -> Vec<Acked> {
    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let enough = Arc::new(tokio::sync::Notify::new());
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let store = running.store.clone();
        let acked = acked.clone();
        let enough = enough.clone();
        writers.push(tokio::spawn(async move {
            let stream = format!("crash-{w}");
            let mut expected = match store.load_stream(&stream).await {
                Ok(l) => l.expected_version(),
                Err(e) => panic!("{e}"),
            };
            let mut batch_no = cycle * 1_000_000 + w * 10_000;
            loop {
                batch_no += 1;
                let size = 1 + batch_no % 3;
                let events: Vec<(NewEvent, Value)> = (0..size)
                    .map(|i| {
                        let data = json!({"batch": batch_no, "size": size, "i": i, "pad": "x".repeat((batch_no % 200) as usize)});
                        (NewEvent::json(Uuid::new_v4(), "Wrote", &data).unwrap(), data)
                    })
                    .collect();
                let new: Vec<NewEvent> = events.iter().map(|(e, _)| e.clone()).collect();
                match store.append(&stream, expected, &new).await {
                    Ok(r) => {
                        let mut a = acked.lock().unwrap();
                        for (i, (e, data)) in events.into_iter().enumerate() {
                            a.push(Acked { stream: stream.clone(), number: r.first_event_number + i as u64, id: e.event_id, data });
                        }
                        if a.len() >= kill_after {
                            enough.notify_one();
                        }
                        expected = r.next_expected_version;
                    }
                    Err(StoreError::Unavailable(_)) => return,
                    Err(e) => panic!("unexpected append error: {e}"),
                }
            }
        }));
    }
    enough.notified().await;
    running.child.start_kill().expect("SIGKILL");
    let _ = running.child.wait().await;
    for w in writers {
        w.await.unwrap();
    }
    Arc::try_unwrap(acked).unwrap().into_inner().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_write_load_loses_no_acknowledged_event_and_serves_no_partial_batch() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("server.log");
    let streams: Vec<String> = (0..WRITERS).map(|w| format!("crash-{w}")).collect();
    let mut all_acked = Vec::new();
    for cycle in 0..3 {
        let mut running = start(&data, &log).await;
        verify(&running.store, &all_acked, &streams).await;
        let acked = write_until_killed(&mut running, cycle, 1500).await;
        assert!(acked.len() >= 1500);
        all_acked.extend(acked);
    }
    let running = start(&data, &log).await;
    verify(&running.store, &all_acked, &streams).await;
    eprintln!("{} acknowledged events checked after 3 SIGKILLs", all_acked.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_after_the_last_frame_is_cut_with_a_warning_and_writes_continue() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("server.log");
    let mut running = start(&data, &log).await;
    let events: Vec<NewEvent> =
        (0..10).map(|n| NewEvent::json(Uuid::new_v4(), "E", &json!({"n": n})).unwrap()).collect();
    running.store.append("s", ExpectedVersion::NoStream, &events).await.unwrap();
    running.child.start_kill().unwrap();
    running.child.wait().await.unwrap();

    // A torn frame: a header that promises more bytes than there are.
    let mut file = std::fs::OpenOptions::new().append(true).open(data.join("events.log")).unwrap();
    file.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, 9, 9, 9]).unwrap();
    drop(file);

    let mut running = start(&data, &log).await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("torn or corrupted tail"), "warning logged:\n{text}");
    let loaded = running.store.load_stream("s").await.unwrap();
    assert_eq!(loaded.events.len(), 10);
    running
        .store
        .append(
            "s",
            ExpectedVersion::Exact(9),
            &[NewEvent::json(Uuid::new_v4(), "E", &json!({"n": 10})).unwrap()],
        )
        .await
        .unwrap();
    running.child.start_kill().unwrap();
    running.child.wait().await.unwrap();
    let running = start(&data, &log).await;
    assert_eq!(running.store.load_stream("s").await.unwrap().events.len(), 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_last_frame_with_a_bad_checksum_is_dropped_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("server.log");
    let mut running = start(&data, &log).await;
    let store = running.store.clone();
    store
        .append(
            "s",
            ExpectedVersion::NoStream,
            &[NewEvent::json(Uuid::new_v4(), "E", &json!({"n": 0})).unwrap()],
        )
        .await
        .unwrap();
    store
        .append(
            "s",
            ExpectedVersion::Exact(0),
            &[NewEvent::json(Uuid::new_v4(), "E", &json!({"n": 1})).unwrap()],
        )
        .await
        .unwrap();
    running.child.start_kill().unwrap();
    running.child.wait().await.unwrap();

    // Flip the last non-zero byte (the zeros after it are preallocation):
    // the closing brace of the last event's data, inside the last frame.
    let path = data.join("events.log");
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.iter().rposition(|&b| b != 0).unwrap();
    assert_eq!(bytes[last], b'}');
    bytes[last] ^= 0xFF;
    std::fs::write(&path, &bytes).unwrap();

    let running = start(&data, &log).await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("ChecksumMismatch"), "warning names the damage:\n{text}");
    let loaded = running.store.load_stream("s").await.unwrap();
    assert_eq!(loaded.events.len(), 1, "the damaged frame is not served");
    assert_eq!(loaded.events[0].json::<Value>().unwrap(), json!({"n": 0}));
}
