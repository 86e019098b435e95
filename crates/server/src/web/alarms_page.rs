//! Alarm pages: `/alarms` (open and recent alarms of every visible device, with Acknowledge),
//! `/devices/{id}/alarms` (the device's alarms, rules — add from a pool template or as a
//! threshold, shelve, delete — and its notification log); `/admin/alarms` is `alarms_admin`.
//! Every change goes through `service::alarms`, as the JSON API's does: access check,
//! validation, audit entry, engine update.

use super::auth::{CsrfForm, PageUser, Posted};
use super::error::HtmlError;
use super::layout::{self, Nav};
use super::zoned::ZoneHtml;
use crate::alarms::rules::{templates, Channel, Condition, RuleSpec, Severity};
use crate::http::auth::Principal;
use crate::http::error::WebError;
use crate::http::Web;
use crate::service::alarms as al;
use crate::service::zones::Zones;
use crate::storage::{AlarmRecord, DeviceChannels, NotificationRecord};
use crate::timefmt;
use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::{html, Markup};
use serde::Deserialize;
use std::collections::HashMap;

/// The alarms table; with `names` (the overview), a column with each alarm's controller.
fn alarm_rows(
    p: &Principal,
    alarms: &[AlarmRecord],
    names: Option<&HashMap<u32, String>>,
    zones: &Zones,
) -> Markup {
    let show_device = names.is_some();
    let csrf = layout::csrf_field(p);
    html! {
        table.alarms { thead { tr {
            th { "Id" } @if show_device { th { "Controller" } } th { "Severity" } th { "Rule" }
            th { "What" } th { "Raised" } th { "State" } th {}
        } }
        tbody { @for a in alarms { @let z = zones.of(Some(a.device_id), None); tr class=(format!("sev-{} st-{}", a.severity.as_str(), al::state(a))) {
            td { (a.id) }
            @if let Some(names) = names { td { a href={ "/devices/" (a.device_id) "/alarms" } {
                (names.get(&a.device_id).map_or("", String::as_str)) " #" (a.device_id) } } }
            td { (a.severity.as_str()) }
            td { (a.rule_name) }
            td { (a.message) }
            td { (z.time_abbr(a.raised_at)) }
            td {
                (al::state(a))
                @if let (Some(at), Some(by)) = (a.acked_at, &a.acked_by) {
                    br; small { "ack " (by) ", " (z.time_abbr(at)) }
                }
                @if let Some(c) = a.cleared_at { br; small { "cleared " (z.time_abbr(c)) } }
                @if a.level > 0 { br; small { "escalated to level " (a.level) } }
            }
            td { @if a.acked_at.is_none() {
                form method="post" action={ "/alarms/" (a.id) "/ack" } {
                    (csrf)
                    @if show_device { input type="hidden" name="back" value="overview"; }
                    button type="submit" { "Acknowledge" }
                }
            } }
        } } } }
    }
}

pub(crate) fn note_rows(notes: &[NotificationRecord], zones: &Zones) -> Markup {
    html! {
        table.notifications { thead { tr {
            th { "Time" } th { "Alarm" } th { "Event" } th { "Destination" } th { "Subject" }
            th { "Result" } th { "Attempts" }
        } }
        tbody { @for n in notes { tr {
            td { (zones.of(Some(n.device_id), None).time_abbr(n.created_at)) }
            td { @if let Some(a) = n.alarm_id { (a) } @else { "—" } }
            td { (n.event) }
            td { (n.destination) }
            td { (n.subject) }
            td { (n.state.as_str()) @if let Some(e) = &n.error { br; small { (e) } } }
            td { (n.attempts) }
        } } } }
    }
}

/// `GET /alarms`: open and recent alarms on every device the user may see.
pub async fn overview(
    State(web): State<Web>,
    PageUser(p): PageUser,
    Query(q): Query<PageQuery>,
) -> Result<Html<String>, HtmlError> {
    let open = al::visible_alarms(&web, &p, true, 500).await?;
    // "Recent" lists what is over: the open ones are above already.
    let mut recent = al::visible_alarms(&web, &p, false, 100).await?;
    recent.retain(|a| !open.iter().any(|o| o.id == a.id));
    let ids: Vec<u32> = open.iter().chain(&recent).map(|a| a.device_id).collect();
    let zones = web.zones(ids.clone()).await?;
    let names: HashMap<u32, String> = web
        .db_call(move |db| {
            let mut m = HashMap::new();
            for id in ids {
                if let std::collections::hash_map::Entry::Vacant(e) = m.entry(id) {
                    e.insert(db.device(id)?.name);
                }
            }
            Ok(m)
        })
        .await?;
    let body = html! {
        h1 { "Alarms" }
        @if let Some(m) = &q.ok { (layout::flash(true, m)) }
        h2 { "Open (" (open.len()) ")" }
        @if open.is_empty() { p { "No open alarms." } } @else { (alarm_rows(&p, &open, Some(&names), &zones)) }
        h2 { "Recent" }
        @if recent.is_empty() { p { "No closed alarms yet." } } @else { (alarm_rows(&p, &recent, Some(&names), &zones)) }
        p { small { "Rules are set per controller: open a controller, then Alarms." } }
    };
    Ok(layout::page(&p, Nav::Alarms, "Alarms", body))
}

/// Query of the device alarm page (and of `/admin/alarms`).
#[derive(Debug, Deserialize)]
pub struct PageQuery {
    /// What was just done, shown as a confirmation.
    pub(crate) ok: Option<String>,
}

/// `GET /devices/{id}/alarms`.
pub async fn device_page(
    State(web): State<Web>,
    PageUser(p): PageUser,
    Path(id): Path<u32>,
    Query(q): Query<PageQuery>,
) -> Result<Html<String>, HtmlError> {
    let dev = web.device_for(&p.user, id).await?;
    let name = dev.device.name.clone();
    let view = web.view(dev).await?;
    let applied = view.config.applied;
    let (rules, alarms, notes, lists, site, site_name, own) = web
        .db_call(move |db| {
            let site = db.device_site(id)?;
            let site_name = match site {
                Some(s) => db.site(s)?.map(|s| s.name),
                None => None,
            };
            Ok((
                db.device_rules(id)?,
                db.alarms(&crate::storage::AlarmFilter {
                    devices: Some(vec![id]),
                    open_only: false,
                    limit: 100,
                })?,
                db.notifications(Some(&[id]), None, 100)?,
                db.lists()?,
                site,
                site_name,
                crate::service::device_channels::in_effect(db, id, applied)?,
            ))
        })
        .await?;
    // A site user picks only the lists given to the device's site (api::alarms::checked).
    let admin = p.user.is_admin;
    let pickable: Vec<_> = lists
        .iter()
        .filter(|l| admin || (site.is_some() && l.site_id == site))
        .collect();
    let list_name = |l: i64| {
        lists
            .iter()
            .find(|x| x.id == l)
            .map_or_else(|| format!("list {l} (deleted)"), |x| x.name.clone())
    };
    let now = crate::clock::unix_now();
    let zones = web.zones(vec![id]).await?;
    let z = zones.of(Some(id), None);
    let csrf = layout::csrf_field(&p);
    let list_select = |name: &str| {
        html! {
            select name=(name) {
                option value="" { "— none —" }
                @for l in &pickable { option value=(l.id) { (l.name) } }
            }
        }
    };
    let title = format!("Alarms · {name}");
    let body = html! {
        (super::device::heading(&view, site_name.as_deref(), now))
        @if let Some(m) = &q.ok { (layout::flash(true, m)) }
        p.meta { (z.note()) }
        h2 { "Alarms" }
        @if alarms.is_empty() { p { "None yet." } } @else { (alarm_rows(&p, &alarms, None, &zones)) }
        h2 { "Rules (" (rules.len()) " of " (crate::alarms::rules::MAX_RULES_PER_DEVICE) ")" }
        table.rules { thead { tr {
            th { "Id" } th { "Name" } th { "Severity" } th { "Condition" } th { "Hold-off" }
            th { "Lists" } th { "Shelved" } th {} th {} th {}
        } }
        tbody { @for r in &rules { tr {
            td { (r.id) }
            td { (r.spec.name) @if !r.spec.enabled { " (disabled)" } }
            td { (r.spec.severity.as_str()) }
            td { (describe(&r.spec.condition, own.as_ref())) }
            td { "raise " (r.spec.raise_after_s) " s, clear " (r.spec.clear_after_s) " s" }
            td {
                @for (i, l) in r.spec.lists.iter().enumerate() { @if i > 0 { " → " } (list_name(*l)) }
                @if r.spec.escalate_after_s > 0 && r.spec.lists.len() > 1 {
                    br; small { "escalate every " (r.spec.escalate_after_s / 60) " min" }
                }
            }
            td { @match r.shelved_until { Some(u) if u > now => { "until " (z.time(u)) }, _ => { "no" } } }
            td { form.inline method="post" action={ "/devices/" (id) "/alarms/rules/" (r.id) "/shelve" } {
                (csrf)
                input type="number" name="minutes" min="0" max=(al::MAX_SHELVE_MINUTES) value="60" style="width:5em" title="minutes; 0 unshelves" aria-label="Shelve for minutes (0 unshelves)";
                " min, or until "
                input name="until" placeholder="YYYY-MM-DD HH:MM" style="width:9em" title=(z.name) aria-label={ "until, local time in " (z.name) };
                " "
                button type="submit" title="No alarms and no notifications for this many minutes (0: unshelve)" { "Shelve" }
            } }
            td { form method="post" action={ "/devices/" (id) "/alarms/rules/" (r.id) "/enabled" } {
                (csrf)
                input type="hidden" name="enabled" value=(if r.spec.enabled { "off" } else { "on" });
                button type="submit" { (if r.spec.enabled { "Disable" } else { "Enable" }) }
            } }
            td { form method="post" data-confirm={ "Delete the rule " (r.spec.name) "?" } action={ "/devices/" (id) "/alarms/rules/" (r.id) "/delete" } {
                (csrf) button type="submit" { "Delete" }
            } }
        } } } }
        @if lists.is_empty() {
            p.hint #no-lists { "No destination lists exist yet, so alarms are shown here and on the Alarms page but nobody is notified. "
                @if p.user.is_admin { a href="/admin/alarms" { "Add a destination and a list" } "." }
                @else { "An administrator adds destinations and lists under Admin → Alarm destinations." } }
        }
        h3 { "Add a rule from a template" }
        form.inline method="post" action={ "/devices/" (id) "/alarms/rules" } {
            (csrf)
            input type="hidden" name="kind" value="template";
            label { "Template" select name="template" {
                @for (name, what, _) in templates() { option value=(name) { (what) } }
            } }
            label { "First list" (list_select("list1")) }
            label { "Escalate to" (list_select("list2")) }
            label { "after (min)" input type="number" name="escalate_min" min="0" value="0" style="width:5em"; }
            button type="submit" { "Add" }
        }
        h3 { "Add a threshold rule" }
        form.inline method="post" action={ "/devices/" (id) "/alarms/rules" } {
            (csrf)
            input type="hidden" name="kind" value="threshold";
            label { "Name" input name="name" required maxlength="100"; }
            label { "Channel" select name="channel" {
                @if let Some(entry) = &own {
                    // The device's own channels; limits in each one's unit.
                    @for c in &entry.channels {
                        @let unit = crate::service::device_channels::unit_of(c);
                        option value={ "ch:" (c.index) } { (c.name) @if !unit.is_empty() { " (" (unit) ")" } }
                    }
                } @else {
                    option value="water_temp_cc" { "water temperature (°C)" }
                    option value="air_temp_cc" { "air temperature (°C)" }
                    option value="power_w" { "power (W)" }
                }
            } }
            label { "Raise when" select name="op" {
                option value="above" { "above" } option value="below" { "below" }
            } }
            label { "limit" input name="limit" required style="width:5em"; }
            label { "restore at" input name="restore" required style="width:5em"; }
            label { "Severity" select name="severity" {
                option value="info" { "info" } option value="warning" selected { "warning" }
                option value="critical" { "critical" }
            } }
            label { "raise after (s)" input type="number" name="raise_after_s" min="0" value="0" style="width:5em"; }
            label { "clear after (s)" input type="number" name="clear_after_s" min="0" value="0" style="width:5em"; }
            label { "First list" (list_select("list1")) }
            label { "Escalate to" (list_select("list2")) }
            label { "after (min)" input type="number" name="escalate_min" min="0" value="0" style="width:5em"; }
            button type="submit" { "Add" }
        }
        h3 { "Add or edit a rule as JSON" }
        p { small { "Every condition and field (docs/API.md, \"Alarms\"): e.g. another offline time, a template with other limits, several lists for escalation." } }
        form method="post" action={ "/devices/" (id) "/alarms/rules" } {
            (csrf)
            input type="hidden" name="kind" value="json";
            textarea name="json" rows="6" cols="80" required aria-label="Rule as JSON" {
                (serde_json::to_string_pretty(&templates()[4].2).unwrap_or_default())
            }
            br;
            button type="submit" { "Add" }
        }
        @for r in &rules {
            details {
                summary { "Edit rule " (r.id) ": " (r.spec.name) }
                form method="post" action={ "/devices/" (id) "/alarms/rules/" (r.id) "/edit" } {
                    (csrf)
                    textarea name="json" rows="10" cols="80" required aria-label={ "Rule " (r.id) " as JSON" } {
                        (serde_json::to_string_pretty(&r.spec).unwrap_or_default())
                    }
                    br;
                    button type="submit" { "Save" }
                }
            }
        }
        h2 { "Notification log" }
        (note_rows(&notes, &zones))
    };
    Ok(layout::page(&p, Nav::None, &title, body))
}

/// The add-rule form (template or threshold).
#[derive(Debug, Deserialize)]
pub struct RuleForm {
    csrf: String,
    kind: String,
    template: Option<String>,
    name: Option<String>,
    channel: Option<String>,
    op: Option<String>,
    limit: Option<String>,
    restore: Option<String>,
    severity: Option<String>,
    raise_after_s: Option<String>,
    clear_after_s: Option<String>,
    list1: Option<String>,
    list2: Option<String>,
    escalate_min: Option<String>,
    json: Option<String>,
}

impl CsrfForm for RuleForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

fn num<T: std::str::FromStr>(v: &Option<String>, what: &str, default: T) -> Result<T, WebError> {
    match v.as_deref().map(str::trim) {
        None | Some("") => Ok(default),
        Some(s) => s
            .parse()
            .map_err(|_| WebError::Invalid(format!("{what}: {s:?} is not a valid number"))),
    }
}

/// A value as the form shows it (°C with decimals for temperatures) in the channel's unit.
fn channel_value(channel: Channel, v: &Option<String>, what: &str) -> Result<i32, WebError> {
    let f: f64 = num(v, what, f64::NAN)?;
    if !f.is_finite() {
        return Err(WebError::Invalid(format!("{what} is required")));
    }
    let scaled = match channel {
        Channel::WaterTempCc | Channel::AirTempCc => (f * 100.0).round(),
        _ => f.round(),
    };
    if scaled.abs() > 1e9 {
        return Err(WebError::Invalid(format!("{what} is out of range")));
    }
    Ok(scaled as i32)
}

/// A rule's condition for people; a condition on a channel of the device's own map names the
/// channel and shows its limits in the channel's unit ("Voltage above 253.0 V").
fn describe(c: &Condition, own: Option<&DeviceChannels>) -> String {
    use crate::service::device_channels::{format_value, scales, unit_of};
    let (index, words, limit, restore) = match *c {
        Condition::ChannelAbove {
            index,
            limit,
            restore,
        } => (index, "above", Some(limit), restore),
        Condition::ChannelBelow {
            index,
            limit,
            restore,
        } => (index, "below", Some(limit), restore),
        Condition::SensorFault { index } => (index, "sensor fault", None, 0),
        _ => return c.describe(),
    };
    let Some((entry, ch)) =
        own.and_then(|e| Some((e, e.channels.iter().find(|ch| ch.index == index)?)))
    else {
        return c.describe();
    };
    let Some(limit) = limit else {
        return format!("sensor fault on {}", ch.name);
    };
    let scale = scales(entry)
        .get(usize::from(index))
        .copied()
        .unwrap_or(1.0);
    let show = |v: i32| format_value(f64::from(v) * scale, ch.decimals, &unit_of(ch));
    format!(
        "{} {words} {} (restore at {})",
        ch.name,
        show(limit),
        show(restore)
    )
}

/// A threshold on a pool channel.
fn pool_threshold(form: &RuleForm) -> Result<Condition, WebError> {
    let channel = match form.channel.as_deref() {
        Some("water_temp_cc") => Channel::WaterTempCc,
        Some("air_temp_cc") => Channel::AirTempCc,
        Some("power_w") => Channel::PowerW,
        _ => return Err(WebError::Invalid("choose a channel".into())),
    };
    let limit = channel_value(channel, &form.limit, "limit")?;
    let restore = channel_value(channel, &form.restore, "restore")?;
    match form.op.as_deref() {
        Some("above") => Ok(Condition::Above {
            channel,
            limit,
            restore,
        }),
        Some("below") => Ok(Condition::Below {
            channel,
            limit,
            restore,
        }),
        _ => Err(WebError::Invalid("choose above or below".into())),
    }
}

/// A threshold on channel `index` of the device's own map: limits typed in the channel's unit,
/// stored as its logged integers (value × 10^-exponent).
fn own_threshold(
    form: &RuleForm,
    own: Option<&DeviceChannels>,
    index: &str,
) -> Result<Condition, WebError> {
    let entry = own.ok_or_else(|| WebError::Invalid("choose a channel".into()))?;
    let index: u8 = index
        .parse()
        .ok()
        .filter(|i| entry.channels.iter().any(|c| c.index == *i))
        .ok_or_else(|| WebError::Invalid("choose a channel".into()))?;
    let scale = crate::service::device_channels::scales(entry)
        .get(usize::from(index))
        .copied()
        .unwrap_or(1.0);
    let logged = |v: &Option<String>, what: &str| -> Result<i32, WebError> {
        let f: f64 = num(v, what, f64::NAN)?;
        if !f.is_finite() {
            return Err(WebError::Invalid(format!("{what} is required")));
        }
        let x = (f / scale).round();
        if x.abs() > 2e9 {
            return Err(WebError::Invalid(format!("{what} is out of range")));
        }
        Ok(x as i32)
    };
    let (limit, restore) = (
        logged(&form.limit, "limit")?,
        logged(&form.restore, "restore")?,
    );
    match form.op.as_deref() {
        Some("above") => Ok(Condition::ChannelAbove {
            index,
            limit,
            restore,
        }),
        Some("below") => Ok(Condition::ChannelBelow {
            index,
            limit,
            restore,
        }),
        _ => Err(WebError::Invalid("choose above or below".into())),
    }
}

/// A rule typed as JSON (the API's form).
fn spec_from_json(json: &str) -> Result<RuleSpec, WebError> {
    serde_json::from_str(json).map_err(|e| WebError::Invalid(format!("the rule is not valid: {e}")))
}

/// A rule from the page's forms; `own`: the device's own channel map in effect, whose channels
/// the threshold form offers (`ch:{index}`, limits in the channel's unit).
fn spec_from(form: &RuleForm, own: Option<&DeviceChannels>) -> Result<RuleSpec, WebError> {
    if form.kind == "json" {
        return spec_from_json(form.json.as_deref().unwrap_or(""));
    }
    let mut spec = match form.kind.as_str() {
        "template" => {
            let t = form.template.as_deref().unwrap_or("");
            templates()
                .into_iter()
                .find(|(n, _, _)| *n == t)
                .map(|(_, _, s)| s)
                .ok_or_else(|| WebError::Invalid(format!("no template {t:?}")))?
        }
        "threshold" => {
            let condition = match form.channel.as_deref().and_then(|c| c.strip_prefix("ch:")) {
                Some(index) => own_threshold(form, own, index)?,
                None => pool_threshold(form)?,
            };
            RuleSpec {
                name: form.name.clone().unwrap_or_default().trim().to_owned(),
                severity: Severity::parse(form.severity.as_deref().unwrap_or(""))
                    .ok_or_else(|| WebError::Invalid("choose a severity".into()))?,
                condition,
                raise_after_s: num(&form.raise_after_s, "raise after", 0)?,
                clear_after_s: num(&form.clear_after_s, "clear after", 0)?,
                lists: Vec::new(),
                escalate_after_s: 0,
                enabled: true,
            }
        }
        _ => return Err(WebError::Invalid("unknown rule form".into())),
    };
    for l in [&form.list1, &form.list2] {
        let id: i64 = num(l, "list", 0)?;
        if id > 0 && !spec.lists.contains(&id) {
            spec.lists.push(id);
        }
    }
    let minutes: u32 = num(&form.escalate_min, "escalate after", 0)?;
    spec.escalate_after_s = minutes.saturating_mul(60);
    Ok(spec)
}

/// `POST /devices/{id}/alarms/rules`.
pub async fn add_rule(
    State(web): State<Web>,
    Path(id): Path<u32>,
    Posted { user, form }: Posted<RuleForm>,
) -> Result<Response, HtmlError> {
    web.check_device(&user.user, id).await?;
    let own = web
        .db_call(move |db| crate::service::device_channels::in_effect_now(db, id))
        .await?;
    let spec = spec_from(&form, own.as_ref())?;
    let rid = al::create_rule(&web, &user, id, spec).await?;
    Ok(Redirect::to(&format!("/devices/{id}/alarms?ok=rule+{rid}+added")).into_response())
}

/// A form with only the CSRF token.
#[derive(Debug, Deserialize)]
pub struct Plain {
    csrf: String,
    /// `overview`: go back to `/alarms` afterwards (else to the device's alarm page).
    #[serde(default)]
    back: Option<String>,
}

impl CsrfForm for Plain {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /devices/{id}/alarms/rules/{rule}/delete`.
pub async fn delete_rule(
    State(web): State<Web>,
    Path((id, rule)): Path<(u32, i64)>,
    Posted { user, .. }: Posted<Plain>,
) -> Result<Response, HtmlError> {
    al::delete_rule(&web, &user, id, rule).await?;
    Ok(Redirect::to(&format!("/devices/{id}/alarms?ok=rule+{rule}+deleted")).into_response())
}

/// The JSON edit form.
#[derive(Debug, Deserialize)]
pub struct JsonForm {
    csrf: String,
    json: String,
}

impl CsrfForm for JsonForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /devices/{id}/alarms/rules/{rule}/edit` (`json`: the whole rule).
pub async fn edit_rule(
    State(web): State<Web>,
    Path((id, rule)): Path<(u32, i64)>,
    Posted { user, form }: Posted<JsonForm>,
) -> Result<Response, HtmlError> {
    al::rule_for(&web, &user, id, rule).await?;
    let spec = spec_from_json(&form.json)?;
    al::update_rule(&web, &user, id, rule, spec).await?;
    Ok(Redirect::to(&format!("/devices/{id}/alarms?ok=rule+{rule}+saved")).into_response())
}

/// The enable/disable form.
#[derive(Debug, Deserialize)]
pub struct EnabledForm {
    csrf: String,
    enabled: String,
}

impl CsrfForm for EnabledForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /devices/{id}/alarms/rules/{rule}/enabled` (`enabled=on|off`).
pub async fn set_enabled(
    State(web): State<Web>,
    Path((id, rule)): Path<(u32, i64)>,
    Posted { user, form }: Posted<EnabledForm>,
) -> Result<Response, HtmlError> {
    let on = match form.enabled.as_str() {
        "on" => true,
        "off" => false,
        _ => return Err(WebError::Invalid("enabled: on or off".into()).into()),
    };
    let mut spec = al::rule_for(&web, &user, id, rule).await?.spec;
    spec.enabled = on;
    al::update_rule(&web, &user, id, rule, spec).await?;
    let what = if on { "enabled" } else { "disabled" };
    Ok(Redirect::to(&format!("/devices/{id}/alarms?ok=rule+{rule}+{what}")).into_response())
}

/// The shelve form.
#[derive(Debug, Deserialize)]
pub struct ShelveForm {
    csrf: String,
    minutes: Option<String>,
    until: Option<String>,
}

impl CsrfForm for ShelveForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /devices/{id}/alarms/rules/{rule}/shelve`.
pub async fn shelve_rule(
    State(web): State<Web>,
    Path((id, rule)): Path<(u32, i64)>,
    Posted { user, form }: Posted<ShelveForm>,
) -> Result<Response, HtmlError> {
    let until = form
        .until
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty());
    let minutes: Option<u32> = match until {
        Some(_) => None,
        None => Some(num(&form.minutes, "minutes", 0)?),
    };
    // The page's "until" is local in the device's zone (named next to the field).
    let z = web.device_zone(id).await?;
    let until = until
        .map(|u| timefmt::parse_local(&z.tz, u).map_or_else(|| u.to_owned(), |t| t.to_string()));
    let end = al::shelf_end(minutes, until.as_deref(), crate::clock::unix_now())?;
    al::shelve_rule(&web, &user, id, rule, end).await?;
    Ok(Redirect::to(&format!(
        "/devices/{id}/alarms?ok=rule+{rule}+shelving+saved"
    ))
    .into_response())
}

/// `POST /alarms/{id}/ack`.
pub async fn ack(
    State(web): State<Web>,
    Path(id): Path<i64>,
    Posted { user, form }: Posted<Plain>,
) -> Result<Response, HtmlError> {
    let a = al::acknowledge(&web, &user, id).await?;
    if form.back.as_deref() == Some("overview") {
        return Ok(Redirect::to(&format!("/alarms?ok=alarm+{id}+acknowledged")).into_response());
    }
    Ok(Redirect::to(&format!(
        "/devices/{}/alarms?ok=alarm+{id}+acknowledged",
        a.device_id
    ))
    .into_response())
}

#[cfg(test)]
mod tests;
