//! Users in SQLite.

use super::Sqlite;
use crate::storage::users::{UserRecord, UserStore};
use crate::storage::{missing_if_none, Error, Result};
use rusqlite::{params, OptionalExtension};

const COLUMNS: &str = "id, email, is_admin, created_at";

fn record(r: &rusqlite::Row<'_>) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        id: r.get(0)?,
        email: r.get(1)?,
        is_admin: r.get::<_, i64>(2)? != 0,
        created_at: r.get(3)?,
    })
}

/// Maps a UNIQUE violation to `Duplicate(what)`.
pub(super) fn unique(e: rusqlite::Error, what: String) -> Error {
    match e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
        {
            Error::Duplicate(what)
        }
        e => e.into(),
    }
}

impl UserStore for Sqlite {
    fn create_user(&self, email: &str, hash: &str, is_admin: bool, now: i64) -> Result<i64> {
        let conn = self.writer()?;
        conn.execute(
            "INSERT INTO users (email, password_hash, is_admin, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![email, hash, i64::from(is_admin), now],
        )
        .map_err(|e| unique(e, format!("user {email}")))?;
        Ok(conn.last_insert_rowid())
    }

    fn user(&self, id: i64) -> Result<Option<UserRecord>> {
        let conn = self.reader()?;
        Ok(conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM users WHERE id = ?1"),
                params![id],
                record,
            )
            .optional()?)
    }

    fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>> {
        let conn = self.reader()?;
        Ok(conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM users WHERE email = ?1"),
                params![email],
                record,
            )
            .optional()?)
    }

    fn user_credentials(&self, email: &str) -> Result<Option<(UserRecord, String)>> {
        let conn = self.reader()?;
        Ok(conn
            .query_row(
                &format!("SELECT {COLUMNS}, password_hash FROM users WHERE email = ?1"),
                params![email],
                |r| Ok((record(r)?, r.get(4)?)),
            )
            .optional()?)
    }

    fn list_users(&self) -> Result<Vec<UserRecord>> {
        let conn = self.reader()?;
        let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM users ORDER BY id"))?;
        let rows = stmt.query_map([], record)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn set_password(&self, id: i64, hash: &str) -> Result<()> {
        let n = self.writer()?.execute(
            "UPDATE users SET password_hash = ?2 WHERE id = ?1",
            params![id, hash],
        )?;
        missing_if_none(n, || format!("user {id}"))
    }

    fn set_admin(&self, id: i64, is_admin: bool) -> Result<()> {
        let n = self.writer()?.execute(
            "UPDATE users SET is_admin = ?2 WHERE id = ?1",
            params![id, i64::from(is_admin)],
        )?;
        missing_if_none(n, || format!("user {id}"))
    }

    fn delete_user(&self, id: i64) -> Result<()> {
        // ON DELETE CASCADE removes memberships, sessions and tokens in the same statement.
        let n = self
            .writer()?
            .execute("DELETE FROM users WHERE id = ?1", params![id])?;
        missing_if_none(n, || format!("user {id}"))
    }
}

// Tested through `storage::suite` (every backend runs the same checks).
