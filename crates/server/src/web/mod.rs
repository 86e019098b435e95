//! The web UI: server-rendered pages (maud, escaped by construction), one small script and one
//! stylesheet embedded in the binary, live updates over Server-Sent Events; and the JSON API
//! under `/api/` (handlers in [`crate::api`]). Everything joins the server's HTTP listener through
//! [`crate::Server::start_with`]: `Server::start_with(config, None, |api| web::router(api, opts))`.
//!
//! Layers, outermost first: security headers on every answer ([`headers`]), a body size limit,
//! then per route an authentication extractor ([`auth`]) and an authorization check
//! ([`access`]) before any data is read. A user who is not an admin sees only the devices of
//! their sites; any other device answers 404 exactly like a device that does not exist.
//!
//! Pages, by file: [`login`] (`/`, `/login`, `/logout`), [`dashboard`], [`device`] (readings,
//! charts, setpoint, commands, data use, CSV export), [`configure`] (Configure → System),
//! [`events`] (SSE), [`audit_page`], [`admin`], [`account`] (password, API tokens),
//! [`alarms_page`] (alarms, rules, notification log; destinations and lists for admins),
//! [`schedules`] (Configure → Schedules), [`site`] (energy and cost, time zone, tariff).

pub mod access;
pub mod account;
pub mod admin;
pub mod alarms_admin;
pub mod alarms_page;
pub mod assets;
pub mod audit_page;
pub mod auth;
pub mod bulk;
pub mod charts;
pub mod configure;
pub mod dashboard;
pub mod device;
pub mod error;
pub mod events;
pub mod export;
pub mod fields;
pub mod hasher;
pub mod headers;
pub mod layout;
pub mod login;
pub mod ratelimit;
pub mod rollback;
pub mod schedules;
pub mod settings;
pub mod site;
pub mod timefmt;
pub mod view;
pub mod zones;

use crate::inproc::Api;
use crate::storage::{self, Storage};
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, put};
use axum::Router;
use error::WebError;
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

/// Settings of the web UI.
#[derive(Debug, Clone)]
pub struct WebOptions {
    /// Mark the session cookie `Secure` (and name it `__Host-...`). Needed whenever users reach
    /// the server over HTTPS (behind a TLS proxy); impossible over plain HTTP.
    pub secure_cookies: bool,
    /// Lifetime of a login session, seconds.
    pub session_ttl_s: i64,
    /// Largest request body accepted, bytes.
    pub max_body_bytes: usize,
    /// Most live event streams open at once (each holds a connection and polls the database).
    pub max_event_streams: usize,
    /// How often an event stream looks for changes, milliseconds.
    pub event_interval_ms: u64,
    /// Send `Strict-Transport-Security` (users reach the server over HTTPS).
    pub hsts: bool,
    /// Reverse proxies whose `X-Forwarded-For` names the client (login limits).
    pub trusted_proxies: Vec<settings::Cidr>,
    /// Password checks running at once (at least 1).
    pub login_hashes: usize,
    /// Live event streams one user may hold at once.
    pub streams_per_user: usize,
}

impl Default for WebOptions {
    fn default() -> Self {
        WebOptions {
            secure_cookies: false,
            session_ttl_s: 12 * 3600,
            max_body_bytes: 64 * 1024,
            max_event_streams: 256,
            event_interval_ms: 1000,
            hsts: false,
            trusted_proxies: Vec::new(),
            login_hashes: 1,
            streams_per_user: 8,
        }
    }
}

impl WebOptions {
    /// Defaults for a listener on `http`: `Secure` cookies unless it is a loopback address
    /// (where plain HTTP is how browsers reach it; anywhere else a TLS proxy must be in front).
    pub fn for_listener(http: std::net::SocketAddr) -> WebOptions {
        WebOptions {
            secure_cookies: !http.ip().is_loopback(),
            ..WebOptions::default()
        }
    }

    /// The options of a server configuration: [`WebOptions::for_listener`], then its `[web]`
    /// section (`public_url` decides `Secure` cookies and HSTS when set).
    pub fn from_config(cfg: &crate::Config) -> WebOptions {
        let w = &cfg.web;
        let base = WebOptions::for_listener(cfg.http);
        let https = w.https();
        WebOptions {
            secure_cookies: https.unwrap_or(base.secure_cookies),
            hsts: https == Some(true),
            trusted_proxies: w.trusted_proxies.clone(),
            login_hashes: w.hashes_at_once(),
            streams_per_user: if w.streams_per_user == 0 {
                base.streams_per_user
            } else {
                w.streams_per_user
            },
            ..base
        }
    }
}

/// Shared state of every page and API handler, cheap to clone.
#[derive(Clone)]
pub struct Web(Arc<Inner>);

/// What [`Web`] holds.
pub struct Inner {
    /// The server's in-process API (pushes configurations and commands at once).
    pub api: Api,
    /// The storage.
    pub db: Arc<dyn Storage>,
    /// Settings.
    pub opts: WebOptions,
    /// Login attempts.
    pub limiter: Mutex<ratelimit::LoginLimiter>,
    /// Password checks running at once.
    pub hashes: ratelimit::HashGate,
    /// The threads that run them (`None` if they could not be started: checks then run on
    /// the blocking pool).
    pub hasher: Option<hasher::Hasher>,
    /// Permits for live event streams.
    pub streams: Arc<Semaphore>,
    /// Live event streams open per user.
    pub user_streams: Mutex<std::collections::HashMap<i64, usize>>,
}

impl std::ops::Deref for Web {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl Web {
    /// State over a running server's API.
    pub fn new(api: Api, opts: WebOptions) -> Web {
        Web(Arc::new(Inner {
            db: api.storage_handle(),
            streams: Arc::new(Semaphore::new(opts.max_event_streams)),
            hashes: ratelimit::HashGate::new(opts.login_hashes),
            // One thread per permit of the gate (the general ones and the one kept for fresh
            // addresses).
            hasher: hasher::Hasher::new(opts.login_hashes.max(1) + 1)
                .map_err(|e| tracing::warn!(%e, "no password-check threads"))
                .ok(),
            user_streams: Mutex::new(std::collections::HashMap::new()),
            api,
            opts,
            limiter: Mutex::new(ratelimit::LoginLimiter::default()),
        }))
    }

    /// Runs a storage call on a blocking thread.
    pub async fn db_call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Storage) -> storage::Result<T> + Send + 'static,
    ) -> Result<T, WebError> {
        let db = self.db.clone();
        crate::runtime::blocking(move || f(db.as_ref()))
            .await
            .map_err(WebError::from)
    }
}

/// Unix seconds now: the server's one clock (`clock::unix_now`), named here too for the
/// command-line crate and the simulator's tests that call `web::now`.
pub use crate::clock::unix_now as now;

/// The alarm pages (see [`alarms_page`]).
fn alarm_page_routes() -> Router<Web> {
    use alarms_admin as aa;
    use alarms_page as ap;
    Router::new()
        .route("/alarms", get(ap::overview))
        .route("/alarms/{id}/ack", post(ap::ack))
        .route("/devices/{id}/alarms", get(ap::device_page))
        .route("/devices/{id}/alarms/rules", post(ap::add_rule))
        .route(
            "/devices/{id}/alarms/rules/{rule}/delete",
            post(ap::delete_rule),
        )
        .route(
            "/devices/{id}/alarms/rules/{rule}/shelve",
            post(ap::shelve_rule),
        )
        .route(
            "/devices/{id}/alarms/rules/{rule}/enabled",
            post(ap::set_enabled),
        )
        .route(
            "/devices/{id}/alarms/rules/{rule}/edit",
            post(ap::edit_rule),
        )
        .route("/admin/alarms", get(aa::admin_page))
        .route("/admin/alarms/destinations", post(aa::add_destination))
        .route(
            "/admin/alarms/destinations/{id}/delete",
            post(aa::delete_destination),
        )
        .route(
            "/admin/alarms/destinations/{id}/test",
            post(aa::test_destination),
        )
        .route("/admin/alarms/lists", post(aa::add_list))
        .route("/admin/alarms/lists/{id}/members", post(aa::set_members))
        .route("/admin/alarms/lists/{id}/delete", post(aa::delete_list))
}

/// The alarm routes under `/api` (see [`crate::api::alarms`]).
fn alarm_api_routes() -> Router<Web> {
    use crate::api::alarms as al;
    Router::new()
        .route(
            "/devices/{id}/alarm-rules",
            get(al::list_rules).post(al::post_rule),
        )
        .route(
            "/devices/{id}/alarm-rules/{rule}",
            put(al::put_rule).delete(al::del_rule),
        )
        .route(
            "/devices/{id}/alarm-rules/{rule}/shelve",
            post(al::post_shelve),
        )
        .route("/devices/{id}/alarms", get(al::device_alarms))
        .route("/devices/{id}/notifications", get(al::device_notifications))
        .route("/alarms", get(al::list_alarms))
        .route("/alarms/{id}/ack", post(al::post_ack))
        .route("/alarms/{id}/notifications", get(al::alarm_notifications))
        .route("/alarm-templates", get(al::list_templates))
        .route(
            "/alarm-destinations",
            get(al::list_destinations).post(al::post_destination),
        )
        .route("/alarm-destinations/{id}", delete(al::del_destination))
        .route(
            "/alarm-destinations/{id}/test",
            get(al::get_tests).post(al::post_test),
        )
        .route("/alarm-lists", get(al::list_lists).post(al::post_list))
        .route("/alarm-lists/{id}", put(al::put_list).delete(al::del_list))
}

/// Every page and API route, with the security layers.
pub fn router(api: Api, opts: WebOptions) -> Router {
    let limit = opts.max_body_bytes;
    let hsts = opts.hsts;
    let web = Web::new(api, opts);
    use crate::api as a;
    let api_routes = Router::new()
        .route("/me", get(a::me::me))
        .route("/devices", get(a::devices::list))
        .route(
            "/devices/{id}",
            get(a::devices::get).patch(a::devices::patch),
        )
        .route("/devices/{id}/telemetry", get(a::telemetry::series))
        .route("/devices/{id}/telemetry.csv", get(a::telemetry::csv))
        .route(
            "/devices/{id}/config",
            get(a::config::get).put(a::config::put),
        )
        .route(
            "/devices/{id}/schedule",
            get(a::schedules::get).put(a::schedules::put),
        )
        .route(
            "/devices/{id}/commands",
            get(a::commands::list).post(a::commands::queue_cmd),
        )
        .route("/devices/{id}/usage", get(a::usage::usage))
        .route("/audit", get(a::audit::list))
        .route("/tokens", get(a::tokens::list).post(a::tokens::create))
        .route("/tokens/{id}", delete(a::tokens::delete))
        .route("/users", get(a::users::list).post(a::users::create))
        .route("/users/{id}", delete(a::users::delete))
        .route("/sites", get(a::sites::list).post(a::sites::create))
        .route("/sites/{id}", get(a::sites::get).delete(a::sites::delete))
        .route(
            "/sites/{id}/members/{user}",
            put(a::sites::grant).delete(a::sites::revoke),
        )
        .route("/sites/{id}/devices", put(a::sites::assign))
        .merge(alarm_api_routes())
        .route("/sites/{id}/energy", get(a::energy::get_energy))
        .route("/sites/{id}/energy.csv", get(a::energy::get_energy_csv))
        .route(
            "/sites/{id}/tariff",
            get(a::energy::get_tariff)
                .put(a::energy::put_tariff)
                .delete(a::energy::delete_tariff),
        )
        .route("/sites/{id}/time_zone", put(a::energy::put_time_zone))
        .route("/openapi.json", get(a::openapi::document))
        .fallback(a::me::not_found);
    let router = Router::new()
        .route("/", get(login::index))
        .route("/login", post(login::login))
        .route("/logout", post(login::logout))
        .route("/dashboard", get(dashboard::page))
        .route("/devices/{id}", get(device::page))
        .route("/devices/{id}/events", get(events::device_events))
        .route("/devices/{id}/setpoint", post(device::setpoint))
        .route("/devices/{id}/rename", post(device::rename_form))
        .route("/devices/bulk", post(bulk::apply))
        .route("/devices/{id}/command", post(device::command))
        .route("/devices/{id}/export.csv", get(export::page_csv))
        .route(
            "/devices/{id}/configure",
            get(configure::page).post(configure::save),
        )
        .route(
            "/devices/{id}/schedules",
            get(schedules::page).post(schedules::save),
        )
        .route("/sites/{id}", get(site::page))
        .route("/sites/{id}/time_zone", post(site::time_zone))
        .route("/sites/{id}/tariff", post(site::tariff))
        .route("/sites/{id}/tariff/delete", post(site::delete_tariff))
        .route("/sites/{id}/energy.csv", get(site::energy_csv))
        .route("/audit", get(audit_page::page))
        .route("/account", get(account::page))
        .route("/account/password", post(account::password))
        .route("/account/tokens", post(account::create_token))
        .route("/account/tokens/{id}/delete", post(account::delete_token))
        .route("/admin", get(admin::page))
        .route("/admin/users", post(admin::create_user_form))
        .route("/admin/users/{id}/delete", post(admin::delete_user_form))
        .route("/admin/sites", post(admin::create_site_form))
        .route("/admin/sites/{id}/delete", post(admin::delete_site_form))
        .route("/admin/members", post(admin::membership))
        .route("/admin/assign", post(admin::assign_form))
        .merge(alarm_page_routes())
        .route("/static/{file}", get(assets::serve))
        .nest("/api", api_routes)
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn(headers::security_headers))
        .with_state(web);
    if hsts {
        router.layer(axum::middleware::from_fn(headers::hsts))
    } else {
        router
    }
}
