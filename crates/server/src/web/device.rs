//! `GET /devices/{id}`: live readings (updated over SSE by the script), charts of power, energy
//! per day and temperatures over a chosen range, the thermostat setpoint, relay commands, data use
//! this month per transport, CSV export, recent commands, and the boots whose records' times are
//! estimated (PROTOCOL.md 18.3). Posts: `/setpoint`, `/command`.

use super::auth::{CsrfForm, PageUser, Posted};
use super::charts::{self, Range, Series};
use super::error::HtmlError;
use super::layout::{self, Nav};
use super::units::{bytes, num};
use super::zoned::ZoneHtml;
use crate::http::error::WebError;
use crate::http::Web;
use crate::service::commands::{command_text, parse_command, queue};
use crate::service::device_channels::{self, ChannelBucket, ChannelsNow};
use crate::service::devices::{save_if_changed, ConfigStatus};
use crate::service::view::DeviceView;
use crate::service::zones::Zone;
use crate::storage::{CommandRecord, CommandState, EstimatedBoot, TrafficMonth};
use crate::timefmt;
use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::{html, Markup};
use serde::Deserialize;
use tek_proto::message::Config;

/// The chart buckets of the device page: the pool channels', or each of the device's own
/// channels' (in the map's order).
enum Buckets {
    Pool(Vec<crate::storage::Bucket>),
    Channels(Vec<Vec<ChannelBucket>>),
}

/// Query of the device page.
#[derive(Debug, Deserialize, Default)]
pub struct PageQuery {
    range: Option<String>,
    saved: Option<u32>,
    unchanged: Option<u32>,
    queued: Option<u32>,
}

fn readings(v: &DeviceView, z: &Zone) -> Markup {
    let r = v.readings.as_ref();
    let relays = r.and_then(|r| r.relays);
    let relay = |bit: i32| match relays {
        Some(x) if x & (1 << bit) != 0 => "on",
        Some(_) => "off",
        None => "–",
    };
    html! {
        dl.readings #readings data-device=(v.id) {
            div { dt { "Power" } dd data-field="power" { (num(r.and_then(|r| r.power_w).map(f64::from), 0, "W")) } }
            div { dt { "Energy meter" } dd data-field="energy" { (num(r.and_then(|r| r.energy_wh).map(|e| f64::from(e) / 1000.0), 3, "kWh")) } }
            div { dt { "Water" } dd data-field="water" { (num(r.and_then(|r| r.water_c), 2, "°C")) } }
            div { dt { "Air" } dd data-field="air" { (num(r.and_then(|r| r.air_c), 2, "°C")) } }
            div { dt { "Pump" } dd data-field="pump" { (relay(0)) } }
            div { dt { "Heater" } dd data-field="heater" { (relay(1)) } }
            div { dt { "Logged (" (z.name) ")" } dd data-field="time" data-tz=(z.name) data-time=[r.map(|r| r.time)] { (r.map_or("–".to_owned(), |r| timefmt::local(&z.tz, r.time))) } }
        }
    }
}

/// A device's own channels now (issue 18): name, latest value with unit and precision or
/// "no value", and the last error of its latest fault report; kept current by the live stream
/// (`app.js` `updateDevice`).
fn channel_values(id: u32, now: &ChannelsNow, z: &Zone) -> Markup {
    html! {
        dl.readings.channel-values #channel-values data-device=(id) {
            @for c in &now.channels {
                div data-channel=(c.index) {
                    dt { (c.name) }
                    dd data-field="value" class=[c.value.is_none().then_some("none")] { (c.text) }
                    dd.channel-error data-field="error" class=[c.error.is_none().then_some("none")] {
                        (c.error.as_ref().map_or("no errors reported", |e| e.text.as_str()))
                    }
                }
            }
            div { dt { "Logged (" (z.name) ")" } dd data-field="time" data-tz=(z.name) data-time=[now.time] { (now.time.map_or("–".to_owned(), |t| timefmt::local(&z.tz, t))) } }
        }
    }
}

/// The modem's state and signal as the header shows them ("data, signal 20/31").
pub fn radio_text(radio: &str, signal: u8) -> String {
    if signal <= 31 {
        format!("{radio}, signal {signal}/31")
    } else {
        format!("{radio}, signal unknown")
    }
}

/// The header line of a device page (shared with Configure).
pub fn heading(v: &DeviceView, site: Option<&str>, now: i64) -> Markup {
    html! {
        h1 { (layout::dot(v.id, v.online, v.config.state)) " " (v.name) " " small { "#" (v.id) } }
        p.meta #device-meta data-device=(v.id) {
            span data-field="online" { (if v.online { "online" } else { "offline" }) }
            " · last seen " span data-field="last_seen" { (v.last_seen.map_or("never".to_owned(), |t| timefmt::ago(t, now))) }
            " · " span data-field="transport" { (match v.transport { Some("gsm") => "GSM", Some(_) => "Ethernet", None => "transport unknown" }) }
            @if let Some(st) = &v.status {
                " · address " span data-field="address" { (address_text(&st.ip, st.dhcp)) }
                " · radio " span data-field="radio" { (radio_text(st.radio, st.gsm_signal)) }
            }
            @if let Some(s) = site { " · site " (s) }
            " · configuration " span data-field="config" data-state=(v.config.state) { (config_text(v)) }
        }
        nav.sub {
            a href={ "/devices/" (v.id) } { "Readings" }
            a href={ "/devices/" (v.id) "/configure" } { "Configure → System" }
            a href={ "/devices/" (v.id) "/alarms" } { "Alarms" }
            a href={ "/devices/" (v.id) "/schedules" } { "Configure → Schedules" }
        }
    }
}

/// The address the controller reported and how it got it: "192.168.1.20 (DHCP)".
pub fn address_text(ip: &str, dhcp: bool) -> String {
    format!("{ip} ({})", if dhcp { "DHCP" } else { "fixed" })
}

/// "v3 synced", "v4 pending (controller runs v3)", ...
pub fn config_text(v: &DeviceView) -> String {
    let c = &v.config;
    match c.state {
        ConfigStatus::Factory => "factory defaults".into(),
        ConfigStatus::Pending => format!("v{} pending (confirmed: v{})", c.desired, c.applied),
        // What it runs comes from its latest status report; without one, no number is claimed.
        ConfigStatus::RolledBack => format!(
            "v{} rolled back: the controller could not reach a server with it and {}",
            c.desired,
            match &v.status {
                Some(st) => format!("runs v{} again", st.config_version),
                None => "runs its previous configuration again".to_owned(),
            }
        ),
        ConfigStatus::Synced => format!("v{} confirmed", c.desired),
    }
}

fn usage(months: &[TrafficMonth], now: i64) -> Markup {
    let this = crate::storage::status::month_of(now);
    let cur = months
        .iter()
        .find(|m| m.month == this)
        .cloned()
        .unwrap_or(TrafficMonth {
            month: this.clone(),
            ..TrafficMonth::default()
        });
    html! {
        section.usage #usage {
            h2 { "Data use" }
            p { "This month (" (this) "): Ethernet " strong data-field="eth" { (bytes(cur.eth_tx + cur.eth_rx)) }
                ", GSM " strong data-field="gsm" { (bytes(cur.gsm_tx + cur.gsm_rx)) } }
            @if months.len() > 1 || (months.len() == 1 && months[0].month != this) {
                table { thead { tr { th { "Month" } th { "Ethernet" } th { "GSM" } } }
                    tbody { @for m in months.iter().take(12) { tr { td { (m.month) } td.num { (bytes(m.eth_tx + m.eth_rx)) } td.num { (bytes(m.gsm_tx + m.gsm_rx)) } } } } }
            }
        }
    }
}

fn commands(list: &[CommandRecord], z: &Zone) -> Markup {
    html! {
        @if !list.is_empty() {
            table.commands { thead { tr { th { "Queued" } th { "Command" } th { "State" } } }
                tbody { @for c in list { tr { td { (z.time(c.queued_at)) } td { (command_text(&c.command)) }
                    td { (match c.state { CommandState::Queued => "waiting for the controller", CommandState::Done => "done", CommandState::Refused => "refused", CommandState::Expired => "expired: not delivered within 10 minutes" }) } } } } }
        }
    }
}

/// Boots whose records arrived with estimated times (PROTOCOL.md 18.3), one line each: where
/// the history's times are the latest possible rather than measured.
fn estimated_boots(boots: &[EstimatedBoot], z: &Zone) -> Markup {
    html! {
        @if !boots.is_empty() {
            div.estimated #estimated-boots {
                ul { @for b in boots {
                    li data-boot=(b.boot) {
                        "Records logged before a restart, boot " (b.boot) ": "
                        strong { (b.records) (if b.records == 1 { " record" } else { " records" }) }
                        ", times estimated (latest possible), from " (z.time(b.first)) " to " (z.time(b.last)) "."
                    }
                } }
                p.hint { "The controller did not know the time during that boot: each record is placed at the latest time it can have been taken — exact after a plain restart, too late by as long as the controller was without power otherwise." }
            }
        }
    }
}

/// `GET /devices/{id}`.
pub async fn page(
    State(web): State<Web>,
    PageUser(p): PageUser,
    Path(id): Path<u32>,
    Query(q): Query<PageQuery>,
) -> Result<Html<String>, HtmlError> {
    let state = web.device_for(&p.user, id).await?;
    let v = web.view(state).await?;
    let range = q
        .range
        .as_deref()
        .and_then(Range::parse)
        .unwrap_or(Range::Day);
    let now = crate::clock::unix_now();
    let to = now + 1;
    let from = to - range.span();
    let step = range.step();
    // Energy bars: at least a week, at most 90 days (longer ranges are on the site's view).
    let n_days = (range.span().clamp(7 * 86_400, 90 * 86_400) / 86_400) as usize;
    let applied = v.config.applied;
    let (buckets, days, months, cmds, latest, site) = web
        .db_call(move |db| {
            let site = match db.device_site(id)? {
                Some(s) => db.site(s)?,
                None => None,
            };
            // Days of the site's time zone, as on the site page.
            let tz = site.as_ref().map_or("UTC", |s| s.time_zone.as_str());
            let days = crate::service::energy::device_days_energy(db, id, tz, n_days, now)?;
            let zone = site
                .as_ref()
                .map_or_else(Zone::utc, |s| Zone::named(&s.time_zone));
            let site = site.map(|s| s.name);
            // A device with its own channels charts those; a pool controller its pool channels.
            let buckets = match device_channels::in_effect(db, id, applied)? {
                Some(entry) => Buckets::Channels(device_channels::all_channel_buckets(
                    db, &entry, from, to, step,
                )?),
                None => Buckets::Pool(db.telemetry_buckets(id, from, to, step)?),
            };
            Ok((
                buckets,
                days,
                db.traffic(id)?,
                db.commands(id, 10)?,
                db.latest_config(id)?,
                (site, zone),
            ))
        })
        .await?;
    let (site, z) = site;
    let cfg = latest.map_or_else(Config::default, |r| r.config);
    let (pool_buckets, channel_buckets) = match buckets {
        Buckets::Pool(b) => (b, Vec::new()),
        Buckets::Channels(c) => (Vec::new(), c),
    };
    let pts = |f: &dyn Fn(&crate::storage::Bucket) -> Option<f64>| -> Vec<(i64, f64)> {
        pool_buckets
            .iter()
            .filter_map(|b| f(b).map(|v| (b.start + step / 2, v)))
            .collect()
    };
    let power = pts(&|b| b.power_w);
    let water = pts(&|b| b.water_cc.map(|v| v / 100.0));
    let air = pts(&|b| b.air_cc.map(|v| v / 100.0));
    let channel_points = |b: &[ChannelBucket]| -> Vec<(i64, f64)> {
        b.iter().map(|b| (b.start + step / 2, b.mean)).collect()
    };
    // Energy per day: the device's total (a pool controller's meter), and on a channel map
    // each of its meters.
    let (day_periods, day_tz, day_energy) = days;
    let per_day = |i: &crate::energy::Intervals| -> Vec<(String, f64)> {
        crate::energy::summarize(i, &day_tz, crate::energy::zone::By::Day, &day_periods, None)
            .iter()
            .map(|d| (d.period.label[5..].to_owned(), d.kwh * 1000.0))
            .collect()
    };
    let energy = per_day(&day_energy.total);
    let total_meter = day_energy
        .total_meter
        .map(|k| day_energy.meters[k].name.clone());
    let meter_days: Vec<(String, Vec<(String, f64)>)> = day_energy
        .parts
        .iter()
        .filter(|&&k| Some(k) != day_energy.total_meter)
        .map(|&k| {
            let m = &day_energy.meters[k];
            (m.name.clone(), per_day(&m.intervals))
        })
        .collect();
    let sp = f64::from(cfg.thermostat.setpoint_cc) / 100.0;
    let hy = f64::from(cfg.thermostat.hysteresis_cc) / 100.0;
    let csrf = layout::csrf_field(&p);
    let body = html! {
        (heading(&v, site.as_deref(), now))
        p.meta { (z.note()) }
        @if let Some(ver) = q.saved { (layout::flash(true, &format!("Saved as configuration v{ver}; it is sent to the controller now."))) }
        @if let Some(ver) = q.unchanged { (layout::flash(true, &format!("Nothing changed: the configuration stays v{ver}; no new version was made."))) }
        @if let Some(c) = q.queued { (layout::flash(true, &format!("Command {c} queued."))) }
        @if let Some(now) = &v.channels {
            section { h2 { "Now" } (channel_values(id, now, &z)) }
        } @else {
            section { h2 { "Now" } (readings(&v, &z)) }
        }
        section.charts {
            h2 { "History" }
            (estimated_boots(&v.estimated_boots, &z))
            nav.ranges { @for r in Range::ALL {
                a href={ "/devices/" (id) "?range=" (r.key()) } class=[(r == range).then_some("active")] { (r.key()) }
            } }
            // Interactive charts (app.js with uPlot); the server-drawn ones below are shown
            // until they are drawn, and stay without script.
            div.live-charts {
                div.pan role="group" aria-label="Move the charts in time" {
                    button type="button" #pan-earlier title="Half the shown span earlier" { "← Earlier" }
                    button type="button" #pan-later title="Half the shown span later" { "Later →" }
                    button type="button" #pan-now title="Back to the chosen range, up to now" { "Now" }
                    span #chart-range aria-live="polite" {}
                }
                label.check { input #compare type="checkbox"; "Compare with the previous period" }
                @if let Some(now) = &v.channels {
                    p.hint { "Hover for values; drag to zoom; shift+drag, or Earlier and Later, to move in time; double-click for the chosen range again. Shaded: lowest to highest in each interval; the line breaks where the channel had no value." }
                    @for c in &now.channels {
                        figure.chart { figcaption { (c.name) @if !c.unit.is_empty() { " (" (c.unit) ")" } }
                            div.uchart #{ "chart-channel-" (c.index) } data-kind="channel" data-channel=(c.index)
                                data-name=(c.name) data-unit=(c.unit) data-decimals=(c.decimals)
                                data-device=(id) data-from=(from) data-to=(to) data-tz=(z.name) {} }
                    }
                } @else {
                    p.hint { "Hover for values; drag to zoom; shift+drag, or Earlier and Later, to move in time; double-click for the chosen range again. Shaded: lowest to highest in each interval. Strips under the power line: pump (green) and heater (red) on." }
                    figure.chart { figcaption { "Power" }
                        div.uchart #chart-power data-kind="power" data-device=(id) data-from=(from) data-to=(to) data-tz=(z.name) {} }
                    figure.chart { figcaption { "Temperatures" }
                        div.uchart #chart-temp data-kind="temp" data-device=(id) data-from=(from) data-to=(to) data-tz=(z.name) {} }
                }
            }
            div.static-charts {
                @if let Some(now) = &v.channels {
                    @for (c, b) in now.channels.iter().zip(&channel_buckets) {
                        (charts::line_chart(&c.name, &c.unit, &z.tz, from, to, step, &[Series { label: &c.name, class: "power", points: channel_points(b) }]))
                    }
                } @else {
                    (charts::line_chart("Power", "W", &z.tz, from, to, step, &[Series { label: "power", class: "power", points: power }]))
                    (charts::line_chart("Temperatures", "°C", &z.tz, from, to, step, &[
                        Series { label: "water", class: "water", points: water },
                        Series { label: "air", class: "air", points: air },
                    ]))
                }
            }
            // Energy per day: the pool's energy meter, or on a channel map the device's total
            // (what adds into its site's energy) and each of its other meters.
            @if v.channels.is_none() {
                (charts::bar_chart("Energy per day", "Wh", &energy))
            } @else {
                div #device-energy {
                    @if let Some(name) = &total_meter {
                        (charts::bar_chart(&format!("Energy per day (total: {name})"), "Wh", &energy))
                    }
                    @for (name, bars) in &meter_days {
                        (charts::bar_chart(&format!("Energy per day: {name}"), "Wh", bars))
                    }
                    @for n in &day_energy.notes { p.hint { "Energy: " (n) "." } }
                }
            }
        }
        section.controls {
            h2 { "Thermostat" }
            form.inline method="post" action={ "/devices/" (id) "/setpoint" } {
                (csrf)
                label { "Setpoint °C" input #setpoint type="number" name="setpoint" min="0" max="40" step="0.1" value=(format!("{sp:.2}")) required; }
                label { "Hysteresis °C" input type="number" name="hysteresis" min="0.1" max="10" step="0.05" value=(format!("{hy:.2}")) required; }
                button type="submit" { "Save setpoint" }
            }
            h2 { "Relays and commands" }
            form.inline method="post" action={ "/devices/" (id) "/command" } {
                (layout::csrf_field(&p))
                select name="action" aria-label="Command" {
                    option value="pump_auto" { "Pump: automatic" }
                    option value="pump_on" { "Pump: on" }
                    option value="pump_off" { "Pump: off" }
                    option value="heater_auto" { "Heater: automatic" }
                    option value="heater_on" { "Heater: on" }
                    option value="heater_off" { "Heater: off" }
                    option value="status" { "Send status now" }
                    option value="reboot" { "Reboot" }
                }
                button type="submit" { "Send" }
            }
            (commands(&cmds, &z))
        }
        (usage(&months, now))
        section.export {
            h2 { "Export" }
            form.inline method="get" action={ "/devices/" (id) "/export.csv" } {
                label { "From (" (z.name) ")" input type="datetime-local" name="from" value=(timefmt::local_input(&z.tz, now - 86_400)) required; }
                label { "To (" (z.name) ")" input type="datetime-local" name="to" value=(timefmt::local_input(&z.tz, now + 60)) required; }
                button #export type="submit" { "Download CSV" }
            }
        }
    };
    Ok(layout::page(&p, Nav::None, &v.name, body))
}

/// The setpoint form.
#[derive(Debug, Deserialize)]
pub struct SetpointForm {
    csrf: String,
    setpoint: String,
    hysteresis: String,
}

impl CsrfForm for SetpointForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /devices/{id}/setpoint`.
pub async fn setpoint(
    State(web): State<Web>,
    Path(id): Path<u32>,
    Posted { user, form }: Posted<SetpointForm>,
) -> Result<Response, HtmlError> {
    let saved = save_if_changed(&web, &user, id, |c| {
        let settings = [
            format!("setpoint={}", form.setpoint),
            format!("hysteresis={}", form.hysteresis),
        ];
        crate::device_config::apply(c, &settings).map_err(|e| WebError::Invalid(e.to_string()))
    })
    .await?;
    let key = if saved.changed { "saved" } else { "unchanged" };
    Ok(Redirect::to(&format!("/devices/{id}?{key}={}", saved.version)).into_response())
}

/// The command form.
#[derive(Debug, Deserialize)]
pub struct CommandForm {
    csrf: String,
    action: String,
}

impl CsrfForm for CommandForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /devices/{id}/command`.
pub async fn command(
    State(web): State<Web>,
    Path(id): Path<u32>,
    Posted { user, form }: Posted<CommandForm>,
) -> Result<Response, HtmlError> {
    web.check_device(&user.user, id).await?;
    let c = parse_command(&form.action)?;
    let cid = queue(&web, &user, id, c).await?;
    Ok(Redirect::to(&format!("/devices/{id}?queued={cid}")).into_response())
}

#[cfg(test)]
mod radio_tests {
    use super::radio_text;

    #[test]
    fn radio_and_signal_as_shown() {
        assert_eq!(radio_text("data", 20), "data, signal 20/31");
        assert_eq!(radio_text("off", 99), "off, signal unknown");
    }
}

/// The rename form (Configure page).
#[derive(Debug, Deserialize)]
pub struct RenameForm {
    csrf: String,
    name: String,
}

impl CsrfForm for RenameForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /devices/{id}/rename`.
pub async fn rename_form(
    State(web): State<Web>,
    Path(id): Path<u32>,
    Posted { user, form }: Posted<RenameForm>,
) -> Result<Response, HtmlError> {
    crate::service::devices::rename(&web, &user, id, &form.name).await?;
    Ok(Redirect::to(&format!("/devices/{id}/configure?renamed=1")).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::view::{ConfigView, StatusView};

    /// Issue 19 point 7: after a rollback the header says what the controller runs (from its
    /// status report), not the rolled-back version; and it shows the address and how it was got.
    #[test]
    fn rollback_header_names_the_running_version_and_the_address() {
        let mut v = DeviceView {
            id: 7,
            name: "Pool".into(),
            site_id: None,
            online: true,
            last_seen: Some(100),
            transport: Some("ethernet"),
            config: ConfigView {
                desired: 3,
                applied: 3,
                rolled_back: Some(3),
                state: ConfigStatus::RolledBack,
            },
            readings: None,
            status: None,
            estimated_boots: Vec::new(),
            channels: None,
        };
        assert_eq!(
            config_text(&v),
            "v3 rolled back: the controller could not reach a server with it and runs its previous configuration again"
        );
        v.status = Some(StatusView {
            received_at: 100,
            ip: "192.168.1.20".into(),
            dhcp: false,
            halt: false,
            rolled_back: true,
            uptime_s: 5,
            firmware: "1.0".into(),
            config_version: 2,
            gsm_signal: 99,
            radio: "off",
            log_drops: 0,
        });
        let text = config_text(&v);
        assert!(text.ends_with("runs v2 again"), "{text}");
        assert!(!text.contains("running v3"));
        let head = heading(&v, None, 100).into_string();
        assert!(head.contains("192.168.1.20 (fixed)"), "{head}");
        assert_eq!(address_text("10.0.0.5", true), "10.0.0.5 (DHCP)");
    }
}
