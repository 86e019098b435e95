//! Per-channel fault reports in PostgreSQL ([`crate::storage::faults`]). The delete and the
//! inserts share one transaction, so two servers storing reports of one device at once leave
//! one whole report (the later commit's), never a mix.

use super::Postgres;
use crate::storage::faults::{ChannelFault, FaultStore, SELECT_SQL};
use crate::storage::Result;
use tek_proto::channel::faults::FaultEntry;

impl FaultStore for Postgres {
    fn store_channel_faults(&self, device_id: u32, faults: &[FaultEntry], at: i64) -> Result<()> {
        let device = i64::from(device_id);
        let rows: Vec<(i64, i64, i64, i64)> = faults
            .iter()
            .map(|f| ChannelFault::of(f, at).columns())
            .collect();
        self.run(move |s| async move {
            let mut c = s.conn().await?;
            let tx = c.transaction().await?;
            tx.execute(
                "DELETE FROM channel_faults WHERE device_id = $1",
                &[&device],
            )
            .await?;
            let stmt = tx
                .prepare_cached(
                    "INSERT INTO channel_faults
                     (device_id, channel, errors, code, detail, received_at)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (device_id, channel) DO UPDATE SET errors = EXCLUDED.errors,
                       code = EXCLUDED.code, detail = EXCLUDED.detail,
                       received_at = EXCLUDED.received_at",
                )
                .await?;
            for (channel, errors, code, detail) in &rows {
                tx.execute(&stmt, &[&device, channel, errors, code, detail, &at])
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    fn channel_faults(&self, device_id: u32) -> Result<Vec<ChannelFault>> {
        self.run(move |s| async move {
            let c = s.conn().await?;
            let rows = c
                .query(
                    &format!("{SELECT_SQL}$1 ORDER BY channel"),
                    &[&i64::from(device_id)],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    ChannelFault::from_columns(r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))
                })
                .collect()
        })
    }
}
