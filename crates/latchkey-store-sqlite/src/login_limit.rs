//! The login limit: each attempt reserved before its password is checked,
//! cleared by a success, and old windows pruned.

use latchkey_core::store::{LoginAttempt, LoginLimit, StoreResult};
use latchkey_store_sql::{login_attempt_of, ms};
use rusqlite::params;

use crate::SqliteStore;

/// One statement counts an attempt or refuses it: under the limit `count`
/// moves on; at it `refusals` does; a finished window starts again.
const LOGIN_ATTEMPT_UPSERT: &str =
    "INSERT INTO login_failures (key, count, window_started_at, refusals) \
     VALUES (?1, 1, ?2, 0) \
     ON CONFLICT (key) DO UPDATE SET \
       count = CASE WHEN window_started_at <= ?3 THEN 1 \
                    WHEN count < ?4 THEN count + 1 ELSE count END, \
       refusals = CASE WHEN window_started_at <= ?3 THEN 0 \
                       WHEN count < ?4 THEN refusals ELSE refusals + 1 END, \
       window_started_at = CASE WHEN window_started_at <= ?3 THEN ?2 ELSE window_started_at END \
     RETURNING window_started_at, refusals";

pub(crate) async fn reserve(
    store: &SqliteStore,
    limit: LoginLimit<'_>,
) -> StoreResult<LoginAttempt> {
    let key = limit.key.to_owned();
    let (now, expired) = (ms(limit.now), ms(limit.window_start_after));
    let max = i64::from(limit.max_attempts);
    store
        .write(move |conn| {
            conn.prepare_cached(LOGIN_ATTEMPT_UPSERT)?
                .query_row(params![key, now, expired, max], |row| login_attempt_of(row))
        })
        .await
}

pub(crate) async fn clear(store: &SqliteStore, key: &str) -> StoreResult<()> {
    let key = key.to_owned();
    store
        .write(move |conn| {
            conn.prepare_cached("DELETE FROM login_failures WHERE key = ?1")?
                .execute([key])?;
            Ok(())
        })
        .await
}

/// A prune batch: finished windows, along the index on their start.
pub(crate) const PRUNE: &str =
    "DELETE FROM login_failures WHERE key IN (SELECT key FROM login_failures \
                         WHERE window_started_at <= ?1 ORDER BY window_started_at LIMIT ?2)";
