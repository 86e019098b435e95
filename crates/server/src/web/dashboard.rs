//! `GET /dashboard`: the user's devices with a status dot, last contact, transport and current
//! readings. The script refreshes the rows from `GET /api/devices` every few seconds.

use super::auth::PageUser;
use super::error::HtmlError;
use super::layout::{self, Nav};
use super::units::{bytes, num};
use crate::http::Web;
use crate::service::view::DeviceView;
use crate::storage::TrafficMonth;
use crate::timefmt;
use axum::extract::State;
use axum::response::Html;
use maud::{html, Markup};
use std::collections::HashMap;

/// What the dashboard shows per device besides its view.
#[derive(Debug, Default, Clone)]
struct Extra {
    usage: Option<TrafficMonth>,
    /// Energy since local midnight of its site's zone, kWh.
    today_kwh: Option<f64>,
    /// Open alarms.
    alarms: usize,
}

fn row(d: &DeviceView, site: &str, x: &Extra, now: i64) -> Markup {
    let usage = x.usage.as_ref();
    html! {
        tr data-device=(d.id) data-site=(d.site_id.unwrap_or(0)) data-alarms=(x.alarms) {
            td { input type="checkbox" form="bulk" name={ "sel_" (d.id) } aria-label={ "Select " (d.name) }; " " (layout::dot(d.id, d.online, d.config.state)) }
            td { a href={ "/devices/" (d.id) } { (d.id) " " (d.name) }
                @if x.alarms > 0 {
                    " " a.badge href={ "/devices/" (d.id) "/alarms" } title={ (x.alarms) " open alarm(s)" } { (x.alarms) span.visually-hidden { " open alarm(s)" } }
                } }
            td.wide { @if let Some(s) = d.site_id { a href={ "/sites/" (s) } { (site) } } @else { (site) } }
            td data-field="last_seen" data-sort=(d.last_seen.unwrap_or(0)) { (d.last_seen.map_or("never".to_owned(), |t| timefmt::ago(t, now))) }
            td.wide data-field="transport" { (match d.transport { Some("gsm") => "GSM", Some(_) => "Ethernet", None => "–" }) }
            td.num data-field="power" { (num(d.power_w(), 0, "W")) }
            td.num data-field="today" { (num(x.today_kwh, 2, "kWh")) }
            td.num data-field="water" { (num(d.water_c(), 2, "°C")) }
            td.num data-field="air" { (num(d.air_c(), 2, "°C")) }
            td.num.wide { (usage.map_or("–".to_owned(), |u| bytes(u.eth_tx + u.eth_rx))) }
            td.num.wide { (usage.map_or("–".to_owned(), |u| bytes(u.gsm_tx + u.gsm_rx))) }
        }
    }
}

/// `GET /dashboard`.
pub async fn page(
    State(web): State<Web>,
    PageUser(p): PageUser,
    axum::extract::Query(q): axum::extract::Query<super::admin::OkQuery>,
) -> Result<Html<String>, HtmlError> {
    let states = web.devices_for(&p.user).await?;
    let views = web.views(states).await?;
    let sites: HashMap<i64, crate::storage::SiteRecord> = web
        .db_call(|db| db.list_sites())
        .await?
        .into_iter()
        .map(|s| (s.id, s))
        .collect();
    let now = crate::clock::unix_now();
    // Per device: data use this month (cellular plans are small), today's energy in its site's
    // zone, open alarms. A few indexed reads per device.
    let month = crate::storage::status::month_of(now);
    let ids: Vec<(u32, String)> = views
        .iter()
        .map(|v| {
            let tz = v
                .site_id
                .and_then(|s| sites.get(&s))
                .map_or("UTC".to_owned(), |s| s.time_zone.clone());
            (v.id, tz)
        })
        .collect();
    let extra: HashMap<u32, Extra> = web
        .db_call(move |db| {
            let open = db.alarms(&crate::storage::AlarmFilter {
                devices: Some(ids.iter().map(|(id, _)| *id).collect()),
                open_only: true,
                limit: 100_000,
            })?;
            let mut m = HashMap::new();
            for (id, tz) in ids {
                let today = crate::service::energy::device_days(db, id, &tz, 1, now)?;
                m.insert(
                    id,
                    Extra {
                        usage: db.traffic(id)?.into_iter().find(|t| t.month == month),
                        today_kwh: today.first().map(|f| f.kwh),
                        alarms: open.iter().filter(|a| a.device_id == id).count(),
                    },
                );
            }
            Ok(m)
        })
        .await?;
    let online = views.iter().filter(|v| v.online).count();
    let none = Extra::default();
    // One total row per site: controllers, online, power now, today's energy, open alarms.
    let mut totals: Vec<(i64, usize, usize, f64, f64, usize)> = Vec::new();
    for v in &views {
        let Some(s) = v.site_id else { continue };
        let x = extra.get(&v.id).unwrap_or(&none);
        let i = match totals.iter().position(|t| t.0 == s) {
            Some(i) => i,
            None => {
                totals.push((s, 0, 0, 0.0, 0.0, 0));
                totals.len() - 1
            }
        };
        let t = &mut totals[i];
        t.1 += 1;
        t.2 += usize::from(v.online);
        t.3 += v.power_w().unwrap_or(0.0);
        t.4 += x.today_kwh.unwrap_or(0.0);
        t.5 += x.alarms;
    }
    totals.sort_by_key(|t| t.0);
    let site_name = |s: i64| sites.get(&s).map_or("–", |s| s.name.as_str());
    let body = html! {
        h1 { "Dashboard" }
        @if let Some(m) = q.message() { (layout::flash(true, m)) }
        p.summary { span #online-count { (online) } " of " (views.len()) " controllers online" }
        @if views.is_empty() {
            p { "No controllers are assigned to your sites yet. An administrator assigns them on the Admin page." }
        } @else {
            div.toolbar #device-tools {
                label { "Search" input #q type="search" placeholder="name or number" autocomplete="off"; }
                label { "Show" select #f-state {
                    option value="" { "all" } option value="online" { "online" } option value="offline" { "offline" }
                    option value="alarm" { "with open alarms" }
                } }
                label { "Site" select #f-site {
                    option value="" { "all sites" }
                    @for t in &totals { option value=(t.0) { (site_name(t.0)) } }
                } }
                span #shown-count.hint {}
            }
            table.devices #devices {
                thead { tr {
                    th { span.visually-hidden { "Status" } }
                    th aria-sort="none" { button.sort type="button" data-col="1" { "Controller" } }
                    th.wide aria-sort="none" { button.sort type="button" data-col="2" { "Site" } }
                    th aria-sort="none" { button.sort type="button" data-col="3" { "Last seen" } }
                    th.wide { "Transport" }
                    th aria-sort="none" { button.sort type="button" data-col="5" { "Power" } }
                    th aria-sort="none" { button.sort type="button" data-col="6" { "Today" } }
                    th aria-sort="none" { button.sort type="button" data-col="7" { "Water" } }
                    th aria-sort="none" { button.sort type="button" data-col="8" { "Air" } }
                    th.wide { "Ethernet this month" } th.wide { "GSM this month" }
                } }
                tbody {
                    @for v in &views {
                        (row(v, v.site_id.and_then(|s| sites.get(&s)).map_or("–", |s| s.name.as_str()), extra.get(&v.id).unwrap_or(&none), now))
                    }
                }
            }
            section.bulk {
                h2 { "Change the selected controllers" }
                form.inline #bulk method="post" action="/devices/bulk" data-confirm="Apply this change to every selected controller?" {
                    (layout::csrf_field(&p))
                    label { "Logging interval (s)" input name="log_interval" type="number" min="10" max="3600" placeholder="unchanged"; }
                    label { "Thermostat setpoint (°C)" input name="setpoint" type="number" min="0" max="40" step="0.1" placeholder="unchanged"; }
                    button type="submit" { "Apply to selected" }
                }
                p.hint { "Tick controllers in the first column. Each gets its own configuration version, sent to it at once." }
            }
            @if !totals.is_empty() {
                h2 { "Sites" }
                table.sites #site-totals {
                    thead { tr { th { "Site" } th { "Controllers" } th { "Online" } th { "Power now" } th { "Today" } th { "Open alarms" } } }
                    tbody { @for t in &totals { tr data-site=(t.0) {
                        td { a href={ "/sites/" (t.0) } { (site_name(t.0)) } }
                        td.num { (t.1) } td.num { (t.2) }
                        td.num data-field="site-power" { (format!("{:.0} W", t.3)) }
                        td.num data-field="site-today" { (format!("{:.2} kWh", t.4)) }
                        td.num { (t.5) }
                    } } }
                }
            }
        }
    };
    Ok(layout::page(&p, Nav::Dashboard, "Dashboard", body))
}
