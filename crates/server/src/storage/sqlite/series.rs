//! Aggregated telemetry in SQLite: each part of the chart's [`plan`] is one `GROUP BY` bucket
//! query, over the rollups' primary key or the records' `(device_id, time)` index; a raw part
//! adds the records sealed in chunks ([`crate::storage::chunk`]), aggregated here.

use super::telemetry::walk;
use super::{u32_col, Sqlite};
use crate::storage::chunk;
use crate::storage::newest_memo::NewestMemo;
use crate::storage::quarter::{self, Part};
use crate::storage::rollup::Resolution;
use crate::storage::series::{
    check_step, energy_per_day_paged, merge_parts, part_sql, plan, sealed_buckets, sqlite_params,
    Agg, Bucket, DayEnergy, SeriesStore, Source, BUCKET_COLUMNS,
};
use crate::storage::telemetry::TelemetryRow;
use crate::storage::TelemetryStore;
use crate::storage::{Error, Result};
use rusqlite::{params, OptionalExtension};

impl SeriesStore for Sqlite {
    fn telemetry_buckets(&self, device: u32, from: i64, to: i64, step: i64) -> Result<Vec<Bucket>> {
        check_step(step)?;
        let conn = self.telemetry_reader()?;
        // One snapshot for every part: the 15-minute parts read rows and sealed days.
        let conn = conn.unchecked_transaction()?;
        let mut parts = Vec::new();
        for (source, a, b) in plan(from, to, step) {
            if source == Source::Rollup(Resolution::Quarter) {
                let merged = super::quarter::intervals(&conn, device, a, b, Part::All)?;
                parts.extend(quarter::chart_parts(&merged, step));
                continue;
            }
            let mut stmt = conn.prepare_cached(&sqlite_params(&part_sql(source)))?;
            let rows = stmt.query_map(params![device, a, b, step], |r| {
                let mut c = [None; BUCKET_COLUMNS];
                for (i, x) in c.iter_mut().enumerate() {
                    *x = r.get(i + 1)?;
                }
                Ok((r.get::<_, i64>(0)?, Agg::from_columns(&c)))
            })?;
            for row in rows {
                parts.push(row?);
            }
            if source == Source::Raw {
                parts.extend(sealed_buckets(&mut walk(&conn), device, a, b, step)?);
            }
        }
        Ok(merge_parts(parts))
    }

    fn energy_per_day(&self, device: u32, from: i64, to: i64) -> Result<Vec<DayEnergy>> {
        energy_per_day_paged(device, from, to, |q, after| self.telemetry_page(q, after))
    }

    fn latest_telemetry_of(&self, devices: &[u32]) -> Result<Vec<Option<TelemetryRow>>> {
        let conn = self.telemetry_reader()?;
        // One connection and one snapshot for the page: each device is then two index seeks on
        // cached statements inside this process (no round trip to batch away), and a record
        // sealed into a chunk meanwhile is seen exactly once.
        let conn = conn.unchecked_transaction()?;
        devices
            .iter()
            .map(|&d| latest_on(&conn, &self.newest, d))
            .collect()
    }
}

/// The newest record of `device` on `conn`: the newest row of `telemetry` against the records of
/// its newest chunks, each chunk's newest record through `memo` ([`NewestMemo`]) and only for a
/// chunk that may hold a newer one ([`chunk::newer_with_chunk`]).
fn latest_on(
    conn: &rusqlite::Connection,
    memo: &NewestMemo,
    device: u32,
) -> Result<Option<TelemetryRow>> {
    let mut best = table_latest(conn, device)?;
    let mut stmt = conn.prepare_cached(&chunk::newest_sql("?"))?;
    let mut rows = stmt.query(params![device])?;
    while let Some(r) = rows.next()? {
        let meta = super::telemetry::chunk_meta_of(r)?;
        best = chunk::newer_with_chunk(best, &meta, || {
            // Borrowed from the statement: the memo compares it with what it holds, no copy.
            let data = r
                .get_ref(7)?
                .as_blob()
                .map_err(|e| Error::Corrupt(format!("telemetry chunk blob: {e}")))?;
            memo.newest(&meta, data)
        })?;
    }
    Ok(best)
}

/// The newest row of `telemetry` of `device` (the records not sealed yet).
fn table_latest(conn: &rusqlite::Connection, device: u32) -> Result<Option<TelemetryRow>> {
    let row = conn
        .prepare_cached(
            "SELECT boot, seq, time, channels, power_w, energy_wh, water_cc, air_cc, relays,
                    ch5, ch6, ch7
             FROM telemetry WHERE device_id = ?1 ORDER BY time DESC, boot DESC, seq DESC
             LIMIT 1",
        )?
        .query_row(params![device], |r| {
            let mut v = [None::<i64>; 8];
            for (i, x) in v.iter_mut().enumerate() {
                *x = r.get(4 + i)?;
            }
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get(2)?,
                r.get::<_, i64>(3)?,
                v,
            ))
        })
        .optional()?;
    let Some((boot, seq, time, channels, v)) = row else {
        return Ok(None);
    };
    let mut values = [0i32; 8];
    for (o, x) in values.iter_mut().zip(v) {
        *o = x.map_or(Ok(0), |x| {
            i32::try_from(x).map_err(|_| Error::Corrupt(format!("value {x}")))
        })?;
    }
    Ok(Some(TelemetryRow {
        device_id: device,
        boot: u32_col(boot, "boot")?,
        seq: u32_col(seq, "seq")?,
        time,
        channels: u8::try_from(channels)
            .map_err(|_| Error::Corrupt(format!("channel mask {channels}")))?,
        values,
    }))
}

// Tested through `storage::suite` (every backend runs the same checks).
