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
mod audit;
mod commands;
mod configs;
mod devices;
pub mod migrations;
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
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::Backend(format!(
                "cannot create data directory {}: {e}",
                dir.display()
            ))
        })?;
        Sqlite::open(&dir.join(FILE_NAME))
    }

    /// Opens (creating if needed) the database file `path` and migrates it.
    pub fn open(path: &Path) -> Result<Sqlite> {
        let mut write = connect(path)?;
        migrations::migrate(&mut write)?;
        let read = connect(path)?;
        Ok(Sqlite {
            path: path.to_owned(),
            write: Mutex::new(write),
            read: Mutex::new(read),
        })
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
    use tek_proto::message::{Command, CommandResult, Config, ConfigResult, RelayMode, Status};

    /// A fresh database in a temporary directory (kept alive by the returned guard).
    pub(crate) fn prepare() -> (tempfile::TempDir, Sqlite) {
        let dir = tempfile::tempdir().unwrap();
        let db = Sqlite::open_dir(dir.path()).unwrap();
        (dir, db)
    }

    fn dev(id: u32) -> NewDevice {
        NewDevice {
            id,
            name: format!("d{id}"),
            key: Key([id as u8; 16]),
        }
    }

    #[test]
    fn devices_and_hello_counter_cas() {
        let (_d, db) = prepare();
        db.add_devices(&[dev(1), dev(2)], 100).unwrap();
        assert!(matches!(
            db.add_devices(&[dev(3), dev(2)], 100),
            Err(Error::Exists(2))
        ));
        // All or none: device 3 was not created.
        assert!(db.load_device(3).unwrap().is_none());
        assert_eq!(db.list_devices().unwrap().len(), 2);
        assert_eq!(db.max_device_id().unwrap(), 2);
        let d = db.load_device(1).unwrap().unwrap();
        assert_eq!(d.key, Key([1; 16]));
        assert_eq!(d.hello_counter, None);
        assert!(db.accept_hello(1, 1 << 32, 5).unwrap());
        assert!(
            !db.accept_hello(1, 1 << 32, 5).unwrap(),
            "same counter twice"
        );
        assert!(!db.accept_hello(1, 5, 5).unwrap(), "lower counter");
        assert!(db.accept_hello(1, u64::MAX, 6).unwrap(), "top half of u64");
        assert!(!db.accept_hello(1, u64::MAX - 1, 6).unwrap());
        assert!(!db.accept_hello(9, 1, 6).unwrap(), "unknown device");
        assert_eq!(
            db.load_device(1).unwrap().unwrap().hello_counter,
            Some(u64::MAX)
        );
        assert_eq!(db.device(1).unwrap().last_seen, Some(6));
        assert!(matches!(db.device(7), Err(Error::NotFound(7))));
        // The record type has no key to leak.
        assert!(!format!("{:?}", db.device(1).unwrap()).contains("0101"));
    }

    #[test]
    fn telemetry_is_idempotent() {
        let (_d, db) = prepare();
        db.add_devices(&[dev(1)], 0).unwrap();
        let row = |seq, time| TelemetryRow {
            device_id: 1,
            boot: 2,
            seq,
            time,
            channels: 0b1_0101,
            values: [1500, 0, -250, 0, 3, 0, 0, 0],
        };
        assert_eq!(db.insert_telemetry(&[row(0, 10), row(1, 20)]).unwrap(), 2);
        assert_eq!(db.insert_telemetry(&[row(1, 20), row(2, 30)]).unwrap(), 1);
        assert_eq!(db.telemetry_count(1).unwrap(), 3);
        let got = db
            .telemetry(&TelemetryQuery {
                device_id: 1,
                from: 15,
                to: 100,
                limit: 10,
            })
            .unwrap();
        assert_eq!(got, vec![row(1, 20), row(2, 30)]);
        assert_eq!(got[0].get(2), Some(-250));
        assert_eq!(got[0].get(1), None);
    }

    #[test]
    fn configs_versions_and_acks() {
        let (_d, db) = prepare();
        db.add_devices(&[dev(1), dev(2)], 0).unwrap();
        let mut c = Config {
            log_interval_s: 30,
            ..Config::default()
        };
        assert_eq!(db.save_config(1, &c, 10).unwrap(), 1);
        c.log_interval_s = 40;
        assert_eq!(db.save_config(1, &c, 11).unwrap(), 2);
        assert_eq!(db.save_config(2, &c, 11).unwrap(), 1);
        c.log_interval_s = 1;
        assert!(matches!(
            db.save_config(1, &c, 12),
            Err(Error::InvalidConfig(_))
        ));
        assert!(matches!(
            db.save_config(9, &Config::default(), 12),
            Err(Error::NotFound(9))
        ));
        let latest = db.latest_config(1).unwrap().unwrap();
        assert_eq!((latest.version, latest.config.log_interval_s), (2, 40));
        assert_eq!(latest.state, ConfigState::Pending);
        assert_eq!(db.pending_config_count().unwrap(), 2);
        let feed = db.configs_since(0, 10).unwrap();
        assert_eq!(feed.len(), 3);
        assert_eq!(db.configs_since(feed[1].seq, 10).unwrap().len(), 1);
        assert_eq!(db.config_cursor().unwrap(), feed[2].seq);

        assert!(db.config_acked(1, 2, ConfigResult::Applied, 20).unwrap());
        assert!(
            !db.config_acked(1, 2, ConfigResult::Applied, 21).unwrap(),
            "repeat"
        );
        let d = db.device(1).unwrap();
        assert_eq!((d.config_desired, d.config_applied), (2, 2));
        assert_eq!(db.pending_config_count().unwrap(), 1);
        assert!(db.config_acked(2, 1, ConfigResult::RolledBack, 22).unwrap());
        assert_eq!(db.device(2).unwrap().config_rolled_back, Some(1));
        assert_eq!(db.pending_config_count().unwrap(), 0);
        assert!(
            !db.config_acked(2, 7, ConfigResult::Applied, 22).unwrap(),
            "unknown version"
        );
        c.log_interval_s = 50;
        assert_eq!(db.save_config(2, &c, 30).unwrap(), 2);
        assert!(db.config_running(2, 2, 31).unwrap());
        assert!(!db.config_running(2, 2, 31).unwrap());
        assert_eq!(
            db.latest_config(2).unwrap().unwrap().state,
            ConfigState::Applied
        );
    }

    #[test]
    fn commands_queue_and_ack() {
        let (_d, db) = prepare();
        db.add_devices(&[dev(1)], 0).unwrap();
        let on = Command::SetRelay {
            relay: 1,
            mode: RelayMode::On,
        };
        let a = db.queue_command(1, &on, 5).unwrap();
        let b = db.queue_command(1, &Command::Reboot, 6).unwrap();
        assert!(b > a);
        assert!(matches!(
            db.queue_command(3, &on, 5),
            Err(Error::NotFound(3))
        ));
        assert_eq!(db.pending_commands(1).unwrap().len(), 2);
        assert_eq!(
            db.commands_since(a, 10).unwrap()[0].command,
            Command::Reboot
        );
        assert_eq!(db.command_cursor().unwrap(), b);
        assert!(db.command_acked(1, a, CommandResult::Done, 7).unwrap());
        assert!(!db.command_acked(1, a, CommandResult::Done, 7).unwrap());
        assert!(
            !db.command_acked(2, b, CommandResult::Done, 7).unwrap(),
            "other device"
        );
        let p = db.pending_commands(1).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].command, Command::Reboot);
        assert_eq!(db.commands(1, 10).unwrap()[1].state, CommandState::Done);
    }

    #[test]
    fn status_and_traffic() {
        use tek_proto::message::status::{Radio, Traffic, Transport};
        let (_d, db) = prepare();
        db.add_devices(&[dev(1)], 0).unwrap();
        let mut s = Status {
            transport: Transport::Ethernet,
            flags: 0,
            ip: [10, 0, 0, 2],
            netmask: [255, 0, 0, 0],
            gateway: [10, 0, 0, 1],
            dns: [10, 0, 0, 1],
            uptime_s: 100,
            firmware: [1, 0, 0],
            config_version: 0,
            log_drops: 0,
            log_backlog: 0,
            traffic: Traffic {
                eth_tx: 1000,
                eth_rx: 500,
                gsm_tx: 0,
                gsm_rx: 0,
            },
            gsm_signal: 99,
            radio: Radio::Off,
            relays: 1,
            server_index: 0,
        };
        let jan = 1_767_225_600; // 2026-01-01
        db.store_status(1, &s, jan).unwrap();
        s.uptime_s = 200;
        s.traffic.eth_tx = 1500;
        db.store_status(1, &s, jan + 10).unwrap();
        s.uptime_s = 5; // rebooted
        s.traffic.eth_tx = 40;
        s.traffic.eth_rx = 0;
        db.store_status(1, &s, jan + 20).unwrap();
        let latest = db.latest_status(1).unwrap().unwrap();
        assert_eq!(latest.status, s);
        assert_eq!(latest.received_at, jan + 20);
        let t = db.traffic(1).unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].month, "2026-01");
        assert_eq!((t[0].eth_tx, t[0].eth_rx), (1540, 500));
        assert!(matches!(
            db.store_status(5, &s, jan),
            Err(Error::NotFound(5))
        ));
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
