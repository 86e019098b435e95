//! `GET/POST /api/tokens`, `DELETE /api/tokens/{id}`: the caller's own API tokens. A new token
//! is returned once, in the answer to its creation.

use crate::http::auth::ApiUser;
use crate::http::error::{JsonError, WebError};
use crate::http::Web;
use crate::service::accounts::new_token;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

/// `GET /api/tokens`.
pub async fn list(State(web): State<Web>, ApiUser(p): ApiUser) -> Result<Json<Value>, JsonError> {
    let uid = p.user.id;
    let t = web.db_call(move |db| db.list_tokens(uid)).await?;
    Ok(Json(json!(t
        .iter()
        .map(|t| json!({ "id": t.id, "name": t.name, "created_at": t.created_at, "last_used": t.last_used }))
        .collect::<Vec<_>>())))
}

/// Body of a new token.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    name: String,
}

/// `POST /api/tokens`.
pub async fn create(
    State(web): State<Web>,
    ApiUser(p): ApiUser,
    body: Result<Json<NewToken>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), JsonError> {
    let Json(b) = body.map_err(|e| crate::http::auth::body_error(e.status(), &e.body_text()))?;
    let (id, token) = new_token(&web, &p, &b.name).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": id, "name": b.name.trim(), "token": token })),
    ))
}

/// `DELETE /api/tokens/{id}`.
pub async fn delete(
    State(web): State<Web>,
    ApiUser(p): ApiUser,
    Path(id): Path<i64>,
) -> Result<StatusCode, JsonError> {
    let uid = p.user.id;
    if !web.db_call(move |db| db.delete_token(uid, id)).await? {
        return Err(WebError::NotFound.into());
    }
    web.audit(&p, "token.delete", None, None, format!("API token {id}"))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
