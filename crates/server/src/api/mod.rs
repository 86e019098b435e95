//! The HTTP listener: operational endpoints now (`/healthz`, `/metrics`); the web UI and the
//! JSON API (issue 5) are merged into the same router through [`crate::Server::start_with`].

mod health;
mod metrics;

// The JSON API of the web UI (issue 5), one file per resource; routed in `crate::router::router`.
pub mod alarms;
pub mod audit;
pub mod channels;
pub mod commands;
pub mod config;
pub mod devices;
pub mod energy;
pub mod me;
pub mod openapi;
pub mod schedules;
pub mod sites;
pub mod telemetry;
pub mod templates;
pub mod tokens;
pub mod usage;
pub mod users;

use crate::inproc::Api;
use axum::routing::get;
use axum::Router;

/// The server's own routes.
pub fn router(api: Api) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/metrics", get(metrics::metrics))
        .with_state(api)
}
