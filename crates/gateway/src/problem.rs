//! Errors as `application/problem+json` (RFC 9457), in one place: every
//! refusal of the gateway, of a domain service (`CommandError.kind` → status)
//! and every infrastructure failure (503, logged once here) becomes a
//! [`Problem`] with a stable snake_case `code`.

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use kernel::commands::CallError;
use sb_proto::v1::ErrorKind;
use serde::Serialize;

/// An RFC 9457 problem document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the problem type: `urn:switchboard:problem:<code>`.
    #[serde(rename = "type")]
    pub type_: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable snake_case code (GATEWAY-API.md), e.g. `not_offered_to_you`.
    pub code: String,
}

impl Problem {
    pub fn new(status: StatusCode, code: &str, detail: impl Into<String>) -> Problem {
        Problem {
            type_: format!("urn:switchboard:problem:{code}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            code: code.to_owned(),
        }
    }

    pub fn bad_request(code: &str, detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, code, detail)
    }

    pub fn unauthorized(code: &str, detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::UNAUTHORIZED, code, detail)
    }

    pub fn forbidden(code: &str, detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::FORBIDDEN, code, detail)
    }

    pub fn not_found(code: &str, detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, code, detail)
    }

    pub fn supervisor_only() -> Problem {
        Problem::forbidden("supervisor_only", "this call needs the `supervisor` role")
    }

    pub fn unavailable(code: &str, detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, code, detail)
    }

    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

/// HTTP status of a domain refusal.
pub fn status_of(kind: i32) -> StatusCode {
    match ErrorKind::try_from(kind).unwrap_or(ErrorKind::Unspecified) {
        ErrorKind::Invalid => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Rule => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        // A service that forgot to classify its refusal: treat it as a conflict
        // (the call changed nothing) rather than our own failure.
        ErrorKind::Unspecified => StatusCode::CONFLICT,
    }
}

impl From<CallError> for Problem {
    fn from(error: CallError) -> Problem {
        match error {
            CallError::Refused(e) => Problem::new(status_of(e.kind), &e.code, e.message),
            CallError::Bus(e) => {
                tracing::warn!(error = %e, "command not answered");
                Problem::unavailable(
                    "service_unavailable",
                    format!("the service did not answer, try again: {e}"),
                )
            }
            CallError::Malformed(e) => {
                tracing::error!(error = %e, "malformed command reply");
                Problem::unavailable("service_unavailable", format!("malformed reply: {e}"))
            }
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let mut response = (status, Json(self)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::SERVICE_UNAVAILABLE {
            // B8.3: a retryable failure says when to try again.
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sb_proto::v1::CommandError;

    #[test]
    fn b8_domain_refusals_map_to_their_http_status_with_the_code() {
        let refused = |kind: ErrorKind| {
            Problem::from(CallError::Refused(CommandError {
                code: "x_y".into(),
                message: "m".into(),
                kind: kind as i32,
            }))
        };
        assert_eq!(refused(ErrorKind::Invalid).status, 400);
        assert_eq!(refused(ErrorKind::NotFound).status, 404);
        assert_eq!(refused(ErrorKind::Conflict).status, 409);
        assert_eq!(refused(ErrorKind::Rule).status, 422);
        assert_eq!(refused(ErrorKind::Forbidden).status, 403);
        assert_eq!(refused(ErrorKind::Unavailable).status, 503);
        let p = refused(ErrorKind::Rule);
        assert_eq!((p.code.as_str(), p.detail.as_str()), ("x_y", "m"));
        assert_eq!(p.type_, "urn:switchboard:problem:x_y");
        assert_eq!(p.title, "Unprocessable Entity");
    }
}
