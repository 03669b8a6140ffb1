//! latchkey's [`Store`] on an embedded SQLite database (WAL mode).

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use latchkey_core::audit::AuditRecord;
use latchkey_core::clock::{from_unix_millis, unix_millis};
use latchkey_core::keys::KeyRecord;
use latchkey_core::store::{
    Advance, LoginFailures, RevokeScope, SessionRecord, SessionWithUser, Store, StoreError,
    StoreResult, UserRecord,
};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};
use time::OffsetDateTime;

/// How SQLite commits: `Normal` survives a killed process, `Full` also a
/// power loss, at the price of an fsync per commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    Normal,
    Full,
}

/// Connection settings.
#[derive(Debug, Clone)]
pub struct SqliteSettings {
    pub durability: Durability,
    pub max_connections: u32,
    pub busy_timeout: Duration,
    pub acquire_timeout: Duration,
}

impl Default for SqliteSettings {
    fn default() -> Self {
        Self {
            durability: Durability::Normal,
            max_connections: 8,
            busy_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

pub struct SqliteStore {
    pool: SqlitePool,
}

fn unavailable(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Conflict(db.message().to_owned())
        }
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_) => StoreError::Corrupt(e.to_string()),
        _ => StoreError::Unavailable(e.to_string()),
    }
}

impl SqliteStore {
    /// Opens (creating if missing) the database named by a `sqlite://PATH` URL.
    pub async fn connect(url: &str, settings: &SqliteSettings) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Unavailable(format!("bad SQLite URL: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match settings.durability {
                Durability::Normal => SqliteSynchronous::Normal,
                Durability::Full => SqliteSynchronous::Full,
            })
            .busy_timeout(settings.busy_timeout)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(options)
            .await
            .map_err(unavailable)?;
        Ok(Self { pool })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn ms(t: OffsetDateTime) -> i64 {
    unix_millis(t)
}

fn opt_ms(t: Option<OffsetDateTime>) -> Option<i64> {
    t.map(unix_millis)
}

fn time_of(row: &SqliteRow, col: &str) -> Result<OffsetDateTime, sqlx::Error> {
    row.try_get::<i64, _>(col).map(from_unix_millis)
}

fn opt_time_of(row: &SqliteRow, col: &str) -> Result<Option<OffsetDateTime>, sqlx::Error> {
    row.try_get::<Option<i64>, _>(col)
        .map(|v| v.map(from_unix_millis))
}

const USER_COLS: &str = "u.id AS u_id, u.username, u.username_key, u.password_hash, \
    u.created_at AS u_created_at, u.disabled_at";
const SESSION_COLS: &str = "s.id, s.user_id, s.client_id, s.scope, s.salt, s.generation, \
    s.rotated_at, s.created_at, s.last_used_at, s.absolute_expires_at, s.revoked_at, \
    s.revoked_reason, s.user_agent, s.ip";

fn user_of(row: &SqliteRow) -> Result<UserRecord, sqlx::Error> {
    Ok(UserRecord {
        id: row.try_get("u_id")?,
        username: row.try_get("username")?,
        username_key: row.try_get("username_key")?,
        password_hash: row.try_get("password_hash")?,
        created_at: time_of(row, "u_created_at")?,
        disabled_at: opt_time_of(row, "disabled_at")?,
    })
}

fn session_of(row: &SqliteRow) -> Result<SessionRecord, sqlx::Error> {
    let generation: i64 = row.try_get("generation")?;
    Ok(SessionRecord {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        client_id: row.try_get("client_id")?,
        scope: row.try_get("scope")?,
        salt: row.try_get("salt")?,
        generation: u64::try_from(generation).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        rotated_at: opt_time_of(row, "rotated_at")?,
        created_at: time_of(row, "created_at")?,
        last_used_at: time_of(row, "last_used_at")?,
        absolute_expires_at: time_of(row, "absolute_expires_at")?,
        revoked_at: opt_time_of(row, "revoked_at")?,
        revoked_reason: row.try_get("revoked_reason")?,
        user_agent: row.try_get("user_agent")?,
        ip: row.try_get("ip")?,
    })
}

fn key_of(row: &SqliteRow) -> Result<KeyRecord, sqlx::Error> {
    Ok(KeyRecord {
        kid: row.try_get("kid")?,
        alg: row.try_get("alg")?,
        private_key: row.try_get("private_key")?,
        encrypted: row.try_get("encrypted")?,
        public_jwk: row.try_get("public_jwk")?,
        created_at: time_of(row, "created_at")?,
        activates_at: time_of(row, "activates_at")?,
        retired_at: opt_time_of(row, "retired_at")?,
        purged_at: opt_time_of(row, "purged_at")?,
    })
}

fn audit_of(row: &SqliteRow) -> Result<AuditRecord, sqlx::Error> {
    Ok(AuditRecord {
        at: time_of(row, "at")?,
        event: row.try_get("event")?,
        user_id: row.try_get("user_id")?,
        session_id: row.try_get("session_id")?,
        ip: row.try_get("ip")?,
        detail: row.try_get("detail")?,
    })
}

async fn revoke_in(
    tx: &mut Transaction<'_, Sqlite>,
    scope: RevokeScope<'_>,
    now: OffsetDateTime,
    reason: &str,
) -> Result<u64, sqlx::Error> {
    let result = match scope {
        RevokeScope::One(id) => {
            sqlx::query(
                "UPDATE sessions SET revoked_at = ?, revoked_reason = ? \
                 WHERE id = ? AND revoked_at IS NULL",
            )
            .bind(ms(now))
            .bind(reason)
            .bind(id)
            .execute(&mut **tx)
            .await?
        }
        RevokeScope::User { user_id, except } => {
            sqlx::query(
                "UPDATE sessions SET revoked_at = ?, revoked_reason = ? \
                 WHERE user_id = ? AND revoked_at IS NULL AND id IS NOT ?",
            )
            .bind(ms(now))
            .bind(reason)
            .bind(user_id)
            .bind(except)
            .execute(&mut **tx)
            .await?
        }
    };
    Ok(result.rows_affected())
}

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> StoreResult<()> {
        sqlx::migrate!("./migrations")
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Unavailable(format!("migration failed: {e}")))
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn create_user(&self, user: &UserRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO users (id, username, username_key, password_hash, created_at, disabled_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&user.id)
        .bind(&user.username)
        .bind(&user.username_key)
        .bind(&user.password_hash)
        .bind(ms(user.created_at))
        .bind(opt_ms(user.disabled_at))
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn user_by_key(&self, username_key: &str) -> StoreResult<Option<UserRecord>> {
        sqlx::query(&format!(
            "SELECT {USER_COLS} FROM users u WHERE u.username_key = ?"
        ))
        .bind(username_key)
        .fetch_optional(&self.pool)
        .await
        .and_then(|row| row.as_ref().map(user_of).transpose())
        .map_err(unavailable)
    }

    async fn user_by_id(&self, id: &str) -> StoreResult<Option<UserRecord>> {
        sqlx::query(&format!("SELECT {USER_COLS} FROM users u WHERE u.id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .and_then(|row| row.as_ref().map(user_of).transpose())
            .map_err(unavailable)
    }

    async fn list_users(&self) -> StoreResult<Vec<UserRecord>> {
        sqlx::query(&format!(
            "SELECT {USER_COLS} FROM users u ORDER BY u.created_at, u.id"
        ))
        .fetch_all(&self.pool)
        .await
        .and_then(|rows| rows.iter().map(user_of).collect())
        .map_err(unavailable)
    }

    async fn set_password_hash(
        &self,
        user_id: &str,
        hash: &str,
        revoke: Option<(RevokeScope<'_>, OffsetDateTime, &str)>,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        sqlx::query("UPDATE users SET password_hash = ? WHERE id = ?")
            .bind(hash)
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        if let Some((scope, now, reason)) = revoke {
            revoke_in(&mut tx, scope, now, reason)
                .await
                .map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)
    }

    async fn set_user_disabled(
        &self,
        user_id: &str,
        disabled_at: Option<OffsetDateTime>,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let found = sqlx::query("UPDATE users SET disabled_at = ? WHERE id = ?")
            .bind(opt_ms(disabled_at))
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?
            .rows_affected()
            > 0;
        if let Some(now) = disabled_at {
            let scope = RevokeScope::User {
                user_id,
                except: None,
            };
            revoke_in(&mut tx, scope, now, "user_disabled")
                .await
                .map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(found)
    }

    async fn create_session(&self, s: &SessionRecord) -> StoreResult<()> {
        let generation = i64::try_from(s.generation)
            .map_err(|_| StoreError::Corrupt("generation out of range".into()))?;
        sqlx::query(
            "INSERT INTO sessions (id, user_id, client_id, scope, salt, generation, rotated_at, \
             created_at, last_used_at, absolute_expires_at, revoked_at, revoked_reason, user_agent, ip) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&s.id)
        .bind(&s.user_id)
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
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn session(&self, id: &str) -> StoreResult<Option<SessionRecord>> {
        sqlx::query(&format!(
            "SELECT {SESSION_COLS} FROM sessions s WHERE s.id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .and_then(|row| row.as_ref().map(session_of).transpose())
        .map_err(unavailable)
    }

    async fn session_with_user(&self, id: &str) -> StoreResult<Option<SessionWithUser>> {
        sqlx::query(&format!(
            "SELECT {SESSION_COLS}, {USER_COLS} FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .and_then(|row| {
            row.as_ref()
                .map(|r| {
                    Ok(SessionWithUser {
                        session: session_of(r)?,
                        user: user_of(r)?,
                    })
                })
                .transpose()
        })
        .map_err(unavailable)
    }

    async fn advance_generation(
        &self,
        id: &str,
        from: u64,
        now: OffsetDateTime,
    ) -> StoreResult<Advance> {
        let from = i64::try_from(from)
            .map_err(|_| StoreError::Corrupt("generation out of range".into()))?;
        let row = sqlx::query(
            "UPDATE sessions SET generation = generation + 1, rotated_at = ?1, last_used_at = ?1 \
             WHERE id = ?2 AND generation = ?3 AND revoked_at IS NULL RETURNING *",
        )
        .bind(ms(now))
        .bind(id)
        .bind(from)
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        match row {
            Some(row) => Ok(Advance::Advanced(Box::new(
                session_of(&row).map_err(unavailable)?,
            ))),
            None => Ok(Advance::Lost),
        }
    }

    async fn revoke_sessions(
        &self,
        scope: RevokeScope<'_>,
        now: OffsetDateTime,
        reason: &str,
    ) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let n = revoke_in(&mut tx, scope, now, reason)
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(n)
    }

    async fn live_sessions(
        &self,
        user_id: Option<&str>,
        now: OffsetDateTime,
        idle_since: OffsetDateTime,
    ) -> StoreResult<Vec<SessionRecord>> {
        sqlx::query(&format!(
            "SELECT {SESSION_COLS} FROM sessions s WHERE (?1 IS NULL OR s.user_id = ?1) \
             AND s.revoked_at IS NULL AND s.absolute_expires_at > ?2 AND s.last_used_at > ?3 \
             ORDER BY s.created_at, s.id"
        ))
        .bind(user_id)
        .bind(ms(now))
        .bind(ms(idle_since))
        .fetch_all(&self.pool)
        .await
        .and_then(|rows| rows.iter().map(session_of).collect())
        .map_err(unavailable)
    }

    async fn insert_key(&self, k: &KeyRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO signing_keys (kid, alg, private_key, encrypted, public_jwk, created_at, \
             activates_at, retired_at, purged_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&k.kid)
        .bind(&k.alg)
        .bind(&k.private_key)
        .bind(k.encrypted)
        .bind(&k.public_jwk)
        .bind(ms(k.created_at))
        .bind(ms(k.activates_at))
        .bind(opt_ms(k.retired_at))
        .bind(opt_ms(k.purged_at))
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn list_keys(&self) -> StoreResult<Vec<KeyRecord>> {
        sqlx::query("SELECT * FROM signing_keys ORDER BY activates_at, created_at")
            .fetch_all(&self.pool)
            .await
            .and_then(|rows| rows.iter().map(key_of).collect())
            .map_err(unavailable)
    }

    async fn retire_key(
        &self,
        kid: &str,
        now: OffsetDateTime,
        purge: bool,
        promote: Option<&str>,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        sqlx::query(
            "UPDATE signing_keys SET retired_at = COALESCE(retired_at, ?1), \
             purged_at = CASE WHEN ?2 THEN COALESCE(purged_at, ?1) ELSE purged_at END WHERE kid = ?3",
        )
        .bind(ms(now))
        .bind(purge)
        .bind(kid)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        if let Some(successor) = promote {
            sqlx::query("UPDATE signing_keys SET activates_at = ? WHERE kid = ?")
                .bind(ms(now))
                .bind(successor)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)
    }

    async fn secret_or_insert(&self, name: &str, candidate: &[u8]) -> StoreResult<Vec<u8>> {
        sqlx::query(
            "INSERT INTO server_secrets (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(candidate)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        sqlx::query_scalar("SELECT value FROM server_secrets WHERE name = ?")
            .bind(name)
            .fetch_one(&self.pool)
            .await
            .map_err(unavailable)
    }

    async fn record_login_failure(
        &self,
        key: &str,
        now: OffsetDateTime,
        window_start_after: OffsetDateTime,
    ) -> StoreResult<LoginFailures> {
        let row = sqlx::query(
            "INSERT INTO login_failures (key, count, window_started_at) VALUES (?1, 1, ?2) \
             ON CONFLICT (key) DO UPDATE SET \
               count = CASE WHEN window_started_at <= ?3 THEN 1 ELSE count + 1 END, \
               window_started_at = CASE WHEN window_started_at <= ?3 THEN ?2 ELSE window_started_at END \
             RETURNING count, window_started_at",
        )
        .bind(key)
        .bind(ms(now))
        .bind(ms(window_start_after))
        .fetch_one(&self.pool)
        .await
        .map_err(unavailable)?;
        failures_of(&row).map_err(unavailable)
    }

    async fn login_failures(&self, key: &str) -> StoreResult<Option<LoginFailures>> {
        sqlx::query("SELECT count, window_started_at FROM login_failures WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .and_then(|row| row.as_ref().map(failures_of).transpose())
            .map_err(unavailable)
    }

    async fn clear_login_failures(&self, key: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM login_failures WHERE key = ?")
            .bind(key)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn append_audit(&self, r: &AuditRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO audit_log (at, event, user_id, session_id, ip, detail) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(ms(r.at))
        .bind(&r.event)
        .bind(&r.user_id)
        .bind(&r.session_id)
        .bind(&r.ip)
        .bind(&r.detail)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn recent_audit(&self, limit: u32) -> StoreResult<Vec<AuditRecord>> {
        sqlx::query("SELECT * FROM audit_log ORDER BY id DESC LIMIT ?")
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .and_then(|rows| rows.iter().map(audit_of).collect())
            .map_err(unavailable)
    }
}

fn failures_of(row: &SqliteRow) -> Result<LoginFailures, sqlx::Error> {
    let count: i64 = row.try_get("count")?;
    Ok(LoginFailures {
        count: u32::try_from(count).unwrap_or(u32::MAX),
        window_started_at: time_of(row, "window_started_at")?,
    })
}
