//! The SQLite backend: one file (`tek.db`) in the data directory, WAL mode, `synchronous=FULL`
//! (a commit is on disk before the server acknowledges anything it contains).
//!
//! One connection for writes (serialised by a mutex; the server's writer task batches telemetry
//! so this is one transaction per batch) and a pool of up to [`READERS`] for reads
//! ([`ReadPool`]), which WAL lets run while a write is in progress and beside each other: a long
//! query (a year of a site's energy) no longer makes `/healthz` or a device list wait for it
//! (issue 21). Checkpoints (copying the log back into the file) run on a thread of their own
//! ([`checkpoint`]), so no commit of the writer waits for one. Other processes (`tek device ...`) may use the same file at the same time; a busy
//! timeout makes them wait for each other instead of failing.
//!
//! The schema is versioned ([`migrations`]) and upgraded at open; a database written by a newer
//! program is refused.
//!
//! A `LIMIT` is bound as `LIMIT CAST(?n AS INTEGER)`, never as a bare parameter: SQLite's
//! planner reads a bare parameter's value, so every new binding expires the statement and the
//! next step parses and plans it again (a cached statement then saves nothing; it was most of
//! the estimated boots' share of `/api/devices`). The cast hides the value from the planner.

mod alarms;
mod audit;
mod backlog;
mod channels;
mod checkpoint;
mod commands;
mod configs;
mod devices;
pub mod energy;
mod faults;
pub mod files;
mod inbox;
mod inbox_codec;
mod journal;
pub mod migrations;
mod quarter;
mod schedules;
mod sealed_rows;
mod series;
mod sites;
mod status;
mod telemetry;
#[cfg(test)]
pub(crate) use telemetry::chunks_back_to_rows;
mod users;
mod web_sessions;
mod wide;

use super::{u32_col, Error, Result, Storage, TelemetryStore};
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// Name of the database file inside the data directory.
pub const FILE_NAME: &str = "tek.db";

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Error {
        Error::Backend(e.to_string())
    }
}

/// Most read connections open at once: reads beyond that wait for one to come back. The
/// server's blocking pool runs each request's database work on a thread of its own, so this is
/// how many reads run side by side.
pub const READERS: usize = 4;

/// How long a read waits for a connection before it fails (every connection is busy with a
/// query longer than this).
const READER_WAIT: Duration = Duration::from_secs(30);

/// Read connections, opened on demand up to [`READERS`], handed out one per read and given
/// back when the read is done ([`Reader`]).
struct ReadPool {
    path: PathBuf,
    /// Idle connections, and how many are open in all (idle or lent).
    state: Mutex<(Vec<Connection>, usize)>,
    returned: Condvar,
}

/// A read connection lent by the pool; back in the pool when dropped.
pub(crate) struct Reader<'a> {
    pool: &'a ReadPool,
    conn: Option<Connection>,
}

impl std::ops::Deref for Reader<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        // Present from lending until drop.
        self.conn.as_ref().expect("a lent connection")
    }
}

impl std::ops::DerefMut for Reader<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        self.conn.as_mut().expect("a lent connection")
    }
}

impl Drop for Reader<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            let mut st = self.pool.state.lock().unwrap_or_else(|p| p.into_inner());
            st.0.push(c);
            drop(st);
            self.pool.returned.notify_one();
        }
    }
}

impl ReadPool {
    fn new(path: &Path, first: Connection) -> ReadPool {
        ReadPool {
            path: path.to_owned(),
            state: Mutex::new((vec![first], 1)),
            returned: Condvar::new(),
        }
    }

    /// An idle connection, a new one while fewer than [`READERS`] are open, or the first to
    /// come back (at most [`READER_WAIT`]).
    fn get(&self) -> Result<Reader<'_>> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let deadline = std::time::Instant::now() + READER_WAIT;
        loop {
            if let Some(c) = st.0.pop() {
                return Ok(Reader {
                    pool: self,
                    conn: Some(c),
                });
            }
            if st.1 < READERS {
                st.1 += 1;
                drop(st);
                return match connect(&self.path) {
                    Ok(c) => Ok(Reader {
                        pool: self,
                        conn: Some(c),
                    }),
                    Err(e) => {
                        self.state.lock().unwrap_or_else(|p| p.into_inner()).1 -= 1;
                        Err(e)
                    }
                };
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(Error::Backend(format!(
                    "all {READERS} read connections busy for {} s",
                    READER_WAIT.as_secs()
                )));
            }
            st = self
                .returned
                .wait_timeout(st, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// The SQLite storage.
pub struct Sqlite {
    path: PathBuf,
    /// Shared with the inbox's fold thread ([`inbox::Folder`]).
    write: Arc<Mutex<Connection>>,
    read: ReadPool,
    /// Moves committed pages from the log into the file, off the writer's commits.
    _checkpointer: checkpoint::Checkpointer,
    /// Wraps device keys at rest (`master.key` beside the database file).
    vault: crate::vault::Vault,
    /// New telemetry on its way into the per-device tables ([`inbox`]), in journal files of
    /// its own beside the database ([`journal`]).
    inbox: Arc<inbox::Inbox>,
    /// Folds the inbox when due and no commit comes to do it.
    _folder: inbox::Folder,
    /// The newest record of the chunks `/api/devices` read lately ([`NewestMemo`]).
    newest: crate::storage::newest_memo::NewestMemo,
    /// Where the next sealing pass looks for closed days whose chunks are not merged
    /// ([`telemetry`] `unmerged_days`).
    unmerged: telemetry::UnmergedFrom,
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
        // Checkpoints are the thread's job (see `checkpoint`); this is only the backstop.
        write.pragma_update(
            None,
            "wal_autocheckpoint",
            checkpoint::WRITER_BACKSTOP_PAGES,
        )?;
        let read = connect(path)?;
        let write = Arc::new(Mutex::new(write));
        let inbox = Arc::new(inbox::Inbox::open(path)?);
        let db = Sqlite {
            path: path.to_owned(),
            _folder: inbox::Folder::start(write.clone(), inbox.clone())?,
            write,
            read: ReadPool::new(path, read),
            _checkpointer: checkpoint::Checkpointer::start(path)?,
            vault,
            inbox,
            newest: Default::default(),
            unmerged: Default::default(),
        };
        // What a crash left in the pair this process took, and in pairs nobody holds.
        db.fold_inbox()?;
        db.fold_orphans()?;
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

    /// Bytes of each table and index in the database file (SQLite's `dbstat`), largest first:
    /// what the benchmarks report as the split of bytes on disk.
    pub fn table_bytes(&self) -> Result<Vec<(String, u64)>> {
        let conn = self.reader()?;
        let mut stmt = conn.prepare(
            "SELECT name, SUM(pgsize) AS bytes FROM dbstat GROUP BY name ORDER BY bytes DESC",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        rows.map(|r| Ok(r.map(|(name, bytes)| (name, bytes.max(0) as u64))?))
            .collect()
    }

    fn writer(&self) -> Result<MutexGuard<'_, Connection>> {
        self.write
            .lock()
            .map_err(|_| Error::Backend("writer connection poisoned".into()))
    }

    fn reader(&self) -> Result<Reader<'_>> {
        self.read.get()
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

    /// On one connection and one snapshot, cached statements: two index seeks per device for
    /// its narrow records ([`crate::storage::telemetry::FIRST_TIME_SQL`]) and one for its wide.
    fn earliest_record_time(&self, devices: &[u32]) -> Result<Option<i64>> {
        let conn = self.telemetry_reader()?;
        let conn = conn.unchecked_transaction()?;
        let mut narrow = conn.prepare_cached(&crate::storage::series::sqlite_params(
            crate::storage::telemetry::FIRST_TIME_SQL,
        ))?;
        let mut wide =
            conn.prepare_cached("SELECT MIN(time) FROM telemetry_wide WHERE device_id = ?1")?;
        let mut earliest: Option<i64> = None;
        for &d in devices {
            let n: Option<i64> = narrow.query_row([d], |r| r.get(0))?;
            let w: Option<i64> = wide.query_row([d], |r| r.get(0))?;
            earliest = earliest.into_iter().chain(n).chain(w).min();
        }
        Ok(earliest)
    }

    fn maintain(&self, now: i64, retention_days: u32) -> Result<()> {
        self.fold_inbox()?;
        // A pair that cannot be folded is reported, and the rest of the upkeep still runs.
        if let Err(e) = self.fold_orphans() {
            tracing::warn!(%e, "inbox journals left by other processes not all folded");
        }
        if let Some(keep_from) = crate::storage::telemetry::keep_from(now, retention_days) {
            let gone = self.expire_telemetry(keep_from)?;
            if gone > 0 {
                tracing::info!(
                    records = gone,
                    retention_days,
                    "expired raw telemetry deleted"
                );
            }
        }
        self.seal_closed(now)?;
        crate::storage::quarter::QuarterStore::seal_quarter_rollups(self, now)?;
        Ok(())
    }
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

    /// The module note's rule, over this backend's sources (the behaviour itself is tested in
    /// `backlog`): a bare limit parameter would be parsed and planned again at every binding.
    #[test]
    fn no_statement_binds_a_bare_limit() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/storage/sqlite");
        let mut read = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                read += 1;
                for (n, line) in text.lines().enumerate() {
                    assert!(
                        !line.contains(&["LIMIT", " ?"].concat()),
                        "{}:{}: {line}",
                        path.display(),
                        n + 1
                    );
                }
            }
        }
        assert!(read > 10, "read {read} sources in {}", dir.display());
    }

    fn dev(id: u32) -> NewDevice {
        NewDevice {
            id,
            name: format!("d{id}"),
            key: Key([id as u8; 16]),
        }
    }

    /// Reads run side by side: with one read in progress (a long query holds its connection),
    /// another gets a connection of its own at once; past the pool's size a read waits for one
    /// to come back, and gets it.
    #[test]
    fn reads_never_wait_behind_another_read() {
        let (_dir, db) = prepare();
        let held: Vec<_> = (0..READERS - 1).map(|_| db.reader().unwrap()).collect();
        let t = std::time::Instant::now();
        db.ping().unwrap();
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        // Every connection lent: the next read waits until one is given back.
        let last = db.reader().unwrap();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                let t = std::time::Instant::now();
                db.ping().unwrap();
                t.elapsed()
            });
            std::thread::sleep(Duration::from_millis(200));
            drop(last);
            let waited = waiter.join().unwrap();
            assert!(waited >= Duration::from_millis(150), "{waited:?}");
        });
        drop(held);
        // Connections are reused, not opened anew: never more than READERS.
        assert!(db.read.state.lock().unwrap().1 <= READERS);
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
