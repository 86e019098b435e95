//! Boots with estimated times in PostgreSQL ([`crate::storage::backlog`]). Two servers noting
//! the same boot at once both recompute it from the committed records; the upsert takes the
//! row's lock, so the later one writes the fuller count.

use super::{u32_col, Postgres};
use crate::storage::backlog::{list_sql, note_sql, BacklogStore, EstimatedBoot};
use crate::storage::Result;
use std::collections::HashMap;

impl BacklogStore for Postgres {
    fn note_estimated_boots(&self, boots: &[(u32, u32)]) -> Result<()> {
        if boots.is_empty() {
            return Ok(());
        }
        let boots: Vec<(i64, i64)> = boots
            .iter()
            .map(|&(d, b)| (i64::from(d), i64::from(b)))
            .collect();
        self.run(move |s| async move {
            let mut c = s.conn().await?;
            let tx = c.transaction().await?;
            let stmt = tx.prepare_cached(&note_sql("$")).await?;
            for (device, boot) in &boots {
                tx.execute(&stmt, &[device, boot]).await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    fn estimated_boots(&self, device_id: u32, limit: usize) -> Result<Vec<EstimatedBoot>> {
        self.run(move |s| async move {
            let c = s.conn().await?;
            let rows = c
                .query(
                    &list_sql("$", "$2"),
                    &[&i64::from(device_id), &crate::storage::sql_limit(limit)],
                )
                .await?;
            rows.iter().map(|r| boot(r, 0)).collect()
        })
    }

    fn estimated_boots_of(
        &self,
        device_ids: &[u32],
        limit: usize,
    ) -> Result<Vec<Vec<EstimatedBoot>>> {
        let ids: Vec<i64> = device_ids.iter().map(|&d| i64::from(d)).collect();
        let device_ids = device_ids.to_vec();
        self.run(move |s| async move {
            let c = s.conn().await?;
            let rows = c
                .query(BOOTS_OF_SQL, &[&ids, &crate::storage::sql_limit(limit)])
                .await?;
            let mut by: HashMap<u32, Vec<EstimatedBoot>> = HashMap::new();
            for r in &rows {
                let device = u32_col(r.get(0), "device id")?;
                by.entry(device).or_default().push(boot(r, 1)?);
            }
            Ok(device_ids
                .iter()
                .map(|d| by.get(d).cloned().unwrap_or_default())
                .collect())
        })
    }
}

/// [`list_sql`] for every device of `$1` (a `BIGINT[]`) in one statement: each device's newest
/// `$2` boots, device id first, newest boot first within a device.
const BOOTS_OF_SQL: &str = "
    SELECT device_id, boot, records, first_time, last_time FROM (
        SELECT device_id, boot, records, first_time, last_time,
               row_number() OVER (PARTITION BY device_id ORDER BY boot DESC) AS n
        FROM backlog_estimated_boots WHERE device_id = ANY($1)) AS b
    WHERE n <= $2
    ORDER BY device_id, boot DESC";

/// The boot whose columns start at `at`: boot, records, first and last time.
fn boot(r: &tokio_postgres::Row, at: usize) -> Result<EstimatedBoot> {
    Ok(EstimatedBoot {
        boot: u32_col(r.get(at), "boot")?,
        records: r.get::<_, i64>(at + 1).max(0) as u64,
        first: r.get(at + 2),
        last: r.get(at + 3),
    })
}
