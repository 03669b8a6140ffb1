-- Instants are milliseconds since the Unix epoch (UTC).

CREATE TABLE users (
    id            TEXT PRIMARY KEY NOT NULL,
    username      TEXT NOT NULL,
    username_key  TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    disabled_at   INTEGER
);

CREATE TABLE sessions (
    id                  TEXT PRIMARY KEY NOT NULL,
    user_id             TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id           TEXT NOT NULL,
    scope               TEXT NOT NULL,
    salt                BLOB NOT NULL,
    generation          INTEGER NOT NULL,
    rotated_at          INTEGER,
    created_at          INTEGER NOT NULL,
    last_used_at        INTEGER NOT NULL,
    absolute_expires_at INTEGER NOT NULL,
    revoked_at          INTEGER,
    revoked_reason      TEXT,
    user_agent          TEXT,
    ip                  TEXT NOT NULL
);
CREATE INDEX sessions_by_user ON sessions (user_id, created_at);

CREATE TABLE signing_keys (
    kid          TEXT PRIMARY KEY NOT NULL,
    alg          TEXT NOT NULL,
    private_key  BLOB NOT NULL,
    encrypted    INTEGER NOT NULL,
    public_jwk   TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    activates_at INTEGER NOT NULL,
    retired_at   INTEGER,
    purged_at    INTEGER
);

CREATE TABLE server_secrets (
    name  TEXT PRIMARY KEY NOT NULL,
    value BLOB NOT NULL
);

CREATE TABLE login_failures (
    key               TEXT PRIMARY KEY NOT NULL,
    count             INTEGER NOT NULL,
    window_started_at INTEGER NOT NULL
);

CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         INTEGER NOT NULL,
    event      TEXT NOT NULL,
    user_id    TEXT,
    session_id TEXT,
    ip         TEXT,
    detail     TEXT
);
CREATE INDEX audit_log_by_time ON audit_log (at);
