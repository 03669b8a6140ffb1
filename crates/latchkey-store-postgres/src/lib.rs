//! latchkey's [`Store`] on PostgreSQL (or a PostgreSQL-compatible engine),
//! the engine to use when several latchkey nodes share one database.
//!
//! Every store operation is one atomic unit in the database, safe when many
//! nodes run it at once:
//!
//! - the refresh compare-and-swap ([`Store::advance_generation`]) is a single
//!   statement: an `UPDATE ... WHERE id = $ AND generation = $ AND revoked_at
//!   IS NULL RETURNING ...` whose audit row is inserted by the same statement
//!   (a data-modifying `WITH`) only when the update matched. Under `READ
//!   COMMITTED`, racers on one row queue on its row lock and re-check the
//!   `WHERE` against the winner's version, so exactly one of them wins;
//! - `secret_or_insert` and `record_login_failure` are single upserts
//!   (`INSERT ... ON CONFLICT DO UPDATE ... RETURNING`);
//! - operations that touch two tables or rows (`set_password_hash`,
//!   `set_user_disabled`, `retire_key`) run in one transaction.
//!
//! Instants are `BIGINT` milliseconds since the Unix epoch, exactly as the
//! SQLite store keeps them, so both engines compare and round them alike;
//! identifiers are ordered byte-wise (`COLLATE "C"`), as SQLite does.
//!
//! # Settings
//!
//! [`PostgresSettings`], with their defaults:
//!
//! | setting | default | what it bounds |
//! |---|---|---|
//! | `max_connections` | 16 | connections this node keeps open to the database |
//! | `acquire_timeout` | 5 s | waiting for a pooled connection, connecting included |
//! | `statement_timeout` | 5 s | each statement on the server (`SET statement_timeout` on every new connection; also `idle_in_transaction_session_timeout`) |
//!
//! Besides, every operation has a client-side deadline of `acquire_timeout +
//! statement_timeout`, so a connection that stops answering (a stalled proxy,
//! a partition) cannot hang a caller either. Whatever stands in the way (the
//! server down or refusing connections, a timeout, a broken connection)
//! answers [`StoreError::Unavailable`], which the server turns into a 503;
//! when the database comes back the pool reconnects by itself. Note that
//! the pool retries a refused connection until `acquire_timeout` (a
//! restarting server is expected back), so that is how long an operation
//! takes to answer `Unavailable` when nothing listens.
//!
//! Errors: unique (and other integrity) violations answer
//! [`StoreError::Conflict`], values that do not decode [`StoreError::Corrupt`],
//! everything else [`StoreError::Unavailable`].
//!
//! [`Store::migrate`] applies `migrations/` with `sqlx::migrate!`; several
//! nodes may start together, the migrator serialises them with an advisory
//! lock. Migrations run without the statement timeout.

use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use latchkey_core::audit::AuditRecord;
use latchkey_core::clock::{from_unix_millis, unix_millis};
use latchkey_core::keys::KeyRecord;
use latchkey_core::store::{
    Advance, ClientRecord, DeadSessions, LoginAttempt, LoginLimit, RevokeScope, SessionRecord,
    SessionWithUser, SessionsPruned, Store, StoreError, StoreResult, UserRecord,
};
use sqlx::error::ErrorKind;
use sqlx::migrate::MigrateError;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Executor, PgExecutor, Row};
use time::OffsetDateTime;

/// Connection settings; see the crate documentation for what each bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresSettings {
    /// Most connections this node keeps open to the database. Default 16.
    pub max_connections: u32,
    /// Longest wait for a pooled connection, opening one included, before
    /// an operation answers `Unavailable`. Default 5 s.
    pub acquire_timeout: Duration,
    /// Longest a statement may run (or wait for a lock) on the server, and
    /// longest a transaction may sit idle. Zero disables both (and the
    /// client-side deadline). Default 5 s.
    pub statement_timeout: Duration,
}

impl Default for PostgresSettings {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(5),
        }
    }
}

/// A pool of connections to one PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// Longest an operation may take end to end; `None` when unbounded.
    deadline: Option<Duration>,
}

/// Every integrity violation is a conflict, as in the SQLite store.
fn store_error(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Database(db) => match db.kind() {
            ErrorKind::UniqueViolation
            | ErrorKind::ForeignKeyViolation
            | ErrorKind::NotNullViolation
            | ErrorKind::CheckViolation => StoreError::Conflict(db.message().to_owned()),
            _ => StoreError::Unavailable(match db.code() {
                Some(code) => format!("PostgreSQL error {code}: {}", db.message()),
                None => format!("PostgreSQL error: {}", db.message()),
            }),
        },
        e @ (sqlx::Error::Decode(_)
        | sqlx::Error::Encode(_)
        | sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::TypeNotFound { .. }) => StoreError::Corrupt(e.to_string()),
        e => StoreError::Unavailable(e.to_string()),
    }
}

fn migrate_error(e: MigrateError) -> StoreError {
    match e {
        MigrateError::Execute(e) => store_error(e),
        MigrateError::ExecuteMigration(e, version) => match store_error(e) {
            StoreError::Unavailable(msg) => {
                StoreError::Unavailable(format!("migration {version}: {msg}"))
            }
            other => other,
        },
        // Applied migrations this build does not know, or that differ from
        // its own: the schema is not what this version understands.
        other => StoreError::Corrupt(format!("migrations: {other}")),
    }
}

/// Whole milliseconds, at least 1 for a non-zero duration; 0 disables.
fn timeout_ms(d: Duration) -> u128 {
    match d.as_millis() {
        0 if !d.is_zero() => 1,
        ms => ms,
    }
}

fn pool_options(settings: &PostgresSettings) -> PgPoolOptions {
    let ms = timeout_ms(settings.statement_timeout);
    let setup: Arc<str> =
        format!("SET statement_timeout = {ms}; SET idle_in_transaction_session_timeout = {ms}")
            .into();
    PgPoolOptions::new()
        .max_connections(settings.max_connections.max(1))
        .acquire_timeout(settings.acquire_timeout)
        // An idle connection is pinged before use: after a database restart
        // (or terminated backends) callers get fresh connections, not errors.
        .test_before_acquire(true)
        .after_connect(move |conn, _meta| {
            let setup = Arc::clone(&setup);
            Box::pin(async move {
                conn.execute(sqlx::raw_sql(&setup)).await?;
                Ok(())
            })
        })
}

impl PostgresStore {
    /// Connects to the database named by a `postgres://` (or
    /// `postgresql://`) URL and checks that it answers: an unreachable
    /// database answers `Unavailable` within `acquire_timeout`.
    pub async fn connect(url: &str, settings: &PostgresSettings) -> StoreResult<Self> {
        let store = Self::connect_lazy(url, settings)?;
        store.ping().await?;
        Ok(store)
    }

    /// Like [`connect`](Self::connect) without touching the database: the
    /// first operation opens the first connection, and until the database
    /// answers every operation answers `Unavailable`. Only the URL is
    /// checked. Must be called inside a Tokio runtime.
    pub fn connect_lazy(url: &str, settings: &PostgresSettings) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(url)
            .map_err(store_error)?
            .application_name("latchkey");
        let deadline = (!settings.statement_timeout.is_zero())
            .then(|| settings.acquire_timeout + settings.statement_timeout);
        Ok(Self {
            pool: pool_options(settings).connect_lazy_with(options),
            deadline,
        })
    }

    /// Closes every connection; operations after this answer `Unavailable`.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Runs one operation under the client-side deadline.
    async fn bounded<T>(
        &self,
        op: impl Future<Output = Result<T, sqlx::Error>> + Send,
    ) -> StoreResult<T> {
        let Some(deadline) = self.deadline else {
            return op.await.map_err(store_error);
        };
        match tokio::time::timeout(deadline, op).await {
            Ok(result) => result.map_err(store_error),
            Err(_) => Err(StoreError::Unavailable(format!(
                "PostgreSQL did not answer within {} ms",
                deadline.as_millis()
            ))),
        }
    }
}

fn ms(t: OffsetDateTime) -> i64 {
    unix_millis(t)
}

fn opt_ms(t: Option<OffsetDateTime>) -> Option<i64> {
    t.map(unix_millis)
}

fn time_of(row: &PgRow, col: &str) -> Result<OffsetDateTime, sqlx::Error> {
    row.try_get::<i64, _>(col).map(from_unix_millis)
}

fn opt_time_of(row: &PgRow, col: &str) -> Result<Option<OffsetDateTime>, sqlx::Error> {
    row.try_get::<Option<i64>, _>(col)
        .map(|v| v.map(from_unix_millis))
}

fn corrupt(msg: String) -> sqlx::Error {
    sqlx::Error::Decode(msg.into())
}

// Column lists as macros, so that queries are `&'static str` built by
// `concat!` (and prepared once per connection).
macro_rules! user_cols {
    () => {
        "u.id AS u_id, u.username, u.username_key, u.password_hash, u.password_version, \
         u.created_at AS u_created_at, u.disabled_at"
    };
}
macro_rules! session_cols {
    () => {
        "s.id, s.user_id, s.client_id, s.scope, s.salt, s.generation, s.rotated_at, \
         s.created_at, s.last_used_at, s.absolute_expires_at, s.revoked_at, s.revoked_reason, \
         s.user_agent, s.ip"
    };
}
macro_rules! key_cols {
    () => {
        "kid, alg, private_key, encrypted, public_jwk, created_at, activates_at, retired_at, \
         purged_at"
    };
}

fn user_of(row: &PgRow) -> Result<UserRecord, sqlx::Error> {
    Ok(UserRecord {
        id: row.try_get("u_id")?,
        username: row.try_get("username")?,
        username_key: row.try_get("username_key")?,
        password_hash: row.try_get("password_hash")?,
        password_version: u64_of(row, "password_version")?,
        created_at: time_of(row, "u_created_at")?,
        disabled_at: opt_time_of(row, "disabled_at")?,
    })
}

fn u64_of(row: &PgRow, col: &str) -> Result<u64, sqlx::Error> {
    let value: i64 = row.try_get(col)?;
    u64::try_from(value).map_err(|_| corrupt(format!("negative {col} {value}")))
}

/// A counter as PostgreSQL's BIGINT.
fn i64_param(value: u64) -> StoreResult<i64> {
    i64::try_from(value).map_err(|_| StoreError::Corrupt(format!("counter {value} too large")))
}

fn session_of(row: &PgRow) -> Result<SessionRecord, sqlx::Error> {
    Ok(SessionRecord {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        client_id: row.try_get("client_id")?,
        scope: row.try_get("scope")?,
        salt: row.try_get("salt")?,
        generation: u64_of(row, "generation")?,
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

fn key_of(row: &PgRow) -> Result<KeyRecord, sqlx::Error> {
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

fn audit_of(row: &PgRow) -> Result<AuditRecord, sqlx::Error> {
    Ok(AuditRecord {
        at: time_of(row, "at")?,
        event: row.try_get("event")?,
        user_id: row.try_get("user_id")?,
        session_id: row.try_get("session_id")?,
        ip: row.try_get("ip")?,
        detail: row.try_get("detail")?,
    })
}

fn client_of(row: &PgRow) -> Result<ClientRecord, sqlx::Error> {
    Ok(ClientRecord {
        id: row.try_get("id")?,
        secret_hash: row.try_get("secret_hash")?,
        scope: row.try_get("scope")?,
        created_at: time_of(row, "created_at")?,
    })
}

/// Revokes the live sessions of `scope`; answers how many were live.
async fn revoke_in<'e>(
    ex: impl PgExecutor<'e>,
    scope: RevokeScope<'_>,
    now: i64,
    reason: &str,
) -> Result<u64, sqlx::Error> {
    let done = match scope {
        RevokeScope::One(id) => {
            sqlx::query(
                "UPDATE sessions SET revoked_at = $1, revoked_reason = $2 \
                 WHERE id = $3 AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(reason)
            .bind(id)
            .execute(ex)
            .await?
        }
        RevokeScope::User { user_id, except } => {
            sqlx::query(
                "UPDATE sessions SET revoked_at = $1, revoked_reason = $2 \
                 WHERE user_id = $3 AND revoked_at IS NULL AND id IS DISTINCT FROM $4",
            )
            .bind(now)
            .bind(reason)
            .bind(user_id)
            .bind(except)
            .execute(ex)
            .await?
        }
    };
    Ok(done.rows_affected())
}

#[async_trait]
impl Store for PostgresStore {
    async fn migrate(&self) -> StoreResult<()> {
        let mut conn = self.pool.acquire().await.map_err(store_error)?;
        // A migration may rightly take longer than a statement should (an
        // index on a large table), and waits for another node's migration
        // behind the migrator's lock. This connection then leaves the pool.
        conn.close_on_drop();
        conn.execute(sqlx::raw_sql(
            "SET statement_timeout = 0; SET idle_in_transaction_session_timeout = 0",
        ))
        .await
        .map_err(store_error)?;
        // `run_direct` is `run` on a connection already held (`run` itself
        // trips "implementation of `Acquire` is not general enough" inside
        // an `async_trait` future).
        sqlx::migrate!("./migrations")
            .run_direct(&mut *conn)
            .await
            .map_err(migrate_error)
    }

    async fn ping(&self) -> StoreResult<()> {
        self.bounded(async {
            sqlx::query("SELECT 1").execute(&self.pool).await?;
            Ok(())
        })
        .await
    }

    async fn create_user(&self, u: &UserRecord) -> StoreResult<()> {
        let version = i64_param(u.password_version)?;
        self.bounded(async {
            sqlx::query(
                "INSERT INTO users (id, username, username_key, password_hash, \
                 password_version, created_at, disabled_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&u.id)
            .bind(&u.username)
            .bind(&u.username_key)
            .bind(&u.password_hash)
            .bind(version)
            .bind(ms(u.created_at))
            .bind(opt_ms(u.disabled_at))
            .execute(&self.pool)
            .await?;
            Ok(())
        })
        .await
    }

    async fn user_by_key(&self, username_key: &str) -> StoreResult<Option<UserRecord>> {
        self.bounded(async {
            sqlx::query(concat!(
                "SELECT ",
                user_cols!(),
                " FROM users u WHERE u.username_key = $1"
            ))
            .bind(username_key)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(user_of)
            .transpose()
        })
        .await
    }

    async fn user_by_id(&self, id: &str) -> StoreResult<Option<UserRecord>> {
        self.bounded(async {
            sqlx::query(concat!(
                "SELECT ",
                user_cols!(),
                " FROM users u WHERE u.id = $1"
            ))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(user_of)
            .transpose()
        })
        .await
    }

    async fn list_users(&self) -> StoreResult<Vec<UserRecord>> {
        self.bounded(async {
            sqlx::query(concat!(
                "SELECT ",
                user_cols!(),
                " FROM users u ORDER BY u.created_at, u.id COLLATE \"C\""
            ))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(user_of)
            .collect()
        })
        .await
    }

    async fn set_password_hash(
        &self,
        user_id: &str,
        hash: &str,
        revoke: RevokeScope<'_>,
        now: OffsetDateTime,
        reason: &str,
    ) -> StoreResult<()> {
        self.bounded(async {
            let mut tx = self.pool.begin().await?;
            sqlx::query(
                "UPDATE users SET password_hash = $1, password_version = password_version + 1 \
                 WHERE id = $2",
            )
            .bind(hash)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
            revoke_in(&mut *tx, revoke, ms(now), reason).await?;
            tx.commit().await
        })
        .await
    }

    async fn rehash_password(&self, user_id: &str, version: u64, hash: &str) -> StoreResult<bool> {
        let version = i64_param(version)?;
        self.bounded(async {
            let done = sqlx::query(
                "UPDATE users SET password_hash = $1 WHERE id = $2 AND password_version = $3",
            )
            .bind(hash)
            .bind(user_id)
            .bind(version)
            .execute(&self.pool)
            .await?;
            Ok(done.rows_affected() > 0)
        })
        .await
    }

    async fn set_user_disabled(
        &self,
        user_id: &str,
        disabled_at: Option<OffsetDateTime>,
    ) -> StoreResult<bool> {
        self.bounded(async {
            let mut tx = self.pool.begin().await?;
            let found = sqlx::query("UPDATE users SET disabled_at = $1 WHERE id = $2")
                .bind(opt_ms(disabled_at))
                .bind(user_id)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                > 0;
            if let (true, Some(now)) = (found, disabled_at) {
                let scope = RevokeScope::User {
                    user_id,
                    except: None,
                };
                revoke_in(&mut *tx, scope, ms(now), "user_disabled").await?;
            }
            tx.commit().await?;
            Ok(found)
        })
        .await
    }

    async fn create_session(&self, s: &SessionRecord, password_version: u64) -> StoreResult<bool> {
        let generation = i64_param(s.generation)?;
        let version = i64_param(password_version)?;
        self.bounded(async {
            // `FOR SHARE`: a password change or a disable committing
            // meanwhile waits for this insert, or this insert sees it.
            let inserted = sqlx::query(
                "INSERT INTO sessions (id, user_id, client_id, scope, salt, generation, \
                 rotated_at, created_at, last_used_at, absolute_expires_at, revoked_at, \
                 revoked_reason, user_agent, ip) \
                 SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14 \
                 FROM (SELECT 1 FROM users WHERE id = $2 AND password_version = $15 \
                       AND disabled_at IS NULL FOR SHARE) AS current_user_row",
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
            .bind(version)
            .execute(&self.pool)
            .await?;
            Ok(inserted.rows_affected() > 0)
        })
        .await
    }

    async fn session(&self, id: &str) -> StoreResult<Option<SessionRecord>> {
        self.bounded(async {
            sqlx::query(concat!(
                "SELECT ",
                session_cols!(),
                " FROM sessions s WHERE s.id = $1"
            ))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(session_of)
            .transpose()
        })
        .await
    }

    async fn session_with_user(&self, id: &str) -> StoreResult<Option<SessionWithUser>> {
        self.bounded(async {
            sqlx::query(concat!(
                "SELECT ",
                session_cols!(),
                ", ",
                user_cols!(),
                " FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = $1"
            ))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(|row| {
                Ok(SessionWithUser {
                    session: session_of(row)?,
                    user: user_of(row)?,
                })
            })
            .transpose()
        })
        .await
    }

    async fn advance_generation(
        &self,
        id: &str,
        from: u64,
        now: OffsetDateTime,
        audit: &AuditRecord,
    ) -> StoreResult<Advance> {
        // No session can be at a generation the column cannot hold.
        let Ok(from) = i64::try_from(from) else {
            return Ok(Advance::Lost);
        };
        // One statement, so one transaction and one round trip: the audit
        // row is inserted from the updated row, so only when the swap won.
        self.bounded(async {
            let row = sqlx::query(concat!(
                "WITH s AS (\
                   UPDATE sessions SET generation = generation + 1, rotated_at = $1, \
                   last_used_at = $1 \
                   WHERE id = $2 AND generation = $3 AND revoked_at IS NULL \
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
            .fetch_optional(&self.pool)
            .await?;
            Ok(match row {
                Some(row) => Advance::Advanced(Box::new(session_of(&row)?)),
                None => Advance::Lost,
            })
        })
        .await
    }

    async fn revoke_sessions(
        &self,
        scope: RevokeScope<'_>,
        now: OffsetDateTime,
        reason: &str,
    ) -> StoreResult<u64> {
        self.bounded(revoke_in(&self.pool, scope, ms(now), reason))
            .await
    }

    async fn live_sessions(
        &self,
        user_id: Option<&str>,
        now: OffsetDateTime,
        idle_since: OffsetDateTime,
    ) -> StoreResult<Vec<SessionRecord>> {
        self.bounded(async {
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
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(session_of)
                .collect()
        })
        .await
    }

    async fn count_live_sessions(
        &self,
        now: OffsetDateTime,
        idle_since: OffsetDateTime,
    ) -> StoreResult<u64> {
        self.bounded(async {
            let n: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM sessions WHERE revoked_at IS NULL \
                 AND absolute_expires_at > $1 AND last_used_at > $2",
            )
            .bind(ms(now))
            .bind(ms(idle_since))
            .fetch_one(&self.pool)
            .await?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    async fn insert_key(&self, k: &KeyRecord) -> StoreResult<()> {
        self.bounded(async {
            sqlx::query(concat!(
                "INSERT INTO signing_keys (",
                key_cols!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            ))
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
            .await?;
            Ok(())
        })
        .await
    }

    async fn list_keys(&self) -> StoreResult<Vec<KeyRecord>> {
        self.bounded(async {
            sqlx::query(concat!(
                "SELECT ",
                key_cols!(),
                " FROM signing_keys ORDER BY activates_at, created_at, kid COLLATE \"C\""
            ))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(key_of)
            .collect()
        })
        .await
    }

    async fn retire_key(
        &self,
        kid: &str,
        now: OffsetDateTime,
        purge: bool,
        promote: Option<&str>,
    ) -> StoreResult<()> {
        self.bounded(async {
            let mut tx = self.pool.begin().await?;
            sqlx::query(
                "UPDATE signing_keys SET retired_at = COALESCE(retired_at, $1), \
                 purged_at = CASE WHEN $2 THEN COALESCE(purged_at, $1) ELSE purged_at END \
                 WHERE kid = $3",
            )
            .bind(ms(now))
            .bind(purge)
            .bind(kid)
            .execute(&mut *tx)
            .await?;
            if let Some(successor) = promote {
                sqlx::query("UPDATE signing_keys SET activates_at = $1 WHERE kid = $2")
                    .bind(ms(now))
                    .bind(successor)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await
        })
        .await
    }

    async fn delete_keys(&self, kids: &[String]) -> StoreResult<u64> {
        self.bounded(async {
            let done = sqlx::query("DELETE FROM signing_keys WHERE kid = ANY($1)")
                .bind(kids)
                .execute(&self.pool)
                .await?;
            Ok(done.rows_affected())
        })
        .await
    }

    async fn secret_or_insert(&self, name: &str, candidate: &[u8]) -> StoreResult<Vec<u8>> {
        // The no-op update locks and returns the row that won. (`DO NOTHING`
        // and a `SELECT` in the same statement could miss a racer's row: the
        // statement's snapshot predates its commit.)
        self.bounded(async {
            sqlx::query(
                "INSERT INTO server_secrets AS t (name, value) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET value = t.value RETURNING value",
            )
            .bind(name)
            .bind(candidate)
            .fetch_one(&self.pool)
            .await?
            .try_get("value")
        })
        .await
    }

    async fn reserve_login_attempt(&self, limit: LoginLimit<'_>) -> StoreResult<LoginAttempt> {
        self.bounded(async {
            // One upsert counts the attempt or refuses it: under the limit
            // `count` moves on; at it `refusals` does; a finished window
            // starts again.
            let row = sqlx::query(
                "INSERT INTO login_failures AS f (key, count, window_started_at, refusals) \
                 VALUES ($1, 1, $2, 0) \
                 ON CONFLICT (key) DO UPDATE SET \
                   count = CASE WHEN f.window_started_at <= $3 THEN 1 \
                                WHEN f.count < $4 THEN f.count + 1 ELSE f.count END, \
                   refusals = CASE WHEN f.window_started_at <= $3 THEN 0 \
                                   WHEN f.count < $4 THEN f.refusals ELSE f.refusals + 1 END, \
                   window_started_at = CASE WHEN f.window_started_at <= $3 THEN $2 \
                                       ELSE f.window_started_at END \
                 RETURNING window_started_at, refusals",
            )
            .bind(limit.key)
            .bind(ms(limit.now))
            .bind(ms(limit.window_start_after))
            .bind(i64::from(limit.max_attempts))
            .fetch_one(&self.pool)
            .await?;
            let refusals: i64 = row.try_get("refusals")?;
            Ok(if refusals == 0 {
                LoginAttempt::Allowed
            } else {
                LoginAttempt::Refused {
                    window_started_at: time_of(&row, "window_started_at")?,
                    first: refusals == 1,
                }
            })
        })
        .await
    }

    async fn clear_login_failures(&self, key: &str) -> StoreResult<()> {
        self.bounded(async {
            sqlx::query("DELETE FROM login_failures WHERE key = $1")
                .bind(key)
                .execute(&self.pool)
                .await?;
            Ok(())
        })
        .await
    }

    async fn insert_client(&self, c: &ClientRecord) -> StoreResult<()> {
        self.bounded(async {
            sqlx::query(
                "INSERT INTO clients (id, secret_hash, scope, created_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(&c.id)
            .bind(&c.secret_hash)
            .bind(&c.scope)
            .bind(ms(c.created_at))
            .execute(&self.pool)
            .await?;
            Ok(())
        })
        .await
    }

    async fn client(&self, id: &str) -> StoreResult<Option<ClientRecord>> {
        self.bounded(async {
            sqlx::query("SELECT id, secret_hash, scope, created_at FROM clients WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?
                .as_ref()
                .map(client_of)
                .transpose()
        })
        .await
    }

    async fn list_clients(&self) -> StoreResult<Vec<ClientRecord>> {
        self.bounded(async {
            sqlx::query(
                "SELECT id, secret_hash, scope, created_at FROM clients ORDER BY id COLLATE \"C\"",
            )
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(client_of)
            .collect()
        })
        .await
    }

    async fn remove_client(&self, id: &str) -> StoreResult<bool> {
        self.bounded(async {
            let done = sqlx::query("DELETE FROM clients WHERE id = $1")
                .bind(id)
                .execute(&self.pool)
                .await?;
            Ok(done.rows_affected() > 0)
        })
        .await
    }

    async fn prune_sessions(
        &self,
        dead: DeadSessions,
        after: Option<&str>,
        batch: u32,
    ) -> StoreResult<SessionsPruned> {
        let after = after.unwrap_or_default();
        self.bounded(async {
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
            .fetch_one(&self.pool)
            .await?;
            let deleted: i64 = row.try_get("deleted")?;
            Ok(SessionsPruned {
                deleted: u64::try_from(deleted).unwrap_or(0),
                next: row.try_get("last")?,
            })
        })
        .await
    }

    async fn prune_login_failures(&self, before: OffsetDateTime, batch: u32) -> StoreResult<u64> {
        self.bounded(async {
            let done = sqlx::query(
                "DELETE FROM login_failures WHERE key IN (SELECT key FROM login_failures \
                 WHERE window_started_at <= $1 ORDER BY window_started_at LIMIT $2)",
            )
            .bind(ms(before))
            .bind(i64::from(batch))
            .execute(&self.pool)
            .await?;
            Ok(done.rows_affected())
        })
        .await
    }

    async fn prune_audit(&self, before: OffsetDateTime, batch: u32) -> StoreResult<u64> {
        self.bounded(async {
            let done = sqlx::query(
                "DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log \
                 WHERE at <= $1 ORDER BY at LIMIT $2)",
            )
            .bind(ms(before))
            .bind(i64::from(batch))
            .execute(&self.pool)
            .await?;
            Ok(done.rows_affected())
        })
        .await
    }

    async fn append_audit(&self, r: &AuditRecord) -> StoreResult<()> {
        self.bounded(async {
            sqlx::query(
                "INSERT INTO audit_log (at, event, user_id, session_id, ip, detail) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(ms(r.at))
            .bind(&r.event)
            .bind(&r.user_id)
            .bind(&r.session_id)
            .bind(&r.ip)
            .bind(&r.detail)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
        .await
    }

    async fn recent_audit(&self, limit: u32) -> StoreResult<Vec<AuditRecord>> {
        self.bounded(async {
            sqlx::query(
                "SELECT at, event, user_id, session_id, ip, detail FROM audit_log \
                 ORDER BY id DESC LIMIT $1",
            )
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(audit_of)
            .collect()
        })
        .await
    }
}
