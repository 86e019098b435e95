//! `GET /api/me`: who the credentials belong to (and the CSRF token a browser script needs for
//! cookie-authenticated changes). Also the JSON 404 of unknown `/api/` paths.

use crate::http::auth::ApiUser;
use axum::http::StatusCode;
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

/// What an unknown API path answers to a signed-in caller: a 404 whose text differs from a
/// handler's "not found" (a thing that does not exist or is not visible), so the caller can tell
/// a mistyped path from a missing device.
pub const NO_SUCH_ROUTE: &str = "no such API route";

/// Unknown API path: 401 without valid credentials (as every `/api/` route, so a stranger
/// cannot tell which routes exist), else 404 with [`NO_SUCH_ROUTE`].
pub async fn not_found(ApiUser(_): ApiUser) -> (StatusCode, Json<Value>) {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "error": NO_SUCH_ROUTE })),
    )
}
