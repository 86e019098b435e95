//! The channel templates (issue 18), viewing only: `GET /templates` lists the templates the user
//! sees (built in, every site's, their sites' own) with what each has and how many of the
//! user's controllers use it; `GET /templates/{id}` shows one: its channels with their sources
//! in words, its buses, its roles and the user's controllers that use it. A face over
//! [`crate::service::channels`] (`template_summaries`, `template_page`); a template the user
//! does not see is 404, like one that does not exist.

use super::auth::PageUser;
use super::error::HtmlError;
use super::layout::{self, Nav};
use crate::http::Web;
use crate::service::channels::{self, RolesView, TemplatePage, TemplateView};
use axum::extract::{Path, State};
use axum::response::Html;
use maud::{html, Markup};

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
) -> Result<Html<String>, HtmlError> {
    let all = channels::template_summaries(&web, &p).await?;
    let body = html! {
        h1 { "Channel templates" }
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

fn detail(page: &TemplatePage) -> Markup {
    let t = &page.detail.template;
    html! {
        h1 { (t.name) " " small { "template #" (t.id) } }
        p.meta {
            (owner(t, page.site_name.as_deref())) " · " (t.channels.len()) " channel(s) · "
            (page.devices.len()) " of your controllers use it"
        }
        p { a href="/templates" { "All templates" } }
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

/// `GET /templates/{id}`.
pub async fn page(
    State(web): State<Web>,
    PageUser(p): PageUser,
    Path(id): Path<i64>,
) -> Result<Html<String>, HtmlError> {
    let page = channels::template_page(&web, &p, id).await?;
    let title = page.detail.template.name.clone();
    Ok(layout::page(&p, Nav::Templates, &title, detail(&page)))
}
