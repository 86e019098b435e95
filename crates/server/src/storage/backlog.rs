//! Boots whose records' times are estimated (PROTOCOL.md 18.3, 18.4): a device that never
//! reached a server during a boot has no clock anchor for it, so when it later delivers that
//! boot's records in a Backlog with the *estimated* flag, their times are the latest each record
//! could have been taken. The server keeps, per device and boot, how many records of that boot
//! it stores and their first and last time, so a user sees which stretch of history is
//! estimated.
//!
//! The row is recomputed from the stored records of the boot (not added to), so noting a boot
//! again — a retransmitted Backlog, or a note that failed after its records were committed — is
//! idempotent and repairs it.

use super::Result;

/// A boot of a device whose records' times are estimated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct EstimatedBoot {
    /// The boot number (the boot half of the hello counter of the boot the records were
    /// logged in).
    pub boot: u32,
    /// Records of that boot stored.
    pub records: u64,
    /// Time of the earliest of them (estimated), Unix seconds.
    pub first: i64,
    /// Time of the latest of them (estimated), Unix seconds.
    pub last: i64,
}

/// The statement of [`BacklogStore::note_estimated_boots`] for one boot, the same for both
/// backends; `param` is the placeholder prefix (`?` SQLite, `$` PostgreSQL). Parameters: device,
/// boot. The records of both layouts count (`telemetry` and `telemetry_wide`, [`super::wide`]),
/// and those of the boot sealed in chunks ([`super::chunk`]: their counts and time ranges).
/// A boot without stored records gives no row (nothing to show).
pub(super) fn note_sql(param: &str) -> String {
    format!(
        "INSERT INTO backlog_estimated_boots (device_id, boot, records, first_time, last_time)
         SELECT device_id, boot, SUM(n), MIN(first_time), MAX(last_time) FROM (
             SELECT device_id, boot, 1 AS n, time AS first_time, time AS last_time FROM telemetry
             WHERE device_id = {param}1 AND boot = {param}2
             UNION ALL
             SELECT device_id, boot, records, start_time, end_time FROM telemetry_chunk
             WHERE device_id = {param}1 AND boot = {param}2
             UNION ALL
             SELECT device_id, boot, 1, time, time FROM telemetry_wide
             WHERE device_id = {param}1 AND boot = {param}2) AS r
         GROUP BY device_id, boot
         ON CONFLICT (device_id, boot) DO UPDATE SET
           records = excluded.records, first_time = excluded.first_time,
           last_time = excluded.last_time"
    )
}

/// The statement of [`BacklogStore::estimated_boots`]. Parameters: device, limit; `limit` is
/// how the limit parameter is written (SQLite casts it, see [`crate::storage::sqlite`]).
pub(super) fn list_sql(param: &str, limit: &str) -> String {
    format!(
        "SELECT boot, records, first_time, last_time FROM backlog_estimated_boots
         WHERE device_id = {param}1 ORDER BY boot DESC LIMIT {limit}"
    )
}

/// Boots with estimated times.
pub trait BacklogStore {
    /// Marks the boots `(device, boot)` as having estimated times and (re)computes their rows
    /// from the records stored for them, in one transaction. Call it after those records are
    /// committed.
    fn note_estimated_boots(&self, boots: &[(u32, u32)]) -> Result<()>;
    /// A device's boots with estimated times, newest boot first, at most `limit`.
    fn estimated_boots(&self, device_id: u32, limit: usize) -> Result<Vec<EstimatedBoot>>;
    /// [`BacklogStore::estimated_boots`] of each of `device_ids`, in their order: a page of
    /// devices in one call (issue 21). By default one read each; SQLite reads them on one
    /// connection, PostgreSQL in one statement.
    fn estimated_boots_of(
        &self,
        device_ids: &[u32],
        limit: usize,
    ) -> Result<Vec<Vec<EstimatedBoot>>> {
        device_ids
            .iter()
            .map(|&d| self.estimated_boots(d, limit))
            .collect()
    }
}
