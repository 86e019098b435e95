//! Versioned schema of the SQLite backend, embedded in the program and applied at open.
//!
//! `PRAGMA user_version` holds the version the database is at. Each migration runs in its own
//! transaction together with the bump of that number, so a crash leaves the database at a whole
//! version. Never edit a released migration: append a new one.

use crate::storage::{Error, Result};
use rusqlite::Connection;

/// `(version, SQL)` in order. Version numbers are consecutive from 1.
pub const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        r#"
CREATE TABLE devices (
    id                 INTEGER PRIMARY KEY,
    name               TEXT    NOT NULL DEFAULT '',
    key                BLOB    NOT NULL,       -- 16 bytes; see storage::sqlite::devices
    hello_counter      INTEGER,                -- storage::counter_to_sql of the last accepted
    created_at         INTEGER NOT NULL,
    last_seen          INTEGER,
    config_desired     INTEGER NOT NULL DEFAULT 0,
    config_applied     INTEGER NOT NULL DEFAULT 0,
    config_rolled_back INTEGER
);

CREATE TABLE telemetry (
    device_id INTEGER NOT NULL,
    boot      INTEGER NOT NULL,
    seq       INTEGER NOT NULL,
    time      INTEGER NOT NULL,
    channels  INTEGER NOT NULL,
    power_w   INTEGER,
    energy_wh INTEGER,
    water_cc  INTEGER,
    air_cc    INTEGER,
    relays    INTEGER,
    ch5       INTEGER,
    ch6       INTEGER,
    ch7       INTEGER,
    PRIMARY KEY (device_id, boot, seq)
) WITHOUT ROWID;
CREATE INDEX telemetry_by_time ON telemetry (device_id, time);

CREATE TABLE configs (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,  -- the change feed servers poll
    device_id INTEGER NOT NULL REFERENCES devices (id),
    version   INTEGER NOT NULL,
    items     BLOB    NOT NULL,                   -- the wire encoding of the item list
    saved_at  INTEGER NOT NULL,
    state     TEXT    NOT NULL DEFAULT 'pending',
    acked_at  INTEGER,
    UNIQUE (device_id, version)
);

CREATE TABLE commands (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,  -- also the command id on the wire
    device_id INTEGER NOT NULL REFERENCES devices (id),
    kind      INTEGER NOT NULL,
    arg1      INTEGER NOT NULL DEFAULT 0,
    arg2      INTEGER NOT NULL DEFAULT 0,
    queued_at INTEGER NOT NULL,
    state     TEXT    NOT NULL DEFAULT 'queued',
    acked_at  INTEGER
);
CREATE INDEX commands_by_device ON commands (device_id, state);

CREATE TABLE device_status (
    device_id   INTEGER PRIMARY KEY REFERENCES devices (id),
    received_at INTEGER NOT NULL,
    body        BLOB    NOT NULL                  -- the 55-byte wire encoding
);

CREATE TABLE traffic (
    device_id INTEGER NOT NULL REFERENCES devices (id),
    month     TEXT    NOT NULL,
    eth_tx    INTEGER NOT NULL DEFAULT 0,
    eth_rx    INTEGER NOT NULL DEFAULT 0,
    gsm_tx    INTEGER NOT NULL DEFAULT 0,
    gsm_rx    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (device_id, month)
) WITHOUT ROWID;
"#,
    ),
    (2, super::accounts::SCHEMA_V2),
    (3, super::alarms::SCHEMA_V3),
    (4, super::energy::SCHEMA_V4),
    (5, super::schedules::SCHEMA_V5),
    (6, super::commands::SCHEMA_V6),
    (
        7,
        // Configuration items sealed under the master key (storage::sealed); rows written
        // before are sealed by the backend when it opens the database.
        // The site whose users may pick a destination list (NULL: administrators only).
        "ALTER TABLE configs ADD COLUMN sealed INTEGER NOT NULL DEFAULT 0;
         ALTER TABLE alarm_lists ADD COLUMN site_id INTEGER
             REFERENCES sites(id) ON DELETE SET NULL;",
    ),
];

/// The newest schema version this program knows.
pub fn latest() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

/// Brings the database up to [`latest`]; refuses a database at a newer version.
pub fn migrate(conn: &mut Connection) -> Result<()> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current > latest() {
        return Err(Error::SchemaTooNew {
            found: current,
            supported: latest(),
        });
    }
    for (version, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // Another process may have migrated while we waited for the lock.
        let now: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if now >= *version {
            continue;
        }
        tx.execute_batch(sql)?;
        tx.execute_batch(&format!("PRAGMA user_version = {version}"))?;
        tx.commit()?;
        tracing::info!(version, "database schema migrated");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_consecutive() {
        for (i, (v, _)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*v, i as i64 + 1);
        }
    }

    #[test]
    fn migrate_is_idempotent() {
        let mut c = Connection::open_in_memory().unwrap();
        migrate(&mut c).unwrap();
        migrate(&mut c).unwrap();
        let v: i64 = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, latest());
    }
}
