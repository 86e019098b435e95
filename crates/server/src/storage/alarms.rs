//! Alarm rules, alarms (raised → acknowledged → cleared), destinations (e-mail, webhook)
//! grouped into lists, and the notification log (every notification and its delivery result).
//!
//! A rule's [`RuleSpec`] is stored as its JSON (the API's form), the same text on both backends.
//! At most one alarm per rule is open (not cleared) at a time; the database enforces it with a
//! partial unique index, so two servers cannot raise the same rule twice.

use super::{sql_limit, Result};
use crate::alarms::rules::{Rule, RuleSpec, Severity};

/// Columns of `alarm_rules` in the order both backends' row conversions read them.
pub const RULE_COLS: &str = "id, device_id, spec, shelved_until, created_at";
/// Columns of `alarms`, in the order of [`AlarmRecord`].
pub const ALARM_COLS: &str = "id, rule_id, device_id, rule_name, severity, message, raised_at, \
                              acked_at, acked_by, cleared_at, level";
/// Columns of `alarm_destinations`, in the order of [`Destination`].
pub const DEST_COLS: &str = "id, name, kind, target, secret, created_at";
/// Columns of `alarm_notifications`, in the order of [`NotificationRecord`].
pub const NOTE_COLS: &str = "id, alarm_id, device_id, list_id, destination_id, destination, \
                             event, subject, state, attempts, error, created_at, done_at";

/// A raised alarm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlarmRecord {
    /// Id.
    pub id: i64,
    /// Rule that raised it.
    pub rule_id: i64,
    /// Device.
    pub device_id: u32,
    /// The rule's name when raised.
    pub rule_name: String,
    /// Severity.
    pub severity: Severity,
    /// What was seen.
    pub message: String,
    /// Raised, Unix seconds.
    pub raised_at: i64,
    /// Acknowledged, Unix seconds.
    pub acked_at: Option<i64>,
    /// Who acknowledged it.
    pub acked_by: Option<String>,
    /// Cleared (the restore condition held), Unix seconds.
    pub cleared_at: Option<i64>,
    /// Escalation level reached (index into the rule's lists).
    pub level: u32,
}

/// A new alarm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAlarm {
    /// Rule.
    pub rule_id: i64,
    /// Device.
    pub device_id: u32,
    /// The rule's name.
    pub rule_name: String,
    /// Severity.
    pub severity: Severity,
    /// What was seen.
    pub message: String,
    /// When.
    pub raised_at: i64,
}

/// Which alarms to list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AlarmFilter {
    /// Only these devices (`None`: all).
    pub devices: Option<Vec<u32>>,
    /// Only open (not cleared) alarms.
    pub open_only: bool,
    /// At most this many, newest first.
    pub limit: usize,
}

/// How a destination is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestinationKind {
    /// E-mail to `target` through the configured SMTP relay.
    Email,
    /// HTTP POST of a JSON body to `target`, signed with the destination's secret.
    Webhook,
}

impl DestinationKind {
    /// Name in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            DestinationKind::Email => "email",
            DestinationKind::Webhook => "webhook",
        }
    }

    /// Parses [`DestinationKind::as_str`].
    pub fn parse(s: &str) -> Option<DestinationKind> {
        match s {
            "email" => Some(DestinationKind::Email),
            "webhook" => Some(DestinationKind::Webhook),
            _ => None,
        }
    }
}

/// A notification destination.
#[derive(Clone, PartialEq, Eq)]
pub struct Destination {
    /// Id.
    pub id: i64,
    /// Name for people (unique).
    pub name: String,
    /// E-mail or webhook.
    pub kind: DestinationKind,
    /// E-mail address or `http://` URL.
    pub target: String,
    /// Webhook HMAC key (never shown after creation).
    pub secret: Option<String>,
    /// Created, Unix seconds.
    pub created_at: i64,
}

impl std::fmt::Debug for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Destination")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("target", &self.target)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// A new destination.
#[derive(Clone, PartialEq, Eq)]
pub struct NewDestination {
    /// Name (unique).
    pub name: String,
    /// Kind.
    pub kind: DestinationKind,
    /// E-mail address or URL.
    pub target: String,
    /// Webhook key.
    pub secret: Option<String>,
}

/// A named group of destinations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationList {
    /// Id.
    pub id: i64,
    /// Name (unique).
    pub name: String,
    /// Destination ids, ascending.
    pub members: Vec<i64>,
    /// Created, Unix seconds.
    pub created_at: i64,
    /// The site whose users may pick the list in their rules; `None`: administrators only.
    pub site_id: Option<i64>,
}

/// Delivery state of a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    /// Waiting or being retried.
    Queued,
    /// Accepted by the mail relay / answered 2xx by the webhook.
    Sent,
    /// Given up (the error says why).
    Failed,
}

impl DeliveryState {
    /// Name in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Queued => "queued",
            DeliveryState::Sent => "sent",
            DeliveryState::Failed => "failed",
        }
    }

    /// Parses [`DeliveryState::as_str`].
    pub fn parse(s: &str) -> Option<DeliveryState> {
        match s {
            "queued" => Some(DeliveryState::Queued),
            "sent" => Some(DeliveryState::Sent),
            "failed" => Some(DeliveryState::Failed),
            _ => None,
        }
    }
}

/// A notification to one destination, as logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationRecord {
    /// Id.
    pub id: i64,
    /// The alarm (none for a flood summary).
    pub alarm_id: Option<i64>,
    /// Device.
    pub device_id: u32,
    /// List it went to.
    pub list_id: i64,
    /// Destination.
    pub destination_id: i64,
    /// The destination's name at the time.
    pub destination: String,
    /// `raised`, `escalated`, `cleared`, `summary`.
    pub event: String,
    /// Subject line.
    pub subject: String,
    /// Delivery state.
    pub state: DeliveryState,
    /// Attempts made.
    pub attempts: u32,
    /// Last error.
    pub error: Option<String>,
    /// Logged, Unix seconds.
    pub created_at: i64,
    /// Delivered or given up, Unix seconds.
    pub done_at: Option<i64>,
}

/// A delivery result as the notification log stores it ([`AlarmStore::write_delivery`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryRecord<'a> {
    /// Delivery state.
    pub state: DeliveryState,
    /// Attempts made.
    pub attempts: u32,
    /// Last error.
    pub error: Option<&'a str>,
    /// When the delivery ended (`None` while it waits for another attempt).
    pub done_at: Option<i64>,
}

/// A read of the notification log ([`AlarmStore::query_notifications`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotificationQuery<'a> {
    /// Devices (`None`: all; never empty: [`AlarmStore::notifications`] answers that itself).
    pub devices: Option<&'a [u32]>,
    /// One alarm's notifications.
    pub alarm_id: Option<i64>,
    /// At most this many rows, newest first.
    pub limit: i64,
}

/// A notification to log before delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNotification {
    /// The alarm.
    pub alarm_id: Option<i64>,
    /// Device.
    pub device_id: u32,
    /// List.
    pub list_id: i64,
    /// Destination.
    pub destination_id: i64,
    /// Its name.
    pub destination: String,
    /// Event.
    pub event: String,
    /// Subject.
    pub subject: String,
}

/// Alarm operations.
pub trait AlarmStore {
    /// Adds a rule to a device. `NotFound(device)` if there is no such device; `Limit` when the
    /// device has [`crate::alarms::rules::MAX_RULES_PER_DEVICE`] rules already.
    fn create_rule(&self, device_id: u32, spec: &RuleSpec, now: i64) -> Result<i64>;
    /// Replaces a rule's spec (`Missing` if absent).
    fn update_rule(&self, id: i64, spec: &RuleSpec) -> Result<()>;
    /// Deletes a rule; its open alarm is cleared at `now` (`Missing` if absent).
    fn delete_rule(&self, id: i64, now: i64) -> Result<()>;
    /// One rule.
    fn rule(&self, id: i64) -> Result<Option<Rule>>;
    /// A device's rules, by id.
    fn device_rules(&self, device_id: u32) -> Result<Vec<Rule>>;
    /// Every rule (the alarm task loads them at start).
    fn all_rules(&self) -> Result<Vec<Rule>>;
    /// Shelves a rule until `until` (`None`: unshelve). `Missing` if absent.
    fn shelve_rule(&self, id: i64, until: Option<i64>) -> Result<()>;

    /// Records a raised alarm and returns `(id, true)`; if the rule has an open alarm already
    /// (raised by another server), returns `(its id, false)` and changes nothing — only the
    /// server that recorded it notifies.
    fn raise_alarm(&self, alarm: &NewAlarm) -> Result<(i64, bool)>;
    /// Clears the rule's open alarm, if any; returns its id.
    fn clear_alarm(&self, rule_id: i64, at: i64) -> Result<Option<i64>>;
    /// Acknowledges an alarm. `Ok(false)` if it was acknowledged already (the first
    /// acknowledgement stays); `Missing` if there is no such alarm.
    fn ack_alarm(&self, id: i64, by: &str, at: i64) -> Result<bool>;
    /// Raises the escalation level of the rule's open alarm to `level`; `false` if it was there
    /// already (another server escalated it) or there is no open alarm.
    fn set_alarm_level(&self, rule_id: i64, level: u32) -> Result<bool>;
    /// One alarm.
    fn alarm(&self, id: i64) -> Result<Option<AlarmRecord>>;
    /// Alarms, newest first.
    fn alarms(&self, filter: &AlarmFilter) -> Result<Vec<AlarmRecord>>;

    /// Adds a destination (`Duplicate` if the name is taken).
    fn create_destination(&self, d: &NewDestination, now: i64) -> Result<i64>;
    /// Every destination, by id.
    fn destinations(&self) -> Result<Vec<Destination>>;
    /// Deletes a destination (and its list memberships). `Missing` if absent.
    fn delete_destination(&self, id: i64) -> Result<()>;
    /// Adds a list (`Duplicate` if the name is taken).
    fn create_list(&self, name: &str, now: i64) -> Result<i64>;
    /// Sets a list's members (`Missing` if the list or a destination does not exist).
    fn set_list_members(&self, id: i64, members: &[i64]) -> Result<()>;
    /// Every list, by id.
    fn lists(&self) -> Result<Vec<DestinationList>>;
    /// Gives a list to a site (its users may pick it) or back to administrators only (`None`).
    fn set_list_site(&self, list_id: i64, site_id: Option<i64>) -> Result<()>;
    /// Deletes a list. `Missing` if absent.
    fn delete_list(&self, id: i64) -> Result<()>;
    /// The destinations of a list, by id (empty if the list is gone).
    fn list_destinations(&self, list_id: i64) -> Result<Vec<Destination>>;

    /// Logs a notification as queued; returns its id.
    fn log_notification(&self, n: &NewNotification, now: i64) -> Result<i64>;
    /// Records a delivery result. A notification queued again (to retry) is not done; any
    /// other state ends it at `at`.
    fn notification_done(
        &self,
        id: i64,
        state: DeliveryState,
        attempts: u32,
        error: Option<&str>,
        at: i64,
    ) -> Result<()> {
        let done_at = (state != DeliveryState::Queued).then_some(at);
        self.write_delivery(
            id,
            &DeliveryRecord {
                state,
                attempts,
                error,
                done_at,
            },
        )
    }
    /// Stores a delivery result as [`notification_done`](Self::notification_done) decided it
    /// (the backends' half; callers use `notification_done`).
    fn write_delivery(&self, id: i64, record: &DeliveryRecord<'_>) -> Result<()>;
    /// Logged notifications of some devices (`None`: all) or of one alarm, newest first.
    fn notifications(
        &self,
        devices: Option<&[u32]>,
        alarm_id: Option<i64>,
        limit: usize,
    ) -> Result<Vec<NotificationRecord>> {
        // An empty choice of devices has no notifications: no query runs.
        if devices.is_some_and(<[u32]>::is_empty) {
            return Ok(Vec::new());
        }
        self.query_notifications(&NotificationQuery {
            devices,
            alarm_id,
            limit: sql_limit(limit),
        })
    }
    /// Reads the notification log as [`notifications`](Self::notifications) asked (the
    /// backends' half).
    fn query_notifications(&self, q: &NotificationQuery<'_>) -> Result<Vec<NotificationRecord>>;
}

/// Decodes a stored rule spec.
pub fn decode_spec(json: &str) -> Result<RuleSpec> {
    serde_json::from_str(json).map_err(|e| super::Error::Corrupt(format!("alarm rule: {e}")))
}

/// Encodes a rule spec for storage.
pub fn encode_spec(spec: &RuleSpec) -> String {
    // A RuleSpec is plain data: serialising it cannot fail.
    serde_json::to_string(spec).unwrap_or_default()
}

/// Decodes a stored severity.
pub fn decode_severity(s: &str) -> Result<Severity> {
    Severity::parse(s).ok_or_else(|| super::Error::Corrupt(format!("alarm severity {s:?}")))
}
