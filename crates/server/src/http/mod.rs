//! The HTTP plumbing both faces share — the pages ([`crate::web`]) and the JSON API
//! ([`crate::api`]) — and the MQTT command face: the shared state [`Web`] with its storage
//! handle, [`WebOptions`], who is asking ([`auth`]) and may see what ([`access`]), errors
//! ([`error`]), login limits ([`ratelimit`], [`hasher`]), security headers ([`headers`]) and the
//! `[web]` settings ([`settings`]). Nothing here imports a face or the service layer; the
//! routes are joined in [`crate::router`].

pub mod access;
pub mod auth;
pub mod error;
pub mod hasher;
pub mod headers;
pub mod ratelimit;
pub mod settings;

use crate::inproc::Api;
use crate::storage::{self, Storage};
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
