//! Web sessions and API tokens in PostgreSQL (hashes only).

use super::Postgres;
use crate::storage::web_sessions::{TokenRecord, WebSession, WebSessionStore};
use crate::storage::Result;

impl WebSessionStore for Postgres {
    fn create_web_session(&self, h: &[u8; 32], user: i64, now: i64, expires: i64) -> Result<()> {
        let h = h.to_vec();
        self.run(move |s| async move {
            let c = s.conn().await?;
            c.execute(
                "INSERT INTO web_sessions (id_hash, user_id, created_at, expires_at)
                 VALUES ($1, $2, $3, $4)",
                &[&h, &user, &now, &expires],
            )
            .await?;
            Ok(())
        })
    }

    fn web_session(&self, h: &[u8; 32], now: i64) -> Result<Option<WebSession>> {
        let h = h.to_vec();
        self.run(move |s| async move {
            let c = s.conn().await?;
            let row = c
                .query_opt(
                    "SELECT user_id, created_at, expires_at FROM web_sessions
                     WHERE id_hash = $1 AND expires_at > $2",
                    &[&h, &now],
                )
                .await?;
            Ok(row.map(|r| WebSession {
                user_id: r.get(0),
                created_at: r.get(1),
                expires_at: r.get(2),
            }))
        })
    }

    fn delete_web_session(&self, h: &[u8; 32]) -> Result<()> {
        let h = h.to_vec();
        self.run(move |s| async move {
            let c = s.conn().await?;
            c.execute("DELETE FROM web_sessions WHERE id_hash = $1", &[&h])
                .await?;
            Ok(())
        })
    }

    fn delete_user_web_sessions(&self, user_id: i64) -> Result<()> {
        self.run(move |s| async move {
            let c = s.conn().await?;
            c.execute("DELETE FROM web_sessions WHERE user_id = $1", &[&user_id])
                .await?;
            Ok(())
        })
    }

    fn purge_web_sessions(&self, now: i64) -> Result<u64> {
        self.run(move |s| async move {
            let c = s.conn().await?;
            Ok(
                c.execute("DELETE FROM web_sessions WHERE expires_at <= $1", &[&now])
                    .await?,
            )
        })
    }

    fn create_token(&self, user_id: i64, name: &str, h: &[u8; 32], now: i64) -> Result<i64> {
        let (name, h) = (name.to_owned(), h.to_vec());
        self.run(move |s| async move {
            let c = s.conn().await?;
            let row = c
                .query_one(
                    "INSERT INTO api_tokens (user_id, name, token_hash, created_at)
                     VALUES ($1, $2, $3, $4) RETURNING id",
                    &[&user_id, &name, &h, &now],
                )
                .await?;
            Ok(row.get(0))
        })
    }

    fn token_user(&self, h: &[u8; 32], now: i64) -> Result<Option<i64>> {
        let h = h.to_vec();
        self.run(move |s| async move {
            let c = s.conn().await?;
            let user: Option<i64> = c
                .query_opt(
                    "SELECT user_id FROM api_tokens WHERE token_hash = $1",
                    &[&h],
                )
                .await?
                .map(|r| r.get(0));
            if user.is_some() {
                // Coarse (one write a minute at most per token), so scripts polling the API do
                // not turn every read into a write.
                c.execute(
                    "UPDATE api_tokens SET last_used = $2
                     WHERE token_hash = $1 AND COALESCE(last_used, 0) < $2::int8 - 60",
                    &[&h, &now],
                )
                .await?;
            }
            Ok(user)
        })
    }

    fn list_tokens(&self, user_id: i64) -> Result<Vec<TokenRecord>> {
        self.run(move |s| async move {
            let c = s.conn().await?;
            let rows = c
                .query(
                    "SELECT id, user_id, name, created_at, last_used FROM api_tokens
                     WHERE user_id = $1 ORDER BY id",
                    &[&user_id],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| TokenRecord {
                    id: r.get(0),
                    user_id: r.get(1),
                    name: r.get(2),
                    created_at: r.get(3),
                    last_used: r.get(4),
                })
                .collect())
        })
    }

    fn delete_token(&self, user_id: i64, id: i64) -> Result<bool> {
        self.run(move |s| async move {
            let c = s.conn().await?;
            let n = c
                .execute(
                    "DELETE FROM api_tokens WHERE id = $1 AND user_id = $2",
                    &[&id, &user_id],
                )
                .await?;
            Ok(n > 0)
        })
    }
}
