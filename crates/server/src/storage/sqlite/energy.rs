//! Energy in SQLite: meter steps per 15-minute interval with window functions over the
//! `(device_id, time)` index (rules in [`crate::storage::energy`]), and site tariffs as JSON.

use super::Sqlite;
use crate::energy::tariff::Tariff;
use crate::storage::energy::{
    decode_tariff, encode_tariff, EnergyStore, MeterData, MeterInterval, MeterSpan, INTERVAL_S,
    MAX_GAP_S,
};
use crate::storage::{Error, Result};
use rusqlite::{params, OptionalExtension};
use std::collections::BTreeMap;

/// Migration 3: the site's time zone and tariff.
pub const SCHEMA_V3: &str = r#"
ALTER TABLE sites ADD COLUMN time_zone TEXT NOT NULL DEFAULT 'UTC';

CREATE TABLE site_tariffs (
    site_id    INTEGER PRIMARY KEY REFERENCES sites (id) ON DELETE CASCADE,
    tariff     TEXT    NOT NULL,                   -- JSON of energy::tariff::Tariff
    updated_at INTEGER NOT NULL
);
"#;

/// Steps between consecutive meter readings: the reading before the range, those in it and the
/// one after it (each within the longest gap). `?1` device, `?2` from, `?3` to, `?4` the longest
/// gap, `?5` the interval.
const STEPS: &str = "
WITH r AS (
    SELECT * FROM (SELECT time, boot, seq, energy_wh FROM telemetry
        WHERE device_id = ?1 AND time >= ?2 - ?4 AND time < ?2 AND energy_wh IS NOT NULL
        ORDER BY time DESC, boot DESC, seq DESC LIMIT 1)
    UNION ALL
    SELECT time, boot, seq, energy_wh FROM telemetry
        WHERE device_id = ?1 AND time >= ?2 AND time < ?3 AND energy_wh IS NOT NULL
    UNION ALL
    SELECT * FROM (SELECT time, boot, seq, energy_wh FROM telemetry
        WHERE device_id = ?1 AND time >= ?3 AND time < ?3 + ?4 AND energy_wh IS NOT NULL
        ORDER BY time, boot, seq LIMIT 1)
), s AS (
    SELECT time AS t, energy_wh - LAG(energy_wh) OVER w AS d, time - LAG(time) OVER w AS g
    FROM r WINDOW w AS (ORDER BY time, boot, seq)
)
SELECT 0, t - ((t % ?5) + ?5) % ?5 AS b, SUM(MAX(d, 0)), 0
    FROM s WHERE d IS NOT NULL AND g <= ?5 AND t >= ?2 AND t < ?3 GROUP BY b
UNION ALL
SELECT 1, t - g, d, t FROM s WHERE d > 0 AND g > ?5 AND g <= ?4 AND t > ?2 AND t - g < ?3
ORDER BY 1, 2";

impl EnergyStore for Sqlite {
    fn meter_data(&self, device: u32, from: i64, to: i64) -> Result<MeterData> {
        let conn = self.reader()?;
        let mut by_start: BTreeMap<i64, MeterInterval> = BTreeMap::new();
        let mut spans = Vec::new();
        {
            let mut stmt = conn.prepare_cached(STEPS)?;
            let mut rows = stmt.query(params![device, from, to, MAX_GAP_S, INTERVAL_S])?;
            while let Some(r) = rows.next()? {
                let (kind, a, wh, b): (i64, i64, i64, i64) =
                    (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
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
        }
        let mut stmt = conn.prepare_cached(
            "SELECT time - ((time % ?4) + ?4) % ?4 AS b, AVG(power_w) FROM telemetry
             WHERE device_id = ?1 AND time >= ?2 AND time < ?3 AND power_w IS NOT NULL
             GROUP BY b",
        )?;
        let mut rows = stmt.query(params![device, from, to, INTERVAL_S])?;
        while let Some(r) = rows.next()? {
            let (b, p): (i64, f64) = (r.get(0)?, r.get(1)?);
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
    }

    fn site_tariff(&self, site_id: i64) -> Result<Option<Tariff>> {
        let conn = self.reader()?;
        let json: Option<String> = conn
            .query_row(
                "SELECT tariff FROM site_tariffs WHERE site_id = ?1",
                params![site_id],
                |r| r.get(0),
            )
            .optional()?;
        json.as_deref().map(decode_tariff).transpose()
    }

    fn set_site_tariff(&self, site_id: i64, tariff: Option<&Tariff>, now: i64) -> Result<()> {
        let mut conn = self.writer()?;
        let tx = conn.transaction()?;
        let exists: Option<i64> = tx
            .query_row(
                "SELECT id FROM sites WHERE id = ?1",
                params![site_id],
                |r| r.get(0),
            )
            .optional()?;
        if exists.is_none() {
            return Err(Error::Missing(format!("site {site_id}")));
        }
        match tariff {
            Some(t) => tx.execute(
                "INSERT INTO site_tariffs (site_id, tariff, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (site_id) DO UPDATE SET tariff = ?2, updated_at = ?3",
                params![site_id, encode_tariff(t), now],
            )?,
            None => tx.execute(
                "DELETE FROM site_tariffs WHERE site_id = ?1",
                params![site_id],
            )?,
        };
        tx.commit()?;
        Ok(())
    }
}

// Tested through `storage::suite` (every backend runs the same checks).
