//! `GET /api/devices` (the caller's devices), `GET /api/devices/{id}`, and
//! `PATCH /api/devices/{id}` `{"name": "..."}` (rename; anyone who may configure the device).

use crate::http::auth::ApiUser;
use crate::http::error::JsonError;
use crate::http::Web;
use crate::service::devices::rename;
use crate::service::view::DeviceView;
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
    let Json(b) = body.map_err(|e| crate::http::auth::body_error(e.status(), &e.body_text()))?;
    rename(&web, &p, id, &b.name).await?;
    let state = web.device_for(&p.user, id).await?;
    Ok(Json(web.view(state).await?))
}
