//! Wide telemetry records in SQLite ([`crate::storage::wide`]): `INSERT OR IGNORE` on the
//! (device, boot, seq) primary key makes a retransmitted record a no-op, as for telemetry; the
//! records it stored are rolled up ([`crate::storage::wide_rollup`]) in the same transaction.

use super::{u32_col, Sqlite};
use crate::storage::schema::Dialect;
use crate::storage::series::sqlite_params;
use crate::storage::telemetry::{TelemetryKey, TelemetryQuery};
use crate::storage::wide::{latest_sql, page_sql, WideRow, WideStore, WideValues};
use crate::storage::wide_rollup::{
    rollups_of, upsert_sql, ChannelAgg, RollupQuery, BACKFILL_PAGE, BACKFILL_ROWS, BUCKETS,
};
use crate::storage::Result;
use rusqlite::params;

/// A row of [`crate::storage::wide::COLUMNS`].
fn convert(r: &rusqlite::Row<'_>) -> Result<WideRow> {
    let version: Option<i64> = r.get(4)?;
    let mask: Vec<u8> = r.get(5)?;
    let vals: Vec<u8> = r.get(6)?;
    Ok(WideRow {
        device_id: u32_col(r.get(0)?, "device id")?,
        boot: u32_col(r.get(1)?, "boot")?,
        seq: u32_col(r.get(2)?, "seq")?,
        time: r.get(3)?,
        config_version: version
            .map(|v| u32_col(v, "configuration version"))
            .transpose()?,
        values: WideValues::decode(&mask, &vals)?,
    })
}

/// Merges the rollups of `new` (rows just stored) in the transaction that stored them.
fn merge_rollups(tx: &rusqlite::Connection, new: &[WideRow]) -> Result<()> {
    let mut merge = tx.prepare_cached(&upsert_sql(
        Dialect::Sqlite,
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    ))?;
    for u in rollups_of(new) {
        merge.execute(rusqlite::params_from_iter(u.values()))?;
    }
    Ok(())
}

/// Migration 14's Rust step ([`crate::storage::schema::RustStep::WideRollups`]): rolls up the
/// wide records already stored, page by page in key order, in the migration's transaction.
pub(super) fn backfill_rollups(tx: &rusqlite::Transaction<'_>) -> Result<()> {
    let mut page = tx.prepare(&sqlite_params(BACKFILL_PAGE))?;
    let mut after = (-1i64, -1i64, -1i64);
    loop {
        let rows: Vec<WideRow> = page
            .query(params![after.0, after.1, after.2, BACKFILL_ROWS])?
            .and_then(convert)
            .collect::<Result<_>>()?;
        merge_rollups(tx, &rows)?;
        match rows.last() {
            Some(r) if rows.len() as i64 == BACKFILL_ROWS => {
                after = (r.device_id.into(), r.boot.into(), r.seq.into());
            }
            _ => return Ok(()),
        }
    }
}

/// Stores `rows` in `tx` as `telemetry_wide` holds them: a record stored already is skipped,
/// the others inserted and rolled up. Returns the records it stored. The inbox's fold
/// ([`super::inbox`]) calls it with the records of many commits at once, sorted by device.
pub(super) fn store_rows(tx: &rusqlite::Connection, rows: &[WideRow]) -> Result<Vec<WideRow>> {
    let mut new = Vec::new();
    if rows.is_empty() {
        return Ok(new);
    }
    {
        let mut stmt = tx.prepare_cached(
            "INSERT OR IGNORE INTO telemetry_wide
             (device_id, boot, seq, time, config_version, mask, vals)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for r in rows {
            let (mask, vals) = r.values.encode();
            let stored = stmt.execute(params![
                r.device_id,
                r.boot,
                r.seq,
                r.time,
                r.config_version,
                mask,
                vals
            ])?;
            if stored > 0 {
                new.push(r.clone());
            }
        }
    }
    merge_rollups(tx, &new)?;
    Ok(new)
}

/// The records of `rows` not stored in `telemetry_wide` (checked in `tx`); the inbox
/// ([`super::inbox`]) excludes those it holds itself.
pub(super) fn not_stored(tx: &rusqlite::Connection, rows: &[WideRow]) -> Result<Vec<WideRow>> {
    let mut exists = tx.prepare_cached(
        "SELECT 1 FROM telemetry_wide WHERE device_id = ?1 AND boot = ?2 AND seq = ?3",
    )?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        if !exists.exists(params![r.device_id, r.boot, r.seq])? {
            out.push(r.clone());
        }
    }
    Ok(out)
}

impl WideStore for Sqlite {
    fn insert_wide_new(&self, rows: &[WideRow]) -> Result<Vec<WideRow>> {
        self.inbox_append(rows)
    }

    fn wide_channel_rollups(&self, q: &RollupQuery) -> Result<Vec<ChannelAgg>> {
        let conn = self.telemetry_reader()?;
        let mut stmt = conn.prepare_cached(&sqlite_params(BUCKETS))?;
        let rows = stmt.query_map(rusqlite::params_from_iter(q.params()), |r| {
            let mut c = [0i64; 7];
            for (i, x) in c.iter_mut().enumerate() {
                *x = r.get(i)?;
            }
            Ok(ChannelAgg::from_row(c))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn wide_page(&self, q: &TelemetryQuery, after: Option<TelemetryKey>) -> Result<Vec<WideRow>> {
        let conn = self.telemetry_reader()?;
        super::telemetry::keyset_page(&conn, &page_sql("?"), q, after, convert)
    }

    fn latest_wide(&self, device_id: u32) -> Result<Option<WideRow>> {
        let conn = self.telemetry_reader()?;
        let mut stmt = conn.prepare_cached(&latest_sql("?"))?;
        let mut rows = stmt.query(params![device_id])?;
        rows.next()?.map(convert).transpose()
    }

    fn wide_count(&self, device_id: u32) -> Result<u64> {
        self.rows_of_device("telemetry_wide", device_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::wide_rollup::TABLE;
    use crate::storage::TelemetryRow;
    use crate::storage::TelemetryStore;

    /// Pool-like records: 16 channels (the pool's five, eleven plant-room meters with noise).
    fn record(seq: u32) -> Vec<Option<i32>> {
        let s = seq as i32;
        let noise = |k: i32| (s.wrapping_mul(7919).wrapping_add(k * 31)).rem_euclid(9) - 4;
        let mut v = vec![
            Some(1450 + 10 * noise(0)), // power, W
            Some(1_234_567 + 24 * s),   // energy meter, Wh
            Some(2650 + noise(1)),      // water, 0.01 degC
            Some(1830 + 3 * noise(2)),  // air, 0.01 degC
            Some(3),                    // relays
        ];
        v.extend((0..11).map(|k| Some(2300 + 100 * k + noise(k + 3))));
        v
    }

    /// Bytes on disk the database grows by per record, measured by its page count; and the same
    /// once the rows of `rollups` (if any) are deleted: the records alone.
    fn bytes_per_record(rollups: Option<&str>, insert: impl Fn(&Sqlite, u32, u32)) -> (f64, f64) {
        const N: u32 = 20_000;
        let dir = tempfile::tempdir().unwrap();
        let db = Sqlite::open_dir(dir.path()).unwrap();
        let pages = |db: &Sqlite| -> i64 {
            let c = db.writer().unwrap();
            c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
            let n: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap();
            let free: i64 = c
                .query_row("PRAGMA freelist_count", [], |r| r.get(0))
                .unwrap();
            let size: i64 = c.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap();
            (n - free) * size
        };
        let before = pages(&db);
        for start in (0..N).step_by(500) {
            insert(&db, start, 500);
        }
        let all = (pages(&db) - before) as f64 / f64::from(N);
        if let Some(table) = rollups {
            let c = db.writer().unwrap();
            c.execute_batch(&format!("DELETE FROM {table}")).unwrap();
        }
        (all, (pages(&db) - before) as f64 / f64::from(N))
    }

    /// Issue 21 wants few bytes per value: a 16-channel wide record, key, time, configuration
    /// version and time index included, with and without its rollups (one row per channel and
    /// quarter hour, so per record about 16 / 15 of a rollup row at one record a minute),
    /// against a narrow record of the five pool channels with its rollups.
    #[test]
    fn a_sixteen_channel_record_costs_few_bytes() {
        let (wide, records) = bytes_per_record(Some(TABLE), |db, start, n| {
            let rows: Vec<WideRow> = (start..start + n)
                .map(|s| WideRow {
                    device_id: 1,
                    boot: 1,
                    seq: s,
                    time: 1_767_225_600 + 60 * i64::from(s),
                    config_version: Some(3),
                    values: WideValues::from_options(&record(s)),
                })
                .collect();
            assert_eq!(db.insert_wide(&rows).unwrap(), u64::from(n));
        });
        let (narrow, _) = bytes_per_record(None, |db, start, n| {
            let rows: Vec<TelemetryRow> = (start..start + n)
                .map(|s| {
                    let v = record(s);
                    TelemetryRow {
                        device_id: 1,
                        boot: 1,
                        seq: s,
                        time: 1_767_225_600 + 60 * i64::from(s),
                        channels: 0b1_1111,
                        values: [0, 1, 2, 3, 4, 5, 6, 7].map(|i| v[i].unwrap_or(0)),
                    }
                })
                .collect();
            assert_eq!(db.insert_telemetry(&rows).unwrap(), u64::from(n));
        });
        eprintln!(
            "bytes per record: wide 16 channels {wide:.1} ({records:.1} without its rollups), \
             narrow 5 channels (+ rollups) {narrow:.1}"
        );
        assert!(records < 90.0, "{records} bytes per 16-channel record");
        // A rollup row is about 45 bytes (key of four integers, six figures, packed keys of
        // six bytes each), 16 of them per 15 records.
        assert!(
            wide - records < 55.0,
            "{} bytes of rollups per record",
            wide - records
        );
    }
}
