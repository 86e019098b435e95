//! `GET /api/me`: who the credentials belong to (and the CSRF token a browser script needs for
//! cookie-authenticated changes). Also the JSON 404 of unknown `/api/` paths.

use crate::web::auth::ApiUser;
use crate::web::error::{JsonError, WebError};
use axum::Json;
use serde_json::{json, Value};

/// `GET /api/me`.
pub async fn me(ApiUser(p): ApiUser) -> Json<Value> {
    Json(json!({
        "id": p.user.id,
        "email": p.user.email,
        "admin": p.user.is_admin,
        "csrf": p.csrf(),
    }))
}

/// Unknown API path: 401 without valid credentials (as every `/api/` route, so a stranger
/// cannot tell which routes exist), else 404.
pub async fn not_found(ApiUser(_): ApiUser) -> JsonError {
    JsonError(WebError::NotFound)
}
