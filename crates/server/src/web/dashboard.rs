//! `GET /dashboard`: the user's devices with a status dot, last contact, transport and current
//! readings. The script refreshes the rows from `GET /api/devices` every few seconds.

use super::auth::PageUser;
use super::device::bytes;
use super::error::HtmlError;
use super::layout::{self, Nav};
use super::timefmt;
use super::view::DeviceView;
use super::Web;
use crate::storage::TrafficMonth;
use axum::extract::State;
use axum::response::Html;
use maud::{html, Markup};
use std::collections::HashMap;

/// A reading with its unit, or a dash.
pub fn num(v: Option<f64>, decimals: usize, unit: &str) -> String {
    v.map_or_else(|| "–".to_owned(), |v| format!("{v:.decimals$} {unit}"))
}

fn row(d: &DeviceView, site: &str, usage: Option<&TrafficMonth>, now: i64) -> Markup {
    let r = d.readings.as_ref();
    html! {
        tr data-device=(d.id) {
            td { (layout::dot(d.id, d.online, d.config.state)) }
            td { a href={ "/devices/" (d.id) } { (d.id) " " (d.name) } }
            td.wide { @if let Some(s) = d.site_id { a href={ "/sites/" (s) } { (site) } } @else { (site) } }
            td data-field="last_seen" { (d.last_seen.map_or("never".to_owned(), |t| timefmt::ago(t, now))) }
            td.wide data-field="transport" { (match d.transport { Some("gsm") => "GSM", Some(_) => "Ethernet", None => "–" }) }
            td.num data-field="power" { (num(r.and_then(|r| r.power_w).map(f64::from), 0, "W")) }
            td.num data-field="water" { (num(r.and_then(|r| r.water_c), 2, "°C")) }
            td.num data-field="air" { (num(r.and_then(|r| r.air_c), 2, "°C")) }
            td.num.wide { (usage.map_or("–".to_owned(), |u| bytes(u.eth_tx + u.eth_rx))) }
            td.num.wide { (usage.map_or("–".to_owned(), |u| bytes(u.gsm_tx + u.gsm_rx))) }
        }
    }
}

/// `GET /dashboard`.
pub async fn page(
    State(web): State<Web>,
    PageUser(p): PageUser,
) -> Result<Html<String>, HtmlError> {
    let states = web.devices_for(&p.user).await?;
    let views = web.views(states).await?;
    let sites: HashMap<i64, String> = web
        .db_call(|db| db.list_sites())
        .await?
        .into_iter()
        .map(|s| (s.id, s.name))
        .collect();
    let now = super::now();
    // Data use this month per device (cellular plans are small): one indexed read per device.
    let month = crate::storage::status::month_of(now);
    let ids: Vec<u32> = views.iter().map(|v| v.id).collect();
    let usage: HashMap<u32, TrafficMonth> = web
        .db_call(move |db| {
            let mut m = HashMap::new();
            for id in ids {
                if let Some(t) = db.traffic(id)?.into_iter().find(|t| t.month == month) {
                    m.insert(id, t);
                }
            }
            Ok(m)
        })
        .await?;
    let online = views.iter().filter(|v| v.online).count();
    let body = html! {
        h1 { "Dashboard" }
        p.summary { span #online-count { (online) } " of " (views.len()) " controllers online" }
        @if views.is_empty() {
            p { "No controllers are assigned to your sites yet. An administrator assigns them on the Admin page." }
        } @else {
            table.devices #devices {
                thead { tr { th { span.visually-hidden { "Status" } } th { "Controller" } th.wide { "Site" } th { "Last seen" } th.wide { "Transport" } th { "Power" } th { "Water" } th { "Air" } th.wide { "Ethernet this month" } th.wide { "GSM this month" } } }
                tbody {
                    @for v in &views {
                        (row(v, v.site_id.and_then(|s| sites.get(&s)).map_or("–", String::as_str), usage.get(&v.id), now))
                    }
                }
            }
        }
    };
    Ok(layout::page(&p, Nav::Dashboard, "Dashboard", body))
}
