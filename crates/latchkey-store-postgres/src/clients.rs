//! OAuth clients.

use latchkey_core::store::{ClientRecord, StoreResult};
use latchkey_store_sql::{client_cols, client_of, ms};
use time::OffsetDateTime;

use crate::revocations;
use crate::PostgresStore;

pub(crate) async fn insert(store: &PostgresStore, c: &ClientRecord) -> StoreResult<()> {
    store
        .bounded(async {
            sqlx::query(
                "INSERT INTO clients (id, secret_hash, scope, created_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(&c.id)
            .bind(&c.secret_hash)
            .bind(&c.scope)
            .bind(ms(c.created_at))
            .execute(&store.pool)
            .await?;
            Ok(())
        })
        .await
}

pub(crate) async fn get(store: &PostgresStore, id: &str) -> StoreResult<Option<ClientRecord>> {
    const SELECT: &str = concat!("SELECT ", client_cols!(), " FROM clients WHERE id = $1");
    store.one(SELECT, id, client_of).await
}

pub(crate) async fn list(store: &PostgresStore) -> StoreResult<Vec<ClientRecord>> {
    store
        .bounded(async {
            sqlx::query(concat!(
                "SELECT ",
                client_cols!(),
                " FROM clients ORDER BY id COLLATE \"C\""
            ))
            .fetch_all(&store.pool)
            .await?
            .iter()
            .map(client_of)
            .collect()
        })
        .await
}

/// A removed client's sessions die with it, in the same transaction.
pub(crate) async fn remove(
    store: &PostgresStore,
    id: &str,
    now: OffsetDateTime,
) -> StoreResult<bool> {
    store
        .bounded(async {
            let mut tx = store.pool.begin().await?;
            revocations::lock(&mut tx).await?;
            let done = sqlx::query("DELETE FROM clients WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "WITH r AS (UPDATE sessions SET revoked_at = $1, \
                 revoked_reason = 'client_removed' \
                 WHERE client_id = $2 AND revoked_at IS NULL RETURNING id) \
                 INSERT INTO revocations (kind, subject, at) SELECT 'revoked', id, $1 FROM r",
            )
            .bind(ms(now))
            .bind(id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(done.rows_affected() > 0)
        })
        .await
}
