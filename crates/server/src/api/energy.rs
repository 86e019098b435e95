//! Energy and cost of a site over the API, and the operations behind the site page's forms:
//!
//! * `GET /api/sites/{id}/energy?from=&to=&by=day|month`: kWh, peak 15-minute demand and cost
//!   per local day or month, for the site and each of its devices (JSON);
//!   `GET /api/sites/{id}/energy.csv` the same as CSV.
//!   Both also give the site's breakdown by meter over the whole range (JSON `breakdown`; CSV
//!   with `breakdown=meter`, per period).
//! * `GET|PUT|DELETE /api/sites/{id}/tariff`, `PUT /api/sites/{id}/time_zone` (changes: admins).
//!
//! A member of the site (or an admin) may read; anyone else gets 404, as for devices. The
//! figures come from [`crate::energy`] over [`crate::storage::EnergyStore::meter_data`]: one
//! indexed range query per device of the site, aggregated to 15-minute intervals by the database.

use crate::energy::tariff::Tariff;
use crate::energy::zone::{By, Period};
use crate::energy::Figures;
use crate::http::auth::ApiUser;
use crate::http::error::{JsonError, WebError};
use crate::http::Web;
use crate::service::energy::{set_tariff, set_time_zone, EnergyQuery, Loaded};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

/// Rounds for output (kWh and kW to 3 decimals, money to 4).
fn r(v: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (v * f).round() / f
}

/// One period as JSON.
pub fn figures_json(f: &Figures) -> Value {
    json!({
        "period": f.period.label,
        "start": f.period.start,
        "end": f.period.end,
        "kwh": r(f.kwh, 3),
        "peak_kw": r(f.peak_kw, 3),
        "peak_at": f.peak_at,
        "cost": f.cost.map(|c| json!({
            "energy": r(c.energy, 4),
            "demand": r(c.demand, 4),
            "fixed": r(c.fixed, 4),
            "total": r(c.total, 4),
        })),
    })
}

/// Totals over periods: energy and cost summed, the highest peak.
pub fn totals_json(list: &[Figures]) -> Value {
    let kwh: f64 = list.iter().map(|f| f.kwh).sum();
    let peak = list
        .iter()
        .filter(|f| f.peak_at.is_some())
        .max_by(|a, b| a.peak_kw.total_cmp(&b.peak_kw));
    let cost = list
        .iter()
        .map(|f| f.cost.map(|c| c.total))
        .sum::<Option<f64>>();
    json!({
        "kwh": r(kwh, 3),
        "peak_kw": r(peak.map_or(0.0, |f| f.peak_kw), 3),
        "peak_at": peak.and_then(|f| f.peak_at),
        "cost": cost.map(|c| r(c, 4)),
    })
}

/// The breakdown by meter over `periods` as JSON (see docs/API.md).
pub fn breakdown_json(l: &Loaded, periods: &[Period]) -> Value {
    let Some(span) = crate::service::energy::span(periods) else {
        return Value::Null;
    };
    let b = l.breakdown(&span);
    let meters: Vec<Value> = l
        .meters
        .iter()
        .zip(&b.parts)
        .map(|(m, f)| {
            json!({
                "device": m.device,
                "device_name": m.device_name,
                "channel": m.channel,
                "name": m.name,
                "in_total": m.in_total,
                "kwh": r(f.kwh, 3),
                "share": crate::energy::meters::share(f.kwh, b.total.kwh).map(|s| r(s, 4)),
                "cost": f.cost.map(|c| r(c.energy, 4)),
            })
        })
        .collect();
    json!({
        "start": span.start,
        "end": span.end,
        "total_kwh": r(b.total.kwh, 3),
        "total_cost": b.total.cost.map(|c| r(c.energy, 4)),
        "meters": meters,
        "untracked": {
            "kwh": r(b.untracked_kwh, 3),
            "share": crate::energy::meters::share(b.untracked_kwh, b.total.kwh).map(|s| r(s, 4)),
            "cost": b.untracked_cost.map(|c| r(c, 4)),
        },
        "exceeded_kwh": r(b.exceeded_kwh, 3),
        "notes": l.notes.iter().map(|(d, name, note)| json!({
            "device": d, "device_name": name, "note": note,
        })).collect::<Vec<_>>(),
    })
}

/// The JSON answer of `GET /api/sites/{id}/energy`.
pub fn report_json(l: &Loaded, by: By, periods: &[Period]) -> Value {
    let site = l.site_figures(by, periods);
    let devices: Vec<Value> = l
        .all_device_figures(by, periods)
        .iter()
        .enumerate()
        .map(|(i, f)| {
            json!({
                "id": l.devices[i].0,
                "periods": f.iter().map(figures_json).collect::<Vec<_>>(),
                "total": totals_json(f),
            })
        })
        .collect();
    json!({
        "site": l.site.id,
        "name": l.site.name,
        "time_zone": l.site.time_zone,
        "by": by.key(),
        "first": periods.first().map(|p| p.label.clone()),
        "last": periods.last().map(|p| p.label.clone()),
        "currency": l.tariff.as_ref().map(|t| t.currency.clone()),
        "periods": site.iter().map(figures_json).collect::<Vec<_>>(),
        "total": totals_json(&site),
        "devices": devices,
        "breakdown": breakdown_json(l, periods),
    })
}

/// `GET /api/sites/{id}/energy`.
pub async fn get_energy(
    State(web): State<Web>,
    ApiUser(p): ApiUser,
    Path(id): Path<i64>,
    Query(q): Query<EnergyQuery>,
) -> Result<Json<Value>, JsonError> {
    let (l, by, periods) = web.site_energy(&p.user, id, &q).await?;
    Ok(Json(report_json(&l, by, &periods)))
}

/// `GET /api/sites/{id}/energy.csv`.
pub async fn get_energy_csv(
    State(web): State<Web>,
    ApiUser(p): ApiUser,
    Path(id): Path<i64>,
    Query(q): Query<EnergyQuery>,
) -> Result<Response, JsonError> {
    let breakdown = q.breakdown()?;
    let (l, by, periods) = web.site_energy(&p.user, id, &q).await?;
    Ok(crate::service::export::energy_csv_response(
        &l, by, &periods, breakdown,
    ))
}

/// `GET /api/sites/{id}/tariff`: the tariff, or `null`.
pub async fn get_tariff(
    State(web): State<Web>,
    ApiUser(p): ApiUser,
    Path(id): Path<i64>,
) -> Result<Json<Value>, JsonError> {
    web.site_for(&p.user, id).await?;
    let t = web.db_call(move |db| db.site_tariff(id)).await?;
    Ok(Json(json!(t)))
}

fn body<T>(b: Result<Json<T>, axum::extract::rejection::JsonRejection>) -> Result<T, WebError> {
    b.map(|Json(t)| t)
        .map_err(|e| crate::http::auth::body_error(e.status(), &e.body_text()))
}

/// `PUT /api/sites/{id}/tariff` (admins).
pub async fn put_tariff(
    State(web): State<Web>,
    ApiUser(p): ApiUser,
    Path(id): Path<i64>,
    b: Result<Json<Tariff>, axum::extract::rejection::JsonRejection>,
) -> Result<StatusCode, JsonError> {
    Web::require_admin(&p.user)?;
    let t = body(b)?;
    set_tariff(&web, &p, id, Some(t)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/sites/{id}/tariff` (admins).
pub async fn delete_tariff(
    State(web): State<Web>,
    ApiUser(p): ApiUser,
    Path(id): Path<i64>,
) -> Result<StatusCode, JsonError> {
    set_tariff(&web, &p, id, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Body of `PUT /api/sites/{id}/time_zone`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeZoneBody {
    time_zone: String,
}

/// `PUT /api/sites/{id}/time_zone` (admins).
pub async fn put_time_zone(
    State(web): State<Web>,
    ApiUser(p): ApiUser,
    Path(id): Path<i64>,
    b: Result<Json<TimeZoneBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, JsonError> {
    Web::require_admin(&p.user)?;
    let b = body(b)?;
    let name = set_time_zone(&web, &p, id, &b.time_zone).await?;
    Ok(Json(json!({ "id": id, "time_zone": name })))
}
