//! Users: accounts, their password hashes and whether they are disabled.

use latchkey_core::store::{RevokeScope, StoreResult, UserRecord};
use latchkey_core::UserId;
use latchkey_store_sql::{ms, opt_ms, user_cols, user_of};
use time::OffsetDateTime;

use crate::mfa::delete_mfa_logins_of;
use crate::row::i64_param;
use crate::sessions::revoke_in;
use crate::PostgresStore;

pub(crate) async fn create(store: &PostgresStore, u: &UserRecord) -> StoreResult<()> {
    let version = i64_param(u.password_version)?;
    store
        .bounded(async {
            sqlx::query(
                "INSERT INTO users (id, username, username_key, password_hash, \
                 password_version, created_at, disabled_at, email, email_key, email_verified_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(u.id.as_str())
            .bind(&u.username)
            .bind(&u.username_key)
            .bind(&u.password_hash)
            .bind(version)
            .bind(ms(u.created_at))
            .bind(opt_ms(u.disabled_at))
            .bind(u.email.as_ref().map(|e| &e.email))
            .bind(u.email.as_ref().map(|e| &e.email_key))
            .bind(opt_ms(u.email.as_ref().and_then(|e| e.verified_at)))
            .execute(&store.pool)
            .await?;
            Ok(())
        })
        .await
}

pub(crate) async fn by_key(
    store: &PostgresStore,
    username_key: &str,
) -> StoreResult<Option<UserRecord>> {
    const SELECT: &str = concat!(
        "SELECT ",
        user_cols!(),
        " FROM users u WHERE u.username_key = $1"
    );
    store.one(SELECT, username_key, user_of).await
}

pub(crate) async fn by_id(store: &PostgresStore, id: &str) -> StoreResult<Option<UserRecord>> {
    const SELECT: &str = concat!("SELECT ", user_cols!(), " FROM users u WHERE u.id = $1");
    store.one(SELECT, id, user_of).await
}

pub(crate) async fn list(store: &PostgresStore) -> StoreResult<Vec<UserRecord>> {
    store
        .bounded(async {
            sqlx::query(concat!(
                "SELECT ",
                user_cols!(),
                " FROM users u ORDER BY u.created_at, u.id COLLATE \"C\""
            ))
            .fetch_all(&store.pool)
            .await?
            .iter()
            .map(user_of)
            .collect()
        })
        .await
}

/// A password change: the new hash, the next `password_version`, and the
/// revocation, in one transaction.
pub(crate) async fn set_password_hash(
    store: &PostgresStore,
    user_id: &str,
    hash: &str,
    revoke: RevokeScope<'_>,
    now: OffsetDateTime,
    reason: &str,
) -> StoreResult<()> {
    store
        .bounded(async {
            let mut tx = store.pool.begin().await?;
            revoke_in(&mut tx, revoke, ms(now), reason).await?;
            sqlx::query(
                "UPDATE users SET password_hash = $1, password_version = password_version + 1 \
                 WHERE id = $2",
            )
            .bind(hash)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await
        })
        .await
}

pub(crate) async fn rehash_password(
    store: &PostgresStore,
    user_id: &str,
    version: u64,
    hash: &str,
) -> StoreResult<bool> {
    let version = i64_param(version)?;
    store
        .bounded(async {
            let done = sqlx::query(
                "UPDATE users SET password_hash = $1 WHERE id = $2 AND password_version = $3",
            )
            .bind(hash)
            .bind(user_id)
            .bind(version)
            .execute(&store.pool)
            .await?;
            Ok(done.rows_affected() > 0)
        })
        .await
}

/// Disabling revokes every session of the user in the same transaction.
pub(crate) async fn set_disabled(
    store: &PostgresStore,
    user_id: &UserId,
    disabled_at: Option<OffsetDateTime>,
) -> StoreResult<bool> {
    store
        .bounded(async {
            let mut tx = store.pool.begin().await?;
            if let Some(now) = disabled_at {
                let scope = RevokeScope::User {
                    user_id,
                    except: None,
                };
                revoke_in(&mut tx, scope, ms(now), "user_disabled").await?;
                delete_mfa_logins_of(&mut tx, user_id.as_str()).await?;
            }
            let found = sqlx::query("UPDATE users SET disabled_at = $1 WHERE id = $2")
                .bind(opt_ms(disabled_at))
                .bind(user_id.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected()
                > 0;
            tx.commit().await?;
            Ok(found)
        })
        .await
}
