//! Account recovery: users' email addresses (columns of `users`), and the
//! tokens mailed to them (reset, address check), each used or superseded at most once.

use latchkey_core::mail::{EmailRecord, MailTokenRecord, OutboxMail, TokenPurpose};
use latchkey_core::store::{MailLimit, RevokeScope, StoreResult, UserRecord};
use latchkey_core::UserId;
use latchkey_store_sql::{mail_token_cols, mail_token_of, ms, opt_ms, user_cols, user_of};
use sqlx::{PgConnection, Row};
use time::OffsetDateTime;

use crate::mail::insert_mail;
use crate::row::i64_param;
use crate::sessions::revoke_in;
use crate::{revocations, PostgresStore};

pub(crate) async fn user_by_verified_email(
    store: &PostgresStore,
    email_key: &str,
) -> StoreResult<Option<UserRecord>> {
    const SELECT: &str = concat!(
        "SELECT ",
        user_cols!(),
        " FROM users u WHERE u.email_key = $1 AND u.email_verified_at IS NOT NULL"
    );
    store.one(SELECT, email_key, user_of).await
}

/// Spends every live token of a user (or of one purpose).
async fn spend_tokens(
    tx: &mut PgConnection,
    user_id: &str,
    purpose: Option<&str>,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE mail_tokens SET spent_at = $1 \
         WHERE user_id = $2 AND spent_at IS NULL AND ($3::TEXT IS NULL OR purpose = $3)",
    )
    .bind(now)
    .bind(user_id)
    .bind(purpose)
    .execute(tx)
    .await?;
    Ok(())
}

pub(crate) async fn set_email(
    store: &PostgresStore,
    user_id: &UserId,
    e: &EmailRecord,
    now: OffsetDateTime,
) -> StoreResult<()> {
    store
        .bounded(async {
            let mut tx = store.pool.begin().await?;
            sqlx::query(
                "UPDATE users SET email = $2, email_key = $3, email_verified_at = $4 WHERE id = $1",
            )
            .bind(user_id.as_str())
            .bind(&e.email)
            .bind(&e.email_key)
            .bind(opt_ms(e.verified_at))
            .execute(&mut *tx)
            .await?;
            spend_tokens(&mut tx, user_id.as_str(), None, ms(now)).await?;
            tx.commit().await
        })
        .await
}

pub(crate) async fn issue_token(
    store: &PostgresStore,
    t: &MailTokenRecord,
    mail: &OutboxMail,
    limit: MailLimit,
) -> StoreResult<bool> {
    let version = i64_param(t.password_version)?;
    store
        .bounded(async {
            let mut tx = store.pool.begin().await?;
            // The user's row serialises the count and the insert across
            // nodes (NO KEY: sessions referencing the user are not held up).
            sqlx::query("SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE")
                .bind(t.user_id.as_str())
                .execute(&mut *tx)
                .await?;
            let purpose = t.purpose.as_str();
            let recent: i64 = sqlx::query(
                "SELECT COUNT(*) FROM mail_tokens \
                 WHERE user_id = $1 AND purpose = $2 AND created_at > $3",
            )
            .bind(t.user_id.as_str())
            .bind(purpose)
            .bind(ms(limit.since))
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
            if recent >= i64::from(limit.max) {
                return Ok(false);
            }
            spend_tokens(&mut tx, t.user_id.as_str(), Some(purpose), ms(t.created_at)).await?;
            sqlx::query(concat!(
                "INSERT INTO mail_tokens (",
                mail_token_cols!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            ))
            .bind(&t.hash)
            .bind(t.user_id.as_str())
            .bind(purpose)
            .bind(&t.email)
            .bind(version)
            .bind(ms(t.created_at))
            .bind(ms(t.expires_at))
            .bind(opt_ms(t.spent_at))
            .execute(&mut *tx)
            .await?;
            insert_mail(&mut tx, mail).await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
}

pub(crate) async fn token(
    store: &PostgresStore,
    hash: &[u8],
) -> StoreResult<Option<MailTokenRecord>> {
    store
        .bounded(async {
            let row = sqlx::query(concat!(
                "SELECT ",
                mail_token_cols!(),
                " FROM mail_tokens WHERE hash = $1"
            ))
            .bind(hash)
            .fetch_optional(&store.pool)
            .await?;
            row.as_ref().map(mail_token_of).transpose()
        })
        .await
}

/// Spends a live token of `purpose` (and, when given, of that user);
/// answers its user and the address it was mailed to.
async fn spend_live(
    tx: &mut PgConnection,
    hash: &[u8],
    purpose: TokenPurpose,
    user_id: Option<&str>,
    now: i64,
) -> Result<Option<(String, String)>, sqlx::Error> {
    let row = sqlx::query(
        "UPDATE mail_tokens t SET spent_at = $1 FROM users u \
         WHERE t.hash = $2 AND t.purpose = $3 AND t.spent_at IS NULL AND t.expires_at > $1 \
           AND ($4::TEXT IS NULL OR t.user_id = $4) \
           AND u.id = t.user_id AND u.password_version = t.password_version \
         RETURNING t.user_id, t.email",
    )
    .bind(now)
    .bind(hash)
    .bind(purpose.as_str())
    .bind(user_id)
    .fetch_optional(tx)
    .await?;
    row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
}

pub(crate) async fn reset_password(
    store: &PostgresStore,
    hash: &[u8],
    password_hash: &str,
    now: OffsetDateTime,
) -> StoreResult<Option<UserId>> {
    store
        .bounded(async {
            let now = ms(now);
            let mut tx = store.pool.begin().await?;
            // The feed writers' lock first, as every revoking transaction takes it.
            revocations::lock(&mut tx).await?;
            let Some((user_id, _)) =
                spend_live(&mut tx, hash, TokenPurpose::PasswordReset, None, now).await?
            else {
                return Ok(None);
            };
            let user_id = UserId::from(user_id);
            // The password change's own path: a new version (which kills
            // every other reset token) and every session revoked.
            sqlx::query(
                "UPDATE users SET password_hash = $1, password_version = password_version + 1 \
                 WHERE id = $2",
            )
            .bind(password_hash)
            .bind(user_id.as_str())
            .execute(&mut *tx)
            .await?;
            let scope = RevokeScope::User {
                user_id: &user_id,
                except: None,
            };
            revoke_in(&mut tx, scope, now, "password_reset").await?;
            tx.commit().await?;
            Ok(Some(user_id))
        })
        .await
}

pub(crate) async fn verify_email(
    store: &PostgresStore,
    hash: &[u8],
    user_id: &UserId,
    now: OffsetDateTime,
) -> StoreResult<bool> {
    store
        .bounded(async {
            let now = ms(now);
            let mut tx = store.pool.begin().await?;
            let Some((_, email)) = spend_live(
                &mut tx,
                hash,
                TokenPurpose::VerifyEmail,
                Some(user_id.as_str()),
                now,
            )
            .await?
            else {
                return Ok(false);
            };
            // A unique violation (another's verified address) rolls all
            // back: the token stays live.
            let marked = sqlx::query(
                "UPDATE users SET email_verified_at = COALESCE(email_verified_at, $1) \
                 WHERE id = $2 AND email = $3",
            )
            .bind(now)
            .bind(user_id.as_str())
            .bind(&email)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            Ok(marked > 0)
        })
        .await
}
