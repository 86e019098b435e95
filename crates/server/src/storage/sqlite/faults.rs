//! Per-channel fault reports in SQLite ([`crate::storage::faults`]).

use super::Sqlite;
use crate::storage::faults::{ChannelFault, FaultStore, SELECT_SQL};
use crate::storage::Result;
use rusqlite::params;
use tek_proto::channel::faults::FaultEntry;

impl FaultStore for Sqlite {
    fn store_channel_faults(&self, device_id: u32, faults: &[FaultEntry], at: i64) -> Result<()> {
        let mut conn = self.writer()?;
        let tx = conn.transaction()?;
        tx.execute(
            "DELETE FROM channel_faults WHERE device_id = ?1",
            params![device_id],
        )?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT OR REPLACE INTO channel_faults
                 (device_id, channel, errors, code, detail, received_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for f in faults {
                let (channel, errors, code, detail) = ChannelFault::of(f, at).columns();
                stmt.execute(params![device_id, channel, errors, code, detail, at])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn channel_faults(&self, device_id: u32) -> Result<Vec<ChannelFault>> {
        let conn = self.reader()?;
        let mut stmt = conn.prepare_cached(&format!("{SELECT_SQL}?1 ORDER BY channel"))?;
        let mut rows = stmt.query(params![device_id])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            out.push(ChannelFault::from_columns(
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
            )?);
        }
        Ok(out)
    }
}
