//! `GET /api/devices/{id}/telemetry?from=&to=&step=`: records, or with `step` (seconds) time
//! buckets aggregated by the database; `GET /api/devices/{id}/telemetry.csv?from=&to=`.

use crate::storage::TelemetryQuery;
use crate::web::auth::ApiUser;
use crate::web::error::{JsonError, WebError};
use crate::web::export::{csv_response, parse_range, RangeQuery};
use crate::web::view::readings;
use crate::web::Web;
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
        crate::web::now(),
    )?;
    if let Some(step) = q.step {
        if step < 1 || (to - from) / step > MAX_POINTS as i64 {
            return Err(WebError::Invalid(format!(
                "step must be at least 1 s and give at most {MAX_POINTS} buckets"
            ))
            .into());
        }
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
    let (from, to) = parse_range(&q, crate::web::now())?;
    Ok(csv_response(&web, id, from, to).await?)
}
