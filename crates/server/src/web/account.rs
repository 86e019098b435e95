//! `GET /account`: change one's password; create and delete API tokens for scripts. A new
//! token is shown once, right after it is created; only its hash is stored.

use super::auth::{CsrfForm, PageUser, Posted};
use super::error::HtmlError;
use super::fields::FieldErrors;
use super::layout::{self, Nav};
use super::zoned::ZoneHtml;
use crate::http::auth::Principal;
use crate::http::error::WebError;
use crate::http::Web;
use crate::service::accounts::{change_password, new_token};
use crate::service::zones::Zone;
use axum::extract::{Path, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

async fn render(
    web: &Web,
    p: &Principal,
    new_token: Option<&str>,
    message: Option<(bool, &str)>,
) -> Result<Html<String>, WebError> {
    render_kept(web, p, new_token, message, "", &FieldErrors::default()).await
}

/// The page with the token form's typed `name` and its errors kept.
async fn render_kept(
    web: &Web,
    p: &Principal,
    new_token: Option<&str>,
    message: Option<(bool, &str)>,
    name: &str,
    errs: &FieldErrors,
) -> Result<Html<String>, WebError> {
    let uid = p.user.id;
    let tokens = web.db_call(move |db| db.list_tokens(uid)).await?;
    let sites = web.db_call(move |db| db.user_sites(uid)).await?;
    let body = html! {
        h1 { "Account" }
        @if let Some((ok, m)) = message { (layout::flash(ok, m)) }
        p { "Signed in as " strong { (p.user.email) } @if p.user.is_admin { " (administrator)" } "." }
        @if !sites.is_empty() { p { "Sites: " @for (i, s) in sites.iter().enumerate() { @if i > 0 { ", " } (s.name) } } }
        h2 { "Change password" }
        form.stack method="post" data-plain action="/account/password" {
            (layout::csrf_field(p))
            label { "Current password" input type="password" name="current" required autocomplete="current-password"; }
            label { "New password (at least 10 characters)" input type="password" name="new" required minlength="10" autocomplete="new-password"; }
            button type="submit" { "Change password" }
        }
        h2 { "API tokens" }
        p.hint { "For scripts: send " code { "Authorization: Bearer TOKEN" } " to the JSON API under /api/ (see docs/API.md)." }
        @if let Some(t) = new_token {
            div.flash.ok { p { "New token — copy it now, it is not shown again:" } code #new-token { (t) } }
        }
        @if !tokens.is_empty() {
            table { thead { tr { th { "Name" } th { "Created" } th { "Last used" } th {} } }
                tbody { @for t in &tokens { tr {
                    td { (t.name) } td { (Zone::utc().time_abbr(t.created_at)) }
                    td { @if let Some(u) = t.last_used { (Zone::utc().time_abbr(u)) } @else { "never" } }
                    td { form method="post" data-confirm={ "Delete the API token " (t.name) "? Scripts using it stop working." } action={ "/account/tokens/" (t.id) "/delete" } { (layout::csrf_field(p)) button type="submit" { "Delete" } } }
                } } } }
        }
        form.inline method="post" data-plain action="/account/tokens" {
            (layout::csrf_field(p))
            label { "Name" input #token-name name="name" required maxlength="64" placeholder="e.g. reporting script" value=(name)
                aria-invalid=[errs.invalid("name")] aria-describedby=[errs.described_by("name")];
                (errs.note("name")) }
            button type="submit" { "Create token" }
        }
    };
    Ok(layout::page(p, Nav::Account, "Account", body))
}

/// `GET /account`.
pub async fn page(
    State(web): State<Web>,
    PageUser(p): PageUser,
) -> Result<Html<String>, HtmlError> {
    Ok(render(&web, &p, None, None).await?)
}

/// The password form.
#[derive(Debug, Deserialize)]
pub struct PasswordForm {
    csrf: String,
    current: String,
    new: String,
}

impl CsrfForm for PasswordForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /account/password`.
pub async fn password(
    State(web): State<Web>,
    Posted { user, form }: Posted<PasswordForm>,
) -> Result<Response, HtmlError> {
    match change_password(&web, &user, form.current, form.new).await {
        Ok(()) => Ok(render(
            &web,
            &user,
            None,
            Some((
                true,
                "Password changed; other sessions were signed out and API tokens revoked.",
            )),
        )
        .await?
        .into_response()),
        Err(WebError::Invalid(m)) => {
            let page = render(&web, &user, None, Some((false, &m))).await?;
            Ok((axum::http::StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

/// The token form.
#[derive(Debug, Deserialize)]
pub struct TokenForm {
    csrf: String,
    name: String,
}

impl CsrfForm for TokenForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /account/tokens`.
pub async fn create_token(
    State(web): State<Web>,
    Posted { user, form }: Posted<TokenForm>,
) -> Result<Response, HtmlError> {
    match new_token(&web, &user, &form.name).await {
        Ok((_, token)) => Ok(render(&web, &user, Some(&token), None)
            .await?
            .into_response()),
        Err(WebError::Invalid(m)) => {
            let errs = FieldErrors::one("name", m);
            let page = render_kept(&web, &user, None, None, &form.name, &errs).await?;
            Ok((axum::http::StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /account/tokens/{id}/delete`.
pub async fn delete_token(
    State(web): State<Web>,
    Path(id): Path<i64>,
    Posted { user, .. }: Posted<super::login::CsrfOnly>,
) -> Result<Response, HtmlError> {
    let uid = user.user.id;
    if !web.db_call(move |db| db.delete_token(uid, id)).await? {
        return Err(WebError::NotFound.into());
    }
    web.audit(&user, "token.delete", None, None, format!("API token {id}"))
        .await?;
    Ok(Redirect::to("/account").into_response())
}
