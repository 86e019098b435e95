//! Web login sessions and API tokens. Both are bearer secrets, so only their SHA-256 hash is
//! stored: a copy of the database does not let anyone log in.

use super::Result;

/// A live web session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebSession {
    /// The user.
    pub user_id: i64,
    /// When it was created.
    pub created_at: i64,
    /// When it stops being accepted.
    pub expires_at: i64,
}

/// An API token as listed (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// Id.
    pub id: i64,
    /// Owner.
    pub user_id: i64,
    /// A label chosen by the owner.
    pub name: String,
    /// When it was created.
    pub created_at: i64,
    /// When it was last used (coarse).
    pub last_used: Option<i64>,
}

/// Session and token operations. Hashes are SHA-256 of the secret.
pub trait WebSessionStore {
    /// Stores a new session.
    fn create_web_session(
        &self,
        id_hash: &[u8; 32],
        user_id: i64,
        now: i64,
        expires_at: i64,
    ) -> Result<()>;
    /// The session with this hash if it has not expired at `now`.
    fn web_session(&self, id_hash: &[u8; 32], now: i64) -> Result<Option<WebSession>>;
    /// Ends a session (logout).
    fn delete_web_session(&self, id_hash: &[u8; 32]) -> Result<()>;
    /// Ends every session of a user (password change, deletion).
    fn delete_user_web_sessions(&self, user_id: i64) -> Result<()>;
    /// Removes expired sessions; returns how many.
    fn purge_web_sessions(&self, now: i64) -> Result<u64>;
    /// Stores a new API token; returns its id.
    fn create_token(&self, user_id: i64, name: &str, hash: &[u8; 32], now: i64) -> Result<i64>;
    /// The owner of a token, recording the use.
    fn token_user(&self, hash: &[u8; 32], now: i64) -> Result<Option<i64>>;
    /// A user's tokens.
    fn list_tokens(&self, user_id: i64) -> Result<Vec<TokenRecord>>;
    /// Deletes a token of a user; returns whether it existed.
    fn delete_token(&self, user_id: i64, id: i64) -> Result<bool>;
}
