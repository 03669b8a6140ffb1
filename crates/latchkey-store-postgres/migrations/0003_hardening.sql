-- A login checked against an older password opens no session: the version
-- moves with every password change (not with a rehash).
ALTER TABLE users ADD COLUMN password_version BIGINT NOT NULL DEFAULT 0
    CHECK (password_version >= 0);

-- Attempts refused by the login limit in the current window (the first one
-- is audited, not the rest).
ALTER TABLE login_failures ADD COLUMN refusals BIGINT NOT NULL DEFAULT 0;
CREATE INDEX login_failures_by_window ON login_failures (window_started_at);
