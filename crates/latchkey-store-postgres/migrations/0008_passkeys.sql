-- Passkeys (API.md §10): what logging in with one needs beside 0007's
-- table, and the WebAuthn challenges of ceremonies under way. Instants are
-- milliseconds since the Unix epoch (UTC).

-- The authenticator's credential id (base64url): a login finds its passkey
-- by it, and one authenticator's credential belongs to one user only.
-- Nothing wrote to the table before this migration, so the column needs no
-- default.
ALTER TABLE passkeys ADD COLUMN credential_id TEXT NOT NULL
    CHECK (credential_id <> '');
CREATE UNIQUE INDEX passkeys_by_credential_id ON passkeys (credential_id);
-- The authenticator's signature counter at the last login (0: it keeps
-- none): a login must present a greater one.
ALTER TABLE passkeys ADD COLUMN sign_count BIGINT NOT NULL DEFAULT 0;

-- A ceremony's state between its options and the authenticator's answer,
-- in the store so that any node can finish what another started. A
-- challenge is deleted when used; the prune deletes the expired.
CREATE TABLE webauthn_challenges (
    id         TEXT PRIMARY KEY NOT NULL,
    purpose    TEXT NOT NULL,
    state      TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX webauthn_challenges_by_expiry ON webauthn_challenges (expires_at);
