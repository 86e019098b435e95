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

#[cfg(test)]
mod tests {
    use crate::storage::sqlite::tests::prepare;
    use crate::storage::*;

    #[test]
    fn sessions_expire_and_tokens_belong_to_owner() {
        let (_d, db) = prepare();
        let u = db.create_user("u@x", "h", false, 0).unwrap();
        let v = db.create_user("v@x", "h", false, 0).unwrap();
        db.create_web_session(&[1; 32], u, 100, 200).unwrap();
        assert_eq!(db.web_session(&[1; 32], 150).unwrap().unwrap().user_id, u);
        assert!(db.web_session(&[1; 32], 200).unwrap().is_none(), "expired");
        assert!(db.web_session(&[2; 32], 150).unwrap().is_none());
        assert_eq!(db.purge_web_sessions(250).unwrap(), 1);
        db.create_web_session(&[3; 32], u, 100, 900).unwrap();
        db.delete_user_web_sessions(u).unwrap();
        assert!(db.web_session(&[3; 32], 150).unwrap().is_none());

        let t = db.create_token(u, "script", &[9; 32], 10).unwrap();
        assert_eq!(db.token_user(&[9; 32], 500).unwrap(), Some(u));
        assert_eq!(db.list_tokens(u).unwrap()[0].last_used, Some(500));
        assert!(!db.delete_token(v, t).unwrap(), "not the owner");
        assert!(db.delete_token(u, t).unwrap());
        assert_eq!(db.token_user(&[9; 32], 600).unwrap(), None);
        // Deleting a user ends everything they held.
        db.create_web_session(&[4; 32], v, 100, 900).unwrap();
        db.create_token(v, "x", &[8; 32], 10).unwrap();
        db.delete_user(v).unwrap();
        assert!(db.web_session(&[4; 32], 150).unwrap().is_none());
        assert_eq!(db.token_user(&[8; 32], 600).unwrap(), None);
    }
}
