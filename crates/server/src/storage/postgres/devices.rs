//! Devices in PostgreSQL. The only place device keys are written and read: they are stored
//! wrapped under the master key ([`crate::vault`], a file outside the database shared by every
//! server of the cluster), never in the clear.

use super::{u32_col, Postgres};
use crate::storage::devices::{DeviceRecord, DeviceStore, NewDevice, StoredDevice};
use crate::storage::sealed::{self, vault_error};
use crate::storage::{counter_from_sql, counter_to_sql, Error, Result};
use crate::vault::Vault;
use std::sync::Arc;
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

impl Postgres {
    fn vault(&self) -> Result<&Arc<Vault>> {
        self.vault.as_ref().ok_or_else(|| {
            Error::Backend(
                "device keys need the master key: give --master-key FILE (the `master_key` \
                 file of the servers)"
                    .into(),
            )
        })
    }

    /// Refuses a master key that does not open the keys already stored (a server started with
    /// another cluster's or a freshly created key file): better a clear error at start than
    /// every Hello failing.
    pub(super) fn check_master_key(&self) -> Result<()> {
        let vault = self.vault()?.clone();
        let row = self.run(|s| async move {
            let c = s.conn().await?;
            let len = i32::try_from(crate::vault::WRAPPED_LEN).unwrap_or(i32::MAX);
            Ok(c.query_opt(
                "SELECT id, key FROM devices WHERE octet_length(key) = $1 ORDER BY id LIMIT 1",
                &[&len],
            )
            .await?
            .map(|r| (r.get::<_, i64>(0), r.get::<_, Vec<u8>>(1))))
        })?;
        if let Some((id, stored)) = row {
            let id = u32_col(id, "device id")?;
            if vault.open(id, &stored).is_err() {
                return Err(Error::Backend(format!(
                    "the master key does not open the device keys stored in this database \
                     (device {id}): every server of a cluster must use the same `master_key` file"
                )));
            }
        }
        Ok(())
    }

    /// Wraps every key still stored in the clear (written by a version before keys at rest);
    /// returns how many. One transaction: all or none.
    pub(super) fn wrap_clear_keys(&self) -> Result<usize> {
        let vault = self.vault()?.clone();
        self.rewrap_keys(vault, |stored| !crate::vault::is_wrapped(stored), false)
    }

    /// Re-seals the stored keys that `select` picks, opened under this storage's master key and
    /// sealed under `to`, in one transaction (rows locked, so two servers starting at once
    /// cannot both rewrap). Returns how many rows changed.
    /// In the same transaction, configuration items and destination secrets still in the clear
    /// are sealed (with `all_secrets`, every one is re-sealed: rotation); the count is of keys.
    fn rewrap_keys(
        &self,
        to: Arc<Vault>,
        select: fn(&[u8]) -> bool,
        all_secrets: bool,
    ) -> Result<usize> {
        let from = self.vault()?.clone();
        self.run(move |s| async move {
            let mut c = s.conn().await?;
            let tx = c.transaction().await?;
            let rows = tx
                .query("SELECT id, key FROM devices ORDER BY id FOR UPDATE", &[])
                .await?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            let keys = sealed::rewrapped_keys(&from, &to, select, rows)?;
            let update = tx
                .prepare("UPDATE devices SET key = $2 WHERE id = $1")
                .await?;
            for (id, key) in &keys {
                tx.execute(&update, &[id, key]).await?;
            }
            let secrets = super::sealed_rows::reseal(&tx, &from, &to, all_secrets).await?;
            tx.commit().await?;
            sealed::log_resealed(secrets);
            Ok(keys.len())
        })
    }

    /// Master key rotation (docs/SECURITY.md): creates a new master key at `new_key` (which must
    /// not exist), re-seals every device key under it in one transaction, and returns the number
    /// of keys. The caller then replaces the key file with `new_key`, and every server of the
    /// cluster must be restarted with the new file.
    pub fn rotate_master(&self, new_key: &std::path::Path) -> Result<usize> {
        let to = sealed::new_master_key(new_key)?;
        self.rewrap_keys(Arc::new(to), |_| true, true)
    }
}

impl DeviceStore for Postgres {
    fn add_devices(&self, devices: &[NewDevice], now: i64) -> Result<()> {
        let vault = self.vault()?;
        let devices: Vec<(i64, String, Vec<u8>)> = devices
            .iter()
            .map(|d| {
                let wrapped = vault.wrap(d.id, &d.key).map_err(vault_error)?;
                Ok((i64::from(d.id), d.name.clone(), wrapped))
            })
            .collect::<Result<_>>()?;
        self.run(move |s| async move {
            let mut c = s.conn().await?;
            let tx = c.transaction().await?;
            let insert = tx
                .prepare(
                    "INSERT INTO devices (id, name, key, created_at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (id) DO NOTHING",
                )
                .await?;
            // Its channel registry starts with the factory map (storage::channels).
            let [map, channels] = crate::storage::channels::seed_device_sql("$");
            let map = tx.prepare(&map).await?;
            let channels = tx.prepare(&channels).await?;
            for (id, name, key) in &devices {
                if *id == 0 {
                    return Err(Error::Backend("device id 0 is reserved".into()));
                }
                // Dropping the transaction without commit rolls every insert back.
                if tx.execute(&insert, &[id, name, key, &now]).await? == 0 {
                    return Err(Error::Exists(*id as u32));
                }
                tx.execute(&map, &[id, &now]).await?;
                tx.execute(&channels, &[id]).await?;
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
        let vault = self.vault()?.clone();
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
            let stored: Vec<u8> = row.get(0);
            let key = vault.open(id, &stored).map_err(vault_error)?;
            Ok(Some(StoredDevice {
                id,
                key,
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

    fn rename_device(&self, id: u32, name: &str) -> Result<()> {
        let name = name.to_owned();
        self.run(move |s| async move {
            let c = s.conn().await?;
            let n = c
                .execute(
                    "UPDATE devices SET name = $2 WHERE id = $1",
                    &[&i64::from(id), &name],
                )
                .await?;
            if n == 0 {
                return Err(Error::NotFound(id));
            }
            Ok(())
        })
    }

    fn replace_key(&self, id: u32, key: &tek_proto::crypto::Key) -> Result<()> {
        let wrapped = self.vault()?.wrap(id, key).map_err(vault_error)?;
        self.run(move |s| async move {
            let c = s.conn().await?;
            let n = c
                .execute(
                    "UPDATE devices SET key = $2, hello_counter = NULL WHERE id = $1",
                    &[&i64::from(id), &wrapped],
                )
                .await?;
            if n == 0 {
                return Err(Error::NotFound(id));
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::postgres::testing;
    use tek_proto::crypto::Key;

    fn stored_keys(db: &Postgres) -> Vec<(i64, Vec<u8>)> {
        db.run(|s| async move {
            let c = s.conn().await?;
            Ok(c.query("SELECT id, key FROM devices ORDER BY id", &[])
                .await?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect())
        })
        .unwrap()
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn a_database_dump_reveals_no_device_key() {
        let Some(db) = testing::database() else {
            return;
        };
        let fleet = crate::provision::provision(&*db, None, 20, "pool", 0).unwrap();
        let keys: Vec<Key> = fleet.device.iter().map(|d| d.key().unwrap()).collect();
        // The server still gets every key back ...
        for (d, k) in fleet.device.iter().zip(&keys) {
            assert_eq!(db.load_device(d.id).unwrap().unwrap().key, *k);
        }
        // ... but the keys column holds none of them: every value is the wrapped form.
        let stored = stored_keys(&db);
        assert_eq!(stored.len(), 20);
        for (id, v) in &stored {
            assert!(
                crate::vault::is_wrapped(v),
                "device {id}: {} bytes",
                v.len()
            );
            for k in &keys {
                assert!(
                    !v.windows(16).any(|w| w == k.0),
                    "device {id}: a key in the clear"
                );
            }
        }
        // Nor does a full dump of the database (pg_dump writes bytea as hex).
        if let Some(bin) = testing::bin_dir() {
            let out = std::process::Command::new(bin.join("pg_dump"))
                .arg("--dbname")
                .arg(&db.url)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let dump = String::from_utf8_lossy(&out.stdout).to_lowercase();
            assert!(
                dump.contains("copy public.devices"),
                "the dump has the devices"
            );
            for k in &keys {
                assert!(!dump.contains(&hex(&k.0)), "a key in the dump");
            }
        }
        // Another master key (the database copied elsewhere) opens none of them: refused at
        // connect with a clear message.
        let dir = tempfile::tempdir().unwrap();
        let err = Postgres::connect_sealed(&db.url, &dir.path().join("other.key")).unwrap_err();
        assert!(
            err.to_string().contains("master key does not open"),
            "{err}"
        );
        // Without any master key, keys cannot be read or written.
        let bare = Postgres::connect(&db.url).unwrap();
        assert!(bare
            .load_device(1)
            .unwrap_err()
            .to_string()
            .contains("--master-key"));
    }

    #[test]
    fn clear_keys_of_an_older_version_are_wrapped_at_connect_and_rotation_moves_them() {
        let Some(db) = testing::database() else {
            return;
        };
        let fleet = crate::provision::provision(&*db, None, 3, "pool", 0).unwrap();
        let key = fleet.device[1].key().unwrap();
        // As an older version stored it: the key itself in the column.
        let clear = key.0.to_vec();
        db.run(move |s| async move {
            let c = s.conn().await?;
            c.execute("UPDATE devices SET key = $1 WHERE id = 2", &[&clear])
                .await?;
            Ok(())
        })
        .unwrap();
        assert!(!crate::vault::is_wrapped(&stored_keys(&db)[1].1));
        // A server connecting wraps it, and reads it back.
        let second = Postgres::connect_sealed(&db.url, &db.master_key).unwrap();
        let stored = stored_keys(&second);
        assert!(stored.iter().all(|(_, v)| crate::vault::is_wrapped(v)));
        assert_eq!(second.load_device(2).unwrap().unwrap().key, key);

        // Rotation: every key re-sealed under a new master key.
        let dir = tempfile::tempdir().unwrap();
        let new_key = dir.path().join("master.key.new");
        assert_eq!(second.rotate_master(&new_key).unwrap(), 3);
        assert!(
            second.rotate_master(&new_key).is_err(),
            "the new file exists"
        );
        drop(second);
        let rotated = stored_keys(&db);
        assert!(rotated.iter().zip(&stored).all(|(a, b)| a.1 != b.1));
        let err = Postgres::connect_sealed(&db.url, &db.master_key).unwrap_err();
        assert!(
            err.to_string().contains("master key does not open"),
            "{err}"
        );
        let third = Postgres::connect_sealed(&db.url, &new_key).unwrap();
        for d in &fleet.device {
            assert_eq!(
                third.load_device(d.id).unwrap().unwrap().key,
                d.key().unwrap()
            );
        }
    }
}
