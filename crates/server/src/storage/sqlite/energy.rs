//! Energy in SQLite: one aggregate row per 15-minute interval in a single pass over the
//! `(device_id, time)` index (rules in [`crate::storage::energy`]), and
//! site tariffs as JSON.

use super::Sqlite;
use crate::energy::tariff::Tariff;
use crate::storage::energy::{
    assemble, check_range, decode_tariff, encode_tariff, unpack, EnergyStore, IntervalAgg,
    MeterData, INTERVAL_S, MAX_GAP_S, PACK_BIAS, PACK_SHIFT,
};
use crate::storage::{Error, Result};
use rusqlite::{params, OptionalExtension};

/// One row per interval: `?1` device, `?2` from, `?3` to, `?4` the interval, `?5`/`?6` the
/// packing of [`crate::storage::energy::PACK_SHIFT`]. A single pass over the index range.
const INTERVALS: &str = "
SELECT time - ((time % ?4) + ?4) % ?4 AS b, COUNT(energy_wh), MIN(energy_wh), MAX(energy_wh),
       MIN((time - ?2) * ?5 + energy_wh + ?6), MAX((time - ?2) * ?5 + energy_wh + ?6),
       AVG(power_w)
FROM telemetry WHERE device_id = ?1 AND time >= ?2 AND time < ?3
GROUP BY b ORDER BY b";

impl EnergyStore for Sqlite {
    fn meter_data(&self, device: u32, from: i64, to: i64) -> Result<MeterData> {
        check_range(from, to)?;
        let conn = self.reader()?;
        let mut stmt = conn.prepare_cached(INTERVALS)?;
        let rows = stmt
            .query_map(
                params![device, from, to, INTERVAL_S, PACK_SHIFT, PACK_BIAS],
                |r| {
                    let unpack_opt = |k: Option<i64>| k.map(|k| unpack(from, k));
                    Ok(IntervalAgg {
                        start: r.get(0)?,
                        count: r.get(1)?,
                        min_max: match (r.get::<_, Option<i64>>(2)?, r.get::<_, Option<i64>>(3)?) {
                            (Some(a), Some(b)) => Some((a, b)),
                            _ => None,
                        },
                        first: unpack_opt(r.get(4)?),
                        last: unpack_opt(r.get(5)?),
                        power_w: r.get(6)?,
                    })
                },
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        // `?2` is `from` for the reading before the range, `to` for the one after it.
        let probe = |sql: &str, at: i64| -> Result<Option<(i64, i64)>> {
            Ok(conn
                .prepare_cached(sql)?
                .query_row(params![device, at, MAX_GAP_S], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?)
        };
        let before = probe(
            "SELECT time, energy_wh FROM telemetry
             WHERE device_id = ?1 AND time >= ?2 - ?3 AND time < ?2 AND energy_wh IS NOT NULL
             ORDER BY time DESC, boot DESC, seq DESC LIMIT 1",
            from,
        )?;
        let after = probe(
            "SELECT time, energy_wh FROM telemetry
             WHERE device_id = ?1 AND time >= ?2 AND time < ?2 + ?3 AND energy_wh IS NOT NULL
             ORDER BY time, boot, seq LIMIT 1",
            to,
        )?;
        Ok(assemble(&rows, before, after, from, to))
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
