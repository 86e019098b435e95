//! Energy in PostgreSQL: meter steps per 15-minute interval with window functions over the
//! per-partition `(device_id, time)` index (rules in [`crate::storage::energy`]; the same query
//! as the SQLite backend's), and site tariffs as JSON text.

use super::{fk, Postgres};
use crate::energy::tariff::Tariff;
use crate::storage::energy::{
    decode_tariff, encode_tariff, EnergyStore, MeterData, MeterInterval, MeterSpan, INTERVAL_S,
    MAX_GAP_S,
};
use crate::storage::{Error, Result};
use std::collections::BTreeMap;

/// Migration 3: the site's time zone and tariff.
pub const SCHEMA_V3: &str = r#"
ALTER TABLE sites ADD COLUMN time_zone TEXT NOT NULL DEFAULT 'UTC';

CREATE TABLE site_tariffs (
    site_id    BIGINT PRIMARY KEY REFERENCES sites (id) ON DELETE CASCADE,
    tariff     TEXT   NOT NULL,                    -- JSON of energy::tariff::Tariff
    updated_at BIGINT NOT NULL
);
"#;

/// See the SQLite backend's `STEPS`: `$1` device, `$2` from, `$3` to, `$4` the longest gap,
/// `$5` the interval. The reading before and after the range are single-row index probes.
const STEPS: &str = "
WITH r AS (
    (SELECT time, boot, seq, energy_wh::int8 AS e FROM telemetry
        WHERE device_id = $1::int8 AND time >= $2::int8 - $4::int8 AND time < $2::int8 AND energy_wh IS NOT NULL
        ORDER BY time DESC, boot DESC, seq DESC LIMIT 1)
    UNION ALL
    (SELECT time, boot, seq, energy_wh::int8 FROM telemetry
        WHERE device_id = $1::int8 AND time >= $2::int8 AND time < $3::int8 AND energy_wh IS NOT NULL)
    UNION ALL
    (SELECT time, boot, seq, energy_wh::int8 FROM telemetry
        WHERE device_id = $1::int8 AND time >= $3::int8 AND time < $3::int8 + $4::int8 AND energy_wh IS NOT NULL
        ORDER BY time, boot, seq LIMIT 1)
), s AS (
    SELECT time AS t, e - LAG(e) OVER w AS d, time - LAG(time) OVER w AS g
    FROM r WINDOW w AS (ORDER BY time, boot, seq)
)
SELECT 0::int4 AS kind, t - mod(mod(t, $5::int8) + $5::int8, $5::int8) AS b, SUM(GREATEST(d, 0))::int8 AS wh,
       0::int8 AS t2
    FROM s WHERE d IS NOT NULL AND g <= $5::int8 AND t >= $2::int8 AND t < $3::int8 GROUP BY b
UNION ALL
SELECT 1, t - g, d, t FROM s WHERE d > 0 AND g > $5::int8 AND g <= $4::int8 AND t > $2::int8 AND t - g < $3::int8
ORDER BY 1, 2";

impl EnergyStore for Postgres {
    fn meter_data(&self, device: u32, from: i64, to: i64) -> Result<MeterData> {
        self.run(move |s| async move {
            let c = s.conn().await?;
            let dev = i64::from(device);
            let steps = c
                .query(STEPS, &[&dev, &from, &to, &MAX_GAP_S, &INTERVAL_S])
                .await?;
            let power = c
                .query(
                    "SELECT time - mod(mod(time, $4) + $4, $4) AS b, AVG(power_w)::float8
                     FROM telemetry
                     WHERE device_id = $1 AND time >= $2 AND time < $3 AND power_w IS NOT NULL
                     GROUP BY b",
                    &[&dev, &from, &to, &INTERVAL_S],
                )
                .await?;
            let mut by_start: BTreeMap<i64, MeterInterval> = BTreeMap::new();
            let mut spans = Vec::new();
            for r in &steps {
                let (kind, a, wh, b): (i32, i64, i64, i64) =
                    (r.get(0), r.get(1), r.get(2), r.get(3));
                if kind == 0 {
                    by_start.insert(
                        a,
                        MeterInterval {
                            start: a,
                            wh: Some(wh),
                            power_w: None,
                        },
                    );
                } else {
                    spans.push(MeterSpan { from: a, to: b, wh });
                }
            }
            for r in &power {
                let (b, p): (i64, f64) = (r.get(0), r.get(1));
                by_start
                    .entry(b)
                    .or_insert(MeterInterval {
                        start: b,
                        wh: None,
                        power_w: None,
                    })
                    .power_w = Some(p);
            }
            Ok(MeterData {
                intervals: by_start.into_values().collect(),
                spans,
            })
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
