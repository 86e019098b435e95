//! Versioned schema of the PostgreSQL backend, embedded in the program and applied at connect.
//!
//! Table `tek_schema` holds the version the database is at. Every server sharing the database
//! migrates at start, so migrations run under a transaction-scoped advisory lock: the first
//! server applies them, the others wait and then find nothing to do. The pending migrations run in
//! one transaction together with the bump of the version (PostgreSQL DDL is transactional), so a
//! crash leaves the database at a whole version. A database at a newer version than this program
//! knows is refused. Never edit a released migration: append a new one.
//!
//! The version numbers follow the SQLite backend's (1 = devices and ingest, 2 = accounts), so
//! one number describes the schema level of either backend.

use super::locks;
use crate::storage::{Error, Result};
use tokio_postgres::{Client, GenericClient};

/// `(version, SQL)` in order. Version numbers are consecutive from 1.
pub const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        r#"
CREATE TABLE devices (
    id                 BIGINT  PRIMARY KEY CHECK (id BETWEEN 1 AND 4294967295),
    name               TEXT    NOT NULL DEFAULT '',
    key                BYTEA   NOT NULL,       -- 16 bytes
    hello_counter      BIGINT,                 -- storage::counter_to_sql of the last accepted
    created_at         BIGINT  NOT NULL,
    last_seen          BIGINT,
    config_desired     BIGINT  NOT NULL DEFAULT 0,
    config_applied     BIGINT  NOT NULL DEFAULT 0,
    config_rolled_back BIGINT
);

-- Partitioned by day on `time` (see storage::postgres::partitions). The primary key must hold
-- the partition key; idempotence on (device_id, boot, seq) alone is enforced by the insert (see
-- storage::postgres::telemetry), whose duplicate check is this key's prefix.
CREATE TABLE telemetry (
    device_id BIGINT   NOT NULL,
    boot      BIGINT   NOT NULL,
    seq       BIGINT   NOT NULL,
    time      BIGINT   NOT NULL,
    channels  SMALLINT NOT NULL,
    power_w   INTEGER,
    energy_wh INTEGER,
    water_cc  INTEGER,
    air_cc    INTEGER,
    relays    INTEGER,
    ch5       INTEGER,
    ch6       INTEGER,
    ch7       INTEGER,
    PRIMARY KEY (device_id, boot, seq, time)
) PARTITION BY RANGE (time);
-- Charts: one device, a time range. Created on every partition, so each stays small.
CREATE INDEX telemetry_by_time ON telemetry (device_id, time);
-- Whole-fleet time scans (exports, maintenance): rows arrive in time order, BRIN is tiny.
CREATE INDEX telemetry_time_brin ON telemetry USING brin (time);

CREATE TABLE configs (
    seq       BIGSERIAL PRIMARY KEY,                 -- the change feed servers poll
    device_id BIGINT NOT NULL REFERENCES devices (id),
    version   BIGINT NOT NULL,
    items     BYTEA  NOT NULL,                       -- the wire encoding of the item list
    saved_at  BIGINT NOT NULL,
    state     TEXT   NOT NULL DEFAULT 'pending',
    acked_at  BIGINT,
    UNIQUE (device_id, version)
);

CREATE TABLE commands (
    id        BIGSERIAL PRIMARY KEY CHECK (id <= 4294967295), -- also the command id on the wire
    device_id BIGINT NOT NULL REFERENCES devices (id),
    kind      BIGINT NOT NULL,
    arg1      BIGINT NOT NULL DEFAULT 0,
    arg2      BIGINT NOT NULL DEFAULT 0,
    queued_at BIGINT NOT NULL,
    state     TEXT   NOT NULL DEFAULT 'queued',
    acked_at  BIGINT
);
CREATE INDEX commands_by_device ON commands (device_id, state);

CREATE TABLE device_status (
    device_id   BIGINT PRIMARY KEY REFERENCES devices (id),
    received_at BIGINT NOT NULL,
    body        BYTEA  NOT NULL                      -- the 55-byte wire encoding
);

CREATE TABLE traffic (
    device_id BIGINT NOT NULL REFERENCES devices (id),
    month     TEXT   NOT NULL,
    eth_tx    BIGINT NOT NULL DEFAULT 0,
    eth_rx    BIGINT NOT NULL DEFAULT 0,
    gsm_tx    BIGINT NOT NULL DEFAULT 0,
    gsm_rx    BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (device_id, month)
);
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
        // before are sealed by the backend when a server connects with the master key.
        // The site whose users may pick a destination list (NULL: administrators only).
        "ALTER TABLE configs ADD COLUMN sealed BOOLEAN NOT NULL DEFAULT FALSE;
         ALTER TABLE alarm_lists ADD COLUMN site_id BIGINT
             REFERENCES sites(id) ON DELETE SET NULL;",
    ),
];

/// The newest schema version this program knows.
pub fn latest() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

/// The version the database is at (0 = empty).
pub async fn current(c: &impl GenericClient) -> Result<i64> {
    let exists: bool = c
        .query_one("SELECT to_regclass('tek_schema') IS NOT NULL", &[])
        .await?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let v: Option<i64> = c
        .query_one("SELECT MAX(version) FROM tek_schema", &[])
        .await?
        .get(0);
    Ok(v.unwrap_or(0))
}

/// Brings the database up to [`latest`]; refuses a database at a newer version.
pub async fn migrate(c: &mut Client) -> Result<()> {
    let tx = c.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&locks::MIGRATE])
        .await?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS tek_schema (version BIGINT NOT NULL)")
        .await?;
    let found = current(&tx).await?;
    if found > latest() {
        return Err(Error::SchemaTooNew {
            found,
            supported: latest(),
        });
    }
    // Every step in this one transaction: under the lock, and all or nothing.
    for (version, sql) in MIGRATIONS.iter().filter(|m| m.0 > found) {
        tx.batch_execute(sql).await?;
        tx.execute("DELETE FROM tek_schema", &[]).await?;
        tx.execute("INSERT INTO tek_schema (version) VALUES ($1)", &[version])
            .await?;
        tracing::info!(version, "database schema migrated");
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_consecutive_and_match_sqlite() {
        for (i, (v, _)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*v, i as i64 + 1);
        }
        assert_eq!(latest(), crate::storage::sqlite::migrations::latest());
    }
}
