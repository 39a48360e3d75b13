//! The vocabulary shared by the client and the server: expected versions,
//! events as written and as read, `$all` positions and the typed error.

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use time::OffsetDateTime;
use uuid::Uuid;

/// The optimistic-concurrency condition of an append or a delete
/// (`ES-ExpectedVersion`, reference §3.3). "Version" is the event number of the
/// last event of the stream (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExpectedVersion {
    /// The stream must not exist (or be soft-deleted, which recreates it). Wire `-1`.
    NoStream,
    /// The last event of the stream must have exactly this number. Wire `N`.
    Exact(u64),
    /// No check; only weak idempotency by event id applies. Wire `-2`.
    Any,
    /// The stream must have at least one event. Wire `-4`.
    StreamExists,
}

impl ExpectedVersion {
    /// The header value: `-1`, `-2`, `-4` or `N`.
    pub fn to_header(self) -> String {
        match self {
            ExpectedVersion::NoStream => "-1".to_owned(),
            ExpectedVersion::Any => "-2".to_owned(),
            ExpectedVersion::StreamExists => "-4".to_owned(),
            ExpectedVersion::Exact(n) => n.to_string(),
        }
    }

    /// Parses a header value. `-3` (Invalid), `-5` and anything below are rejected,
    /// as the real server's header parser does for ES-24.
    pub fn from_header(value: &str) -> Option<Self> {
        match value.trim().parse::<i64>().ok()? {
            -1 => Some(ExpectedVersion::NoStream),
            -2 => Some(ExpectedVersion::Any),
            -4 => Some(ExpectedVersion::StreamExists),
            n if n >= 0 => Some(ExpectedVersion::Exact(n.unsigned_abs())),
            _ => None,
        }
    }

    /// The expected version to append after having read `last_event_number`
    /// (`None` = the stream has no event): `NoStream` or `Exact(n)`.
    pub fn after(last_event_number: Option<u64>) -> Self {
        match last_event_number {
            None => ExpectedVersion::NoStream,
            Some(n) => ExpectedVersion::Exact(n),
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::NoStream => f.write_str("no stream (-1)"),
            ExpectedVersion::Any => f.write_str("any (-2)"),
            ExpectedVersion::StreamExists => f.write_str("stream exists (-4)"),
            ExpectedVersion::Exact(n) => write!(f, "{n}"),
        }
    }
}

/// An event to append. `data` and `metadata` are JSON texts (an object or an
/// array is stored as JSON; see reference §3.1 for the other cases).
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Makes the append idempotent: re-appending the same ids is a no-op that
    /// answers with the original event numbers.
    pub event_id: Uuid,
    pub event_type: String,
    /// JSON text.
    pub data: Bytes,
    /// JSON text, or `None` for no metadata.
    pub metadata: Option<Bytes>,
}

impl NewEvent {
    /// An event whose data is `data` serialized as JSON.
    pub fn json<T: serde::Serialize + ?Sized>(
        event_id: Uuid,
        event_type: impl Into<String>,
        data: &T,
    ) -> Result<Self, serde_json::Error> {
        Ok(NewEvent {
            event_id,
            event_type: event_type.into(),
            data: Bytes::from(serde_json::to_vec(data)?),
            metadata: None,
        })
    }

    /// Adds metadata serialized as JSON.
    pub fn with_metadata<T: serde::Serialize + ?Sized>(
        mut self,
        metadata: &T,
    ) -> Result<Self, serde_json::Error> {
        self.metadata = Some(Bytes::from(serde_json::to_vec(metadata)?));
        Ok(self)
    }
}

/// An event as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    pub stream: String,
    pub event_number: u64,
    pub event_id: Uuid,
    pub event_type: String,
    /// The stored data (JSON text when `is_json`). Empty when the server sent none.
    pub data: Bytes,
    /// The stored metadata (JSON text), empty when there is none.
    pub metadata: Bytes,
    pub is_json: bool,
    /// Commit time as the server reports it.
    pub created: OffsetDateTime,
}

impl RecordedEvent {
    /// Deserializes the data as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.data)
    }
}

/// The outcome of a successful (or idempotently replayed) append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendResult {
    /// Number of the first event of the batch (from the `Location` header).
    pub first_event_number: u64,
    /// `Exact(first + n - 1)`: what to expect for the next append.
    pub next_expected_version: ExpectedVersion,
}

/// Where a stream read starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamStart {
    /// The newest event (backward reads only).
    Head,
    Number(u64),
}

/// One page of a stream.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamSlice {
    /// Oldest first, whatever the read direction.
    pub events: Vec<RecordedEvent>,
    /// Forward reads: the page reaches the current end of the stream. Backward
    /// reads: the page was read from the head (the server's `headOfStream`).
    pub head_of_stream: bool,
    /// Where the next page in the same direction starts. Forward reads always
    /// have one (poll it to follow the stream); backward reads have `None` once
    /// event 0 was reached.
    pub next: Option<u64>,
}

/// A position in `$all`: the commit and prepare positions of the transaction
/// log, written on the wire as 32 upper-case hex digits (reference §4.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct AllPosition {
    pub commit: u64,
    pub prepare: u64,
}

impl AllPosition {
    /// The start of `$all`.
    pub const START: AllPosition = AllPosition { commit: 0, prepare: 0 };
}

impl fmt::Display for AllPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016X}{:016X}", self.commit, self.prepare)
    }
}

impl FromStr for AllPosition {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || StoreError::Protocol(format!("invalid $all position {s:?}"));
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let commit = u64::from_str_radix(&s[..16], 16).map_err(|_| bad())?;
        let prepare = u64::from_str_radix(&s[16..], 16).map_err(|_| bad())?;
        Ok(AllPosition { commit, prepare })
    }
}

/// One page of `$all`.
#[derive(Debug, Clone, PartialEq)]
pub struct AllSlice {
    /// Oldest first.
    pub events: Vec<RecordedEvent>,
    /// Where the next read starts; save it as the checkpoint once `events` are
    /// processed. Equals the start position when the page was empty at the end.
    pub next_position: AllPosition,
    /// The page reached the current end of the log.
    pub head_of_stream: bool,
}

/// Which part of `$all` to read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AllFilter {
    /// Every event.
    #[default]
    None,
    /// Only events whose stream name starts with one of these prefixes
    /// (`/streams/%24all/filtered?context=streamid&type=prefix&data=…`).
    StreamPrefixes(Vec<String>),
}

/// Soft delete hides a stream (it can be recreated, numbering continues);
/// hard delete tombstones it forever (reference §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteMode {
    Soft,
    Hard,
}

/// What `/info` says about the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    pub version: String,
    pub state: String,
    pub atom_pub: bool,
}

/// Everything that can go wrong talking to the event log.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The optimistic-concurrency check failed: reload, re-decide, retry.
    /// `current` is the stream's last event number, `None` when the stream
    /// does not exist.
    #[error("wrong expected version on stream {stream:?}: expected {expected}, current {}",
        .current.map_or_else(|| "none".to_owned(), |n| n.to_string()))]
    WrongExpectedVersion { stream: String, expected: ExpectedVersion, current: Option<u64> },
    /// The stream does not exist or is soft-deleted (404).
    #[error("stream {stream:?} not found")]
    StreamNotFound { stream: String },
    /// The stream is hard-deleted (410), or `StreamExists` was asked of a
    /// soft-deleted stream.
    #[error("stream {stream:?} is deleted")]
    StreamDeleted { stream: String },
    /// 401/403: missing or wrong credentials.
    #[error("the event store refused the credentials (HTTP {status})")]
    Unauthorized { status: u16 },
    /// `/info` says AtomPub is off, so every stream request would be a 404.
    #[error(
        "the event store at {url} has the AtomPub HTTP API disabled; start it with \
         --enable-atom-pub-over-http (or EVENTSTORE_ENABLE_ATOM_PUB_OVER_HTTP=true / \
         KURRENTDB_ENABLE_ATOM_PUB_OVER_HTTP=true)"
    )]
    AtomPubDisabled { url: String },
    /// The request was rejected as malformed or too large (400 with a text
    /// body, 413, 415). A bug on our side, not retryable.
    #[error("the event store rejected the request (HTTP {status}): {message}")]
    Rejected { status: u16, message: String },
    /// Connection failure, timeout, 5xx: retryable.
    #[error("the event store is unavailable: {0}")]
    Unavailable(String),
    /// An answer we cannot understand.
    #[error("unexpected answer from the event store: {0}")]
    Protocol(String),
}

impl StoreError {
    /// Worth retrying as is (after a back-off): the store was unreachable or busy.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }

    /// An optimistic-concurrency conflict: reload and decide again.
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::WrongExpectedVersion { .. })
    }
}
