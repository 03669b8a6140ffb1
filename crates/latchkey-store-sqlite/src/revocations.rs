//! The revocation feed's table: a row for every session revoked and every
//! key purged, written in the savepoint that did it (the one writer numbers
//! them in commit order), read in order by every subscriber's node.

use latchkey_core::store::{RevocationRecord, StoreResult};
use latchkey_store_sql::{ms, revocation_cols, revocation_of};
use rusqlite::{params, OptionalExtension};
use time::OffsetDateTime;

use crate::SqliteStore;

pub(crate) async fn after(
    store: &SqliteStore,
    after: u64,
    since: OffsetDateTime,
    limit: u32,
) -> StoreResult<Vec<RevocationRecord>> {
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    store
        .scan(move |conn| {
            let rows = conn
                .prepare_cached(concat!(
                    "SELECT ",
                    revocation_cols!(),
                    " FROM revocations WHERE seq > ?1 AND at >= ?2 ORDER BY seq LIMIT ?3"
                ))?
                .query_map(params![after, ms(since), i64::from(limit)], |row| {
                    revocation_of(row)
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows.into_iter().flatten().collect())
        })
        .await
}

pub(crate) async fn last(store: &SqliteStore) -> StoreResult<u64> {
    store
        .read(|conn| {
            // The sequence, not MAX(seq): pruning every row keeps the count.
            let seq: Option<i64> = conn
                .prepare_cached("SELECT seq FROM sqlite_sequence WHERE name = 'revocations'")?
                .query_row([], |row| row.get(0))
                .optional()?;
            Ok(seq.and_then(|s| u64::try_from(s).ok()).unwrap_or(0))
        })
        .await
}

/// One batch of the prune: the oldest rows at or before `?1`, at most `?2`.
pub(crate) const PRUNE: &str = "DELETE FROM revocations WHERE seq IN \
    (SELECT seq FROM revocations WHERE at <= ?1 ORDER BY at LIMIT ?2)";
