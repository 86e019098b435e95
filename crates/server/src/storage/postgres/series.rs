//! Aggregated telemetry in PostgreSQL: each part of the chart's [`plan`] is one `GROUP BY`
//! bucket query, over the rollups' primary key or the records' per-partition `(device_id, time)`
//! index (partition pruning keeps a 30-day range of records to about 30 small indexes); a raw
//! part adds the records sealed in chunks ([`crate::storage::chunk`]), aggregated here.

use super::telemetry::convert;
use super::Postgres;
use crate::storage::chunk;
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

    fn latest_telemetry(&self, device: u32) -> Result<Option<TelemetryRow>> {
        self.run(move |s| async move {
            let c = s.conn().await?;
            let table_latest = c
                .query_opt(
                    &format!(
                        "SELECT {COLUMNS} FROM telemetry WHERE device_id = $1
                         ORDER BY time DESC, boot DESC, seq DESC LIMIT 1"
                    ),
                    &[&i64::from(device)],
                )
                .await?
                .as_ref()
                .map(convert)
                .transpose()?;
            let newest = c
                .query(&chunk::newest_sql("$"), &[&i64::from(device)])
                .await?
                .iter()
                .map(super::telemetry::chunk_of)
                .collect::<Result<Vec<_>>>()?;
            chunk::latest_of(table_latest, &newest)
        })
    }
}
