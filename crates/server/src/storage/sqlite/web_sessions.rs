//! Web sessions and API tokens in SQLite (hashes only).

use super::Sqlite;
use crate::storage::web_sessions::{TokenRecord, WebSession, WebSessionStore};
use crate::storage::Result;
use rusqlite::{params, OptionalExtension};

impl WebSessionStore for Sqlite {
    fn create_web_session(&self, h: &[u8; 32], user: i64, now: i64, expires: i64) -> Result<()> {
        self.writer()?.execute(
            "INSERT INTO web_sessions (id_hash, user_id, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4)",
            params![&h[..], user, now, expires],
        )?;
        Ok(())
    }

    fn web_session(&self, h: &[u8; 32], now: i64) -> Result<Option<WebSession>> {
        let conn = self.reader()?;
        Ok(conn
            .query_row(
                "SELECT user_id, created_at, expires_at FROM web_sessions
                 WHERE id_hash = ?1 AND expires_at > ?2",
                params![&h[..], now],
                |r| {
                    Ok(WebSession {
                        user_id: r.get(0)?,
                        created_at: r.get(1)?,
                        expires_at: r.get(2)?,
                    })
                },
            )
            .optional()?)
    }

    fn delete_web_session(&self, h: &[u8; 32]) -> Result<()> {
        self.writer()?.execute(
            "DELETE FROM web_sessions WHERE id_hash = ?1",
            params![&h[..]],
        )?;
        Ok(())
    }

    fn delete_user_web_sessions(&self, user_id: i64) -> Result<()> {
        self.writer()?.execute(
            "DELETE FROM web_sessions WHERE user_id = ?1",
            params![user_id],
        )?;
        Ok(())
    }

    fn purge_web_sessions(&self, now: i64) -> Result<u64> {
        let n = self.writer()?.execute(
            "DELETE FROM web_sessions WHERE expires_at <= ?1",
            params![now],
        )?;
        Ok(n as u64)
    }

    fn create_token(&self, user_id: i64, name: &str, h: &[u8; 32], now: i64) -> Result<i64> {
        let conn = self.writer()?;
        conn.execute(
            "INSERT INTO api_tokens (user_id, name, token_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![user_id, name, &h[..], now],
        )?;
        Ok(conn.last_insert_rowid())
    }

    fn token_user(&self, h: &[u8; 32], now: i64) -> Result<Option<i64>> {
        let user: Option<i64> = self
            .reader()?
            .query_row(
                "SELECT user_id FROM api_tokens WHERE token_hash = ?1",
                params![&h[..]],
                |r| r.get(0),
            )
            .optional()?;
        if user.is_some() {
            // Coarse (one write a minute at most per token), so scripts polling the API do not
            // turn every read into a write.
            self.writer()?.execute(
                "UPDATE api_tokens SET last_used = ?2
                 WHERE token_hash = ?1 AND COALESCE(last_used, 0) < ?2 - 60",
                params![&h[..], now],
            )?;
        }
        Ok(user)
    }

    fn list_tokens(&self, user_id: i64) -> Result<Vec<TokenRecord>> {
        let conn = self.reader()?;
        let mut stmt = conn.prepare_cached(
            "SELECT id, user_id, name, created_at, last_used FROM api_tokens
             WHERE user_id = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map(params![user_id], |r| {
            Ok(TokenRecord {
                id: r.get(0)?,
                user_id: r.get(1)?,
                name: r.get(2)?,
                created_at: r.get(3)?,
                last_used: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn delete_token(&self, user_id: i64, id: i64) -> Result<bool> {
        let n = self.writer()?.execute(
            "DELETE FROM api_tokens WHERE id = ?1 AND user_id = ?2",
            params![id, user_id],
        )?;
        Ok(n > 0)
    }
}

// Tested through `storage::suite` (every backend runs the same checks).
