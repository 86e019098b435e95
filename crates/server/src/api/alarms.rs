//! Alarms over the API: rules per device (any user with access to the device), alarms and their
//! acknowledgement, shelving, the notification log; destinations and destination lists
//! (administrators only; every user may read the lists' names to pick them in a rule).
//!
//! The operations shared with the pages (`web::alarms_page`) are the `pub async fn`s without an
//! extractor: they check access, validate, write, audit, and tell the alarm engine.

use crate::alarms::rules::{templates, Rule, RuleSpec};
use crate::alarms::task::Event;
use crate::storage::{
    AlarmFilter, AlarmRecord, DestinationKind, NewDestination, NotificationRecord,
};
use crate::web::auth::{ApiUser, Principal};
use crate::web::error::{JsonError, WebError};
use crate::web::Web;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

type Body<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;

fn body<T>(b: Body<T>) -> Result<T, WebError> {
    b.map(|Json(t)| t)
        .map_err(|e| crate::web::auth::body_error(e.status(), &e.body_text()))
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

/// `active`, `acknowledged` or `cleared`.
pub fn state(a: &AlarmRecord) -> &'static str {
    match (a.cleared_at, a.acked_at) {
        (Some(_), _) => "cleared",
        (None, Some(_)) => "acknowledged",
        (None, None) => "active",
    }
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

/// Validates a rule and checks that its lists exist and that the user may pick them: an
/// administrator any list, anyone else only lists given to the site of the rule's device (so a
/// rule's free-text name never reaches another tenant's or the administrators' inboxes). A
/// list the user may not pick answers as one that does not exist.
async fn checked(web: &Web, p: &Principal, device: u32, spec: &RuleSpec) -> Result<(), WebError> {
    spec.validate().map_err(WebError::Invalid)?;
    if !spec.lists.is_empty() {
        let (lists, site) = web
            .db_call(move |db| Ok((db.lists()?, db.device_site(device)?)))
            .await?;
        for l in &spec.lists {
            let ok = lists
                .iter()
                .any(|x| x.id == *l && (p.user.is_admin || (site.is_some() && x.site_id == site)));
            if !ok {
                return Err(WebError::Invalid(format!("list {l} does not exist")));
            }
        }
    }
    Ok(())
}

/// The lists `p` may pick in rules: every list for administrators, else the lists given to
/// the user's sites.
pub async fn pickable_lists(
    web: &Web,
    p: &Principal,
) -> Result<Vec<crate::storage::alarms::DestinationList>, WebError> {
    let (admin, uid) = (p.user.is_admin, p.user.id);
    web.db_call(move |db| {
        let lists = db.lists()?;
        if admin {
            return Ok(lists);
        }
        let sites: Vec<i64> = db.user_sites(uid)?.into_iter().map(|s| s.id).collect();
        Ok(lists
            .into_iter()
            .filter(|l| l.site_id.is_some_and(|s| sites.contains(&s)))
            .collect())
    })
    .await
}

/// The rule `rule` of device `device` (404 unless `user` may see the device and the rule is
/// the device's).
pub async fn rule_for(
    web: &Web,
    user: &Principal,
    device: u32,
    rule: i64,
) -> Result<Rule, WebError> {
    web.check_device(&user.user, device).await?;
    let r = web.db_call(move |db| db.rule(rule)).await?;
    r.filter(|r| r.device_id == device)
        .ok_or(WebError::NotFound)
}

/// Creates a rule on a device the user may change.
pub async fn create_rule(
    web: &Web,
    p: &Principal,
    device: u32,
    spec: RuleSpec,
) -> Result<i64, WebError> {
    web.check_device(&p.user, device).await?;
    checked(web, p, device, &spec).await?;
    let s = spec.clone();
    let id = web
        .db_call(move |db| db.create_rule(device, &s, crate::clock::unix_now()))
        .await?;
    web.api
        .alarm_event(Event::RulesChanged { device_id: device });
    web.audit(
        p,
        "alarm.rule.create",
        Some(device),
        None,
        format!("rule {id} {:?}: {}", spec.name, spec.condition.describe()),
    )
    .await?;
    Ok(id)
}

/// Deletes a rule (its open alarm is cleared).
pub async fn delete_rule(web: &Web, p: &Principal, device: u32, rule: i64) -> Result<(), WebError> {
    let r = rule_for(web, p, device, rule).await?;
    web.db_call(move |db| db.delete_rule(rule, crate::clock::unix_now()))
        .await?;
    web.api
        .alarm_event(Event::RulesChanged { device_id: device });
    web.audit(
        p,
        "alarm.rule.delete",
        Some(device),
        None,
        format!("rule {rule} {:?}", r.spec.name),
    )
    .await
}

/// Replaces a rule's spec (validated, audited, the engine told). Disabling a rule clears its
/// open alarm, as deleting does: a rule that no longer watches cannot keep an alarm raised.
pub async fn update_rule(
    web: &Web,
    p: &Principal,
    device: u32,
    rule: i64,
    spec: RuleSpec,
) -> Result<Rule, WebError> {
    rule_for(web, p, device, rule).await?;
    checked(web, p, device, &spec).await?;
    let s = spec.clone();
    web.db_call(move |db| {
        db.update_rule(rule, &s)?;
        if !s.enabled {
            db.clear_alarm(rule, crate::clock::unix_now())?;
        }
        Ok(())
    })
    .await?;
    web.api
        .alarm_event(Event::RulesChanged { device_id: device });
    web.audit(
        p,
        "alarm.rule.update",
        Some(device),
        None,
        format!(
            "rule {rule} {:?}{}: {}",
            spec.name,
            if spec.enabled { "" } else { " (disabled)" },
            spec.condition.describe()
        ),
    )
    .await?;
    rule_for(web, p, device, rule).await
}

/// Longest shelving: 30 days.
pub const MAX_SHELVE_MINUTES: u32 = 30 * 24 * 60;

/// When a shelving ends: `minutes` from now, or at `until` (Unix seconds or `YYYY-MM-DD HH:MM`,
/// UTC); `None` unshelves (minutes 0, or neither given).
pub fn shelf_end(
    minutes: Option<u32>,
    until: Option<&str>,
    now: i64,
) -> Result<Option<i64>, WebError> {
    let max = now + i64::from(MAX_SHELVE_MINUTES) * 60;
    match (minutes, until.map(str::trim).filter(|u| !u.is_empty())) {
        (Some(_), Some(_)) => Err(WebError::Invalid("give minutes or until, not both".into())),
        (Some(m), None) if m > MAX_SHELVE_MINUTES => Err(WebError::Invalid(format!(
            "minutes: 0 to {MAX_SHELVE_MINUTES}"
        ))),
        (Some(0), None) | (None, None) => Ok(None),
        (Some(m), None) => Ok(Some(now + i64::from(m) * 60)),
        (None, Some(u)) => {
            let t = crate::web::timefmt::parse(u).ok_or_else(|| {
                WebError::Invalid(format!(
                    "until: {u:?} is not a time (YYYY-MM-DD HH:MM, UTC)"
                ))
            })?;
            if t <= now || t > max {
                return Err(WebError::Invalid(
                    "until: a time in the next 30 days".into(),
                ));
            }
            Ok(Some(t))
        }
    }
}

/// Shelves a rule until `until` (`None`: unshelve); see [`shelf_end`].
pub async fn shelve_rule(
    web: &Web,
    p: &Principal,
    device: u32,
    rule: i64,
    until: Option<i64>,
) -> Result<Option<i64>, WebError> {
    let r = rule_for(web, p, device, rule).await?;
    web.db_call(move |db| db.shelve_rule(rule, until)).await?;
    web.api.alarm_event(Event::Shelved {
        rule_id: rule,
        until,
    });
    let what = match until {
        Some(u) => format!("until {}", crate::web::timefmt::datetime(u)),
        None => "unshelved".into(),
    };
    web.audit(
        p,
        "alarm.rule.shelve",
        Some(device),
        None,
        format!("rule {rule} {:?} {what}", r.spec.name),
    )
    .await?;
    Ok(until)
}

/// Acknowledges an alarm on a device the user may see. Returns the alarm after.
pub async fn acknowledge(web: &Web, p: &Principal, alarm: i64) -> Result<AlarmRecord, WebError> {
    let a = web
        .db_call(move |db| db.alarm(alarm))
        .await?
        .ok_or(WebError::NotFound)?;
    web.check_device(&p.user, a.device_id).await?;
    let by = p.user.email.clone();
    let fresh = web
        .db_call(move |db| db.ack_alarm(alarm, &by, crate::clock::unix_now()))
        .await?;
    if fresh {
        web.api.alarm_event(Event::Acked { rule_id: a.rule_id });
        web.api.mqtt().offer(crate::mqtt::Event::Alarm {
            device_id: a.device_id,
            alarm_id: a.id,
            rule_id: a.rule_id,
            event: crate::mqtt::AlarmEvent::Acknowledged,
            severity: a.severity.as_str().to_owned(),
            message: a.message.clone(),
            at: crate::clock::unix_now(),
        });
        web.audit(
            p,
            "alarm.ack",
            Some(a.device_id),
            None,
            format!("alarm {alarm} {:?}", a.rule_name),
        )
        .await?;
    }
    web.db_call(move |db| db.alarm(alarm))
        .await?
        .ok_or(WebError::NotFound)
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

/// The alarms a user may see.
pub async fn visible_alarms(
    web: &Web,
    p: &Principal,
    open_only: bool,
    limit: usize,
) -> Result<Vec<AlarmRecord>, WebError> {
    let devices = match web.visible(&p.user).await? {
        crate::web::access::Visible::All => None,
        crate::web::access::Visible::Some(ids) => Some(ids.into_iter().collect()),
    };
    let f = AlarmFilter {
        devices,
        open_only,
        limit,
    };
    web.db_call(move |db| db.alarms(&f)).await
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

/// Body of a new destination.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewDest {
    /// Name.
    pub name: String,
    /// `email` or `webhook`.
    pub kind: String,
    /// Address or URL.
    pub target: String,
    /// Webhook secret.
    #[serde(default)]
    pub secret: Option<String>,
}

/// Creates a destination (administrators).
pub async fn create_destination(web: &Web, p: &Principal, d: NewDest) -> Result<i64, WebError> {
    Web::require_admin(&p.user)?;
    let kind = DestinationKind::parse(&d.kind)
        .ok_or_else(|| WebError::Invalid("kind: email or webhook".into()))?;
    let name = d.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(WebError::Invalid(
            "name: 1 to 100 printable characters".into(),
        ));
    }
    let secret = d.secret.filter(|s| !s.is_empty());
    crate::alarms::deliver::validate_destination(kind, d.target.trim(), secret.as_deref())
        .map_err(WebError::Invalid)?;
    let nd = NewDestination {
        name: name.clone(),
        kind,
        target: d.target.trim().to_owned(),
        secret,
    };
    let id = web
        .db_call(move |db| db.create_destination(&nd, crate::clock::unix_now()))
        .await?;
    web.audit(
        p,
        "alarm.destination.create",
        None,
        None,
        format!("destination {id} {name:?} ({})", kind.as_str()),
    )
    .await?;
    Ok(id)
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

/// Deletes a destination (administrators).
pub async fn delete_destination(web: &Web, p: &Principal, id: i64) -> Result<(), WebError> {
    Web::require_admin(&p.user)?;
    web.db_call(move |db| db.delete_destination(id))
        .await
        .map_err(not_found)?;
    web.audit(
        p,
        "alarm.destination.delete",
        None,
        None,
        format!("destination {id}"),
    )
    .await
}

/// The device id test notifications are logged under: none (device ids start at 1), so they
/// appear in no device's log, only in the destinations' test logs.
pub const TEST_DEVICE: u32 = 0;

/// Most test notifications kept in view per destination.
const TEST_LOG: usize = 1000;

/// Sends a test notification to a destination (administrators): logged in the notification
/// log as `queued` with event `test`, then through the delivery queue, its retries and the log
/// like every alarm notification. Returns the logged notification.
pub async fn test_destination(
    web: &Web,
    p: &Principal,
    id: i64,
) -> Result<NotificationRecord, WebError> {
    use crate::alarms::task::{render_test, TEST_EVENT};
    use crate::storage::{DeliveryState, NewNotification};
    Web::require_admin(&p.user)?;
    let dest = web
        .db_call(move |db| Ok(db.destinations()?.into_iter().find(|d| d.id == id)))
        .await?
        .ok_or(WebError::NotFound)?;
    let at = crate::clock::unix_now();
    let (subject, text, body) = render_test(&dest.name, &p.user.email, at);
    let new = NewNotification {
        alarm_id: None,
        device_id: TEST_DEVICE,
        list_id: 0,
        destination_id: dest.id,
        destination: dest.name.clone(),
        event: TEST_EVENT.to_owned(),
        subject: subject.clone(),
    };
    let note_id = web.db_call(move |db| db.log_notification(&new, at)).await?;
    web.audit(
        p,
        "alarm.destination.test",
        None,
        None,
        format!("destination {id} {:?}", dest.name),
    )
    .await?;
    let job = crate::alarms::deliver::Job {
        note_id,
        destination: dest,
        subject,
        text,
        body,
    };
    if !web.api.alarm_test(job) {
        web.db_call(move |db| {
            db.notification_done(
                note_id,
                DeliveryState::Failed,
                0,
                Some("alarm queue full"),
                at,
            )
        })
        .await?;
    }
    web.db_call(move |db| {
        Ok(db
            .notifications(Some(&[TEST_DEVICE]), None, TEST_LOG)?
            .into_iter()
            .find(|n| n.id == note_id))
    })
    .await?
    .ok_or(WebError::NotFound)
}

/// The test notifications sent to a destination, newest first (administrators; at most
/// `limit`). An absent destination answers `NotFound`.
pub async fn destination_tests(
    web: &Web,
    p: &Principal,
    id: i64,
    limit: usize,
) -> Result<Vec<NotificationRecord>, WebError> {
    Web::require_admin(&p.user)?;
    web.db_call(move |db| {
        if !db.destinations()?.iter().any(|d| d.id == id) {
            return Err(crate::storage::Error::Missing(format!("destination {id}")));
        }
        Ok(db
            .notifications(Some(&[TEST_DEVICE]), None, TEST_LOG)?
            .into_iter()
            .filter(|n| n.destination_id == id)
            .take(limit)
            .collect())
    })
    .await
    .map_err(not_found)
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

fn not_found(e: WebError) -> WebError {
    match e {
        WebError::Invalid(_) => WebError::NotFound,
        e => e,
    }
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

/// Body of a new list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewList {
    /// Name.
    pub name: String,
    /// Destination ids.
    #[serde(default)]
    pub members: Vec<i64>,
    /// The site whose users may pick the list (absent: administrators only).
    #[serde(default)]
    pub site_id: Option<i64>,
}

/// Creates a list with members (administrators).
pub async fn create_list(web: &Web, p: &Principal, l: NewList) -> Result<i64, WebError> {
    Web::require_admin(&p.user)?;
    let name = l.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(WebError::Invalid(
            "name: 1 to 100 printable characters".into(),
        ));
    }
    if l.members.len() > 100 {
        return Err(WebError::Invalid("members: at most 100".into()));
    }
    let n = name.clone();
    let members = l.members.clone();
    let site = l.site_id;
    let id = web
        .db_call(move |db| {
            // Check members first, so a bad id leaves no empty list behind.
            let known = db.destinations()?;
            for m in &members {
                if !known.iter().any(|d| d.id == *m) {
                    return Err(crate::storage::Error::Missing(format!("destination {m}")));
                }
            }
            if let Some(site) = site {
                db.site(site)?
                    .ok_or_else(|| crate::storage::Error::Missing(format!("site {site}")))?;
            }
            let id = db.create_list(&n, crate::clock::unix_now())?;
            db.set_list_members(id, &members)?;
            if site.is_some() {
                db.set_list_site(id, site)?;
            }
            Ok(id)
        })
        .await?;
    web.audit(
        p,
        "alarm.list.create",
        None,
        None,
        format!(
            "list {id} {name:?} members {:?} site {:?}",
            l.members, l.site_id
        ),
    )
    .await?;
    Ok(id)
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

/// Sets a list's members (administrators).
pub async fn set_members(
    web: &Web,
    p: &Principal,
    id: i64,
    members: Vec<i64>,
) -> Result<(), WebError> {
    Web::require_admin(&p.user)?;
    if members.len() > 100 {
        return Err(WebError::Invalid("members: at most 100".into()));
    }
    let exists = web
        .db_call(move |db| Ok(db.lists()?.iter().any(|l| l.id == id)))
        .await?;
    if !exists {
        return Err(WebError::NotFound);
    }
    let m = members.clone();
    web.db_call(move |db| db.set_list_members(id, &m)).await?;
    web.audit(
        p,
        "alarm.list.members",
        None,
        None,
        format!("list {id} members {members:?}"),
    )
    .await
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

/// Deletes a list (administrators).
pub async fn delete_list(web: &Web, p: &Principal, id: i64) -> Result<(), WebError> {
    Web::require_admin(&p.user)?;
    web.db_call(move |db| db.delete_list(id))
        .await
        .map_err(not_found)?;
    web.audit(p, "alarm.list.delete", None, None, format!("list {id}"))
        .await
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
