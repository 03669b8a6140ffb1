-- The revocation feed: every session revoked and every key purged, written
-- in the transaction that did it, numbered in commit order (one writer).
-- Rows are pruned once no access token they concern can still be valid.
CREATE TABLE revocations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE INDEX revocations_by_time ON revocations (at);
