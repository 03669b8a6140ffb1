//! The login limit: each attempt reserved before its password is checked,
//! cleared by a success, and old windows pruned.

use latchkey_core::store::{LoginAttempt, LoginLimit, StoreResult};
use latchkey_store_sql::{login_attempt_of, ms};

use crate::PostgresStore;

pub(crate) async fn reserve(
    store: &PostgresStore,
    limit: LoginLimit<'_>,
) -> StoreResult<LoginAttempt> {
    store
        .bounded(async {
            // One upsert counts the attempt or refuses it: under the limit
            // `count` moves on; at it `refusals` does; a finished window
            // starts again.
            let row = sqlx::query(
                "INSERT INTO login_failures AS f (key, count, window_started_at, refusals) \
                 VALUES ($1, 1, $2, 0) \
                 ON CONFLICT (key) DO UPDATE SET \
                   count = CASE WHEN f.window_started_at <= $3 THEN 1 \
                                WHEN f.count < $4 THEN f.count + 1 ELSE f.count END, \
                   refusals = CASE WHEN f.window_started_at <= $3 THEN 0 \
                                   WHEN f.count < $4 THEN f.refusals ELSE f.refusals + 1 END, \
                   window_started_at = CASE WHEN f.window_started_at <= $3 THEN $2 \
                                       ELSE f.window_started_at END \
                 RETURNING window_started_at, refusals",
            )
            .bind(limit.key)
            .bind(ms(limit.now))
            .bind(ms(limit.window_start_after))
            .bind(i64::from(limit.max_attempts))
            .fetch_one(&store.pool)
            .await?;
            login_attempt_of(&row)
        })
        .await
}

pub(crate) async fn clear(store: &PostgresStore, key: &str) -> StoreResult<()> {
    store
        .bounded(async {
            sqlx::query("DELETE FROM login_failures WHERE key = $1")
                .bind(key)
                .execute(&store.pool)
                .await?;
            Ok(())
        })
        .await
}

/// A prune batch: finished windows, along the index on their start.
pub(crate) const PRUNE: &str =
    "DELETE FROM login_failures WHERE key IN (SELECT key FROM login_failures \
                         WHERE window_started_at <= $1 ORDER BY window_started_at LIMIT $2)";
