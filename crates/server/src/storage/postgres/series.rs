//! Aggregated telemetry in PostgreSQL: `GROUP BY` buckets over the per-partition
//! `(device_id, time)` index; partition pruning keeps a 30-day chart to about 30 small indexes.

use super::telemetry::convert;
use super::Postgres;
use crate::storage::series::{range, Bucket, DayEnergy, SeriesStore};
use crate::storage::telemetry::TelemetryRow;
use crate::storage::telemetry::COLUMNS;
use crate::storage::{Error, Result};

impl SeriesStore for Postgres {
    fn telemetry_buckets(&self, device: u32, from: i64, to: i64, step: i64) -> Result<Vec<Bucket>> {
        if step <= 0 {
            return Err(Error::Backend(format!(
                "bucket step {step} must be positive"
            )));
        }
        self.run(move |s| async move {
            let c = s.conn().await?;
            // Floor division that is also right for negative times.
            let rows = c
                .query(
                    "SELECT time - mod(mod(time, $4) + $4, $4) AS b, COUNT(*),
                            AVG(power_w)::float8, MAX(energy_wh)::int8,
                            AVG(water_cc)::float8, AVG(air_cc)::float8,
                            MIN(power_w)::float8, MAX(power_w)::float8,
                            MIN(water_cc)::float8, MAX(water_cc)::float8,
                            MIN(air_cc)::float8, MAX(air_cc)::float8,
                            AVG(relays & 1)::float8, AVG((relays >> 1) & 1)::float8
                     FROM telemetry WHERE device_id = $1 AND time >= $2 AND time < $3
                     GROUP BY b ORDER BY b",
                    &[&i64::from(device), &from, &to, &step],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| Bucket {
                    start: r.get(0),
                    count: r.get::<_, i64>(1).clamp(0, u32::MAX.into()) as u32,
                    power_w: r.get(2),
                    energy_wh: r.get(3),
                    water_cc: r.get(4),
                    air_cc: r.get(5),
                    power_range: range(r.get(6), r.get(7)),
                    water_range_cc: range(r.get(8), r.get(9)),
                    air_range_cc: range(r.get(10), r.get(11)),
                    pump_on: r.get(12),
                    heater_on: r.get(13),
                })
                .collect())
        })
    }

    fn energy_per_day(&self, device: u32, from: i64, to: i64) -> Result<Vec<DayEnergy>> {
        self.run(move |s| async move {
            let c = s.conn().await?;
            // Use = sum of increases of the meter between consecutive records; a decrease (meter
            // reset, controller replaced) counts as zero rather than negative use.
            let rows = c
                .query(
                    "SELECT d, SUM(GREATEST(e - pe, 0))::int8 FROM (
                         SELECT time - mod(mod(time, 86400) + 86400, 86400) AS d,
                                energy_wh::int8 AS e,
                                LAG(energy_wh::int8) OVER (ORDER BY time, boot, seq) AS pe
                         FROM telemetry
                         WHERE device_id = $1 AND time >= $2 AND time < $3
                           AND energy_wh IS NOT NULL) x
                     WHERE pe IS NOT NULL GROUP BY d ORDER BY d",
                    &[&i64::from(device), &from, &to],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| DayEnergy {
                    day: r.get(0),
                    wh: r.get(1),
                })
                .collect())
        })
    }

    fn latest_telemetry(&self, device: u32) -> Result<Option<TelemetryRow>> {
        self.run(move |s| async move {
            let c = s.conn().await?;
            c.query_opt(
                &format!(
                    "SELECT {COLUMNS} FROM telemetry WHERE device_id = $1
                     ORDER BY time DESC, boot DESC, seq DESC LIMIT 1"
                ),
                &[&i64::from(device)],
            )
            .await?
            .as_ref()
            .map(convert)
            .transpose()
        })
    }
}
