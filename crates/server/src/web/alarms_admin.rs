//! `/admin/alarms` (administrators only): destinations — with a test notification each and the
//! log of those — and destination lists. Every change goes through `service::alarms`, as the
//! JSON API's does: access check, validation, audit entry, engine update.

use super::alarms_page::{note_rows, PageQuery, Plain};
use super::auth::{CsrfForm, PageUser, Posted};
use super::error::HtmlError;
use super::layout::{self, Nav};
use crate::http::auth::Principal;
use crate::http::error::WebError;
use crate::http::Web;
use crate::service::alarms as al;
use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

/// `GET /admin/alarms`: destinations and lists.
pub async fn admin_page(
    State(web): State<Web>,
    PageUser(p): PageUser,
    Query(q): Query<PageQuery>,
) -> Result<Html<String>, HtmlError> {
    Web::require_admin(&p.user)?;
    let (dests, lists, sites, tests) = web
        .db_call(|db| {
            Ok((
                db.destinations()?,
                db.lists()?,
                db.list_sites()?,
                db.notifications(Some(&[al::TEST_DEVICE]), None, 20)?,
            ))
        })
        .await?;
    let zones = web.zones(Vec::new()).await?;
    let site_name = |id: Option<i64>| {
        id.and_then(|id| sites.iter().find(|s| s.id == id))
            .map_or("administrators only".to_owned(), |s| s.name.clone())
    };
    let name = |id: i64| {
        dests
            .iter()
            .find(|d| d.id == id)
            .map_or("?", |d| d.name.as_str())
    };
    let csrf = layout::csrf_field(&p);
    let body = html! {
        h1 { "Alarm destinations" }
        @if let Some(m) = &q.ok { (layout::flash(true, m)) }
        table.destinations { thead { tr { th.wide { "Id" } th { "Name" } th { "Kind" } th { "Target" } th {} } }
            tbody { @for d in &dests { tr {
                td.wide { (d.id) } td { (d.name) } td { (d.kind.as_str()) } td.target { (d.target) }
                td.actions {
                    form.inline method="post" action={ "/admin/alarms/destinations/" (d.id) "/test" } { (csrf) button.test-send type="submit" title={ "Send a test notification to " (d.name) } { "Send test" } }
                    form.inline method="post" data-confirm={ "Delete the destination " (d.name) "?" } action={ "/admin/alarms/destinations/" (d.id) "/delete" } { (csrf) button type="submit" { "Delete" } }
                }
            } } } }
        form.inline method="post" action="/admin/alarms/destinations" {
            (csrf)
            label { "Name" input name="name" required maxlength="100"; }
            label { "Kind" select name="kind" { option value="email" { "e-mail" } option value="webhook" { "webhook" } } }
            label { "Address or https:// URL" input name="target" required; }
            label { "Webhook secret (16+ characters)" input type="password" name="secret" autocomplete="off"; }
            button type="submit" { "Add destination" }
        }
        @if !tests.is_empty() {
            h2 #tests { "Test notifications" }
            p.hint { "Sent like alarm notifications (same queue, retries and log). Reload to see the result of one still queued." }
            (note_rows(&tests, &zones))
        }
        h2 { "Destination lists" }
        table { thead { tr { th { "Id" } th { "Name" } th { "Site" } th { "Members" } th {} th {} } }
            tbody { @for l in &lists { tr {
                td { (l.id) } td { (l.name) } td { (site_name(l.site_id)) }
                td { @for (i, m) in l.members.iter().enumerate() { @if i > 0 { ", " } (name(*m)) } }
                td { form.inline method="post" action={ "/admin/alarms/lists/" (l.id) "/members" } {
                    (csrf)
                    @for d in &dests {
                        label.check { input type="checkbox" name="member" value=(d.id) checked[l.members.contains(&d.id)]; (d.name) }
                    }
                    button type="submit" { "Set members" }
                } }
                td { form method="post" data-confirm={ "Delete the list " (l.name) "?" } action={ "/admin/alarms/lists/" (l.id) "/delete" } { (csrf) button type="submit" { "Delete" } } }
            } } } }
        form.inline method="post" action="/admin/alarms/lists" {
            (csrf)
            label { "Name" input name="name" required maxlength="100"; }
            label { "Picked by users of" select name="site" {
                option value="" { "administrators only" }
                @for s in &sites { option value=(s.id) { (s.name) } }
            } }
            @for d in &dests {
                label.check { input type="checkbox" name="member" value=(d.id); (d.name) }
            }
            button type="submit" { "Add list" }
        }
    };
    Ok(layout::page(&p, Nav::Admin, "Alarm destinations", body))
}

/// `POST /admin/alarms/destinations/{id}/test`: a test notification, then back to the page,
/// whose "Test notifications" log shows its result.
pub async fn test_destination(
    State(web): State<Web>,
    Path(id): Path<i64>,
    Posted { user, .. }: Posted<Plain>,
) -> Result<Response, HtmlError> {
    let n = al::test_destination(&web, &user, id).await?;
    Ok(Redirect::to(&format!(
        "/admin/alarms?ok=test+notification+{}+queued#tests",
        n.id
    ))
    .into_response())
}

/// The new-destination form.
#[derive(Debug, Deserialize)]
pub struct DestForm {
    csrf: String,
    name: String,
    kind: String,
    target: String,
    secret: Option<String>,
}

impl CsrfForm for DestForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /admin/alarms/destinations`.
pub async fn add_destination(
    State(web): State<Web>,
    Posted { user, form }: Posted<DestForm>,
) -> Result<Response, HtmlError> {
    Web::require_admin(&user.user)?;
    let id = al::create_destination(
        &web,
        &user,
        al::NewDest {
            name: form.name,
            kind: form.kind,
            target: form.target,
            secret: form.secret,
        },
    )
    .await?;
    Ok(Redirect::to(&format!("/admin/alarms?ok=destination+{id}+added")).into_response())
}

/// `POST /admin/alarms/destinations/{id}/delete`.
pub async fn delete_destination(
    State(web): State<Web>,
    Path(id): Path<i64>,
    Posted { user, .. }: Posted<Plain>,
) -> Result<Response, HtmlError> {
    al::delete_destination(&web, &user, id).await?;
    Ok(Redirect::to("/admin/alarms?ok=destination+deleted").into_response())
}

/// A list form: a name (new lists) and checked members. Repeated `member` fields are read by
/// hand (serde_urlencoded has no sequences).
pub(crate) fn members_of(body: &[u8]) -> Result<Vec<i64>, WebError> {
    form_urlencoded_pairs(body)
        .into_iter()
        .filter(|(k, _)| k == "member")
        .map(|(_, v)| {
            v.parse()
                .map_err(|_| WebError::Invalid(format!("member {v:?} is not an id")))
        })
        .collect()
}

fn form_urlencoded_pairs(body: &[u8]) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body).unwrap_or_default()
}

/// The list forms: CSRF and a name; members are read from the raw body.
#[derive(Debug, Deserialize)]
pub struct ListForm {
    csrf: String,
    name: Option<String>,
    /// The site whose users may pick the list (empty: administrators only).
    site: Option<String>,
}

impl CsrfForm for ListForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /admin/alarms/lists`.
pub async fn add_list(
    State(web): State<Web>,
    raw: RawForm<ListForm>,
) -> Result<Response, HtmlError> {
    let RawForm {
        user,
        form,
        members,
    } = raw;
    Web::require_admin(&user.user)?;
    let id = al::create_list(
        &web,
        &user,
        al::NewList {
            name: form.name.unwrap_or_default(),
            members,
            site_id: form
                .site
                .filter(|s| !s.is_empty())
                .map(|s| {
                    s.parse()
                        .map_err(|_| WebError::Invalid(format!("site {s:?} is not an id")))
                })
                .transpose()?,
        },
    )
    .await?;
    Ok(Redirect::to(&format!("/admin/alarms?ok=list+{id}+added")).into_response())
}

/// `POST /admin/alarms/lists/{id}/members`.
pub async fn set_members(
    State(web): State<Web>,
    Path(id): Path<i64>,
    raw: RawForm<ListForm>,
) -> Result<Response, HtmlError> {
    let RawForm { user, members, .. } = raw;
    al::set_members(&web, &user, id, members).await?;
    Ok(Redirect::to("/admin/alarms?ok=members+saved").into_response())
}

/// `POST /admin/alarms/lists/{id}/delete`.
pub async fn delete_list(
    State(web): State<Web>,
    Path(id): Path<i64>,
    Posted { user, .. }: Posted<Plain>,
) -> Result<Response, HtmlError> {
    al::delete_list(&web, &user, id).await?;
    Ok(Redirect::to("/admin/alarms?ok=list+deleted").into_response())
}

/// A CSRF-checked form post with repeated `member` fields.
#[derive(Debug)]
pub struct RawForm<T> {
    /// Who.
    pub user: Principal,
    /// The single-valued fields.
    pub form: T,
    /// The `member` values.
    pub members: Vec<i64>,
}

impl<T> axum::extract::FromRequest<Web> for RawForm<T>
where
    T: serde::de::DeserializeOwned + CsrfForm + Send,
{
    type Rejection = HtmlError;

    async fn from_request(req: axum::extract::Request, web: &Web) -> Result<Self, HtmlError> {
        let (mut parts, body) = req.into_parts();
        let bytes = axum::body::to_bytes(body, web.opts.max_body_bytes)
            .await
            .map_err(|_| WebError::TooLarge)?;
        // Read now, reported only after authentication and the CSRF check.
        let members = members_of(&bytes);
        parts.headers.remove(axum::http::header::CONTENT_LENGTH);
        // The token and the single-valued fields: the same checks as every other form, on a
        // body without the repeated fields.
        let rest: Vec<(String, String)> = form_urlencoded_pairs(&bytes)
            .into_iter()
            .filter(|(k, _)| k != "member")
            .collect();
        let rest = serde_urlencoded::to_string(&rest)
            .map_err(|e| WebError::Invalid(format!("the form could not be read: {e}")))?;
        let req = axum::extract::Request::from_parts(parts, axum::body::Body::from(rest));
        let Posted { user, form } = Posted::<T>::from_request(req, web).await?;
        Ok(RawForm {
            user,
            form,
            members: members?,
        })
    }
}
