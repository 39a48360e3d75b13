//! `just bench-eventlog`: durable append throughput and latency of the
//! embedded event store over HTTP, the time to read 1,000,000 events back from
//! `$all`, and — for comparison — the raw fsync rate of the disk under it.
//!
//! Everything runs on this machine: the server in one Tokio runtime, the
//! clients (the real `HttpEventStore`) in another, both over loopback HTTP.
//!
//! Usage: `eventlog-bench [--secs N] [--writers 1,16,256] [--read-events N] [--dir DIR]`
//! (`BENCH_SERVER_THREADS` / `BENCH_CLIENT_THREADS` size the two runtimes, 2 each by default).
//!
//! The figures depend on what else the machine is doing: run it on a quiet one.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use eventlog::server::{Auth, Server, ServerConfig};
use eventlog::{
    AllFilter, AllPosition, EventStore, ExpectedVersion, HttpEventStore, HttpEventStoreConfig,
    NewEvent,
};
use uuid::Uuid;

/// Appends before this are not measured (connections are being opened).
const WARMUP: Duration = Duration::from_millis(500);
/// Concurrency levels of the append benchmark.
const WRITERS: [usize; 3] = [1, 16, 256];
/// Events per request while filling the log for the read benchmark.
const FILL_BATCH_EVENTS: usize = 1000;
/// Concurrent fill requests.
const FILL_WRITERS: usize = 4;
/// Page size of the `$all` read (the API's maximum).
const READ_PAGE_EVENTS: usize = 4096;

struct Args {
    writers: Vec<usize>,
    secs: u64,
    read_events: usize,
    dir: PathBuf,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        writers: WRITERS.to_vec(),
        secs: 5,
        read_events: 1_000_000,
        dir: std::env::temp_dir(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--secs" => args.secs = value.parse().map_err(|e| format!("--secs: {e}"))?,
            "--read-events" => {
                args.read_events = value.parse().map_err(|e| format!("--read-events: {e}"))?;
            }
            "--dir" => args.dir = value.into(),
            "--writers" => {
                args.writers = value
                    .split(',')
                    .map(|w| w.trim().parse().map_err(|e| format!("--writers: {e}")))
                    .collect::<Result<_, _>>()?;
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

/// A realistic small event: ~120 bytes of JSON.
fn event(seq: u64) -> NewEvent {
    let data = serde_json::json!({
        "conversationId": "5d9f0c1e-7b1a-4c55-9b0e-2f6a8c7e1a01",
        "agentId": "agent-17",
        "at": "2026-11-25T10:00:01.123Z",
        "seq": seq,
    });
    NewEvent::json(Uuid::new_v4(), "OfferAccepted", &data).unwrap_or_else(|e| panic!("{e}"))
}

/// Writes 256 bytes + `fdatasync` in a loop for `for_how_long`: appending to
/// a growing file, or (`preallocated`) over zeros written beforehand, as the
/// store's writer does.
fn fsync_rate(
    dir: &Path,
    for_how_long: Duration,
    preallocated: bool,
) -> std::io::Result<FsyncResult> {
    use std::os::unix::fs::FileExt as _;
    let path = dir.join("fsync-probe");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)?;
    if preallocated {
        file.write_all_at(&vec![0u8; 64 * 1024 * 1024], 0)?;
        file.sync_all()?;
    }
    let block = [7u8; 256];
    let start = Instant::now();
    let mut latencies = Vec::new();
    while start.elapsed() < for_how_long {
        let t = Instant::now();
        file.write_all_at(&block, latencies.len() as u64 * 256)?;
        file.sync_data()?;
        latencies.push(t.elapsed());
    }
    let elapsed = start.elapsed();
    std::fs::remove_file(&path)?;
    latencies.sort_unstable();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    Ok(FsyncResult {
        per_sec: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: pct(0.5),
        p99: pct(0.99),
    })
}

struct FsyncResult {
    per_sec: f64,
    p50: Duration,
    p99: Duration,
}

struct AppendResult {
    writers: usize,
    appends: usize,
    per_sec: f64,
    p50: Duration,
    p99: Duration,
}

/// Each writer appends single events to its own stream, expecting the
/// version it last wrote, back to back. The first [`WARMUP`] (connections
/// opening) is not counted.
async fn append_load(store: &HttpEventStore, writers: usize, secs: u64) -> AppendResult {
    let measure_from = Instant::now() + WARMUP;
    let deadline = measure_from + Duration::from_secs(secs);
    let mut tasks = Vec::with_capacity(writers);
    for w in 0..writers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let stream = format!("bench-{writers}-{w}");
            let mut expected = ExpectedVersion::NoStream;
            let mut latencies = Vec::with_capacity(4096);
            let mut seq = 0;
            loop {
                let t = Instant::now();
                if t >= deadline {
                    break;
                }
                match store.append(&stream, expected, &[event(seq)]).await {
                    Ok(r) => expected = r.next_expected_version,
                    Err(e) => panic!("append failed: {e}"),
                }
                if t >= measure_from {
                    latencies.push(t.elapsed());
                }
                seq += 1;
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_else(|e| panic!("{e}")));
    }
    let elapsed = measure_from.elapsed();
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1))).copied()
    };
    AppendResult {
        writers,
        appends: all.len(),
        per_sec: all.len() as f64 / elapsed.as_secs_f64(),
        p50: pct(0.50).unwrap_or_default(),
        p99: pct(0.99).unwrap_or_default(),
    }
}

async fn fill(store: &HttpEventStore, events: usize) -> Duration {
    let started = Instant::now();
    let batches = events.div_ceil(FILL_BATCH_EVENTS);
    let mut tasks = Vec::new();
    for w in 0..FILL_WRITERS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut b = w;
            let mut expected = ExpectedVersion::NoStream;
            while b < batches {
                let n = FILL_BATCH_EVENTS.min(events - b * FILL_BATCH_EVENTS);
                let batch: Vec<NewEvent> =
                    (0..n).map(|i| event((b * FILL_BATCH_EVENTS + i) as u64)).collect();
                let stream = format!("fill-{w}");
                match store.append(&stream, expected, &batch).await {
                    Ok(r) => expected = r.next_expected_version,
                    Err(e) => panic!("fill failed: {e}"),
                }
                b += FILL_WRITERS;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap_or_else(|e| panic!("{e}"));
    }
    started.elapsed()
}

async fn read_all(store: &HttpEventStore) -> (usize, Duration) {
    let started = Instant::now();
    let mut pos = AllPosition::START;
    let mut n = 0;
    loop {
        let slice = store
            .read_all_forward(pos, READ_PAGE_EVENTS, &AllFilter::None, None)
            .await
            .unwrap_or_else(|e| panic!("read failed: {e}"));
        n += slice.events.len();
        pos = slice.next_position;
        if slice.head_of_stream || slice.events.is_empty() {
            break;
        }
    }
    (n, started.elapsed())
}

fn start_server(
    rt: &tokio::runtime::Runtime,
    dir: PathBuf,
) -> (String, tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let server = rt
        .block_on(Server::bind(ServerConfig {
            data_dir: dir,
            listen: "127.0.0.1:0".parse().unwrap_or_else(|e| panic!("{e}")),
            auth: Auth::default(),
        }))
        .unwrap_or_else(|e| panic!("cannot start the server: {e}"));
    let url = format!("http://{}", server.local_addr());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = rt.spawn(async move {
        let _ = server
            .run(async {
                let _ = rx.await;
            })
            .await;
    });
    (url, tx, task)
}

fn client(url: &str) -> HttpEventStore {
    HttpEventStore::new(HttpEventStoreConfig::new(url).with_credentials("admin", "changeit"))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let root = args.dir.join(format!("eventlog-bench-{}-{stamp}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap_or_else(|e| panic!("{}: {e}", root.display()));
    let threads = |var: &str| std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(2);
    let build = |name: &str| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads(&format!("BENCH_{}_THREADS", name.to_uppercase())))
            .thread_name(name)
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let server_rt = build("server");
    let client_rt = build("client");

    eprintln!("measuring the disk's fsync rate…");
    let appending =
        fsync_rate(&root, Duration::from_secs(1), false).unwrap_or_else(|e| panic!("{e}"));
    let overwriting =
        fsync_rate(&root, Duration::from_secs(1), true).unwrap_or_else(|e| panic!("{e}"));

    let (url, stop, _) = start_server(&server_rt, root.join("appends"));
    let store = client(&url);
    let mut appends = Vec::new();
    for &writers in &args.writers {
        eprintln!("appending from {writers} writers for {} s…", args.secs);
        appends.push(client_rt.block_on(append_load(&store, writers, args.secs)));
    }
    let _ = stop.send(());

    let (url, stop, read_server) = start_server(&server_rt, root.join("read"));
    let store = client(&url);
    eprintln!("filling a fresh log with {} events…", args.read_events);
    let fill_time = client_rt.block_on(fill(&store, args.read_events));
    eprintln!("reading them back from $all…");
    let (read, read_time) = client_rt.block_on(read_all(&store));
    let _ = stop.send(());
    let _ = server_rt.block_on(read_server);
    eprintln!("restarting on that log…");
    let started = Instant::now();
    let reopened = server_rt.block_on(Server::bind(ServerConfig {
        data_dir: root.join("read"),
        listen: "127.0.0.1:0".parse().unwrap_or_else(|e| panic!("{e}")),
        auth: Auth::default(),
    }));
    let recovery_time = started.elapsed();
    drop(reopened.unwrap_or_else(|e| panic!("restart failed: {e}")));
    drop(client_rt);
    drop(server_rt);
    let _ = std::fs::remove_dir_all(&root);

    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    println!();
    println!(
        "eventlog benchmark — {cores} cores, durable (fdatasync before every acknowledgement), HTTP over loopback, single-event appends"
    );
    println!();
    println!("| measurement | result | p50 | p99 | goal |");
    println!("|---|---:|---:|---:|---|");
    println!(
        "| disk: append 256 B + fdatasync, one thread | {:.0} fsyncs/s | {} | {} | (reference) |",
        appending.per_sec,
        ms(appending.p50),
        ms(appending.p99)
    );
    println!(
        "| disk: 256 B over preallocated zeros + fdatasync (what the store does) | {:.0} fsyncs/s | {} | {} | (reference) |",
        overwriting.per_sec,
        ms(overwriting.p50),
        ms(overwriting.p99)
    );
    for r in &appends {
        let goal = match r.writers {
            1 => "≥ 2,000/s",
            16 => "p99 ≤ 5 ms",
            256 => "≥ 25,000/s",
            _ => "",
        };
        println!(
            "| appends, {} concurrent writer{} ({} appends) | {:.0} appends/s | {} | {} | {goal} |",
            r.writers,
            if r.writers == 1 { "" } else { "s" },
            r.appends,
            r.per_sec,
            ms(r.p50),
            ms(r.p99)
        );
    }
    println!(
        "| fill: {} events in batches of {FILL_BATCH_EVENTS} | {:.0} events/s | | | |",
        args.read_events,
        args.read_events as f64 / fill_time.as_secs_f64()
    );
    println!(
        "| read {read} events from $all (pages of {READ_PAGE_EVENTS}) | {:.2} s ({:.0} events/s) | | | ≤ 2 s |",
        read_time.as_secs_f64(),
        read as f64 / read_time.as_secs_f64()
    );
    println!(
        "| restart: scan and index a log of {} events | {:.2} s | | | |",
        args.read_events,
        recovery_time.as_secs_f64()
    );
}
