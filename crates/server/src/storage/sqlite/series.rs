//! Aggregated telemetry in SQLite: each part of the chart's [`plan`] is one `GROUP BY` bucket
//! query, over the rollups' primary key or the records' `(device_id, time)` index.

use super::{u32_col, Sqlite};
use crate::storage::quarter::{self, Part};
use crate::storage::rollup::Resolution;
use crate::storage::series::{
    check_step, merge_parts, part_sql, plan, sqlite_params, Agg, Bucket, DayEnergy, SeriesStore,
    Source, BUCKET_COLUMNS,
};
use crate::storage::telemetry::TelemetryRow;
use crate::storage::{Error, Result};
use rusqlite::{params, OptionalExtension};

impl SeriesStore for Sqlite {
    fn telemetry_buckets(&self, device: u32, from: i64, to: i64, step: i64) -> Result<Vec<Bucket>> {
        check_step(step)?;
        let conn = self.reader()?;
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
        }
        Ok(merge_parts(parts))
    }

    fn energy_per_day(&self, device: u32, from: i64, to: i64) -> Result<Vec<DayEnergy>> {
        let conn = self.reader()?;
        // Use = sum of increases of the meter between consecutive records; a decrease (meter
        // reset, controller replaced) counts as zero rather than negative use.
        let mut stmt = conn.prepare_cached(
            "SELECT d, SUM(MAX(e - pe, 0)) FROM (
                 SELECT time - ((time % 86400) + 86400) % 86400 AS d, energy_wh AS e,
                        LAG(energy_wh) OVER (ORDER BY time, boot, seq) AS pe
                 FROM telemetry
                 WHERE device_id = ?1 AND time >= ?2 AND time < ?3 AND energy_wh IS NOT NULL)
             WHERE pe IS NOT NULL GROUP BY d ORDER BY d",
        )?;
        let rows = stmt.query_map(params![device, from, to], |r| {
            Ok(DayEnergy {
                day: r.get(0)?,
                wh: r.get(1)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn latest_telemetry(&self, device: u32) -> Result<Option<TelemetryRow>> {
        let conn = self.reader()?;
        let row = conn
            .query_row(
                "SELECT boot, seq, time, channels, power_w, energy_wh, water_cc, air_cc, relays,
                        ch5, ch6, ch7
                 FROM telemetry WHERE device_id = ?1 ORDER BY time DESC, boot DESC, seq DESC
                 LIMIT 1",
                params![device],
                |r| {
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
                },
            )
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
}

// Tested through `storage::suite` (every backend runs the same checks).
