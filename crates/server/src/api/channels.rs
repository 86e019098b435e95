//! A device's own channels (issue 18 point 4), for a device whose channel map is in effect
//! (`service/device_channels.rs`):
//!
//! * `GET /api/devices/{id}/channels`: the map's channels with their latest values (in the
//!   unit, `null` for no value) and last errors; `"channels": []` for a device running the
//!   factory pool map, whose five channels are `/api/devices/{id}/telemetry`'s.
//! * `GET /api/devices/{id}/channels/{index}/series?from=&to=&step=|points=`: one channel's
//!   values record by record, or buckets of the mean, lowest and highest value as the pool's
//!   telemetry gives them (the device page's channel charts draw from it).

use super::telemetry::{bucket_step, MAX_POINTS};
use crate::http::auth::ApiUser;
use crate::http::error::{JsonError, WebError};
use crate::http::Web;
use crate::service::device_channels;
use crate::service::export::{parse_range, RangeQuery};
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

/// `GET /api/devices/{id}/channels`.
pub async fn list(
    State(web): State<Web>,
    ApiUser(p): ApiUser,
    Path(id): Path<u32>,
) -> Result<Json<Value>, JsonError> {
    let state = web.device_for(&p.user, id).await?;
    let applied = state.device.config_applied;
    let now = web
        .db_call(move |db| device_channels::load_now(db, id, applied))
        .await?;
    let mut answer = match now {
        Some(now) => serde_json::to_value(now).map_err(|e| WebError::Internal(e.to_string()))?,
        None => json!({ "version": null, "time": null, "channels": [], "power_w": null,
                        "water_c": null, "air_c": null }),
    };
    if let Some(o) = answer.as_object_mut() {
        o.insert("device".into(), json!(id));
    }
    Ok(Json(answer))
}

/// Query of a channel's series.
#[derive(Debug, Deserialize)]
pub struct SeriesQuery {
    from: Option<String>,
    to: Option<String>,
    step: Option<i64>,
    /// About this many buckets (1..=2000) instead of a `step`.
    points: Option<i64>,
}

/// `GET /api/devices/{id}/channels/{index}/series`.
pub async fn series(
    State(web): State<Web>,
    ApiUser(p): ApiUser,
    Path((id, index)): Path<(u32, u8)>,
    Query(q): Query<SeriesQuery>,
) -> Result<Json<Value>, JsonError> {
    let state = web.device_for(&p.user, id).await?;
    let applied = state.device.config_applied;
    let (from, to) = parse_range(
        &RangeQuery {
            from: q.from,
            to: q.to,
        },
        crate::clock::unix_now(),
    )?;
    let step = bucket_step(q.step, q.points, from, to)?;
    let answer = web
        .db_call(move |db| {
            let Some(entry) = device_channels::in_effect(db, id, applied)? else {
                return Ok(None);
            };
            let Some(channel) = entry.channels.iter().find(|c| c.index == index).cloned() else {
                return Ok(None);
            };
            let head = json!({
                "device": id, "channel": index, "name": channel.name,
                "unit": device_channels::unit_of(&channel), "decimals": channel.decimals,
                "from": from, "to": to,
            });
            let body = match step {
                Some(step) => {
                    let b = device_channels::channel_buckets(db, &entry, index, from, to, step)?
                        .unwrap_or_default();
                    json!({ "step": step, "buckets": b })
                }
                None => {
                    let (points, truncated) =
                        device_channels::channel_points(db, &entry, index, from, to, MAX_POINTS)?
                            .unwrap_or_default();
                    let points: Vec<Value> = points
                        .iter()
                        .map(|(t, v)| json!({ "time": t, "value": v }))
                        .collect();
                    json!({ "truncated": truncated, "points": points })
                }
            };
            Ok(Some((head, body)))
        })
        .await?;
    let (mut head, body) = answer.ok_or(WebError::NotFound)?;
    if let (Some(h), Value::Object(b)) = (head.as_object_mut(), body) {
        h.extend(b);
    }
    Ok(Json(head))
}
