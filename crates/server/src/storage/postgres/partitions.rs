//! Daily range partitions of `telemetry`, created ahead and dropped past the retention setting.
//!
//! A partition holds one UTC day, `[day * 86400, (day + 1) * 86400)`, and is named
//! `telemetry_YYYYMMDD`, so an operator can see and reason about them. The server calls
//! [`maintain`] at start and then hourly: it creates the partitions of yesterday, today and the
//! next [`AHEAD_DAYS`] days, and drops every partition wholly older than the retention setting
//! (dropping a partition is instant, unlike deleting billions of rows). A record of a day that has
//! no partition (a device that was offline for weeks) creates its partition on demand
//! ([`ensure`]); known partitions are cached, so this costs no round trip on the hot path.
//!
//! Creating and dropping run under an advisory lock, so several servers doing maintenance at the
//! same moment do not collide. Records older than the retention horizon are not stored (they
//! would be dropped at the next maintenance), but still count as accepted so the device frees
//! them.

use super::{locks, Shared};
use crate::storage::{Error, Result};
use std::collections::HashSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;

/// Seconds per partition.
pub const DAY: i64 = 86_400;
/// Days after today whose partitions [`maintain`] creates ahead.
pub const AHEAD_DAYS: i64 = 3;

/// Partitions known to exist, and the retention horizon.
#[derive(Debug)]
pub(crate) struct Known {
    days: Mutex<HashSet<i64>>,
    keep_from: AtomicI64,
}

impl Default for Known {
    fn default() -> Self {
        Known {
            days: Mutex::new(HashSet::new()),
            keep_from: AtomicI64::new(i64::MIN),
        }
    }
}

impl Known {
    /// Records before this time are past retention (`None`: everything is kept).
    pub fn keep_from(&self) -> Option<i64> {
        let k = self.keep_from.load(Ordering::Relaxed);
        (k != i64::MIN).then_some(k)
    }

    fn is_known(&self, day: i64) -> bool {
        self.days
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&day)
    }

    fn set(&self, day: i64, exists: bool) {
        let mut d = self.days.lock().unwrap_or_else(|p| p.into_inner());
        if exists {
            d.insert(day);
        } else {
            d.remove(&day);
        }
    }
}

/// `(year, month, day)` of a day number (days since 1970-01-01), by H. Hinnant's algorithm.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Inverse of [`civil_from_days`].
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The partition name of a day, e.g. `telemetry_20260105`.
pub fn name(day: i64) -> String {
    let (y, m, d) = civil_from_days(day);
    format!("telemetry_{y:04}{m:02}{d:02}")
}

/// The day of a partition name made by [`name`].
pub fn parse_name(name: &str) -> Option<i64> {
    let digits = name.strip_prefix("telemetry_")?;
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let y: i64 = digits[..4].parse().ok()?;
    let m: u32 = digits[4..6].parse().ok()?;
    let d: u32 = digits[6..].parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let day = days_from_civil(y, m, d);
    (civil_from_days(day) == (y, m, d)).then_some(day)
}

/// Makes sure the partitions of `days` exist.
pub(crate) async fn ensure(s: &Shared, days: &[i64]) -> Result<()> {
    let mut missing: Vec<i64> = days
        .iter()
        .copied()
        .filter(|d| !s.partitions.is_known(*d))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    missing.sort_unstable();
    missing.dedup();
    let mut c = s.conn().await?;
    let tx = c.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&locks::PARTITIONS])
        .await?;
    for day in &missing {
        let from = day
            .checked_mul(DAY)
            .ok_or_else(|| Error::Backend(format!("day {day} out of range")))?;
        tx.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {} PARTITION OF telemetry FOR VALUES FROM ({from}) TO ({})",
            name(*day),
            from + DAY
        ))
        .await?;
    }
    tx.commit().await?;
    for day in missing {
        s.partitions.set(day, true);
    }
    Ok(())
}

/// The days of the existing partitions (those named by [`name`]).
pub(crate) async fn list(s: &Shared) -> Result<Vec<i64>> {
    let c = s.conn().await?;
    let rows = c
        .query(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'telemetry'::regclass",
            &[],
        )
        .await?;
    let mut days: Vec<i64> = rows
        .iter()
        .filter_map(|r| parse_name(r.get::<_, &str>(0)))
        .collect();
    days.sort_unstable();
    Ok(days)
}

/// The days of the partitions starting before `before` whose heap has at least one page on disk: the only ones that can hold a row. Sealing ([`super::telemetry`]) reads
/// just these instead of planning and scanning every past partition each hour: a sealed day's
/// partition is truncated to no page at all ([`truncate_emptied`]), and any row inserted into it
/// later (a late record) extends its heap again, so it is found at the next pass.
/// `pg_relation_size` only asks the file's size; a partition dropped meanwhile answers NULL.
pub(crate) async fn with_pages_before(s: &Shared, before: i64) -> Result<Vec<i64>> {
    let c = s.conn().await?;
    let rows = c
        .query(
            // The size in the select list, so it is asked of the partitions only (as a
            // filter, the planner applies it to every row of pg_class before the join).
            "SELECT c.relname, pg_relation_size(c.oid) FROM pg_inherits i
             JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'telemetry'::regclass",
            &[],
        )
        .await?;
    let mut days: Vec<i64> = rows
        .iter()
        .filter(|r| r.get::<_, Option<i64>>(1).is_some_and(|b| b > 0))
        .filter_map(|r| parse_name(r.get::<_, &str>(0)))
        .filter(|d| d.checked_mul(DAY).is_some_and(|start| start < before))
        .collect();
    days.sort_unstable();
    Ok(days)
}

/// Creates the partitions around `now`; with `retention_days > 0`, drops every partition that
/// ends at or before `now - retention_days` days. Returns how many partitions were dropped.
pub(crate) async fn maintain(s: &Shared, now: i64, retention_days: u32) -> Result<usize> {
    let today = now.div_euclid(DAY);
    let ahead: Vec<i64> = (today - 1..=today + AHEAD_DAYS).collect();
    let keep_from = (retention_days > 0).then(|| {
        let cutoff = now - i64::from(retention_days) * DAY;
        cutoff.div_euclid(DAY) * DAY
    });
    s.partitions
        .keep_from
        .store(keep_from.unwrap_or(i64::MIN), Ordering::Relaxed);
    ensure(s, &ahead).await?;
    let Some(keep_from) = keep_from else {
        return Ok(0);
    };
    let old: Vec<i64> = list(s)
        .await?
        .into_iter()
        .filter(|d| (d + 1) * DAY <= keep_from)
        .collect();
    if old.is_empty() {
        return Ok(0);
    }
    let mut c = s.conn().await?;
    let tx = c.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&locks::PARTITIONS])
        .await?;
    for day in &old {
        tx.batch_execute(&format!("DROP TABLE IF EXISTS {}", name(*day)))
            .await?;
    }
    tx.commit().await?;
    for day in &old {
        s.partitions.set(*day, false);
    }
    tracing::info!(
        dropped = old.len(),
        retention_days,
        "old telemetry partitions dropped"
    );
    Ok(old.len())
}

/// How long [`truncate_emptied`] waits for a partition's exclusive lock: readers that scan it
/// queue behind the waiting `TRUNCATE`, so the wait is kept short and the partition skipped.
const TRUNCATE_LOCK_TIMEOUT: &str = "200ms";

/// Truncates the partitions of `days` that hold no row (every record sealed into chunks), so
/// their indexes shrink to empty ones: `DELETE` and `VACUUM` leave an index at its largest size.
/// Each under its exclusive lock, checked empty under it, so no record inserted meanwhile is
/// lost; a partition whose lock is not had in [`TRUNCATE_LOCK_TIMEOUT`], or that is gone, is
/// skipped. Returns how many were truncated.
pub(crate) async fn truncate_emptied(s: &Shared, days: &[i64]) -> Result<usize> {
    let mut c = s.conn().await?;
    let mut truncated = 0;
    for day in days {
        let table = name(*day);
        let tx = c.transaction().await?;
        tx.batch_execute(&format!(
            "SET LOCAL lock_timeout = '{TRUNCATE_LOCK_TIMEOUT}'"
        ))
        .await?;
        match tx
            .batch_execute(&format!("LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
            .await
        {
            Ok(()) => {}
            Err(e)
                if e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE)
                    || e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) =>
            {
                tracing::debug!(partition = %table, error = %e, "emptied partition not truncated");
                continue; // the dropped transaction rolls back
            }
            Err(e) => return Err(e.into()),
        }
        let empty: bool = tx
            .query_one(&format!("SELECT NOT EXISTS (SELECT 1 FROM {table})"), &[])
            .await?
            .get(0);
        if empty {
            tx.batch_execute(&format!("TRUNCATE {table}")).await?;
            truncated += 1;
        }
        tx.commit().await?;
    }
    Ok(truncated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(name(0), "telemetry_19700101");
        assert_eq!(name(1_767_225_600 / DAY), "telemetry_20260101");
        assert_eq!(name(951_782_400 / DAY), "telemetry_20000229");
        for day in [-1000, -1, 0, 1, 11_016, 20_454, 50_000] {
            assert_eq!(parse_name(&name(day)), Some(day));
        }
        for bad in [
            "telemetry",
            "telemetry_2026010",
            "telemetry_20260230",
            "x_20260101",
        ] {
            assert_eq!(parse_name(bad), None, "{bad}");
        }
    }
}
