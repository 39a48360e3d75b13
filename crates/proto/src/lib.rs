//! Switchboard's contracts: the prost types generated from `proto/switchboard/v1`
//! (package `switchboard.v1`), their proto3 JSON mapping (pbjson), and the
//! event catalogue that ties each event message to its owning service.
//!
//! The catalogue is the one place that says which events exist: the bus builds
//! subjects from it, the event log stores `event_type` = the message name with
//! the proto3 JSON of the message as data, and `README.md` documents it (a test
//! keeps the two in step).

#[allow(clippy::all, missing_docs, unused_qualifications)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/switchboard.v1.rs"));
    include!(concat!(env!("OUT_DIR"), "/switchboard.v1.serde.rs"));
}

pub use pbjson_types::Timestamp;

use std::fmt;

/// The four domain services that own event streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    AgentPresence,
    WrapUp,
    Conversation,
    Routing,
}

impl Service {
    pub const ALL: [Service; 4] =
        [Service::AgentPresence, Service::WrapUp, Service::Conversation, Service::Routing];

    /// The name used in subjects, stream metadata and `switchboard serve <name>`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Service::AgentPresence => "agent-presence",
            Service::WrapUp => "wrap-up",
            Service::Conversation => "conversation",
            Service::Routing => "routing",
        }
    }

    pub fn parse(name: &str) -> Option<Service> {
        Service::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Decoding a stored or received event failed. Never a panic: input from the
/// log or the bus is outside input.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown event type `{0}` for service {1}")]
    UnknownType(String, Service),
    #[error("unknown event type `{0}`")]
    UnknownEventType(String),
    #[error("event `{event_type}` is not valid proto3 JSON: {source}")]
    Json {
        event_type: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("event `{event_type}` is not valid protobuf: {source}")]
    Proto {
        event_type: String,
        #[source]
        source: prost::DecodeError,
    },
}

/// One event message with its catalogue entry.
pub trait EventMessage:
    prost::Message + serde::Serialize + serde::de::DeserializeOwned + Default + Clone + PartialEq
{
    /// The event type name: the proto message name, e.g. `OfferAccepted`.
    const EVENT_TYPE: &'static str;
    const SERVICE: Service;
}

/// Generates, per service, an enum over its event messages with the codecs
/// the log (proto3 JSON) and the bus (protobuf) need.
macro_rules! catalogue {
    ($( $service:ident => $enum_name:ident { $( $event:ident ),+ $(,)? } )+) => {
        $(
            $( impl EventMessage for v1::$event {
                const EVENT_TYPE: &'static str = stringify!($event);
                const SERVICE: Service = Service::$service;
            } )+

            #[doc = concat!("Every event owned by the `", stringify!($service), "` service.")]
            #[derive(Debug, Clone, PartialEq)]
            pub enum $enum_name { $( $event(v1::$event), )+ }

            impl $enum_name {
                pub const SERVICE: Service = Service::$service;
                pub const TYPES: &'static [&'static str] = &[$( stringify!($event) ),+];

                pub fn event_type(&self) -> &'static str {
                    match self { $( Self::$event(_) => stringify!($event), )+ }
                }

                /// The proto3 JSON mapping, as stored in the event log.
                pub fn to_json(&self) -> Vec<u8> {
                    // Serializing generated messages into a Vec cannot fail.
                    match self { $( Self::$event(e) => serde_json::to_vec(e).unwrap_or_default(), )+ }
                }

                pub fn from_json(event_type: &str, data: &[u8]) -> Result<Self, DecodeError> {
                    match event_type {
                        $( stringify!($event) => serde_json::from_slice(data)
                            .map(Self::$event)
                            .map_err(|source| DecodeError::Json { event_type: event_type.to_owned(), source }), )+
                        other => Err(DecodeError::UnknownType(other.to_owned(), Self::SERVICE)),
                    }
                }

                /// Protobuf bytes, as carried in `EventEnvelope.payload` on NATS.
                pub fn to_proto(&self) -> Vec<u8> {
                    match self { $( Self::$event(e) => prost::Message::encode_to_vec(e), )+ }
                }

                pub fn from_proto(event_type: &str, payload: &[u8]) -> Result<Self, DecodeError> {
                    match event_type {
                        $( stringify!($event) => <v1::$event as prost::Message>::decode(payload)
                            .map(Self::$event)
                            .map_err(|source| DecodeError::Proto { event_type: event_type.to_owned(), source }), )+
                        other => Err(DecodeError::UnknownType(other.to_owned(), Self::SERVICE)),
                    }
                }
            }

            $( impl From<v1::$event> for $enum_name {
                fn from(e: v1::$event) -> Self { Self::$event(e) }
            } )+
        )+

        /// `(service, event type)` for every event, in catalogue order.
        pub const CATALOGUE: &[(Service, &str)] = &[
            $( $( (Service::$service, stringify!($event)), )+ )+
        ];
    };
}

catalogue! {
    AgentPresence => AgentPresenceEvent {
        AgentRegistered, AgentProfileUpdated, AgentStateChanged, SlotReserved, SlotReleased,
    }
    WrapUp => WrapUpEvent {
        WrapupReasonAdded, WrapupReasonRenamed, WrapupReasonRetired, WrapupOwed, WrapupSubmitted,
    }
    Conversation => ConversationEvent {
        ConversationStarted, ConversationQueued, CustomerMessageReceived, OfferMade, OfferAccepted,
        OfferWithdrawn, AgentMessageAdded, MessageStatusChanged, TransferRequested, TransferFailed,
        ConferenceRequested, ConferenceDeclined, ParticipantLeft, ConversationEnded,
    }
    Routing => RoutingEvent {
        QueueDefined, EntryPointMapped, ConversationEnqueued, ConversationOffered, OfferExpired,
        ConversationDequeued,
    }
}

/// The service that owns `event_type`, from the catalogue.
pub fn service_of(event_type: &str) -> Option<Service> {
    CATALOGUE.iter().find(|(_, t)| *t == event_type).map(|(s, _)| *s)
}

/// Re-encodes a stored event (proto3 JSON) as protobuf for the bus, checking
/// on the way that it is a valid event of its service.
pub fn json_to_proto(event_type: &str, data: &[u8]) -> Result<Vec<u8>, DecodeError> {
    match service_of(event_type) {
        Some(Service::AgentPresence) => {
            AgentPresenceEvent::from_json(event_type, data).map(|e| e.to_proto())
        }
        Some(Service::WrapUp) => WrapUpEvent::from_json(event_type, data).map(|e| e.to_proto()),
        Some(Service::Conversation) => {
            ConversationEvent::from_json(event_type, data).map(|e| e.to_proto())
        }
        Some(Service::Routing) => RoutingEvent::from_json(event_type, data).map(|e| e.to_proto()),
        None => Err(DecodeError::UnknownEventType(event_type.to_owned())),
    }
}

/// Conversions between `Timestamp` and milliseconds since the Unix epoch, the
/// unit domain code uses for time.
pub fn timestamp_from_millis(ms: i64) -> Timestamp {
    Timestamp { seconds: ms.div_euclid(1000), nanos: (ms.rem_euclid(1000) * 1_000_000) as i32 }
}

pub fn millis_from_timestamp(ts: &Timestamp) -> i64 {
    ts.seconds.saturating_mul(1000).saturating_add(i64::from(ts.nanos / 1_000_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn b9_1_every_event_round_trips_through_json_and_protobuf() {
        let event = AgentPresenceEvent::from(v1::AgentStateChanged {
            agent_id: "alice".into(),
            state: v1::PresenceState::Idle as i32,
            idle_reason: "lunch".into(),
            previous_state: v1::PresenceState::Available as i32,
            by: Some(v1::Actor { kind: v1::ActorKind::Agent as i32, id: "alice".into() }),
            at: Some(timestamp_from_millis(1_764_000_000_123)),
        });
        let json = event.to_json();
        let text = std::str::from_utf8(&json).unwrap();
        // proto3 JSON: camelCase names, enum names, RFC 3339 timestamps (pbjson-types
        // writes the UTC offset as `+00:00` where the spec prefers `Z`; both parse).
        assert!(text.contains(r#""idleReason":"lunch""#), "{text}");
        assert!(text.contains(r#""state":"PRESENCE_STATE_IDLE""#), "{text}");
        assert!(text.contains(r#""at":"2025-11-24T16:00:00.123"#), "{text}");
        let zulu = text.replace("+00:00", "Z");
        assert_eq!(
            AgentPresenceEvent::from_json("AgentStateChanged", zulu.as_bytes()).unwrap(),
            event
        );
        assert_eq!(AgentPresenceEvent::from_json("AgentStateChanged", &json).unwrap(), event);
        let proto = event.to_proto();
        assert_eq!(AgentPresenceEvent::from_proto("AgentStateChanged", &proto).unwrap(), event);
    }

    #[test]
    fn b9_1_unknown_or_malformed_events_are_typed_errors_not_panics() {
        assert!(matches!(
            WrapUpEvent::from_json("NoSuchEvent", b"{}"),
            Err(DecodeError::UnknownType(t, Service::WrapUp)) if t == "NoSuchEvent"
        ));
        assert!(matches!(
            WrapUpEvent::from_json("WrapupOwed", b"{not json"),
            Err(DecodeError::Json { .. })
        ));
        assert!(matches!(
            RoutingEvent::from_proto("QueueDefined", &[0xff, 0xff, 0xff]),
            Err(DecodeError::Proto { .. })
        ));
    }

    #[test]
    fn catalogue_names_are_unique_and_match_types() {
        let mut names: Vec<_> = CATALOGUE.iter().map(|(_, n)| *n).collect();
        let total = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), total);
        assert_eq!(
            total,
            AgentPresenceEvent::TYPES.len()
                + WrapUpEvent::TYPES.len()
                + ConversationEvent::TYPES.len()
                + RoutingEvent::TYPES.len()
        );
        assert_eq!(v1::OfferAccepted::EVENT_TYPE, "OfferAccepted");
        assert_eq!(v1::OfferAccepted::SERVICE, Service::Conversation);
    }

    #[test]
    fn timestamps_convert_both_ways_including_before_the_epoch() {
        for ms in [0, 1, 999, 1_764_000_000_123, -1, -1001] {
            assert_eq!(millis_from_timestamp(&timestamp_from_millis(ms)), ms);
        }
    }
}

#[cfg(test)]
mod readme {
    use super::*;

    /// B9.1: the README documents every event with its subject.
    #[test]
    fn b9_1_readme_lists_every_event_and_its_subject() {
        let readme = include_str!("../../../README.md");
        for (service, event_type) in CATALOGUE {
            let row = readme
                .lines()
                .find(|l| l.starts_with(&format!("| `{event_type}` |")))
                .unwrap_or_else(|| panic!("README has no row for {event_type}"));
            let subject_prefix = format!("`sb.evt.{}.", service.as_str());
            let subject_suffix = format!(".{event_type}`");
            assert!(
                row.contains(&subject_prefix) && row.contains(&subject_suffix),
                "README row for {event_type} must give its subject: {row}"
            );
        }
        let rows =
            readme.lines().filter(|l| l.starts_with("| `") && l.contains("`sb.evt.")).count();
        assert_eq!(rows, CATALOGUE.len(), "README lists events that do not exist");
    }
}

/// Command verbs: `sb.cmd.<service>.<verb>`, request message → reply state.
/// The contract between services and the gateway; never spell a verb elsewhere.
pub mod verbs {
    /// `agent-presence`.
    pub mod presence {
        /// `RegisterAgent` → `AgentPresence`.
        pub const REGISTER: &str = "register";
        /// `ChangeAgentState` → `AgentPresence`.
        pub const CHANGE_STATE: &str = "change-state";
        /// `EnterRona` → `AgentPresence` (system only).
        pub const ENTER_RONA: &str = "enter-rona";
        /// `ReserveSlot` → `AgentPresence`.
        pub const RESERVE_SLOT: &str = "reserve-slot";
        /// `ReleaseSlot` → `AgentPresence`.
        pub const RELEASE_SLOT: &str = "release-slot";
        /// `GetAgent` → `AgentPresence`.
        pub const GET: &str = "get";
        /// `ListAgents` → `AgentList`.
        pub const LIST: &str = "list";
    }
    /// `wrap-up`.
    pub mod wrapup {
        /// `PutWrapupReason` → `WrapupReason`.
        pub const PUT_REASON: &str = "put-reason";
        /// `RetireWrapupReason` → `WrapupReason`.
        pub const RETIRE_REASON: &str = "retire-reason";
        /// `ListWrapupReasons` → `WrapupReasonList` (active ones).
        pub const LIST_REASONS: &str = "list-reasons";
        /// `SubmitWrapup` → `PendingWrapupList` (what the agent still owes).
        pub const SUBMIT: &str = "submit";
        /// `ListPendingWrapups` → `PendingWrapupList`.
        pub const PENDING: &str = "pending";
    }
    /// `conversation`.
    pub mod conversation {
        /// `ReceiveCustomerMessage` → `CustomerMessageStored`.
        pub const RECEIVE: &str = "receive";
        /// `MakeOffer` → `ConversationSummary` (routing only).
        pub const OFFER: &str = "offer";
        /// `AcceptOffer` → `ConversationSummary`.
        pub const ACCEPT: &str = "accept";
        /// `ExpireOffer` → `ConversationSummary` (routing's timer).
        pub const EXPIRE_OFFER: &str = "expire-offer";
        /// `ExpireConferenceRequest` → `ConversationSummary` (routing's timer).
        pub const EXPIRE_CONFERENCE: &str = "expire-conference";
        /// `WithdrawOffer` → `ConversationSummary`.
        pub const WITHDRAW_OFFER: &str = "withdraw-offer";
        /// `SendAgentMessage` → `AgentMessageStored`.
        pub const SEND: &str = "send";
        /// `RecordMessageStatus` → `ConversationSummary`.
        pub const RECORD_STATUS: &str = "record-status";
        /// `TransferConversation` → `ConversationSummary`.
        pub const TRANSFER: &str = "transfer";
        /// `RequestConference` → `ConversationSummary`.
        pub const CONFERENCE: &str = "conference";
        /// `ReassignConversation` → `ConversationSummary` (supervisors, B1.5).
        pub const REASSIGN: &str = "reassign";
        /// `EndConference` → `ConversationSummary`.
        pub const END_CONFERENCE: &str = "end-conference";
        /// `LeaveConversation` → `ConversationSummary`.
        pub const LEAVE: &str = "leave";
        /// `EndConversation` → `ConversationSummary`.
        pub const END: &str = "end";
        /// `GetConversation` → `ConversationSummary`.
        pub const GET: &str = "get";
    }
    /// `routing`.
    pub mod routing {
        /// `PutQueue` → `Queue`.
        pub const PUT_QUEUE: &str = "put-queue";
        /// `PutEntryPoint` → `EntryPoint`.
        pub const PUT_ENTRY_POINT: &str = "put-entry-point";
        /// `EnsureQueue` → `Queue`.
        pub const ENSURE_QUEUE: &str = "ensure-queue";
        /// `ListQueues` → `QueueList`.
        pub const LIST_QUEUES: &str = "list-queues";
    }
}
