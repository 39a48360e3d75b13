//! `GET /api/v1/stats/queues` and `GET /api/v1/stats/agents` (B9.4,
//! supervisors): the HTTP side of the pure [`crate::stats`] projection.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use kernel::Millis;
use serde::Deserialize;

use crate::Shared;
use crate::api::{Q, Supervisor};
use crate::problem::Problem;
use crate::stats::{self, AgentStats, QueueStats};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct IntervalQuery {
    /// RFC 3339 start, inclusive (default: today's start, UTC).
    from: Option<String>,
    /// RFC 3339 end, exclusive (default: now).
    to: Option<String>,
}

fn parse(raw: Option<&str>, name: &str, default: Millis) -> Result<Millis, Problem> {
    let Some(raw) = raw.filter(|r| !r.is_empty()) else { return Ok(default) };
    time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339)
        .ok()
        .and_then(|t| i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok())
        .ok_or_else(|| {
            Problem::bad_request("invalid_time", format!("`{name}` must be an RFC 3339 time"))
        })
}

/// `[from, to)` and now, from the query and the gateway's clock.
fn interval(s: &Shared, q: &IntervalQuery) -> Result<(Millis, Millis, Millis), Problem> {
    let now = s.clock.now();
    let from = parse(q.from.as_deref(), "from", stats::start_of_day(now))?;
    // "now" inclusive: facts stamped at this very millisecond count.
    let to = parse(q.to.as_deref(), "to", now + 1)?;
    if to < from {
        return Err(Problem::bad_request("invalid_interval", "`to` must not be before `from`"));
    }
    Ok((from, to, now))
}

/// Live statistics per queue (B9.4).
#[utoipa::path(get, path = "/api/v1/stats/queues", tag = "supervisor", params(IntervalQuery),
    responses((status = 200, body = Vec<QueueStats>), (status = "4XX", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn queues(
    State(s): State<Arc<Shared>>,
    _s: Supervisor,
    Q(q): Q<IntervalQuery>,
) -> Result<Json<Vec<QueueStats>>, Problem> {
    let (from, to, now) = interval(&s, &q)?;
    Ok(Json(s.report().queues(from, to, now)))
}

/// Live statistics per agent (B9.4).
#[utoipa::path(get, path = "/api/v1/stats/agents", tag = "supervisor", params(IntervalQuery),
    responses((status = 200, body = Vec<AgentStats>), (status = "4XX", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn agents(
    State(s): State<Arc<Shared>>,
    _s: Supervisor,
    Q(q): Q<IntervalQuery>,
) -> Result<Json<Vec<AgentStats>>, Problem> {
    let (from, to, now) = interval(&s, &q)?;
    Ok(Json(s.report().agents(from, to, now)))
}
