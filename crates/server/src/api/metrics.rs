//! `GET /metrics` in the Prometheus text format. Open by default (bind `http` to an address
//! only the monitoring can reach, or put it behind the proxy); with `web.metrics_token` set it
//! answers only `Authorization: Bearer <token>` (401 otherwise).

use crate::inproc::Api;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

pub(super) async fn metrics(State(api): State<Api>, headers: HeaderMap) -> Response {
    if let Some(want) = api.metrics_token() {
        let sent = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !crate::http::auth::constant_time_eq(sent.trim().as_bytes(), want.as_bytes()) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "metrics need the token of web.metrics_token\n",
            )
                .into_response();
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        api.metrics_text().await,
    )
        .into_response()
}
