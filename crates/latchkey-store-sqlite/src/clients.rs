//! OAuth clients.

use latchkey_core::store::{ClientRecord, StoreResult};
use latchkey_store_sql::{client_cols, client_of, ms};
use rusqlite::params;
use time::OffsetDateTime;

use crate::SqliteStore;

pub(crate) async fn insert(store: &SqliteStore, client: &ClientRecord) -> StoreResult<()> {
    let c = client.clone();
    store
        .write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO clients (id, secret_hash, scope, created_at) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![c.id, c.secret_hash, c.scope, ms(c.created_at)])?;
            Ok(())
        })
        .await
}

pub(crate) async fn get(store: &SqliteStore, id: &str) -> StoreResult<Option<ClientRecord>> {
    const SELECT: &str = concat!("SELECT ", client_cols!(), " FROM clients WHERE id = ?1");
    store.one(SELECT, id, |row| client_of(row)).await
}

pub(crate) async fn list(store: &SqliteStore) -> StoreResult<Vec<ClientRecord>> {
    store
        .scan(|conn| {
            conn.prepare_cached(concat!(
                "SELECT ",
                client_cols!(),
                " FROM clients ORDER BY id"
            ))?
            .query_map([], |row| client_of(row))?
            .collect()
        })
        .await
}

/// A removed client's sessions die with it, in the same savepoint.
pub(crate) async fn remove(
    store: &SqliteStore,
    id: &str,
    now: OffsetDateTime,
) -> StoreResult<bool> {
    let id = id.to_owned();
    store
        .write(move |conn| {
            let found = conn
                .prepare_cached("DELETE FROM clients WHERE id = ?1")?
                .execute([&id])?
                > 0;
            conn.prepare_cached(
                "INSERT INTO revocations (kind, subject, at) SELECT 'revoked', id, ?1 \
                 FROM sessions WHERE client_id = ?2 AND revoked_at IS NULL",
            )?
            .execute(params![ms(now), id])?;
            conn.prepare_cached(
                "UPDATE sessions SET revoked_at = ?1, revoked_reason = 'client_removed' \
                 WHERE client_id = ?2 AND revoked_at IS NULL",
            )?
            .execute(params![ms(now), id])?;
            Ok(found)
        })
        .await
}
