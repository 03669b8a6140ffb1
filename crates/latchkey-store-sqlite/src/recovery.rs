//! Account recovery: users' email addresses (columns of `users`), and the
//! tokens mailed to them (reset, address check), each used or superseded at most once.

use latchkey_core::mail::{EmailRecord, MailTokenRecord, OutboxMail, TokenPurpose};
use latchkey_core::store::{MailLimit, StoreResult, UserRecord};
use latchkey_core::UserId;
use latchkey_store_sql::{mail_token_cols, mail_token_of, ms, opt_ms, user_cols, user_of};
use rusqlite::{params, OptionalExtension};
use time::OffsetDateTime;

use crate::mail::insert_mail;
use crate::row::i64_param;
use crate::sessions::{revoke_in, Revoke};
use crate::SqliteStore;

pub(crate) async fn user_by_verified_email(
    store: &SqliteStore,
    email_key: &str,
) -> StoreResult<Option<UserRecord>> {
    const SELECT: &str = concat!(
        "SELECT ",
        user_cols!(),
        " FROM users u WHERE u.email_key = ?1 AND u.email_verified_at IS NOT NULL"
    );
    store.one(SELECT, email_key, |row| user_of(row)).await
}

/// Spends every live token of a user (or of one purpose).
const SPEND_TOKENS: &str = "UPDATE mail_tokens SET spent_at = ?1 \
     WHERE user_id = ?2 AND spent_at IS NULL AND (?3 IS NULL OR purpose = ?3)";

pub(crate) async fn set_email(
    store: &SqliteStore,
    user_id: &UserId,
    email: &EmailRecord,
    now: OffsetDateTime,
) -> StoreResult<()> {
    let (user_id, e) = (user_id.as_str().to_owned(), email.clone());
    store
        .write(move |conn| {
            conn.prepare_cached(
                "UPDATE users SET email = ?2, email_key = ?3, email_verified_at = ?4 WHERE id = ?1",
            )?
            .execute(params![
                user_id,
                e.email,
                e.email_key,
                opt_ms(e.verified_at)
            ])?;
            conn.prepare_cached(SPEND_TOKENS)?.execute(params![
                ms(now),
                user_id,
                None::<String>
            ])?;
            Ok(())
        })
        .await
}

pub(crate) async fn issue_token(
    store: &SqliteStore,
    token: &MailTokenRecord,
    mail: &OutboxMail,
    limit: MailLimit,
) -> StoreResult<bool> {
    let (t, mail) = (token.clone(), mail.clone());
    store
        .write(move |conn| {
            let purpose = t.purpose.as_str();
            // The one writer makes the count and the insert one step.
            let recent: i64 = conn
                .prepare_cached(
                    "SELECT COUNT(*) FROM mail_tokens \
                     WHERE user_id = ?1 AND purpose = ?2 AND created_at > ?3",
                )?
                .query_row(
                    params![t.user_id.as_str(), purpose, ms(limit.since)],
                    |row| row.get(0),
                )?;
            if recent >= i64::from(limit.max) {
                return Ok(false);
            }
            conn.prepare_cached(SPEND_TOKENS)?.execute(params![
                ms(t.created_at),
                t.user_id.as_str(),
                purpose
            ])?;
            conn.prepare_cached(concat!(
                "INSERT INTO mail_tokens (",
                mail_token_cols!(),
                ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
            ))?
            .execute(params![
                t.hash,
                t.user_id.as_str(),
                purpose,
                t.email,
                i64_param(t.password_version)?,
                ms(t.created_at),
                ms(t.expires_at),
                opt_ms(t.spent_at)
            ])?;
            insert_mail(conn, &mail)?;
            Ok(true)
        })
        .await
}

pub(crate) async fn token(
    store: &SqliteStore,
    hash: &[u8],
) -> StoreResult<Option<MailTokenRecord>> {
    let hash = hash.to_vec();
    store
        .read(move |conn| {
            conn.prepare_cached(concat!(
                "SELECT ",
                mail_token_cols!(),
                " FROM mail_tokens WHERE hash = ?1"
            ))?
            .query_row([hash], |row| mail_token_of(row))
            .optional()
        })
        .await
}

/// Spends a live token of `purpose` (and, when given, of that user);
/// answers its user and the address it was mailed to.
fn spend_live(
    conn: &rusqlite::Connection,
    hash: &[u8],
    purpose: TokenPurpose,
    user_id: Option<&str>,
    now: i64,
) -> rusqlite::Result<Option<(String, String)>> {
    conn.prepare_cached(
        "UPDATE mail_tokens SET spent_at = ?1 \
         WHERE hash = ?2 AND purpose = ?3 AND spent_at IS NULL AND expires_at > ?1 \
           AND (?4 IS NULL OR user_id = ?4) \
           AND password_version = \
               (SELECT u.password_version FROM users u WHERE u.id = mail_tokens.user_id) \
         RETURNING user_id, email",
    )?
    .query_row(params![now, hash, purpose.as_str(), user_id], |row| {
        Ok((row.get(0)?, row.get(1)?))
    })
    .optional()
}

pub(crate) async fn reset_password(
    store: &SqliteStore,
    hash: &[u8],
    password_hash: &str,
    now: OffsetDateTime,
) -> StoreResult<Option<UserId>> {
    let (hash, password_hash) = (hash.to_vec(), password_hash.to_owned());
    store
        .write(move |conn| {
            let now = ms(now);
            let Some((user_id, _)) =
                spend_live(conn, &hash, TokenPurpose::PasswordReset, None, now)?
            else {
                return Ok(None);
            };
            // The password change's own path: a new version (which kills
            // every other reset token) and every session revoked.
            conn.prepare_cached(
                "UPDATE users SET password_hash = ?1, password_version = password_version + 1 \
                 WHERE id = ?2",
            )?
            .execute(params![password_hash, user_id])?;
            let scope = Revoke::User {
                user_id: user_id.clone(),
                except: None,
            };
            revoke_in(conn, &scope, now, "password_reset")?;
            Ok(Some(UserId::from(user_id)))
        })
        .await
}

pub(crate) async fn verify_email(
    store: &SqliteStore,
    hash: &[u8],
    user_id: &UserId,
    now: OffsetDateTime,
) -> StoreResult<bool> {
    let (hash, user_id) = (hash.to_vec(), user_id.as_str().to_owned());
    store
        .write(move |conn| {
            let now = ms(now);
            let Some((_, email)) =
                spend_live(conn, &hash, TokenPurpose::VerifyEmail, Some(&user_id), now)?
            else {
                return Ok(false);
            };
            // A unique violation (another's verified address) undoes the
            // savepoint: the token stays live.
            let marked = conn
                .prepare_cached(
                    "UPDATE users SET email_verified_at = COALESCE(email_verified_at, ?1) \
                     WHERE id = ?2 AND email = ?3",
                )?
                .execute(params![now, user_id, email])?;
            Ok(marked > 0)
        })
        .await
}
