//! End-to-end tests of Switchboard: the real `switchboard` binary, as a user
//! runs it, against a real `nats-server` (started per test by `testkit`).
//! Each file here is one test target; see `Cargo.toml`.
//!
//! [`Cluster`] runs the embedded event store and each service as its own
//! process (`switchboard eventstore`, `switchboard serve <service>`), with
//! every service on a manual clock that the test moves by publishing on the
//! test-clock subject — so offer expiry and auto wrap-up are driven by the
//! test, never by sleeping.

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::TcpStream,
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

pub mod drive;

use bus::{Bus, BusConfig};
use futures_util::StreamExt;
use prost::Message;
use sb_proto::Service;
use testkit::{ChildGuard, NatsServer, free_port, switchboard_bin};

/// Test time starts here (2025-11-24T16:00:00Z).
pub const T0: i64 = 1_764_000_000_000;

pub const SERVICES: [&str; 4] = ["agent-presence", "wrap-up", "conversation", "routing"];

pub struct Cluster {
    pub nats: NatsServer,
    pub data: tempfile::TempDir,
    pub store_url: String,
    store_port: u16,
    store: Option<ChildGuard>,
    services: BTreeMap<String, (ChildGuard, u16)>,
    pub bus: Bus,
    now: i64,
    /// Extra environment for every service (e.g. the auto wrap-up time).
    pub env: Vec<(String, String)>,
}

impl Cluster {
    /// NATS and the event store; no service yet.
    pub async fn start() -> Cluster {
        let nats = NatsServer::start();
        let data = tempfile::tempdir().expect("temp dir");
        let store_port = free_port();
        let bus = Bus::connect(BusConfig::new(nats.url())).await.expect("bus");
        bus.ensure_events_stream().await.expect("SB_EVENTS");
        let mut cluster = Cluster {
            nats,
            data,
            store_url: format!("http://127.0.0.1:{store_port}"),
            store_port,
            store: None,
            services: BTreeMap::new(),
            bus,
            now: T0,
            env: vec![],
        };
        cluster.start_store();
        cluster
    }

    pub fn start_store(&mut self) {
        let child = Command::new(switchboard_bin())
            .args(["eventstore", "--data"])
            .arg(self.data.path())
            .args(["--listen", &format!("127.0.0.1:{}", self.store_port)])
            .stdout(Stdio::null())
            .stderr(log_file(self.data.path(), "eventstore"))
            .spawn()
            .expect("spawn eventstore");
        self.store = Some(ChildGuard(child));
        wait_http(self.store_port, "/ping");
    }

    /// Starts (or restarts) `service` and waits until it is ready.
    pub async fn start_service(&mut self, service: &str) {
        self.start_replica(service, service).await;
    }

    /// Starts one more process of `service`, known to the cluster as `name`
    /// (replicas share the work through NATS queue groups).
    pub async fn start_replica(&mut self, name: &str, service: &str) {
        let health = free_port();
        let mut cmd = Command::new(switchboard_bin());
        cmd.args([
            "serve",
            service,
            "--nats-url",
            &self.nats.url(),
            "--eventstore-url",
            &self.store_url,
        ])
        .args(["--health-listen", &format!("127.0.0.1:{health}"), "--clock", "manual"])
        .env(
            "RUST_LOG",
            std::env::var("E2E_RUST_LOG").unwrap_or_else(|_| "info,async_nats=warn".into()),
        )
        .stdout(Stdio::null())
        .stderr(log_file(self.data.path(), name));
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn service");
        self.services.insert(name.to_owned(), (ChildGuard(child), health));
        wait_http(health, "/healthz");
        // A fresh manual clock starts at 0: tell it the time, then wait for readiness.
        self.set_time(self.now).await;
        wait_http(health, "/readyz");
    }

    pub async fn start_all(&mut self) {
        for s in SERVICES {
            self.start_service(s).await;
        }
    }

    /// SIGKILL: the process gets no chance to clean up.
    pub fn kill(&mut self, service: &str) {
        if let Some((mut child, _)) = self.services.remove(service) {
            let _ = child.0.kill();
            let _ = child.0.wait();
        }
    }

    pub fn kill_store(&mut self) {
        if let Some(mut child) = self.store.take() {
            let _ = child.0.kill();
            let _ = child.0.wait();
        }
    }

    pub fn now(&self) -> i64 {
        self.now
    }

    /// Moves every service's clock to `ms` and waits until each has it
    /// (asking again if a service had not subscribed yet).
    pub async fn set_time(&mut self, ms: i64) {
        self.now = ms;
        let client = self.bus.client().clone();
        for _round in 0..50 {
            let inbox = client.new_inbox();
            let mut replies = client.subscribe(inbox.clone()).await.expect("subscribe inbox");
            client
                .publish_with_reply(bus::subjects::TEST_CLOCK, inbox, ms.to_string().into())
                .await
                .expect("publish time");
            client.flush().await.expect("flush");
            let mut confirmed = 0;
            let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
            while confirmed < self.services.len() {
                match tokio::time::timeout_at(deadline, replies.next()).await {
                    Ok(Some(m)) => {
                        if std::str::from_utf8(&m.payload).ok().and_then(|s| s.parse::<i64>().ok())
                            >= Some(ms)
                        {
                            confirmed += 1;
                        }
                    }
                    _ => break,
                }
            }
            if confirmed >= self.services.len() {
                return;
            }
        }
        panic!("not every service confirmed the time {ms}");
    }

    pub async fn advance(&mut self, by: Duration) {
        self.set_time(self.now + by.as_millis() as i64).await;
    }

    /// Sends a command; panics with the refusal if it is refused.
    pub async fn call<C: Message, R: Message + Default>(
        &self,
        service: Service,
        verb: &str,
        command: &C,
    ) -> R {
        match kernel::commands::call(&self.bus, service, verb, command, None).await {
            Ok(r) => r,
            Err(e) => panic!("{service} {verb} refused: {e}"),
        }
    }

    /// Sends a command expected to be refused; returns the error code.
    pub async fn refused<C: Message>(&self, service: Service, verb: &str, command: &C) -> String {
        match kernel::commands::call::<C, sb_proto::v1::CommandReply>(
            &self.bus, service, verb, command, None,
        )
        .await
        {
            Ok(_) => panic!("{service} {verb} was accepted"),
            Err(e) => e.code().to_owned(),
        }
    }

    /// The event store client the services use.
    pub fn store(&self) -> eventlog::HttpEventStore {
        eventlog::HttpEventStore::new(
            eventlog::HttpEventStoreConfig::new(&self.store_url)
                .with_credentials("admin", "changeit"),
        )
        .expect("store client")
    }

    /// Every event of the streams starting with `prefix`, in log order.
    pub async fn events(&self, prefix: &str) -> Vec<eventlog::RecordedEvent> {
        use eventlog::EventStore;
        let store = self.store();
        let filter = eventlog::AllFilter::StreamPrefixes(vec![prefix.to_owned()]);
        let mut out = Vec::new();
        let mut position = eventlog::AllPosition::START;
        loop {
            let page =
                store.read_all_forward(position, 1000, &filter, None).await.expect("read $all");
            let n = page.events.len();
            out.extend(page.events);
            if page.head_of_stream || n == 0 {
                return out;
            }
            position = page.next_position;
        }
    }

    /// Where each process writes its log (printed on failure).
    pub fn logs(&self) -> PathBuf {
        self.data.path().to_owned()
    }
}

/// Polls `f` until it gives `Some` (another process's effect), up to 40 s (a reaction lost with a killed process comes back after the 5 s ack wait; an orphaned slot after 15 s).
pub async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn log_file(dir: &std::path::Path, name: &str) -> Stdio {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{name}.log")))
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::null())
}

/// Waits until `GET path` on 127.0.0.1:`port` answers 200.
fn wait_http(port: u16, path: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n");
            let mut answer = String::new();
            let _ = s.read_to_string(&mut answer);
            if answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200") {
                return;
            }
        }
        assert!(Instant::now() < deadline, "127.0.0.1:{port}{path} not ready");
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Cluster {
    /// On a failed test, show the tail of every process's log.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let Ok(entries) = std::fs::read_dir(self.data.path()) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "log") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                eprintln!("==== {} (last 40 lines) ====", path.display());
                for line in &lines[lines.len().saturating_sub(
                    std::env::var("E2E_LOG_LINES").ok().and_then(|n| n.parse().ok()).unwrap_or(40),
                )..]
                {
                    eprintln!("{line}");
                }
            }
        }
    }
}
