//! `GET /api/devices` (the caller's devices), `GET /api/devices/{id}`, and
//! `PATCH /api/devices/{id}` `{"name": "..."}` (rename; anyone who may configure the device).

use crate::web::auth::{ApiUser, Principal};
use crate::web::error::{JsonError, WebError};
use crate::web::view::DeviceView;
use crate::web::Web;
use axum::extract::{Path, State};
use axum::Json;

/// `GET /api/devices`.
pub async fn list(
    State(web): State<Web>,
    ApiUser(p): ApiUser,
) -> Result<Json<Vec<DeviceView>>, JsonError> {
    let states = web.devices_for(&p.user).await?;
    Ok(Json(web.views(states).await?))
}

/// `GET /api/devices/{id}`.
pub async fn get(
    State(web): State<Web>,
    ApiUser(p): ApiUser,
    Path(id): Path<u32>,
) -> Result<Json<DeviceView>, JsonError> {
    let state = web.device_for(&p.user, id).await?;
    Ok(Json(web.view(state).await?))
}

/// Longest device name, characters.
pub const MAX_NAME: usize = 64;

/// Renames a device `p` may change (as for its configuration), with an audit entry; the page
/// form and the API both call this. Returns the name as stored (trimmed).
pub async fn rename(web: &Web, p: &Principal, id: u32, name: &str) -> Result<String, WebError> {
    let name = name.trim().to_owned();
    if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(WebError::Invalid(format!(
            "name: 1 to {MAX_NAME} printable characters"
        )));
    }
    let old = web.device_for(&p.user, id).await?.device.name;
    let n = name.clone();
    web.db_call(move |db| db.rename_device(id, &n)).await?;
    // Home Assistant shows the name: its discovery documents go out again.
    web.api
        .mqtt()
        .offer(crate::mqtt::Event::Renamed { device_id: id });
    web.audit(
        p,
        "device.rename",
        Some(id),
        None,
        format!("{old:?} -> {name:?}"),
    )
    .await?;
    Ok(name)
}

/// The body of `PATCH /api/devices/{id}`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevicePatch {
    /// The new name.
    pub name: String,
}

/// `PATCH /api/devices/{id}`: rename; answers the device as `GET` does.
pub async fn patch(
    State(web): State<Web>,
    ApiUser(p): ApiUser,
    Path(id): Path<u32>,
    body: Result<Json<DevicePatch>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<DeviceView>, JsonError> {
    web.check_device(&p.user, id).await?;
    let Json(b) = body.map_err(|e| crate::web::auth::body_error(e.status(), &e.body_text()))?;
    rename(&web, &p, id, &b.name).await?;
    let state = web.device_for(&p.user, id).await?;
    Ok(Json(web.view(state).await?))
}
