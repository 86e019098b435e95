//! Energy in SQLite: a device's 15-minute rollups ([`crate::storage::rollup`]) turned into
//! meter data by the rules of [`crate::storage::energy`], and site tariffs as JSON.

use super::Sqlite;
use crate::energy::tariff::Tariff;
use crate::storage::energy::{check_range, decode_tariff, encode_tariff, EnergyStore, MeterData};
use crate::storage::rollup;
use crate::storage::{Error, Result};
use rusqlite::{params, OptionalExtension};

impl EnergyStore for Sqlite {
    fn meter_data(&self, device: u32, from: i64, to: i64) -> Result<MeterData> {
        let mut data = MeterData::default();
        self.with_meter_data(device, from, to, &mut |d| data = d.clone())?;
        Ok(data)
    }

    fn with_meter_data(
        &self,
        device: u32,
        from: i64,
        to: i64,
        f: &mut dyn FnMut(&MeterData),
    ) -> Result<()> {
        check_range(from, to)?;
        rollup::check_aligned(from, to)?;
        let conn = self.telemetry_reader()?;
        // Rows and sealed days in one snapshot: a sealing pass between the two reads would
        // otherwise count its rows twice or not at all.
        let tx = conn.unchecked_transaction()?;
        super::quarter::meter_data_with(&tx, device, from, to, f)?;
        tx.finish()?;
        Ok(())
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
