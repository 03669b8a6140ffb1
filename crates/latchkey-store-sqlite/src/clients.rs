//! OAuth clients.

use latchkey_core::store::{ClientRecord, StoreResult};
use latchkey_store_sql::{client_cols, client_of, ms};
use rusqlite::params;

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

pub(crate) async fn remove(store: &SqliteStore, id: &str) -> StoreResult<bool> {
    let id = id.to_owned();
    store
        .write(move |conn| {
            Ok(conn
                .prepare_cached("DELETE FROM clients WHERE id = ?1")?
                .execute([id])?
                > 0)
        })
        .await
}
