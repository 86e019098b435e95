//! User accounts of the web UI and API: e-mail, password hash (argon2id, PHC string), admin flag.
//!
//! The hash is read in exactly one place, [`UserStore::user_credentials`], which only the login
//! path calls; [`UserRecord`] never carries it, so no page or API response can leak it.

use super::Result;

/// A user as pages and the API show it. Never carries the password hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// Id (> 0).
    pub id: i64,
    /// E-mail address (unique, compared without case).
    pub email: String,
    /// Whether the user manages users, sites and device assignment and sees every device.
    pub is_admin: bool,
    /// When the account was created.
    pub created_at: i64,
}

/// User operations.
pub trait UserStore {
    /// Creates a user; `Duplicate` if the e-mail is taken. Returns the id.
    fn create_user(
        &self,
        email: &str,
        password_hash: &str,
        is_admin: bool,
        now: i64,
    ) -> Result<i64>;
    /// One user by id.
    fn user(&self, id: i64) -> Result<Option<UserRecord>>;
    /// One user by e-mail (case-insensitive).
    fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>>;
    /// A user and the PHC string of their password hash, for checking a login.
    fn user_credentials(&self, email: &str) -> Result<Option<(UserRecord, String)>>;
    /// Every user, by id.
    fn list_users(&self) -> Result<Vec<UserRecord>>;
    /// Replaces a user's password hash (and so ends nothing by itself: callers end sessions).
    fn set_password(&self, id: i64, password_hash: &str) -> Result<()>;
    /// Grants or removes admin rights.
    fn set_admin(&self, id: i64, is_admin: bool) -> Result<()>;
    /// Deletes a user with their site grants, web sessions and API tokens.
    fn delete_user(&self, id: i64) -> Result<()>;
}
