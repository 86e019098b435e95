//! Devices in SQLite. The only place device keys are written and read: they are stored wrapped
//! under the master key ([`crate::vault`]), never in the clear.

use super::{u32_col, Sqlite};
use crate::storage::devices::{DeviceRecord, DeviceStore, NewDevice, StoredDevice};
use crate::storage::sealed::{self, vault_error};
use crate::storage::{counter_from_sql, counter_to_sql, Error, Result};
use rusqlite::{params, OptionalExtension};

const COLUMNS: &str =
    "id, name, created_at, last_seen, config_desired, config_applied, config_rolled_back";

fn record(r: &rusqlite::Row<'_>) -> rusqlite::Result<Raw> {
    // rusqlite maps a row to a tuple of its columns, in order.
    r.try_into()
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

impl Sqlite {
    /// Wraps every key still stored in the clear (written by a version before keys at rest);
    /// returns how many. One transaction: all or none.
    pub(super) fn wrap_clear_keys(&self) -> Result<usize> {
        self.rewrap_keys(
            &self.vault,
            |stored| !crate::vault::is_wrapped(stored),
            false,
        )
    }

    /// Re-seals the stored keys that `select` picks, opened under this database's master key
    /// and sealed under `to`, in one transaction; in the same transaction configuration items
    /// and destination secrets still in the clear are sealed (with `all_secrets`, every one is
    /// re-sealed: rotation). Returns how many device keys changed.
    fn rewrap_keys(
        &self,
        to: &crate::vault::Vault,
        select: impl Fn(&[u8]) -> bool,
        all_secrets: bool,
    ) -> Result<usize> {
        let mut conn = self.writer()?;
        let tx = conn.transaction()?;
        let rows: Vec<(i64, Vec<u8>)> = tx
            .prepare("SELECT id, key FROM devices")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let keys = sealed::rewrapped_keys(&self.vault, to, select, rows)?;
        {
            let mut update = tx.prepare("UPDATE devices SET key = ?2 WHERE id = ?1")?;
            for (id, key) in &keys {
                update.execute(params![id, key])?;
            }
        }
        let secrets = super::sealed_rows::reseal(&tx, &self.vault, to, all_secrets)?;
        tx.commit()?;
        sealed::log_resealed(secrets);
        Ok(keys.len())
    }

    /// Master key rotation (`docs/SECURITY.md`): creates a new master key at `new_key` (which
    /// must not exist), re-seals every device key under it in one transaction, and returns the
    /// number of keys. The caller then replaces `master.key` with `new_key`; until it does, the
    /// database only opens with the new key file, so the server must be stopped meanwhile.
    pub fn rotate_master(&self, new_key: &std::path::Path) -> Result<usize> {
        let to = sealed::new_master_key(new_key)?;
        self.rewrap_keys(&to, |_| true, true)
    }
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
            // Its channel registry starts with the factory map (storage::channels).
            let [map, channels] = crate::storage::channels::seed_device_sql("?");
            let mut map = tx.prepare_cached(&map)?;
            let mut channels = tx.prepare_cached(&channels)?;
            for d in devices {
                if d.id == 0 {
                    return Err(Error::Backend("device id 0 is reserved".into()));
                }
                if exists.exists(params![d.id])? {
                    return Err(Error::Exists(d.id));
                }
                let wrapped = self.vault.wrap(d.id, &d.key).map_err(vault_error)?;
                insert.execute(params![d.id, d.name, wrapped, now])?;
                map.execute(params![d.id, now])?;
                channels.execute(params![d.id])?;
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
        let key = self.vault.open(id, &key).map_err(vault_error)?;
        Ok(Some(StoredDevice {
            id,
            key,
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

    fn rename_device(&self, id: u32, name: &str) -> Result<()> {
        let conn = self.writer()?;
        let n = conn.execute(
            "UPDATE devices SET name = ?2 WHERE id = ?1",
            params![id, name],
        )?;
        if n == 0 {
            return Err(Error::NotFound(id));
        }
        Ok(())
    }

    fn replace_key(&self, id: u32, key: &tek_proto::crypto::Key) -> Result<()> {
        let wrapped = self.vault.wrap(id, key).map_err(vault_error)?;
        let conn = self.writer()?;
        let n = conn.execute(
            "UPDATE devices SET key = ?2, hello_counter = NULL WHERE id = ?1",
            params![id, wrapped],
        )?;
        if n == 0 {
            return Err(Error::NotFound(id));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::prepare;
    use super::*;
    use tek_proto::crypto::Key;

    /// Every file of the data directory but the master key.
    fn database_bytes(dir: &std::path::Path) -> Vec<u8> {
        let mut all = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.file_name().unwrap() != crate::vault::FILE_NAME {
                all.extend(std::fs::read(&p).unwrap());
            }
        }
        all
    }

    #[test]
    fn a_database_dump_reveals_no_device_key() {
        let (dir, db) = prepare();
        let fleet = crate::provision::provision(&db, None, 20, "pool", 0).unwrap();
        let keys: Vec<Key> = fleet.device.iter().map(|d| d.key().unwrap()).collect();
        // The server still gets every key back ...
        for (d, k) in fleet.device.iter().zip(&keys) {
            assert_eq!(db.load_device(d.id).unwrap().unwrap().key, *k);
        }
        drop(db);
        // ... but neither the database file nor its WAL holds any of them.
        let bytes = database_bytes(dir.path());
        assert!(bytes.len() > 4096);
        for k in &keys {
            assert!(
                !bytes.windows(16).any(|w| w == k.0),
                "a key is in the clear"
            );
        }
        // Without the master key the database does not give them up: a new master key (the
        // database copied elsewhere) opens none of them.
        std::fs::remove_file(crate::vault::path_in(dir.path())).unwrap();
        let db = Sqlite::open_dir(dir.path()).unwrap();
        assert!(matches!(db.load_device(1), Err(Error::Corrupt(_))));
    }

    #[test]
    fn clear_keys_of_an_older_version_are_wrapped_at_open_and_rotation_moves_them() {
        let (dir, db) = prepare();
        let fleet = crate::provision::provision(&db, None, 3, "pool", 0).unwrap();
        let key = fleet.device[1].key().unwrap();
        // As an older version stored it: the key itself in the column.
        db.writer()
            .unwrap()
            .execute(
                "UPDATE devices SET key = ?1 WHERE id = 2",
                params![&key.0[..]],
            )
            .unwrap();
        drop(db);
        let db = Sqlite::open_dir(dir.path()).unwrap();
        let stored: Vec<u8> = db
            .reader()
            .unwrap()
            .query_row("SELECT key FROM devices WHERE id = 2", [], |r| r.get(0))
            .unwrap();
        assert!(crate::vault::is_wrapped(&stored));
        assert_eq!(db.load_device(2).unwrap().unwrap().key, key);
        assert_eq!(db.wrap_clear_keys().unwrap(), 0);

        // Rotation: every key re-sealed under a new master key, which then replaces the old.
        let new_key = dir.path().join("master.key.new");
        assert_eq!(db.rotate_master(&new_key).unwrap(), 3);
        assert!(db.rotate_master(&new_key).is_err());
        drop(db);
        std::fs::rename(&new_key, crate::vault::path_in(dir.path())).unwrap();
        let db = Sqlite::open_dir(dir.path()).unwrap();
        assert_eq!(db.load_device(2).unwrap().unwrap().key, key);
    }
}
