//! Sessions: opening one, reading it (with its user), the refresh
//! compare-and-swap, revocation, the live ones, and their prune.

use latchkey_core::amr;
use latchkey_core::audit::AuditRecord;
use latchkey_core::store::{
    Advance, DeadSessions, RevokeScope, SessionRecord, SessionWithUser, SessionsPruned, StoreResult,
};
use latchkey_core::SessionId;
use latchkey_store_sql::{ms, opt_ms, session_cols, session_of, session_with_user_of, user_cols};
use sqlx::{PgConnection, Row};
use time::OffsetDateTime;

use crate::kept::on_held;
use crate::revocations;
use crate::row::i64_param;
use crate::PostgresStore;

/// Revokes the live sessions of `scope`, each with its row for the
/// revocation feed; answers how many were live. Runs in the caller's
/// transaction, whose first statement this must be (it takes the feed's
/// writers' lock, held to the commit).
pub(crate) async fn revoke_in(
    tx: &mut PgConnection,
    scope: RevokeScope<'_>,
    now: i64,
    reason: &str,
) -> Result<u64, sqlx::Error> {
    revocations::lock(&mut *tx).await?;
    let done = match scope {
        RevokeScope::One(id) => {
            sqlx::query(
                "WITH r AS (UPDATE sessions SET revoked_at = $1, revoked_reason = $2 \
                 WHERE id = $3 AND revoked_at IS NULL RETURNING id) \
                 INSERT INTO revocations (kind, subject, at) SELECT 'revoked', id, $1 FROM r",
            )
            .bind(now)
            .bind(reason)
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?
        }
        RevokeScope::User { user_id, except } => {
            sqlx::query(
                "WITH r AS (UPDATE sessions SET revoked_at = $1, revoked_reason = $2 \
                 WHERE user_id = $3 AND revoked_at IS NULL AND id IS DISTINCT FROM $4 \
                 RETURNING id) \
                 INSERT INTO revocations (kind, subject, at) SELECT 'revoked', id, $1 FROM r",
            )
            .bind(now)
            .bind(reason)
            .bind(user_id.as_str())
            .bind(except.map(SessionId::as_str))
            .execute(&mut *tx)
            .await?
        }
    };
    Ok(done.rows_affected())
}

pub(crate) async fn create(
    store: &PostgresStore,
    s: &SessionRecord,
    password_version: u64,
) -> StoreResult<bool> {
    let generation = i64_param(s.generation)?;
    let version = i64_param(password_version)?;
    store
        .bounded(async {
            // `FOR SHARE`: a password change or a disable committing
            // meanwhile waits for this insert, or this insert sees it.
            let inserted = sqlx::query(
                "INSERT INTO sessions (id, user_id, client_id, scope, salt, generation, \
                 rotated_at, created_at, last_used_at, absolute_expires_at, revoked_at, \
                 revoked_reason, user_agent, ip, amr, auth_time) \
                 SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $16, $17 \
                 FROM (SELECT 1 FROM users WHERE id = $2 AND password_version = $15 \
                       AND disabled_at IS NULL FOR SHARE) AS current_user_row",
            )
            .bind(s.id.as_str())
            .bind(s.user_id.as_str())
            .bind(&s.client_id)
            .bind(&s.scope)
            .bind(&s.salt)
            .bind(generation)
            .bind(opt_ms(s.rotated_at))
            .bind(ms(s.created_at))
            .bind(ms(s.last_used_at))
            .bind(ms(s.absolute_expires_at))
            .bind(opt_ms(s.revoked_at))
            .bind(&s.revoked_reason)
            .bind(&s.user_agent)
            .bind(&s.ip)
            .bind(version)
            .bind(amr::join(&s.amr))
            .bind(ms(s.auth_time))
            .execute(&store.pool)
            .await?;
            Ok(inserted.rows_affected() > 0)
        })
        .await
}

pub(crate) async fn get(store: &PostgresStore, id: &str) -> StoreResult<Option<SessionRecord>> {
    const SELECT: &str = concat!(
        "SELECT ",
        session_cols!(),
        " FROM sessions s WHERE s.id = $1"
    );
    store.one(SELECT, id, session_of).await
}

pub(crate) async fn with_user(
    store: &PostgresStore,
    id: &str,
) -> StoreResult<Option<SessionWithUser>> {
    const SELECT: &str = concat!(
        "SELECT ",
        session_cols!(),
        ", ",
        user_cols!(),
        " FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = $1"
    );
    store.one(SELECT, id, session_with_user_of).await
}

pub(crate) async fn advance_generation(
    store: &PostgresStore,
    id: &str,
    from: u64,
    now: OffsetDateTime,
    idle_before: OffsetDateTime,
    audit: &AuditRecord,
) -> StoreResult<Advance> {
    // No session can be at a generation the column cannot hold.
    let Ok(from) = i64::try_from(from) else {
        return Ok(Advance::Lost);
    };
    // One statement, so one transaction and one round trip: the audit
    // row is inserted from the updated row, so only when the swap won.
    store
        .bounded(async {
            let row = on_held!(store, |conn| sqlx::query(concat!(
                "WITH s AS (\
                   UPDATE sessions SET generation = generation + 1, rotated_at = $1, \
                   last_used_at = $1 \
                   WHERE id = $2 AND generation = $3 AND revoked_at IS NULL \
                   AND absolute_expires_at > $1 AND last_used_at > $10 \
                   RETURNING *\
                 ), logged AS (\
                   INSERT INTO audit_log (at, event, user_id, session_id, ip, detail) \
                   SELECT $4, $5, $6, $7, $8, $9 FROM s\
                 ) SELECT ",
                session_cols!(),
                " FROM s"
            ))
            .bind(ms(now))
            .bind(id)
            .bind(from)
            .bind(ms(audit.at))
            .bind(&audit.event)
            .bind(&audit.user_id)
            .bind(&audit.session_id)
            .bind(&audit.ip)
            .bind(&audit.detail)
            .bind(ms(idle_before))
            .fetch_optional(conn))?;
            Ok(match row {
                Some(row) => Advance::Advanced(Box::new(session_of(&row)?)),
                None => Advance::Lost,
            })
        })
        .await
}

pub(crate) async fn revoke(
    store: &PostgresStore,
    scope: RevokeScope<'_>,
    now: OffsetDateTime,
    reason: &str,
) -> StoreResult<u64> {
    store
        .bounded(async {
            let mut tx = store.pool.begin().await?;
            let revoked = revoke_in(&mut tx, scope, ms(now), reason).await?;
            tx.commit().await?;
            Ok(revoked)
        })
        .await
}

pub(crate) async fn live(
    store: &PostgresStore,
    user_id: Option<&str>,
    now: OffsetDateTime,
    idle_since: OffsetDateTime,
) -> StoreResult<Vec<SessionRecord>> {
    store
        .bounded(async {
            // Two statements rather than `$1 IS NULL OR ...`, so a cached
            // generic plan can still use the index on `user_id`.
            let query = match user_id {
                Some(user_id) => sqlx::query(concat!(
                    "SELECT ",
                    session_cols!(),
                    " FROM sessions s WHERE s.user_id = $3 AND s.revoked_at IS NULL \
                     AND s.absolute_expires_at > $1 AND s.last_used_at > $2 \
                     ORDER BY s.created_at, s.id COLLATE \"C\""
                ))
                .bind(ms(now))
                .bind(ms(idle_since))
                .bind(user_id),
                None => sqlx::query(concat!(
                    "SELECT ",
                    session_cols!(),
                    " FROM sessions s WHERE s.revoked_at IS NULL \
                     AND s.absolute_expires_at > $1 AND s.last_used_at > $2 \
                     ORDER BY s.created_at, s.id COLLATE \"C\""
                ))
                .bind(ms(now))
                .bind(ms(idle_since)),
            };
            query
                .fetch_all(&store.pool)
                .await?
                .iter()
                .map(session_of)
                .collect()
        })
        .await
}

pub(crate) async fn count_live(
    store: &PostgresStore,
    now: OffsetDateTime,
    idle_since: OffsetDateTime,
) -> StoreResult<u64> {
    store
        .bounded(async {
            let n: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM sessions WHERE revoked_at IS NULL \
                 AND absolute_expires_at > $1 AND last_used_at > $2",
            )
            .bind(ms(now))
            .bind(ms(idle_since))
            .fetch_one(&store.pool)
            .await?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
}

pub(crate) async fn prune(
    store: &PostgresStore,
    dead: DeadSessions,
    after: Option<&str>,
    batch: u32,
) -> StoreResult<SessionsPruned> {
    let after = after.unwrap_or_default();
    store
        .bounded(async {
            // The window is the next `batch` ids in the primary key's own
            // order, whatever their state: bounded work however large the
            // table or few its dead rows.
            let row = sqlx::query(
                "WITH window_ids AS (\
                   SELECT id FROM sessions WHERE id > $1 ORDER BY id LIMIT $2\
                 ), gone AS (\
                   DELETE FROM sessions s USING window_ids w WHERE s.id = w.id \
                   AND (s.revoked_at IS NOT NULL OR s.absolute_expires_at <= $3 \
                        OR s.last_used_at <= $4) RETURNING 1\
                 ) SELECT (SELECT max(id) FROM window_ids) AS last, \
                          (SELECT count(*) FROM gone) AS deleted",
            )
            .bind(after)
            .bind(i64::from(batch))
            .bind(ms(dead.now))
            .bind(ms(dead.idle_before))
            .fetch_one(&store.pool)
            .await?;
            let deleted: i64 = row.try_get("deleted")?;
            Ok(SessionsPruned {
                deleted: u64::try_from(deleted).unwrap_or(0),
                next: row.try_get("last")?,
            })
        })
        .await
}
