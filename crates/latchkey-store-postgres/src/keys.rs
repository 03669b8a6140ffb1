//! Signing keys (insert, list, retire, delete) and the server secrets kept
//! beside them.

use latchkey_core::keys::KeyRecord;
use latchkey_core::store::{StoreError, StoreResult};
use latchkey_store_sql::{key_cols, key_of, ms, opt_ms};
use sqlx::Row;
use time::OffsetDateTime;

use crate::revocations;
use crate::PostgresStore;

pub(crate) async fn insert(store: &PostgresStore, k: &KeyRecord) -> StoreResult<()> {
    store
        .bounded(async {
            sqlx::query(concat!(
                "INSERT INTO signing_keys (",
                key_cols!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            ))
            .bind(&k.kid)
            .bind(&k.alg)
            .bind(&k.private_key)
            .bind(k.encrypted)
            .bind(&k.public_jwk)
            .bind(ms(k.created_at))
            .bind(ms(k.activates_at))
            .bind(opt_ms(k.retired_at))
            .bind(opt_ms(k.purged_at))
            .execute(&store.pool)
            .await?;
            Ok(())
        })
        .await
}

pub(crate) async fn list(store: &PostgresStore) -> StoreResult<Vec<KeyRecord>> {
    store
        .bounded(async {
            sqlx::query(concat!(
                "SELECT ",
                key_cols!(),
                " FROM signing_keys ORDER BY activates_at, created_at, kid COLLATE \"C\""
            ))
            .fetch_all(&store.pool)
            .await?
            .iter()
            .map(key_of)
            .collect()
        })
        .await
}

/// Retires (and maybe purges) `kid` and promotes its successor in one
/// transaction.
pub(crate) async fn retire(
    store: &PostgresStore,
    kid: &str,
    now: OffsetDateTime,
    purge: bool,
    promote: Option<&str>,
) -> StoreResult<()> {
    store
        .bounded(async {
            let mut tx = store.pool.begin().await?;
            if purge {
                revocations::lock(&mut tx).await?;
                sqlx::query(
                    "INSERT INTO revocations (kind, subject, at) SELECT 'key_purged', kid, $1 \
                     FROM signing_keys WHERE kid = $2 AND purged_at IS NULL",
                )
                .bind(ms(now))
                .bind(kid)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query(
                "UPDATE signing_keys SET retired_at = COALESCE(retired_at, $1), \
                 purged_at = CASE WHEN $2 THEN COALESCE(purged_at, $1) ELSE purged_at END \
                 WHERE kid = $3",
            )
            .bind(ms(now))
            .bind(purge)
            .bind(kid)
            .execute(&mut *tx)
            .await?;
            if let Some(successor) = promote {
                sqlx::query("UPDATE signing_keys SET activates_at = $1 WHERE kid = $2")
                    .bind(ms(now))
                    .bind(successor)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await
        })
        .await
}

pub(crate) async fn delete(store: &PostgresStore, kids: &[String]) -> StoreResult<u64> {
    store
        .bounded(async {
            let done = sqlx::query("DELETE FROM signing_keys WHERE kid = ANY($1)")
                .bind(kids)
                .execute(&store.pool)
                .await?;
            Ok(done.rows_affected())
        })
        .await
}

/// In the database itself, so that every node shares it without a file to
/// copy: a copy of the database then carries it too, hence the warning.
pub(crate) async fn refresh_secret(store: &PostgresStore) -> StoreResult<Vec<u8>> {
    tracing::warn!("no master_key: the refresh-token secret is kept in the store itself");
    let candidate = latchkey_core::crypto::random_bytes::<32>()
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    let name = "refresh_mac";
    // The no-op update locks and returns the row that won. (`DO NOTHING`
    // and a `SELECT` in the same statement could miss a racer's row: the
    // statement's snapshot predates its commit.)
    store
        .bounded(async {
            sqlx::query(
                "INSERT INTO server_secrets AS t (name, value) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET value = t.value RETURNING value",
            )
            .bind(name)
            .bind(candidate.as_slice())
            .fetch_one(&store.pool)
            .await?
            .try_get("value")
        })
        .await
}
