-- The revocation feed: every session revoked and every key purged, written
-- in the transaction that did it. Writers take one advisory lock first, so
-- that rows commit in the order of their numbers and a reader following
-- `seq` never skips one that commits late.
CREATE TABLE revocations (
    seq BIGSERIAL PRIMARY KEY,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX revocations_by_time ON revocations (at);
