//! The conversation service. `domain` holds the rules as pure `decide` /
//! `evolve` functions (no I/O, no clock, no random ids: those arrive in
//! commands); `wire` converts between domain events and the `switchboard.v1`
//! contract; `service` is the thin shell that serves commands over NATS
//! and keeps the log and the bus in step through the kernel.

pub mod domain;
pub mod service;
pub mod wire;
