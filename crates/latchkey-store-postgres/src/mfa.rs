//! Second factors: TOTP (with its replay guard), recovery codes, passkeys
//! as far as removing them, and logins waiting for a second factor.

use latchkey_core::mfa::{MfaLoginRecord, TotpRecord};
use latchkey_core::store::StoreResult;
use latchkey_core::UserId;
use latchkey_store_sql::{mfa_login_cols, mfa_login_of, ms, totp_cols, totp_of};
use sqlx::{PgConnection, Row};
use time::OffsetDateTime;

use crate::row::i64_param;
use crate::PostgresStore;

pub(crate) async fn totp(
    store: &PostgresStore,
    user_id: &UserId,
) -> StoreResult<Option<TotpRecord>> {
    const SELECT: &str = concat!("SELECT ", totp_cols!(), " FROM totp WHERE user_id = $1");
    store.one(SELECT, user_id.as_str(), totp_of).await
}

pub(crate) async fn begin_totp(store: &PostgresStore, t: &TotpRecord) -> StoreResult<bool> {
    store
        .bounded(async {
            // The upsert's WHERE leaves a confirmed TOTP alone.
            let done = sqlx::query(concat!(
                "INSERT INTO totp (",
                totp_cols!(),
                ") VALUES ($1, $2, $3, $4, NULL, NULL) \
                 ON CONFLICT (user_id) DO UPDATE SET secret = excluded.secret, \
                 encrypted = excluded.encrypted, created_at = excluded.created_at, \
                 last_step = NULL WHERE totp.confirmed_at IS NULL"
            ))
            .bind(t.user_id.as_str())
            .bind(&t.secret)
            .bind(t.encrypted)
            .bind(ms(t.created_at))
            .execute(&store.pool)
            .await?;
            Ok(done.rows_affected() > 0)
        })
        .await
}

pub(crate) async fn confirm_totp(
    store: &PostgresStore,
    user_id: &UserId,
    secret: &[u8],
    step: u64,
    codes: &[Vec<u8>],
    now: OffsetDateTime,
) -> StoreResult<bool> {
    let step = i64_param(step)?;
    store
        .bounded(async {
            let mut tx = store.pool.begin().await?;
            let confirmed = sqlx::query(
                "UPDATE totp SET confirmed_at = $1, last_step = $2 \
                 WHERE user_id = $3 AND confirmed_at IS NULL AND secret = $4",
            )
            .bind(ms(now))
            .bind(step)
            .bind(user_id.as_str())
            .bind(secret)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if confirmed == 0 {
                return Ok(false);
            }
            sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
                .bind(user_id.as_str())
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO recovery_codes (hash, user_id, created_at) \
                 SELECT hash, $2, $3 FROM UNNEST($1::BYTEA[]) AS codes (hash)",
            )
            .bind(codes)
            .bind(user_id.as_str())
            .bind(ms(now))
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
}

pub(crate) async fn use_totp_step(
    store: &PostgresStore,
    user_id: &UserId,
    step: u64,
) -> StoreResult<bool> {
    let step = i64_param(step)?;
    store
        .bounded(async {
            // One statement: the row lock orders two nodes, and the second
            // sees the step the first wrote.
            let done = sqlx::query(
                "UPDATE totp SET last_step = $1 WHERE user_id = $2 \
                 AND confirmed_at IS NOT NULL AND (last_step IS NULL OR last_step < $1)",
            )
            .bind(step)
            .bind(user_id.as_str())
            .execute(&store.pool)
            .await?;
            Ok(done.rows_affected() > 0)
        })
        .await
}

pub(crate) async fn remove_totp(store: &PostgresStore, user_id: &UserId) -> StoreResult<bool> {
    store
        .bounded(async {
            let mut tx = store.pool.begin().await?;
            let removed = sqlx::query("DELETE FROM totp WHERE user_id = $1")
                .bind(user_id.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
                .bind(user_id.as_str())
                .execute(&mut *tx)
                .await?;
            delete_mfa_logins_of(&mut tx, user_id.as_str()).await?;
            tx.commit().await?;
            Ok(removed > 0)
        })
        .await
}

/// Deletes the user's logins waiting for a second factor, in the caller's
/// transaction.
pub(crate) async fn delete_mfa_logins_of(
    tx: &mut PgConnection,
    user_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM mfa_logins WHERE user_id = $1")
        .bind(user_id)
        .execute(tx)
        .await?;
    Ok(())
}

pub(crate) async fn recovery_codes(
    store: &PostgresStore,
    user_id: &UserId,
) -> StoreResult<Vec<Vec<u8>>> {
    store
        .bounded(async {
            let rows = sqlx::query("SELECT hash FROM recovery_codes WHERE user_id = $1")
                .bind(user_id.as_str())
                .fetch_all(&store.pool)
                .await?;
            rows.iter().map(|row| row.try_get(0)).collect()
        })
        .await
}

pub(crate) async fn spend_recovery_code(
    store: &PostgresStore,
    user_id: &UserId,
    hash: &[u8],
) -> StoreResult<bool> {
    store
        .bounded(async {
            let done = sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1 AND hash = $2")
                .bind(user_id.as_str())
                .bind(hash)
                .execute(&store.pool)
                .await?;
            Ok(done.rows_affected() > 0)
        })
        .await
}

pub(crate) async fn remove_passkeys(store: &PostgresStore, user_id: &UserId) -> StoreResult<u64> {
    store
        .bounded(async {
            let done = sqlx::query("DELETE FROM passkeys WHERE user_id = $1")
                .bind(user_id.as_str())
                .execute(&store.pool)
                .await?;
            Ok(done.rows_affected())
        })
        .await
}

pub(crate) async fn insert_mfa_login(store: &PostgresStore, l: &MfaLoginRecord) -> StoreResult<()> {
    let version = i64_param(l.password_version)?;
    store
        .bounded(async {
            sqlx::query(concat!(
                "INSERT INTO mfa_logins (",
                mfa_login_cols!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            ))
            .bind(&l.hash)
            .bind(l.user_id.as_str())
            .bind(&l.client_id)
            .bind(&l.scope)
            .bind(version)
            .bind(ms(l.created_at))
            .bind(ms(l.expires_at))
            .bind(i64::from(l.failures))
            .execute(&store.pool)
            .await?;
            Ok(())
        })
        .await
}

pub(crate) async fn reserve_mfa_attempt(
    store: &PostgresStore,
    hash: &[u8],
    now: OffsetDateTime,
    max_codes: u32,
) -> StoreResult<Option<MfaLoginRecord>> {
    store
        .bounded(async {
            let row = sqlx::query(concat!(
                "UPDATE mfa_logins SET failures = failures + 1 \
                 WHERE hash = $1 AND expires_at > $2 AND failures < $3 RETURNING ",
                mfa_login_cols!()
            ))
            .bind(hash)
            .bind(ms(now))
            .bind(i64::from(max_codes))
            .fetch_optional(&store.pool)
            .await?;
            row.as_ref().map(mfa_login_of).transpose()
        })
        .await
}

pub(crate) async fn spend_mfa_login(store: &PostgresStore, hash: &[u8]) -> StoreResult<bool> {
    store
        .bounded(async {
            let done = sqlx::query("DELETE FROM mfa_logins WHERE hash = $1")
                .bind(hash)
                .execute(&store.pool)
                .await?;
            Ok(done.rows_affected() > 0)
        })
        .await
}

pub(crate) const PRUNE_LOGINS: &str =
    "DELETE FROM mfa_logins WHERE hash IN (SELECT hash FROM mfa_logins \
                     WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2)";
