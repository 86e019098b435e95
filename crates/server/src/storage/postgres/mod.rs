//! The PostgreSQL backend: many `tek serve` processes (and the `tek device` commands) share one
//! database, so any server can hold any device's session.
//!
//! ## Layers
//! * A small runtime of its own (two threads) runs `tokio-postgres`, so the synchronous
//!   [`Storage`](super::Storage) methods work from any thread: the server's blocking pool, the
//!   CLI's `main`, a test. A call hands its future to that runtime and waits for the answer; it
//!   never nests runtimes, so it cannot panic for being called from async code (it only blocks,
//!   exactly like the SQLite backend).
//! * A `deadpool-postgres` pool of connections (recycled when closed).
//! * A health gate ([`health`]): the first operation that finds the database unreachable marks it
//!   down; from then on operations fail at once with [`Error::Unavailable`] (no connect timeout
//!   per datagram) while a background task reconnects with exponential back-off (250 ms doubling
//!   to 10 s). The server reports the gate in `/healthz` and `/metrics`.
//! * A listener connection (`LISTEN tek_changes`, [`listen`]): configuration saves and queued
//!   commands `NOTIFY` in the same transaction, so every server learns of them at commit and
//!   pushes them to the devices it holds at once.
//!
//! ## Cross-server guarantees
//! * Hello counters: one `UPDATE ... WHERE hello_counter < $c` (row lock, atomic).
//! * Telemetry: idempotent on (device, boot, seq) across servers (see [`telemetry`]); one
//!   transaction per writer batch, with all its rows in one statement.
//! * The change feeds (configuration `seq`, command `id`) are gap-free in commit order: writers of
//!   a feed take a transaction-scoped advisory lock, so a reader that has seen position N has
//!   seen every position below N.
//! * Telemetry is range-partitioned by day ([`partitions`]): partitions are created ahead by the
//!   server (and on demand for late records), and dropped whole past the retention setting.
//!
//! The schema is versioned ([`migrations`]) and upgraded at connect; a newer schema is refused.

mod alarms;
mod audit;
mod backlog;
mod channels;
mod commands;
mod configs;
mod devices;
pub mod energy;
mod faults;
pub mod health;
mod listen;
pub mod migrations;
pub mod partitions;
mod quarter;
mod schedules;
mod sealed_rows;
mod series;
mod sites;
mod sizes;
mod status;
mod telemetry;
#[cfg(any(test, feature = "pg-testing"))]
pub mod testing;
mod users;
mod web_sessions;
mod wide;

use super::{u32_col, Error, Result, Storage, TelemetryStore};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use health::Health;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::error::SqlState;

/// The channel servers `LISTEN` on; payload `config` or `command`.
pub const CHANNEL: &str = "tek_changes";

/// Advisory lock keys (transaction-scoped). One namespace, `0x74656b` ("tek"), in the high bits.
pub(crate) mod locks {
    const NS: i64 = 0x0074_656b << 32;
    /// Held while migrating.
    pub const MIGRATE: i64 = NS | 1;
    /// Held by writers of the configuration feed.
    pub const CONFIG_FEED: i64 = NS | 2;
    /// Held by writers of the command feed.
    pub const COMMAND_FEED: i64 = NS | 3;
    /// Held while creating or dropping telemetry partitions.
    pub const PARTITIONS: i64 = NS | 4;
    /// Per device while inserting its telemetry (device ids are u32: the high half is the tag).
    pub fn telemetry(device_id: u32) -> i64 {
        (0x0074_656c << 32) | i64::from(device_id)
    }
}

impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Error {
        if is_connection_error(&e) {
            Error::Unavailable(e.to_string())
        } else {
            Error::Backend(match e.as_db_error() {
                Some(db) => format!("{}: {}", db.code().code(), db.message()),
                None => e.to_string(),
            })
        }
    }
}

impl From<deadpool_postgres::PoolError> for Error {
    /// Not getting a connection at all (connect refused, timed out, the database not accepting
    /// connections) means the database is unavailable, whatever the server's reason.
    fn from(e: deadpool_postgres::PoolError) -> Error {
        Error::Unavailable(e.to_string())
    }
}

/// Whether an error means the connection (or the server) is gone, not that a statement failed.
fn is_connection_error(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        // Class 08 (connection exception), shutdown, and "the database system is starting up".
        Some(c) => {
            c.code().starts_with("08")
                || *c == SqlState::ADMIN_SHUTDOWN
                || *c == SqlState::CRASH_SHUTDOWN
                || *c == SqlState::CANNOT_CONNECT_NOW
        }
        // No SQLSTATE: an I/O error or a timeout on the socket.
        None => {
            let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
            while let Some(s) = src {
                if s.is::<std::io::Error>() {
                    return true;
                }
                src = s.source();
            }
            e.to_string().contains("timed out")
        }
    }
}

/// Maps a unique violation to `Duplicate(what)`.
pub(crate) fn unique(e: tokio_postgres::Error, what: impl FnOnce() -> String) -> Error {
    if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
        Error::Duplicate(what())
    } else {
        e.into()
    }
}

/// Maps a foreign-key violation to `Missing(what)`.
pub(crate) fn fk(e: tokio_postgres::Error, what: impl FnOnce() -> String) -> Error {
    if e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) {
        Error::Missing(what())
    } else {
        e.into()
    }
}

/// A database URL from the configuration: its `Debug` and `Display` hide the password, so the
/// configuration can be logged.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct DbUrl(pub String);

impl DbUrl {
    /// A URL (`postgres://...` or `host=... dbname=...`) checked the way [`Postgres::connect`]
    /// reads it, naming a host, so a command-line typo fails before anything runs.
    pub fn parse(url: &str) -> std::result::Result<DbUrl, String> {
        let c: tokio_postgres::Config = url
            .parse()
            .map_err(|e| format!("invalid database URL: {e}"))?;
        if c.get_hosts().is_empty() {
            return Err("invalid database URL: no host".into());
        }
        Ok(DbUrl(url.to_owned()))
    }

    /// The URL with the password, for connecting.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for DbUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.parse::<tokio_postgres::Config>() {
            Ok(c) => f.write_str(&describe(&c)),
            Err(_) => f.write_str("<invalid database URL>"),
        }
    }
}

impl std::fmt::Debug for DbUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DbUrl({self})")
    }
}

/// State shared by the calls and the background tasks.
pub(crate) struct Shared {
    pool: Pool,
    config: tokio_postgres::Config,
    health: Health,
    partitions: partitions::Known,
    /// The newest record of the chunks `/api/devices` read lately
    /// ([`crate::storage::newest_memo`]).
    newest: crate::storage::newest_memo::NewestMemo,
}

impl Shared {
    /// A pooled connection.
    async fn conn(&self) -> Result<deadpool_postgres::Object> {
        Ok(self.pool.get().await?)
    }
}

/// One value per device of `device_ids`, in their order (`None` for a device without a row):
/// `sql` selects the rows of the devices in `$1` (a `BIGINT[]`), device id first, and `make`
/// turns a row of device `id` into its value. The batched reads of a page of devices.
async fn of_devices<T: Clone>(
    c: &deadpool_postgres::Object,
    sql: &str,
    device_ids: &[u32],
    make: impl Fn(u32, &tokio_postgres::Row) -> Result<T>,
) -> Result<Vec<Option<T>>> {
    let ids: Vec<i64> = device_ids.iter().map(|&d| i64::from(d)).collect();
    let rows = c.query(sql, &[&ids]).await?;
    let mut by = std::collections::HashMap::with_capacity(rows.len());
    for row in &rows {
        let id = u32_col(row.get(0), "device id")?;
        by.insert(id, make(id, row)?);
    }
    Ok(device_ids.iter().map(|d| by.get(d).cloned()).collect())
}

/// The PostgreSQL storage.
pub struct Postgres {
    shared: Arc<Shared>,
    /// `Some` until drop; shut down without blocking, so dropping the last handle inside an
    /// async task is fine.
    rt: Option<tokio::runtime::Runtime>,
    /// Where to connect, without the password (for `Debug` and messages).
    target: String,
    /// The master key that seals device keys at rest ([`crate::vault`]); `None` for commands
    /// that never read or write a device key (they fail clearly if they try).
    vault: Option<Arc<crate::vault::Vault>>,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres")
            .field("target", &self.target)
            .finish()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// Connections per server: the writer, the API's readers and the handshakes share them.
const POOL_SIZE: usize = 8;

/// What a `postgres://` URL (or `key=value` string) points at, never the password.
fn describe(c: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = c
        .get_hosts()
        .iter()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(s) => s.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .collect();
    let port = c.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres://{}@{}:{}/{}",
        c.get_user().unwrap_or(""),
        hosts.join(","),
        port,
        c.get_dbname().unwrap_or("")
    )
}

impl Postgres {
    /// Connects to `url` (`postgres://user:password@host:port/db` or `host=... dbname=...`),
    /// migrates the schema (refusing a newer one) and starts the reconnect task.
    pub fn connect(url: &str) -> Result<Postgres> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| Error::Backend(format!("invalid database URL: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(3));
        }
        if config.get_application_name().is_none() {
            config.application_name("tek");
        }
        let target = describe(&config);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("tek-postgres")
            .enable_all()
            .build()
            .map_err(|e| Error::Backend(format!("cannot start the database runtime: {e}")))?;
        let manager = Manager::from_config(
            config.clone(),
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(Some(Duration::from_secs(5)))
            .build()
            .map_err(|e| Error::Backend(format!("cannot build the connection pool: {e}")))?;
        let pg = Postgres {
            shared: Arc::new(Shared {
                pool,
                config,
                health: Health::default(),
                partitions: partitions::Known::default(),
                newest: Default::default(),
            }),
            rt: Some(rt),
            target,
            vault: None,
        };
        pg.run(|s| async move {
            let mut c = s.conn().await?;
            migrations::migrate(&mut c).await
        })
        .map_err(|e| match e {
            Error::Unavailable(why) => {
                Error::Unavailable(format!("cannot connect to {}: {why}", pg.target))
            }
            e => e,
        })?;
        let shared = pg.shared.clone();
        pg.runtime().spawn(health::reconnect_task(shared));
        Ok(pg)
    }

    /// Connects like [`connect`](Self::connect), with the master key file `master_key` for the
    /// device keys (created, 32 random bytes, mode 0600, if missing; its directory too). Every
    /// server of a cluster and `tek device add --db` must use the same file. Refuses to start if
    /// the database holds keys sealed under another master key; wraps keys stored in the clear
    /// by an older version (see [`devices`]).
    pub fn connect_sealed(url: &str, master_key: &std::path::Path) -> Result<Postgres> {
        if let Some(dir) = master_key.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::storage::sqlite::files::create_private_dir(dir).map_err(|e| {
                Error::Backend(format!("cannot create directory {}: {e}", dir.display()))
            })?;
        }
        let vault = crate::vault::Vault::load_or_create(master_key)
            .map_err(|e| Error::Backend(e.to_string()))?;
        Postgres::connect_with_vault(url, vault)
    }

    /// Connects with an already loaded master key (tests, and [`connect_sealed`](Self::connect_sealed)).
    pub fn connect_with_vault(url: &str, vault: crate::vault::Vault) -> Result<Postgres> {
        let mut pg = Postgres::connect(url)?;
        pg.vault = Some(Arc::new(vault));
        pg.check_master_key()?;
        let n = pg.wrap_clear_keys()?;
        if n > 0 {
            tracing::info!(devices = n, "clear device keys wrapped");
        }
        Ok(pg)
    }

    /// Where this storage connects (user, hosts, port, database; never the password).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// As a shared trait object.
    pub fn into_arc(self) -> Arc<dyn Storage> {
        Arc::new(self)
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        // Only `drop` takes it.
        self.rt.as_ref().expect("runtime present until drop")
    }

    /// Runs `f` on the database runtime and waits for it. Fails at once while the database is
    /// marked down; marks it down (or up again) from the outcome.
    pub(crate) fn run<T, F, Fut>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Shared>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T>> + Send + 'static,
    {
        let shared = self.shared.clone();
        self.shared.health.check()?;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.runtime().spawn(async move {
            let r = f(shared.clone()).await;
            match &r {
                Err(Error::Unavailable(why)) => shared.health.down(why),
                _ => shared.health.up(),
            }
            let _ = tx.send(r);
        });
        rx.recv()
            .map_err(|_| Error::Backend("database task ended without an answer".into()))?
    }
}

impl Storage for Postgres {
    fn ping(&self) -> Result<()> {
        self.run(|s| async move {
            let c = s.conn().await?;
            let v: i32 = c.query_one("SELECT 1", &[]).await?.get(0);
            if v == 1 {
                Ok(())
            } else {
                Err(Error::Backend("SELECT 1 answered wrong".into()))
            }
        })
    }

    /// All the devices at once ([`telemetry::earliest`]): the partitions are listed once, not
    /// once per device.
    fn earliest_record_time(&self, devices: &[u32]) -> Result<Option<i64>> {
        let devices: Vec<i64> = devices.iter().map(|&d| i64::from(d)).collect();
        self.run(move |s| async move { telemetry::earliest(&s, &devices, true).await })
    }

    fn maintain(&self, now: i64, retention_days: u32) -> Result<()> {
        self.run(move |s| async move {
            partitions::maintain(&s, now, retention_days).await?;
            wide::expire(&s).await?;
            if let Some(keep_from) = crate::storage::telemetry::keep_from(now, retention_days) {
                Postgres::expire_chunks(&s, keep_from).await?;
            }
            Ok(())
        })?;
        self.seal_closed(now)?;
        crate::storage::quarter::QuarterStore::seal_quarter_rollups(self, now)?;
        Ok(())
    }

    fn watch_changes(&self, wake: Arc<dyn Fn() + Send + Sync>) {
        let config = self.shared.config.clone();
        self.runtime().spawn(listen::run(config, wake));
    }

    fn reconnects_total(&self) -> u64 {
        self.shared.health.reconnects()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::testing::{self, TestDb};
    use super::*;

    /// A fresh database on the test cluster, or `None` (with a loud message) when PostgreSQL
    /// cannot run here outside CI.
    pub(crate) fn prepare() -> Option<TestDb> {
        testing::database()
    }

    pub(crate) fn dev(id: u32) -> crate::storage::NewDevice {
        crate::storage::NewDevice {
            id,
            name: String::new(),
            key: tek_proto::crypto::Key([7; 16]),
        }
    }

    pub(crate) fn row(device_id: u32, seq: u32, time: i64) -> crate::storage::TelemetryRow {
        crate::storage::TelemetryRow {
            device_id,
            boot: 1,
            seq,
            time,
            channels: 1,
            values: [seq as i32, 0, 0, 0, 0, 0, 0, 0],
        }
    }

    /// Runs SQL on the test database through a second, plain connection.
    fn query_strings(db: &TestDb, sql: &str) -> Vec<String> {
        let sql = sql.to_owned();
        db.run(move |s| async move {
            let c = s.conn().await?;
            let rows = c.simple_query(&sql).await?;
            Ok(rows
                .iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => {
                        Some(r.get(0).unwrap_or("").to_owned())
                    }
                    _ => None,
                })
                .collect())
        })
        .unwrap()
    }

    #[test]
    fn newer_schema_is_refused_and_reconnect_migrates_nothing() {
        let Some(db) = prepare() else { return };
        use crate::storage::DeviceStore;
        db.add_devices(&[dev(1)], 0).unwrap();
        // A second server connecting to a migrated database changes nothing.
        let again = Postgres::connect(&db.url).unwrap();
        assert_eq!(again.list_devices().unwrap().len(), 1);
        assert_eq!(
            query_strings(&db, "SELECT version::text FROM tek_schema"),
            vec![crate::storage::schema::latest().to_string()]
        );
        query_strings(&db, "UPDATE tek_schema SET version = 999");
        let err = Postgres::connect(&db.url).unwrap_err();
        assert!(
            matches!(err, Error::SchemaTooNew { found: 999, .. }),
            "{err}"
        );
    }

    #[test]
    fn partitions_ahead_on_demand_and_retention() {
        let Some(db) = prepare() else { return };
        use crate::storage::{DeviceStore, TelemetryStore};
        let day = partitions::DAY;
        let now = 20_454 * day + 3_600; // 2026-01-01 01:00 UTC
        db.add_devices(&[dev(1)], 0).unwrap();
        db.maintain(now, 0).unwrap();
        let names = |db: &TestDb| {
            let mut v = query_strings(
                db,
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                 WHERE i.inhparent = 'telemetry'::regclass",
            );
            v.sort();
            v
        };
        assert_eq!(
            names(&db),
            [
                "telemetry_20251231",
                "telemetry_20260101",
                "telemetry_20260102",
                "telemetry_20260103",
                "telemetry_20260104"
            ]
        );
        // A device back after 40 days offline: its old records get their partition on demand.
        let old = now - 40 * day;
        assert_eq!(
            db.insert_telemetry(&[row(1, 0, old), row(1, 1, now)])
                .unwrap(),
            2
        );
        assert!(names(&db).contains(&"telemetry_20251122".to_string()));
        // A chart query reads one partition, by the (device_id, time) index.
        let plan = query_strings(
            &db,
            &format!(
                "SET enable_seqscan = off; EXPLAIN SELECT * FROM telemetry
                 WHERE device_id = 1 AND time >= {now} AND time < {}",
                now + 3_600
            ),
        )
        .join("\n");
        assert_eq!(plan.matches(" on telemetry_").count(), 1, "{plan}");
        assert!(plan.contains("Index"), "{plan}");
        // Retention 30 days: the old partition goes, with its row; today's stays.
        db.maintain(now, 30).unwrap();
        assert!(!names(&db).contains(&"telemetry_20251122".to_string()));
        assert!(names(&db).contains(&"telemetry_20260101".to_string()));
        assert_eq!(db.telemetry_count(1).unwrap(), 1);
        // A record older than retention is accepted (so the device frees it) but not stored.
        assert_eq!(db.insert_telemetry(&[row(1, 2, old + 1)]).unwrap(), 0);
        assert!(!names(&db).contains(&"telemetry_20251122".to_string()));
        assert_eq!(db.telemetry_count(1).unwrap(), 1);
    }

    /// Wide records follow the retention setting too: deleted past the horizon at `maintain`,
    /// and not stored when already older (but counted as accepted, like telemetry).
    #[test]
    fn wide_records_follow_retention() {
        let Some(db) = prepare() else { return };
        use crate::storage::{DeviceStore, WideRow, WideStore, WideValues};
        let day = partitions::DAY;
        let now = 20_454 * day + 3_600;
        db.add_devices(&[dev(1)], 0).unwrap();
        let wide = |seq, time| WideRow {
            device_id: 1,
            boot: 1,
            seq,
            time,
            config_version: None,
            values: WideValues::from_options(&[Some(1), None, Some(3)]),
        };
        let old = now - 40 * day;
        db.maintain(now, 0).unwrap();
        assert_eq!(db.insert_wide(&[wide(0, old), wide(1, now)]).unwrap(), 2);
        db.maintain(now, 30).unwrap();
        assert_eq!(db.wide_count(1).unwrap(), 1);
        assert_eq!(db.insert_wide(&[wide(2, old + 1)]).unwrap(), 0);
        assert_eq!(db.wide_count(1).unwrap(), 1);
    }

    #[test]
    fn a_save_notifies_every_listening_server() {
        let Some(db) = prepare() else { return };
        use crate::storage::{CommandStore, ConfigStore, DeviceStore};
        db.add_devices(&[dev(1)], 0).unwrap();
        let other = Postgres::connect(&db.url).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let tx = std::sync::Mutex::new(tx);
        other.watch_changes(Arc::new(move || {
            let _ = tx.lock().unwrap().send(());
        }));
        // The listener wakes once when it has connected.
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
        db.save_config(1, &tek_proto::message::Config::default(), 5)
            .unwrap();
        rx.recv_timeout(Duration::from_secs(5))
            .expect("notified of the configuration");
        db.queue_command(1, &tek_proto::message::Command::Reboot, 6)
            .unwrap();
        rx.recv_timeout(Duration::from_secs(5))
            .expect("notified of the command");
    }

    #[test]
    fn lost_database_fails_fast_and_comes_back() {
        let Some(db) = prepare() else { return };
        use crate::storage::DeviceStore;
        let cluster = testing::cluster().unwrap();
        db.add_devices(&[dev(1)], 0).unwrap();
        // The database goes away: no new connections, existing ones cut.
        cluster
            .admin(&format!(
                "ALTER DATABASE {0} ALLOW_CONNECTIONS false;
                 SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{0}'",
                db.name
            ))
            .unwrap();
        let e = db.ping().unwrap_err();
        assert!(matches!(e, Error::Unavailable(_)), "{e}");
        // While down, operations fail at once instead of waiting for a connect timeout.
        let t = std::time::Instant::now();
        assert!(matches!(db.device(1), Err(Error::Unavailable(_))));
        assert!(
            t.elapsed() < Duration::from_millis(100),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(db.reconnects_total(), 0);
        cluster
            .admin(&format!(
                "ALTER DATABASE {} ALLOW_CONNECTIONS true",
                db.name
            ))
            .unwrap();
        let t = std::time::Instant::now();
        while db.ping().is_err() {
            assert!(t.elapsed() < Duration::from_secs(15), "never reconnected");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(db.reconnects_total(), 1);
        assert_eq!(db.device(1).unwrap().id, 1);
    }

    /// Throughput of the batched, idempotent insert (run by hand:
    /// `cargo test -p tek-server --release -- --ignored ingest_throughput --nocapture`).
    #[test]
    #[ignore]
    fn ingest_throughput() {
        let Some(db) = prepare() else { return };
        use crate::storage::{DeviceStore, TelemetryStore};
        let devices: Vec<_> = (1..=1000).map(dev).collect();
        db.add_devices(&devices, 0).unwrap();
        let now = 20_454 * partitions::DAY;
        db.maintain(now, 0).unwrap();
        // 1000 devices x 200 records, in writer batches of 500 rows (50 datagrams of 10).
        let rows: Vec<_> = (0..200u32)
            .flat_map(|seq| (1..=1000).map(move |d| row(d, seq, now + i64::from(seq) * 60)))
            .collect();
        let t = std::time::Instant::now();
        for batch in rows.chunks(500) {
            db.insert_telemetry(batch).unwrap();
        }
        let fresh = t.elapsed();
        let t = std::time::Instant::now();
        for batch in rows.chunks(500) {
            assert_eq!(db.insert_telemetry(batch).unwrap(), 0);
        }
        let again = t.elapsed();
        eprintln!(
            "{} rows: {:.0} rows/s new, {:.0} rows/s retransmitted (all duplicates)",
            rows.len(),
            rows.len() as f64 / fresh.as_secs_f64(),
            rows.len() as f64 / again.as_secs_f64()
        );
    }

    #[test]
    fn connection_errors_are_unavailable_and_the_password_is_not_shown() {
        let e = Postgres::connect("postgres://tek:s3cret@127.0.0.1:1/tek").unwrap_err();
        assert!(matches!(e, Error::Unavailable(_)), "{e}");
        let shown = e.to_string();
        assert!(shown.contains("127.0.0.1:1/tek"), "{shown}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(matches!(
            Postgres::connect("postgres://[bad"),
            Err(Error::Backend(_))
        ));
        let url = DbUrl("postgres://tek:s3cret@db:5433/fleet".into());
        assert_eq!(url.to_string(), "postgres://tek@db:5433/fleet");
        assert!(!format!("{url:?}").contains("s3cret"));
        assert!(url.expose().contains("s3cret"));
    }

    #[test]
    fn urls_are_checked_before_connecting() {
        let ok = DbUrl::parse("postgres://tek:s3cret@127.0.0.1:5432/tek").unwrap();
        assert_eq!(ok.expose(), "postgres://tek:s3cret@127.0.0.1:5432/tek");
        assert!(DbUrl::parse("host=127.0.0.1 dbname=tek").is_ok());
        for bad in [
            "postgres://[bad",
            "postgres://h:notaport/db",
            "dbname=tek",
            "",
        ] {
            let e = DbUrl::parse(bad).unwrap_err();
            assert!(e.starts_with("invalid database URL"), "{bad}: {e}");
        }
    }
}
