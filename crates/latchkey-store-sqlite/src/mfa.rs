//! Second factors: TOTP (with its replay guard), recovery codes, passkeys
//! as far as counting and removing them, and logins waiting for a second
//! factor.

use latchkey_core::mfa::{MfaLoginRecord, TotpRecord};
use latchkey_core::store::StoreResult;
use latchkey_core::UserId;
use latchkey_store_sql::{mfa_login_cols, mfa_login_of, ms, totp_cols, totp_of};
use rusqlite::{params, OptionalExtension};
use time::OffsetDateTime;

use crate::row::i64_param;
use crate::SqliteStore;

pub(crate) async fn totp(store: &SqliteStore, user_id: &UserId) -> StoreResult<Option<TotpRecord>> {
    const SELECT: &str = concat!("SELECT ", totp_cols!(), " FROM totp WHERE user_id = ?1");
    store
        .one(SELECT, user_id.as_str(), |row| totp_of(row))
        .await
}

pub(crate) async fn begin_totp(store: &SqliteStore, t: &TotpRecord) -> StoreResult<bool> {
    let t = t.clone();
    store
        .write(move |conn| {
            // The upsert's WHERE leaves a confirmed TOTP alone.
            let changed = conn
                .prepare_cached(concat!(
                    "INSERT INTO totp (",
                    totp_cols!(),
                    ") VALUES (?1, ?2, ?3, ?4, NULL, NULL) \
                     ON CONFLICT (user_id) DO UPDATE SET secret = excluded.secret, \
                     encrypted = excluded.encrypted, created_at = excluded.created_at, \
                     last_step = NULL WHERE totp.confirmed_at IS NULL"
                ))?
                .execute(params![
                    t.user_id.as_str(),
                    t.secret,
                    t.encrypted,
                    ms(t.created_at)
                ])?;
            Ok(changed > 0)
        })
        .await
}

pub(crate) async fn confirm_totp(
    store: &SqliteStore,
    user_id: &UserId,
    secret: &[u8],
    step: u64,
    codes: &[Vec<u8>],
    now: OffsetDateTime,
) -> StoreResult<bool> {
    let (user_id, secret, codes) = (user_id.as_str().to_owned(), secret.to_vec(), codes.to_vec());
    store
        .write(move |conn| {
            let confirmed = conn
                .prepare_cached(
                    "UPDATE totp SET confirmed_at = ?1, last_step = ?2 \
                     WHERE user_id = ?3 AND confirmed_at IS NULL AND secret = ?4",
                )?
                .execute(params![ms(now), i64_param(step)?, user_id, secret])?;
            if confirmed == 0 {
                return Ok(false);
            }
            conn.prepare_cached("DELETE FROM recovery_codes WHERE user_id = ?1")?
                .execute([&user_id])?;
            let mut insert = conn.prepare_cached(
                "INSERT INTO recovery_codes (hash, user_id, created_at) VALUES (?1, ?2, ?3)",
            )?;
            for hash in &codes {
                insert.execute(params![hash, user_id, ms(now)])?;
            }
            Ok(true)
        })
        .await
}

pub(crate) async fn use_totp_step(
    store: &SqliteStore,
    user_id: &UserId,
    step: u64,
) -> StoreResult<bool> {
    let user_id = user_id.as_str().to_owned();
    store
        .write(move |conn| {
            let step = i64_param(step)?;
            let moved = conn
                .prepare_cached(
                    "UPDATE totp SET last_step = ?1 WHERE user_id = ?2 \
                     AND confirmed_at IS NOT NULL AND (last_step IS NULL OR last_step < ?1)",
                )?
                .execute(params![step, user_id])?;
            Ok(moved > 0)
        })
        .await
}

pub(crate) async fn remove_totp(store: &SqliteStore, user_id: &UserId) -> StoreResult<bool> {
    let user_id = user_id.as_str().to_owned();
    store
        .write(move |conn| {
            let removed = conn
                .prepare_cached("DELETE FROM totp WHERE user_id = ?1")?
                .execute([&user_id])?;
            conn.prepare_cached("DELETE FROM recovery_codes WHERE user_id = ?1")?
                .execute([&user_id])?;
            delete_mfa_logins_of(conn, &user_id)?;
            Ok(removed > 0)
        })
        .await
}

/// Deletes the user's logins waiting for a second factor.
pub(crate) fn delete_mfa_logins_of(
    conn: &rusqlite::Connection,
    user_id: &str,
) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM mfa_logins WHERE user_id = ?1")?
        .execute([user_id])?;
    Ok(())
}

pub(crate) async fn recovery_codes(
    store: &SqliteStore,
    user_id: &UserId,
) -> StoreResult<Vec<Vec<u8>>> {
    let user_id = user_id.as_str().to_owned();
    store
        .read(move |conn| {
            conn.prepare_cached("SELECT hash FROM recovery_codes WHERE user_id = ?1")?
                .query_map([user_id], |row| row.get(0))?
                .collect()
        })
        .await
}

pub(crate) async fn spend_recovery_code(
    store: &SqliteStore,
    user_id: &UserId,
    hash: &[u8],
) -> StoreResult<bool> {
    let (user_id, hash) = (user_id.as_str().to_owned(), hash.to_vec());
    store
        .write(move |conn| {
            let spent = conn
                .prepare_cached("DELETE FROM recovery_codes WHERE user_id = ?1 AND hash = ?2")?
                .execute(params![user_id, hash])?;
            Ok(spent > 0)
        })
        .await
}

pub(crate) async fn remove_passkeys(store: &SqliteStore, user_id: &UserId) -> StoreResult<u64> {
    let user_id = user_id.as_str().to_owned();
    store
        .write(move |conn| {
            let removed = conn
                .prepare_cached("DELETE FROM passkeys WHERE user_id = ?1")?
                .execute([user_id])?;
            Ok(removed as u64)
        })
        .await
}

pub(crate) async fn insert_mfa_login(store: &SqliteStore, l: &MfaLoginRecord) -> StoreResult<()> {
    let l = l.clone();
    store
        .write(move |conn| {
            conn.prepare_cached(concat!(
                "INSERT INTO mfa_logins (",
                mfa_login_cols!(),
                ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
            ))?
            .execute(params![
                l.hash,
                l.user_id.as_str(),
                l.client_id,
                l.scope,
                i64_param(l.password_version)?,
                ms(l.created_at),
                ms(l.expires_at),
                l.failures
            ])?;
            Ok(())
        })
        .await
}

pub(crate) async fn reserve_mfa_attempt(
    store: &SqliteStore,
    hash: &[u8],
    now: OffsetDateTime,
    max_codes: u32,
) -> StoreResult<Option<MfaLoginRecord>> {
    let hash = hash.to_vec();
    store
        .write(move |conn| {
            conn.prepare_cached(concat!(
                "UPDATE mfa_logins SET failures = failures + 1 \
                 WHERE hash = ?1 AND expires_at > ?2 AND failures < ?3 RETURNING ",
                mfa_login_cols!()
            ))?
            .query_row(params![hash, ms(now), max_codes], |row| mfa_login_of(row))
            .optional()
        })
        .await
}

pub(crate) async fn spend_mfa_login(store: &SqliteStore, hash: &[u8]) -> StoreResult<bool> {
    let hash = hash.to_vec();
    store
        .write(move |conn| {
            let spent = conn
                .prepare_cached("DELETE FROM mfa_logins WHERE hash = ?1")?
                .execute([hash])?;
            Ok(spent > 0)
        })
        .await
}

pub(crate) const PRUNE_LOGINS: &str =
    "DELETE FROM mfa_logins WHERE hash IN (SELECT hash FROM mfa_logins \
                     WHERE expires_at <= ?1 ORDER BY expires_at LIMIT ?2)";
