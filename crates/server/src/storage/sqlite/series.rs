//! Aggregated telemetry in SQLite: `GROUP BY time / step` over the `(device_id, time)` index.

use super::{u32_col, Sqlite};
use crate::storage::series::{range, Bucket, DayEnergy, SeriesStore};
use crate::storage::telemetry::TelemetryRow;
use crate::storage::{Error, Result};
use rusqlite::{params, OptionalExtension};

impl SeriesStore for Sqlite {
    fn telemetry_buckets(&self, device: u32, from: i64, to: i64, step: i64) -> Result<Vec<Bucket>> {
        if step <= 0 {
            return Err(Error::Backend(format!(
                "bucket step {step} must be positive"
            )));
        }
        let conn = self.reader()?;
        // Floor division that is also right for negative times.
        let mut stmt = conn.prepare_cached(
            "SELECT (time - ((time % ?4) + ?4) % ?4) AS b, COUNT(*),
                    AVG(power_w), MAX(energy_wh), AVG(water_cc), AVG(air_cc),
                    MIN(power_w), MAX(power_w), MIN(water_cc), MAX(water_cc),
                    MIN(air_cc), MAX(air_cc),
                    AVG(relays & 1), AVG((relays >> 1) & 1)
             FROM telemetry WHERE device_id = ?1 AND time >= ?2 AND time < ?3
             GROUP BY b ORDER BY b",
        )?;
        let rows = stmt.query_map(params![device, from, to, step], |r| {
            Ok(Bucket {
                start: r.get(0)?,
                count: r.get::<_, i64>(1)?.clamp(0, u32::MAX.into()) as u32,
                power_w: r.get(2)?,
                energy_wh: r.get(3)?,
                water_cc: r.get(4)?,
                air_cc: r.get(5)?,
                power_range: range(r.get(6)?, r.get(7)?),
                water_range_cc: range(r.get(8)?, r.get(9)?),
                air_range_cc: range(r.get(10)?, r.get(11)?),
                pump_on: r.get(12)?,
                heater_on: r.get(13)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
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
