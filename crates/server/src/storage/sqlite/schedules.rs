//! Schedule settings in SQLite (one row per device that has any).

use super::Sqlite;
use crate::storage::schedules::ScheduleStore;
use crate::storage::{Error, Result};
use rusqlite::{params, OptionalExtension};

impl ScheduleStore for Sqlite {
    fn schedule_zone(&self, device_id: u32) -> Result<Option<String>> {
        let conn = self.reader()?;
        Ok(conn
            .query_row(
                "SELECT time_zone FROM schedule_zones WHERE device_id = ?1",
                params![device_id],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn set_schedule_zone(&self, device_id: u32, zone: &str) -> Result<()> {
        let conn = self.writer()?;
        let exists: Option<i64> = conn
            .query_row(
                "SELECT id FROM devices WHERE id = ?1",
                params![device_id],
                |r| r.get(0),
            )
            .optional()?;
        if exists.is_none() {
            return Err(Error::NotFound(device_id));
        }
        conn.execute(
            "INSERT INTO schedule_zones (device_id, time_zone) VALUES (?1, ?2)
             ON CONFLICT (device_id) DO UPDATE SET time_zone = excluded.time_zone",
            params![device_id, zone],
        )?;
        Ok(())
    }
}
