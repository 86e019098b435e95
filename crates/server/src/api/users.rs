//! `GET/POST /api/users`, `DELETE /api/users/{id}` (administrators only).

use crate::http::auth::ApiUser;
use crate::http::error::JsonError;
use crate::http::Web;
use crate::service::accounts;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

/// `GET /api/users`.
pub async fn list(State(web): State<Web>, ApiUser(p): ApiUser) -> Result<Json<Value>, JsonError> {
    Web::require_admin(&p.user)?;
    let users = web.db_call(|db| db.list_users()).await?;
    let mut out = Vec::new();
    for u in users {
        let uid = u.id;
        let sites = web.db_call(move |db| db.user_sites(uid)).await?;
        out.push(
            json!({ "id": u.id, "email": u.email, "admin": u.is_admin, "created_at": u.created_at,
            "sites": sites.iter().map(|s| s.id).collect::<Vec<_>>() }),
        );
    }
    Ok(Json(json!(out)))
}

/// Body of a new user.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    email: String,
    password: String,
    #[serde(default)]
    admin: bool,
}

/// `POST /api/users`.
pub async fn create(
    State(web): State<Web>,
    ApiUser(p): ApiUser,
    body: Result<Json<NewUser>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), JsonError> {
    Web::require_admin(&p.user)?;
    let Json(b) = body.map_err(|e| crate::http::auth::body_error(e.status(), &e.body_text()))?;
    let id = accounts::create_user(&web, &p, &b.email, b.password, b.admin).await?;
    Ok((StatusCode::CREATED, Json(json!({ "id": id }))))
}

/// `DELETE /api/users/{id}`.
pub async fn delete(
    State(web): State<Web>,
    ApiUser(p): ApiUser,
    Path(id): Path<i64>,
) -> Result<StatusCode, JsonError> {
    accounts::delete_user(&web, &p, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
