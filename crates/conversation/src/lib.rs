//! The conversation service. `domain` holds the rules as pure `decide` /
//! `evolve` functions (no I/O, no clock, no random ids: those arrive in
//! commands); `wire` converts between domain events and the `switchboard.v1`
//! contract.

pub mod domain;
