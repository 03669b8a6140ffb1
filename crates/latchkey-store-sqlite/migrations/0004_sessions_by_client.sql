-- Removing a client revokes the sessions it opened: found by this index,
-- not by a scan of every session.
CREATE INDEX sessions_by_client ON sessions (client_id);
