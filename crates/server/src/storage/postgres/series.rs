//! Aggregated telemetry in PostgreSQL: each part of the chart's [`plan`] is one `GROUP BY`
//! bucket query, over the rollups' primary key or the records' per-partition `(device_id, time)`
//! index (partition pruning keeps a 30-day range of records to about 30 small indexes).

use super::telemetry::convert;
use super::Postgres;
use crate::storage::quarter::{self, Part};
use crate::storage::rollup::Resolution;
use crate::storage::series::{
    check_step, merge_parts, part_sql, plan, Agg, Bucket, DayEnergy, SeriesStore, Source,
    BUCKET_COLUMNS,
};
use crate::storage::telemetry::TelemetryRow;
use crate::storage::telemetry::COLUMNS;
use crate::storage::Result;

impl SeriesStore for Postgres {
    fn telemetry_buckets(&self, device: u32, from: i64, to: i64, step: i64) -> Result<Vec<Bucket>> {
        check_step(step)?;
        self.run(move |s| async move {
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
            Ok(merge_parts(parts))
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
