//! B9.5 conversation replay: `GET /api/v1/conversations/{id}?asOf=<time>` and
//! `GET /api/v1/conversations/{id}/events`.
//!
//! The state as of a moment is the gateway's own read-model fold
//! ([`View::apply`]) over that conversation's stream, stopped at the first
//! event stamped after the moment: one fold, not a second one. The stream is
//! read through the gateway's event-store client ([`StreamReader`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use eventlog::{EventStore, RecordedEvent, StoreError};
use kernel::Millis;
use sb_proto::ConversationEvent;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::{Id, Q};
use crate::auth::Caller;
use crate::problem::Problem;
use crate::view::{View, rfc3339};
use crate::{Shared, dto};

/// Events read per page, and at most this many pages (bounded replay).
pub const PAGE_EVENTS: usize = 1_000;
pub const MAX_PAGES: usize = 100;

type Read<'a> = Pin<Box<dyn Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send + 'a>>;

/// Reads one whole stream, oldest first (empty when it does not exist).
pub trait StreamReader: Send + Sync {
    fn read_all_of<'a>(&'a self, stream: &'a str) -> Read<'a>;
}

impl<S: EventStore + 'static> StreamReader for S {
    fn read_all_of<'a>(&'a self, stream: &'a str) -> Read<'a> {
        Box::pin(async move {
            let mut out = Vec::new();
            let mut from = 0;
            for _ in 0..MAX_PAGES {
                let slice = match self.read_stream_forward(stream, from, PAGE_EVENTS, None).await {
                    Ok(s) => s,
                    Err(StoreError::StreamNotFound { .. }) => break,
                    Err(e) => return Err(e),
                };
                let n = slice.events.len();
                if let Some(last) = slice.events.last() {
                    from = last.event_number + 1;
                }
                out.extend(slice.events);
                if n < PAGE_EVENTS || slice.head_of_stream {
                    break;
                }
            }
            Ok(out)
        })
    }
}

/// When the event happened, by its own timestamp (the commit time otherwise).
pub fn event_at(recorded: &RecordedEvent) -> Millis {
    let fallback = i64::try_from(recorded.created.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
    let Ok(e) = ConversationEvent::from_json(&recorded.event_type, &recorded.data) else {
        return fallback;
    };
    use ConversationEvent as E;
    let t = match &e {
        E::ConversationStarted(e) => e.at.as_ref(),
        E::ConversationQueued(e) => e.at.as_ref(),
        E::CustomerMessageReceived(e) => e.received_at.as_ref(),
        E::OfferMade(e) => e.offered_at.as_ref(),
        E::OfferAccepted(e) => e.at.as_ref(),
        E::OfferWithdrawn(e) => e.at.as_ref(),
        E::AgentMessageAdded(e) => e.at.as_ref(),
        E::MessageStatusChanged(e) => e.at.as_ref(),
        E::TransferRequested(e) => e.at.as_ref(),
        E::TransferFailed(e) => e.at.as_ref(),
        E::ConferenceRequested(e) => e.at.as_ref(),
        E::ConferenceDeclined(e) => e.at.as_ref(),
        E::ParticipantLeft(e) => e.at.as_ref(),
        E::ConversationEnded(e) => e.at.as_ref(),
    };
    t.map_or(fallback, sb_proto::millis_from_timestamp)
}

/// Pure: the conversation as it stood at `as_of` (every event stamped at or
/// before it), or `None` when it had not started yet.
pub fn as_of(id: &str, events: &[RecordedEvent], as_of: Option<Millis>) -> Option<View> {
    let mut view = View::new(0);
    for e in events {
        if as_of.is_some_and(|t| event_at(e) > t) {
            break;
        }
        view.apply(e);
    }
    view.conversations.contains_key(id).then_some(view)
}

/// One event of a conversation's stream.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConversationEventDto {
    /// Position in the conversation's stream (0, 1, …).
    pub stream_position: u64,
    /// Position in the whole log, when the store reports it (not yet: see ARCHITECTURE.md).
    pub log_position: Option<u64>,
    pub event_id: String,
    pub event_type: String,
    pub at: String,
    /// The event in proto3 JSON.
    pub data: serde_json::Value,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AsOfQuery {
    /// RFC 3339: the conversation as it stood at that moment (B9.5).
    #[serde(rename = "asOf")]
    as_of: Option<String>,
}

fn parse_time(raw: &str) -> Result<Millis, Problem> {
    time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339)
        .ok()
        .and_then(|t| i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok())
        .ok_or_else(|| Problem::bad_request("invalid_time", "`asOf` must be an RFC 3339 time"))
}

fn not_found(id: &str) -> Problem {
    Problem::not_found("conversation_not_found", format!("no conversation {id}"))
}

/// Reads the stream and checks B8.1 (supervisors; participants, former ones included).
async fn read_checked(
    s: &Shared,
    caller: &Caller,
    id: &str,
) -> Result<Vec<RecordedEvent>, Problem> {
    let Some(reader) = s.streams.get() else {
        return Err(Problem::unavailable("store_unavailable", "no event store attached"));
    };
    let stream = format!("conversation-{id}");
    let events = reader.read_all_of(&stream).await.map_err(|e| {
        tracing::warn!(error = %e, %stream, "replay read failed");
        Problem::unavailable("store_unavailable", "the event log did not answer")
    })?;
    let whole = as_of(id, &events, None).ok_or_else(|| not_found(id))?;
    let c = whole.conversations.get(id).ok_or_else(|| not_found(id))?;
    if !caller.is_supervisor() && !c.visible_to(&caller.id) && !c.is_participant(&caller.id) {
        return Err(Problem::forbidden(
            "not_a_participant",
            "you are not a participant of this conversation",
        ));
    }
    Ok(events)
}

/// `GET /api/v1/conversations/{id}`: live, or as of `asOf` (B9.5).
pub async fn get_conversation(
    State(s): State<Arc<Shared>>,
    caller: Caller,
    Id(id): Id,
    Q(q): Q<AsOfQuery>,
) -> Result<Json<dto::Conversation>, Problem> {
    let Some(raw) = q.as_of.filter(|r| !r.is_empty()) else {
        return crate::api::get_conversation(State(s), caller, Id(id)).await;
    };
    let t = parse_time(&raw)?;
    let events = read_checked(&s, &caller, &id).await?;
    let view = as_of(&id, &events, Some(t)).ok_or_else(|| not_found(&id))?;
    let c = view.conversations.get(&id).ok_or_else(|| not_found(&id))?;
    Ok(Json(c.to_dto(true)))
}

/// The conversation's events, oldest first (B9.5).
#[utoipa::path(get, path = "/api/v1/conversations/{id}/events", tag = "supervisor", params(("id" = String, Path)),
    responses((status = 200, body = Vec<ConversationEventDto>), (status = "4XX", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn events(
    State(s): State<Arc<Shared>>,
    caller: Caller,
    Id(id): Id,
) -> Result<Json<Vec<ConversationEventDto>>, Problem> {
    let events = read_checked(&s, &caller, &id).await?;
    Ok(Json(
        events
            .iter()
            .map(|e| ConversationEventDto {
                stream_position: e.event_number,
                log_position: None,
                event_id: e.event_id.to_string(),
                event_type: e.event_type.clone(),
                at: rfc3339(event_at(e)),
                data: serde_json::from_slice(&e.data).unwrap_or(serde_json::Value::Null),
            })
            .collect(),
    ))
}
