//! Schema of the accounts tables (users, sites, memberships, device assignment, web sessions,
//! API tokens, audit log), one migration in [`super::migrations::MIGRATIONS`].

/// Migration 2: accounts and access.
pub const SCHEMA_V2: &str = r#"
CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    email         TEXT    NOT NULL UNIQUE COLLATE NOCASE,
    password_hash TEXT    NOT NULL,                -- argon2id PHC string
    is_admin      INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL
);

CREATE TABLE sites (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT    NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);

CREATE TABLE site_members (
    site_id INTEGER NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (site_id, user_id)
) WITHOUT ROWID;
CREATE INDEX site_members_by_user ON site_members (user_id, site_id);

CREATE TABLE device_sites (
    device_id INTEGER PRIMARY KEY REFERENCES devices (id),
    site_id   INTEGER NOT NULL REFERENCES sites (id) ON DELETE CASCADE
);
CREATE INDEX device_sites_by_site ON device_sites (site_id, device_id);

CREATE TABLE web_sessions (
    id_hash    BLOB    PRIMARY KEY,                -- SHA-256 of the cookie value
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE api_tokens (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name       TEXT    NOT NULL,
    token_hash BLOB    NOT NULL UNIQUE,            -- SHA-256 of the token
    created_at INTEGER NOT NULL,
    last_used  INTEGER
);

CREATE TABLE audit_log (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at        INTEGER NOT NULL,
    user_id   INTEGER,                             -- no foreign key: entries outlive users
    actor     TEXT    NOT NULL,
    action    TEXT    NOT NULL,
    device_id INTEGER,
    site_id   INTEGER,
    detail    TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX audit_by_site ON audit_log (site_id, id);
CREATE INDEX audit_by_device ON audit_log (device_id, id);
"#;
