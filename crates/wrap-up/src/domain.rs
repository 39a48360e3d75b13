//! The wrap-up rules (PRODUCT.md B7.1–B7.5), as pure functions over two kinds
//! of aggregate:
//!
//! - [`catalogue`]: the managed list of wrap-up reasons (stream
//!   `config-wrapup-reasons`, one aggregate);
//! - [`pending`]: what one agent owes (stream `wrapup-<agentId>`, one
//!   aggregate per agent).
//!
//! Each has `decide(&State, &Command) -> Result<Vec<Event>, Error>` and
//! `evolve(State, &Event) -> State`. Nothing here reads a clock, makes an id or
//! does I/O: `now_ms`, wrap-up ids, the auto wrap-up deadline and reason, and
//! what the catalogue says about a reason all come in the command. A test keeps
//! these files free of I/O (`purity_guard`).

pub mod catalogue;
pub mod pending;

use std::fmt;

/// Longest wrap-up note, in characters (Unicode scalar values).
pub const MAX_NOTE_CHARS: usize = 2000;
/// Longest reason code, in characters.
pub const MAX_CODE_CHARS: usize = 64;
/// Longest reason label, in characters.
pub const MAX_LABEL_CHARS: usize = 200;
/// The system reason an automatic wrap-up records unless configured (B7.4).
pub const DEFAULT_AUTO_REASON: &str = "auto";
/// Auto wrap-up time unless configured (B7.4); 0 disables it.
pub const DEFAULT_AUTO_WRAPUP_SECS: u32 = 120;

macro_rules! id_newtype {
    ($($(#[$doc:meta])* $name:ident),+ $(,)?) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub String);

        impl $name {
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    )+};
}

id_newtype!(
    /// An agent id; the aggregate id of stream `wrapup-<id>`.
    AgentId,
    /// A supervisor id.
    SupervisorId,
    /// A conversation id.
    ConversationId,
    /// One owed wrap-up: one leave of one agent from one conversation (B7.1).
    /// Made by the service, deterministically from the event that caused the
    /// leave, so a repeated reaction owes nothing twice.
    WrapupId,
    /// A wrap-up reason code, e.g. `resolved`.
    ReasonCode,
);

/// Who made a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    Agent(AgentId),
    Supervisor(SupervisorId),
    System,
}

/// How a refusal maps onto the API (proto `ErrorKind`, HTTP status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Malformed request (400).
    Invalid,
    /// The referenced thing does not exist (404).
    NotFound,
    /// Conflicts with the current state (409).
    Conflict,
    /// Well-formed but breaks a rule (422).
    Rule,
    /// The actor may not do this (403).
    Forbidden,
}

/// A domain refusal, for both aggregates. A refused command changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    // -- catalogue --
    #[error(
        "reason code must be 1 to {MAX_CODE_CHARS} characters of a-z, 0-9, `_` or `-`, starting with a letter or digit"
    )]
    InvalidCode,
    #[error("reason label must be 1 to {MAX_LABEL_CHARS} characters and not blank")]
    InvalidLabel,
    #[error("`{0}` is the system reason of automatic wrap-ups, not a managed reason")]
    ReservedReasonCode(ReasonCode),
    #[error("no wrap-up reason `{0}` to retire")]
    NoSuchReason(ReasonCode),
    #[error("only supervisors manage wrap-up reasons")]
    SupervisorOnly,
    // -- submission --
    #[error("a wrap-up needs a reason")]
    ReasonRequired,
    #[error("no wrap-up reason `{0}`")]
    UnknownReason(ReasonCode),
    #[error("wrap-up reason `{0}` is retired")]
    ReasonRetired(ReasonCode),
    #[error("the note is {0} characters; the limit is {MAX_NOTE_CHARS}")]
    NoteTooLong(usize),
    #[error("no wrap-up is owed for conversation {0}")]
    NothingOwed(ConversationId),
    #[error("the wrap-up for conversation {0} was already submitted")]
    WrapupAlreadySubmitted(ConversationId),
    // -- owing and auto wrap-up --
    #[error("wrap-up {0} is already owed for another conversation")]
    WrapupIdReused(WrapupId),
    #[error("no wrap-up {0} was ever owed")]
    UnknownWrapup(WrapupId),
    #[error("wrap-up {0} is not due for automatic submission")]
    AutoWrapupNotDue(WrapupId),
}

impl Error {
    /// Stable snake_case code (GATEWAY-API.md errors).
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidCode => "invalid_code",
            Error::InvalidLabel => "invalid_label",
            Error::ReservedReasonCode(_) => "reserved_reason_code",
            Error::NoSuchReason(_) => "unknown_reason",
            Error::SupervisorOnly => "supervisor_only",
            Error::ReasonRequired => "reason_required",
            Error::UnknownReason(_) => "unknown_reason",
            Error::ReasonRetired(_) => "reason_retired",
            Error::NoteTooLong(_) => "note_too_long",
            Error::NothingOwed(_) => "nothing_owed",
            Error::WrapupAlreadySubmitted(_) => "wrapup_already_submitted",
            Error::WrapupIdReused(_) => "wrapup_id_reused",
            Error::UnknownWrapup(_) => "unknown_wrapup",
            Error::AutoWrapupNotDue(_) => "auto_wrapup_not_due",
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidCode
            | Error::InvalidLabel
            | Error::ReasonRequired
            | Error::NoteTooLong(_) => ErrorKind::Invalid,
            Error::UnknownWrapup(_) | Error::NoSuchReason(_) => ErrorKind::NotFound,
            Error::NothingOwed(_)
            | Error::WrapupAlreadySubmitted(_)
            | Error::WrapupIdReused(_)
            | Error::AutoWrapupNotDue(_) => ErrorKind::Conflict,
            Error::UnknownReason(_) | Error::ReasonRetired(_) | Error::ReservedReasonCode(_) => {
                ErrorKind::Rule
            }
            Error::SupervisorOnly => ErrorKind::Forbidden,
        }
    }
}
