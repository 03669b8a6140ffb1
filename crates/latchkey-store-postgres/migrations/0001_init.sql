-- Instants are milliseconds since the Unix epoch (UTC), as BIGINT, exactly
-- as the SQLite store keeps them, so both engines compare them alike.

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    username      TEXT NOT NULL,
    username_key  TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    disabled_at   BIGINT
);

CREATE TABLE sessions (
    id                  TEXT PRIMARY KEY,
    user_id             TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id           TEXT NOT NULL,
    scope               TEXT NOT NULL,
    salt                BYTEA NOT NULL,
    generation          BIGINT NOT NULL CHECK (generation >= 0),
    rotated_at          BIGINT,
    created_at          BIGINT NOT NULL,
    last_used_at        BIGINT NOT NULL,
    absolute_expires_at BIGINT NOT NULL,
    revoked_at          BIGINT,
    revoked_reason      TEXT,
    user_agent          TEXT,
    ip                  TEXT NOT NULL
);
CREATE INDEX sessions_by_user ON sessions (user_id, created_at);

CREATE TABLE signing_keys (
    kid          TEXT PRIMARY KEY,
    alg          TEXT NOT NULL,
    private_key  BYTEA NOT NULL,
    encrypted    BOOLEAN NOT NULL,
    public_jwk   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    activates_at BIGINT NOT NULL,
    retired_at   BIGINT,
    purged_at    BIGINT
);

CREATE TABLE server_secrets (
    name  TEXT PRIMARY KEY,
    value BYTEA NOT NULL
);

CREATE TABLE login_failures (
    key               TEXT PRIMARY KEY,
    count             BIGINT NOT NULL,
    window_started_at BIGINT NOT NULL
);

CREATE TABLE audit_log (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         BIGINT NOT NULL,
    event      TEXT NOT NULL,
    user_id    TEXT,
    session_id TEXT,
    ip         TEXT,
    detail     TEXT
);
CREATE INDEX audit_log_by_time ON audit_log (at);
