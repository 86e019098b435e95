//! The database under `tek bench history`: SQLite in the bench's temporary directory (the
//! default), or the fresh PostgreSQL database `--postgres URL` names. Both are written and read
//! through the same storage traits; only opening, the `tek user`/`tek serve` target arguments and
//! the measurement of bytes on disk differ, and they are here.

use super::push;
use anyhow::{ensure, Context};
use std::path::Path;
use tek_server::storage::postgres::{DbUrl, Postgres};
use tek_server::storage::sqlite::Sqlite;
use tek_server::storage::{DeviceStore, Storage};

/// The open database of the bench.
pub enum Db {
    /// `tek.db` in the bench's directory (boxed: it is much larger than the other).
    Sqlite(Box<Sqlite>),
    /// A PostgreSQL database; the device keys sealed under `master.key` in the bench's
    /// directory, where the child `tek serve` (`--data` that directory) finds it too.
    Postgres(Postgres, DbUrl),
}

/// Bytes on disk once the history is written.
pub struct Sizes {
    /// Everything the database holds (SQLite: its files; PostgreSQL: `pg_database_size`).
    pub total: u64,
    /// The raw records: rows, sealed chunks and their indexes.
    pub raw: u64,
    /// The 15-minute and daily rollups and their indexes.
    pub rollup: u64,
    /// Each table (SQLite: and index), largest first.
    pub tables: Vec<(String, u64)>,
}

impl Db {
    /// Creates the database (SQLite) or connects to and migrates it (PostgreSQL, which must hold
    /// no devices: the bench provisions ids 1..=N and measures the database's growth).
    pub fn open(dir: &Path, postgres: Option<&DbUrl>) -> anyhow::Result<Db> {
        match postgres {
            None => Ok(Db::Sqlite(Box::new(
                Sqlite::open_dir(dir).context("cannot create the benchmark database")?,
            ))),
            Some(url) => {
                let pg = Postgres::connect_sealed(url.expose(), &tek_server::vault::path_in(dir))
                    .with_context(|| format!("cannot open {url}"))?;
                let devices = pg.list_devices()?.len();
                ensure!(
                    devices == 0,
                    "{url} holds {devices} devices; the bench needs an empty database"
                );
                Ok(Db::Postgres(pg, url.clone()))
            }
        }
    }

    /// `"sqlite"` or `"postgres"`, for the summary line.
    pub fn backend(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(..) => "postgres",
        }
    }

    /// The storage, as the server uses it.
    pub fn storage(&self) -> &dyn Storage {
        match self {
            Db::Sqlite(s) => s.as_ref(),
            Db::Postgres(p, _) => p,
        }
    }

    /// An admin's API token, made with the `tek user` commands on this database.
    pub fn api_token(&self, dir: &Path) -> anyhow::Result<String> {
        match self {
            Db::Sqlite(_) => push::api_token(dir),
            Db::Postgres(_, url) => push::api_token_in(&["--db".as_ref(), url.expose().as_ref()]),
        }
    }

    /// The `tek serve` configuration file's text that points the server at this database (with
    /// `--data` the bench's directory, which holds the master key).
    pub fn serve_config(&self) -> Option<String> {
        match self {
            Db::Sqlite(_) => None,
            Db::Postgres(_, url) => Some(serve_config(url)),
        }
    }

    /// Bytes the database holds now (before the history: the baseline).
    pub fn bytes(&self, dir: &Path) -> anyhow::Result<u64> {
        match self {
            Db::Sqlite(_) => sqlite_files_bytes(dir),
            Db::Postgres(p, _) => Ok(p.database_bytes()?),
        }
    }

    /// Closes the database and measures it. SQLite: closing checkpoints the WAL into the file,
    /// then the files are measured. PostgreSQL: `VACUUM (ANALYZE)` first, as autovacuum would
    /// in a running server, since sealing moves each closed day out of its partition with
    /// `DELETE`; the write-ahead log is not counted (it is recycled, not kept per record).
    pub fn close_and_measure(self, dir: &Path) -> anyhow::Result<Sizes> {
        let (tables, total) = match self {
            Db::Sqlite(s) => {
                let tables = s.table_bytes()?;
                drop(s); // the last connection checkpoints the WAL into the database file
                (tables, sqlite_files_bytes(dir)?)
            }
            Db::Postgres(p, _) => {
                p.vacuum_analyze()?;
                (p.table_bytes()?, p.database_bytes()?)
            }
        };
        let sum_of = |f: fn(&str) -> bool| -> u64 {
            tables.iter().filter(|(n, _)| f(n)).map(|(_, b)| b).sum()
        };
        Ok(Sizes {
            total,
            raw: sum_of(is_raw),
            rollup: sum_of(|n| n.starts_with("telemetry_rollup")),
            tables,
        })
    }
}

/// `tek serve`'s configuration file naming the database `url`.
fn serve_config(url: &DbUrl) -> String {
    // A JSON string is a valid TOML basic string (quotes and backslashes escaped).
    format!("db = {}\n", serde_json::Value::from(url.expose()))
}

/// A table (or SQLite index) of the raw records. PostgreSQL's names are tables with their
/// partitions and indexes counted in; SQLite's are every table and index by name.
fn is_raw(name: &str) -> bool {
    name == "telemetry"
        || name.starts_with("telemetry_by_time")
        || name.starts_with("telemetry_chunk")
        || name.starts_with("sqlite_autoindex_telemetry_chunk")
}

/// Bytes of the SQLite files in `dir`: the database, its WAL and shared-memory index, and the
/// telemetry inbox's journal files (`tek.db-inbox-N-a`/`-b`, preallocated).
fn sqlite_files_bytes(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".db")
            || name.ends_with(".db-wal")
            || name.ends_with(".db-shm")
            || name.contains(".db-inbox-")
        {
            total += e.metadata()?.len();
        }
    }
    ensure!(total > 0, "no database files in {}", dir.display());
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_tables_are_told_from_rollups_and_others() {
        for raw in [
            "telemetry",
            "telemetry_by_time",
            "telemetry_chunk",
            "telemetry_chunk_by_time",
            "sqlite_autoindex_telemetry_chunk_1",
        ] {
            assert!(is_raw(raw), "{raw}");
        }
        for other in [
            "telemetry_rollup",
            "telemetry_rollup_day",
            "telemetry_wide",
            "devices",
        ] {
            assert!(!is_raw(other), "{other}");
        }
    }

    #[test]
    fn the_server_reads_the_url_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serve.toml");
        for url in [
            "postgres://bench:s3cret@127.0.0.1:5432/tek",
            r#"host=127.0.0.1 password='a"b\c' dbname=x"#,
        ] {
            let url = DbUrl::parse(url).unwrap();
            std::fs::write(&path, serve_config(&url)).unwrap();
            let cfg = tek_server::Config::load(&path).unwrap();
            assert_eq!(cfg.db.as_ref().map(DbUrl::expose), Some(url.expose()));
        }
        assert!(DbUrl::parse("postgres://[bad").is_err());
    }
}
