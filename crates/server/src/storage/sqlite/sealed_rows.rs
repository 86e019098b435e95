//! Sealing the configuration items and destination secrets already stored (see
//! [`crate::storage::sealed`]), inside the transaction that wraps or re-seals device keys.

use crate::storage::sealed::{self, StoredItems};
use crate::storage::Result;
use crate::vault::Vault;
use rusqlite::{params, Transaction};

/// Seals the rows still in the clear under `to`; with `all`, also re-seals the sealed ones
/// (opened under `from`: master key rotation). Returns how many rows changed.
pub(super) fn reseal(tx: &Transaction<'_>, from: &Vault, to: &Vault, all: bool) -> Result<usize> {
    let configs: Vec<StoredItems> = tx
        .prepare(
            "SELECT seq, device_id, version, items, sealed FROM configs WHERE sealed = 0 OR ?1",
        )?
        .query_map([all], |r| {
            Ok(StoredItems {
                seq: r.get(0)?,
                device_id: r.get(1)?,
                version: r.get(2)?,
                items: r.get(3)?,
                sealed: r.get(4)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let configs = sealed::resealed_items(from, to, all, configs)?;
    let mut update = tx.prepare("UPDATE configs SET items = ?2, sealed = 1 WHERE seq = ?1")?;
    for (seq, items) in &configs {
        update.execute(params![seq, items])?;
    }
    let secrets: Vec<(i64, String)> = tx
        .prepare("SELECT id, secret FROM alarm_destinations WHERE secret IS NOT NULL")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let secrets = sealed::resealed_secrets(from, to, all, secrets)?;
    let mut update = tx.prepare("UPDATE alarm_destinations SET secret = ?2 WHERE id = ?1")?;
    for (id, secret) in &secrets {
        update.execute(params![id, secret])?;
    }
    Ok(configs.len() + secrets.len())
}

#[cfg(test)]
mod tests {
    use super::super::{Sqlite, FILE_NAME};
    use crate::storage::schema::{self, Dialect};
    use crate::storage::sealed::fixture::{config, contains, store_secrets, GSM, HOOK};
    use crate::storage::{AlarmStore, ConfigStore};
    use rusqlite::{params, Connection};

    /// Every byte of the database files (the WAL too).
    fn file_bytes(dir: &std::path::Path) -> Vec<u8> {
        let mut all = Vec::new();
        for f in [FILE_NAME, "tek.db-wal"] {
            all.extend(std::fs::read(dir.join(f)).unwrap_or_default());
        }
        all
    }

    #[test]
    fn new_rows_are_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let db = Sqlite::open_dir(dir.path()).unwrap();
        store_secrets(&db);
        assert_eq!(
            db.latest_config(1).unwrap().unwrap().config.gsm.password,
            GSM
        );
        assert_eq!(db.destinations().unwrap()[0].secret.as_deref(), Some(HOOK));
        let bytes = file_bytes(dir.path());
        assert!(!contains(&bytes, GSM), "GSM password in the database file");
        assert!(
            !contains(&bytes, HOOK),
            "webhook secret in the database file"
        );
    }

    /// A database of schema version 6 with a configuration and a webhook secret in the clear,
    /// as the version before stored them: migration 7 and the open seal them, and they read
    /// back the same; a master key rotation moves them with the device keys.
    #[test]
    fn clear_rows_of_version_6_are_sealed_at_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut conn = Connection::open(dir.path().join(FILE_NAME)).unwrap();
            let tx = conn.transaction().unwrap();
            let migrations = schema::pending(0, Dialect::Sqlite).unwrap();
            for (_, sql) in migrations.iter().filter(|m| m.0 <= 6) {
                tx.execute_batch(sql).unwrap();
            }
            tx.execute_batch("PRAGMA user_version = 6").unwrap();
            tx.commit().unwrap();
            conn.execute(
                "INSERT INTO devices (id, name, key, created_at, config_desired) \
                 VALUES (1, 'd', ?1, 0, 2)",
                params![vec![3u8; 16]],
            )
            .unwrap();
            let c = config();
            let mut items = vec![0u8; c.items_len()];
            c.emit_items(&mut items).unwrap();
            for version in [1, 2] {
                conn.execute(
                    "INSERT INTO configs (device_id, version, items, saved_at) \
                     VALUES (1, ?1, ?2, 0)",
                    params![version, items],
                )
                .unwrap();
            }
            conn.execute(
                "INSERT INTO alarm_destinations (name, kind, target, secret, created_at) \
                 VALUES ('hook', 'webhook', 'http://127.0.0.1:9/x', ?1, 0)",
                params![HOOK],
            )
            .unwrap();
        }
        let db = Sqlite::open_dir(dir.path()).unwrap();
        let check = |db: &Sqlite| {
            let c = db.latest_config(1).unwrap().unwrap();
            assert_eq!((c.version, c.config.gsm.password.as_str()), (2, GSM));
            assert_eq!(db.destinations().unwrap()[0].secret.as_deref(), Some(HOOK));
            let w = db.writer().unwrap();
            let raw: Vec<(Vec<u8>, bool)> = w
                .prepare("SELECT items, sealed FROM configs")
                .unwrap()
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap();
            assert_eq!(raw.len(), 2);
            for (items, sealed) in raw {
                assert!(sealed && !contains(&items, GSM));
            }
            let secret: String = w
                .query_row("SELECT secret FROM alarm_destinations", [], |r| r.get(0))
                .unwrap();
            assert!(secret.starts_with(crate::storage::sealed::SECRET_PREFIX));
        };
        check(&db);
        db.writer()
            .unwrap()
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE); VACUUM;")
            .unwrap();
        let bytes = file_bytes(dir.path());
        assert!(!contains(&bytes, GSM) && !contains(&bytes, HOOK));
        // Rotation re-seals them under the new key with the device keys.
        let new = dir.path().join("master.key.new");
        db.rotate_master(&new).unwrap();
        drop(db);
        std::fs::rename(
            dir.path().join("master.key.new"),
            crate::vault::path_in(dir.path()),
        )
        .unwrap();
        check(&Sqlite::open_dir(dir.path()).unwrap());
    }
}
