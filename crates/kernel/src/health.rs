//! `GET /healthz` (the process answers), `GET /readyz` (every read model has
//! caught up with the log) and `GET /metrics` (Prometheus text).

use axum::{Router, http::StatusCode, response::IntoResponse, routing::get};
use tokio::net::TcpListener;

use crate::{Readiness, Shutdown};

/// The health routes, to mount on any axum server.
pub fn router(readiness: Vec<Readiness>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let ready = readiness.iter().all(Readiness::get);
                async move {
                    if ready {
                        (StatusCode::OK, "ready")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "catching up")
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(|| async {
                ([("content-type", "text/plain; version=0.0.4")], crate::metrics::global().render())
                    .into_response()
            }),
        )
}

/// Serves [`router`] on `listener` until shutdown.
pub async fn serve(
    listener: TcpListener,
    readiness: Vec<Readiness>,
    mut shutdown: Shutdown,
) -> std::io::Result<()> {
    axum::serve(listener, router(readiness))
        .with_graceful_shutdown(async move { shutdown.wait().await })
        .await
}
