//! Wrap-up (PRODUCT.md B7.1–B7.5): the managed list of wrap-up reasons and
//! what each agent owes after leaving a conversation.
//!
//! - [`domain`]: the rules as pure `decide`/`evolve`, for the reason catalogue
//!   ([`domain::catalogue`], stream `config-wrapup-reasons`) and for each
//!   agent's pending wrap-ups ([`domain::pending`], stream `wrapup-<agentId>`);
//!   no I/O, no clock, no ids made here.
//! - [`wire`]: the mapping to and from the `switchboard.v1` contract.
//!
//! The service shell (NATS commands, the event log, auto wrap-up timers)
//! builds on these two.

pub mod domain;
pub mod service;
pub mod wire;

pub use domain::catalogue::{self, Reason, ReasonStatus};
pub use domain::pending::{self, LeaveReason, OwedWrapup, SlotRelease};
pub use domain::{
    Actor, AgentId, ConversationId, Error, ErrorKind, ReasonCode, SupervisorId, WrapupId,
};
