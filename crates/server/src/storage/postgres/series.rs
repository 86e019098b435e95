//! Aggregated telemetry in PostgreSQL: each part of the chart's [`plan`] is one `GROUP BY`
//! bucket query, over the rollups' primary key or the records' per-partition `(device_id, time)`
//! index (partition pruning keeps a 30-day range of records to about 30 small indexes); a raw
//! part adds the records sealed in chunks ([`crate::storage::chunk`]), aggregated here.

use super::telemetry::convert;
use super::Postgres;
use crate::storage::chunk::{self, StoredChunk, CHUNK_COLUMNS};
use crate::storage::quarter::{self, Part};
use crate::storage::rollup::Resolution;
use crate::storage::series::{
    check_step, energy_per_day_paged, merge_parts, part_sql, plan, sealed_buckets, Agg, Bucket,
    DayEnergy, SeriesStore, Source, BUCKET_COLUMNS,
};
use crate::storage::telemetry::TelemetryRow;
use crate::storage::telemetry::COLUMNS;
use crate::storage::Result;
use crate::storage::TelemetryStore;
use std::collections::HashMap;

impl SeriesStore for Postgres {
    fn telemetry_buckets(&self, device: u32, from: i64, to: i64, step: i64) -> Result<Vec<Bucket>> {
        check_step(step)?;
        let parts = self.run(move |s| async move {
            let mut c = s.conn().await?;
            // One snapshot for every part: the 15-minute parts read rows and sealed days.
            let c = super::quarter::snapshot(&mut c).await?;
            let mut parts = Vec::new();
            for (source, a, b) in plan(from, to, step) {
                if source == Source::Rollup(Resolution::Quarter) {
                    let merged = super::quarter::intervals(&c, device, a, b, Part::All).await?;
                    parts.extend(quarter::chart_parts(&merged, step));
                    continue;
                }
                let statement = c.prepare_cached(&part_sql(source)).await?;
                let rows = c
                    .query(&statement, &[&i64::from(device), &a, &b, &step])
                    .await?;
                for r in &rows {
                    let mut cols = [None; BUCKET_COLUMNS];
                    for (i, x) in cols.iter_mut().enumerate() {
                        *x = r.try_get(i + 1)?;
                    }
                    parts.push((r.try_get(0)?, Agg::from_columns(&cols)));
                }
            }
            c.commit().await?;
            Ok(parts)
        })?;
        let mut parts = parts;
        for (source, a, b) in plan(from, to, step) {
            if source == Source::Raw {
                parts.extend(sealed_buckets(&mut self.chunk_walk(), device, a, b, step)?);
            }
        }
        Ok(merge_parts(parts))
    }

    fn energy_per_day(&self, device: u32, from: i64, to: i64) -> Result<Vec<DayEnergy>> {
        energy_per_day_paged(device, from, to, |q, after| self.telemetry_page(q, after))
    }

    fn latest_telemetry_of(&self, devices: &[u32]) -> Result<Vec<Option<TelemetryRow>>> {
        if devices.is_empty() {
            return Ok(Vec::new());
        }
        let devices = devices.to_vec();
        let ids: Vec<i64> = devices.iter().map(|&d| i64::from(d)).collect();
        self.run(move |s| async move {
            let c = s.conn().await?;
            // Three statements for the whole page, in this order under READ COMMITTED (as the
            // one-device read was): the newest daily rollup, then the rows from its day on, then
            // the newest chunks — a record sealed between the last two is in the chunks read.
            let mut since: HashMap<i64, i64> = HashMap::with_capacity(ids.len());
            for r in c.query(NEWEST_DAY_SQL, &[&ids]).await? {
                if let Some(day) = r.try_get::<_, Option<i64>>(1)? {
                    since.insert(r.try_get(0)?, day);
                }
            }
            // Every stored record is rolled up in its insert's transaction and the daily rollups
            // are never deleted, so a device without one has no record.
            let (with, from): (Vec<i64>, Vec<i64>) = ids
                .iter()
                .filter_map(|d| since.get(d).map(|&t| (*d, t)))
                .unzip();
            let mut rows: HashMap<u32, TelemetryRow> = HashMap::new();
            let mut chunks: HashMap<u32, Vec<StoredChunk>> = HashMap::new();
            if let Some(&lowest) = from.iter().min() {
                for r in c
                    .query(&latest_rows_sql(), &[&with, &from, &lowest])
                    .await?
                {
                    let row = convert(&r)?;
                    rows.insert(row.device_id, row);
                }
                for r in c.query(&newest_chunks_sql(), &[&with]).await? {
                    let chunk = super::telemetry::chunk_of(&r)?;
                    chunks.entry(chunk.meta.device_id).or_default().push(chunk);
                }
            }
            devices
                .iter()
                .map(|d| {
                    let newest = chunks.get(d).map_or(&[][..], Vec::as_slice);
                    s.newest.latest_of(rows.get(d).copied(), newest)
                })
                .collect()
        })
    }
}

/// Per device of `$1`, the start of its newest daily rollup (a `LIMIT 1` seek backwards on the
/// primary key (device_id, start)); `NULL` for a device without one.
const NEWEST_DAY_SQL: &str = "SELECT d.id, (SELECT MAX(start) FROM telemetry_rollup_day r
         WHERE r.device_id = d.id)
     FROM unnest($1::bigint[]) AS d(id)";

/// Per device of `$1`, its newest row of `telemetry` at or after its time of `$2`. The newest
/// record is at or after the start of the newest daily rollup's day, so the rows before it
/// cannot be it; `$3`, the lowest of `$2`, is the bound the planner sees (the lateral bound is
/// known only per row), so it plans only the partitions from that day on instead of every
/// daily partition of the table (about 50 ms of planning per device for a year of them).
fn latest_rows_sql() -> String {
    format!(
        "SELECT {COLUMNS} FROM unnest($1::bigint[], $2::bigint[]) AS d(id, since)
         CROSS JOIN LATERAL (
             SELECT {COLUMNS} FROM telemetry t
             WHERE t.device_id = d.id AND t.time >= d.since AND t.time >= $3
             ORDER BY t.time DESC, t.boot DESC, t.seq DESC LIMIT 1) l"
    )
}

/// Per device of `$1`, its chunks starting within [`chunk::MAX_SPAN_S`] of its newest chunk's
/// start: [`chunk::newest_sql`] for many devices, two seeks per device on the index
/// (device_id, start_time). `OFFSET 0` keeps the lateral subquery from being flattened into a
/// join, for which the planner, not knowing the bound, chose a hash join over a sequential scan
/// of every chunk (5-60 ms for a year of 20 devices instead of 0.4 ms).
fn newest_chunks_sql() -> String {
    let span = chunk::MAX_SPAN_S;
    format!(
        "SELECT {CHUNK_COLUMNS} FROM unnest($1::bigint[]) AS d(id)
         CROSS JOIN LATERAL (
             SELECT {CHUNK_COLUMNS} FROM telemetry_chunk c
             WHERE c.device_id = d.id AND c.start_time >= (
                 SELECT MAX(start_time) FROM telemetry_chunk m WHERE m.device_id = d.id) - {span}
             OFFSET 0) c"
    )
}
