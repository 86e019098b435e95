//! `GET /metrics` in the Prometheus text format.

use crate::server::Api;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

pub(super) async fn metrics(State(api): State<Api>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        api.metrics_text().await,
    )
}
