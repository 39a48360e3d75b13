//! Switchboard's event log.
//!
//! Every service keeps its state as events in an append-only log reached
//! through the EventStoreDB/KurrentDB HTTP ("AtomPub") API. This crate holds
//! both ends of that API:
//!
//! - [`EventStore`], the trait services are generic over, and
//!   [`HttpEventStore`], its reqwest implementation that talks to a real
//!   KurrentDB/EventStoreDB (AtomPub enabled) or to our embedded server;
//! - [`server`], the embedded EventStoreDB-compatible server (`switchboard
//!   eventstore`, and inside `switchboard dev`): the reference §11 subset over
//!   a durable single-node log with group commit and crash recovery.
//!
//! The wire protocol is described in `shared/reference/esdb-http-api.md`; the
//! storage design is in this crate's `README.md`.

pub mod client;
pub mod server;
pub mod types;
pub mod wire;

pub use client::{
    AllSubscription, EventStore, HeaderFamily, HttpEventStore, HttpEventStoreConfig, LoadedStream,
};
pub use types::{
    AllFilter, AllPosition, AllSlice, AppendResult, DeleteMode, ExpectedVersion, NewEvent,
    RecordedEvent, ServerInfo, StoreError, StreamSlice, StreamStart,
};
