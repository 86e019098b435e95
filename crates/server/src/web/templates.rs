//! The channel templates (issue 18): `GET /templates` lists the templates the user sees (built
//! in, every site's, their sites' own) with what each has and how many of the user's
//! controllers use it; `GET /templates/{id}` shows one: its channels with their sources in
//! words, its buses, its roles, the user's controllers that use it, and a form to apply it to
//! the controllers the user picks (`POST /templates/{id}/apply`; after an edit, `?push=1`
//! ticks those that use it). Creating, editing and deleting are in [`super::template_editor`],
//! linked from here for the users the service lets change the template. A face over
//! [`crate::service::channels`] (`template_summaries`, `template_page`) and
//! [`crate::service::apply`]; a template the user does not see is 404, like one that does not
//! exist.

use super::admin::OkQuery;
use super::auth::{CsrfForm, PageUser, Posted};
use super::error::HtmlError;
use super::layout::{self, Nav};
use crate::http::auth::Principal;
use crate::http::error::WebError;
use crate::http::Web;
use crate::inproc::DeviceState;
use crate::service::channels::{self, RolesView, TemplatePage, TemplateView};
use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::{html, Markup};
use serde::Deserialize;
use std::collections::HashMap;

/// "built in", "every site" or the owner site's name.
fn owner(t: &TemplateView, site_name: Option<&str>) -> Markup {
    html! {
        @if t.builtin { "built in" }
        @else if let Some(s) = t.site_id {
            a href={ "/sites/" (s) } { (site_name.unwrap_or("site")) }
        } @else { "every site" }
    }
}

/// `GET /templates`.
pub async fn list(
    State(web): State<Web>,
    PageUser(p): PageUser,
    Query(q): Query<OkQuery>,
) -> Result<Html<String>, HtmlError> {
    let all = channels::template_summaries(&web, &p).await?;
    let may_create = !channels::template_owners(&web, &p).await?.is_empty();
    let body = html! {
        h1 { "Channel templates" }
        @if let Some(m) = q.message() { (layout::flash(true, m)) }
        @if may_create { p { a #new-template href="/templates/new" { "New template" } } }
        p.meta { "A template is a named channel map: where each channel's value comes from (a Modbus register, a board input or a computed expression), its unit and what it measures. A controller runs the map of the template it was given." }
        section {
            @if all.is_empty() { p { "No templates." } } @else {
                table.templates #templates {
                    thead { tr { th { "Template" } th { "Owner" } th.num.wide { "Channels" } th { "Kinds" } th.num { "In use" span.wide { " by your controllers" } } } }
                    tbody { @for s in &all { tr data-template=(s.template.id) {
                        td { a href={ "/templates/" (s.template.id) } { (s.template.name) } }
                        td { (owner(&s.template, s.site_name.as_deref())) }
                        td.num.wide { (s.template.channels.len()) }
                        td { (s.kinds) }
                        td.num data-field="devices" { (s.devices) }
                    } } }
                }
            }
        }
    };
    Ok(layout::page(&p, Nav::Templates, "Channel templates", body))
}

/// The roles as rows: which channel is the water temperature and so on, and the relays.
fn roles(r: &RolesView, t: &TemplateView) -> Markup {
    let channel = |c: Option<u8>| {
        html! {
            @match c {
                Some(i) => {
                    "channel " (i)
                    @if let Some(ch) = t.channels.iter().find(|x| x.index == i) { " (" (ch.name) ")" }
                }
                None => span.meta { "none" },
            }
        }
    };
    html! {
        dl.roles #roles {
            div { dt { "Water temperature" } dd { (channel(r.water)) } }
            div { dt { "Air temperature" } dd { (channel(r.air)) } }
            div { dt { "Power" } dd { (channel(r.power)) } }
            div { dt { "Energy" } dd { (channel(r.energy)) } }
            div { dt { "Pump" } dd { "relay " (r.pump) } }
            div { dt { "Heater" } dd { "relay " (r.heater) } }
        }
    }
}

/// The form that applies the template to the controllers the user ticks: each visible
/// controller, those already running a map made from it marked.
fn apply_form(
    p: &Principal,
    page: &TemplatePage,
    controllers: &[DeviceState],
    q: &PageQuery,
) -> Markup {
    // Just after an edit: the controllers that use the template are ticked, for the user to
    // push the new map to those they pick (issue 18 point 2).
    let preselect = q.push.is_some();
    let t = &page.detail.template;
    html! {
        section #apply {
            h2 { "Apply to controllers" }
            @if let Some(m) = q.ok.as_deref() { (layout::flash(true, m)) }
            @if controllers.is_empty() {
                p { "You have no controllers to apply it to." }
            } @else {
                p.meta { "Each ticked controller gets a new configuration version with this channel map. It shows as pending until the controller confirms it; a controller that cannot run channel maps says why on its Configure page." }
                form method="post" action={ "/templates/" (t.id) "/apply" } {
                    (layout::csrf_field(p))
                    fieldset {
                        legend { "Controllers" }
                        ul.choices { @for d in controllers {
                            @let id = d.device.id;
                            li { label {
                                input type="checkbox" name={ "sel_" (id) }
                                    checked[preselect && page.detail.devices.contains(&id)];
                                " " (id) " " (d.device.name)
                                @if page.detail.devices.contains(&id) { " " span.meta { "(uses it)" } }
                            } }
                        } }
                    }
                    button type="submit" { "Apply to the selected controllers" }
                }
            }
        }
    }
}

fn detail(page: &TemplatePage, editable: bool) -> Markup {
    let t = &page.detail.template;
    html! {
        h1 { (t.name) " " small { "template #" (t.id) } }
        p.meta {
            (owner(t, page.site_name.as_deref())) " · " (t.channels.len()) " channel(s) · "
            (page.devices.len()) " of your controllers use it"
        }
        p {
            a href="/templates" { "All templates" }
            @if editable {
                " · " a #edit-template href={ "/templates/" (t.id) "/edit" } { "Edit" }
                " · " a #delete-template href={ "/templates/" (t.id) "/delete" } { "Delete" }
            }
        }
        section {
            h2 { "Channels" }
            table.channels #channels {
                thead { tr { th.num { "#" } th { "Name" } th { "Kind" } th { "Unit" } th.num { "Decimals" } th { "Source" } } }
                tbody { @for (i, c) in t.channels.iter().enumerate() { tr data-channel=(c.index) {
                    td.num { (c.index) }
                    td { (c.name) }
                    td { (c.kind.as_str()) }
                    td { @match c.unit { Some("") => span.meta { "none" }, Some(u) => (u), None => { "code " (c.unit_code) } } }
                    td.num.decimals data-label="Decimals" { (c.decimals) }
                    td.source { (page.sources.get(i).map_or("", String::as_str)) }
                } } }
            }
            @if !page.buses.is_empty() {
                h3 { "Serial buses" }
                ul #buses { @for (i, b) in page.buses.iter().enumerate() { li { "bus " (i) ": " (b) } } }
            }
        }
        section {
            h2 { "Roles" }
            @if let Some(r) = &t.roles {
                p.meta { "The channels the thermostat, the schedule and the energy figures read, and the relays they switch." }
                (roles(r, t))
            } @else {
                p { "No roles of its own: a controller with this map keeps the pool board's (water channel 2, air 3, power 0, energy 1; pump relay 0, heater relay 1)." }
            }
        }
        section {
            h2 { "Your controllers using it" }
            @if page.devices.is_empty() {
                p #no-devices { "None of your controllers runs a map made from this template." }
            } @else {
                ul #template-devices { @for (d, name) in &page.devices {
                    li { a href={ "/devices/" (d) } { (d) " " (name) } }
                } }
            }
        }
    }
}

/// The query of a template's page: a confirmation, and after an edit `push` (tick the
/// controllers that use it).
#[derive(Debug, Deserialize, Default)]
pub struct PageQuery {
    ok: Option<String>,
    push: Option<String>,
}

/// `GET /templates/{id}`.
pub async fn page(
    State(web): State<Web>,
    PageUser(p): PageUser,
    Path(id): Path<i64>,
    Query(q): Query<PageQuery>,
) -> Result<Html<String>, HtmlError> {
    let page = channels::template_page(&web, &p, id).await?;
    // The service's rule says whether the Edit and Delete links are offered.
    let editable = match channels::editable_template(&web, &p, id).await {
        Ok(_) => true,
        Err(WebError::Forbidden(_) | WebError::NotFound | WebError::Invalid(_)) => false,
        Err(e) => return Err(e.into()),
    };
    let controllers = web.devices_for(&p.user).await?;
    let title = page.detail.template.name.clone();
    let body = html! {
        (detail(&page, editable))
        (apply_form(&p, &page, &controllers, &q))
    };
    Ok(layout::page(&p, Nav::Templates, &title, body))
}

/// The apply form: the CSRF token and the ticked controllers as `sel_{id}=on`.
#[derive(Debug, Deserialize)]
pub struct ApplyForm {
    csrf: String,
    #[serde(flatten)]
    rest: HashMap<String, String>,
}

impl CsrfForm for ApplyForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /templates/{id}/apply`: back to the template's page with what was done.
pub async fn apply(
    State(web): State<Web>,
    Path(id): Path<i64>,
    Posted { user, form }: Posted<ApplyForm>,
) -> Result<Response, HtmlError> {
    let ids = super::bulk::selected_ids(&form.rest)?;
    let applied = crate::service::apply::apply_template(&web, &user, id, &ids).await?;
    let msg = format!(
        "Applied to {} controller(s): {}. Each shows as pending until it confirms.",
        applied.len(),
        applied
            .iter()
            .map(|a| format!("{} (version {})", a.device, a.version))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let q = serde_urlencoded::to_string([("ok", msg)]).unwrap_or_default();
    Ok(Redirect::to(&format!("/templates/{id}?{q}#apply")).into_response())
}
