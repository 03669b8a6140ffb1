-- Account recovery by email (API.md §11). Instants are milliseconds since
-- the Unix epoch (UTC).

-- A user's address, on the user's row (read with it, at no extra cost):
-- at most one; verified addresses are unique by key (the local part as
-- given, the domain lower-cased).
ALTER TABLE users ADD COLUMN email TEXT;
ALTER TABLE users ADD COLUMN email_key TEXT;
ALTER TABLE users ADD COLUMN email_verified_at INTEGER;
CREATE UNIQUE INDEX users_verified_email ON users (email_key)
    WHERE email_verified_at IS NOT NULL;

-- Mailed tokens (reset, address check): only their SHA-256 is kept.
CREATE TABLE mail_tokens (
    hash             BLOB PRIMARY KEY NOT NULL,
    user_id          TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose          TEXT NOT NULL,
    email            TEXT NOT NULL,
    password_version INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    spent_at         INTEGER
);
CREATE INDEX mail_tokens_by_user ON mail_tokens (user_id, purpose, created_at);
CREATE INDEX mail_tokens_by_time ON mail_tokens (created_at);

-- The outbox: mails wait here until a sender has them accepted by the
-- SMTP server, or gives up. The bodies are wiped once done.
CREATE TABLE mail_outbox (
    id              TEXT PRIMARY KEY NOT NULL,
    recipient       TEXT NOT NULL,
    subject         TEXT NOT NULL,
    text_body       TEXT NOT NULL,
    html_body       TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    deliver_by      INTEGER,
    claimed_until   INTEGER,
    done_at         INTEGER,
    sent            INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT
);
CREATE INDEX mail_outbox_due ON mail_outbox (next_attempt_at) WHERE done_at IS NULL;
CREATE INDEX mail_outbox_done ON mail_outbox (done_at) WHERE done_at IS NOT NULL;
