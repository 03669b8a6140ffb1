//! Passkeys: users' WebAuthn credentials, the compare-and-swap of their
//! signature counter, and the challenges of ceremonies under way.

use latchkey_core::store::{ChallengePurpose, PasskeyRecord, StoreResult, WebauthnChallengeRecord};
use latchkey_core::{PasskeyId, UserId};
use latchkey_store_sql::{
    ms, opt_ms, passkey_cols, passkey_of, webauthn_challenge_cols, webauthn_challenge_of,
};
use time::OffsetDateTime;

use crate::PostgresStore;

pub(crate) async fn insert(store: &PostgresStore, p: &PasskeyRecord) -> StoreResult<()> {
    store
        .bounded(async {
            sqlx::query(concat!(
                "INSERT INTO passkeys (",
                passkey_cols!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            ))
            .bind(p.id.as_str())
            .bind(p.user_id.as_str())
            .bind(&p.name)
            .bind(&p.credential_id)
            .bind(&p.credential)
            .bind(i64::from(p.sign_count))
            .bind(ms(p.created_at))
            .bind(opt_ms(p.last_used_at))
            .execute(&store.pool)
            .await?;
            Ok(())
        })
        .await
}

pub(crate) async fn of_user(
    store: &PostgresStore,
    user_id: &UserId,
) -> StoreResult<Vec<PasskeyRecord>> {
    store
        .bounded(async {
            sqlx::query(concat!(
                "SELECT ",
                passkey_cols!(),
                " FROM passkeys WHERE user_id = $1 ORDER BY created_at, id COLLATE \"C\""
            ))
            .bind(user_id.as_str())
            .fetch_all(&store.pool)
            .await?
            .iter()
            .map(passkey_of)
            .collect()
        })
        .await
}

pub(crate) async fn by_credential_id(
    store: &PostgresStore,
    credential_id: &str,
) -> StoreResult<Option<PasskeyRecord>> {
    const SELECT: &str = concat!(
        "SELECT ",
        passkey_cols!(),
        " FROM passkeys WHERE credential_id = $1"
    );
    store.one(SELECT, credential_id, passkey_of).await
}

pub(crate) async fn delete(
    store: &PostgresStore,
    user_id: &UserId,
    id: &PasskeyId,
) -> StoreResult<bool> {
    store
        .bounded(async {
            let done = sqlx::query("DELETE FROM passkeys WHERE id = $1 AND user_id = $2")
                .bind(id.as_str())
                .bind(user_id.as_str())
                .execute(&store.pool)
                .await?;
            Ok(done.rows_affected() > 0)
        })
        .await
}

/// Under `READ COMMITTED` two racing updates of one row queue on its lock,
/// and the second re-checks the `WHERE` against the first's count.
pub(crate) async fn record_use(
    store: &PostgresStore,
    id: &PasskeyId,
    sign_count: u32,
    credential: &str,
    now: OffsetDateTime,
) -> StoreResult<bool> {
    store
        .bounded(async {
            let done = sqlx::query(
                "UPDATE passkeys SET sign_count = $2, credential = $3, last_used_at = $4 \
                 WHERE id = $1 AND (sign_count < $2 OR (sign_count = 0 AND $2 = 0))",
            )
            .bind(id.as_str())
            .bind(i64::from(sign_count))
            .bind(credential)
            .bind(ms(now))
            .execute(&store.pool)
            .await?;
            Ok(done.rows_affected() > 0)
        })
        .await
}

pub(crate) async fn insert_challenge(
    store: &PostgresStore,
    c: &WebauthnChallengeRecord,
) -> StoreResult<()> {
    store
        .bounded(async {
            sqlx::query(concat!(
                "INSERT INTO webauthn_challenges (",
                webauthn_challenge_cols!(),
                ") VALUES ($1, $2, $3, $4, $5)"
            ))
            .bind(&c.id)
            .bind(c.purpose.as_str())
            .bind(&c.state)
            .bind(ms(c.created_at))
            .bind(ms(c.expires_at))
            .execute(&store.pool)
            .await?;
            Ok(())
        })
        .await
}

/// One `DELETE ... RETURNING`: of several nodes spending one challenge at
/// once, the one whose delete takes the row gets it.
pub(crate) async fn take_challenge(
    store: &PostgresStore,
    id: &str,
    purpose: ChallengePurpose,
    now: OffsetDateTime,
) -> StoreResult<Option<WebauthnChallengeRecord>> {
    store
        .bounded(async {
            let row = sqlx::query(concat!(
                "DELETE FROM webauthn_challenges \
                 WHERE id = $1 AND purpose = $2 AND expires_at > $3 RETURNING ",
                webauthn_challenge_cols!()
            ))
            .bind(id)
            .bind(purpose.as_str())
            .bind(ms(now))
            .fetch_optional(&store.pool)
            .await?;
            row.as_ref().map(webauthn_challenge_of).transpose()
        })
        .await
}

/// A prune batch: expired challenges, along the index on their expiry.
pub(crate) const PRUNE_CHALLENGES: &str =
    "DELETE FROM webauthn_challenges WHERE id IN (SELECT id FROM webauthn_challenges \
     WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2)";
