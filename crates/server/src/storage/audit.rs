//! The audit log: who changed what, when. Append-only; written by the same code path that makes
//! the change, so a change without its entry cannot happen through the UI or API.

use super::Result;

/// An entry to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAuditEntry {
    /// The user who acted (`None` for the command line).
    pub user_id: Option<i64>,
    /// Who acted, as shown (the e-mail, or `cli`): kept even if the user is deleted later.
    pub actor: String,
    /// What kind of change, e.g. `config.save`, `command.queue`, `user.create`.
    pub action: String,
    /// The device changed, if any.
    pub device_id: Option<u32>,
    /// The site concerned (the device's site at the time), so site members can read it.
    pub site_id: Option<i64>,
    /// A one-line description. Never contains a secret (GSM password, key, token).
    pub detail: String,
}

/// A stored entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Id, increasing.
    pub id: i64,
    /// When.
    pub at: i64,
    /// What was appended.
    pub entry: NewAuditEntry,
}

/// Which entries to list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuditFilter {
    /// Only entries of these sites (`None` = every entry, for admins).
    pub sites: Option<Vec<i64>>,
    /// Only entries about this device.
    pub device_id: Option<u32>,
    /// Only entries with an id below this (paging backwards).
    pub before: Option<i64>,
    /// At most this many, newest first.
    pub limit: usize,
}

/// Audit log operations.
pub trait AuditStore {
    /// Appends an entry; returns its id.
    fn append_audit(&self, entry: &NewAuditEntry, now: i64) -> Result<i64>;
    /// Entries matching `filter`, newest first.
    fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>>;
}
