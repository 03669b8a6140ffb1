//! Signing keys (insert, list, retire, delete) and the server secrets kept
//! beside them.

use latchkey_core::keys::KeyRecord;
use latchkey_core::store::StoreResult;
use latchkey_store_sql::{key_cols, key_of, ms, opt_ms};
use rusqlite::params;
use time::OffsetDateTime;

use crate::SqliteStore;

pub(crate) async fn insert(store: &SqliteStore, key: &KeyRecord) -> StoreResult<()> {
    let k = key.clone();
    store
        .write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO signing_keys (kid, alg, private_key, encrypted, public_jwk, created_at, \
                 activates_at, retired_at, purged_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                k.kid,
                k.alg,
                k.private_key,
                k.encrypted,
                k.public_jwk,
                ms(k.created_at),
                ms(k.activates_at),
                opt_ms(k.retired_at),
                opt_ms(k.purged_at)
            ])?;
            Ok(())
        })
        .await
}

pub(crate) async fn list(store: &SqliteStore) -> StoreResult<Vec<KeyRecord>> {
    store
        .scan(|conn| {
            conn.prepare_cached(concat!(
                "SELECT ",
                key_cols!(),
                " FROM signing_keys ORDER BY activates_at, created_at"
            ))?
            .query_map([], |row| key_of(row))?
            .collect()
        })
        .await
}

/// Retires (and maybe purges) `kid` and promotes its successor in one
/// savepoint.
pub(crate) async fn retire(
    store: &SqliteStore,
    kid: &str,
    now: OffsetDateTime,
    purge: bool,
    promote: Option<&str>,
) -> StoreResult<()> {
    let (kid, promote) = (kid.to_owned(), promote.map(str::to_owned));
    store
        .write(move |conn| {
            if purge {
                conn.prepare_cached(
                    "INSERT INTO revocations (kind, subject, at) SELECT 'key_purged', kid, ?1 \
                     FROM signing_keys WHERE kid = ?2 AND purged_at IS NULL",
                )?
                .execute(params![ms(now), kid])?;
            }
            conn.prepare_cached(
                "UPDATE signing_keys SET retired_at = COALESCE(retired_at, ?1), \
                 purged_at = CASE WHEN ?2 THEN COALESCE(purged_at, ?1) ELSE purged_at END WHERE kid = ?3",
            )?
            .execute(params![ms(now), purge, kid])?;
            if let Some(successor) = promote {
                conn.prepare_cached("UPDATE signing_keys SET activates_at = ?1 WHERE kid = ?2")?
                    .execute(params![ms(now), successor])?;
            }
            Ok(())
        })
        .await
}

pub(crate) async fn delete(store: &SqliteStore, kids: &[String]) -> StoreResult<u64> {
    let kids = kids.to_vec();
    store
        .write(move |conn| {
            let mut deleted = 0;
            for kid in &kids {
                deleted += conn
                    .prepare_cached("DELETE FROM signing_keys WHERE kid = ?1")?
                    .execute([kid])? as u64;
            }
            Ok(deleted)
        })
        .await
}

/// A secret kept in the database (an in-memory one has no file beside it).
/// The insert and the read run in the writer's savepoint: no other write
/// can come between them.
pub(crate) async fn secret_or_insert(
    store: &SqliteStore,
    name: &str,
    candidate: &[u8],
) -> StoreResult<Vec<u8>> {
    let (name, candidate) = (name.to_owned(), candidate.to_vec());
    store
        .write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO server_secrets (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
            )?
            .execute(params![name, candidate])?;
            conn.prepare_cached("SELECT value FROM server_secrets WHERE name = ?1")?
                .query_row([name], |row| row.get(0))
        })
        .await
}
