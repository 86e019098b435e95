//! Configure → Schedules: the weekly schedule the controller follows on its own (pump and
//! occupied/unoccupied setpoint), holidays, the schedule's time zone and freeze protection.
//!
//! The page edits periods ("06:00-22:00, 23:00-24:00") per day type — Monday to Sunday and
//! Holiday — for the pump and for occupancy. "Save Changes" reads the form into a
//! [`ScheduleEdit`] ([`ScheduleForm::edit`]) and [`schedules::save`] applies and saves it: every
//! field checked with a message each, the switching points of configuration item 12, the zone's
//! POSIX rule, the controller's own rules, a new configuration version exactly like Configure →
//! System, so the spinner and the green dot follow it.

use super::auth::{CsrfForm, PageUser, Posted};
use super::configure::ConfigureQuery;
use super::device::heading;
use super::error::HtmlError;
use super::layout::{self, Nav};
use crate::http::error::WebError;
use crate::http::Web;
use crate::service::devices::ConfigStatus;
use crate::service::schedules::{
    self, celsius, format_date, parse_date, parse_periods, period_text, temperature_message,
    temperature_ranges, DayPeriods, ScheduleEdit, DAYS,
};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;
use tek_proto::message::Config;

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
        let e = ScheduleEdit::from_config(c, zone);
        let temp = |cc: Option<i32>| cc.map(celsius).unwrap_or_default();
        let mut f = ScheduleForm {
            enabled: e.enabled.then(|| "on".to_owned()),
            time_zone: e.time_zone,
            occupied: temp(e.occupied_cc),
            unoccupied: temp(e.unoccupied_cc),
            freeze_limit: temp(e.freeze_limit_cc),
            freeze_hysteresis: temp(e.freeze_hysteresis_cc),
            holidays: (e.holidays.iter().flatten())
                .map(|&d| format_date(d))
                .collect::<Vec<_>>()
                .join("\n"),
            ..ScheduleForm::default()
        };
        for (i, day) in e.days.iter().enumerate() {
            let Some(day) = day else { continue };
            let text = |ps: &[(u16, u16)]| {
                let t: Vec<String> = ps.iter().copied().map(period_text).collect();
                t.join(", ")
            };
            let (p, o) = f.day_mut(i);
            *p = text(&day.pump);
            *o = text(&day.occupied);
        }
        f
    }

    /// The schedule this form asks for. Problems reading a field are pushed onto `errors` and
    /// leave that field out, so the rest is still checked.
    pub fn edit(&self, errors: &mut Vec<String>) -> ScheduleEdit {
        let texts = [
            &self.occupied,
            &self.unoccupied,
            &self.freeze_limit,
            &self.freeze_hysteresis,
        ];
        let mut temps = [None; 4];
        for ((slot, text), (label, lo, hi)) in temps.iter_mut().zip(texts).zip(temperature_ranges())
        {
            match crate::device_config::centi(label, text.trim()) {
                Ok(cc) => *slot = Some(cc),
                Err(_) => errors.push(temperature_message(label, lo, hi)),
            }
        }
        let mut days: [Option<DayPeriods>; 8] = Default::default();
        for (i, (_, label)) in DAYS.iter().enumerate() {
            let (pump, occ) = self.day(i);
            match (parse_periods(pump), parse_periods(occ)) {
                (Ok(pump), Ok(occupied)) => days[i] = Some(DayPeriods { pump, occupied }),
                (Err(e), _) => errors.push(format!("{label}, pump: {e}.")),
                (_, Err(e)) => errors.push(format!("{label}, occupied: {e}.")),
            }
        }
        let mut holidays = Vec::new();
        for d in self
            .holidays
            .split([',', '\n', '\r', ' ', ';'])
            .map(str::trim)
            .filter(|d| !d.is_empty())
        {
            match parse_date(d) {
                Some(day) => holidays.push(day),
                None => errors.push(format!("Holiday {d:?} is not a date like 2026-12-25.")),
            }
        }
        let [occupied_cc, unoccupied_cc, freeze_limit_cc, freeze_hysteresis_cc] = temps;
        ScheduleEdit {
            enabled: self.enabled.is_some(),
            time_zone: self.time_zone.clone(),
            occupied_cc,
            unoccupied_cc,
            freeze_limit_cc,
            freeze_hysteresis_cc,
            days,
            holidays: Some(holidays),
        }
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

/// Applies the form to `c` (see [`ScheduleEdit::apply`]); every problem is reported, and `c`
/// is only meaningful if there is none. Returns the audit detail.
pub fn apply_form(c: &mut Config, f: &ScheduleForm) -> Result<String, Vec<String>> {
    let mut errors = Vec::new();
    let edit = f.edit(&mut errors);
    edit.apply_after(c, errors)
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
            Ok((
                db.latest_config(id)?,
                site,
                schedules::effective_zone(db, id)?,
            ))
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
    let mut reading = Vec::new();
    let edit = form.edit(&mut reading);
    match schedules::save(&web, &user, id, &edit, reading).await {
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
