//! Devices in PostgreSQL. The only place device keys are written and read.

use super::{u32_col, Postgres};
use crate::storage::devices::{DeviceRecord, DeviceStore, NewDevice, StoredDevice};
use crate::storage::{counter_from_sql, counter_to_sql, Error, Result};
use tek_proto::crypto::{Key, KEY_LEN};
use tokio_postgres::Row;

const COLUMNS: &str =
    "id, name, created_at, last_seen, config_desired, config_applied, config_rolled_back";

fn convert(r: &Row) -> Result<DeviceRecord> {
    Ok(DeviceRecord {
        id: u32_col(r.get(0), "device id")?,
        name: r.get(1),
        created_at: r.get(2),
        last_seen: r.get(3),
        config_desired: u32_col(r.get(4), "config version")?,
        config_applied: u32_col(r.get(5), "config version")?,
        config_rolled_back: r
            .get::<_, Option<i64>>(6)
            .map(|v| u32_col(v, "config version"))
            .transpose()?,
    })
}

impl DeviceStore for Postgres {
    fn add_devices(&self, devices: &[NewDevice], now: i64) -> Result<()> {
        let devices: Vec<(i64, String, Vec<u8>)> = devices
            .iter()
            .map(|d| (i64::from(d.id), d.name.clone(), d.key.0.to_vec()))
            .collect();
        self.run(move |s| async move {
            let mut c = s.conn().await?;
            let tx = c.transaction().await?;
            let insert = tx
                .prepare(
                    "INSERT INTO devices (id, name, key, created_at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (id) DO NOTHING",
                )
                .await?;
            for (id, name, key) in &devices {
                if *id == 0 {
                    return Err(Error::Backend("device id 0 is reserved".into()));
                }
                // Dropping the transaction without commit rolls every insert back.
                if tx.execute(&insert, &[id, name, key, &now]).await? == 0 {
                    return Err(Error::Exists(*id as u32));
                }
            }
            tx.commit().await?;
            Ok(())
        })
    }

    fn device(&self, id: u32) -> Result<DeviceRecord> {
        self.run(move |s| async move {
            let c = s.conn().await?;
            let row = c
                .query_opt(
                    &format!("SELECT {COLUMNS} FROM devices WHERE id = $1"),
                    &[&i64::from(id)],
                )
                .await?
                .ok_or(Error::NotFound(id))?;
            convert(&row)
        })
    }

    fn list_devices(&self) -> Result<Vec<DeviceRecord>> {
        self.run(|s| async move {
            let c = s.conn().await?;
            let rows = c
                .query(&format!("SELECT {COLUMNS} FROM devices ORDER BY id"), &[])
                .await?;
            rows.iter().map(convert).collect()
        })
    }

    fn load_device(&self, id: u32) -> Result<Option<StoredDevice>> {
        self.run(move |s| async move {
            let c = s.conn().await?;
            let Some(row) = c
                .query_opt(
                    "SELECT key, hello_counter FROM devices WHERE id = $1",
                    &[&i64::from(id)],
                )
                .await?
            else {
                return Ok(None);
            };
            let key: Vec<u8> = row.get(0);
            let key: [u8; KEY_LEN] = key
                .try_into()
                .map_err(|_| Error::Corrupt(format!("device {id}: key is not {KEY_LEN} bytes")))?;
            Ok(Some(StoredDevice {
                id,
                key: Key(key),
                hello_counter: row.get::<_, Option<i64>>(1).map(counter_from_sql),
            }))
        })
    }

    fn accept_hello(&self, id: u32, counter: u64, now: i64) -> Result<bool> {
        self.run(move |s| async move {
            let c = s.conn().await?;
            // One statement: the row lock makes the comparison and the write atomic against
            // every other server's Hello for the same device.
            let changed = c
                .execute(
                    "UPDATE devices SET hello_counter = $2, last_seen = $3
                     WHERE id = $1 AND (hello_counter IS NULL OR hello_counter < $2)",
                    &[&i64::from(id), &counter_to_sql(counter), &now],
                )
                .await?;
            Ok(changed == 1)
        })
    }

    fn max_device_id(&self) -> Result<u32> {
        self.run(|s| async move {
            let c = s.conn().await?;
            let v: Option<i64> = c
                .query_one("SELECT MAX(id) FROM devices", &[])
                .await?
                .get(0);
            v.map_or(Ok(0), |v| u32_col(v, "device id"))
        })
    }
}
