//! The SQLite backend: one file (`tek.db`) in the data directory, WAL mode, `synchronous=FULL`
//! (a commit is on disk before the server acknowledges anything it contains).
//!
//! Two connections: one for writes (serialised by a mutex; the server's writer task batches
//! telemetry so this is one transaction per batch) and one for reads, which WAL lets run while a
//! write is in progress. Other processes (`tek device ...`) may use the same file at the same
//! time; a busy timeout makes them wait for each other instead of failing.
//!
//! The schema is versioned ([`migrations`]) and upgraded at open; a database written by a newer
//! program is refused.

pub mod accounts;
mod alarms;
mod audit;
mod commands;
mod configs;
mod devices;
pub mod energy;
pub mod files;
pub mod migrations;
mod schedules;
mod sealed_rows;
mod series;
mod sites;
mod status;
mod telemetry;
mod users;
mod web_sessions;

use super::{Error, Result, Storage};
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Name of the database file inside the data directory.
pub const FILE_NAME: &str = "tek.db";

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Error {
        Error::Backend(e.to_string())
    }
}

/// The SQLite storage.
pub struct Sqlite {
    path: PathBuf,
    write: Mutex<Connection>,
    read: Mutex<Connection>,
    /// Wraps device keys at rest (`master.key` beside the database file).
    vault: crate::vault::Vault,
}

impl std::fmt::Debug for Sqlite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sqlite").field("path", &self.path).finish()
    }
}

fn connect(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    // WAL: readers never block the writer; FULL: a commit survives power loss.
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::Backend(format!(
            "cannot switch {} to WAL mode (got {mode})",
            path.display()
        )));
    }
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")?;
    Ok(conn)
}

impl Sqlite {
    /// Opens (creating if needed) the database in data directory `dir` and migrates it.
    pub fn open_dir(dir: &Path) -> Result<Sqlite> {
        files::create_private_dir(dir).map_err(|e| {
            Error::Backend(format!(
                "cannot create data directory {}: {e}",
                dir.display()
            ))
        })?;
        Sqlite::open(&dir.join(FILE_NAME))
    }

    /// Opens (creating if needed) the database file `path` and migrates it. The master key
    /// for device keys at rest is `master.key` in the same directory (created if missing, see
    /// [`crate::vault`]); keys stored in the clear by an older version are wrapped now.
    pub fn open(path: &Path) -> Result<Sqlite> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let vault = crate::vault::Vault::load_or_create(&crate::vault::path_in(dir))
            .map_err(|e| Error::Backend(e.to_string()))?;
        // 0600 before SQLite creates it (its -wal and -shm files take the same mode).
        files::create_private_file(path)
            .map_err(|e| Error::Backend(format!("cannot create {}: {e}", path.display())))?;
        files::warn_if_open(dir, path);
        let mut write = connect(path)?;
        migrations::migrate(&mut write)?;
        let read = connect(path)?;
        let db = Sqlite {
            path: path.to_owned(),
            write: Mutex::new(write),
            read: Mutex::new(read),
            vault,
        };
        let n = db.wrap_clear_keys()?;
        if n > 0 {
            tracing::info!(devices = n, "clear device keys wrapped");
        }
        Ok(db)
    }

    /// Opens an existing database without creating it (for the CLI's read-only commands).
    pub fn open_existing_dir(dir: &Path) -> Result<Sqlite> {
        let path = dir.join(FILE_NAME);
        if !path.exists() {
            return Err(Error::Backend(format!(
                "no database at {} (create devices first with `tek device add`)",
                path.display()
            )));
        }
        Sqlite::open(&path)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn writer(&self) -> Result<MutexGuard<'_, Connection>> {
        self.write
            .lock()
            .map_err(|_| Error::Backend("writer connection poisoned".into()))
    }

    fn reader(&self) -> Result<MutexGuard<'_, Connection>> {
        self.read
            .lock()
            .map_err(|_| Error::Backend("reader connection poisoned".into()))
    }
}

impl Storage for Sqlite {
    fn ping(&self) -> Result<()> {
        let v: i64 = self.reader()?.query_row("SELECT 1", [], |r| r.get(0))?;
        if v == 1 {
            Ok(())
        } else {
            Err(Error::Backend("SELECT 1 answered wrong".into()))
        }
    }
}

fn u32_col(v: i64, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::Corrupt(format!("{what} {v} out of range")))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::storage::*;
    use tek_proto::crypto::Key;

    /// A fresh database in a temporary directory (kept alive by the returned guard).
    pub(crate) fn prepare() -> (tempfile::TempDir, Sqlite) {
        let dir = tempfile::tempdir().unwrap();
        let db = Sqlite::open_dir(dir.path()).unwrap();
        (dir, db)
    }

    // The checks every backend must pass are in `storage::suite`, run for SQLite there.

    fn dev(id: u32) -> NewDevice {
        NewDevice {
            id,
            name: format!("d{id}"),
            key: Key([id as u8; 16]),
        }
    }

    #[test]
    fn newer_schema_is_refused_and_reopen_works() {
        let (dir, db) = prepare();
        db.add_devices(&[dev(1)], 0).unwrap();
        drop(db);
        let db = Sqlite::open_dir(dir.path()).unwrap();
        assert_eq!(db.list_devices().unwrap().len(), 1);
        db.writer()
            .unwrap()
            .execute_batch("PRAGMA user_version = 999")
            .unwrap();
        drop(db);
        let err = Sqlite::open_dir(dir.path()).unwrap_err();
        assert!(
            matches!(err, Error::SchemaTooNew { found: 999, .. }),
            "{err}"
        );
    }
}
