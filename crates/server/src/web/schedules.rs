//! Configure → Schedules: the weekly schedule the controller follows on its own (pump and
//! occupied/unoccupied setpoint), holidays, the schedule's time zone and freeze protection.
//!
//! The page edits periods ("06:00-22:00, 23:00-24:00") per day type — Monday to Sunday and
//! Holiday — for the pump and for occupancy; they are turned into the switching points of
//! configuration item 12 (docs/PROTOCOL.md section 7.6.1) and back. The time zone is an IANA
//! name (default `UTC`), kept by the server ([`crate::storage::ScheduleStore`]); the controller
//! gets its POSIX TZ rule ([`crate::tzdb`]). "Save Changes" checks every field with a message
//! each, then [`Config::validate`] — the controller's own rules — and saves a new configuration
//! version exactly like Configure → System, so the spinner and the green dot follow it.

use super::auth::{CsrfForm, PageUser, Posted};
use super::configure::ConfigureQuery;
use super::device::heading;
use super::error::HtmlError;
use super::layout::{self, Nav};
use crate::http::error::WebError;
use crate::http::Web;
use crate::service::devices::{save_edited, ConfigStatus};
use crate::storage::schedules::DEFAULT_ZONE;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;
use std::collections::BTreeSet;
use tek_proto::message::config::{
    self as pc, Freeze, Schedule, SwitchPoint, MAX_HOLIDAYS, MAX_POINTS,
};
use tek_proto::message::Config;
use tek_proto::tz::{civil_from_days, days_from_civil};

/// Day types in schedule order: key (form field and JSON), label.
pub const DAYS: [(&str, &str); 8] = [
    ("mon", "Monday"),
    ("tue", "Tuesday"),
    ("wed", "Wednesday"),
    ("thu", "Thursday"),
    ("fri", "Friday"),
    ("sat", "Saturday"),
    ("sun", "Sunday"),
    ("holiday", "Holiday"),
];

/// The Schedules form (also what the page shows when it opens). Periods are
/// `HH:MM-HH:MM` separated by commas or new lines; `24:00` may end a period.
#[derive(Debug, Deserialize, Default, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct ScheduleForm {
    #[serde(default)]
    csrf: String,
    /// `on`: the controller follows the schedule; absent: pump always on, occupied setpoint.
    #[serde(default)]
    pub enabled: Option<String>,
    /// IANA zone name; blank = UTC.
    #[serde(default)]
    pub time_zone: String,
    /// °C.
    #[serde(default)]
    pub occupied: String,
    /// °C.
    #[serde(default)]
    pub unoccupied: String,
    /// °C.
    #[serde(default)]
    pub freeze_limit: String,
    /// °C.
    #[serde(default)]
    pub freeze_hysteresis: String,
    /// Dates `YYYY-MM-DD`, one per line or comma-separated.
    #[serde(default)]
    pub holidays: String,
    #[serde(default)]
    pub pump_mon: String,
    #[serde(default)]
    pub pump_tue: String,
    #[serde(default)]
    pub pump_wed: String,
    #[serde(default)]
    pub pump_thu: String,
    #[serde(default)]
    pub pump_fri: String,
    #[serde(default)]
    pub pump_sat: String,
    #[serde(default)]
    pub pump_sun: String,
    #[serde(default)]
    pub pump_holiday: String,
    #[serde(default)]
    pub occ_mon: String,
    #[serde(default)]
    pub occ_tue: String,
    #[serde(default)]
    pub occ_wed: String,
    #[serde(default)]
    pub occ_thu: String,
    #[serde(default)]
    pub occ_fri: String,
    #[serde(default)]
    pub occ_sat: String,
    #[serde(default)]
    pub occ_sun: String,
    #[serde(default)]
    pub occ_holiday: String,
}

impl CsrfForm for ScheduleForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

fn celsius(cc: i32) -> String {
    let sign = if cc < 0 { "-" } else { "" };
    let a = cc.unsigned_abs();
    format!("{sign}{}.{:02}", a / 100, a % 100)
}

fn hhmm(m: u16) -> String {
    format!("{:02}:{:02}", m / 60, m % 60)
}

/// A date of the local calendar as days since 1970-01-01, from `YYYY-MM-DD`.
pub fn parse_date(s: &str) -> Option<u16> {
    let mut it = s.splitn(3, '-');
    let (y, m, d) = (it.next()?, it.next()?, it.next()?);
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (y, m, d): (i32, u32, u32) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    let day = days_from_civil(y, m, d);
    (civil_from_days(day) == (y, m, d))
        .then(|| u16::try_from(day).ok())
        .flatten()
}

/// `YYYY-MM-DD` of a day number.
pub fn format_date(day: u16) -> String {
    let (y, m, d) = civil_from_days(i32::from(day));
    format!("{y:04}-{m:02}-{d:02}")
}

/// Periods of one day from text: `HH:MM-HH:MM`, separated by commas, spaces or new lines.
pub fn parse_periods(s: &str) -> Result<Vec<(u16, u16)>, String> {
    let time = |t: &str, end: bool| -> Option<u16> {
        let (h, m) = t.trim().split_once(':')?;
        if h.is_empty() || h.len() > 2 || m.len() != 2 {
            return None;
        }
        let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
        let v = h.checked_mul(60)? + m;
        (m < 60 && (v < 1440 || end && v == 1440)).then_some(v)
    };
    let mut out = Vec::new();
    for p in s
        .split([',', '\n', '\r', ' ', ';'])
        .filter(|p| !p.trim().is_empty())
    {
        let bad = || format!("{p:?} is not a period like 06:00-22:00");
        let (a, b) = p.split_once('-').ok_or_else(bad)?;
        let (a, b) = (
            time(a, false).ok_or_else(bad)?,
            time(b, true).ok_or_else(bad)?,
        );
        if a >= b {
            return Err(format!("{p:?} ends before it starts"));
        }
        out.push((a, b));
    }
    Ok(out)
}

/// The switching points of one day type from its pump and occupancy periods: a point wherever
/// the state changes, the day starting off and unoccupied.
pub fn day_points(day: u8, pump: &[(u16, u16)], occupied: &[(u16, u16)]) -> Vec<SwitchPoint> {
    let covered = |ps: &[(u16, u16)], m: u16| ps.iter().any(|&(a, b)| a <= m && m < b);
    let bounds: BTreeSet<u16> = pump
        .iter()
        .chain(occupied)
        .flat_map(|&(a, b)| [a, b])
        .filter(|&m| m < 1440)
        .collect();
    let mut out = Vec::new();
    let mut prev = (false, false);
    for m in bounds {
        let state = (covered(pump, m), covered(occupied, m));
        if state != prev {
            out.extend(SwitchPoint::new(day, m, state.0, state.1));
            prev = state;
        }
    }
    out
}

/// The periods of one day type in which `on` holds, as text.
pub fn periods_text(points: &[SwitchPoint], day: u8, on: fn(SwitchPoint) -> bool) -> String {
    let mut out = Vec::new();
    let mut start = None;
    for p in points.iter().filter(|p| p.day() == day) {
        match (on(*p), start) {
            (true, None) => start = Some(p.minute()),
            (false, Some(s)) => {
                out.push(format!("{}-{}", hhmm(s), hhmm(p.minute())));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push(format!("{}-24:00", hhmm(s)));
    }
    out.join(", ")
}

impl ScheduleForm {
    /// The pump and occupancy fields of day type `i` (0 Monday ..= 7 holiday).
    pub fn day(&self, i: usize) -> (&str, &str) {
        let f = self;
        match i {
            0 => (&f.pump_mon, &f.occ_mon),
            1 => (&f.pump_tue, &f.occ_tue),
            2 => (&f.pump_wed, &f.occ_wed),
            3 => (&f.pump_thu, &f.occ_thu),
            4 => (&f.pump_fri, &f.occ_fri),
            5 => (&f.pump_sat, &f.occ_sat),
            6 => (&f.pump_sun, &f.occ_sun),
            _ => (&f.pump_holiday, &f.occ_holiday),
        }
    }

    /// Mutable [`day`](Self::day).
    pub fn day_mut(&mut self, i: usize) -> (&mut String, &mut String) {
        let f = self;
        match i {
            0 => (&mut f.pump_mon, &mut f.occ_mon),
            1 => (&mut f.pump_tue, &mut f.occ_tue),
            2 => (&mut f.pump_wed, &mut f.occ_wed),
            3 => (&mut f.pump_thu, &mut f.occ_thu),
            4 => (&mut f.pump_fri, &mut f.occ_fri),
            5 => (&mut f.pump_sat, &mut f.occ_sat),
            6 => (&mut f.pump_sun, &mut f.occ_sun),
            _ => (&mut f.pump_holiday, &mut f.occ_holiday),
        }
    }

    /// The form filled from a configuration and the stored zone name.
    pub fn from_config(c: &Config, zone: &str) -> ScheduleForm {
        let mut f = ScheduleForm {
            enabled: c.schedule.as_ref().map(|_| "on".to_owned()),
            time_zone: zone.to_owned(),
            occupied: celsius(i32::from(c.thermostat.setpoint_cc)),
            unoccupied: celsius(i32::from(
                c.schedule
                    .as_ref()
                    .map_or(c.thermostat.setpoint_cc, |s| s.unoccupied_cc),
            )),
            freeze_limit: celsius(i32::from(c.freeze.limit_cc)),
            freeze_hysteresis: celsius(i32::from(c.freeze.hysteresis_cc)),
            holidays: c
                .holidays
                .iter()
                .map(|&d| format_date(d))
                .collect::<Vec<_>>()
                .join("\n"),
            ..ScheduleForm::default()
        };
        if let Some(s) = &c.schedule {
            for i in 0..DAYS.len() {
                let pump = periods_text(&s.points, i as u8, SwitchPoint::pump);
                let occ = periods_text(&s.points, i as u8, SwitchPoint::occupied);
                let (p, o) = f.day_mut(i);
                *p = pump;
                *o = occ;
            }
        }
        f
    }
}

/// The form field a message of [`apply_form`] is about, so the page shows it under that field.
pub fn field_of(message: &str) -> Option<String> {
    for (key, label) in DAYS {
        if message.starts_with(&format!("{label}, pump")) {
            return Some(format!("pump_{key}"));
        }
        if message.starts_with(&format!("{label}, occupied")) {
            return Some(format!("occ_{key}"));
        }
    }
    [
        ("Occupied setpoint", "occupied"),
        ("Unoccupied setpoint", "unoccupied"),
        ("Freeze protection limit", "freeze_limit"),
        ("Freeze protection hysteresis", "freeze_hysteresis"),
        ("Time zone", "time_zone"),
        ("Holiday", "holidays"),
    ]
    .iter()
    .find(|(p, _)| message.starts_with(p))
    .map(|(_, f)| (*f).to_owned())
}

/// Applies the form to `c` (the POSIX rule of the zone comes from [`crate::tzdb`]); every
/// problem is reported, and `c` is only meaningful if there is none. Returns the audit detail.
pub fn apply_form(c: &mut Config, f: &ScheduleForm) -> Result<String, Vec<String>> {
    let mut errors = Vec::new();
    let temp = |errors: &mut Vec<String>, label: &str, v: &str, lo: i32, hi: i32| -> i32 {
        match crate::device_config::centi(label, v.trim()) {
            Ok(x) if (lo..=hi).contains(&x) => x,
            _ => {
                errors.push(format!(
                    "{label} must be a temperature from {} to {} °C, like 27.5.",
                    celsius(lo),
                    celsius(hi)
                ));
                0
            }
        }
    };
    let sp = pc::range::SETPOINT_CC;
    let (lo, hi) = (i32::from(*sp.start()), i32::from(*sp.end()));
    let occupied = temp(&mut errors, "Occupied setpoint", &f.occupied, lo, hi);
    let unoccupied = temp(&mut errors, "Unoccupied setpoint", &f.unoccupied, lo, hi);
    let fl = pc::range::FREEZE_LIMIT_CC;
    let limit = temp(
        &mut errors,
        "Freeze protection limit",
        &f.freeze_limit,
        i32::from(*fl.start()),
        i32::from(*fl.end()),
    );
    let fh = pc::range::FREEZE_HYSTERESIS_CC;
    let hysteresis = temp(
        &mut errors,
        "Freeze protection hysteresis",
        &f.freeze_hysteresis,
        i32::from(*fh.start()),
        i32::from(*fh.end()),
    );

    let zone = if f.time_zone.trim().is_empty() {
        DEFAULT_ZONE
    } else {
        f.time_zone.trim()
    };
    let rule = match crate::tzdb::posix_rule(zone) {
        Ok(r) => Some(r),
        Err(e) => {
            errors.push(format!("Time zone: {e}."));
            None
        }
    };

    let mut points = Vec::new();
    for (i, (_, label)) in DAYS.iter().enumerate() {
        let (pump, occ) = f.day(i);
        match (parse_periods(pump), parse_periods(occ)) {
            (Ok(p), Ok(o)) => points.extend(day_points(i as u8, &p, &o)),
            (Err(e), _) => errors.push(format!("{label}, pump: {e}.")),
            (_, Err(e)) => errors.push(format!("{label}, occupied: {e}.")),
        }
    }
    if points.len() > MAX_POINTS {
        errors.push(format!(
            "The week has {} switching points; a controller holds at most {MAX_POINTS}. \
             Use fewer periods (a point is wherever the pump or occupancy changes).",
            points.len()
        ));
    }

    let mut holidays = BTreeSet::new();
    for d in f
        .holidays
        .split([',', '\n', '\r', ' ', ';'])
        .map(str::trim)
        .filter(|d| !d.is_empty())
    {
        match parse_date(d) {
            Some(day) => {
                holidays.insert(day);
            }
            None => errors.push(format!("Holiday {d:?} is not a date like 2026-12-25.")),
        }
    }
    if holidays.len() > MAX_HOLIDAYS {
        errors.push(format!(
            "{} holidays listed; a controller holds at most {MAX_HOLIDAYS}.",
            holidays.len()
        ));
    }
    if !errors.is_empty() {
        return Err(errors);
    }

    let before = c.clone();
    c.thermostat.setpoint_cc = occupied as i16;
    c.schedule = f.enabled.is_some().then(|| Schedule {
        unoccupied_cc: unoccupied as i16,
        points: heapless::Vec::from_slice(&points).unwrap_or_default(),
    });
    c.holidays = holidays.iter().copied().collect();
    c.time_zone = match rule.as_deref() {
        // UTC is the default; leaving it out keeps the configuration as small as before.
        Some("UTC0") | None => heapless::String::new(),
        Some(r) => heapless::String::try_from(r).unwrap_or_default(),
    };
    c.freeze = Freeze {
        limit_cc: limit as i16,
        hysteresis_cc: hysteresis as u16,
    };
    if let Err(e) = c.validate() {
        return Err(vec![format!("The configuration is not valid: {e}.")]);
    }
    let mut changes = Vec::new();
    if before.schedule != c.schedule {
        changes.push(match &c.schedule {
            Some(s) => format!(
                "schedule: {} switching points, unoccupied {} °C",
                s.points.len(),
                celsius(i32::from(s.unoccupied_cc))
            ),
            None => "schedule off".to_owned(),
        });
    }
    if before.thermostat.setpoint_cc != c.thermostat.setpoint_cc {
        changes.push(format!(
            "occupied setpoint {} °C",
            celsius(i32::from(c.thermostat.setpoint_cc))
        ));
    }
    if before.holidays != c.holidays {
        changes.push(format!("{} holidays", c.holidays.len()));
    }
    if before.time_zone != c.time_zone {
        changes.push(format!("time zone {zone}"));
    }
    if before.freeze != c.freeze {
        changes.push(format!(
            "freeze protection below {} °C",
            celsius(i32::from(c.freeze.limit_cc))
        ));
    }
    Ok(if changes.is_empty() {
        "no change".into()
    } else {
        changes.join("; ")
    })
}

/// The zone of a device's schedule: the one stored with it, else its site's time zone, else
/// `UTC`.
pub async fn zone_of(web: &Web, id: u32) -> Result<String, WebError> {
    web.db_call(move |db| effective_zone(db, id)).await
}

fn effective_zone(db: &dyn crate::storage::Storage, id: u32) -> crate::storage::Result<String> {
    if let Some(zone) = db.schedule_zone(id)? {
        return Ok(zone);
    }
    Ok(match db.device_site(id)? {
        Some(site) => db.site(site)?.map(|s| s.time_zone),
        None => None,
    }
    .unwrap_or_else(|| DEFAULT_ZONE.to_owned()))
}

/// Saves the form as a new configuration version and the zone name; returns the version.
pub async fn save_form(
    web: &Web,
    p: &crate::http::auth::Principal,
    id: u32,
    form: &ScheduleForm,
) -> Result<u32, (WebError, Vec<String>)> {
    // A blank zone means the site's time zone (or UTC): the controller's rule and the stored
    // name are both taken from it.
    let mut form = form.clone();
    if form.time_zone.trim().is_empty() {
        form.time_zone = zone_of(web, id).await.map_err(|e| (e, Vec::new()))?;
    }
    let mut errors = Vec::new();
    let saved = save_edited(web, p, id, |c| {
        apply_form(c, &form).map_err(|e| {
            errors = e;
            WebError::Invalid("invalid input".into())
        })
    })
    .await;
    let version = saved.map_err(|e| (e, std::mem::take(&mut errors)))?;
    let zone = form.time_zone.trim().to_owned();
    web.db_call(move |db| db.set_schedule_zone(id, &zone))
        .await
        .map_err(|e| (e, Vec::new()))?;
    Ok(version)
}

async fn render(
    web: &Web,
    p: &crate::http::auth::Principal,
    id: u32,
    form: Option<&ScheduleForm>,
    errors: &[String],
    saved: Option<u32>,
) -> Result<axum::response::Html<String>, WebError> {
    let state = web.device_for(&p.user, id).await?;
    let v = web.view(state).await?;
    let (latest, site, zone) = web
        .db_call(move |db| {
            let site = match db.device_site(id)? {
                Some(s) => db.site(s)?.map(|s| s.name),
                None => None,
            };
            Ok((db.latest_config(id)?, site, effective_zone(db, id)?))
        })
        .await?;
    let cfg = latest.map_or_else(Config::default, |r| r.config);
    let f = form
        .cloned()
        .unwrap_or_else(|| ScheduleForm::from_config(&cfg, &zone));
    let now = crate::clock::unix_now();
    let mut errs = super::fields::FieldErrors::default();
    for e in errors {
        if let Some(f) = field_of(e) {
            if errs.get(&f).is_none() {
                errs.push(&f, e.clone());
            }
        }
    }
    let errs = &errs;
    let body = html! {
        (heading(&v, site.as_deref(), now))
        h2 { "Configure → Schedules" }
        @if let Some(ver) = saved {
            p.flash.ok #save-state data-version=(ver) role="status" {
                "Saved as configuration v" (ver) ". "
                span data-field="config-wait" { (if v.config.state == ConfigStatus::Pending { "Waiting for the controller to confirm…" } else { "" }) }
            }
        }
        @if !errors.is_empty() {
            div.flash.error #errors role="alert" {
                p { "Nothing was saved:" }
                ul { @for e in errors { li { (e) } } }
            }
        }
        form.schedules #schedules method="post" data-plain action={ "/devices/" (id) "/schedules" } {
            (layout::csrf_field(p))
            fieldset {
                legend { "Schedule" }
                label.check { input #enabled type="checkbox" name="enabled" value="on" checked[f.enabled.is_some()]; "The controller follows this schedule (otherwise the pump runs all the time at the occupied setpoint)" }
                label { "Time zone (IANA name)" input #time_zone name="time_zone" value=(f.time_zone) placeholder="UTC" maxlength="64"
                    aria-invalid=[errs.invalid("time_zone")] aria-describedby=[errs.described_by("time_zone")];
                    (errs.note("time_zone")) }
                label { "Occupied setpoint (°C)" input #occupied name="occupied" value=(f.occupied) inputmode="decimal" required
                    aria-invalid=[errs.invalid("occupied")] aria-describedby=[errs.described_by("occupied")];
                    (errs.note("occupied")) }
                label { "Unoccupied setpoint (°C)" input #unoccupied name="unoccupied" value=(f.unoccupied) inputmode="decimal" required
                    aria-invalid=[errs.invalid("unoccupied")] aria-describedby=[errs.described_by("unoccupied")];
                    (errs.note("unoccupied")) }
            }
            fieldset {
                legend { "Week" }
                p.hint { "Periods like 06:00-22:00, separated by commas; 24:00 ends a day. Outside its pump periods the pump is off; outside its occupied periods the unoccupied setpoint applies. Holidays use the Holiday row." }
                table.week {
                    thead { tr { th { "Day" } th { "Pump on" } th { "Occupied" } } }
                    tbody {
                        @for (i, (key, label)) in DAYS.iter().enumerate() {
                            @let (pump, occ) = f.day(i);
                            tr {
                                th scope="row" { (label) }
                                @let (pf, of) = (format!("pump_{key}"), format!("occ_{key}"));
                                td { input id=(pf) name=(pf) value=(pump) aria-label={ (label) " pump periods" }
                                        aria-invalid=[errs.invalid(&pf)] aria-describedby=[errs.described_by(&pf)];
                                    (errs.note(&pf)) }
                                td { input id=(of) name=(of) value=(occ) aria-label={ (label) " occupied periods" }
                                        aria-invalid=[errs.invalid(&of)] aria-describedby=[errs.described_by(&of)];
                                    (errs.note(&of)) }
                            }
                        }
                    }
                }
            }
            fieldset {
                legend { "Holidays" }
                p.hint { "Dates (YYYY-MM-DD), one per line, at most 16." }
                textarea #holidays name="holidays" rows="4" aria-label="Holidays, one date per line"
                    aria-invalid=[errs.invalid("holidays")] aria-describedby=[errs.described_by("holidays")] { (f.holidays) }
                (errs.note("holidays"))
            }
            fieldset {
                legend { "Freeze protection" }
                p.hint { "Below this air temperature the pump runs, whatever the schedule or a manual command says, until the air is warmer than the limit plus the hysteresis. The heater never runs without the pump." }
                label { "Air below (°C)" input #freeze_limit name="freeze_limit" value=(f.freeze_limit) inputmode="decimal" required
                    aria-invalid=[errs.invalid("freeze_limit")] aria-describedby=[errs.described_by("freeze_limit")];
                    (errs.note("freeze_limit")) }
                label { "Hysteresis (°C)" input #freeze_hysteresis name="freeze_hysteresis" value=(f.freeze_hysteresis) inputmode="decimal" required
                    aria-invalid=[errs.invalid("freeze_hysteresis")] aria-describedby=[errs.described_by("freeze_hysteresis")];
                    (errs.note("freeze_hysteresis")) }
            }
            button #save type="submit" { "Save Changes" }
        }
    };
    Ok(layout::page(
        p,
        Nav::None,
        &format!("{} — Schedules", v.name),
        body,
    ))
}

/// `GET /devices/{id}/schedules`.
pub async fn page(
    State(web): State<Web>,
    PageUser(p): PageUser,
    Path(id): Path<u32>,
    Query(q): Query<ConfigureQuery>,
) -> Result<Response, HtmlError> {
    Ok(render(&web, &p, id, None, &[], q.saved)
        .await?
        .into_response())
}

/// `POST /devices/{id}/schedules`.
pub async fn save(
    State(web): State<Web>,
    Path(id): Path<u32>,
    Posted { user, form }: Posted<ScheduleForm>,
) -> Result<Response, HtmlError> {
    web.check_device(&user.user, id).await?;
    match save_form(&web, &user, id, &form).await {
        Ok(v) => Ok(Redirect::to(&format!("/devices/{id}/schedules?saved={v}")).into_response()),
        Err((WebError::Invalid(m), mut errors)) => {
            if errors.is_empty() {
                errors.push(m);
            }
            let page = render(&web, &user, id, Some(&form), &errors, None).await?;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
        }
        Err((e, _)) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests;
