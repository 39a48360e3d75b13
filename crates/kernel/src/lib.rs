//! The kernel: what every Switchboard service shares, so each service is its
//! pure domain plus a thin shell.
//!
//! - [`aggregate`]: load → decide → append with the expected version, retried
//!   on conflict ([`aggregate::Repository`]).
//! - [`follow`]: read models rebuilt from the log on start and kept following;
//!   the relay that publishes every appended event on `SB_EVENTS`.
//! - [`commands`]: NATS request/reply serving with bounded concurrency, a
//!   tracing span per command, and typed replies.
//! - [`react`]: durable, idempotent consumption of other services' events.
//! - [`deadlines`]: timers stored in events, fired by the service (also late,
//!   after a restart).
//! - [`health`]: `/healthz`, `/readyz`, `/metrics`; [`metrics`]: counters.
//! - [`clock`]: time as an input, with a manual clock for tests.
//! - [`Shutdown`] / [`Readiness`]: graceful drain on SIGTERM, readiness flags.

pub mod aggregate;
pub mod clock;
pub mod commands;
pub mod deadlines;
pub mod follow;
pub mod health;
pub mod metrics;
pub mod react;

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

pub use clock::{Clock, Millis};
use sb_proto::v1::ErrorKind;
use tokio::sync::watch;

/// A domain refusal: a stable code (GATEWAY-API.md) and a class.
pub trait DomainError: std::fmt::Display + std::fmt::Debug {
    fn code(&self) -> &'static str;
    fn kind(&self) -> ErrorKind;
}

/// A shutdown signal every task of a service watches.
#[derive(Clone, Debug)]
pub struct Shutdown(watch::Receiver<bool>);

/// Triggers [`Shutdown`].
#[derive(Clone, Debug)]
pub struct ShutdownTrigger(Arc<watch::Sender<bool>>);

impl Shutdown {
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (ShutdownTrigger(Arc::new(tx)), Shutdown(rx))
    }

    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once shutdown was triggered (at once if it already was).
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

impl ShutdownTrigger {
    pub fn trigger(&self) {
        let _ = self.0.send(true);
    }
}

/// What a service's `run` gets from the process that hosts it.
#[derive(Clone, Debug)]
pub struct Runtime<S> {
    pub store: S,
    pub bus: bus::Bus,
    pub clock: Clock,
    pub shutdown: Shutdown,
    /// Set by the service once its read models have caught up with the log.
    pub ready: Readiness,
}

/// A readiness flag; `/readyz` answers 200 once every flag of a service is set.
#[derive(Clone, Debug, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }

    pub fn get(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// A deterministic id derived from other ids (UUID v5), so that a reaction
/// handled twice produces the same command and is recognised as a repeat.
pub fn derived_id(parts: &[&str]) -> String {
    const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x5b0a_7d1c_9e2f_4c3b_8a6d_1f0e_2d3c_4b5a);
    uuid::Uuid::new_v5(&NAMESPACE, parts.join("\u{1f}").as_bytes()).to_string()
}

/// A fresh random id (only the kernel and service shells make ids; domains get them in commands).
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_stable_and_distinct() {
        assert_eq!(derived_id(&["a", "b"]), derived_id(&["a", "b"]));
        assert_ne!(derived_id(&["a", "b"]), derived_id(&["ab"]));
        assert_ne!(derived_id(&["a", "b"]), derived_id(&["b", "a"]));
    }

    #[tokio::test]
    async fn shutdown_wakes_every_waiter() {
        let (trigger, shutdown) = Shutdown::new();
        let mut a = shutdown.clone();
        let waiter = tokio::spawn(async move { a.wait().await });
        trigger.trigger();
        waiter.await.unwrap();
        assert!(shutdown.is_triggered());
    }
}
