//! Sessions: opening one, reading it (with its user), the refresh
//! compare-and-swap, revocation, the live ones, and their prune.

use latchkey_core::amr;
use latchkey_core::audit::AuditRecord;
use latchkey_core::store::{
    Advance, DeadSessions, RevokeScope, SessionRecord, SessionWithUser, SessionsPruned, StoreResult,
};
use latchkey_store_sql::{ms, opt_ms, session_cols, session_of, session_with_user_of, user_cols};
use rusqlite::{params, Connection, OptionalExtension};
use time::OffsetDateTime;

use crate::audit::insert_audit;
use crate::row::i64_param;
use crate::SqliteStore;

/// Owned form of [`RevokeScope`], to move into the writer.
pub(crate) enum Revoke {
    One(String),
    User {
        user_id: String,
        except: Option<String>,
    },
}

impl From<RevokeScope<'_>> for Revoke {
    fn from(scope: RevokeScope<'_>) -> Self {
        match scope {
            RevokeScope::One(id) => Self::One(id.as_str().to_owned()),
            RevokeScope::User { user_id, except } => Self::User {
                user_id: user_id.as_str().to_owned(),
                except: except.map(|id| id.as_str().to_owned()),
            },
        }
    }
}

/// Revokes the live sessions of `scope`, each with its row for the
/// revocation feed; answers how many were live.
pub(crate) fn revoke_in(
    conn: &Connection,
    scope: &Revoke,
    now: i64,
    reason: &str,
) -> rusqlite::Result<u64> {
    let n = match scope {
        Revoke::One(id) => {
            conn.prepare_cached(
                "INSERT INTO revocations (kind, subject, at) SELECT 'revoked', id, ?1 \
                 FROM sessions WHERE id = ?2 AND revoked_at IS NULL",
            )?
            .execute(params![now, id])?;
            conn.prepare_cached(
                "UPDATE sessions SET revoked_at = ?1, revoked_reason = ?2 \
                 WHERE id = ?3 AND revoked_at IS NULL",
            )?
            .execute(params![now, reason, id])?
        }
        Revoke::User { user_id, except } => {
            conn.prepare_cached(
                "INSERT INTO revocations (kind, subject, at) SELECT 'revoked', id, ?1 \
                 FROM sessions WHERE user_id = ?2 AND revoked_at IS NULL AND id IS NOT ?3",
            )?
            .execute(params![now, user_id, except])?;
            conn.prepare_cached(
                "UPDATE sessions SET revoked_at = ?1, revoked_reason = ?2 \
                 WHERE user_id = ?3 AND revoked_at IS NULL AND id IS NOT ?4",
            )?
            .execute(params![now, reason, user_id, except])?
        }
    };
    Ok(n as u64)
}

/// Inserts only while the user is enabled and at `password_version`: the
/// check and the insert are one statement.
pub(crate) async fn create(
    store: &SqliteStore,
    session: &SessionRecord,
    password_version: u64,
) -> StoreResult<bool> {
    let s = session.clone();
    store
        .write(move |conn| {
            let inserted = conn.prepare_cached(
                "INSERT INTO sessions (id, user_id, client_id, scope, salt, generation, rotated_at, \
                 created_at, last_used_at, absolute_expires_at, revoked_at, revoked_reason, user_agent, ip, \
                 amr, auth_time) \
                 SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?16, ?17 \
                 FROM users WHERE id = ?2 AND password_version = ?15 AND disabled_at IS NULL",
            )?
            .execute(params![
                s.id.as_str(),
                s.user_id.as_str(),
                s.client_id,
                s.scope,
                s.salt,
                i64_param(s.generation)?,
                opt_ms(s.rotated_at),
                ms(s.created_at),
                ms(s.last_used_at),
                ms(s.absolute_expires_at),
                opt_ms(s.revoked_at),
                s.revoked_reason,
                s.user_agent,
                s.ip,
                i64_param(password_version)?,
                amr::join(&s.amr),
                ms(s.auth_time)
            ])?;
            Ok(inserted > 0)
        })
        .await
}

pub(crate) async fn get(store: &SqliteStore, id: &str) -> StoreResult<Option<SessionRecord>> {
    const SELECT: &str = concat!(
        "SELECT ",
        session_cols!(),
        " FROM sessions s WHERE s.id = ?1"
    );
    store.one(SELECT, id, |row| session_of(row)).await
}

pub(crate) async fn with_user(
    store: &SqliteStore,
    id: &str,
) -> StoreResult<Option<SessionWithUser>> {
    const SELECT: &str = concat!(
        "SELECT ",
        session_cols!(),
        ", ",
        user_cols!(),
        " FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = ?1"
    );
    store.one(SELECT, id, |row| session_with_user_of(row)).await
}

/// The refresh compare-and-swap; the audit row is written in the same
/// savepoint, only when the swap won.
pub(crate) async fn advance_generation(
    store: &SqliteStore,
    id: &str,
    from: u64,
    now: OffsetDateTime,
    idle_before: OffsetDateTime,
    audit: &AuditRecord,
) -> StoreResult<Advance> {
    let (id, audit) = (id.to_owned(), audit.clone());
    store
        .write(move |conn| {
            let row = conn
                .prepare_cached(
                    "UPDATE sessions SET generation = generation + 1, rotated_at = ?1, last_used_at = ?1 \
                     WHERE id = ?2 AND generation = ?3 AND revoked_at IS NULL \
                     AND absolute_expires_at > ?1 AND last_used_at > ?4 RETURNING *",
                )?
                .query_row(
                    params![ms(now), id, i64_param(from)?, ms(idle_before)],
                    |row| session_of(row),
                )
                .optional()?;
            Ok(match row {
                Some(session) => {
                    insert_audit(conn, &audit)?;
                    Advance::Advanced(Box::new(session))
                }
                None => Advance::Lost,
            })
        })
        .await
}

pub(crate) async fn revoke(
    store: &SqliteStore,
    scope: RevokeScope<'_>,
    now: OffsetDateTime,
    reason: &str,
) -> StoreResult<u64> {
    let (scope, reason) = (Revoke::from(scope), reason.to_owned());
    store
        .write(move |conn| revoke_in(conn, &scope, ms(now), &reason))
        .await
}

pub(crate) async fn live(
    store: &SqliteStore,
    user_id: Option<&str>,
    now: OffsetDateTime,
    idle_since: OffsetDateTime,
) -> StoreResult<Vec<SessionRecord>> {
    let user_id = user_id.map(str::to_owned);
    store
        .scan(move |conn| {
            conn.prepare_cached(concat!(
                "SELECT ",
                session_cols!(),
                " FROM sessions s WHERE (?1 IS NULL OR s.user_id = ?1) \
                 AND s.revoked_at IS NULL AND s.absolute_expires_at > ?2 AND s.last_used_at > ?3 \
                 ORDER BY s.created_at, s.id"
            ))?
            .query_map(params![user_id, ms(now), ms(idle_since)], |row| {
                session_of(row)
            })?
            .collect()
        })
        .await
}

pub(crate) async fn count_live(
    store: &SqliteStore,
    now: OffsetDateTime,
    idle_since: OffsetDateTime,
) -> StoreResult<u64> {
    store
        .scan(move |conn| {
            conn.prepare_cached(
                "SELECT COUNT(*) FROM sessions WHERE revoked_at IS NULL \
                 AND absolute_expires_at > ?1 AND last_used_at > ?2",
            )?
            .query_row(params![ms(now), ms(idle_since)], |row| row.get::<_, i64>(0))
            .map(|n| n.max(0) as u64)
        })
        .await
}

/// Which sessions of a window of ids (`?1` < id <= `?2`) are dead at `?3`,
/// idle since `?4`: the prune reads them, then deletes them.
macro_rules! dead_in_window {
    () => {
        "WHERE id > ?1 AND id <= ?2 AND \
         (revoked_at IS NOT NULL OR absolute_expires_at <= ?3 OR last_used_at <= ?4)"
    };
}

pub(crate) async fn prune(
    store: &SqliteStore,
    dead: DeadSessions,
    after: Option<&str>,
    batch: u32,
) -> StoreResult<SessionsPruned> {
    let after = after.unwrap_or_default().to_owned();
    let (now, idle_before) = (ms(dead.now), ms(dead.idle_before));
    // On a reader first: the window (the next `batch` ids: bounded work
    // whatever the table's size or how few of its rows are dead), its dead
    // rows, and every page their deletion changes: each row's, and its
    // entries in each index. In a large store those are random pages,
    // often on disk; read here, the writer finds them in memory instead of
    // reading them while every other write waits (10M sessions: a window
    // held the writer up to 1.6 s).
    let from = after.clone();
    let window = store
        .scan(move |conn| {
            let last: Option<String> = conn
                .prepare_cached(
                    "SELECT MAX(id) FROM (SELECT id FROM sessions WHERE id > ?1 \
                     ORDER BY id LIMIT ?2)",
                )?
                .query_row(params![from, batch], |row| row.get(0))?;
            let Some(last) = last else {
                return Ok(None);
            };
            let mut by_user = conn.prepare_cached(
                "SELECT count(*) FROM sessions INDEXED BY sessions_by_user \
                 WHERE user_id = ?1 AND created_at = ?2 AND rowid = ?3",
            )?;
            let mut by_client = conn.prepare_cached(
                "SELECT count(*) FROM sessions INDEXED BY sessions_by_client \
                 WHERE client_id = ?1 AND rowid = ?2",
            )?;
            let mut rows = conn.prepare_cached(concat!(
                "SELECT rowid, user_id, created_at, client_id FROM sessions ",
                dead_in_window!()
            ))?;
            let mut rows = rows.query(params![from, last, now, idle_before])?;
            while let Some(row) = rows.next()? {
                let (rowid, user, created, client): (i64, String, i64, String) =
                    (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
                by_user.query_row(params![user, created, rowid], |_| Ok(()))?;
                by_client.query_row(params![client, rowid], |_| Ok(()))?;
            }
            Ok(Some(last))
        })
        .await?;
    let Some(last) = window else {
        return Ok(SessionsPruned {
            deleted: 0,
            next: None,
        });
    };
    store
        .write(move |conn| {
            let deleted = conn
                .prepare_cached(concat!("DELETE FROM sessions ", dead_in_window!()))?
                .execute(params![after, last, now, idle_before])?;
            Ok(SessionsPruned {
                deleted: deleted as u64,
                next: Some(last),
            })
        })
        .await
}
