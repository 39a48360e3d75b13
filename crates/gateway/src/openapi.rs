//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]`
//! and the DTOs' `ToSchema`, so it cannot drift from the code. Served without
//! auth at `GET /api/v1/openapi.json`.

use axum::Json;
use axum::response::IntoResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::{api, dto, problem, ws};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Switchboard gateway API",
        version = "1",
        description = "The API agent desktops, supervisor tools and integrations use (GATEWAY-API.md). \
            Every call but this document needs `Authorization: Bearer <JWT>` (HS256). Errors are \
            `application/problem+json` with a stable `code`."
    ),
    paths(
        api::put_queue, api::list_queues, api::put_entry_point, api::put_agent, api::list_agents,
        api::put_agent_state, api::put_reason, api::retire_reason, api::list_reasons,
        api::list_conversations, api::reassign, api::me, api::put_my_state, api::my_offers,
        api::my_wrapups, api::get_conversation, api::accept, api::send_message, api::transfer,
        api::conference, api::end_conference, api::leave, api::end, api::submit_wrapup, ws::handler,
        crate::stats_api::queues, crate::stats_api::agents, crate::replay::events,
    ),
    components(schemas(problem::Problem, dto::Queue, dto::Agent, dto::Presence, dto::Offer, dto::Conversation, dto::Message)),
    modifiers(&Bearer),
    tags(
        (name = "supervisor", description = "Role `supervisor`"),
        (name = "directory", description = "Any authenticated caller: the transfer directory and reason picker"),
        (name = "agent", description = "Role `agent` (a supervisor may act as itself)"),
        (name = "live", description = "The WebSocket of live changes"),
    )
)]
pub struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build(),
            ),
        );
    }
}

/// The document as JSON.
pub fn document() -> serde_json::Value {
    serde_json::to_value(ApiDoc::openapi()).unwrap_or_default()
}

pub async fn serve() -> impl IntoResponse {
    Json(document())
}
