-- OAuth clients made by `latchkey client add`. The built-in public clients
-- (`web`, `public`) are not stored.
CREATE TABLE clients (
    id          TEXT PRIMARY KEY,
    -- SHA-256 of the secret; NULL for a public client.
    secret_hash BYTEA,
    scope       TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
