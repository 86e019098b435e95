//! What the engine hands its driver: actions in order, the notifications among them, and the
//! alarms open at start.

use crate::alarms::rules::Severity;

/// Why a notification is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoticeKind {
    /// An alarm was raised (to the first list).
    Raised,
    /// Nobody acknowledged in time: sent to the list at this escalation level (1 = second list).
    Escalated(u32),
    /// The alarm cleared (to every list notified before).
    Cleared,
    /// Flood suppression held back notifications in the window that just ended.
    Summary {
        /// How many were held back.
        count: u32,
        /// What they were (the first few), one line each.
        lines: Vec<String>,
    },
}

impl NoticeKind {
    /// The name in the notification log.
    pub fn label(&self) -> &'static str {
        match self {
            NoticeKind::Raised => "raised",
            NoticeKind::Escalated(_) => "escalated",
            NoticeKind::Cleared => "cleared",
            NoticeKind::Summary { .. } => "summary",
        }
    }
}

/// A notification to every destination of one list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// Device.
    pub device_id: u32,
    /// Destination list.
    pub list_id: i64,
    /// The rule (none for a summary).
    pub rule_id: Option<i64>,
    /// Why.
    pub kind: NoticeKind,
    /// Severity of the alarm (summary: the highest held back).
    pub severity: Severity,
    /// One line for people: the rule's name and what happened.
    pub text: String,
    /// When.
    pub at: i64,
}

/// What the engine asks its driver to do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Record a new alarm of `rule_id` (at most one open alarm per rule).
    Raise {
        /// Rule.
        rule_id: i64,
        /// Device.
        device_id: u32,
        /// The rule's name.
        rule_name: String,
        /// Severity.
        severity: Severity,
        /// What was seen.
        message: String,
        /// When.
        at: i64,
    },
    /// Clear the open alarm of `rule_id`.
    Clear {
        /// Rule.
        rule_id: i64,
        /// When.
        at: i64,
    },
    /// The open alarm of `rule_id` escalated to `level`.
    Escalate {
        /// Rule.
        rule_id: i64,
        /// New level (index into the rule's lists).
        level: u32,
    },
    /// Notify a destination list.
    Notify(Notice),
}

/// An alarm open at start (from the database), so a restart neither raises it again nor
/// forgets to escalate it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenAlarm {
    /// Rule.
    pub rule_id: i64,
    /// When it was raised.
    pub raised_at: i64,
    /// Acknowledged already.
    pub acked: bool,
    /// Escalation level reached.
    pub level: u32,
}
