//! Load an aggregate from its stream, decide, append with the expected
//! version, and on a conflict reload and decide again — a bounded number of
//! times (STYLE rule 4).
//!
//! [`Repository`] keeps the last state and version of recently used streams,
//! so a command reads only the events appended since; streams are append-only,
//! so a cached state plus the newer events is always the current state.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, Weak},
};

use eventlog::{EventStore, ExpectedVersion, NewEvent, RecordedEvent, StoreError};
use serde::{Deserialize, Serialize};

use crate::{DomainError, clock::Millis};

/// How often a command is re-decided after losing an expected-version race.
pub const MAX_ATTEMPTS: u32 = 8;
/// Streams whose state the repository keeps in memory.
pub const CACHED_STREAMS: usize = 10_000;
/// Page size when reading a stream.
const READ_PAGE: usize = 500;

/// A domain aggregate as the kernel sees it: how its events are stored and
/// how they fold into state. `decide` is given to [`Repository::execute`].
pub trait Aggregate: Send + Sync + 'static {
    type State: Default + Clone + Send + Sync + 'static;
    type Event: Clone + Send + Sync + std::fmt::Debug + 'static;
    type Error: DomainError + Send + Sync + 'static;

    /// The event type name and its proto3 JSON, as stored in the log. `id` is
    /// the aggregate id (the stream name without its `<aggregate>-` prefix).
    fn encode(id: &str, event: &Self::Event) -> (&'static str, Vec<u8>);
    /// The inverse of `encode`; input from the log, so never a panic.
    fn decode(event_type: &str, data: &[u8]) -> Result<Self::Event, String>;
    fn evolve(state: Self::State, event: &Self::Event) -> Self::State;
}

/// Metadata stored with every event (and copied into its bus envelope).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventMetadata {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub correlation_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub causation_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub traceparent: String,
    /// When the service decided the event (its clock), Unix ms.
    #[serde(default)]
    pub occurred_at: Millis,
}

/// What a command changed.
#[derive(Debug, Clone)]
pub struct Executed<S, E> {
    pub state: S,
    /// The new events (empty when the command changed nothing).
    pub events: Vec<E>,
    /// Stream version after the command (`None`: still no stream).
    pub version: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError<E> {
    #[error("{0}")]
    Domain(E),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stream {stream} kept changing under us ({attempts} attempts)")]
    Contention { stream: String, attempts: u32 },
    #[error("stream {stream} holds an event we cannot read: {detail}")]
    Corrupt { stream: String, detail: String },
}

struct Cached<S> {
    state: S,
    version: Option<u64>,
}

/// One writer per stream inside a replica: commands on the same aggregate
/// queue here, so expected-version retries only settle races between replicas
/// (issue 11.2: contention never fails a command).
type StreamLocks = Arc<Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>>;

/// Loads and changes aggregates of one type through an [`EventStore`].
pub struct Repository<A: Aggregate, S> {
    store: S,
    cache: Arc<Mutex<HashMap<String, Cached<A::State>>>>,
    writers: StreamLocks,
}

impl<A: Aggregate, S: Clone> Clone for Repository<A, S> {
    fn clone(&self) -> Self {
        Repository {
            store: self.store.clone(),
            cache: self.cache.clone(),
            writers: self.writers.clone(),
        }
    }
}

impl<A: Aggregate, S: EventStore> Repository<A, S> {
    pub fn new(store: S) -> Self {
        Repository { store, cache: Arc::new(Mutex::new(HashMap::new())), writers: Arc::default() }
    }

    /// The writer lock of `stream` (created on first use, dropped when unused).
    fn writer(&self, stream: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut writers = self.writers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(lock) = writers.get(stream).and_then(Weak::upgrade) {
            return lock;
        }
        if writers.len() >= CACHED_STREAMS {
            writers.retain(|_, w| w.strong_count() > 0);
        }
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        writers.insert(stream.to_owned(), Arc::downgrade(&lock));
        lock
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// The current state and version of `stream`.
    pub async fn load(&self, stream: &str) -> Result<(A::State, Option<u64>), ExecError<A::Error>> {
        let (mut state, mut version) = self.cached(stream);
        loop {
            let from = version.map_or(0, |v| v + 1);
            let slice = match self.store.read_stream_forward(stream, from, READ_PAGE, None).await {
                Ok(slice) => slice,
                Err(StoreError::StreamNotFound { .. }) => break,
                Err(e) => return Err(e.into()),
            };
            let n = slice.events.len();
            for recorded in &slice.events {
                state = A::evolve(state, &decode::<A>(recorded)?);
                version = Some(recorded.event_number);
            }
            if slice.head_of_stream || n == 0 {
                break;
            }
        }
        self.remember(stream, &state, version);
        Ok((state, version))
    }

    /// Loads `stream`, lets `decide` turn its state (and version) into events,
    /// and appends them expecting that version. On a conflict it reloads and
    /// decides again, up to [`MAX_ATTEMPTS`] times.
    pub async fn execute(
        &self,
        stream: &str,
        metadata: &EventMetadata,
        mut decide: impl FnMut(&A::State, Option<u64>) -> Result<Vec<A::Event>, A::Error>,
    ) -> Result<Executed<A::State, A::Event>, ExecError<A::Error>> {
        let writer = self.writer(stream);
        let _turn = writer.lock().await;
        for attempt in 1..=MAX_ATTEMPTS {
            let (state, version) = self.load(stream).await?;
            let events = decide(&state, version).map_err(ExecError::Domain)?;
            if events.is_empty() {
                return Ok(Executed { state, events, version });
            }
            let metadata = bytes::Bytes::from(serde_json::to_vec(metadata).unwrap_or_default());
            let id = crate::follow::aggregate_id(stream);
            let new_events: Vec<NewEvent> = events
                .iter()
                .map(|e| {
                    let (event_type, data) = A::encode(id, e);
                    NewEvent {
                        event_id: uuid::Uuid::new_v4(),
                        event_type: event_type.to_owned(),
                        data: data.into(),
                        metadata: Some(metadata.clone()),
                    }
                })
                .collect();
            match self.store.append(stream, ExpectedVersion::after(version), &new_events).await {
                Ok(result) => {
                    let state = events.iter().fold(state, |s, e| A::evolve(s, e));
                    let version = Some(result.first_event_number + events.len() as u64 - 1);
                    self.remember(stream, &state, version);
                    return Ok(Executed { state, events, version });
                }
                Err(StoreError::WrongExpectedVersion { .. }) => {
                    tracing::debug!(stream, attempt, "expected version conflict; deciding again");
                    // Jittered back-off so racing replicas spread out.
                    let jitter = uuid::Uuid::new_v4().as_u128() as u64 % (2 * u64::from(attempt));
                    tokio::time::sleep(std::time::Duration::from_millis(jitter)).await;
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ExecError::Contention { stream: stream.to_owned(), attempts: MAX_ATTEMPTS })
    }

    fn cached(&self, stream: &str) -> (A::State, Option<u64>) {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(stream)
            .map_or_else(|| (A::State::default(), None), |c| (c.state.clone(), c.version))
    }

    fn remember(&self, stream: &str, state: &A::State, version: Option<u64>) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.get(stream).is_some_and(|c| c.version >= version) {
            return; // someone already cached a newer state
        }
        if cache.len() >= CACHED_STREAMS {
            cache.clear(); // crude but bounded; states reload from the log
        }
        cache.insert(stream.to_owned(), Cached { state: state.clone(), version });
    }
}

pub(crate) fn decode<A: Aggregate>(
    recorded: &RecordedEvent,
) -> Result<A::Event, ExecError<A::Error>> {
    A::decode(&recorded.event_type, &recorded.data).map_err(|detail| ExecError::Corrupt {
        stream: recorded.stream.clone(),
        detail: format!("event {} ({}): {detail}", recorded.event_number, recorded.event_type),
    })
}
