//! The REST endpoints of GATEWAY-API.md: authenticate, authorize (B8.1),
//! validate at the edge, send the command, wait for the read model
//! (read-your-writes), answer. Reads come from the read model only.
//!
//! | endpoint | command (service, verb) |
//! |---|---|
//! | `PUT /queues/{id}` | `PutQueue` (routing, `put-queue`) |
//! | `PUT /entry-points/{n}` | `PutEntryPoint` (routing, `put-entry-point`) |
//! | `PUT /agents/{id}` | `RegisterAgent` (agent-presence, `register`) |
//! | `PUT /agents/{id}/state`, `PUT /me/state` | `ChangeAgentState` (agent-presence, `change-state`) |
//! | `PUT /wrapup-reasons/{code}` | `PutWrapupReason` (wrap-up, `put-reason`) |
//! | `DELETE /wrapup-reasons/{code}` | `RetireWrapupReason` (wrap-up, `retire-reason`) |
//! | `POST /conversations/{id}/accept` | `AcceptOffer` (conversation, `accept`) |
//! | `POST /conversations/{id}/messages` | `SendAgentMessage` (conversation, `send`) |
//! | `POST /conversations/{id}/transfer` | `TransferConversation` (conversation, `transfer`) |
//! | `POST /conversations/{id}/conference` | `RequestConference` (conversation, `conference`) |
//! | `POST /conversations/{id}/conference/end` | `EndConference` (conversation, `end-conference`) |
//! | `POST /conversations/{id}/leave` | `LeaveConversation` (conversation, `leave`) |
//! | `POST /conversations/{id}/end` | `EndConversation` (conversation, `end`) |
//! | `POST /conversations/{id}/wrapup` | `SubmitWrapup` (wrap-up, `submit`) |
//! | `POST /conversations/{id}/reassign` | `ReassignConversation` (conversation, `reassign`) |

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use sb_proto::v1;
use sb_proto::{Service, verbs};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::auth::{Caller, Role};
use crate::dto;
use crate::problem::Problem;
use crate::view::{self, rfc3339};
use crate::{MAX_BODY_BYTES, Shared};

type Api<T> = Result<T, Problem>;
type AppState = State<Arc<Shared>>;

/// Longest id accepted in a path or body (ids become stream names and subject tokens downstream).
const MAX_ID_CHARS: usize = 128;
/// Longest free text besides messages (names, labels, notes, reasons).
const MAX_TEXT_CHARS: usize = 1024;

/// The `/api/v1` routes, `/api/v1/openapi.json` and `/api/v1/ws`.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/api/v1/openapi.json", get(crate::openapi::serve))
        .route("/api/v1/ws", get(crate::ws::handler))
        .route("/api/v1/queues", get(list_queues))
        .route("/api/v1/queues/{queue_id}", put(put_queue))
        .route("/api/v1/entry-points/{business_number}", put(put_entry_point))
        .route("/api/v1/agents", get(list_agents))
        .route("/api/v1/agents/{agent_id}", put(put_agent))
        .route("/api/v1/agents/{agent_id}/state", put(put_agent_state))
        .route("/api/v1/wrapup-reasons", get(list_reasons))
        .route("/api/v1/wrapup-reasons/{code}", put(put_reason).delete(retire_reason))
        .route("/api/v1/conversations", get(list_conversations))
        .route("/api/v1/conversations/{id}", get(crate::replay::get_conversation))
        .route("/api/v1/conversations/{id}/events", get(crate::replay::events))
        .route("/api/v1/conversations/{id}/reassign", post(reassign))
        .route("/api/v1/conversations/{id}/accept", post(accept))
        .route("/api/v1/conversations/{id}/messages", post(send_message))
        .route("/api/v1/conversations/{id}/transfer", post(transfer))
        .route("/api/v1/conversations/{id}/conference", post(conference))
        .route("/api/v1/conversations/{id}/conference/end", post(end_conference))
        .route("/api/v1/conversations/{id}/leave", post(leave))
        .route("/api/v1/conversations/{id}/end", post(end))
        .route("/api/v1/conversations/{id}/wrapup", post(submit_wrapup))
        .route("/api/v1/stats/queues", get(crate::stats_api::queues))
        .route("/api/v1/stats/agents", get(crate::stats_api::agents))
        .route("/api/v1/me", get(me))
        .route("/api/v1/me/state", put(put_my_state))
        .route("/api/v1/me/offers", get(my_offers))
        .route("/api/v1/me/wrapups", get(my_wrapups))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(shared.clone(), limit_in_flight))
        .layer(axum::middleware::from_fn(count_requests))
        .with_state(shared)
}

/// `sb_gateway_requests_total{method, status}` (no paths or ids in labels).
async fn count_requests(request: Request, next: axum::middleware::Next) -> Response {
    let method = request.method().clone();
    let response = next.run(request).await;
    kernel::metrics::global().add(
        "sb_gateway_requests_total",
        &format!("method=\"{method}\",status=\"{}\"", response.status().as_u16()),
        1,
    );
    response
}

/// At most [`crate::GatewayConfig::max_in_flight`] API calls at once; more get
/// 503 `overloaded` at once instead of queueing without bound.
async fn limit_in_flight(
    State(shared): AppState,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let Ok(_permit) = shared.in_flight.clone().try_acquire_owned() else {
        return Problem::unavailable(
            "overloaded",
            "the gateway is at its limit of calls in flight; retry shortly",
        )
        .into_response();
    };
    next.run(request).await
}

async fn not_found(uri: axum::http::Uri) -> Response {
    if uri.path().starts_with("/api/") {
        Problem::not_found("no_such_endpoint", format!("no endpoint at {}", uri.path()))
            .into_response()
    } else {
        (StatusCode::NOT_FOUND, "not found").into_response()
    }
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}

// ---- extractors -----------------------------------------------------------------

/// The bearer token of an `Authorization` header.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Verifies a token and records the call for B1.5.
pub fn authenticate(shared: &Shared, token: Option<&str>) -> Result<Caller, Problem> {
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Err(Problem::unauthorized("token_missing", "send `Authorization: Bearer <token>`"));
    };
    let caller = crate::auth::verify_token(&shared.config.jwt_secret, token, shared.now_secs())
        .map_err(|e| Problem::unauthorized(e.code(), e.to_string()))?;
    shared.sessions.touch(&caller.id, shared.clock.now());
    Ok(caller)
}

impl FromRequestParts<Arc<Shared>> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut Parts,
        shared: &Arc<Shared>,
    ) -> Result<Caller, Problem> {
        authenticate(shared, bearer(&parts.headers))
    }
}

/// A supervisor caller; anyone else gets 403.
pub struct Supervisor(pub Caller);

impl FromRequestParts<Arc<Shared>> for Supervisor {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut Parts,
        shared: &Arc<Shared>,
    ) -> Result<Supervisor, Problem> {
        let caller = Caller::from_request_parts(parts, shared).await?;
        if caller.role != Role::Supervisor {
            return Err(Problem::supervisor_only());
        }
        Ok(Supervisor(caller))
    }
}

/// A JSON body whose errors are problems (400), not axum's plain text.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Body<T>, Problem> {
        let bytes = axum::body::Bytes::from_request(request, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    format!("bodies are limited to {MAX_BODY_BYTES} bytes"),
                )
            } else {
                Problem::bad_request("unreadable_body", e.body_text())
            }
        })?;
        let value: T = serde_json::from_slice(&bytes).map_err(|e| {
            let code = if e.is_data() { "invalid_body" } else { "malformed_json" };
            Problem::bad_request(code, e.to_string())
        })?;
        Ok(Body(value))
    }
}

/// A query string whose errors are problems.
pub struct Q<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Q<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Q<T>, Problem> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Q(q.0))
            .map_err(|e| Problem::bad_request("invalid_query", e.body_text()))
    }
}

/// A path parameter checked as an id.
pub struct Id(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Id, Problem> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|e| Problem::bad_request("invalid_path", e.body_text()))?;
        check_id("id", &raw)?;
        Ok(Id(raw))
    }
}

/// A raw path parameter whose rejection is a problem.
pub struct Segment(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Segment {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Segment, Problem> {
        axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map(|p| Segment(p.0))
            .map_err(|e| Problem::bad_request("invalid_path", e.body_text()))
    }
}

fn check_id(what: &str, id: &str) -> Api<()> {
    let ok = !id.is_empty()
        && id.chars().count() <= MAX_ID_CHARS
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
    if ok {
        Ok(())
    } else {
        Err(Problem::bad_request(
            "invalid_id",
            format!("`{what}` must be 1–{MAX_ID_CHARS} characters of A–Z, a–z, 0–9, `-` and `_`"),
        ))
    }
}

fn check_text(what: &str, text: &str, required: bool) -> Api<()> {
    if required && text.trim().is_empty() {
        return Err(Problem::bad_request("invalid_body", format!("`{what}` must not be blank")));
    }
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(Problem::bad_request(
            "invalid_body",
            format!("`{what}` is longer than {MAX_TEXT_CHARS} characters"),
        ));
    }
    Ok(())
}

fn check_skills(skills: &[String]) -> Api<()> {
    if skills.len() > 64 {
        return Err(Problem::bad_request("invalid_body", "at most 64 skills"));
    }
    skills.iter().try_for_each(|s| check_id("skills[]", s))
}

fn actor(caller: &Caller) -> v1::Actor {
    let kind = match caller.role {
        Role::Agent => v1::ActorKind::Agent,
        Role::Supervisor => v1::ActorKind::Supervisor,
    };
    v1::Actor { kind: kind as i32, id: caller.id.clone() }
}

// ---- commands ---------------------------------------------------------------------

impl Shared {
    /// Sends a command; on success waits until the read model shows its effect.
    pub async fn command<C: prost::Message, R: prost::Message + Default>(
        &self,
        service: Service,
        verb: &str,
        command: &C,
    ) -> Api<R> {
        let answer =
            kernel::commands::call_answer::<C, R>(&self.bus, service, verb, command, None).await?;
        self.caught_up(&answer.stream, answer.version).await;
        Ok(answer.state)
    }
}

fn agent_dto(p: &v1::AgentPresence) -> dto::Agent {
    let state = view::presence_state(
        v1::PresenceState::try_from(p.state).unwrap_or(v1::PresenceState::LoggedOut),
    );
    dto::Agent {
        id: p.agent_id.clone(),
        name: p.name.clone(),
        state,
        idle_reason: (state == dto::PresenceState::Idle).then(|| p.idle_reason.clone()),
        state_since: p.state_since.as_ref().map(|t| rfc3339(sb_proto::millis_from_timestamp(t))),
        slots_used: p.slots_used,
        capacity: p.capacity,
        skills: p.skills.clone(),
    }
}

fn presence_dto(p: &v1::AgentPresence) -> dto::Presence {
    let a = agent_dto(p);
    dto::Presence {
        state: a.state,
        idle_reason: a.idle_reason,
        state_since: a.state_since,
        slots_used: a.slots_used,
        capacity: a.capacity,
    }
}

/// The conversation as the read model has it, or as the service's summary says.
fn conversation_answer(
    shared: &Shared,
    summary: &v1::ConversationSummary,
    with_messages: bool,
) -> dto::Conversation {
    if let Some(c) = shared.view().conversations.get(&summary.conversation_id) {
        return c.to_dto(with_messages);
    }
    let customer = summary.customer.clone().unwrap_or_default();
    let owner = (!summary.owner.is_empty()).then(|| summary.owner.clone());
    dto::Conversation {
        id: summary.conversation_id.clone(),
        state: dto::ConversationState::parse(&summary.state)
            .unwrap_or(dto::ConversationState::Queued),
        customer: dto::Customer {
            initials: view::initials(&customer.name),
            name: customer.name,
            phone: view::e164(&customer.phone),
        },
        source_number: summary.source_number.clone(),
        queue_id: (!summary.queue_id.is_empty()).then(|| summary.queue_id.clone()),
        queue_name: (!summary.queue_name.is_empty()).then(|| summary.queue_name.clone()),
        participants: summary
            .participants
            .iter()
            .map(|p| dto::Participant {
                agent_id: p.agent_id.clone(),
                initials: view::initials(&p.name),
                name: p.name.clone(),
                role: if p.role.is_empty() { "participant".into() } else { p.role.clone() },
            })
            .collect(),
        owner,
        window_closes_at: summary
            .window_closes_at
            .as_ref()
            .map(|t| rfc3339(sb_proto::millis_from_timestamp(t))),
        started_at: summary
            .queued_since
            .as_ref()
            .map_or_else(String::new, |t| rfc3339(sb_proto::millis_from_timestamp(t))),
        ended_at: None,
        messages: with_messages.then(Vec::new),
    }
}

// ---- supervisor -------------------------------------------------------------------

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// Case-insensitive substring of the name.
    search: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AgentsQuery {
    /// `true`: only agents `Available` with a free slot (the transfer directory).
    available: Option<bool>,
    /// Case-insensitive substring of the name.
    search: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConversationsQuery {
    /// `queued`, `offered`, `active`, `conferenceRequested`, `conference` or `ended`.
    state: Option<String>,
}

fn matches_search(name: &str, id: &str, search: Option<&str>) -> bool {
    match search.map(str::trim).filter(|s| !s.is_empty()) {
        None => true,
        Some(s) => {
            let s = s.to_lowercase();
            name.to_lowercase().contains(&s) || id.to_lowercase().contains(&s)
        }
    }
}

/// Create or update a queue.
#[utoipa::path(put, path = "/api/v1/queues/{queueId}", tag = "supervisor",
    params(("queueId" = String, Path)), request_body = dto::PutQueue,
    responses((status = 200, body = dto::Queue), (status = "4XX", body = Problem, content_type = "application/problem+json"), (status = 503, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn put_queue(
    State(s): AppState,
    Supervisor(caller): Supervisor,
    Id(queue_id): Id,
    Body(body): Body<dto::PutQueue>,
) -> Api<Json<dto::Queue>> {
    check_text("name", &body.name, true)?;
    let skills = body.skills.unwrap_or_default();
    check_skills(&skills)?;
    let offer_timeout_secs = body.offer_timeout_secs.unwrap_or(30);
    if offer_timeout_secs == 0 || offer_timeout_secs > 3600 {
        return Err(Problem::bad_request("invalid_body", "`offerTimeoutSecs` must be 1–3600"));
    }
    let command = v1::PutQueue {
        queue_id,
        name: body.name,
        offer_timeout_secs,
        priority: body.priority.unwrap_or(0),
        skills,
        by: Some(actor(&caller)),
    };
    let q: v1::Queue = s.command(Service::Routing, verbs::routing::PUT_QUEUE, &command).await?;
    let waiting = s.view().waiting_in(&q.queue_id);
    Ok(Json(dto::Queue {
        id: q.queue_id,
        name: q.name,
        offer_timeout_secs: q.offer_timeout_secs,
        priority: q.priority,
        skills: q.skills,
        waiting,
    }))
}

/// Queues (agents may call it: the transfer directory, B5.1).
#[utoipa::path(get, path = "/api/v1/queues", tag = "directory", params(SearchQuery),
    responses((status = 200, body = Vec<dto::Queue>), (status = "4XX", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn list_queues(
    State(s): AppState,
    _caller: Caller,
    Q(q): Q<SearchQuery>,
) -> Api<Json<Vec<dto::Queue>>> {
    let view = s.view();
    let mut list: Vec<dto::Queue> = view
        .queues
        .values()
        .filter(|queue| matches_search(&queue.name, &queue.id, q.search.as_deref()))
        .map(|queue| view.queue_dto(queue))
        .collect();
    list.sort_by(|a, b| {
        b.priority.cmp(&a.priority).then_with(|| a.name.to_lowercase().cmp(&b.name.to_lowercase()))
    });
    Ok(Json(list))
}

/// Map a business number (Source Number) to its entry queue (B3.1).
#[utoipa::path(put, path = "/api/v1/entry-points/{businessNumber}", tag = "supervisor",
    params(("businessNumber" = String, Path, description = "Digits, as WhatsApp's display_phone_number")), request_body = dto::PutEntryPoint,
    responses((status = 200, body = dto::EntryPoint), (status = "4XX", body = Problem, content_type = "application/problem+json"), (status = 503, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn put_entry_point(
    State(s): AppState,
    Supervisor(caller): Supervisor,
    Segment(number): Segment,
    Body(body): Body<dto::PutEntryPoint>,
) -> Api<Json<dto::EntryPoint>> {
    let digits = number.strip_prefix('+').unwrap_or(&number);
    if digits.is_empty() || digits.len() > 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Problem::bad_request(
            "invalid_business_number",
            "the business number must be 1–20 digits",
        ));
    }
    check_id("queueId", &body.queue_id)?;
    let command = v1::PutEntryPoint {
        business_number: digits.to_owned(),
        queue_id: body.queue_id,
        by: Some(actor(&caller)),
    };
    let e: v1::EntryPoint =
        s.command(Service::Routing, verbs::routing::PUT_ENTRY_POINT, &command).await?;
    Ok(Json(dto::EntryPoint { business_number: e.business_number, queue_id: e.queue_id }))
}

/// Create or update an agent (new agents are `LoggedOut`, B1.1).
#[utoipa::path(put, path = "/api/v1/agents/{agentId}", tag = "supervisor",
    params(("agentId" = String, Path)), request_body = dto::PutAgent,
    responses((status = 200, body = dto::Agent), (status = "4XX", body = Problem, content_type = "application/problem+json"), (status = 503, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn put_agent(
    State(s): AppState,
    Supervisor(caller): Supervisor,
    Id(agent_id): Id,
    Body(body): Body<dto::PutAgent>,
) -> Api<Json<dto::Agent>> {
    check_text("name", &body.name, true)?;
    let skills = body.skills.unwrap_or_default();
    check_skills(&skills)?;
    let capacity = body.capacity.unwrap_or(3);
    if capacity == 0 || capacity > 100 {
        return Err(Problem::bad_request("invalid_body", "`capacity` must be 1–100"));
    }
    let command =
        v1::RegisterAgent { agent_id, name: body.name, capacity, skills, by: Some(actor(&caller)) };
    let p: v1::AgentPresence =
        s.command(Service::AgentPresence, verbs::presence::REGISTER, &command).await?;
    Ok(Json(agent_dto(&p)))
}

/// Agents with presence (B1.4); `available=true` is the transfer directory (B5.1).
#[utoipa::path(get, path = "/api/v1/agents", tag = "directory", params(AgentsQuery),
    responses((status = 200, body = Vec<dto::Agent>), (status = "4XX", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn list_agents(
    State(s): AppState,
    _caller: Caller,
    Q(q): Q<AgentsQuery>,
) -> Api<Json<Vec<dto::Agent>>> {
    let view = s.view();
    let available_only = q.available.unwrap_or(false);
    let mut list: Vec<dto::Agent> = view
        .agents
        .values()
        .filter(|a| a.registered)
        .filter(|a| {
            !available_only || (a.state == v1::PresenceState::Available && a.has_free_slot())
        })
        .filter(|a| matches_search(&a.name, &a.id, q.search.as_deref()))
        .map(view::AgentView::to_dto)
        .collect();
    list.sort_by(|a, b| {
        a.name.to_lowercase().cmp(&b.name.to_lowercase()).then_with(|| a.id.cmp(&b.id))
    });
    Ok(Json(list))
}

/// The presence states a person may choose (B1.1); RONA only the system sets.
fn chosen_state(body: &dto::ChangeState) -> Api<(v1::PresenceState, String)> {
    let state = match body.state.as_str() {
        "Available" => v1::PresenceState::Available,
        "Idle" => v1::PresenceState::Idle,
        "LoggedOut" => v1::PresenceState::LoggedOut,
        other => {
            return Err(Problem::bad_request(
                "invalid_state",
                format!(
                    "`state` must be `Available`, `Idle` or `LoggedOut`, not `{}`",
                    other.chars().take(40).collect::<String>()
                ),
            ));
        }
    };
    let reason = body.reason.clone().unwrap_or_default();
    if state == v1::PresenceState::Idle && !reason.is_empty() {
        check_id("reason", &reason)?;
    }
    let reason = if state == v1::PresenceState::Idle { reason } else { String::new() };
    Ok((state, reason))
}

/// Change an agent's presence (supervisor).
#[utoipa::path(put, path = "/api/v1/agents/{agentId}/state", tag = "supervisor",
    params(("agentId" = String, Path)), request_body = dto::ChangeState,
    responses((status = 200, body = dto::Presence), (status = "4XX", body = Problem, content_type = "application/problem+json"), (status = 503, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn put_agent_state(
    State(s): AppState,
    Supervisor(caller): Supervisor,
    Id(agent_id): Id,
    Body(body): Body<dto::ChangeState>,
) -> Api<Json<dto::Presence>> {
    let (state, idle_reason) = chosen_state(&body)?;
    let command = v1::ChangeAgentState {
        agent_id,
        state: state as i32,
        idle_reason,
        by: Some(actor(&caller)),
    };
    let p: v1::AgentPresence =
        s.command(Service::AgentPresence, verbs::presence::CHANGE_STATE, &command).await?;
    Ok(Json(presence_dto(&p)))
}

/// Add or rename a wrap-up reason (B7.2).
#[utoipa::path(put, path = "/api/v1/wrapup-reasons/{code}", tag = "supervisor",
    params(("code" = String, Path)), request_body = dto::PutWrapupReason,
    responses((status = 200, body = dto::WrapupReason), (status = "4XX", body = Problem, content_type = "application/problem+json"), (status = 503, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn put_reason(
    State(s): AppState,
    Supervisor(caller): Supervisor,
    Id(code): Id,
    Body(body): Body<dto::PutWrapupReason>,
) -> Api<Json<dto::WrapupReason>> {
    check_text("label", &body.label, true)?;
    let command = v1::PutWrapupReason { code, label: body.label, by: Some(actor(&caller)) };
    let r: v1::WrapupReason =
        s.command(Service::WrapUp, verbs::wrapup::PUT_REASON, &command).await?;
    Ok(Json(dto::WrapupReason { code: r.code, label: r.label }))
}

/// Retire a wrap-up reason (B7.2).
#[utoipa::path(delete, path = "/api/v1/wrapup-reasons/{code}", tag = "supervisor",
    params(("code" = String, Path)),
    responses((status = 204, description = "Retired"), (status = "4XX", body = Problem, content_type = "application/problem+json"), (status = 503, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn retire_reason(
    State(s): AppState,
    Supervisor(caller): Supervisor,
    Id(code): Id,
) -> Api<StatusCode> {
    let command = v1::RetireWrapupReason { code, by: Some(actor(&caller)) };
    let _: v1::WrapupReason =
        s.command(Service::WrapUp, verbs::wrapup::RETIRE_REASON, &command).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Active wrap-up reasons (agents may call it).
#[utoipa::path(get, path = "/api/v1/wrapup-reasons", tag = "directory", params(SearchQuery),
    responses((status = 200, body = Vec<dto::WrapupReason>), (status = "4XX", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn list_reasons(
    State(s): AppState,
    _caller: Caller,
    Q(q): Q<SearchQuery>,
) -> Api<Json<Vec<dto::WrapupReason>>> {
    let view = s.view();
    let list = view
        .reasons
        .iter()
        .filter(|(_, r)| !r.retired)
        .filter(|(code, r)| matches_search(&r.label, code, q.search.as_deref()))
        .map(|(code, r)| dto::WrapupReason { code: code.clone(), label: r.label.clone() })
        .collect();
    Ok(Json(list))
}

/// Conversations (without messages), optionally by state.
#[utoipa::path(get, path = "/api/v1/conversations", tag = "supervisor", params(ConversationsQuery),
    responses((status = 200, body = Vec<dto::Conversation>), (status = "4XX", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn list_conversations(
    State(s): AppState,
    _s: Supervisor,
    Q(q): Q<ConversationsQuery>,
) -> Api<Json<Vec<dto::Conversation>>> {
    let state = match q.state.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(raw) => Some(dto::ConversationState::parse(raw).ok_or_else(|| {
            Problem::bad_request(
                "invalid_state",
                "`state` must be one of queued, offered, active, conferenceRequested, conference, ended",
            )
        })?),
    };
    let view = s.view();
    let mut list: Vec<&view::ConversationView> =
        view.conversations.values().filter(|c| state.is_none_or(|st| c.state == st)).collect();
    list.sort_by(|a, b| a.started_at.cmp(&b.started_at).then_with(|| a.id.cmp(&b.id)));
    Ok(Json(list.into_iter().map(|c| c.to_dto(false)).collect()))
}

/// Reassign a conversation to another agent (B1.5): its owner leaves (owing a
/// wrap-up) and the agent gets a transfer offer with the queue's timeout.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/reassign", tag = "supervisor",
    params(("id" = String, Path)), request_body = dto::Reassign,
    responses((status = 202, description = "Reassigned"), (status = "4XX", body = Problem, content_type = "application/problem+json"), (status = 503, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn reassign(
    State(s): AppState,
    Supervisor(caller): Supervisor,
    Id(id): Id,
    Body(body): Body<dto::Reassign>,
) -> Api<StatusCode> {
    check_id("agentId", &body.agent_id)?;
    if !s.view().conversations.contains_key(&id) {
        return Err(Problem::not_found("conversation_not_found", format!("no conversation {id}")));
    }
    let command = v1::ReassignConversation {
        conversation_id: id,
        to_agent_id: body.agent_id,
        to_queue_id: String::new(),
        by: Some(actor(&caller)),
    };
    let _: v1::ConversationSummary =
        s.command(Service::Conversation, verbs::conversation::REASSIGN, &command).await?;
    Ok(StatusCode::ACCEPTED)
}

// ---- agent ------------------------------------------------------------------------

/// The caller: profile, presence, offers, conversations and owed wrap-ups.
#[utoipa::path(get, path = "/api/v1/me", tag = "agent",
    responses((status = 200, body = dto::Me), (status = 401, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn me(State(s): AppState, caller: Caller) -> Api<Json<dto::Me>> {
    let view = s.view();
    let agent = view.agents.get(&caller.id).filter(|a| a.registered);
    Ok(Json(dto::Me {
        agent: dto::MeAgent {
            id: caller.id.clone(),
            name: agent.map_or_else(|| caller.name.clone(), |a| a.name.clone()),
            role: caller.role,
        },
        presence: agent.map(view::AgentView::presence),
        offers: view.offers_of(&caller.id),
        conversations: view.conversations_of(&caller.id),
        pending_wrapups: view.pending_wrapups_of(&caller.id),
    }))
}

/// Choose one's own presence (B1.1).
#[utoipa::path(put, path = "/api/v1/me/state", tag = "agent", request_body = dto::ChangeState,
    responses((status = 200, body = dto::Presence), (status = "4XX", body = Problem, content_type = "application/problem+json"), (status = 503, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn put_my_state(
    State(s): AppState,
    caller: Caller,
    Body(body): Body<dto::ChangeState>,
) -> Api<Json<dto::Presence>> {
    let (state, idle_reason) = chosen_state(&body)?;
    let command = v1::ChangeAgentState {
        agent_id: caller.id.clone(),
        state: state as i32,
        idle_reason,
        by: Some(v1::Actor { kind: v1::ActorKind::Agent as i32, id: caller.id.clone() }),
    };
    let p: v1::AgentPresence =
        s.command(Service::AgentPresence, verbs::presence::CHANGE_STATE, &command).await?;
    Ok(Json(presence_dto(&p)))
}

/// The caller's live offers (B2.1).
#[utoipa::path(get, path = "/api/v1/me/offers", tag = "agent",
    responses((status = 200, body = Vec<dto::Offer>), (status = 401, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn my_offers(State(s): AppState, caller: Caller) -> Api<Json<Vec<dto::Offer>>> {
    Ok(Json(s.view().offers_of(&caller.id)))
}

/// The caller's owed wrap-ups (B7).
#[utoipa::path(get, path = "/api/v1/me/wrapups", tag = "agent",
    responses((status = 200, body = Vec<dto::PendingWrapup>), (status = 401, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn my_wrapups(State(s): AppState, caller: Caller) -> Api<Json<Vec<dto::PendingWrapup>>> {
    Ok(Json(s.view().pending_wrapups_of(&caller.id)))
}

fn not_found_conversation(id: &str) -> Problem {
    Problem::not_found("conversation_not_found", format!("no conversation {id}"))
}

/// A conversation with its transcript: participants, the agent it is offered
/// to (B3.6) and supervisors.
#[utoipa::path(get, path = "/api/v1/conversations/{id}", tag = "agent", params(("id" = String, Path), crate::replay::AsOfQuery),
    responses((status = 200, body = dto::Conversation), (status = "4XX", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn get_conversation(
    State(s): AppState,
    caller: Caller,
    Id(id): Id,
) -> Api<Json<dto::Conversation>> {
    let view = s.view();
    let c = view.conversations.get(&id).ok_or_else(|| not_found_conversation(&id))?;
    if !caller.is_supervisor() && !c.visible_to(&caller.id) {
        return Err(Problem::forbidden(
            "not_a_participant",
            "you are not a participant of this conversation",
        ));
    }
    Ok(Json(c.to_dto(true)))
}

/// B8.1 for acting on a conversation: agents only on those they take part in.
fn require_participant(s: &Shared, caller: &Caller, id: &str) -> Api<()> {
    if caller.is_supervisor() {
        return Ok(());
    }
    let view = s.view();
    let c = view.conversations.get(id).ok_or_else(|| not_found_conversation(id))?;
    if c.is_participant(&caller.id) {
        Ok(())
    } else {
        Err(Problem::forbidden(
            "not_a_participant",
            "you are not a participant of this conversation",
        ))
    }
}

/// Accept an offer (B2.4); answers with the whole transcript (B2.5).
#[utoipa::path(post, path = "/api/v1/conversations/{id}/accept", tag = "agent", params(("id" = String, Path)),
    responses((status = 200, body = dto::Conversation), (status = "4XX", body = Problem, content_type = "application/problem+json"), (status = 503, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn accept(
    State(s): AppState,
    caller: Caller,
    Id(id): Id,
) -> Api<Json<dto::Conversation>> {
    {
        // Only the offered agent may accept (B2.4). An agent that was offered it
        // earlier goes through, so a late accept gets the service's `offer_expired`.
        let view = s.view();
        if let Some(c) = view.conversations.get(&id)
            && !c.offered_ever.contains(&caller.id)
            && !c.is_participant(&caller.id)
        {
            return Err(Problem::forbidden(
                "not_offered_to_you",
                "this conversation was not offered to you",
            ));
        }
    }
    let command = v1::AcceptOffer {
        conversation_id: id,
        agent_id: caller.id.clone(),
        agent_name: caller.name.clone(),
    };
    let summary: v1::ConversationSummary =
        s.command(Service::Conversation, verbs::conversation::ACCEPT, &command).await?;
    Ok(Json(conversation_answer(&s, &summary, true)))
}

/// Send a message to the customer (B4.1, B4.2); 201 with status `pending`.
/// An `Idempotency-Key` header makes a retried send store the message once.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/messages", tag = "agent", params(("id" = String, Path)),
    request_body = dto::SendMessage,
    responses((status = 201, body = dto::Message), (status = "4XX", body = Problem, content_type = "application/problem+json"), (status = 503, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn send_message(
    State(s): AppState,
    caller: Caller,
    Id(id): Id,
    headers: HeaderMap,
    Body(body): Body<dto::SendMessage>,
) -> Api<(StatusCode, Json<dto::Message>)> {
    require_participant(&s, &caller, &id)?;
    let message_id = match headers.get("idempotency-key").and_then(|v| v.to_str().ok()) {
        Some(key) if !key.is_empty() && key.len() <= MAX_ID_CHARS => {
            kernel::derived_id(&["message", &id, &caller.id, key])
        }
        _ => kernel::new_id(),
    };
    let command = v1::SendAgentMessage {
        conversation_id: id,
        agent_id: caller.id.clone(),
        agent_name: caller.name.clone(),
        text: body.text.clone(),
        message_id,
    };
    let stored: v1::AgentMessageStored =
        s.command(Service::Conversation, verbs::conversation::SEND, &command).await?;
    let at = stored.at.as_ref().map_or_else(|| s.clock.now(), sb_proto::millis_from_timestamp);
    Ok((
        StatusCode::CREATED,
        Json(dto::Message {
            id: stored.message_id,
            direction: dto::Direction::Outbound,
            sender: dto::Sender {
                kind: dto::SenderKind::Agent,
                id: Some(caller.id.clone()),
                initials: view::initials(&caller.name),
                name: caller.name,
            },
            text: body.text,
            type_: "text".into(),
            media_id: None,
            at: rfc3339(at),
            status: Some(dto::DeliveryStatus::Pending),
            failure: None,
        }),
    ))
}

fn target(body: &dto::Target) -> Api<(String, String)> {
    match (&body.queue_id, &body.agent_id) {
        (Some(q), None) => check_id("queueId", q).map(|()| (q.clone(), String::new())),
        (None, Some(a)) => check_id("agentId", a).map(|()| (String::new(), a.clone())),
        _ => Err(Problem::bad_request(
            "invalid_target",
            "give exactly one of `queueId` and `agentId`",
        )),
    }
}

/// Answer of the 202 calls: the conversation as it now is (without messages).
async fn accepted(
    s: &Shared,
    summary: &v1::ConversationSummary,
) -> (StatusCode, Json<dto::Conversation>) {
    (StatusCode::ACCEPTED, Json(conversation_answer(s, summary, false)))
}

/// Transfer to a queue or an agent (B5).
#[utoipa::path(post, path = "/api/v1/conversations/{id}/transfer", tag = "agent", params(("id" = String, Path)),
    request_body = dto::Target,
    responses((status = 202, body = dto::Conversation), (status = "4XX", body = Problem, content_type = "application/problem+json"), (status = 503, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn transfer(
    State(s): AppState,
    caller: Caller,
    Id(id): Id,
    Body(body): Body<dto::Target>,
) -> Api<(StatusCode, Json<dto::Conversation>)> {
    let (to_queue_id, to_agent_id) = target(&body)?;
    require_participant(&s, &caller, &id)?;
    let command = v1::TransferConversation {
        conversation_id: id,
        agent_id: caller.id.clone(),
        to_queue_id,
        to_agent_id,
    };
    let summary: v1::ConversationSummary =
        s.command(Service::Conversation, verbs::conversation::TRANSFER, &command).await?;
    Ok(accepted(&s, &summary).await)
}

/// Add an agent or a queue to the conversation (B6).
#[utoipa::path(post, path = "/api/v1/conversations/{id}/conference", tag = "agent", params(("id" = String, Path)),
    request_body = dto::Target,
    responses((status = 202, body = dto::Conversation), (status = "4XX", body = Problem, content_type = "application/problem+json"), (status = 503, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn conference(
    State(s): AppState,
    caller: Caller,
    Id(id): Id,
    Body(body): Body<dto::Target>,
) -> Api<(StatusCode, Json<dto::Conversation>)> {
    let (to_queue_id, to_agent_id) = target(&body)?;
    require_participant(&s, &caller, &id)?;
    let command = v1::RequestConference {
        conversation_id: id,
        agent_id: caller.id.clone(),
        to_queue_id,
        to_agent_id,
    };
    let summary: v1::ConversationSummary =
        s.command(Service::Conversation, verbs::conversation::CONFERENCE, &command).await?;
    Ok(accepted(&s, &summary).await)
}

/// End the conference: ends the chat for everyone (B6.4).
#[utoipa::path(post, path = "/api/v1/conversations/{id}/conference/end", tag = "agent", params(("id" = String, Path)),
    responses((status = 202, body = dto::Conversation), (status = "4XX", body = Problem, content_type = "application/problem+json"), (status = 503, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn end_conference(
    State(s): AppState,
    caller: Caller,
    Id(id): Id,
) -> Api<(StatusCode, Json<dto::Conversation>)> {
    require_participant(&s, &caller, &id)?;
    let command = v1::EndConference { conversation_id: id, agent_id: caller.id.clone() };
    let summary: v1::ConversationSummary =
        s.command(Service::Conversation, verbs::conversation::END_CONFERENCE, &command).await?;
    Ok(accepted(&s, &summary).await)
}

/// Leave a conference (B6.4).
#[utoipa::path(post, path = "/api/v1/conversations/{id}/leave", tag = "agent", params(("id" = String, Path)),
    responses((status = 202, body = dto::Conversation), (status = "4XX", body = Problem, content_type = "application/problem+json"), (status = 503, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn leave(
    State(s): AppState,
    caller: Caller,
    Id(id): Id,
) -> Api<(StatusCode, Json<dto::Conversation>)> {
    require_participant(&s, &caller, &id)?;
    let command = v1::LeaveConversation { conversation_id: id, agent_id: caller.id.clone() };
    let summary: v1::ConversationSummary =
        s.command(Service::Conversation, verbs::conversation::LEAVE, &command).await?;
    Ok(accepted(&s, &summary).await)
}

/// End the conversation (B7.1).
#[utoipa::path(post, path = "/api/v1/conversations/{id}/end", tag = "agent", params(("id" = String, Path)),
    responses((status = 202, body = dto::Conversation), (status = "4XX", body = Problem, content_type = "application/problem+json"), (status = 503, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn end(
    State(s): AppState,
    caller: Caller,
    Id(id): Id,
) -> Api<(StatusCode, Json<dto::Conversation>)> {
    require_participant(&s, &caller, &id)?;
    let command = v1::EndConversation { conversation_id: id, by: Some(actor(&caller)) };
    let summary: v1::ConversationSummary =
        s.command(Service::Conversation, verbs::conversation::END, &command).await?;
    Ok(accepted(&s, &summary).await)
}

/// Submit the wrap-up owed for a conversation (B7.3).
#[utoipa::path(post, path = "/api/v1/conversations/{id}/wrapup", tag = "agent", params(("id" = String, Path)),
    request_body = dto::SubmitWrapup,
    responses((status = 204, description = "Submitted"), (status = "4XX", body = Problem, content_type = "application/problem+json"), (status = 503, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn submit_wrapup(
    State(s): AppState,
    caller: Caller,
    Id(id): Id,
    Body(body): Body<dto::SubmitWrapup>,
) -> Api<StatusCode> {
    check_id("reason", &body.reason)?;
    let note = body.note.unwrap_or_default();
    check_text("note", &note, false)?;
    let command = v1::SubmitWrapup {
        agent_id: caller.id.clone(),
        conversation_id: id,
        reason_code: body.reason,
        note,
    };
    let _: v1::PendingWrapupList =
        s.command(Service::WrapUp, verbs::wrapup::SUBMIT, &command).await?;
    Ok(StatusCode::NO_CONTENT)
}
