//! Boots with estimated times in PostgreSQL ([`crate::storage::backlog`]). Two servers noting
//! the same boot at once both recompute it from the committed records; the upsert takes the
//! row's lock, so the later one writes the fuller count.

use super::{u32_col, Postgres};
use crate::storage::backlog::{list_sql, note_sql, BacklogStore, EstimatedBoot};
use crate::storage::Result;

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
                    &list_sql("$"),
                    &[&i64::from(device_id), &crate::storage::sql_limit(limit)],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(EstimatedBoot {
                        boot: u32_col(r.get(0), "boot")?,
                        records: r.get::<_, i64>(1).max(0) as u64,
                        first: r.get(2),
                        last: r.get(3),
                    })
                })
                .collect()
        })
    }
}
