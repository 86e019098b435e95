//! Applies the versioned schema ([`crate::storage::schema`], rendered for SQLite) at open.
//!
//! `PRAGMA user_version` holds the version the database is at. Each migration runs in its own
//! transaction together with the bump of that number, so a crash leaves the database at a whole
//! version.

use crate::storage::schema::{self, Dialect};
use crate::storage::Result;
use rusqlite::Connection;

/// Brings the database up to [`schema::latest`]; refuses a database at a newer version.
pub fn migrate(conn: &mut Connection) -> Result<()> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (version, sql) in schema::pending(current, Dialect::Sqlite)? {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // Another process may have migrated while we waited for the lock.
        let now: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if now >= version {
            continue;
        }
        tx.execute_batch(&sql)?;
        match schema::rust_step(version) {
            Some(schema::RustStep::WideRollups) => super::wide::backfill_rollups(&tx)?,
            Some(schema::RustStep::InboxBatches) => super::inbox::fold_legacy_tables(&tx)?,
            Some(schema::RustStep::InboxJournal) => super::inbox::fold_batch_tables(&tx)?,
            None => {}
        }
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
    fn migrate_is_idempotent() {
        let mut c = Connection::open_in_memory().unwrap();
        migrate(&mut c).unwrap();
        migrate(&mut c).unwrap();
        let v: i64 = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, schema::latest());
    }
}
