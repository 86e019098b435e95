//! Alarms: rules per device (any user with access to the device), acknowledgement, shelving;
//! destinations and destination lists (administrators only). Each operation checks access,
//! validates, writes, audits, and tells the alarm engine; the pages (`web::alarms_page`) and
//! the JSON API (`api::alarms`) call them.

use crate::alarms::rules::{Rule, RuleSpec};
use crate::alarms::task::Event;
use crate::http::auth::Principal;
use crate::http::error::WebError;
use crate::http::Web;
use crate::service::states::AlarmStatus;
use crate::storage::{
    AlarmFilter, AlarmRecord, DestinationKind, NewDestination, NotificationRecord,
};
use serde::Deserialize;

/// Where alarm `a` stands.
pub fn state(a: &AlarmRecord) -> AlarmStatus {
    AlarmStatus::of(a.cleared_at, a.acked_at)
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
            let t = crate::timefmt::parse(u).ok_or_else(|| {
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
        Some(u) => format!("until {}", crate::timefmt::datetime(u)),
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

/// The alarms a user may see.
pub async fn visible_alarms(
    web: &Web,
    p: &Principal,
    open_only: bool,
    limit: usize,
) -> Result<Vec<AlarmRecord>, WebError> {
    let devices = match web.visible(&p.user).await? {
        crate::http::access::Visible::All => None,
        crate::http::access::Visible::Some(ids) => Some(ids.into_iter().collect()),
    };
    let f = AlarmFilter {
        devices,
        open_only,
        limit,
    };
    web.db_call(move |db| db.alarms(&f)).await
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
pub const TEST_LOG: usize = 1000;

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

/// A missing row named in the request answers 404, not 400.
fn not_found(e: WebError) -> WebError {
    match e {
        WebError::Invalid(_) => WebError::NotFound,
        e => e,
    }
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

/// Deletes a list (administrators).
pub async fn delete_list(web: &Web, p: &Principal, id: i64) -> Result<(), WebError> {
    Web::require_admin(&p.user)?;
    web.db_call(move |db| db.delete_list(id))
        .await
        .map_err(not_found)?;
    web.audit(p, "alarm.list.delete", None, None, format!("list {id}"))
        .await
}
