//! The binary as an operator meets it: help, configuration errors, `dev`.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use testkit::{ChildGuard, NatsServer, free_port, switchboard_bin};

fn switchboard() -> Command {
    let mut cmd = Command::new(switchboard_bin());
    // A clean environment: no SWITCHBOARD_* from the developer's shell.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("SWITCHBOARD_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

#[test]
fn help_explains_every_subcommand() {
    let out = switchboard().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("dev"), "{text}");
    let out = switchboard().args(["dev", "--help"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("SWITCHBOARD_NATS_URL"), "{text}");
    assert!(text.contains("SWITCHBOARD_DATA_DIR"), "{text}");
}

#[test]
fn a_bad_configuration_value_exits_non_zero_with_one_line() {
    for (var, value) in
        [("SWITCHBOARD_NATS_URL", "localhost:4222"), ("SWITCHBOARD_LOG_FORMAT", "xml")]
    {
        let out = switchboard().arg("dev").env(var, value).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}={value}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "one line, got: {err}");
        assert!(err.contains(value), "names the bad value: {err}");
        assert!(out.stdout.is_empty(), "nothing started");
    }
}

#[test]
fn an_unknown_subcommand_is_refused() {
    let out = switchboard().arg("frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// Reads the child's stdout until a line contains `needle`.
fn wait_for_line(child: &mut ChildGuard, needle: &str) -> Vec<String> {
    let stdout = child.0.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(30)) {
        let done = line.contains(needle);
        seen.push(line);
        if done {
            return seen;
        }
    }
    panic!("no line with {needle:?}; saw {seen:?}");
}

#[test]
fn dev_starts_its_own_nats_when_none_answers_and_stops_on_sigterm() {
    let data = tempfile_dir();
    let port = free_port();
    let mut child = ChildGuard(
        switchboard()
            .args(["dev", "--nats-url", &format!("nats://127.0.0.1:{port}")])
            .args(["--eventstore-url", &format!("http://127.0.0.1:{}", free_port())])
            .args(["--gateway-listen", &format!("127.0.0.1:{}", free_port())])
            .args(["--sandbox-listen", &format!("127.0.0.1:{}", free_port()), "--data-dir"])
            .arg(&data)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let lines = wait_for_line(&mut child, "Press Ctrl-C");
    assert!(lines.iter().any(|l| l.contains("SB_EVENTS")), "{lines:?}");
    // The NATS it started answers with JetStream at that port.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    assert!(data.join("nats").join("jetstream").is_dir());
    assert!(
        data.join("eventstore").is_dir(),
        "the embedded event store keeps its log in the data dir"
    );

    terminate(&mut child);
    // Its nats-server went with it.
    let gone = testkit::wait_for(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err().then_some(())
    });
    assert!(gone.is_ok(), "nats-server started by dev must stop with it");
}

#[test]
fn dev_uses_a_nats_that_already_answers() {
    let nats = NatsServer::start();
    let data = tempfile_dir();
    let mut child = ChildGuard(
        switchboard()
            .args(["dev", "--nats-url", &nats.url()])
            .args(["--eventstore-url", &format!("http://127.0.0.1:{}", free_port())])
            .args(["--gateway-listen", &format!("127.0.0.1:{}", free_port())])
            .args(["--sandbox-listen", &format!("127.0.0.1:{}", free_port()), "--data-dir"])
            .arg(&data)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_line(&mut child, "Press Ctrl-C");
    assert!(!data.join("nats").exists(), "no second nats-server");
    terminate(&mut child);
}

fn terminate(child: &mut ChildGuard) {
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exit = child.0.wait().unwrap();
    assert!(exit.success(), "graceful exit on SIGTERM: {exit}");
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sb-e2e-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
