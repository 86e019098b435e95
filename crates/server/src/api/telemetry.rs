//! `GET /api/devices/{id}/telemetry?from=&to=&step=`: records, or with `step` (seconds) or
//! `points` (about that many buckets over the range: one hour to years) time buckets aggregated
//! by the database — the mean and the lowest and highest value of each bucket, so peaks survive
//! any downsampling, and the share of records with each relay on; the device page's charts draw
//! from it. `GET /api/devices/{id}/telemetry.csv?from=&to=`.

use crate::http::auth::ApiUser;
use crate::http::error::{JsonError, WebError};
use crate::http::Web;
use crate::service::export::{csv_response, parse_range, RangeQuery};
use crate::service::view::readings;
use crate::storage::TelemetryQuery;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

/// Most records or buckets in one answer.
pub const MAX_POINTS: usize = 10_000;

/// Query.
#[derive(Debug, Deserialize)]
pub struct SeriesQuery {
    from: Option<String>,
    to: Option<String>,
    step: Option<i64>,
    /// About this many buckets (1..=2000) instead of a `step`.
    points: Option<i64>,
}

/// The bucket length a query asks for: `step` seconds, or about `points` buckets over
/// `[from, to)` ([`crate::storage::series::step_for_points`]); `None` for neither (records).
/// At most [`MAX_POINTS`] buckets.
pub fn bucket_step(
    step: Option<i64>,
    points: Option<i64>,
    from: i64,
    to: i64,
) -> Result<Option<i64>, WebError> {
    let step = match (step, points) {
        (Some(_), Some(_)) => {
            return Err(WebError::Invalid("give step or points, not both".into()))
        }
        (None, Some(n)) if !(1..=2000).contains(&n) => {
            return Err(WebError::Invalid("points must be 1 to 2000".into()))
        }
        (None, Some(n)) => Some(crate::storage::series::step_for_points(to - from, n)),
        (s, None) => s,
    };
    if let Some(step) = step {
        if step < 1 || (to - from) / step > MAX_POINTS as i64 {
            return Err(WebError::Invalid(format!(
                "step must be at least 1 s and give at most {MAX_POINTS} buckets"
            )));
        }
    }
    Ok(step)
}

/// `GET /api/devices/{id}/telemetry`.
pub async fn series(
    State(web): State<Web>,
    ApiUser(p): ApiUser,
    Path(id): Path<u32>,
    Query(q): Query<SeriesQuery>,
) -> Result<Json<Value>, JsonError> {
    web.check_device(&p.user, id).await?;
    let (from, to) = parse_range(
        &RangeQuery {
            from: q.from,
            to: q.to,
        },
        crate::clock::unix_now(),
    )?;
    let step = bucket_step(q.step, q.points, from, to)?;
    if let Some(step) = step {
        let b = web
            .db_call(move |db| db.telemetry_buckets(id, from, to, step))
            .await?;
        let buckets: Vec<Value> = b
            .iter()
            .map(|b| {
                json!({
                    "start": b.start, "count": b.count, "power_w": b.power_w,
                    "energy_wh": b.energy_wh,
                    "water_c": b.water_cc.map(|v| v / 100.0), "air_c": b.air_cc.map(|v| v / 100.0),
                    "power_min": b.power_range.map(|r| r.0), "power_max": b.power_range.map(|r| r.1),
                    "water_min": b.water_range_cc.map(|r| r.0 / 100.0),
                    "water_max": b.water_range_cc.map(|r| r.1 / 100.0),
                    "air_min": b.air_range_cc.map(|r| r.0 / 100.0),
                    "air_max": b.air_range_cc.map(|r| r.1 / 100.0),
                    "pump_on": b.pump_on, "heater_on": b.heater_on,
                })
            })
            .collect();
        return Ok(Json(
            json!({ "device": id, "from": from, "to": to, "step": step, "buckets": buckets }),
        ));
    }
    let rows = web
        .db_call(move |db| {
            db.telemetry(&TelemetryQuery {
                device_id: id,
                from,
                to,
                limit: MAX_POINTS + 1,
            })
        })
        .await?;
    let truncated = rows.len() > MAX_POINTS;
    let records: Vec<_> = rows.iter().take(MAX_POINTS).map(readings).collect();
    Ok(Json(
        json!({ "device": id, "from": from, "to": to, "truncated": truncated, "records": records }),
    ))
}

/// `GET /api/devices/{id}/telemetry.csv`.
pub async fn csv(
    State(web): State<Web>,
    ApiUser(p): ApiUser,
    Path(id): Path<u32>,
    Query(q): Query<RangeQuery>,
) -> Result<Response, JsonError> {
    web.check_device(&p.user, id).await?;
    let (from, to) = parse_range(&q, crate::clock::unix_now())?;
    Ok(csv_response(&web, id, from, to).await?)
}
