//! `GET /healthz`: 200 when the UDP socket loop runs and the database answers, else 503.

use crate::inproc::Api;
use axum::extract::State;
use axum::http::StatusCode;

pub(super) async fn healthz(State(api): State<Api>) -> (StatusCode, String) {
    match api.health().await {
        Ok(()) => (StatusCode::OK, "ok\n".into()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
    }
}
