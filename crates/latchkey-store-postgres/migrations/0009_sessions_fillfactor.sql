-- A refresh rewrites its session's row (generation, rotated_at,
-- last_used_at: none indexed). With room left on the row's page the new
-- version stays there (a HOT update): no index entry is added and one page
-- is dirtied. Full pages (the default fillfactor of 100) sent most refreshes
-- of a large store to another page, with an entry in each of the table's
-- three indexes. This applies to pages written from now on; rows on full
-- pages move once, to pages that keep the room, so no rewrite is needed.
ALTER TABLE sessions SET (fillfactor = 80);
