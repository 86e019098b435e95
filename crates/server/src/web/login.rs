//! Signing in and out. `GET /` shows the login form to a stranger and sends a signed-in user to
//! the dashboard. A login is rate limited per client address, per account and address, and per
//! account ([`crate::http::ratelimit::LoginLimiter`]) before the password is checked; the client
//! address is the TCP peer, or what a trusted proxy says ([`settings::client_addr`]). At most
//! `login_hashes` password checks run at once ([`crate::http::ratelimit::HashGate`]); one more is
//! answered 503 at once. A failed login says only "wrong e-mail or password" (unknown addresses
//! take as long as known ones).

use super::auth::{CsrfForm, Posted};
use super::error::HtmlError;
use super::layout;
use crate::http::auth;
use crate::http::error::WebError;
use crate::http::settings;
use crate::http::Web;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, Extensions, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::html;
use serde::Deserialize;
use std::time::Instant;

fn form(message: Option<&str>, email: &str) -> axum::response::Html<String> {
    layout::standalone(
        "Sign in",
        html! {
            h1 { "tek — sign in" }
            @if let Some(m) = message { (layout::flash(false, m)) }
            form.login method="post" action="/login" data-plain {
                label { "E-mail" input type="email" name="email" value=(email) required autofocus autocomplete="username"; }
                label { "Password" input type="password" name="password" required autocomplete="current-password"; }
                button type="submit" { "Sign in" }
            }
        },
    )
}

/// `GET /`.
pub async fn index(State(web): State<Web>, headers: HeaderMap) -> Response {
    if let Some(secret) = auth::session_cookie(&headers) {
        let h = auth::secret_hash(&secret);
        let now = crate::clock::unix_now();
        if let Ok(Some(_)) = web.db_call(move |db| db.web_session(&h, now)).await {
            return Redirect::to("/dashboard").into_response();
        }
    }
    form(None, "").into_response()
}

/// The login form.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    email: String,
    password: String,
}

/// `POST /login`.
pub async fn login(
    State(web): State<Web>,
    ext: Extensions,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Result<Response, HtmlError> {
    // No session exists yet to carry a CSRF token; SameSite cookies and this check keep other
    // sites from logging a victim into an account of theirs.
    if let (Some(origin), Some(host)) = (headers.get(header::ORIGIN), headers.get(header::HOST)) {
        let o = origin.to_str().unwrap_or("");
        let h = host.to_str().unwrap_or("-");
        if o != format!("http://{h}") && o != format!("https://{h}") {
            return Err(WebError::Forbidden("cross-origin login refused").into());
        }
    }
    let email = f.email.trim().to_owned();
    let peer = ext
        .get::<ConnectInfo<crate::http_limit::PeerAddr>>()
        .map(|c| c.0 .0.ip());
    let addr =
        settings::client_addr(peer, &headers, &web.opts.trusted_proxies).map(|a| a.to_string());
    let admitted = web
        .limiter
        .lock()
        .map_err(|_| WebError::Internal("login limiter poisoned".into()))?
        .admit(&email, addr.as_deref(), Instant::now());
    let admitted = match admitted {
        Ok(a) => a,
        Err(wait) => {
            tracing::warn!(client = ?addr, "login rate limited");
            return Ok(refusal(
                StatusCode::TOO_MANY_REQUESTS,
                &format!("Too many login attempts; try again in {wait} s."),
                &email,
                wait,
            ));
        }
    };
    // At most `login_hashes` password checks at once: one more is answered now, not queued.
    let Some(permit) = web.hashes.enter(admitted).await else {
        tracing::warn!(client = ?addr, "login refused: password checks all busy");
        return Ok(refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "The server is busy; try again in a moment.",
            &email,
            1,
        ));
    };
    let lookup = email.clone();
    let creds = web.db_call(move |db| db.user_credentials(&lookup)).await?;
    let password = f.password;
    // The permit moves into the job: a client that hangs up does not free the slot before the
    // computation ends. The job runs on the low-priority password-check threads.
    let check = move || {
        let _permit = permit;
        match creds {
            Some((user, phc)) => auth::verify_password(&password, &phc).then_some(user),
            None => {
                auth::verify_password(&password, auth::dummy_hash());
                None
            }
        }
    };
    let user = match &web.hasher {
        Some(h) => h
            .run(check)
            .await
            .ok_or_else(|| WebError::Internal("password check not run".into()))?,
        None => tokio::task::spawn_blocking(check)
            .await
            .map_err(|e| WebError::Internal(e.to_string()))?,
    };
    let Some(user) = user else {
        tracing::info!(client = ?addr, "login failed");
        return Ok((
            StatusCode::UNAUTHORIZED,
            form(Some("Wrong e-mail or password."), &email),
        )
            .into_response());
    };
    if let Ok(mut l) = web.limiter.lock() {
        l.signed_in(&email, addr.as_deref());
    }
    let secret = auth::new_secret()?;
    let hash = auth::secret_hash(&secret);
    let now = crate::clock::unix_now();
    let ttl = web.opts.session_ttl_s;
    let uid = user.id;
    web.db_call(move |db| {
        db.purge_web_sessions(now)?;
        db.create_web_session(&hash, uid, now, now + ttl)
    })
    .await?;
    tracing::info!(user = uid, "signed in");
    let mut r = Redirect::to("/dashboard").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        auth::set_cookie(&secret, web.opts.secure_cookies, ttl)
            .parse()
            .map_err(|_| WebError::Internal("cookie header".into()))?,
    );
    Ok(r)
}

/// The login form again with a refusal and `Retry-After`.
fn refusal(status: StatusCode, message: &str, email: &str, retry_after_s: u64) -> Response {
    let mut r = (status, form(Some(message), email)).into_response();
    r.headers_mut()
        .insert(header::RETRY_AFTER, retry_after_s.into());
    r
}

/// A form carrying only its CSRF token.
#[derive(Debug, Deserialize)]
pub struct CsrfOnly {
    csrf: String,
}

impl CsrfForm for CsrfOnly {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /logout`.
pub async fn logout(State(web): State<Web>, p: Posted<CsrfOnly>) -> Result<Response, HtmlError> {
    if let auth::Via::Cookie { hash, .. } = p.user.via {
        web.db_call(move |db| db.delete_web_session(&hash)).await?;
    }
    let mut r = Redirect::to("/").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        auth::clear_cookie(web.opts.secure_cookies)
            .parse()
            .map_err(|_| WebError::Internal("cookie header".into()))?,
    );
    Ok(r)
}
