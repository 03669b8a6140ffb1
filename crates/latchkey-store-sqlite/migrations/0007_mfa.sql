-- Second factors and passkeys (API.md §10). Instants are milliseconds since
-- the Unix epoch (UTC).

-- How each session's login was made (RFC 8176 values, space-separated) and
-- when. Sessions older than this migration were opened by a password login:
-- `amr` defaults to that and a NULL `auth_time` reads as `created_at`, so
-- no existing row is rewritten (a large table migrates at once).
ALTER TABLE sessions ADD COLUMN amr TEXT NOT NULL DEFAULT 'pwd';
ALTER TABLE sessions ADD COLUMN auth_time INTEGER;

-- A user's TOTP (RFC 6238): the secret, sealed under the master key when
-- `encrypted`; on once `confirmed_at` is set. `last_step` is the latest
-- 30-second step a code was accepted for: no code of it or of an earlier
-- step passes again, on any node.
CREATE TABLE totp (
    user_id      TEXT PRIMARY KEY NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    secret       BLOB NOT NULL,
    encrypted    INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    confirmed_at INTEGER,
    last_step    INTEGER
);

-- Recovery codes: only their SHA-256 is kept; a code is deleted when used.
CREATE TABLE recovery_codes (
    hash       BLOB PRIMARY KEY NOT NULL,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL
);
CREATE INDEX recovery_codes_by_user ON recovery_codes (user_id);

-- Logins whose password was right, waiting for their second factor: the
-- SHA-256 of the mfa_token, what the session will be, and the password
-- version checked (a password change makes it worthless).
CREATE TABLE mfa_logins (
    hash             BLOB PRIMARY KEY NOT NULL,
    user_id          TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id        TEXT NOT NULL,
    scope            TEXT NOT NULL,
    password_version INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    failures         INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX mfa_logins_by_user ON mfa_logins (user_id);
CREATE INDEX mfa_logins_by_expiry ON mfa_logins (expires_at);

-- WebAuthn credentials: the minimal table the account's count reads; the
-- passkeys feature extends it.
CREATE TABLE passkeys (
    id           TEXT PRIMARY KEY NOT NULL,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    credential   TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER
);
CREATE INDEX passkeys_by_user ON passkeys (user_id);
