//! Energy in PostgreSQL: a device's 15-minute rollups ([`crate::storage::rollup`], the same
//! queries as the SQLite backend's) turned into meter data by the rules of
//! [`crate::storage::energy`], and site tariffs as JSON text.

use super::{fk, Postgres};
use crate::energy::tariff::Tariff;
use crate::storage::energy::{check_range, decode_tariff, encode_tariff, EnergyStore, MeterData};
use crate::storage::rollup;
use crate::storage::{Error, Result};

impl EnergyStore for Postgres {
    fn meter_data(&self, device: u32, from: i64, to: i64) -> Result<MeterData> {
        check_range(from, to)?;
        rollup::check_aligned(from, to)?;
        self.run(move |s| async move {
            let mut c = s.conn().await?;
            // Rows and sealed days in one snapshot: a sealing pass between the two reads would
            // otherwise count its rows twice or not at all.
            let tx = super::quarter::snapshot(&mut c).await?;
            let data = super::quarter::meter_data(&tx, device, from, to).await?;
            tx.commit().await?;
            Ok(data)
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
