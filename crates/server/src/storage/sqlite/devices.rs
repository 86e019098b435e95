//! Devices in SQLite. The only place device keys are written and read: encryption at rest
//! (issue 11) wraps `add_devices` and `load_device` here.

use super::{u32_col, Sqlite};
use crate::storage::devices::{DeviceRecord, DeviceStore, NewDevice, StoredDevice};
use crate::storage::{counter_from_sql, counter_to_sql, Error, Result};
use rusqlite::{params, OptionalExtension};
use tek_proto::crypto::{Key, KEY_LEN};

const COLUMNS: &str =
    "id, name, created_at, last_seen, config_desired, config_applied, config_rolled_back";

fn record(r: &rusqlite::Row<'_>) -> rusqlite::Result<Raw> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    ))
}

type Raw = (i64, String, i64, Option<i64>, i64, i64, Option<i64>);

fn convert(raw: Raw) -> Result<DeviceRecord> {
    let (id, name, created_at, last_seen, desired, applied, rolled_back) = raw;
    Ok(DeviceRecord {
        id: u32_col(id, "device id")?,
        name,
        created_at,
        last_seen,
        config_desired: u32_col(desired, "config version")?,
        config_applied: u32_col(applied, "config version")?,
        config_rolled_back: rolled_back
            .map(|v| u32_col(v, "config version"))
            .transpose()?,
    })
}

impl DeviceStore for Sqlite {
    fn add_devices(&self, devices: &[NewDevice], now: i64) -> Result<()> {
        let mut conn = self.writer()?;
        let tx = conn.transaction()?;
        {
            let mut exists = tx.prepare_cached("SELECT 1 FROM devices WHERE id = ?1")?;
            let mut insert = tx.prepare_cached(
                "INSERT INTO devices (id, name, key, created_at) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for d in devices {
                if d.id == 0 {
                    return Err(Error::Backend("device id 0 is reserved".into()));
                }
                if exists.exists(params![d.id])? {
                    return Err(Error::Exists(d.id));
                }
                insert.execute(params![d.id, d.name, &d.key.0[..], now])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn device(&self, id: u32) -> Result<DeviceRecord> {
        let conn = self.reader()?;
        let raw = conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM devices WHERE id = ?1"),
                params![id],
                record,
            )
            .optional()?
            .ok_or(Error::NotFound(id))?;
        convert(raw)
    }

    fn list_devices(&self) -> Result<Vec<DeviceRecord>> {
        let conn = self.reader()?;
        let mut stmt =
            conn.prepare_cached(&format!("SELECT {COLUMNS} FROM devices ORDER BY id"))?;
        let rows = stmt.query_map([], record)?;
        rows.map(|r| convert(r?)).collect()
    }

    fn load_device(&self, id: u32) -> Result<Option<StoredDevice>> {
        let conn = self.reader()?;
        let row: Option<(Vec<u8>, Option<i64>)> = conn
            .query_row(
                "SELECT key, hello_counter FROM devices WHERE id = ?1",
                params![id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((key, counter)) = row else {
            return Ok(None);
        };
        let key: [u8; KEY_LEN] = key
            .try_into()
            .map_err(|_| Error::Corrupt(format!("device {id}: key is not {KEY_LEN} bytes")))?;
        Ok(Some(StoredDevice {
            id,
            key: Key(key),
            hello_counter: counter.map(counter_from_sql),
        }))
    }

    fn accept_hello(&self, id: u32, counter: u64, now: i64) -> Result<bool> {
        let conn = self.writer()?;
        let changed = conn
            .prepare_cached(
                "UPDATE devices SET hello_counter = ?2, last_seen = ?3
             WHERE id = ?1 AND (hello_counter IS NULL OR hello_counter < ?2)",
            )?
            .execute(params![id, counter_to_sql(counter), now])?;
        Ok(changed == 1)
    }

    fn max_device_id(&self) -> Result<u32> {
        let conn = self.reader()?;
        let v: Option<i64> = conn.query_row("SELECT MAX(id) FROM devices", [], |r| r.get(0))?;
        v.map_or(Ok(0), |v| u32_col(v, "device id"))
    }
}
