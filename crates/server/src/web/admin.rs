//! `GET /admin` (administrators only): users, sites, who may see which site, and which site each
//! controller belongs to. The operations are in `service::accounts`.

use super::auth::{CsrfForm, PageUser, Posted};
use super::error::HtmlError;
use super::layout::{self, Nav};
use crate::http::auth::Principal;
use crate::http::error::WebError;
use crate::http::Web;
use crate::service::accounts::{
    assign, create_site, create_user, delete_site, delete_user, parse_ids, set_member,
};
use axum::extract::{Path, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

/// `GET /admin`.
pub async fn page(
    State(web): State<Web>,
    PageUser(p): PageUser,
    axum::extract::Query(q): axum::extract::Query<OkQuery>,
) -> Result<Html<String>, HtmlError> {
    Ok(render(&web, &p, q.ok.map(|m| (true, m))).await?)
}

/// The confirmation line after a change (`?ok=`).
#[derive(Debug, Deserialize, Default)]
pub struct OkQuery {
    ok: Option<String>,
}

impl OkQuery {
    /// The confirmation, if any.
    pub fn message(&self) -> Option<&str> {
        self.ok.as_deref()
    }
}

async fn render(
    web: &Web,
    p: &Principal,
    message: Option<(bool, String)>,
) -> Result<Html<String>, WebError> {
    Web::require_admin(&p.user)?;
    let (users, sites) = web
        .db_call(|db| Ok((db.list_users()?, db.list_sites()?)))
        .await?;
    let site_ids: Vec<i64> = sites.iter().map(|s| s.id).collect();
    let details = web
        .db_call(move |db| {
            site_ids
                .iter()
                .map(|&s| Ok((db.site_members(s)?, db.site_device_ids(s)?)))
                .collect::<crate::storage::Result<Vec<_>>>()
        })
        .await?;
    let email = |id: i64| {
        users
            .iter()
            .find(|u| u.id == id)
            .map_or("?", |u| u.email.as_str())
    };
    let csrf = layout::csrf_field(p);
    let body = html! {
        h1 { "Admin" }
        p { a href="/admin/alarms" { "Alarm destinations and lists →" } }
        @if let Some((ok, m)) = &message { (layout::flash(*ok, m)) }
        h2 { "Users" }
        table { thead { tr { th { "Id" } th { "E-mail" } th { "Role" } th {} } }
            tbody { @for u in &users { tr {
                td { (u.id) } td { (u.email) } td { (if u.is_admin { "admin" } else { "user" }) }
                td { @if u.id != p.user.id { form method="post" data-confirm={ "Delete the user " (u.email) "?" } action={ "/admin/users/" (u.id) "/delete" } { (csrf) button type="submit" { "Delete" } } } }
            } } } }
        form.inline method="post" action="/admin/users" {
            (csrf)
            label { "E-mail" input type="email" name="email" required; }
            label { "Password" input type="password" name="password" required minlength="10" autocomplete="new-password"; }
            label.check { input type="checkbox" name="admin" value="on"; "admin" }
            button type="submit" { "Add user" }
        }
        h2 { "Sites" }
        table { thead { tr { th { "Id" } th { "Name" } th { "Time zone" } th { "Members" } th { "Controllers" } th {} } }
            tbody { @for (s, (members, devices)) in sites.iter().zip(&details) { tr {
                td { (s.id) } td { a href={ "/sites/" (s.id) } { (s.name) } } td { (s.time_zone) }
                td { @for (i, m) in members.iter().enumerate() { @if i > 0 { ", " } (email(*m)) } }
                td { (devices.len()) }
                td { form method="post" data-confirm={ "Delete the site " (s.name) "? Its controllers become unassigned." } action={ "/admin/sites/" (s.id) "/delete" } { (csrf) button type="submit" { "Delete" } } }
            } } } }
        form.inline method="post" action="/admin/sites" {
            (csrf)
            label { "Name" input name="name" required maxlength="100"; }
            label { "Time zone" input name="time_zone" maxlength="64" value="UTC" placeholder="Europe/Berlin"; }
            button type="submit" { "Add site" }
        }
        h2 { "Site access" }
        form.inline method="post" action="/admin/members" {
            (csrf)
            select name="user" aria-label="User" { @for u in &users { option value=(u.id) { (u.email) } } }
            select name="site" aria-label="Site" { @for s in &sites { option value=(s.id) { (s.name) } } }
            select name="op" aria-label="Grant or revoke" { option value="grant" { "grant" } option value="revoke" { "revoke" } }
            button type="submit" { "Apply" }
        }
        h2 { "Assign controllers" }
        form.inline method="post" action="/admin/assign" {
            (csrf)
            label { "Controllers" input name="devices" required placeholder="1-25, 30"; }
            select name="site" aria-label="Site" { option value="" { "(no site)" } @for s in &sites { option value=(s.id) { (s.name) } } }
            button type="submit" { "Assign" }
        }
    };
    Ok(layout::page(p, Nav::Admin, "Admin", body))
}

async fn after(
    web: &Web,
    p: &Principal,
    r: Result<String, WebError>,
) -> Result<Response, HtmlError> {
    match r {
        Ok(done) => {
            let q = serde_urlencoded::to_string([("ok", done)]).unwrap_or_default();
            Ok(Redirect::to(&format!("/admin?{q}")).into_response())
        }
        Err(e @ (WebError::Invalid(_) | WebError::Conflict(_))) => {
            let status = e.status();
            Ok((status, render(web, p, Some((false, e.to_string()))).await?).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

macro_rules! csrf_form {
    ($t:ident { $($f:ident : $ty:ty),* $(,)? }) => {
        /// An admin form.
        #[derive(Debug, Deserialize)]
        pub struct $t { csrf: String, $(#[serde(default)] $f: $ty),* }
        impl CsrfForm for $t { fn csrf(&self) -> &str { &self.csrf } }
    };
}

csrf_form!(UserForm { email: String, password: String, admin: Option<String> });
csrf_form!(SiteForm {
    name: String,
    time_zone: String
});
csrf_form!(MemberForm {
    user: i64,
    site: i64,
    op: String
});
csrf_form!(AssignForm {
    devices: String,
    site: String
});

/// `POST /admin/users`.
pub async fn create_user_form(
    State(web): State<Web>,
    Posted { user, form }: Posted<UserForm>,
) -> Result<Response, HtmlError> {
    Web::require_admin(&user.user)?;
    let r = create_user(
        &web,
        &user,
        &form.email,
        form.password,
        form.admin.is_some(),
    )
    .await
    .map(|_| format!("User {} added.", form.email.trim()));
    after(&web, &user, r).await
}

/// `POST /admin/users/{id}/delete`.
pub async fn delete_user_form(
    State(web): State<Web>,
    Path(id): Path<i64>,
    Posted { user, .. }: Posted<super::login::CsrfOnly>,
) -> Result<Response, HtmlError> {
    let r = delete_user(&web, &user, id)
        .await
        .map(|_| format!("User {id} deleted."));
    after(&web, &user, r).await
}

/// `POST /admin/sites`.
pub async fn create_site_form(
    State(web): State<Web>,
    Posted { user, form }: Posted<SiteForm>,
) -> Result<Response, HtmlError> {
    Web::require_admin(&user.user)?;
    let r = async {
        let tz = match form.time_zone.trim() {
            "" => None,
            t => Some(crate::energy::zone::parse(t).map_err(WebError::Invalid)?.1),
        };
        let id = create_site(&web, &user, &form.name).await?;
        if let Some(tz) = tz {
            crate::service::energy::set_time_zone(&web, &user, id, &tz).await?;
        }
        Ok(format!("Site {} added.", form.name.trim()))
    }
    .await;
    after(&web, &user, r).await
}

/// `POST /admin/sites/{id}/delete`.
pub async fn delete_site_form(
    State(web): State<Web>,
    Path(id): Path<i64>,
    Posted { user, .. }: Posted<super::login::CsrfOnly>,
) -> Result<Response, HtmlError> {
    let r = delete_site(&web, &user, id)
        .await
        .map(|_| format!("Site {id} deleted."));
    after(&web, &user, r).await
}

/// `POST /admin/members`.
pub async fn membership(
    State(web): State<Web>,
    Posted { user, form }: Posted<MemberForm>,
) -> Result<Response, HtmlError> {
    Web::require_admin(&user.user)?;
    let grant = match form.op.as_str() {
        "grant" => true,
        "revoke" => false,
        _ => return Err(WebError::Invalid("op must be grant or revoke".into()).into()),
    };
    let r = set_member(&web, &user, form.user, form.site, grant)
        .await
        .map(|_| {
            if grant {
                "Access granted.".to_owned()
            } else {
                "Access revoked.".to_owned()
            }
        });
    after(&web, &user, r).await
}

/// `POST /admin/assign`.
pub async fn assign_form(
    State(web): State<Web>,
    Posted { user, form }: Posted<AssignForm>,
) -> Result<Response, HtmlError> {
    Web::require_admin(&user.user)?;
    let r = async {
        let ids = parse_ids(&form.devices)?;
        let site = match form.site.trim() {
            "" => None,
            s => Some(
                s.parse::<i64>()
                    .map_err(|_| WebError::Invalid("bad site".into()))?,
            ),
        };
        let n = ids.len();
        assign(&web, &user, ids, site).await?;
        Ok(match site {
            Some(s) => format!("{n} controller(s) assigned to site {s}."),
            None => format!("{n} controller(s) unassigned."),
        })
    }
    .await;
    after(&web, &user, r).await
}
