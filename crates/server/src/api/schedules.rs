//! `GET /api/devices/{id}/schedule` (the schedule of the newest configuration, its time zone,
//! holidays and freeze protection, and the configuration's state) and
//! `PUT /api/devices/{id}/schedule` (a change: the fields given replace those shown by GET —
//! `days` day by day; validated exactly like Configure → Schedules; nothing is saved if anything
//! is wrong; a new configuration version like `PUT /api/devices/{id}/config`).

use crate::http::auth::ApiUser;
use crate::http::error::{JsonError, WebError};
use crate::http::Web;
use crate::service::config_change::hundredths;
use crate::service::schedules::{
    self, format_date, parse_date, parse_periods, period_text, temperature_message,
    temperature_ranges, zone_of, DayPeriods, ScheduleEdit, DAYS,
};
use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use tek_proto::message::Config;

/// The JSON form of the schedule part of a configuration.
pub fn schedule_json(c: &Config, zone: &str) -> Value {
    let e = ScheduleEdit::from_config(c, zone);
    let number = |cc: Option<i32>| cc.map_or(Value::Null, |cc| Value::from(f64::from(cc) / 100.0));
    let texts = |ps: &[(u16, u16)]| ps.iter().copied().map(period_text).collect::<Vec<_>>();
    let mut days = Map::new();
    for ((key, _), day) in DAYS.iter().zip(&e.days) {
        let day = day.clone().unwrap_or_default();
        days.insert(
            (*key).to_owned(),
            json!({ "pump": texts(&day.pump), "occupied": texts(&day.occupied) }),
        );
    }
    json!({
        "enabled": e.enabled,
        "time_zone": zone,
        "posix_tz": if c.time_zone.is_empty() { "UTC0" } else { c.time_zone.as_str() },
        "occupied_setpoint_c": number(e.occupied_cc),
        "unoccupied_setpoint_c": number(e.unoccupied_cc),
        "days": days,
        "holidays": e.holidays.iter().flatten().map(|&d| format_date(d)).collect::<Vec<_>>(),
        "freeze": { "limit_c": number(e.freeze_limit_cc), "hysteresis_c": number(e.freeze_hysteresis_cc) },
        "switching_points": c.schedule.as_ref().map_or(0, |s| s.points.len()),
    })
}

/// `GET /api/devices/{id}/schedule`.
pub async fn get(
    State(web): State<Web>,
    ApiUser(p): ApiUser,
    Path(id): Path<u32>,
) -> Result<Json<Value>, JsonError> {
    let state = web.device_for(&p.user, id).await?;
    let latest = web.db_call(move |db| db.latest_config(id)).await?;
    let zone = zone_of(&web, id).await?;
    let view = crate::service::view::config_view(&state);
    let (version, cfg) = latest.map_or((0, Config::default()), |r| (r.version, r.config));
    Ok(Json(json!({
        "version": version,
        "state": view.state,
        "schedule": schedule_json(&cfg, &zone),
    })))
}

/// One day type in a change.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DayJson {
    /// Pump periods, `HH:MM-HH:MM`.
    #[serde(default)]
    pump: Vec<String>,
    /// Occupied periods.
    #[serde(default)]
    occupied: Vec<String>,
}

/// Freeze protection in a change.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreezeJson {
    limit_c: Option<f64>,
    hysteresis_c: Option<f64>,
}

/// A change; every field optional.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ScheduleChange {
    enabled: Option<bool>,
    time_zone: Option<String>,
    occupied_setpoint_c: Option<f64>,
    unoccupied_setpoint_c: Option<f64>,
    /// By day key (`mon` .. `sun`, `holiday`).
    days: Option<BTreeMap<String, DayJson>>,
    holidays: Option<Vec<String>>,
    freeze: Option<FreezeJson>,
}

impl ScheduleChange {
    /// The schedule this change makes of `current`: the fields given replace its own. Unknown
    /// day keys are refused at once; other problems reading a field are pushed onto `errors`
    /// and leave that field as it was, so the rest is still checked.
    pub fn edit(
        &self,
        mut e: ScheduleEdit,
        errors: &mut Vec<String>,
    ) -> Result<ScheduleEdit, WebError> {
        let ranges = temperature_ranges();
        let mut temp = |i: usize, x: Option<f64>, slot: &mut Option<i32>| {
            let Some(x) = x else { return };
            let (label, lo, hi) = ranges[i];
            match hundredths(x) {
                Some(cc) => *slot = Some(cc),
                None => errors.push(temperature_message(label, lo, hi)),
            }
        };
        temp(0, self.occupied_setpoint_c, &mut e.occupied_cc);
        temp(1, self.unoccupied_setpoint_c, &mut e.unoccupied_cc);
        if let Some(fr) = &self.freeze {
            temp(2, fr.limit_c, &mut e.freeze_limit_cc);
            temp(3, fr.hysteresis_c, &mut e.freeze_hysteresis_cc);
        }
        if let Some(on) = self.enabled {
            e.enabled = on;
        }
        if let Some(z) = &self.time_zone {
            e.time_zone = z.clone();
        }
        for (key, d) in self.days.iter().flatten() {
            let i = DAYS.iter().position(|(k, _)| k == key).ok_or_else(|| {
                WebError::Invalid(format!("unknown day {key:?} (mon..sun, holiday)"))
            })?;
            let label = DAYS[i].1;
            let read = |what: &str, list: &[String], errors: &mut Vec<String>| {
                let mut out = Vec::new();
                for p in list {
                    match parse_periods(p) {
                        Ok(ps) => out.extend(ps),
                        Err(err) => errors.push(format!("{label}, {what}: {err}.")),
                    }
                }
                out
            };
            let pump = read("pump", &d.pump, errors);
            let occupied = read("occupied", &d.occupied, errors);
            e.days[i] = Some(DayPeriods { pump, occupied });
        }
        if let Some(list) = &self.holidays {
            let mut days = Vec::new();
            for d in list {
                match parse_date(d.trim()) {
                    Some(day) => days.push(day),
                    None => errors.push(format!("Holiday {d:?} is not a date like 2026-12-25.")),
                }
            }
            e.holidays = Some(days);
        }
        Ok(e)
    }
}

/// `PUT /api/devices/{id}/schedule`.
pub async fn put(
    State(web): State<Web>,
    ApiUser(p): ApiUser,
    Path(id): Path<u32>,
    body: Result<Json<ScheduleChange>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, JsonError> {
    web.check_device(&p.user, id).await?;
    let Json(change) =
        body.map_err(|e| crate::http::auth::body_error(e.status(), &e.body_text()))?;
    let latest = web.db_call(move |db| db.latest_config(id)).await?;
    let cfg = latest.map_or_else(Config::default, |r| r.config);
    let zone = zone_of(&web, id).await?;
    let mut reading = Vec::new();
    let edit = change.edit(ScheduleEdit::from_config(&cfg, &zone), &mut reading)?;
    let version = schedules::save(&web, &p, id, &edit, reading)
        .await
        .map_err(|(e, errors)| match e {
            WebError::Invalid(m) if errors.is_empty() => WebError::Invalid(m),
            WebError::Invalid(_) => WebError::Invalid(errors.join(" ")),
            other => other,
        })?;
    Ok(Json(
        json!({ "version": version, "state": crate::service::devices::ConfigStatus::Pending }),
    ))
}
