//! Energy in SQLite: a device's 15-minute rollups ([`crate::storage::rollup`]) turned into
//! meter data by the rules of [`crate::storage::energy`], and site tariffs as JSON.

use super::Sqlite;
use crate::energy::tariff::Tariff;
use crate::storage::energy::{
    assemble, check_range, decode_tariff, encode_tariff, EnergyStore, MeterData, MAX_GAP_S,
};
use crate::storage::rollup::{self, Rollup};
use crate::storage::{Error, Result};
use rusqlite::{params, OptionalExtension};

impl EnergyStore for Sqlite {
    fn meter_data(&self, device: u32, from: i64, to: i64) -> Result<MeterData> {
        check_range(from, to)?;
        rollup::check_aligned(from, to)?;
        let conn = self.reader()?;
        let mut stmt = conn.prepare_cached(rollup::INTERVALS)?;
        let rows = stmt
            .query_map(params![device, from, to], |r| {
                Ok(Rollup {
                    device_id: device,
                    start: r.get(1)?,
                    energy_count: r.get(2)?,
                    energy_min: r.get(3)?,
                    energy_max: r.get(4)?,
                    energy_first: r.get(5)?,
                    energy_last: r.get(6)?,
                    power_sum: r.get(7)?,
                    power_count: r.get(8)?,
                })
            })?
            .map(|r| r.map(|r| r.agg()))
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let probe = |sql: &str, at: i64| -> Result<Option<(i64, Option<i64>)>> {
            Ok(conn
                .prepare_cached(sql)?
                .query_row(params![device, at, MAX_GAP_S], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?)
        };
        let before = rollup::reading_before(from, probe(rollup::BEFORE, from)?);
        let after = rollup::reading_after(to, probe(rollup::AFTER, to)?);
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
