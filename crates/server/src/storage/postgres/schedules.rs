//! Schedule settings in PostgreSQL (one row per device that has any), as in the SQLite backend.

use super::Postgres;
use crate::storage::schedules::ScheduleStore;
use crate::storage::{Error, Result};

impl ScheduleStore for Postgres {
    fn schedule_zone(&self, device_id: u32) -> Result<Option<String>> {
        self.run(move |s| async move {
            let c = s.conn().await?;
            let row = c
                .query_opt(
                    "SELECT time_zone FROM schedule_zones WHERE device_id = $1",
                    &[&i64::from(device_id)],
                )
                .await?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    fn set_schedule_zone(&self, device_id: u32, zone: &str) -> Result<()> {
        let zone = zone.to_owned();
        self.run(move |s| async move {
            let c = s.conn().await?;
            let d = i64::from(device_id);
            // One statement: the row appears only if the device exists.
            let n = c
                .execute(
                    "INSERT INTO schedule_zones (device_id, time_zone)
                     SELECT id, $2 FROM devices WHERE id = $1
                     ON CONFLICT (device_id) DO UPDATE SET time_zone = excluded.time_zone",
                    &[&d, &zone],
                )
                .await?;
            if n == 0 {
                return Err(Error::NotFound(device_id));
            }
            Ok(())
        })
    }
}
