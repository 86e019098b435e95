//! Telemetry in SQLite: `INSERT OR IGNORE` on the (device, boot, seq) primary key makes a
//! retransmitted record a no-op, and a record already sealed into a chunk
//! ([`crate::storage::chunk`]) is skipped before it; the records it stored are rolled up
//! ([`crate::storage::rollup`], 15 minutes and days) in the same transaction. Reads merge the
//! chunks and the rows; [`TelemetryStore::seal_closed`] moves closed days into chunks. A fold
//! with many new records of one (device, boot, day) writes them as a chunk rather than rows
//! ([`store_rows`], issue 21: disk written per datagram), and sealing merges a closed day's
//! chunks and rows into one chunk per boot.

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
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};

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

/// A run of at least this many new records of one (device, boot, UTC day) in a fold is stored
/// as one chunk instead of a row each (issue 21, disk written per datagram): a chunk is a
/// few bytes per record appended to `telemetry_chunk` plus an entry in each of its three
/// indexes, where rows write the device's pages of `telemetry` and of its time index, each
/// page to the log and again by the checkpoint. Below it, a chunk's fixed cost (a length and a
/// pcodec header per column, the index entries) outweighs what it saves, and a quiet fleet's
/// fold (about one record per device) stays rows.
pub(super) const FOLD_CHUNK_MIN_RECORDS: usize = 32;

/// [`FOLD_CHUNK_MIN_RECORDS`], unless the environment sets `TEK_FOLD_CHUNK_MIN_RECORDS` (0: the
/// fold never writes chunks). The end-to-end scripts set 0: their checks read every record of
/// the open day from the `telemetry` table with plain SQL, which cannot decode a chunk.
fn fold_chunk_min_records() -> usize {
    static MIN: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *MIN.get_or_init(|| {
        match std::env::var("TEK_FOLD_CHUNK_MIN_RECORDS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
        {
            Some(0) => usize::MAX,
            Some(n) => n,
            None => FOLD_CHUNK_MIN_RECORDS,
        }
    })
}

/// Stores `rows` in `tx` as the per-device tables hold them: a record sealed into a chunk
/// already or stored already is skipped (the first of a repeated key wins), the others stored
/// and rolled up (15 minutes and days). A (device, boot, UTC day) with at least
/// [`FOLD_CHUNK_MIN_RECORDS`] new records is stored as chunks ([`chunk::seal`]), the rest as
/// rows; [`TelemetryStore::seal_closed`] later merges a closed day's chunks and rows into one
/// chunk. Returns the records it stored, by (device, boot, day). The inbox's fold
/// ([`super::inbox`]) calls it with the records of many commits at once, sorted by device.
pub(super) fn store_rows(tx: &Connection, rows: &[TelemetryRow]) -> Result<Vec<TelemetryRow>> {
    let mut new = Vec::new();
    if rows.is_empty() {
        return Ok(new);
    }
    let sealed = sealed_among(tx, rows)?;
    let mut seen = HashSet::with_capacity(rows.len());
    let mut runs: BTreeMap<(u32, u32, i64), Vec<TelemetryRow>> = BTreeMap::new();
    for r in rows {
        let key = (r.device_id, r.boot, r.seq);
        if sealed.contains(&key) || !seen.insert(key) {
            continue;
        }
        runs.entry((r.device_id, r.boot, day_of(r.time)))
            .or_default()
            .push(*r);
    }
    let chunk_min = fold_chunk_min_records();
    for ((device, boot, _), run) in runs {
        // Only a run long enough for a chunk pays for the lookup: rows are checked by the
        // INSERT OR IGNORE itself.
        let run = if run.len() >= chunk_min {
            without_rows(tx, device, boot, run)?
        } else {
            run
        };
        if run.len() >= chunk_min {
            insert_chunks(tx, &chunk::seal(&run)?)?;
            new.extend(run);
        } else {
            new.extend(insert_rows(tx, &run)?);
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

/// The records of `run` (one device and boot) that have no row in `telemetry` yet: one range
/// read of the primary key over the run's seqs.
fn without_rows(
    tx: &Connection,
    device: u32,
    boot: u32,
    run: Vec<TelemetryRow>,
) -> Result<Vec<TelemetryRow>> {
    let lo = run.iter().map(|r| r.seq).min().unwrap_or(0);
    let hi = run.iter().map(|r| r.seq).max().unwrap_or(0);
    let mut stmt = tx.prepare_cached(
        "SELECT seq FROM telemetry WHERE device_id = ?1 AND boot = ?2 AND seq BETWEEN ?3 AND ?4",
    )?;
    let mut stored = HashSet::new();
    let mut found = stmt.query(params![device, boot, lo, hi])?;
    while let Some(r) = found.next()? {
        stored.insert(u32_col(r.get(0)?, "seq")?);
    }
    if stored.is_empty() {
        return Ok(run);
    }
    Ok(run
        .into_iter()
        .filter(|r| !stored.contains(&r.seq))
        .collect())
}

/// Inserts `rows` into `telemetry`, skipping those stored already; returns those it inserted.
fn insert_rows(tx: &Connection, rows: &[TelemetryRow]) -> Result<Vec<TelemetryRow>> {
    let mut stmt = tx.prepare_cached(
        "INSERT OR IGNORE INTO telemetry
         (device_id, boot, seq, time, channels,
          power_w, energy_wh, water_cc, air_cc, relays, ch5, ch6, ch7)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?;
    let mut new = Vec::with_capacity(rows.len());
    for r in rows {
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
    Ok(new)
}

/// Inserts `chunks` into `telemetry_chunk`.
fn insert_chunks(tx: &Connection, chunks: &[StoredChunk]) -> Result<()> {
    let mut insert = tx.prepare_cached(&format!(
        "INSERT INTO telemetry_chunk ({}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        chunk::CHUNK_COLUMNS
    ))?;
    for c in chunks {
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
    Ok(())
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
        // Taken before the fold below, so a record appended after it lowers the next pass's.
        let unmerged_from = self.unmerged.take();
        let sealed = self.seal_closed_from(now, unmerged_from);
        match sealed {
            Ok(_) => self.unmerged.done(chunk::sealable_before(now)),
            Err(_) => self.chunks_written_since(unmerged_from),
        }
        sealed
    }
}

/// Where a sealing pass of this process looks for closed days whose chunks are not merged: the
/// first pass after open everywhere, later ones from where the last one ended, or from the
/// earliest day this process appended a record of since the last pass began (a device's backlog
/// may be folded into chunks of days long closed). Chunks another process wrote into days that
/// closed before this pass's bound are merged by this process's next open, or stay as they are
/// (read the same, only less compactly).
#[derive(Debug)]
pub(super) struct UnmergedFrom {
    /// The least time of a record appended since the last pass began (`i64::MAX`: none).
    appended: AtomicI64,
    /// The `before` of the last pass that completed (`i64::MIN`: none yet).
    scanned: AtomicI64,
}

impl Default for UnmergedFrom {
    fn default() -> Self {
        UnmergedFrom {
            appended: AtomicI64::new(i64::MAX),
            scanned: AtomicI64::new(i64::MIN),
        }
    }
}

impl UnmergedFrom {
    /// The time this pass looks from, starting a new count of appended records.
    fn take(&self) -> i64 {
        let appended = self.appended.swap(i64::MAX, Ordering::SeqCst);
        appended.min(self.scanned.load(Ordering::SeqCst))
    }

    /// A pass up to `before` completed.
    fn done(&self, before: i64) {
        self.scanned.fetch_max(before, Ordering::SeqCst);
    }
}

impl Sqlite {
    /// Records of `time` on were appended (or a pass from there failed): the next sealing pass
    /// looks from that day on.
    pub(super) fn chunks_written_since(&self, time: i64) {
        self.unmerged.appended.fetch_min(time, Ordering::SeqCst);
    }

    /// [`TelemetryStore::seal_closed`], looking for unmerged days from `unmerged_from` on.
    fn seal_closed_from(&self, now: i64, unmerged_from: i64) -> Result<u64> {
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
                    Some(t) => {
                        let day = seal_day(&tx, device, day_of(t))?;
                        in_tx += day.records;
                        sealed += day.from_rows;
                    }
                    None => {
                        devices.next();
                    }
                }
            }
            tx.commit()?;
        }
        // Closed days without rows whose chunks are still those the fold wrote (several a day)
        // or a seal and late records' seals: merged into what one seal of the day writes, so
        // a closed day reads and weighs as if it had been sealed once.
        let from = unmerged_from
            .div_euclid(chunk::DAY_S)
            .checked_mul(chunk::DAY_S)
            .unwrap_or(i64::MIN);
        let days = unmerged_days(&*self.writer()?, from, before)?;
        let mut days = days.into_iter().peekable();
        while days.peek().is_some() {
            let mut conn = self.writer()?;
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut in_tx = 0;
            while in_tx < SEAL_BATCH_RECORDS {
                let Some((device, day)) = days.next() else {
                    break;
                };
                let done = seal_day(&tx, device, day)?;
                in_tx += done.records;
                sealed += done.from_rows;
            }
            tx.commit()?;
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

/// What [`seal_day`] did.
struct SealedDay {
    /// Records moved out of the `telemetry` table.
    from_rows: u64,
    /// Records in the day's new chunks (those of its rows and of its former chunks).
    records: u64,
}

/// Seals the records of `device` on the UTC day starting at `day` in `tx`: its rows and its
/// chunks (the fold's, earlier seals') become the chunks one seal of all of them writes (one
/// per boot unless [`chunk::MAX_RECORDS`] cuts it), the rows and the former chunks deleted.
fn seal_day(tx: &Connection, device: i64, day: i64) -> Result<SealedDay> {
    let end = day + chunk::DAY_S;
    let mut records: Vec<TelemetryRow> = {
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
    let from_rows = records.len() as u64;
    // A chunk never spans two days, so those starting in the day are all of the day's.
    let former = {
        let mut stmt = tx.prepare_cached(&format!(
            "SELECT {} FROM telemetry_chunk
             WHERE device_id = ?1 AND start_time >= ?2 AND start_time < ?3",
            chunk::CHUNK_COLUMNS
        ))?;
        chunks(&mut stmt, params![device, day, end])?
    };
    for c in &former {
        records.extend(chunk::decode(&c.meta, &c.data)?);
    }
    // The former chunks go first: a new chunk may begin at the same seq as one of them.
    tx.prepare_cached(
        "DELETE FROM telemetry_chunk WHERE device_id = ?1 AND start_time >= ?2 AND start_time < ?3",
    )?
    .execute(params![device, day, end])?;
    insert_chunks(tx, &chunk::seal(&records)?)?;
    tx.prepare_cached("DELETE FROM telemetry WHERE device_id = ?1 AND time >= ?2 AND time < ?3")?
        .execute(params![device, day, end])?;
    Ok(SealedDay {
        from_rows,
        records: records.len() as u64,
    })
}

/// The closed days from `from` to `before`, as (device, day), whose chunks are not what one
/// seal of the day writes: for some boot, more chunks than [`chunk::MAX_RECORDS`] needs for
/// its records. Reads only the time index of `telemetry_chunk` (a device at a time, found by a
/// seek past the previous one) and, for a day with several chunks, their rows without blobs.
fn unmerged_days(conn: &Connection, from: i64, before: i64) -> Result<Vec<(i64, i64)>> {
    let mut next_device =
        conn.prepare_cached("SELECT MIN(device_id) FROM telemetry_chunk WHERE device_id > ?1")?;
    let mut starts = conn.prepare_cached(
        "SELECT start_time FROM telemetry_chunk
         WHERE device_id = ?1 AND start_time >= ?3 AND start_time < ?2",
    )?;
    let mut of_day = conn.prepare_cached(
        "SELECT boot, records FROM telemetry_chunk
         WHERE device_id = ?1 AND start_time >= ?2 AND start_time < ?3",
    )?;
    let mut out = Vec::new();
    let mut device = i64::MIN;
    while let Some(d) = next_device.query_row(params![device], |r| r.get::<_, Option<i64>>(0))? {
        device = d;
        let mut per_day: BTreeMap<i64, u32> = BTreeMap::new();
        let mut rows = starts.query(params![device, before, from])?;
        while let Some(r) = rows.next()? {
            *per_day.entry(day_of(r.get(0)?)).or_default() += 1;
        }
        for (day, n) in per_day {
            if n < 2 {
                continue;
            }
            // Per boot: (chunks, records).
            let mut boots: HashMap<i64, (u64, u64)> = HashMap::new();
            let mut rows = of_day.query(params![device, day, day + chunk::DAY_S])?;
            while let Some(r) = rows.next()? {
                let records: i64 = r.get(1)?;
                let e = boots.entry(r.get(0)?).or_default();
                e.0 += 1;
                e.1 += records.max(0) as u64;
            }
            let merged = boots
                .values()
                .all(|&(chunks, records)| chunks == records.div_ceil(chunk::MAX_RECORDS as u64));
            if !merged {
                out.push((device, day));
            }
        }
    }
    Ok(out)
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

/// Test support for the checks that take a database back to a schema before chunks (migration
/// 15): every chunk's records back as rows of `telemetry` and the chunks deleted, which is how
/// such a database held every record (the fold writes chunks now, even for an open day).
#[cfg(test)]
pub(crate) fn chunks_back_to_rows(conn: &Connection) -> Result<()> {
    let all = chunks(
        &mut conn.prepare_cached(&format!(
            "SELECT {} FROM telemetry_chunk",
            chunk::CHUNK_COLUMNS
        ))?,
        [],
    )?;
    for c in &all {
        insert_rows(conn, &chunk::decode(&c.meta, &c.data)?)?;
    }
    conn.execute("DELETE FROM telemetry_chunk", [])?;
    Ok(())
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
    use super::FOLD_CHUNK_MIN_RECORDS;
    use crate::storage::chunk::{DAY_S, GRACE_S};
    use crate::storage::sqlite::tests::prepare;
    use crate::storage::sqlite::Sqlite;
    use crate::storage::{
        DeviceStore, NewDevice, SeriesStore, TelemetryKey, TelemetryQuery, TelemetryRow,
        TelemetryStore,
    };
    use tek_proto::crypto::Key;

    const DAY: i64 = 20_000 * DAY_S;

    fn with_devices(ids: &[u32]) -> (tempfile::TempDir, Sqlite) {
        let (dir, db) = prepare();
        let devices: Vec<NewDevice> = ids
            .iter()
            .map(|&id| NewDevice {
                id,
                name: String::new(),
                key: Key([id as u8; 16]),
            })
            .collect();
        db.add_devices(&devices, 0).unwrap();
        (dir, db)
    }

    /// A record of `device` every minute from `day + from_minute`, some without the water
    /// temperature (no value, not 0).
    fn minutes(device: u32, boot: u32, day: i64, from_minute: u32, n: u32) -> Vec<TelemetryRow> {
        (from_minute..from_minute + n)
            .map(|m| {
                let channels = if m % 5 == 0 { 0b1011 } else { 0b1111 };
                let mut values = [0; 8];
                values[0] = 1_000 + (m % 17) as i32;
                values[1] = 50_000 + m as i32 * 3;
                values[2] = 2_600 - (m % 9) as i32;
                values[3] = -40 + device as i32;
                for (ch, v) in values.iter_mut().enumerate() {
                    if channels & (1 << ch) == 0 {
                        *v = 0;
                    }
                }
                TelemetryRow {
                    device_id: device,
                    boot,
                    seq: m,
                    time: day + i64::from(m) * 60,
                    channels,
                    values,
                }
            })
            .collect()
    }

    /// (chunks, rows) of `device` as stored.
    fn stored_as(db: &Sqlite, device: u32) -> (i64, i64) {
        let conn = db.writer().unwrap();
        let count = |table: &str| -> i64 {
            conn.query_row(
                &format!("SELECT COUNT(*) FROM {table} WHERE device_id = ?1"),
                [device],
                |r| r.get(0),
            )
            .unwrap()
        };
        (count("telemetry_chunk"), count("telemetry"))
    }

    /// Every record of `device` (at most 10,000), in the read order.
    fn every_record(db: &Sqlite, device: u32) -> Vec<TelemetryRow> {
        db.telemetry(&TelemetryQuery {
            device_id: device,
            from: 0,
            to: i64::MAX,
            limit: 10_000,
        })
        .unwrap()
    }

    /// Everything a reader sees of `device`: every page of 7 records, the whole range, the
    /// count, the first time, the latest, raw (1-minute) and rolled-up (15-minute, day) chart
    /// buckets and the energy per day.
    fn read_all(db: &Sqlite, device: u32) -> String {
        let q = TelemetryQuery {
            device_id: device,
            from: 0,
            to: i64::MAX,
            limit: 7,
        };
        let mut pages = Vec::new();
        let mut after: Option<TelemetryKey> = None;
        loop {
            let page = db.telemetry_page(&q, after).unwrap();
            let Some(last) = page.last() else { break };
            after = Some(TelemetryKey {
                time: last.time,
                boot: last.boot,
                seq: last.seq,
            });
            pages.extend(page);
        }
        let all = db
            .telemetry(&TelemetryQuery {
                limit: 100_000,
                ..q
            })
            .unwrap();
        assert_eq!(pages, all, "pages join into the whole range");
        format!(
            "{all:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}",
            db.telemetry_count(device).unwrap(),
            db.first_record_time(device).unwrap(),
            db.latest_telemetry(device).unwrap(),
            db.telemetry_buckets(device, DAY - DAY_S, DAY + 3 * DAY_S, 60)
                .unwrap(),
            db.telemetry_buckets(device, DAY - DAY_S, DAY + 3 * DAY_S, 900)
                .unwrap(),
            db.telemetry_buckets(device, DAY - DAY_S, DAY + 3 * DAY_S, DAY_S)
                .unwrap(),
            db.energy_per_day(device, DAY - DAY_S, DAY + 3 * DAY_S)
                .unwrap(),
        )
    }

    /// The same records stored by one fold (many per device: chunks) and by a fold per record
    /// (rows, as a quiet fleet's) read back identically on every read path; a device with few
    /// records in the big fold still gets rows.
    #[test]
    fn a_fold_of_many_records_writes_chunks_and_of_few_rows() {
        let many = minutes(1, 3, DAY, 10, 300);
        let few = minutes(2, 1, DAY, 0, FOLD_CHUNK_MIN_RECORDS as u32 - 1);
        let sent: Vec<TelemetryRow> = many.iter().chain(&few).copied().collect();

        let (_a, chunked) = with_devices(&[1, 2]);
        assert_eq!(chunked.insert_telemetry(&sent).unwrap(), sent.len() as u64);
        chunked.fold_inbox().unwrap();
        assert_eq!(stored_as(&chunked, 1), (1, 0), "one chunk for the run");
        assert_eq!(stored_as(&chunked, 2), (0, few.len() as i64), "rows");

        let (_b, rows) = with_devices(&[1, 2]);
        for r in &sent {
            rows.insert_telemetry(&[*r]).unwrap();
            rows.fold_inbox().unwrap();
        }
        assert_eq!(stored_as(&rows, 1), (0, many.len() as i64));

        for device in [1, 2] {
            assert_eq!(read_all(&chunked, device), read_all(&rows, device));
        }
        assert_eq!(every_record(&chunked, 1), many, "value for value");
    }

    /// Records sent again, whether they are in a fold's chunk or in rows, are neither stored
    /// nor rolled up again, alone or mixed with new ones; a run whose older part has rows
    /// becomes a chunk of only its new records.
    #[test]
    fn retransmissions_of_folded_records_are_stored_once() {
        let (_dir, db) = with_devices(&[1]);
        let all = minutes(1, 3, DAY, 0, 200);
        let fold = |records: &[TelemetryRow]| -> Vec<TelemetryRow> {
            let mut conn = db.writer().unwrap();
            let tx = conn.transaction().unwrap();
            let stored = super::store_rows(&tx, records).unwrap();
            tx.commit().unwrap();
            stored
        };
        // The first 10 as rows (a fold each) ...
        for r in &all[..10] {
            db.insert_telemetry(&[*r]).unwrap();
            db.fold_inbox().unwrap();
        }
        // ... then a fold (as after a crash between a fold and its inbox's emptying, where the
        // inbox's own check did not run) of 0..50: a chunk of only 10..50.
        assert_eq!(fold(&all[..50]), all[10..50].to_vec());
        assert_eq!(stored_as(&db, 1), (1, 10));
        assert_eq!(db.insert_telemetry(&all[..100]).unwrap(), 50);
        db.fold_inbox().unwrap();
        assert_eq!(stored_as(&db, 1), (2, 10));
        let once = read_all(&db, 1);
        // Again, through the inbox (which checks rows and chunks) ...
        assert_eq!(db.insert_telemetry(&all[..100]).unwrap(), 0);
        db.fold_inbox().unwrap();
        assert_eq!(read_all(&db, 1), once);
        // ... and straight into a fold: nothing is stored or rolled up twice.
        assert_eq!(fold(&all[..100]), vec![]);
        assert_eq!(read_all(&db, 1), once);
        assert_eq!(fold(&all[50..150]), all[100..150].to_vec());
        assert_eq!(stored_as(&db, 1), (3, 10));
        assert_eq!(db.insert_telemetry(&all[90..200]).unwrap(), 50);
        db.fold_inbox().unwrap();
        assert_eq!(stored_as(&db, 1), (4, 10));
        let (_fresh, fresh) = with_devices(&[1]);
        fresh.insert_telemetry(&all).unwrap();
        assert_eq!(read_all(&db, 1), read_all(&fresh, 1));
        assert_eq!(db.telemetry_count(1).unwrap(), 200);
    }

    /// A closed day held in several fold chunks (two boots) and rows is sealed into one chunk
    /// per boot holding every record once; the open day's chunk stays; a second pass finds
    /// nothing to do.
    #[test]
    fn sealing_merges_a_closed_days_fold_chunks_and_rows() {
        let (_dir, db) = with_devices(&[1]);
        let folds = [
            minutes(1, 3, DAY, 0, 100),
            minutes(1, 3, DAY, 100, 100),
            minutes(1, 3, DAY, 200, 3),
            minutes(1, 4, DAY, 600, 40),
            minutes(1, 4, DAY, 640, 40),
            minutes(1, 4, DAY, 1440, 50),
        ];
        for f in &folds {
            db.insert_telemetry(f).unwrap();
            db.fold_inbox().unwrap();
        }
        assert_eq!(stored_as(&db, 1), (5, 3));
        let before = read_all(&db, 1);
        let now = DAY + DAY_S + GRACE_S;
        assert_eq!(db.seal_closed(now).unwrap(), 3, "the rows moved");
        assert_eq!(
            stored_as(&db, 1),
            (3, 0),
            "one chunk per boot, the open day's"
        );
        assert_eq!(read_all(&db, 1), before);
        assert_eq!(db.seal_closed(now).unwrap(), 0);
        let chunks = |db: &Sqlite| -> Vec<(i64, i64, i64)> {
            db.writer()
                .unwrap()
                .prepare(
                    "SELECT boot, first_seq, records FROM telemetry_chunk ORDER BY boot, first_seq",
                )
                .unwrap()
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap()
        };
        let merged = chunks(&db);
        assert_eq!(merged, vec![(3, 0, 203), (4, 600, 80), (4, 1440, 50)]);
        // Without rows, the merge is found from the chunks alone.
        db.insert_telemetry(&minutes(1, 4, DAY, 700, 40)).unwrap();
        db.fold_inbox().unwrap();
        assert_eq!(stored_as(&db, 1), (4, 0));
        assert_eq!(db.seal_closed(now).unwrap(), 0);
        assert_eq!(chunks(&db), vec![(3, 0, 203), (4, 600, 120), (4, 1440, 50)]);
        assert_eq!(db.telemetry_count(1).unwrap(), 373);
    }

    /// A pass after the first looks for unmerged days only where this process may have
    /// written chunks since: the days closed since the last pass, and the days of records it
    /// appended (a backlog of days long closed). Chunks another process wrote into an old day
    /// are merged by the next open's first pass, which looks everywhere.
    #[test]
    fn later_passes_look_for_unmerged_days_where_chunks_were_written() {
        let (dir, db) = with_devices(&[1]);
        let now = DAY + 10 * DAY_S + GRACE_S;
        assert_eq!(db.seal_closed(now).unwrap(), 0);
        // Another process folds two runs of an old day: two chunks, unseen by this one.
        {
            let other = Sqlite::open(db.path()).unwrap();
            for f in [minutes(1, 1, DAY, 0, 40), minutes(1, 1, DAY, 40, 40)] {
                other.insert_telemetry(&f).unwrap();
                other.fold_inbox().unwrap();
            }
        }
        assert_eq!(stored_as(&db, 1), (2, 0));
        assert_eq!(db.seal_closed(now).unwrap(), 0);
        assert_eq!(
            stored_as(&db, 1),
            (2, 0),
            "an old day is not looked at again"
        );
        // This process folds a backlog of an older day in two runs: from there on, the next
        // pass looks at every day, the other process's too.
        for f in [
            minutes(1, 1, DAY - 3 * DAY_S, 200, 40),
            minutes(1, 1, DAY - 3 * DAY_S, 240, 40),
        ] {
            db.insert_telemetry(&f).unwrap();
            db.fold_inbox().unwrap();
        }
        assert_eq!(stored_as(&db, 1), (4, 0));
        assert_eq!(db.seal_closed(now).unwrap(), 0);
        assert_eq!(stored_as(&db, 1), (2, 0), "each day merged into one chunk");
        // And a reopened database looks everywhere once.
        {
            let other = Sqlite::open(db.path()).unwrap();
            for f in [minutes(1, 1, DAY, 100, 40), minutes(1, 1, DAY, 140, 40)] {
                other.insert_telemetry(&f).unwrap();
                other.fold_inbox().unwrap();
            }
        }
        assert_eq!(db.seal_closed(now).unwrap(), 0);
        assert_eq!(stored_as(&db, 1), (4, 0));
        drop(db);
        let db = Sqlite::open_dir(dir.path()).unwrap();
        assert_eq!(db.seal_closed(now).unwrap(), 0);
        assert_eq!(stored_as(&db, 1), (2, 0));
        assert_eq!(db.telemetry_count(1).unwrap(), 240);
    }

    /// A seal that fails half-way (here: a chunk row in the way of the second device-day) rolls
    /// back whole: no record is lost from the table, none is in a chunk twice, and the next pass
    /// (once the obstacle is gone) seals everything — what a kill -9 during sealing leaves too,
    /// since the rows and the chunks change in one transaction.
    #[test]
    fn a_failed_seal_loses_nothing() {
        let (_dir, db) = with_devices(&[1]);
        let day = DAY;
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
        // As rows (what folds of a few records each write; one fold of all of them would write
        // chunks), before the stray chunk is there to refuse them.
        {
            let mut conn = db.writer().unwrap();
            let tx = conn.transaction().unwrap();
            assert_eq!(super::insert_rows(&tx, &rows).unwrap(), rows);
            tx.commit().unwrap();
        }
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
        assert_eq!(every_record(&db, 1), rows);
        assert_eq!(db.telemetry_count(1).unwrap(), 2 * 1440);
    }
}
