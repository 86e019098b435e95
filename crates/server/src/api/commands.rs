//! `GET /api/devices/{id}/commands` (the newest 50) and `POST /api/devices/{id}/commands`
//! (`{"command": "pump_on"}`; names as on the device page).

use crate::http::auth::ApiUser;
use crate::http::error::JsonError;
use crate::http::Web;
use crate::service::commands::{command_name, parse_command, queue};
use crate::storage::CommandState;
use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

/// `GET /api/devices/{id}/commands`.
pub async fn list(
    State(web): State<Web>,
    ApiUser(p): ApiUser,
    Path(id): Path<u32>,
) -> Result<Json<Value>, JsonError> {
    web.check_device(&p.user, id).await?;
    let cmds = web.api.commands(id, 50).await?;
    let list: Vec<Value> = cmds
        .iter()
        .map(|c| {
            json!({
                "id": c.id, "command": command_name(&c.command), "queued_at": c.queued_at,
                "state": c.state.as_str(),
                "acked_at": c.acked_at,
            })
        })
        .collect();
    Ok(Json(json!(list)))
}

/// Body of a new command.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCommand {
    command: String,
}

/// `POST /api/devices/{id}/commands`.
pub async fn queue_cmd(
    State(web): State<Web>,
    ApiUser(p): ApiUser,
    Path(id): Path<u32>,
    body: Result<Json<NewCommand>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, JsonError> {
    web.check_device(&p.user, id).await?;
    let Json(b) = body.map_err(|e| crate::http::auth::body_error(e.status(), &e.body_text()))?;
    let c = parse_command(&b.command)?;
    let cid = queue(&web, &p, id, c).await?;
    Ok(Json(
        json!({ "id": cid, "state": CommandState::Queued.as_str() }),
    ))
}
