//! Agent presence (PRODUCT.md B1): who is logged in, Idle (with a reason),
//! Available or in RONA, and which chat slots each agent holds.
//!
//! - [`domain`]: the rules as pure `decide`/`evolve` over one agent's stream
//!   (`agent-<agentId>`); no I/O, no clock, no ids made here.
//! - [`wire`]: the mapping to and from the `switchboard.v1` contract.
//!
//! The service shell (NATS commands, the event log) builds on these two.

pub mod domain;
pub mod service;
pub mod wire;

pub use domain::{
    Actor, Agent, AgentId, Choice, Command, ConversationId, Error, ErrorKind, Event, Holding,
    OfferId, Presence, PresenceKind, Profile, Release, ReleaseCause, State, SupervisorId, WrapupId,
    decide, evolve, replay,
};
