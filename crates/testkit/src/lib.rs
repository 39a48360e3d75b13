//! Test helpers that start the real parts a test crosses.
//!
//! [`NatsServer`] runs `nats-server -js` on a free loopback port with its own
//! temporary JetStream store, waits until it accepts connections, and kills it
//! on drop — the same approach as nats.rs's own test helper. No fake bus.

use std::{
    io,
    net::{SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

/// How long a freshly started server may take to accept connections.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// A real `nats-server` with JetStream, owned by one test.
pub struct NatsServer {
    child: Child,
    addr: SocketAddr,
    _store: tempfile::TempDir,
}

impl NatsServer {
    /// Starts `nats-server -js` (found on `PATH`, in `/usr/sbin` or via
    /// `NATS_SERVER_BIN`) on a free port. Panics with an install hint when the
    /// binary is missing: a test that needs NATS must not silently pass.
    pub fn start() -> NatsServer {
        let store = tempfile::tempdir().expect("temp dir for the JetStream store");
        let port = free_port();
        let bin = nats_server_bin();
        let child = Command::new(&bin)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {}: {e}. Install it: `apt-get install nats-server` \
                     (or put nats-server on PATH / set NATS_SERVER_BIN)",
                    bin.display()
                )
            });
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut server = NatsServer { child, addr, _store: store };
        server.wait_ready();
        server
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("nats-server exited at start: {status}");
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(100)).is_ok() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!("nats-server did not listen on {} within {STARTUP_TIMEOUT:?}", self.addr);
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

fn nats_server_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("NATS_SERVER_BIN") {
        return PathBuf::from(p);
    }
    for dir in std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/bin")])
    {
        let candidate = dir.join("nats-server");
        if candidate.is_file() {
            return candidate;
        }
    }
    PathBuf::from("nats-server")
}

/// Waits until `f` returns `Some`, polling every 10 ms, up to `timeout`.
/// For waiting on another process's effect (not for standing in for a clock).
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> io::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "condition not met in time"));
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// The `switchboard` binary of this workspace, built (once per test process)
/// with the same cargo that runs the tests, so end-to-end tests always drive
/// the current code.
pub fn switchboard_bin() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let status = Command::new(cargo)
                .args(["build", "--quiet", "-p", "switchboard", "--bin", "switchboard"])
                .current_dir(&workspace)
                .status()
                .expect("run cargo build for the switchboard binary");
            assert!(status.success(), "cargo build -p switchboard failed");
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| workspace.join("target"));
            target.join("debug").join("switchboard")
        })
        .clone()
}

/// A child process killed (SIGKILL) when dropped, unless it already exited.
pub struct ChildGuard(pub Child);

impl ChildGuard {
    pub fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
