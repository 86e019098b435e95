//! `GET /api/devices/{id}/schedule` (the schedule of the newest configuration, its time zone,
//! holidays and freeze protection, and the configuration's state) and
//! `PUT /api/devices/{id}/schedule` (a change: the fields given replace those shown by GET —
//! `days` day by day; validated exactly like Configure → Schedules; nothing is saved if anything
//! is wrong; a new configuration version like `PUT /api/devices/{id}/config`).

use crate::http::auth::ApiUser;
use crate::http::error::{JsonError, WebError};
use crate::http::Web;
use crate::web::schedules::{save_form, zone_of, ScheduleForm, DAYS};
use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use tek_proto::message::Config;

fn periods(s: &str) -> Vec<String> {
    s.split(", ")
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

fn number(s: &str) -> Value {
    s.parse::<f64>().map_or(Value::Null, Value::from)
}

/// The JSON form of the schedule part of a configuration.
pub fn schedule_json(c: &Config, zone: &str) -> Value {
    let f = ScheduleForm::from_config(c, zone);
    let mut days = Map::new();
    for (i, (key, _)) in DAYS.iter().enumerate() {
        let (pump, occ) = f.day(i);
        days.insert(
            (*key).to_owned(),
            json!({ "pump": periods(pump), "occupied": periods(occ) }),
        );
    }
    json!({
        "enabled": c.schedule.is_some(),
        "time_zone": zone,
        "posix_tz": if c.time_zone.is_empty() { "UTC0" } else { c.time_zone.as_str() },
        "occupied_setpoint_c": number(&f.occupied),
        "unoccupied_setpoint_c": number(&f.unoccupied),
        "days": days,
        "holidays": f.holidays.lines().collect::<Vec<_>>(),
        "freeze": { "limit_c": number(&f.freeze_limit), "hysteresis_c": number(&f.freeze_hysteresis) },
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
    let view = crate::web::view::config_view(&state);
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

/// The form a change makes of the current one; unknown day keys are errors.
pub fn change_form(mut f: ScheduleForm, ch: &ScheduleChange) -> Result<ScheduleForm, String> {
    let c2 = |x: f64| format!("{x:.2}");
    if let Some(e) = ch.enabled {
        f.enabled = e.then(|| "on".to_owned());
    }
    if let Some(z) = &ch.time_zone {
        f.time_zone = z.clone();
    }
    if let Some(x) = ch.occupied_setpoint_c {
        f.occupied = c2(x);
    }
    if let Some(x) = ch.unoccupied_setpoint_c {
        f.unoccupied = c2(x);
    }
    if let Some(days) = &ch.days {
        for (key, d) in days {
            let i = DAYS
                .iter()
                .position(|(k, _)| k == key)
                .ok_or_else(|| format!("unknown day {key:?} (mon..sun, holiday)"))?;
            let (pump, occ) = f.day_mut(i);
            *pump = d.pump.join(",");
            *occ = d.occupied.join(",");
        }
    }
    if let Some(h) = &ch.holidays {
        f.holidays = h.join(",");
    }
    if let Some(fr) = &ch.freeze {
        if let Some(x) = fr.limit_c {
            f.freeze_limit = c2(x);
        }
        if let Some(x) = fr.hysteresis_c {
            f.freeze_hysteresis = c2(x);
        }
    }
    Ok(f)
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
    let form =
        change_form(ScheduleForm::from_config(&cfg, &zone), &change).map_err(WebError::Invalid)?;
    let version = save_form(&web, &p, id, &form)
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
