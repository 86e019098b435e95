//! `GET /api/audit?device=&before=&limit=`: the audit entries the caller may read.

use crate::http::auth::ApiUser;
use crate::http::error::JsonError;
use crate::http::Web;
use crate::service::audit::AuditQuery;
use axum::extract::{Query, State};
use axum::Json;
use serde_json::{json, Value};

/// `GET /api/audit`.
pub async fn list(
    State(web): State<Web>,
    ApiUser(p): ApiUser,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Value>, JsonError> {
    let entries = web.audit_for(&p.user, &q).await?;
    Ok(Json(json!(entries
        .iter()
        .map(|e| json!({
            "id": e.id, "at": e.at, "actor": e.entry.actor, "action": e.entry.action,
            "device": e.entry.device_id, "site": e.entry.site_id, "detail": e.entry.detail,
        }))
        .collect::<Vec<_>>())))
}
