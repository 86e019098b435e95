//! Telemetry in SQLite: `INSERT OR IGNORE` on the (device, boot, seq) primary key makes a
//! retransmitted record a no-op, and a record already sealed into a chunk
//! ([`crate::storage::chunk`]) is skipped before it; the records it stored are rolled up
//! ([`crate::storage::rollup`], 15 minutes and days) in the same transaction. Reads merge the
//! chunks and the rows; [`TelemetryStore::seal_closed`] moves closed days into chunks.

use super::{u32_col, Sqlite};
use crate::storage::chunk::{self, ChunkCursor, ChunkMeta, StoredChunk};
use crate::storage::rollup::{rollups_of, upsert_sql, Resolution};
use crate::storage::schema::Dialect;
use crate::storage::telemetry::{day_of, SEAL_BATCH_RECORDS};
use crate::storage::telemetry::{
    page_sql, page_start, TelemetryKey, TelemetryQuery, TelemetryRow, TelemetryStore,
};
use crate::storage::{Error, Result};
use rusqlite::types::Value;
use rusqlite::{params, Connection, TransactionBehavior};
use std::collections::HashSet;

/// Decodes a row selected with [`chunk::CHUNK_COLUMNS`].
pub(super) fn chunk_of(r: &rusqlite::Row<'_>) -> Result<StoredChunk> {
    Ok(StoredChunk {
        meta: chunk_meta_of(r)?,
        data: r.get(7)?,
    })
}

/// The columns before the blob of a row selected with [`chunk::CHUNK_COLUMNS`].
pub(super) fn chunk_meta_of(r: &rusqlite::Row<'_>) -> Result<ChunkMeta> {
    Ok(ChunkMeta {
        device_id: u32_col(r.get(0)?, "device id")?,
        boot: u32_col(r.get(1)?, "boot")?,
        first_seq: u32_col(r.get(2)?, "seq")?,
        last_seq: u32_col(r.get(3)?, "seq")?,
        start_time: r.get(4)?,
        end_time: r.get(5)?,
        records: u32_col(r.get(6)?, "record count")?,
    })
}

/// Every chunk a statement selects.
fn chunks(
    stmt: &mut rusqlite::CachedStatement<'_>,
    p: impl rusqlite::Params,
) -> Result<Vec<StoredChunk>> {
    let mut rows = stmt.query(p)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(chunk_of(r)?);
    }
    Ok(out)
}

/// The chunk walk of a read ([`chunk::ChunkWalk`]) on `conn`.
pub(super) fn walk(
    conn: &Connection,
) -> impl FnMut(u32, ChunkCursor, usize, i64, i64) -> Result<Vec<StoredChunk>> + '_ {
    move |device, (t, b, s), limit, from, to| {
        let mut stmt = conn.prepare_cached(&chunk::walk_sql("?"))?;
        chunks(
            &mut stmt,
            params![
                device,
                t,
                b,
                s,
                crate::storage::sql_limit(limit),
                from,
                to,
                from.saturating_sub(chunk::MAX_SPAN_S)
            ],
        )
    }
}

/// The (device, boot, seq) of the records of `rows` that are sealed in a chunk already.
fn sealed_among(conn: &Connection, rows: &[TelemetryRow]) -> Result<HashSet<(u32, u32, u32)>> {
    let mut stmt = conn.prepare_cached(&chunk::covering_sql("?"))?;
    let mut found = Vec::new();
    for (device, boot, lo, hi) in chunk::seq_ranges(rows) {
        found.extend(chunks(&mut stmt, params![device, boot, lo, hi])?);
    }
    chunk::sealed_keys(&found)
}

/// One keyset page of a device's records from the table `sql` reads (a `page_sql` of
/// `crate::storage::telemetry` or `crate::storage::wide`, numbered `?`): the rows after `after`
/// in `q`'s range, each made by `convert`. Shared by the narrow and the wide records.
pub(super) fn keyset_page<T>(
    conn: &Connection,
    sql: &str,
    q: &TelemetryQuery,
    after: Option<TelemetryKey>,
    convert: impl Fn(&rusqlite::Row<'_>) -> Result<T>,
) -> Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let (time, boot, seq) = page_start(q, after);
    let limit = crate::storage::sql_limit(q.limit);
    let mut rows = stmt.query(params![q.device_id, time, boot, seq, q.to, limit])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(convert(r)?);
    }
    Ok(out)
}

/// Decodes a row selected with [`crate::storage::telemetry::COLUMNS`].
pub(super) fn record_of(r: &rusqlite::Row<'_>) -> Result<TelemetryRow> {
    let channels: i64 = r.get(4)?;
    let channels =
        u8::try_from(channels).map_err(|_| Error::Corrupt(format!("channel mask {channels}")))?;
    let mut values = [0i32; 8];
    for (i, v) in values.iter_mut().enumerate() {
        let x: Option<i64> = r.get(5 + i)?;
        *v = x.map_or(Ok(0), |x| {
            i32::try_from(x).map_err(|_| Error::Corrupt(format!("value {x}")))
        })?;
    }
    Ok(TelemetryRow {
        device_id: u32_col(r.get(0)?, "device id")?,
        boot: u32_col(r.get(1)?, "boot")?,
        seq: u32_col(r.get(2)?, "seq")?,
        time: r.get(3)?,
        channels,
        values,
    })
}

/// Stores `rows` in `tx` as the per-device tables hold them: a record sealed into a chunk
/// already or stored already is skipped, the others inserted and rolled up (15 minutes and
/// days). Returns the records it stored. The inbox's fold ([`super::inbox`]) calls it with the
/// records of many commits at once, sorted by device.
pub(super) fn store_rows(tx: &Connection, rows: &[TelemetryRow]) -> Result<Vec<TelemetryRow>> {
    let mut new = Vec::new();
    if rows.is_empty() {
        return Ok(new);
    }
    let sealed = sealed_among(tx, rows)?;
    let mut stmt = tx.prepare_cached(
        "INSERT OR IGNORE INTO telemetry
         (device_id, boot, seq, time, channels,
          power_w, energy_wh, water_cc, air_cc, relays, ch5, ch6, ch7)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?;
    for r in rows {
        if sealed.contains(&(r.device_id, r.boot, r.seq)) {
            continue;
        }
        let v = |ch: u8| r.get(ch).map_or(Value::Null, |x| Value::Integer(x.into()));
        let stored = stmt.execute(params![
            r.device_id,
            r.boot,
            r.seq,
            r.time,
            r.channels,
            v(0),
            v(1),
            v(2),
            v(3),
            v(4),
            v(5),
            v(6),
            v(7)
        ])?;
        if stored > 0 {
            new.push(*r);
        }
    }
    for resolution in Resolution::ALL {
        let mut merge = tx.prepare_cached(&upsert_sql(
            Dialect::Sqlite,
            resolution,
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,
                     $16, $17, $18, $19, $20, $21, $22, $23)",
        ))?;
        for u in rollups_of(&new, resolution) {
            merge.execute(rusqlite::params_from_iter(u.values()))?;
        }
    }
    Ok(new)
}

/// The records of `rows` that are neither sealed into a chunk nor stored in `telemetry`
/// (checked in `tx`); the inbox ([`super::inbox`]) excludes those it holds itself.
pub(super) fn not_stored(tx: &Connection, rows: &[TelemetryRow]) -> Result<Vec<TelemetryRow>> {
    let sealed = sealed_among(tx, rows)?;
    let mut exists = tx.prepare_cached(
        "SELECT 1 FROM telemetry WHERE device_id = ?1 AND boot = ?2 AND seq = ?3",
    )?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        if !sealed.contains(&(r.device_id, r.boot, r.seq))
            && !exists.exists(params![r.device_id, r.boot, r.seq])?
        {
            out.push(*r);
        }
    }
    Ok(out)
}

impl TelemetryStore for Sqlite {
    fn insert_telemetry_new(&self, rows: &[TelemetryRow]) -> Result<Vec<TelemetryRow>> {
        self.inbox_append(rows)
    }

    fn telemetry_page(
        &self,
        q: &TelemetryQuery,
        after: Option<TelemetryKey>,
    ) -> Result<Vec<TelemetryRow>> {
        let conn = self.telemetry_reader()?;
        let table_page = keyset_page(&conn, &page_sql("?"), q, after, record_of)?;
        let mut chunks = walk(&conn);
        chunk::merged_page(&mut chunks, q, after, table_page)
    }

    fn telemetry_count(&self, device_id: u32) -> Result<u64> {
        let sealed: i64 = self.telemetry_reader()?.query_row(
            "SELECT COALESCE(SUM(records), 0) FROM telemetry_chunk WHERE device_id = ?1",
            params![device_id],
            |r| r.get(0),
        )?;
        Ok(self.rows_of_device("telemetry", device_id)? + sealed.max(0) as u64)
    }

    fn first_record_time(&self, device_id: u32) -> Result<Option<i64>> {
        Ok(self.telemetry_reader()?.query_row(
            &crate::storage::series::sqlite_params(crate::storage::telemetry::FIRST_TIME_SQL),
            params![device_id],
            |r| r.get(0),
        )?)
    }

    fn seal_closed(&self, now: i64) -> Result<u64> {
        // The inbox's records belong to what this reads and rewrites.
        self.fold_inbox()?;
        let before = chunk::sealable_before(now);
        let devices: Vec<i64> = self
            .writer()?
            .prepare("SELECT DISTINCT device_id FROM telemetry WHERE time < ?1")?
            .query_map(params![before], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let mut devices = devices.into_iter().peekable();
        let mut sealed = 0;
        // One transaction per batch, the writer connection released between them so that
        // ingest commits in between a long first pass.
        while devices.peek().is_some() {
            let mut conn = self.writer()?;
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut in_tx = 0;
            while in_tx < SEAL_BATCH_RECORDS {
                let Some(&device) = devices.peek() else {
                    break;
                };
                let oldest: Option<i64> = tx.query_row(
                    "SELECT MIN(time) FROM telemetry WHERE device_id = ?1 AND time < ?2",
                    params![device, before],
                    |r| r.get(0),
                )?;
                match oldest {
                    Some(t) => in_tx += seal_day(&tx, device, day_of(t))?,
                    None => {
                        devices.next();
                    }
                }
            }
            tx.commit()?;
            sealed += in_tx;
        }
        if sealed > 0 {
            tracing::info!(
                records = sealed,
                "raw telemetry of closed days sealed into chunks"
            );
        }
        Ok(sealed)
    }
}

/// Seals the records of `device` on the UTC day starting at `day` in `tx`: its chunks
/// inserted, its rows deleted. Returns how many records.
fn seal_day(tx: &Connection, device: i64, day: i64) -> Result<u64> {
    let end = day + chunk::DAY_S;
    let rows: Vec<TelemetryRow> = {
        let mut stmt = tx.prepare_cached(&format!(
            "SELECT {} FROM telemetry WHERE device_id = ?1 AND time >= ?2 AND time < ?3",
            crate::storage::telemetry::COLUMNS
        ))?;
        let mut rows = stmt.query(params![device, day, end])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            out.push(record_of(r)?);
        }
        out
    };
    let mut insert = tx.prepare_cached(&format!(
        "INSERT INTO telemetry_chunk ({}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        chunk::CHUNK_COLUMNS
    ))?;
    for c in chunk::seal(&rows)? {
        let m = c.meta;
        insert.execute(params![
            m.device_id,
            m.boot,
            m.first_seq,
            m.last_seq,
            m.start_time,
            m.end_time,
            m.records,
            c.data
        ])?;
    }
    tx.prepare_cached("DELETE FROM telemetry WHERE device_id = ?1 AND time >= ?2 AND time < ?3")?
        .execute(params![device, day, end])?;
    Ok(rows.len() as u64)
}

impl Sqlite {
    /// Deletes the raw records (rows and chunks) older than `keep_from` (a day start); a chunk
    /// goes once its last record is older. Returns how many records went.
    pub(super) fn expire_telemetry(&self, keep_from: i64) -> Result<u64> {
        // The inbox's records belong to what this reads and rewrites.
        self.fold_inbox()?;
        let mut conn = self.writer()?;
        let tx = conn.transaction()?;
        let rows = tx.execute("DELETE FROM telemetry WHERE time < ?1", params![keep_from])?;
        let sealed: i64 = tx.query_row(
            "SELECT COALESCE(SUM(records), 0) FROM telemetry_chunk WHERE end_time < ?1",
            params![keep_from],
            |r| r.get(0),
        )?;
        tx.execute(
            "DELETE FROM telemetry_chunk WHERE end_time < ?1",
            params![keep_from],
        )?;
        tx.commit()?;
        Ok(rows as u64 + sealed.max(0) as u64)
    }
}

impl Sqlite {
    /// How many rows of `table` (a table of records keyed by `device_id`) a device has.
    pub(super) fn rows_of_device(&self, table: &'static str, device_id: u32) -> Result<u64> {
        let conn = self.telemetry_reader()?;
        let n: i64 = conn.query_row(
            &format!("SELECT COUNT(*) FROM {table} WHERE device_id = ?1"),
            params![device_id],
            |r| r.get(0),
        )?;
        Ok(n.max(0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use crate::storage::chunk::{DAY_S, GRACE_S};
    use crate::storage::sqlite::tests::prepare;
    use crate::storage::{DeviceStore, NewDevice, TelemetryQuery, TelemetryRow, TelemetryStore};
    use tek_proto::crypto::Key;

    /// A seal that fails half-way (here: a chunk row in the way of the second device-day) rolls
    /// back whole: no record is lost from the table, none is in a chunk twice, and the next pass
    /// (once the obstacle is gone) seals everything — what a kill -9 during sealing leaves too,
    /// since the rows and the chunks change in one transaction.
    #[test]
    fn a_failed_seal_loses_nothing() {
        let (_dir, db) = prepare();
        let day = 20_000 * DAY_S;
        db.add_devices(
            &[NewDevice {
                id: 1,
                name: String::new(),
                key: Key([1; 16]),
            }],
            0,
        )
        .unwrap();
        let rows: Vec<TelemetryRow> = (0..2 * 1440u32)
            .map(|m| TelemetryRow {
                device_id: 1,
                boot: 1,
                seq: m,
                time: day + i64::from(m) * 60,
                channels: 0b11,
                values: [m as i32, 7, 0, 0, 0, 0, 0, 0],
            })
            .collect();
        db.insert_telemetry(&rows).unwrap();
        // Into the table (out of the inbox) before the stray chunk is there to refuse them.
        db.fold_inbox().unwrap();
        // A stray chunk with the key the second day's chunk will have.
        db.writer()
            .unwrap()
            .execute(
                "INSERT INTO telemetry_chunk VALUES (1, 1, 1440, 1440, ?1, ?1, 1, X'01')",
                [day + DAY_S],
            )
            .unwrap();
        let now = day + 2 * DAY_S + GRACE_S;
        assert!(db.seal_closed(now).is_err());
        let table: i64 = db
            .writer()
            .unwrap()
            .query_row("SELECT COUNT(*) FROM telemetry", [], |r| r.get(0))
            .unwrap();
        assert_eq!(table, 2 * 1440, "every row still in the table");
        db.writer()
            .unwrap()
            .execute("DELETE FROM telemetry_chunk", [])
            .unwrap();
        assert_eq!(db.seal_closed(now).unwrap(), 2 * 1440);
        let all = db
            .telemetry(&TelemetryQuery {
                device_id: 1,
                from: 0,
                to: i64::MAX,
                limit: 10_000,
            })
            .unwrap();
        assert_eq!(all, rows);
        assert_eq!(db.telemetry_count(1).unwrap(), 2 * 1440);
    }
}
