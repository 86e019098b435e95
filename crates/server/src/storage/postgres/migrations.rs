//! Applies the versioned schema ([`crate::storage::schema`], rendered for PostgreSQL) at
//! connect.
//!
//! Table `tek_schema` holds the version the database is at. Every server sharing the database
//! migrates at start, so migrations run under a transaction-scoped advisory lock: the first
//! server applies them, the others wait and then find nothing to do. The pending migrations run in
//! one transaction together with the bump of the version (PostgreSQL DDL is transactional), so a
//! crash leaves the database at a whole version. A database at a newer version than this program
//! knows is refused.

use super::locks;
use crate::storage::schema::{self, Dialect};
use crate::storage::Result;
use tokio_postgres::{Client, GenericClient};

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

/// Brings the database up to [`schema::latest`]; refuses a database at a newer version.
pub async fn migrate(c: &mut Client) -> Result<()> {
    let tx = c.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&locks::MIGRATE])
        .await?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS tek_schema (version BIGINT NOT NULL)")
        .await?;
    let found = current(&tx).await?;
    // Every step in this one transaction: under the lock, and all or nothing.
    for (version, sql) in schema::pending(found, Dialect::Postgres)? {
        tx.batch_execute(&sql).await?;
        match schema::rust_step(version) {
            Some(schema::RustStep::WideRollups) => super::wide::backfill_rollups(&tx).await?,
            // The inbox is SQLite's alone: PostgreSQL writes straight into its tables.
            Some(schema::RustStep::InboxBatches | schema::RustStep::InboxJournal) | None => {}
        }
        tx.execute("DELETE FROM tek_schema", &[]).await?;
        tx.execute("INSERT INTO tek_schema (version) VALUES ($1)", &[&version])
            .await?;
        tracing::info!(version, "database schema migrated");
    }
    tx.commit().await?;
    Ok(())
}
