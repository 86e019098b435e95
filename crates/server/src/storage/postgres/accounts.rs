//! Schema of the accounts tables (users, sites, memberships, device assignment, web sessions,
//! API tokens, audit log): migration 2, the same tables as the SQLite backend's.

/// Migration 2: accounts and access.
pub const SCHEMA_V2: &str = r#"
CREATE TABLE users (
    id            BIGSERIAL PRIMARY KEY,
    email         TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,                -- argon2id PHC string
    is_admin      BOOLEAN NOT NULL DEFAULT FALSE,
    created_at    BIGINT  NOT NULL
);
-- E-mail addresses are unique and compared without case (SQLite: COLLATE NOCASE).
CREATE UNIQUE INDEX users_email ON users (lower(email));

CREATE TABLE sites (
    id         BIGSERIAL PRIMARY KEY,
    name       TEXT   NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE site_members (
    site_id BIGINT NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (site_id, user_id)
);
CREATE INDEX site_members_by_user ON site_members (user_id, site_id);

CREATE TABLE device_sites (
    device_id BIGINT PRIMARY KEY REFERENCES devices (id),
    site_id   BIGINT NOT NULL REFERENCES sites (id) ON DELETE CASCADE
);
CREATE INDEX device_sites_by_site ON device_sites (site_id, device_id);

CREATE TABLE web_sessions (
    id_hash    BYTEA  PRIMARY KEY,                 -- SHA-256 of the cookie value
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE TABLE api_tokens (
    id         BIGSERIAL PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name       TEXT   NOT NULL,
    token_hash BYTEA  NOT NULL UNIQUE,             -- SHA-256 of the token
    created_at BIGINT NOT NULL,
    last_used  BIGINT
);

CREATE TABLE audit_log (
    id        BIGSERIAL PRIMARY KEY,
    at        BIGINT NOT NULL,
    user_id   BIGINT,                              -- no foreign key: entries outlive users
    actor     TEXT   NOT NULL,
    action    TEXT   NOT NULL,
    device_id BIGINT,
    site_id   BIGINT,
    detail    TEXT   NOT NULL DEFAULT ''
);
CREATE INDEX audit_by_site ON audit_log (site_id, id);
CREATE INDEX audit_by_device ON audit_log (device_id, id);
"#;
