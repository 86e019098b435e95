//! Alarms over the API: rules per device (any user with access to the device), alarms and their
//! acknowledgement, shelving, the notification log; destinations and destination lists
//! (administrators only; every user may read the lists' names to pick them in a rule).
//!
//! The operations (access, validation, write, audit, engine) are in `service::alarms`; the
//! handlers here parse the JSON and render the answer.

use crate::alarms::rules::{templates, Rule, RuleSpec};
use crate::http::auth::ApiUser;
use crate::http::error::{JsonError, WebError};
use crate::http::Web;
use crate::service::alarms::{
    acknowledge, create_destination, create_list, create_rule, delete_destination, delete_list,
    delete_rule, destination_tests, pickable_lists, rule_for, set_members, shelf_end, shelve_rule,
    state, test_destination, update_rule, visible_alarms, NewDest, NewList, TEST_DEVICE, TEST_LOG,
};
use crate::storage::{AlarmFilter, AlarmRecord, NotificationRecord};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

type Body<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;

fn body<T>(b: Body<T>) -> Result<T, WebError> {
    b.map(|Json(t)| t)
        .map_err(|e| crate::http::auth::body_error(e.status(), &e.body_text()))
}

/// A rule as JSON.
pub fn rule_json(r: &Rule) -> Value {
    let mut v = serde_json::to_value(&r.spec).unwrap_or(Value::Null);
    v["id"] = json!(r.id);
    v["device_id"] = json!(r.device_id);
    v["shelved_until"] = json!(r.shelved_until);
    v["created_at"] = json!(r.created_at);
    v["describe"] = json!(r.spec.condition.describe());
    v
}

/// An alarm as JSON.
pub fn alarm_json(a: &AlarmRecord) -> Value {
    json!({
        "id": a.id, "rule_id": a.rule_id, "device_id": a.device_id, "rule_name": a.rule_name,
        "severity": a.severity.as_str(), "message": a.message, "raised_at": a.raised_at,
        "acked_at": a.acked_at, "acked_by": a.acked_by, "cleared_at": a.cleared_at,
        "level": a.level,
        "state": state(a),
    })
}

/// A logged notification as JSON. A test notification (no device, no list: both stored as 0,
/// which no device or list has) shows `null` for them.
pub fn note_json(n: &NotificationRecord) -> Value {
    json!({
        "id": n.id, "alarm_id": n.alarm_id,
        "device_id": (n.device_id != TEST_DEVICE).then_some(n.device_id),
        "list_id": (n.list_id != 0).then_some(n.list_id),
        "destination_id": n.destination_id, "destination": n.destination, "event": n.event,
        "subject": n.subject, "state": n.state.as_str(), "attempts": n.attempts,
        "error": n.error, "created_at": n.created_at, "done_at": n.done_at,
    })
}

/// `GET /api/devices/{id}/alarm-rules`.
pub async fn list_rules(
    State(web): State<Web>,
    ApiUser(p): ApiUser,
    Path(id): Path<u32>,
) -> Result<Json<Value>, JsonError> {
    web.check_device(&p.user, id).await?;
    let rules = web.db_call(move |db| db.device_rules(id)).await?;
    Ok(Json(json!(rules.iter().map(rule_json).collect::<Vec<_>>())))
}

/// `POST /api/devices/{id}/alarm-rules` with a rule.
pub async fn post_rule(
    State(web): State<Web>,
    ApiUser(p): ApiUser,
    Path(id): Path<u32>,
    b: Body<RuleSpec>,
) -> Result<(StatusCode, Json<Value>), JsonError> {
    web.check_device(&p.user, id).await?;
    let spec = body(b)?;
    let rid = create_rule(&web, &p, id, spec).await?;
    Ok((StatusCode::CREATED, Json(json!({ "id": rid }))))
}

/// `PUT /api/devices/{id}/alarm-rules/{rule}` with the whole rule.
pub async fn put_rule(
    State(web): State<Web>,
    ApiUser(p): ApiUser,
    Path((id, rule)): Path<(u32, i64)>,
    b: Body<RuleSpec>,
) -> Result<Json<Value>, JsonError> {
    rule_for(&web, &p, id, rule).await?;
    let spec = body(b)?;
    let r = update_rule(&web, &p, id, rule, spec).await?;
    Ok(Json(rule_json(&r)))
}

/// `DELETE /api/devices/{id}/alarm-rules/{rule}`.
pub async fn del_rule(
    State(web): State<Web>,
    ApiUser(p): ApiUser,
    Path((id, rule)): Path<(u32, i64)>,
) -> Result<StatusCode, JsonError> {
    delete_rule(&web, &p, id, rule).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Body of a shelving.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shelve {
    #[serde(default)]
    minutes: Option<u32>,
    #[serde(default)]
    until: Option<Value>,
}

/// `POST /api/devices/{id}/alarm-rules/{rule}/shelve` with `{"minutes": n}` (0: unshelve) or
/// `{"until": unix seconds | "YYYY-MM-DD HH:MM"}` (UTC).
pub async fn post_shelve(
    State(web): State<Web>,
    ApiUser(p): ApiUser,
    Path((id, rule)): Path<(u32, i64)>,
    b: Body<Shelve>,
) -> Result<Json<Value>, JsonError> {
    rule_for(&web, &p, id, rule).await?;
    let s = body(b)?;
    let until_text = match &s.until {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::String(t)) => Some(t.clone()),
        Some(_) => return Err(WebError::Invalid("until: a number or a string".into()).into()),
    };
    let end = shelf_end(s.minutes, until_text.as_deref(), crate::clock::unix_now())?;
    let until = shelve_rule(&web, &p, id, rule, end).await?;
    Ok(Json(json!({ "shelved_until": until })))
}

/// Query of alarm lists.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlarmQuery {
    /// Only open alarms (`true`/`false`).
    #[serde(default)]
    open: bool,
    /// At most this many (default 100, at most 1000).
    limit: Option<usize>,
}

/// `GET /api/devices/{id}/alarms`.
pub async fn device_alarms(
    State(web): State<Web>,
    ApiUser(p): ApiUser,
    Path(id): Path<u32>,
    Query(q): Query<AlarmQuery>,
) -> Result<Json<Value>, JsonError> {
    web.check_device(&p.user, id).await?;
    let f = AlarmFilter {
        devices: Some(vec![id]),
        open_only: q.open,
        limit: q.limit.unwrap_or(100).min(1000),
    };
    let list = web.db_call(move |db| db.alarms(&f)).await?;
    Ok(Json(json!(list.iter().map(alarm_json).collect::<Vec<_>>())))
}

/// `GET /api/alarms?open=true`: alarms of every device the user may see, newest first.
pub async fn list_alarms(
    State(web): State<Web>,
    ApiUser(p): ApiUser,
    Query(q): Query<AlarmQuery>,
) -> Result<Json<Value>, JsonError> {
    let list = visible_alarms(&web, &p, q.open, q.limit.unwrap_or(100).min(1000)).await?;
    Ok(Json(json!(list.iter().map(alarm_json).collect::<Vec<_>>())))
}

/// `POST /api/alarms/{id}/ack`.
pub async fn post_ack(
    State(web): State<Web>,
    ApiUser(p): ApiUser,
    Path(id): Path<i64>,
) -> Result<Json<Value>, JsonError> {
    let a = acknowledge(&web, &p, id).await?;
    Ok(Json(alarm_json(&a)))
}

/// `GET /api/alarms/{id}/notifications`: the notification log of one alarm.
pub async fn alarm_notifications(
    State(web): State<Web>,
    ApiUser(p): ApiUser,
    Path(id): Path<i64>,
) -> Result<Json<Value>, JsonError> {
    let a = web
        .db_call(move |db| db.alarm(id))
        .await?
        .ok_or(WebError::NotFound)?;
    web.check_device(&p.user, a.device_id).await?;
    let list = web
        .db_call(move |db| db.notifications(None, Some(id), 1000))
        .await?;
    Ok(Json(json!(list.iter().map(note_json).collect::<Vec<_>>())))
}

/// `GET /api/devices/{id}/notifications`: the device's notification log, newest first.
pub async fn device_notifications(
    State(web): State<Web>,
    ApiUser(p): ApiUser,
    Path(id): Path<u32>,
    Query(q): Query<AlarmQuery>,
) -> Result<Json<Value>, JsonError> {
    web.check_device(&p.user, id).await?;
    let n = q.limit.unwrap_or(100).min(1000);
    let list = web
        .db_call(move |db| db.notifications(Some(&[id]), None, n))
        .await?;
    Ok(Json(json!(list.iter().map(note_json).collect::<Vec<_>>())))
}

/// `GET /api/alarm-templates`: the pool rule templates.
pub async fn list_templates(ApiUser(_p): ApiUser) -> Json<Value> {
    Json(json!(templates()
        .into_iter()
        .map(|(name, what, spec)| json!({ "template": name, "description": what, "rule": spec }))
        .collect::<Vec<_>>()))
}

/// `GET /api/alarm-destinations` (administrators; secrets are never shown).
pub async fn list_destinations(
    State(web): State<Web>,
    ApiUser(p): ApiUser,
) -> Result<Json<Value>, JsonError> {
    Web::require_admin(&p.user)?;
    let list = web.db_call(|db| db.destinations()).await?;
    Ok(Json(json!(list
        .iter()
        .map(|d| json!({
            "id": d.id, "name": d.name, "kind": d.kind.as_str(), "target": d.target,
            "has_secret": d.secret.is_some(), "created_at": d.created_at,
        }))
        .collect::<Vec<_>>())))
}

/// `POST /api/alarm-destinations`.
pub async fn post_destination(
    State(web): State<Web>,
    ApiUser(p): ApiUser,
    b: Body<NewDest>,
) -> Result<(StatusCode, Json<Value>), JsonError> {
    Web::require_admin(&p.user)?;
    let id = create_destination(&web, &p, body(b)?).await?;
    Ok((StatusCode::CREATED, Json(json!({ "id": id }))))
}

/// `POST /api/alarm-destinations/{id}/test`: sends a test notification; 202 with the logged
/// notification (`state` `queued` until delivered or given up).
pub async fn post_test(
    State(web): State<Web>,
    ApiUser(p): ApiUser,
    Path(id): Path<i64>,
) -> Result<(StatusCode, Json<Value>), JsonError> {
    let n = test_destination(&web, &p, id).await?;
    Ok((StatusCode::ACCEPTED, Json(note_json(&n))))
}

/// `GET /api/alarm-destinations/{id}/test?limit=N`: the destination's test notifications and
/// their results, newest first.
pub async fn get_tests(
    State(web): State<Web>,
    ApiUser(p): ApiUser,
    Path(id): Path<i64>,
    Query(q): Query<AlarmQuery>,
) -> Result<Json<Value>, JsonError> {
    let n = q.limit.unwrap_or(100).min(TEST_LOG);
    let list = destination_tests(&web, &p, id, n).await?;
    Ok(Json(json!(list.iter().map(note_json).collect::<Vec<_>>())))
}

/// `DELETE /api/alarm-destinations/{id}`.
pub async fn del_destination(
    State(web): State<Web>,
    ApiUser(p): ApiUser,
    Path(id): Path<i64>,
) -> Result<StatusCode, JsonError> {
    delete_destination(&web, &p, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/alarm-lists` (every user: the lists they may pick in rules, with names; members
/// for admins).
pub async fn list_lists(
    State(web): State<Web>,
    ApiUser(p): ApiUser,
) -> Result<Json<Value>, JsonError> {
    let admin = p.user.is_admin;
    let list = pickable_lists(&web, &p).await?;
    Ok(Json(json!(list
        .iter()
        .map(|l| {
            let mut v = json!({ "id": l.id, "name": l.name, "site_id": l.site_id });
            if admin {
                v["members"] = json!(l.members);
            }
            v
        })
        .collect::<Vec<_>>())))
}

/// `POST /api/alarm-lists`.
pub async fn post_list(
    State(web): State<Web>,
    ApiUser(p): ApiUser,
    b: Body<NewList>,
) -> Result<(StatusCode, Json<Value>), JsonError> {
    Web::require_admin(&p.user)?;
    let id = create_list(&web, &p, body(b)?).await?;
    Ok((StatusCode::CREATED, Json(json!({ "id": id }))))
}

/// Body of a membership change.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Members {
    members: Vec<i64>,
}

/// `PUT /api/alarm-lists/{id}` with `{"members": [...]}`.
pub async fn put_list(
    State(web): State<Web>,
    ApiUser(p): ApiUser,
    Path(id): Path<i64>,
    b: Body<Members>,
) -> Result<StatusCode, JsonError> {
    Web::require_admin(&p.user)?;
    set_members(&web, &p, id, body(b)?.members).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/alarm-lists/{id}`.
pub async fn del_list(
    State(web): State<Web>,
    ApiUser(p): ApiUser,
    Path(id): Path<i64>,
) -> Result<StatusCode, JsonError> {
    delete_list(&web, &p, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
