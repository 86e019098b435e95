//! Durable storage behind one interface, [`Storage`], so the SQLite backend (the embedded
//! default, [`sqlite`]) and the PostgreSQL backend (many servers on one database, [`postgres`])
//! are interchangeable; [`open`] picks one.
//!
//! The interface is split by entity, one trait and one file each: [`devices`] (registry, keys,
//! hello counters), [`telemetry`], [`configs`] (versioned device configurations), [`commands`],
//! [`status`] (latest status, monthly traffic), [`series`] (aggregated telemetry for charts),
//! and the accounts behind the web UI: [`users`], [`sites`] (membership, device assignment),
//! [`web_sessions`] (login sessions, API tokens), [`audit`], [`alarms`] (rules, alarms,
//! destinations, the notification log), [`energy`] (meter intervals, tariffs), [`backlog`] (boots
//! whose record times are estimated), [`wide`] (records of up to 128 channels, PROTOCOL.md 17.5),
//! [`channels`] (channel-map templates, each device's channel registry), [`faults`] (each
//! device's latest per-channel fault report). [`Storage`] is
//! the sum of them.
//!
//! The rules both backends need (state transitions, validation, row decoding, the schema in
//! [`schema`]) live in these files, above the SQL, once; `sqlite/` and `postgres/` hold only
//! their SQL and transactions.
//!
//! The methods are synchronous: the async server calls them from blocking threads (the writer
//! task batches telemetry; everything else is rare). A backend must make every method atomic,
//! and [`devices::DeviceStore::accept_hello`] a compare-and-set that is atomic across every
//! server sharing the database. Times are Unix seconds.

pub mod alarms;
pub mod audit;
pub mod backlog;
pub mod channels;
pub mod chunk;
pub mod commands;
pub mod configs;
pub mod devices;
pub mod energy;
pub mod faults;
pub mod newest_memo;
pub mod postgres;
pub mod quarter;
pub mod rollup;
pub mod schedules;
pub mod schema;
pub mod sealed;
pub mod series;
pub mod sites;
pub mod sqlite;
pub mod status;
#[cfg(test)]
pub(crate) mod suite;
pub mod telemetry;
pub mod users;
pub mod web_sessions;
pub mod wide;
pub mod wide_rollup;

pub use alarms::{
    AlarmFilter, AlarmRecord, AlarmStore, DeliveryState, Destination, DestinationKind,
    DestinationList, NewAlarm, NewDestination, NewNotification, NotificationRecord,
};
pub use audit::{AuditEntry, AuditFilter, AuditStore, NewAuditEntry};
pub use backlog::{BacklogStore, EstimatedBoot};
pub use channels::{
    ChannelInfo, ChannelKind, ChannelLabel, ChannelSet, ChannelStore, DeviceChannels, NewTemplate,
    TemplateRecord,
};
pub use commands::{CommandRecord, CommandState, CommandStore};
pub use configs::{ConfigRecord, ConfigState, ConfigStore, ConfigTransition};
pub use devices::{DeviceRecord, DeviceStore, NewDevice, StoredDevice};
pub use energy::{EnergyStore, MeterData, MeterInterval, MeterSpan};
pub use faults::{ChannelFault, FaultStore};
pub use schedules::ScheduleStore;
pub use series::{Bucket, DayEnergy, SeriesStore};
pub use sites::{SiteRecord, SiteStore};
pub use status::{StatusRecord, StatusStore, TrafficMonth};
pub use telemetry::{TelemetryKey, TelemetryQuery, TelemetryRow, TelemetryStore};
pub use users::{UserRecord, UserStore};
pub use web_sessions::{TokenRecord, WebSession, WebSessionStore};
pub use wide::{WideRow, WideStore, WideValues};

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No device with this id.
    #[error("device {0} not found")]
    NotFound(u32),
    /// A device with this id exists already.
    #[error("device {0} already exists")]
    Exists(u32),
    /// The database was written by a newer program.
    #[error("database schema version {found} is newer than this program supports ({supported}); upgrade tek")]
    SchemaTooNew {
        /// Version found in the database.
        found: i64,
        /// Newest version this program knows.
        supported: i64,
    },
    /// A configuration failed validation and was not saved.
    #[error("invalid configuration: {0}")]
    InvalidConfig(tek_proto::message::MessageError),
    /// A channel map, template or its channels failed validation and were not saved; the
    /// message names the channel and the field at fault.
    #[error("{0}")]
    InvalidChannels(String),
    /// A stored row cannot be decoded (the database was edited by hand or is damaged).
    #[error("corrupt data in the database: {0}")]
    Corrupt(String),
    /// A user, site or other named record exists already (e.g. `user a@b.c`).
    #[error("{0} already exists")]
    Duplicate(String),
    /// A user, site or other record referred to does not exist (e.g. `site 7`).
    #[error("{0} not found")]
    Missing(String),
    /// A per-device limit would be exceeded (e.g. alarm rules per device).
    #[error("{0}")]
    Limit(String),
    /// The backend failed (I/O, lock, constraint ...).
    #[error("database error: {0}")]
    Backend(String),
    /// Too many commands wait for a device already (see `commands::MAX_PENDING`).
    #[error("{0}")]
    QueueFull(String),
    /// The database cannot be reached (connection lost, server down); the backend reconnects.
    #[error("database unavailable: {0}")]
    Unavailable(String),
}

impl From<crate::runtime::TaskFailed> for Error {
    fn from(e: crate::runtime::TaskFailed) -> Self {
        Error::Backend(e.to_string())
    }
}

/// Result of storage operations.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything the server keeps durably.
pub trait Storage:
    DeviceStore
    + TelemetryStore
    + ConfigStore
    + CommandStore
    + StatusStore
    + SeriesStore
    + UserStore
    + SiteStore
    + WebSessionStore
    + AuditStore
    + AlarmStore
    + ScheduleStore
    + EnergyStore
    + BacklogStore
    + WideStore
    + ChannelStore
    + FaultStore
    + quarter::QuarterStore
    + Send
    + Sync
    + 'static
{
    /// Checks that the database answers (for /healthz).
    fn ping(&self) -> Result<()>;

    /// Periodic upkeep, called by the server at start and hourly: both backends seal the raw
    /// records of closed UTC days into chunks ([`TelemetryStore::seal_closed`], [`chunk`]) and
    /// their 15-minute rollups into one row per device and day
    /// ([`quarter::QuarterStore::seal_quarter_rollups`]); with `retention_days > 0`, they delete
    /// raw records (rows and chunks) of the days that ended `retention_days` days or more before
    /// `now` (0 = keep everything); the PostgreSQL backend also creates telemetry partitions
    /// ahead and drops the expired ones.
    fn maintain(&self, now: i64, retention_days: u32) -> Result<()>;

    /// The time of the earliest record, narrow or wide, of any of `devices` (`None` if they
    /// have none): where a site's data begins. Each backend answers it for all the devices at
    /// once: SQLite on one snapshot with cached statements, PostgreSQL listing its daily
    /// partitions once (planning them per device was the cost).
    fn earliest_record_time(&self, devices: &[u32]) -> Result<Option<i64>>;

    /// Calls `wake` whenever another process may have saved a configuration or queued a command
    /// (PostgreSQL: `LISTEN`/`NOTIFY`), so the server reads the change feeds at once instead of
    /// at its next poll. Backends without notifications do nothing: the poll still runs.
    fn watch_changes(&self, wake: std::sync::Arc<dyn Fn() + Send + Sync>) {
        let _ = wake;
    }

    /// Times the connection to the database was lost and restored (for /metrics).
    fn reconnects_total(&self) -> u64 {
        0
    }
}

/// Opens the storage a server or command names: PostgreSQL when `db` is a
/// `postgres://`/`postgresql://` URL (or a `host=...` connection string), else SQLite in the data
/// directory `data` (created if missing). Device keys are sealed under the master key file
/// `master_key` (PostgreSQL; default `data/master.key`) or `data/master.key` (SQLite).
pub fn open(
    db: Option<&postgres::DbUrl>,
    data: &std::path::Path,
    master_key: Option<&std::path::Path>,
) -> Result<std::sync::Arc<dyn Storage>> {
    match db {
        Some(url) => {
            let key = master_key.map_or_else(|| crate::vault::path_in(data), |p| p.to_owned());
            Ok(postgres::Postgres::connect_sealed(url.expose(), &key)?.into_arc())
        }
        None => Ok(std::sync::Arc::new(sqlite::Sqlite::open_dir(data)?)),
    }
}

/// An id or number stored in a 64-bit SQL integer that must fit `u32`; anything else is a
/// damaged row.
pub(crate) fn u32_col(v: i64, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::Corrupt(format!("{what} {v} out of range")))
}

/// `Missing(what)` when a statement that must touch a row changed none (`n` rows changed).
pub(crate) fn missing_if_none<N: PartialEq + Default>(
    n: N,
    what: impl FnOnce() -> String,
) -> Result<()> {
    if n == N::default() {
        Err(Error::Missing(what()))
    } else {
        Ok(())
    }
}

/// A row count as an SQL `LIMIT` (both backends bind it as a signed 64-bit integer; a count
/// beyond that is no limit).
pub fn sql_limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Hello counters are `u64` but SQL integers are signed 64-bit: flipping the top bit maps the
/// unsigned order onto the signed order, so `hello_counter < $c` compares correctly in SQL.
pub fn counter_to_sql(c: u64) -> i64 {
    (c ^ (1 << 63)) as i64
}

/// Inverse of [`counter_to_sql`].
pub fn counter_from_sql(v: i64) -> u64 {
    (v as u64) ^ (1 << 63)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_mapping_preserves_order() {
        let values = [
            0u64,
            1,
            1 << 32,
            (1 << 63) - 1,
            1 << 63,
            u64::MAX - 1,
            u64::MAX,
        ];
        for w in values.windows(2) {
            assert!(counter_to_sql(w[0]) < counter_to_sql(w[1]));
            assert_eq!(counter_from_sql(counter_to_sql(w[0])), w[0]);
        }
    }

    #[test]
    fn row_helpers() {
        assert!(missing_if_none(1u64, || "x".into()).is_ok());
        assert!(
            matches!(missing_if_none(0usize, || "site 7".into()), Err(Error::Missing(m)) if m == "site 7")
        );
        assert_eq!(sql_limit(5), 5);
        assert_eq!(sql_limit(usize::MAX), i64::MAX);
        assert_eq!(u32_col(7, "id").unwrap(), 7);
        assert!(matches!(u32_col(-1, "device id"), Err(Error::Corrupt(_))));
        assert!(matches!(
            u32_col(1 << 32, "device id"),
            Err(Error::Corrupt(_))
        ));
    }
}
