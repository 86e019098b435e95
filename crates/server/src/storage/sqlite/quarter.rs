//! Sealed 15-minute rollups in SQLite ([`crate::storage::quarter`]): the reads that merge rows
//! and blobs in one snapshot, the sealing pass and the retention.

use super::Sqlite;
use crate::storage::energy::MeterData;
use crate::storage::quarter::{self, Part, QuarterStore};
use crate::storage::rollup::{Interval, COLUMN_COUNT};
use crate::storage::series::sqlite_params;
use crate::storage::Result;
use rusqlite::{params, Connection, OptionalExtension};

fn interval_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<[Option<i64>; COLUMN_COUNT]> {
    let mut v = [None; COLUMN_COUNT];
    for (i, x) in v.iter_mut().enumerate() {
        *x = r.get(i)?;
    }
    Ok(v)
}

/// Device `device`'s 15-minute rows with `a <= start < b` and its sealed days over them: what
/// both readers below start from. Call inside a read transaction so both reads see one
/// snapshot.
fn rows_and_days(
    conn: &Connection,
    device: u32,
    a: i64,
    b: i64,
) -> Result<(Vec<Interval>, quarter::DayBlobs)> {
    let mut stmt = conn.prepare_cached(&sqlite_params(&quarter::rows_sql()))?;
    let rows = stmt
        .query_map(params![device, a, b], interval_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let rows = rows
        .iter()
        .map(quarter::interval_from_values)
        .collect::<Result<Vec<_>>>()?;
    let (d0, d1) = quarter::days_of(a, b);
    let mut stmt = conn.prepare_cached(&sqlite_params(quarter::BLOBS))?;
    let blobs = stmt
        .query_map(params![device, d0, d1], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<quarter::DayBlobs>>()?;
    Ok((rows, blobs))
}

/// Device `device`'s intervals with `a <= start < b`, rows and sealed days merged, ordered by
/// start. Call inside a read transaction so both reads see one snapshot.
pub(super) fn intervals(
    conn: &Connection,
    device: u32,
    a: i64,
    b: i64,
    part: Part,
) -> Result<Vec<Interval>> {
    let (rows, blobs) = rows_and_days(conn, device, a, b)?;
    let mut all = quarter::merged(device, &blobs, rows, part)?;
    all.retain(|i| i.rollup.start >= a && i.rollup.start < b);
    Ok(all)
}

/// Device `device`'s meter data of `[from, to)` from its rows and sealed days over
/// [`quarter::energy_window`], decoded day by day ([`quarter::meter_data_sealed`]). Call inside
/// a read transaction so both reads see one snapshot.
/// The data is lent to `f` ([`quarter::meter_data_sealed_with`]: a remembered walk is not
/// copied).
pub(super) fn meter_data_with(
    conn: &Connection,
    device: u32,
    from: i64,
    to: i64,
    f: &mut dyn FnMut(&MeterData),
) -> Result<()> {
    let (a, b) = quarter::energy_window(from, to);
    let (rows, blobs) = rows_and_days(conn, device, a, b)?;
    let rows: Vec<_> = rows.into_iter().map(|i| i.rollup).collect();
    quarter::meter_data_sealed_with(device, &blobs, &rows, from, to, f)
}

impl QuarterStore for Sqlite {
    fn seal_quarter_rollups(&self, now: i64) -> Result<u64> {
        // The inbox's records belong to what this reads and rewrites.
        self.fold_inbox()?;
        let before = quarter::seal_before(now);
        let take = sqlite_params(&quarter::take_sql());
        let mut sealed = 0u64;
        loop {
            // One transaction per batch: the writer is free for ingest between them.
            let mut conn = self.writer()?;
            let tx = conn.transaction()?;
            let rows = tx
                .prepare_cached(&take)?
                .query_map(params![before, quarter::SEAL_BATCH_ROWS], interval_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            if rows.is_empty() {
                return Ok(sealed);
            }
            sealed += rows.len() as u64;
            let rows = rows
                .iter()
                .map(quarter::interval_from_values)
                .collect::<Result<Vec<_>>>()?;
            for ((device, day), group) in quarter::by_day(rows) {
                let old: Option<Vec<u8>> = tx
                    .prepare_cached(&sqlite_params(quarter::BLOB))?
                    .query_row(params![device, day], |r| r.get(0))
                    .optional()?;
                let blob = quarter::reseal(device, day, old.as_deref(), &group)?;
                tx.prepare_cached(&sqlite_params(quarter::PUT_BLOB))?
                    .execute(params![device, day, blob])?;
            }
            tx.commit()?;
        }
    }

    fn expire_quarter_rollups(&self, now: i64, days: u32) -> Result<()> {
        // The inbox's records belong to what this reads and rewrites.
        self.fold_inbox()?;
        let Some(horizon) = quarter::retention_horizon(now, days) else {
            return Ok(());
        };
        let mut conn = self.writer()?;
        let tx = conn.transaction()?;
        for sql in quarter::EXPIRE {
            tx.execute(&sqlite_params(sql), params![horizon])?;
        }
        tx.commit()?;
        Ok(())
    }
}

// Tested through `storage::suite` (every backend runs the same checks).
