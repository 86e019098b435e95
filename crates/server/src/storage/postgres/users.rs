//! Users in PostgreSQL. E-mail addresses are unique without case (`lower(email)` index).

use super::{unique, Postgres};
use crate::storage::users::{UserRecord, UserStore};
use crate::storage::{missing_if_none, Result};
use tokio_postgres::Row;

const COLUMNS: &str = "id, email, is_admin, created_at";

fn record(r: &Row) -> UserRecord {
    UserRecord {
        id: r.get(0),
        email: r.get(1),
        is_admin: r.get(2),
        created_at: r.get(3),
    }
}

impl UserStore for Postgres {
    fn create_user(&self, email: &str, hash: &str, is_admin: bool, now: i64) -> Result<i64> {
        let (email, hash) = (email.to_owned(), hash.to_owned());
        self.run(move |s| async move {
            let c = s.conn().await?;
            let row = c
                .query_one(
                    "INSERT INTO users (email, password_hash, is_admin, created_at)
                     VALUES ($1, $2, $3, $4) RETURNING id",
                    &[&email, &hash, &is_admin, &now],
                )
                .await
                .map_err(|e| unique(e, || format!("user {email}")))?;
            Ok(row.get(0))
        })
    }

    fn user(&self, id: i64) -> Result<Option<UserRecord>> {
        self.run(move |s| async move {
            let c = s.conn().await?;
            let row = c
                .query_opt(
                    &format!("SELECT {COLUMNS} FROM users WHERE id = $1"),
                    &[&id],
                )
                .await?;
            Ok(row.as_ref().map(record))
        })
    }

    fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>> {
        let email = email.to_owned();
        self.run(move |s| async move {
            let c = s.conn().await?;
            let row = c
                .query_opt(
                    &format!("SELECT {COLUMNS} FROM users WHERE lower(email) = lower($1)"),
                    &[&email],
                )
                .await?;
            Ok(row.as_ref().map(record))
        })
    }

    fn user_credentials(&self, email: &str) -> Result<Option<(UserRecord, String)>> {
        let email = email.to_owned();
        self.run(move |s| async move {
            let c = s.conn().await?;
            let row = c
                .query_opt(
                    &format!(
                        "SELECT {COLUMNS}, password_hash FROM users WHERE lower(email) = lower($1)"
                    ),
                    &[&email],
                )
                .await?;
            Ok(row.map(|r| (record(&r), r.get(4))))
        })
    }

    fn list_users(&self) -> Result<Vec<UserRecord>> {
        self.run(|s| async move {
            let c = s.conn().await?;
            let rows = c
                .query(&format!("SELECT {COLUMNS} FROM users ORDER BY id"), &[])
                .await?;
            Ok(rows.iter().map(record).collect())
        })
    }

    fn set_password(&self, id: i64, hash: &str) -> Result<()> {
        let hash = hash.to_owned();
        self.run(move |s| async move {
            let c = s.conn().await?;
            let n = c
                .execute(
                    "UPDATE users SET password_hash = $2 WHERE id = $1",
                    &[&id, &hash],
                )
                .await?;
            missing_if_none(n, || format!("user {id}"))
        })
    }

    fn set_admin(&self, id: i64, is_admin: bool) -> Result<()> {
        self.run(move |s| async move {
            let c = s.conn().await?;
            let n = c
                .execute(
                    "UPDATE users SET is_admin = $2 WHERE id = $1",
                    &[&id, &is_admin],
                )
                .await?;
            missing_if_none(n, || format!("user {id}"))
        })
    }

    fn delete_user(&self, id: i64) -> Result<()> {
        self.run(move |s| async move {
            let c = s.conn().await?;
            // ON DELETE CASCADE removes memberships, sessions and tokens in the same statement.
            let n = c.execute("DELETE FROM users WHERE id = $1", &[&id]).await?;
            missing_if_none(n, || format!("user {id}"))
        })
    }
}
