//! Channel-map templates over the API (issue 18): `GET /api/templates` lists the templates the
//! caller sees, each with its channels; `GET /api/templates/{id}` one, with the caller's devices
//! that use it; `POST /api/templates` creates one (from a hex map or from structured channel
//! sources), `POST /api/templates/check` checks one without saving it,
//! `PUT /api/templates/{id}` replaces one, `DELETE /api/templates/{id}` deletes one and
//! `POST /api/templates/{id}/apply` applies one to devices. The rules are in
//! [`crate::service::channels`] and [`crate::service::apply`].

use crate::http::auth::ApiUser;
use crate::http::error::JsonError;
use crate::http::Web;
use crate::service::channels::{self, TemplateCheck, TemplateDetail, TemplateInput, TemplateView};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;

/// `GET /api/templates`.
pub async fn list(
    State(web): State<Web>,
    ApiUser(p): ApiUser,
) -> Result<Json<Vec<TemplateView>>, JsonError> {
    Ok(Json(channels::list_templates(&web, &p).await?))
}

/// `GET /api/templates/{id}`: the template and the caller's devices that use it.
pub async fn get(
    State(web): State<Web>,
    ApiUser(p): ApiUser,
    Path(id): Path<i64>,
) -> Result<Json<TemplateDetail>, JsonError> {
    Ok(Json(channels::template_detail(&web, &p, id).await?))
}

/// `POST /api/templates`: 201 with the stored template.
pub async fn create(
    State(web): State<Web>,
    ApiUser(p): ApiUser,
    b: Result<Json<TemplateInput>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<TemplateView>), JsonError> {
    let b = b
        .map(|Json(t)| t)
        .map_err(|e| crate::http::auth::body_error(e.status(), &e.body_text()))?;
    let t = channels::create_template(&web, &p, &b).await?;
    Ok((StatusCode::CREATED, Json(t)))
}

/// `PUT /api/templates/{id}`: the replaced template.
pub async fn update(
    State(web): State<Web>,
    ApiUser(p): ApiUser,
    Path(id): Path<i64>,
    b: Result<Json<TemplateInput>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<TemplateView>, JsonError> {
    let b = b
        .map(|Json(t)| t)
        .map_err(|e| crate::http::auth::body_error(e.status(), &e.body_text()))?;
    Ok(Json(channels::update_template(&web, &p, id, &b).await?))
}

/// `DELETE /api/templates/{id}`: 204.
pub async fn delete(
    State(web): State<Web>,
    ApiUser(p): ApiUser,
    Path(id): Path<i64>,
) -> Result<StatusCode, JsonError> {
    channels::delete_template(&web, &p, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/templates/check`: the template as it would be stored, or the 422 a `POST` would
/// answer; nothing is saved.
pub async fn check(
    ApiUser(_): ApiUser,
    b: Result<Json<TemplateInput>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<TemplateCheck>, JsonError> {
    let b = b
        .map(|Json(t)| t)
        .map_err(|e| crate::http::auth::body_error(e.status(), &e.body_text()))?;
    Ok(Json(channels::check_template(&b)?))
}

/// The body of `POST /api/templates/{id}/apply`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplyBody {
    /// Device ids.
    pub devices: Vec<u32>,
}

/// `POST /api/templates/{id}/apply`: a new configuration version with the template's channels
/// for each device; 200 with each device's version.
pub async fn apply(
    State(web): State<Web>,
    ApiUser(p): ApiUser,
    Path(id): Path<i64>,
    b: Result<Json<ApplyBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<serde_json::Value>, JsonError> {
    let b = b
        .map(|Json(b)| b)
        .map_err(|e| crate::http::auth::body_error(e.status(), &e.body_text()))?;
    let applied = crate::service::apply::apply_template(&web, &p, id, &b.devices).await?;
    Ok(Json(
        serde_json::json!({ "template": id, "devices": applied }),
    ))
}
