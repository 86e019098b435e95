//! `GET /api/devices/{id}/usage`: IP bytes per month per transport (Ethernet, GSM), newest
//! first, with this month's totals.

use crate::http::auth::ApiUser;
use crate::http::error::JsonError;
use crate::http::Web;
use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};

/// `GET /api/devices/{id}/usage`.
pub async fn usage(
    State(web): State<Web>,
    ApiUser(p): ApiUser,
    Path(id): Path<u32>,
) -> Result<Json<Value>, JsonError> {
    web.check_device(&p.user, id).await?;
    let months = web.api.traffic(id).await?;
    let this = crate::storage::status::month_of(crate::clock::unix_now());
    let cur = months.iter().find(|m| m.month == this);
    let list: Vec<Value> = months
        .iter()
        .map(|m| json!({ "month": m.month, "ethernet_tx": m.eth_tx, "ethernet_rx": m.eth_rx, "gsm_tx": m.gsm_tx, "gsm_rx": m.gsm_rx }))
        .collect();
    Ok(Json(json!({
        "month": this,
        "ethernet_bytes": cur.map_or(0, |m| m.eth_tx + m.eth_rx),
        "gsm_bytes": cur.map_or(0, |m| m.gsm_tx + m.gsm_rx),
        "months": list,
    })))
}
