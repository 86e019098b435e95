//! Sites over the API. Reading: a user sees the sites they are a member of (an admin, all).
//! Changing (create, delete, membership, device assignment): administrators only.

use crate::http::auth::ApiUser;
use crate::http::error::{JsonError, WebError};
use crate::http::Web;
use crate::service::accounts;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

/// `GET /api/sites`.
pub async fn list(State(web): State<Web>, ApiUser(p): ApiUser) -> Result<Json<Value>, JsonError> {
    let sites = accounts::visible_sites(&web, &p).await?;
    Ok(Json(json!(sites
        .iter()
        .map(|s| json!({ "id": s.id, "name": s.name, "time_zone": s.time_zone }))
        .collect::<Vec<_>>())))
}

/// `GET /api/sites/{id}`: the site with its devices (and members, for admins).
pub async fn get(
    State(web): State<Web>,
    ApiUser(p): ApiUser,
    Path(id): Path<i64>,
) -> Result<Json<Value>, JsonError> {
    let uid = p.user.id;
    let admin = p.user.is_admin;
    let found = web
        .db_call(move |db| {
            let Some(site) = db.site(id)? else {
                return Ok(None);
            };
            if !admin && !db.user_sites(uid)?.iter().any(|s| s.id == id) {
                return Ok(None);
            }
            Ok(Some((site, db.site_device_ids(id)?, db.site_members(id)?)))
        })
        .await?;
    let (site, devices, members) = found.ok_or(WebError::NotFound)?;
    let mut v = json!({ "id": site.id, "name": site.name, "time_zone": site.time_zone, "devices": devices });
    if admin {
        v["members"] = json!(members);
    }
    Ok(Json(v))
}

/// Body of a new site.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSite {
    name: String,
    /// IANA time zone (default UTC).
    #[serde(default)]
    time_zone: Option<String>,
}

fn body<T>(b: Result<Json<T>, axum::extract::rejection::JsonRejection>) -> Result<T, WebError> {
    b.map(|Json(t)| t)
        .map_err(|e| crate::http::auth::body_error(e.status(), &e.body_text()))
}

/// `POST /api/sites`.
pub async fn create(
    State(web): State<Web>,
    ApiUser(p): ApiUser,
    b: Result<Json<NewSite>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), JsonError> {
    Web::require_admin(&p.user)?;
    let b = body(b)?;
    // The zone is checked before the site is created, so a bad one creates nothing.
    let tz = match &b.time_zone {
        Some(t) => Some(crate::energy::zone::parse(t).map_err(WebError::Invalid)?.1),
        None => None,
    };
    let id = accounts::create_site(&web, &p, &b.name).await?;
    if let Some(tz) = tz {
        crate::service::energy::set_time_zone(&web, &p, id, &tz).await?;
    }
    Ok((StatusCode::CREATED, Json(json!({ "id": id }))))
}

/// `DELETE /api/sites/{id}`.
pub async fn delete(
    State(web): State<Web>,
    ApiUser(p): ApiUser,
    Path(id): Path<i64>,
) -> Result<StatusCode, JsonError> {
    accounts::delete_site(&web, &p, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /api/sites/{id}/members/{user}`.
pub async fn grant(
    State(web): State<Web>,
    ApiUser(p): ApiUser,
    Path((id, user)): Path<(i64, i64)>,
) -> Result<StatusCode, JsonError> {
    accounts::set_member(&web, &p, user, id, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/sites/{id}/members/{user}`.
pub async fn revoke(
    State(web): State<Web>,
    ApiUser(p): ApiUser,
    Path((id, user)): Path<(i64, i64)>,
) -> Result<StatusCode, JsonError> {
    accounts::set_member(&web, &p, user, id, false).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Body of an assignment.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assign {
    devices: Vec<u32>,
}

/// `PUT /api/sites/{id}/devices`: assigns the listed devices to the site.
pub async fn assign(
    State(web): State<Web>,
    ApiUser(p): ApiUser,
    Path(id): Path<i64>,
    b: Result<Json<Assign>, axum::extract::rejection::JsonRejection>,
) -> Result<StatusCode, JsonError> {
    Web::require_admin(&p.user)?;
    let mut b = body(b)?;
    b.devices.sort_unstable();
    b.devices.dedup();
    if b.devices.is_empty() || b.devices.len() > 100_000 {
        return Err(WebError::Invalid("devices: 1 to 100000 ids".into()).into());
    }
    web.db_call(move |db| db.site(id))
        .await?
        .ok_or(WebError::NotFound)?;
    accounts::assign(&web, &p, b.devices, Some(id)).await?;
    Ok(StatusCode::NO_CONTENT)
}
