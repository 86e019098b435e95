//! Energy in PostgreSQL: one aggregate row per 15-minute interval over the per-partition
//! `(device_id, time)` index, touching only the partitions of the range (rules in
//! [`crate::storage::energy`]; the same query as the SQLite backend's), and site tariffs as JSON
//! text.

use super::{fk, Postgres};
use crate::energy::tariff::Tariff;
use crate::storage::energy::{
    assemble, check_range, decode_tariff, encode_tariff, unpack, EnergyStore, IntervalAgg,
    MeterData, INTERVAL_S, MAX_GAP_S, PACK_BIAS, PACK_SHIFT,
};
use crate::storage::{Error, Result};

/// One row per interval, as the SQLite backend's: `$1` device, `$2` from, `$3` to, `$4` the
/// interval, `$5`/`$6` the packing of [`crate::storage::energy::PACK_SHIFT`].
const INTERVALS: &str = "
SELECT time - mod(mod(time, $4::int8) + $4::int8, $4::int8) AS b, COUNT(energy_wh),
       MIN(energy_wh)::int8, MAX(energy_wh)::int8,
       MIN((time - $2::int8) * $5::int8 + energy_wh + $6::int8),
       MAX((time - $2::int8) * $5::int8 + energy_wh + $6::int8),
       AVG(power_w)::float8
FROM telemetry WHERE device_id = $1 AND time >= $2::int8 AND time < $3::int8
GROUP BY b ORDER BY b";

impl EnergyStore for Postgres {
    fn meter_data(&self, device: u32, from: i64, to: i64) -> Result<MeterData> {
        check_range(from, to)?;
        self.run(move |s| async move {
            let c = s.conn().await?;
            let dev = i64::from(device);
            let rows = c
                .query(
                    INTERVALS,
                    &[&dev, &from, &to, &INTERVAL_S, &PACK_SHIFT, &PACK_BIAS],
                )
                .await?;
            let aggs: Vec<IntervalAgg> = rows
                .iter()
                .map(|r| {
                    let min: Option<i64> = r.get(2);
                    let max: Option<i64> = r.get(3);
                    IntervalAgg {
                        start: r.get(0),
                        count: r.get(1),
                        min_max: min.zip(max),
                        first: r.get::<_, Option<i64>>(4).map(|k| unpack(from, k)),
                        last: r.get::<_, Option<i64>>(5).map(|k| unpack(from, k)),
                        power_w: r.get(6),
                    }
                })
                .collect();
            let before = c
                .query_opt(
                    "SELECT time, energy_wh::int8 FROM telemetry
                     WHERE device_id = $1 AND time >= $2::int8 - $3::int8 AND time < $2::int8
                       AND energy_wh IS NOT NULL
                     ORDER BY time DESC, boot DESC, seq DESC LIMIT 1",
                    &[&dev, &from, &MAX_GAP_S],
                )
                .await?
                .map(|r| (r.get(0), r.get(1)));
            let after = c
                .query_opt(
                    "SELECT time, energy_wh::int8 FROM telemetry
                     WHERE device_id = $1 AND time >= $2::int8 AND time < $2::int8 + $3::int8
                       AND energy_wh IS NOT NULL
                     ORDER BY time, boot, seq LIMIT 1",
                    &[&dev, &to, &MAX_GAP_S],
                )
                .await?
                .map(|r| (r.get(0), r.get(1)));
            Ok(assemble(&aggs, before, after, from, to))
        })
    }

    fn site_tariff(&self, site_id: i64) -> Result<Option<Tariff>> {
        let json: Option<String> = self.run(move |s| async move {
            let c = s.conn().await?;
            Ok(c.query_opt(
                "SELECT tariff FROM site_tariffs WHERE site_id = $1",
                &[&site_id],
            )
            .await?
            .map(|r| r.get(0)))
        })?;
        json.as_deref().map(decode_tariff).transpose()
    }

    fn set_site_tariff(&self, site_id: i64, tariff: Option<&Tariff>, now: i64) -> Result<()> {
        let json = tariff.map(encode_tariff);
        self.run(move |s| async move {
            let c = s.conn().await?;
            match json {
                Some(j) => {
                    c.execute(
                        "INSERT INTO site_tariffs (site_id, tariff, updated_at) VALUES ($1, $2, $3)
                         ON CONFLICT (site_id) DO UPDATE SET tariff = $2, updated_at = $3",
                        &[&site_id, &j, &now],
                    )
                    .await
                    .map_err(|e| fk(e, || format!("site {site_id}")))?;
                }
                None => {
                    let n = c
                        .query_opt("SELECT 1 FROM sites WHERE id = $1", &[&site_id])
                        .await?;
                    if n.is_none() {
                        return Err(Error::Missing(format!("site {site_id}")));
                    }
                    c.execute("DELETE FROM site_tariffs WHERE site_id = $1", &[&site_id])
                        .await?;
                }
            }
            Ok(())
        })
    }
}

// Tested through `storage::suite` (every backend runs the same checks).
