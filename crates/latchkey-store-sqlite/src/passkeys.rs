//! Passkeys: users' WebAuthn credentials, the compare-and-swap of their
//! signature counter, and the challenges of ceremonies under way.

use latchkey_core::store::{ChallengePurpose, PasskeyRecord, StoreResult, WebauthnChallengeRecord};
use latchkey_core::{PasskeyId, UserId};
use latchkey_store_sql::{
    ms, opt_ms, passkey_cols, passkey_of, webauthn_challenge_cols, webauthn_challenge_of,
};
use rusqlite::{params, OptionalExtension};
use time::OffsetDateTime;

use crate::SqliteStore;

pub(crate) async fn insert(store: &SqliteStore, passkey: &PasskeyRecord) -> StoreResult<()> {
    let p = passkey.clone();
    store
        .write(move |conn| {
            conn.prepare_cached(concat!(
                "INSERT INTO passkeys (",
                passkey_cols!(),
                ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
            ))?
            .execute(params![
                p.id.as_str(),
                p.user_id.as_str(),
                p.name,
                p.credential_id,
                p.credential,
                p.sign_count,
                ms(p.created_at),
                opt_ms(p.last_used_at)
            ])?;
            Ok(())
        })
        .await
}

pub(crate) async fn of_user(
    store: &SqliteStore,
    user_id: &UserId,
) -> StoreResult<Vec<PasskeyRecord>> {
    let user_id = user_id.as_str().to_owned();
    store
        .read(move |conn| {
            conn.prepare_cached(concat!(
                "SELECT ",
                passkey_cols!(),
                " FROM passkeys WHERE user_id = ?1 ORDER BY created_at, id"
            ))?
            .query_map([user_id], |row| passkey_of(row))?
            .collect()
        })
        .await
}

pub(crate) async fn by_credential_id(
    store: &SqliteStore,
    credential_id: &str,
) -> StoreResult<Option<PasskeyRecord>> {
    const SELECT: &str = concat!(
        "SELECT ",
        passkey_cols!(),
        " FROM passkeys WHERE credential_id = ?1"
    );
    store
        .one(SELECT, credential_id, |row| passkey_of(row))
        .await
}

pub(crate) async fn delete(
    store: &SqliteStore,
    user_id: &UserId,
    id: &PasskeyId,
) -> StoreResult<bool> {
    let (user_id, id) = (user_id.as_str().to_owned(), id.as_str().to_owned());
    store
        .write(move |conn| {
            let deleted = conn
                .prepare_cached("DELETE FROM passkeys WHERE id = ?1 AND user_id = ?2")?
                .execute(params![id, user_id])?;
            Ok(deleted > 0)
        })
        .await
}

pub(crate) async fn record_use(
    store: &SqliteStore,
    id: &PasskeyId,
    sign_count: u32,
    credential: &str,
    now: OffsetDateTime,
) -> StoreResult<bool> {
    let (id, credential) = (id.as_str().to_owned(), credential.to_owned());
    store
        .write(move |conn| {
            let updated = conn
                .prepare_cached(
                    "UPDATE passkeys SET sign_count = ?2, credential = ?3, last_used_at = ?4 \
                     WHERE id = ?1 AND (sign_count < ?2 OR (sign_count = 0 AND ?2 = 0))",
                )?
                .execute(params![id, sign_count, credential, ms(now)])?;
            Ok(updated > 0)
        })
        .await
}

pub(crate) async fn insert_challenge(
    store: &SqliteStore,
    challenge: &WebauthnChallengeRecord,
) -> StoreResult<()> {
    let c = challenge.clone();
    store
        .write(move |conn| {
            conn.prepare_cached(concat!(
                "INSERT INTO webauthn_challenges (",
                webauthn_challenge_cols!(),
                ") VALUES (?1, ?2, ?3, ?4, ?5)"
            ))?
            .execute(params![
                c.id,
                c.purpose.as_str(),
                c.state,
                ms(c.created_at),
                ms(c.expires_at)
            ])?;
            Ok(())
        })
        .await
}

pub(crate) async fn take_challenge(
    store: &SqliteStore,
    id: &str,
    purpose: ChallengePurpose,
    now: OffsetDateTime,
) -> StoreResult<Option<WebauthnChallengeRecord>> {
    let id = id.to_owned();
    store
        .write(move |conn| {
            conn.prepare_cached(concat!(
                "DELETE FROM webauthn_challenges \
                 WHERE id = ?1 AND purpose = ?2 AND expires_at > ?3 RETURNING ",
                webauthn_challenge_cols!()
            ))?
            .query_row(params![id, purpose.as_str(), ms(now)], |row| {
                webauthn_challenge_of(row)
            })
            .optional()
        })
        .await
}

/// A prune batch: expired challenges, along the index on their expiry.
pub(crate) const PRUNE_CHALLENGES: &str =
    "DELETE FROM webauthn_challenges WHERE id IN (SELECT id FROM webauthn_challenges \
     WHERE expires_at <= ?1 ORDER BY expires_at LIMIT ?2)";
