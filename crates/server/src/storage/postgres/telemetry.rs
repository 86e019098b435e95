//! Telemetry in PostgreSQL: idempotent on (device, boot, seq) across every server, one statement
//! per writer batch.
//!
//! The table is partitioned by `time`, and PostgreSQL's unique constraints on a partitioned table
//! must contain the partition key, so a plain `ON CONFLICT` on (device, boot, seq) is not
//! possible. A record's `time` is computed by the server that receives it (arrival - age), so a
//! retransmission to another server may be stamped a second or two apart. The insert therefore:
//!
//! 1. takes a transaction-scoped advisory lock per device of the batch (in id order, so two
//!    servers never deadlock), which serialises concurrent inserts of the same device's records;
//! 2. inserts every row of the batch in one `INSERT ... SELECT FROM unnest(...)` that skips a row
//!    when a row with the same (device, boot, seq) exists within [`WINDOW_S`] of its time (a probe
//!    of the primary key's prefix), with `ON CONFLICT DO NOTHING` on the full primary key as a
//!    second guard. The probe also names the whole batch's window (its earliest time - `WINDOW_S`
//!    to its latest + `WINDOW_S`) as parameters, which the planner prunes with: the per-row
//!    window alone is known only at run time, so every partition was planned and scanned — 61–69
//!    ms of planning per batch with a year of daily partitions, 3–4 ms with the batch's window.
//!
//! Under the lock the check and the insert cannot interleave with another server's, so a record
//! retransmitted to a second server after the first died (or while it was slow) is stored once.
//! The rows the insert returns (those it stored) are rolled up ([`crate::storage::rollup`], 15
//! minutes and days) by one more statement per resolution in the same transaction.
//!
//! A record already sealed into a chunk ([`crate::storage::chunk`]) is looked up under the same
//! lock before the insert and left out; sealing takes the same per-device locks, so a record
//! is never in flight between the table and a chunk while a batch checks both.
//! A record stamped more than [`WINDOW_S`] apart would need a device clock that jumps by a day
//! within one boot, which the protocol's uptime-based ages rule out.

use super::{locks, u32_col, Postgres, Shared};
use crate::storage::chunk::{self, ChunkCursor, ChunkMeta, StoredChunk};
use crate::storage::rollup::{rollups_of, upsert_sql, Resolution, COLUMN_COUNT};
use crate::storage::schema::Dialect;
use crate::storage::telemetry::{
    page_sql, page_start, TelemetryKey, TelemetryQuery, TelemetryRow, TelemetryStore,
};
use crate::storage::telemetry::{COLUMNS, SEAL_BATCH_RECORDS};
use crate::storage::{Error, Result};
use std::collections::HashSet;
use tokio_postgres::Row;

/// Decodes a row selected with [`chunk::CHUNK_COLUMNS`].
pub(super) fn chunk_of(r: &Row) -> Result<StoredChunk> {
    Ok(StoredChunk {
        meta: ChunkMeta {
            device_id: u32_col(r.try_get(0)?, "device id")?,
            boot: u32_col(r.try_get(1)?, "boot")?,
            first_seq: u32_col(r.try_get(2)?, "seq")?,
            last_seq: u32_col(r.try_get(3)?, "seq")?,
            start_time: r.try_get(4)?,
            end_time: r.try_get(5)?,
            records: u32_col(r.try_get(6)?, "record count")?,
        },
        data: r.try_get(7)?,
    })
}

/// The records of `rows` already sealed in a chunk, as (device, boot, seq).
async fn sealed_among(
    c: &tokio_postgres::Transaction<'_>,
    rows: &[TelemetryRow],
) -> Result<HashSet<(u32, u32, u32)>> {
    let statement = c.prepare(&chunk::covering_sql("$")).await?;
    let mut found = Vec::new();
    for (device, boot, lo, hi) in chunk::seq_ranges(rows) {
        for r in c
            .query(
                &statement,
                &[
                    &i64::from(device),
                    &i64::from(boot),
                    &i64::from(lo),
                    &i64::from(hi),
                ],
            )
            .await?
        {
            found.push(chunk_of(&r)?);
        }
    }
    chunk::sealed_keys(&found)
}

/// How far apart two stampings of the same record may be (seconds).
pub const WINDOW_S: i64 = 86_400;

const INSERT: &str = "
INSERT INTO telemetry (device_id, boot, seq, time, channels,
                       power_w, energy_wh, water_cc, air_cc, relays, ch5, ch6, ch7)
SELECT r.* FROM unnest($1::int8[], $2::int8[], $3::int8[], $4::int8[], $5::int2[],
                       $6::int4[], $7::int4[], $8::int4[], $9::int4[], $10::int4[],
                       $11::int4[], $12::int4[], $13::int4[])
       AS r(device_id, boot, seq, time, channels,
            power_w, energy_wh, water_cc, air_cc, relays, ch5, ch6, ch7)
WHERE NOT EXISTS (
    SELECT 1 FROM telemetry t
    WHERE t.device_id = r.device_id AND t.boot = r.boot AND t.seq = r.seq
      AND t.time BETWEEN r.time - $14 AND r.time + $14
      AND t.time BETWEEN $15 AND $16)
ON CONFLICT DO NOTHING
RETURNING device_id, boot, seq";

/// Decodes a row selected with [`COLUMNS`](crate::storage::telemetry::COLUMNS).
pub(super) fn convert(r: &Row) -> Result<TelemetryRow> {
    let channels: i16 = r.get(4);
    let channels =
        u8::try_from(channels).map_err(|_| Error::Corrupt(format!("channel mask {channels}")))?;
    let mut values = [0i32; 8];
    for (i, v) in values.iter_mut().enumerate() {
        *v = r.get::<_, Option<i32>>(5 + i).unwrap_or(0);
    }
    Ok(TelemetryRow {
        device_id: u32_col(r.get(0), "device id")?,
        boot: u32_col(r.get(1), "boot")?,
        seq: u32_col(r.get(2), "seq")?,
        time: r.get(3),
        channels,
        values,
    })
}

/// The batch as column arrays, without rows repeated inside it (a retransmission queued twice
/// before one commit) and without rows older than the retention horizon `keep_from`.
struct Columns {
    device_id: Vec<i64>,
    boot: Vec<i64>,
    seq: Vec<i64>,
    time: Vec<i64>,
    channels: Vec<i16>,
    values: [Vec<Option<i32>>; 8],
    devices: Vec<i64>,
}

fn columns(rows: &[TelemetryRow], keep_from: Option<i64>) -> Columns {
    let mut seen = HashSet::with_capacity(rows.len());
    let mut c = Columns {
        device_id: Vec::with_capacity(rows.len()),
        boot: Vec::with_capacity(rows.len()),
        seq: Vec::with_capacity(rows.len()),
        time: Vec::with_capacity(rows.len()),
        channels: Vec::with_capacity(rows.len()),
        values: Default::default(),
        devices: Vec::new(),
    };
    for r in rows {
        if keep_from.is_some_and(|k| r.time < k) || !seen.insert((r.device_id, r.boot, r.seq)) {
            continue;
        }
        c.device_id.push(i64::from(r.device_id));
        c.boot.push(i64::from(r.boot));
        c.seq.push(i64::from(r.seq));
        c.time.push(r.time);
        c.channels.push(i16::from(r.channels));
        for (ch, col) in c.values.iter_mut().enumerate() {
            col.push(r.get(ch as u8));
        }
    }
    let mut devices: Vec<i64> = c.device_id.clone();
    devices.sort_unstable();
    devices.dedup();
    c.devices = devices;
    c
}

/// Merges the rollups of the rows just stored, in the transaction `tx` that stored them: per
/// resolution one statement over column arrays.
async fn merge_rollups(tx: &tokio_postgres::Transaction<'_>, new: &[TelemetryRow]) -> Result<()> {
    let arrays: Vec<String> = (1..=COLUMN_COUNT)
        .map(|i| format!("${i}::int8[]"))
        .collect();
    let select = format!("SELECT * FROM unnest({})", arrays.join(", "));
    for resolution in Resolution::ALL {
        let rollups = rollups_of(new, resolution);
        if rollups.is_empty() {
            continue;
        }
        let mut columns: Vec<Vec<Option<i64>>> = (0..COLUMN_COUNT)
            .map(|_| Vec::with_capacity(rollups.len()))
            .collect();
        for u in &rollups {
            for (col, v) in columns.iter_mut().zip(u.values()) {
                col.push(v);
            }
        }
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = columns
            .iter()
            .map(|c| c as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect();
        let sql = upsert_sql(Dialect::Postgres, resolution, &select);
        tx.execute(&sql, &params).await?;
    }
    Ok(())
}

impl TelemetryStore for Postgres {
    fn insert_telemetry_new(&self, rows: &[TelemetryRow]) -> Result<Vec<TelemetryRow>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let input = rows.to_vec();
        let keep_from = self.shared.partitions.keep_from();
        let all = columns(rows, keep_from);
        let days: Vec<i64> = all.time.iter().map(|t| t.div_euclid(86_400)).collect();
        self.run(move |s| async move {
            if all.device_id.is_empty() {
                return Ok(Vec::new());
            }
            super::partitions::ensure(&s, &days).await?;
            let mut c = s.conn().await?;
            let tx = c.transaction().await?;
            lock_devices(&tx, &all.devices).await?;
            // Under the locks: leave out the records sealed already.
            let sealed = sealed_among(&tx, &input).await?;
            let unsealed: Vec<TelemetryRow> = input
                .iter()
                .filter(|r| !sealed.contains(&(r.device_id, r.boot, r.seq)))
                .copied()
                .collect();
            let cols = columns(&unsealed, keep_from);
            if cols.device_id.is_empty() {
                return Ok(Vec::new());
            }
            let v = &cols.values;
            // Non-empty (checked above); saturating: a time near i64's ends prunes nothing.
            let lo = cols
                .time
                .iter()
                .min()
                .map_or(0, |t| t.saturating_sub(WINDOW_S));
            let hi = cols
                .time
                .iter()
                .max()
                .map_or(0, |t| t.saturating_add(WINDOW_S));
            let stored = tx
                .query(
                    INSERT,
                    &[
                        &cols.device_id,
                        &cols.boot,
                        &cols.seq,
                        &cols.time,
                        &cols.channels,
                        &v[0],
                        &v[1],
                        &v[2],
                        &v[3],
                        &v[4],
                        &v[5],
                        &v[6],
                        &v[7],
                        &WINDOW_S,
                        &lo,
                        &hi,
                    ],
                )
                .await?;
            let mut keys: HashSet<(i64, i64, i64)> = stored
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect();
            // In input order; a row repeated in the batch counts once.
            let new: Vec<TelemetryRow> = unsealed
                .into_iter()
                .filter(|r| {
                    keys.remove(&(i64::from(r.device_id), i64::from(r.boot), i64::from(r.seq)))
                })
                .collect();
            merge_rollups(&tx, &new).await?;
            tx.commit().await?;
            Ok(new)
        })
    }

    fn telemetry_page(
        &self,
        q: &TelemetryQuery,
        after: Option<TelemetryKey>,
    ) -> Result<Vec<TelemetryRow>> {
        let table_page = self.keyset_page(page_sql("$"), q, after, convert)?;
        chunk::merged_page(&mut self.chunk_walk(), q, after, table_page)
    }

    fn telemetry_count(&self, device_id: u32) -> Result<u64> {
        let sealed = self.run(move |s| async move {
            let c = s.conn().await?;
            let n: i64 = c
                .query_one(
                    "SELECT COALESCE(SUM(records), 0)::int8 FROM telemetry_chunk
                     WHERE device_id = $1",
                    &[&i64::from(device_id)],
                )
                .await?
                .get(0);
            Ok(n.max(0) as u64)
        })?;
        Ok(self.rows_of_device("telemetry", device_id)? + sealed)
    }

    /// [`earliest`] of the one device's narrow records.
    fn first_record_time(&self, device_id: u32) -> Result<Option<i64>> {
        self.run(move |s| async move { earliest(&s, &[i64::from(device_id)], false).await })
    }

    fn seal_closed(&self, now: i64) -> Result<u64> {
        let before = chunk::sealable_before(now);
        // The (device, day start) pairs holding rows before `before`, read only from the
        // partitions that have pages: each query names one day's range, so it plans and scans
        // that one partition (not every past day, as `time < before` did: ~50 ms of planning per
        // query with a year of partitions, twice per device per pass). `idle`: partitions with
        // pages but no row, given to `truncate_emptied` again below (their truncation was skipped
        // at an earlier pass, or their rows' inserts rolled back).
        let (pairs, idle): (Vec<(i64, i64)>, Vec<i64>) = self.run(move |s| async move {
            let days = super::partitions::with_pages_before(&s, before).await?;
            let c = s.conn().await?;
            let (mut pairs, mut idle) = (Vec::new(), Vec::new());
            for day in days {
                let from = day * chunk::DAY_S;
                let to = (from + chunk::DAY_S).min(before);
                let rows = c
                    .query(
                        "SELECT DISTINCT device_id FROM telemetry WHERE time >= $1 AND time < $2",
                        &[&from, &to],
                    )
                    .await?;
                if rows.is_empty() {
                    idle.push(day);
                }
                pairs.extend(rows.iter().map(|r| (r.get::<_, i64>(0), from)));
            }
            pairs.sort_unstable();
            Ok((pairs, idle))
        })?;
        let mut sealed = 0;
        let mut at = 0;
        let mut days = idle;
        // One transaction per batch of devices; each device's lock held while its days move,
        // so no insert checks the table and the chunks between the two. A record inserted after
        // the listing above into a day not listed for its device waits for the next pass.
        while at < pairs.len() {
            let batch = pairs[at..].to_vec();
            let (done, n, touched) = self.run(move |s| async move {
                let mut c = s.conn().await?;
                let tx = c.transaction().await?;
                let (mut done, mut n, mut touched) = (0, 0, Vec::new());
                let mut locked = None;
                for (device, day) in batch {
                    if locked != Some(device) {
                        // A device's days are never split between two transactions.
                        if n >= SEAL_BATCH_RECORDS {
                            break;
                        }
                        lock_devices(&tx, &[device]).await?;
                        locked = Some(device);
                    }
                    n += seal_day(&tx, device, day).await?;
                    touched.push(day.div_euclid(chunk::DAY_S));
                    done += 1;
                }
                tx.commit().await?;
                Ok((done, n, touched))
            })?;
            at += done;
            sealed += n;
            days.extend(touched);
        }
        // The sealed days' partitions are empty now, but their indexes keep every page (VACUUM
        // frees index pages for reuse, never returns them): ~110 B per record of a closed day.
        days.sort_unstable();
        days.dedup();
        if !days.is_empty() {
            self.run(move |s| async move { super::partitions::truncate_emptied(&s, &days).await })?;
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

/// The earliest record time of any of `devices`, in one snapshot: the chunks' earliest start
/// (with `wide`, also the wide records' earliest time; an index seek per device each), then the
/// rows' earliest from only the partitions that have pages
/// ([`super::partitions::with_pages_before`]), oldest first, stopping at the first day holding a
/// row of the devices or starting after the earliest found. The shared `FIRST_TIME_SQL` names
/// no time range, so it planned every daily partition: ~29 ms per device with a year kept. The
/// partitions are listed after the snapshot started, so a row it sees was in a page when they
/// were listed.
pub(super) async fn earliest(s: &Shared, devices: &[i64], wide: bool) -> Result<Option<i64>> {
    let devices = devices.to_vec();
    let mut c = s.conn().await?;
    let tx = super::quarter::snapshot(&mut c).await?;
    let mut first = least_per_device(&tx, "telemetry_chunk", "start_time", &devices).await?;
    if wide {
        let w = least_per_device(&tx, "telemetry_wide", "time", &devices).await?;
        first = first.into_iter().chain(w).min();
    }
    for day in super::partitions::with_pages_before(s, i64::MAX).await? {
        let from = day * chunk::DAY_S;
        if first.is_some_and(|f| f <= from) {
            break;
        }
        let t: Option<i64> = tx
            .query_one(
                "SELECT MIN(time) FROM telemetry
                 WHERE device_id = ANY($1) AND time >= $2 AND time < $3",
                &[&devices, &from, &(from + chunk::DAY_S)],
            )
            .await?
            .get(0);
        if let Some(t) = t {
            first = first.into_iter().chain([t]).min();
            break;
        }
    }
    tx.commit().await?;
    Ok(first)
}

/// The least `column` of `devices`' rows of `table` (indexed by device, then `column`): an index
/// seek per device, in one statement.
async fn least_per_device(
    tx: &tokio_postgres::Transaction<'_>,
    table: &str,
    column: &str,
    devices: &[i64],
) -> Result<Option<i64>> {
    let sql = format!(
        "SELECT MIN(f) FROM unnest($1::bigint[]) AS d(id),
         LATERAL (SELECT {column} AS f FROM {table} WHERE device_id = d.id
                  ORDER BY {column} LIMIT 1) AS x"
    );
    Ok(tx.query_one(&sql, &[&devices]).await?.get(0))
}

/// Takes the per-device telemetry locks of `devices` (sorted) for the transaction.
async fn lock_devices(tx: &tokio_postgres::Transaction<'_>, devices: &[i64]) -> Result<()> {
    let lock_keys: Vec<i64> = devices
        .iter()
        .map(|d| locks::telemetry(*d as u32))
        .collect();
    tx.execute(
        "SELECT pg_advisory_xact_lock(k) FROM unnest($1::int8[]) AS k ORDER BY k",
        &[&lock_keys],
    )
    .await?;
    Ok(())
}

/// Seals the records of `device` on the UTC day starting at `day` in `tx` (which holds the
/// device's lock): its chunks inserted, its rows deleted. Returns how many records.
async fn seal_day(tx: &tokio_postgres::Transaction<'_>, device: i64, day: i64) -> Result<u64> {
    let end = day + chunk::DAY_S;
    let rows = tx
        .query(
            &format!(
                "SELECT {COLUMNS} FROM telemetry WHERE device_id = $1 AND time >= $2 AND time < $3"
            ),
            &[&device, &day, &end],
        )
        .await?
        .iter()
        .map(convert)
        .collect::<Result<Vec<_>>>()?;
    let insert = tx
        .prepare(&format!(
            "INSERT INTO telemetry_chunk ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            chunk::CHUNK_COLUMNS
        ))
        .await?;
    for c in chunk::seal(&rows)? {
        let m = c.meta;
        tx.execute(
            &insert,
            &[
                &i64::from(m.device_id),
                &i64::from(m.boot),
                &i64::from(m.first_seq),
                &i64::from(m.last_seq),
                &m.start_time,
                &m.end_time,
                &i64::from(m.records),
                &c.data,
            ],
        )
        .await?;
    }
    tx.execute(
        "DELETE FROM telemetry WHERE device_id = $1 AND time >= $2 AND time < $3",
        &[&device, &day, &end],
    )
    .await?;
    Ok(rows.len() as u64)
}

impl Postgres {
    /// The chunk walk of a read ([`chunk::ChunkWalk`]), one query per step.
    pub(super) fn chunk_walk(
        &self,
    ) -> impl FnMut(u32, ChunkCursor, usize, i64, i64) -> Result<Vec<StoredChunk>> + '_ {
        move |device, (t, b, seq), limit, from, to| {
            self.run(move |s| async move {
                let c = s.conn().await?;
                let statement = c.prepare_cached(&chunk::walk_sql("$")).await?;
                let rows = c
                    .query(
                        &statement,
                        &[
                            &i64::from(device),
                            &t,
                            &b,
                            &seq,
                            &crate::storage::sql_limit(limit),
                            &from,
                            &to,
                            &from.saturating_sub(chunk::MAX_SPAN_S),
                        ],
                    )
                    .await?;
                rows.iter().map(chunk_of).collect()
            })
        }
    }

    /// Deletes the chunks whose last record is older than `keep_from` (the partitions of the
    /// rows are dropped by [`super::partitions::maintain`]).
    pub(super) async fn expire_chunks(s: &super::Shared, keep_from: i64) -> Result<u64> {
        let c = s.conn().await?;
        Ok(c.execute(
            "DELETE FROM telemetry_chunk WHERE end_time < $1",
            &[&keep_from],
        )
        .await?)
    }

    /// One keyset page of a device's records (`statement`: a `page_sql` of telemetry or of wide
    /// records, which take the same parameters), each row converted by `convert`.
    pub(super) fn keyset_page<T: Send + 'static>(
        &self,
        statement: String,
        q: &TelemetryQuery,
        after: Option<TelemetryKey>,
        convert: fn(&Row) -> Result<T>,
    ) -> Result<Vec<T>> {
        let q = *q;
        let (time, boot, seq) = page_start(&q, after);
        self.run(move |s| async move {
            let c = s.conn().await?;
            let statement = c.prepare_cached(&statement).await?;
            let rows = c
                .query(
                    &statement,
                    &[
                        &i64::from(q.device_id),
                        &time,
                        &boot,
                        &seq,
                        &q.to,
                        &crate::storage::sql_limit(q.limit),
                    ],
                )
                .await?;
            rows.iter().map(convert).collect()
        })
    }

    /// How many rows of `table` (a table of records keyed by `device_id`) a device has.
    pub(super) fn rows_of_device(&self, table: &'static str, device_id: u32) -> Result<u64> {
        self.run(move |s| async move {
            let c = s.conn().await?;
            let n: i64 = c
                .query_one(
                    &format!("SELECT COUNT(*) FROM {table} WHERE device_id = $1"),
                    &[&i64::from(device_id)],
                )
                .await?
                .get(0);
            Ok(n.max(0) as u64)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(device_id: u32, seq: u32, time: i64) -> TelemetryRow {
        TelemetryRow {
            device_id,
            boot: 1,
            seq,
            time,
            channels: 0b101,
            values: [7, 0, 9, 0, 0, 0, 0, 0],
        }
    }

    #[test]
    fn batch_columns_skip_repeats_and_expired_rows() {
        let rows = [row(2, 1, 100), row(1, 1, 100), row(2, 1, 101), row(1, 2, 5)];
        let c = columns(&rows, Some(50));
        assert_eq!(c.device_id, vec![2, 1]);
        assert_eq!(c.devices, vec![1, 2]);
        assert_eq!(c.values[0], vec![Some(7), Some(7)]);
        assert_eq!(c.values[1], vec![None, None]);
        assert_eq!(columns(&rows, None).device_id.len(), 3);
    }

    /// Sealing lists only the past partitions with pages: none once their days are sealed and
    /// truncated, the day of a late record again until it is sealed, and a partition left with
    /// pages but no row (its truncation skipped) until the next pass truncates it.
    #[test]
    fn sealing_reads_only_partitions_with_pages() {
        use crate::storage::postgres::partitions::{with_pages_before, DAY};
        use crate::storage::postgres::tests::{dev, prepare, row};
        use crate::storage::{DeviceStore, Storage};
        let Some(db) = prepare() else { return };
        let pg = &db.db;
        let day = 20_454;
        let now = (day + 3) * DAY;
        let before = chunk::sealable_before(now);
        let pages =
            |pg: &Postgres| pg.run(move |s| async move { with_pages_before(&s, before).await });
        pg.maintain(now, 0).unwrap(); // partitions of the days around `now`, without pages
        pg.add_devices(&[dev(1), dev(2)], 0).unwrap();
        let rows: Vec<_> = (0..3u32)
            .flat_map(|seq| {
                [
                    row(1, seq, day * DAY + i64::from(seq)),
                    row(2, seq, (day + 1) * DAY + 7),
                ]
            })
            .collect();
        pg.insert_telemetry_new(&rows).unwrap();
        // The (future) partitions `maintain` made have no pages; the two written days have.
        assert_eq!(pages(pg).unwrap(), vec![day, day + 1]);
        assert_eq!(pg.seal_closed(now).unwrap(), 6);
        assert_eq!(pages(pg).unwrap(), Vec::<i64>::new());
        // A late record of a sealed day: its partition has a page again and is sealed.
        pg.insert_telemetry_new(&[row(1, 100, day * DAY + 50)])
            .unwrap();
        assert_eq!(pages(pg).unwrap(), vec![day]);
        assert_eq!(pg.seal_closed(now).unwrap(), 1);
        assert_eq!(pages(pg).unwrap(), Vec::<i64>::new());
        assert_eq!(pg.telemetry_count(1).unwrap(), 4);
        // Pages without a row (as when a truncation was skipped): truncated at the next pass.
        pg.insert_telemetry_new(&[row(2, 100, (day + 1) * DAY + 50)])
            .unwrap();
        pg.run(move |s| async move {
            let c = s.conn().await?;
            c.execute(
                "DELETE FROM telemetry WHERE device_id = 2 AND seq = 100",
                &[],
            )
            .await?;
            Ok(())
        })
        .unwrap();
        assert_eq!(pages(pg).unwrap(), vec![day + 1]);
        assert_eq!(pg.seal_closed(now).unwrap(), 0);
        assert_eq!(pages(pg).unwrap(), Vec::<i64>::new());
        assert_eq!(pg.telemetry_count(2).unwrap(), 3);
    }
}
