//! `GET /api/devices` (the caller's devices) and `GET /api/devices/{id}`.

use crate::web::auth::ApiUser;
use crate::web::error::JsonError;
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
