//! Users: accounts, their password hashes and whether they are disabled.

use latchkey_core::store::{RevokeScope, StoreResult, UserRecord};
use latchkey_store_sql::{ms, opt_ms, user_cols, user_of};
use rusqlite::params;
use time::OffsetDateTime;

use crate::mfa::delete_mfa_logins_of;
use crate::row::i64_param;
use crate::sessions::{revoke_in, Revoke};
use crate::SqliteStore;

pub(crate) async fn create(store: &SqliteStore, user: &UserRecord) -> StoreResult<()> {
    let u = user.clone();
    store
        .write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO users (id, username, username_key, password_hash, password_version, \
                 created_at, disabled_at, email, email_key, email_verified_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?
            .execute(params![
                u.id.as_str(),
                u.username,
                u.username_key,
                u.password_hash,
                i64_param(u.password_version)?,
                ms(u.created_at),
                opt_ms(u.disabled_at),
                u.email.as_ref().map(|e| &e.email),
                u.email.as_ref().map(|e| &e.email_key),
                opt_ms(u.email.as_ref().and_then(|e| e.verified_at))
            ])?;
            Ok(())
        })
        .await
}

pub(crate) async fn by_key(
    store: &SqliteStore,
    username_key: &str,
) -> StoreResult<Option<UserRecord>> {
    const SELECT: &str = concat!(
        "SELECT ",
        user_cols!(),
        " FROM users u WHERE u.username_key = ?1"
    );
    store.one(SELECT, username_key, |row| user_of(row)).await
}

pub(crate) async fn by_id(store: &SqliteStore, id: &str) -> StoreResult<Option<UserRecord>> {
    const SELECT: &str = concat!("SELECT ", user_cols!(), " FROM users u WHERE u.id = ?1");
    store.one(SELECT, id, |row| user_of(row)).await
}

pub(crate) async fn list(store: &SqliteStore) -> StoreResult<Vec<UserRecord>> {
    store
        .scan(|conn| {
            conn.prepare_cached(concat!(
                "SELECT ",
                user_cols!(),
                " FROM users u ORDER BY u.created_at, u.id"
            ))?
            .query_map([], |row| user_of(row))?
            .collect()
        })
        .await
}

/// A password change: the new hash, the next `password_version`, and the
/// revocation, in one savepoint.
pub(crate) async fn set_password_hash(
    store: &SqliteStore,
    user_id: &str,
    hash: &str,
    revoke: RevokeScope<'_>,
    now: OffsetDateTime,
    reason: &str,
) -> StoreResult<()> {
    let (user_id, hash) = (user_id.to_owned(), hash.to_owned());
    let (scope, reason) = (Revoke::from(revoke), reason.to_owned());
    store
        .write(move |conn| {
            conn.prepare_cached(
                "UPDATE users SET password_hash = ?1, password_version = password_version + 1 \
                 WHERE id = ?2",
            )?
            .execute(params![hash, user_id])?;
            revoke_in(conn, &scope, ms(now), &reason)?;
            Ok(())
        })
        .await
}

pub(crate) async fn rehash_password(
    store: &SqliteStore,
    user_id: &str,
    version: u64,
    hash: &str,
) -> StoreResult<bool> {
    let (user_id, hash) = (user_id.to_owned(), hash.to_owned());
    store
        .write(move |conn| {
            Ok(conn
                .prepare_cached(
                    "UPDATE users SET password_hash = ?1 WHERE id = ?2 AND password_version = ?3",
                )?
                .execute(params![hash, user_id, i64_param(version)?])?
                > 0)
        })
        .await
}

/// Disabling revokes every session of the user in the same savepoint.
pub(crate) async fn set_disabled(
    store: &SqliteStore,
    user_id: &str,
    disabled_at: Option<OffsetDateTime>,
) -> StoreResult<bool> {
    let user_id = user_id.to_owned();
    store
        .write(move |conn| {
            let found = conn
                .prepare_cached("UPDATE users SET disabled_at = ?1 WHERE id = ?2")?
                .execute(params![opt_ms(disabled_at), user_id])?
                > 0;
            if let Some(now) = disabled_at {
                delete_mfa_logins_of(conn, &user_id)?;
                let scope = Revoke::User {
                    user_id,
                    except: None,
                };
                revoke_in(conn, &scope, ms(now), "user_disabled")?;
            }
            Ok(found)
        })
        .await
}
