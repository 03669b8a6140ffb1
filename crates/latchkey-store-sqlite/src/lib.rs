//! latchkey's [`Store`] on an embedded SQLite database (WAL mode).
//!
//! Writes go to one writer thread that owns the only writing connection and
//! commits whatever has queued up in one transaction (group commit), each
//! operation inside its own savepoint, answering only after the commit.
//! Reads run on pooled read connections in the calling task: they are
//! indexed point reads served from the page cache, cheaper than a hand-off
//! to another thread, and in WAL mode they never wait for the writer.

use std::path::Path;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use latchkey_core::audit::AuditRecord;
use latchkey_core::clock::{from_unix_millis, unix_millis};
use latchkey_core::keys::KeyRecord;
use latchkey_core::store::{
    Advance, ClientRecord, DeadSessions, LoginAttempt, LoginLimit, RevokeScope, SessionRecord,
    SessionWithUser, SessionsPruned, Store, StoreError, StoreResult, UserRecord,
};
use rusqlite::{params, Connection, ErrorCode, OpenFlags, OptionalExtension, Row};
use time::OffsetDateTime;
use tokio::sync::oneshot;

/// The schema, in order; `PRAGMA user_version` counts those applied.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_init.sql"),
    include_str!("../migrations/0002_clients.sql"),
    include_str!("../migrations/0003_hardening.sql"),
];

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
    /// Read connections kept open for reuse.
    pub max_idle_readers: usize,
    /// How long a statement waits for a lock held by another process.
    pub busy_timeout: Duration,
    /// Most write operations committed in one transaction.
    pub max_batch: usize,
}

impl Default for SqliteSettings {
    fn default() -> Self {
        Self {
            durability: Durability::Normal,
            max_idle_readers: 8,
            busy_timeout: Duration::from_secs(5),
            max_batch: 256,
        }
    }
}

type Reply = Box<dyn FnOnce(Option<&StoreError>) + Send>;
type Job = Box<dyn FnOnce(&Connection) -> Reply + Send>;

pub struct SqliteStore {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    readers: Arc<ReaderPool>,
}

struct ReaderPool {
    open: Box<dyn Fn() -> rusqlite::Result<Connection> + Send + Sync>,
    idle: Mutex<Vec<Connection>>,
    max_idle: usize,
}

impl ReaderPool {
    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> StoreResult<T> {
        let conn = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = match conn {
            Some(conn) => conn,
            None => (self.open)().map_err(unavailable)?,
        };
        let result = f(&conn).map_err(unavailable);
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.max_idle {
            idle.push(conn);
        }
        result
    }
}

fn unavailable(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(err, msg) if err.code == ErrorCode::ConstraintViolation => {
            StoreError::Conflict(msg.clone().unwrap_or_else(|| e.to_string()))
        }
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::IntegralValueOutOfRange(..) => StoreError::Corrupt(e.to_string()),
        _ => StoreError::Unavailable(e.to_string()),
    }
}

/// The file path of a `sqlite://PATH` URL (`sqlite:PATH` too); `None` for
/// an in-memory database.
pub fn database_path(url: &str) -> Result<Option<&str>, StoreError> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| StoreError::Unavailable(format!("not a sqlite:// URL: {url}")))?;
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() {
        return Err(StoreError::Unavailable(
            "the SQLite URL names no file".into(),
        ));
    }
    Ok((path != ":memory:").then_some(path))
}

/// The database holds password hashes and sessions: it, and the `-wal` and
/// `-shm` files SQLite makes with the database's own mode, are readable by
/// their owner only. A database made looser (by hand, or an older version)
/// is tightened, with a warning.
fn owner_only(path: &Path) -> StoreResult<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let failed = |e: std::io::Error| {
        StoreError::Unavailable(format!("cannot create {}: {e}", path.display()))
    };
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(failed(e)),
    }
    let mut files = vec![path.to_path_buf()];
    for suffix in ["-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        files.push(name.into());
    }
    for file in files {
        let Ok(meta) = std::fs::metadata(&file) else {
            continue;
        };
        if meta.permissions().mode() & 0o077 != 0 {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
                .map_err(failed)?;
            tracing::warn!(file = %file.display(), "was readable by others: now 0600");
        }
    }
    Ok(())
}

fn configure(conn: &Connection, settings: &SqliteSettings) -> rusqlite::Result<()> {
    conn.busy_timeout(settings.busy_timeout)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    let sync = match settings.durability {
        Durability::Normal => "NORMAL",
        Durability::Full => "FULL",
    };
    conn.pragma_update(None, "synchronous", sync)?;
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if missing) the database named by a `sqlite://PATH` URL.
    pub async fn connect(url: &str, settings: &SqliteSettings) -> StoreResult<Self> {
        let path = database_path(url)?.map(Path::new).map(Path::to_path_buf);
        if let Some(path) = &path {
            owner_only(path)?;
        }
        let writer = match &path {
            Some(path) => Connection::open(path),
            None => Connection::open_in_memory(),
        }
        .map_err(unavailable)?;
        writer
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0))
            .map_err(unavailable)?;
        configure(&writer, settings).map_err(unavailable)?;
        let (jobs, queue) = mpsc::channel::<Job>();
        let readers = match path {
            Some(path) => {
                let reader_settings = settings.clone();
                ReaderPool {
                    open: Box::new(move || {
                        let conn = Connection::open_with_flags(
                            &path,
                            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                        )?;
                        configure(&conn, &reader_settings)?;
                        Ok(conn)
                    }),
                    idle: Mutex::new(Vec::new()),
                    max_idle: settings.max_idle_readers,
                }
            }
            // Each connection to `:memory:` is its own database: reads go
            // through the writer thread too.
            None => ReaderPool {
                open: Box::new(|| Err(rusqlite::Error::InvalidPath("in-memory".into()))),
                idle: Mutex::new(Vec::new()),
                max_idle: 0,
            },
        };
        let max_batch = settings.max_batch.max(1);
        std::thread::Builder::new()
            .name("latchkey-sqlite-writer".into())
            .spawn(move || write_loop(&writer, &queue, max_batch))
            .map_err(|e| StoreError::Unavailable(format!("cannot start the writer: {e}")))?;
        Ok(Self {
            jobs: Mutex::new(Some(jobs)),
            readers: Arc::new(readers),
        })
    }

    /// Stops the writer thread once the queued operations are done.
    pub fn close(&self) {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// Runs `f` in the writer's next transaction; answers after the commit.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> StoreResult<T> {
        let (tx, rx) = oneshot::channel::<StoreResult<T>>();
        let job: Job = Box::new(move |conn| {
            let result = in_savepoint(conn, f);
            Box::new(move |commit_error: Option<&StoreError>| {
                let answer = match commit_error {
                    Some(e) => Err(StoreError::Unavailable(e.to_string())),
                    None => result,
                };
                let _ = tx.send(answer);
            })
        });
        let sender = self.jobs.lock().unwrap_or_else(|e| e.into_inner()).clone();
        sender
            .ok_or_else(|| StoreError::Unavailable("the store is closed".into()))?
            .send(job)
            .map_err(|_| StoreError::Unavailable("the SQLite writer stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("the SQLite writer stopped".into()))?
    }

    /// A point read (one indexed lookup): cheaper in the calling task than
    /// a hand-off to another thread.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> StoreResult<T> {
        if self.readers.max_idle == 0 {
            return self.write(f).await;
        }
        self.readers.with(f)
    }

    /// A read that may visit many rows: on the blocking pool, so that it
    /// never holds an async worker for longer than a hand-off.
    async fn scan<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> StoreResult<T> {
        if self.readers.max_idle == 0 {
            return self.write(f).await;
        }
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || readers.with(f))
            .await
            .map_err(|e| StoreError::Unavailable(format!("read task: {e}")))?
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.close();
    }
}

/// One operation of a batch: its failure undoes only its own writes.
fn in_savepoint<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> StoreResult<T> {
    run(conn, "SAVEPOINT op").map_err(unavailable)?;
    match f(conn) {
        Ok(value) => {
            run(conn, "RELEASE op").map_err(unavailable)?;
            Ok(value)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK TO op; RELEASE op");
            Err(unavailable(e))
        }
    }
}

/// A statement without parameters, prepared once per connection.
fn run(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

fn write_loop(conn: &Connection, queue: &mpsc::Receiver<Job>, max_batch: usize) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if let Err(e) = run(conn, "BEGIN IMMEDIATE") {
            tracing::warn!(error = %e, "SQLite: cannot begin a write transaction");
            // Dropping the jobs drops their answer channels: each caller
            // sees the store as unavailable.
            drop(batch);
            continue;
        }
        let replies: Vec<Reply> = batch.into_iter().map(|job| job(conn)).collect();
        let committed = run(conn, "COMMIT").map_err(unavailable);
        if committed.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        let error = committed.err();
        for reply in replies {
            reply(error.as_ref());
        }
    }
}

fn ms(t: OffsetDateTime) -> i64 {
    unix_millis(t)
}

fn opt_ms(t: Option<OffsetDateTime>) -> Option<i64> {
    t.map(unix_millis)
}

fn time_of(row: &Row<'_>, col: &str) -> rusqlite::Result<OffsetDateTime> {
    row.get::<_, i64>(col).map(from_unix_millis)
}

fn opt_time_of(row: &Row<'_>, col: &str) -> rusqlite::Result<Option<OffsetDateTime>> {
    row.get::<_, Option<i64>>(col)
        .map(|v| v.map(from_unix_millis))
}

// Column lists as macros, so that queries are `&'static str` built by
// `concat!` (no formatting on the hot path).
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

fn user_of(row: &Row<'_>) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        id: row.get("u_id")?,
        username: row.get("username")?,
        username_key: row.get("username_key")?,
        password_hash: row.get("password_hash")?,
        password_version: u64_of(row, "password_version")?,
        created_at: time_of(row, "u_created_at")?,
        disabled_at: opt_time_of(row, "disabled_at")?,
    })
}

fn u64_of(row: &Row<'_>, col: &str) -> rusqlite::Result<u64> {
    let value: i64 = row.get(col)?;
    u64::try_from(value).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(0, value))
}

fn session_of(row: &Row<'_>) -> rusqlite::Result<SessionRecord> {
    Ok(SessionRecord {
        id: row.get("id")?,
        user_id: row.get("user_id")?,
        client_id: row.get("client_id")?,
        scope: row.get("scope")?,
        salt: row.get("salt")?,
        generation: u64_of(row, "generation")?,
        rotated_at: opt_time_of(row, "rotated_at")?,
        created_at: time_of(row, "created_at")?,
        last_used_at: time_of(row, "last_used_at")?,
        absolute_expires_at: time_of(row, "absolute_expires_at")?,
        revoked_at: opt_time_of(row, "revoked_at")?,
        revoked_reason: row.get("revoked_reason")?,
        user_agent: row.get("user_agent")?,
        ip: row.get("ip")?,
    })
}

fn key_of(row: &Row<'_>) -> rusqlite::Result<KeyRecord> {
    Ok(KeyRecord {
        kid: row.get("kid")?,
        alg: row.get("alg")?,
        private_key: row.get("private_key")?,
        encrypted: row.get("encrypted")?,
        public_jwk: row.get("public_jwk")?,
        created_at: time_of(row, "created_at")?,
        activates_at: time_of(row, "activates_at")?,
        retired_at: opt_time_of(row, "retired_at")?,
        purged_at: opt_time_of(row, "purged_at")?,
    })
}

fn audit_of(row: &Row<'_>) -> rusqlite::Result<AuditRecord> {
    Ok(AuditRecord {
        at: time_of(row, "at")?,
        event: row.get("event")?,
        user_id: row.get("user_id")?,
        session_id: row.get("session_id")?,
        ip: row.get("ip")?,
        detail: row.get("detail")?,
    })
}

fn i64_param(value: u64) -> rusqlite::Result<i64> {
    i64::try_from(value)
        .map_err(|_| rusqlite::Error::ToSqlConversionFailure("counter out of range".into()))
}

fn client_of(row: &Row<'_>) -> rusqlite::Result<ClientRecord> {
    Ok(ClientRecord {
        id: row.get("id")?,
        secret_hash: row.get("secret_hash")?,
        scope: row.get("scope")?,
        created_at: time_of(row, "created_at")?,
    })
}

fn insert_audit(conn: &Connection, r: &AuditRecord) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO audit_log (at, event, user_id, session_id, ip, detail) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        ms(r.at),
        r.event,
        r.user_id,
        r.session_id,
        r.ip,
        r.detail
    ])?;
    Ok(())
}

/// One statement counts an attempt or refuses it: under the limit `count`
/// moves on; at it `refusals` does; a finished window starts again.
const LOGIN_ATTEMPT_UPSERT: &str =
    "INSERT INTO login_failures (key, count, window_started_at, refusals) \
     VALUES (?1, 1, ?2, 0) \
     ON CONFLICT (key) DO UPDATE SET \
       count = CASE WHEN window_started_at <= ?3 THEN 1 \
                    WHEN count < ?4 THEN count + 1 ELSE count END, \
       refusals = CASE WHEN window_started_at <= ?3 THEN 0 \
                       WHEN count < ?4 THEN refusals ELSE refusals + 1 END, \
       window_started_at = CASE WHEN window_started_at <= ?3 THEN ?2 ELSE window_started_at END \
     RETURNING window_started_at, refusals";

fn login_attempt(window_started_at: OffsetDateTime, refusals: i64) -> LoginAttempt {
    if refusals == 0 {
        LoginAttempt::Allowed
    } else {
        LoginAttempt::Refused {
            window_started_at,
            first: refusals == 1,
        }
    }
}

/// Owned form of [`RevokeScope`], to move into the writer.
enum Revoke {
    One(String),
    User {
        user_id: String,
        except: Option<String>,
    },
}

impl From<RevokeScope<'_>> for Revoke {
    fn from(scope: RevokeScope<'_>) -> Self {
        match scope {
            RevokeScope::One(id) => Self::One(id.to_owned()),
            RevokeScope::User { user_id, except } => Self::User {
                user_id: user_id.to_owned(),
                except: except.map(str::to_owned),
            },
        }
    }
}

fn revoke_in(conn: &Connection, scope: &Revoke, now: i64, reason: &str) -> rusqlite::Result<u64> {
    let n = match scope {
        Revoke::One(id) => conn
            .prepare_cached(
                "UPDATE sessions SET revoked_at = ?1, revoked_reason = ?2 \
                 WHERE id = ?3 AND revoked_at IS NULL",
            )?
            .execute(params![now, reason, id])?,
        Revoke::User { user_id, except } => conn
            .prepare_cached(
                "UPDATE sessions SET revoked_at = ?1, revoked_reason = ?2 \
                 WHERE user_id = ?3 AND revoked_at IS NULL AND id IS NOT ?4",
            )?
            .execute(params![now, reason, user_id, except])?,
    };
    Ok(n as u64)
}

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> StoreResult<()> {
        self.write(|conn| {
            let applied: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
            let applied = usize::try_from(applied).unwrap_or(0);
            for (index, migration) in MIGRATIONS.iter().enumerate().skip(applied) {
                conn.execute_batch(migration)?;
                conn.pragma_update(None, "user_version", index as i64 + 1)?;
            }
            Ok(())
        })
        .await
    }

    async fn ping(&self) -> StoreResult<()> {
        self.read(|conn| conn.query_row("SELECT 1", [], |_| Ok(())))
            .await
    }

    async fn create_user(&self, user: &UserRecord) -> StoreResult<()> {
        let u = user.clone();
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO users (id, username, username_key, password_hash, password_version, \
                 created_at, disabled_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                u.id,
                u.username,
                u.username_key,
                u.password_hash,
                i64_param(u.password_version)?,
                ms(u.created_at),
                opt_ms(u.disabled_at)
            ])?;
            Ok(())
        })
        .await
    }

    async fn user_by_key(&self, username_key: &str) -> StoreResult<Option<UserRecord>> {
        let key = username_key.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(concat!(
                "SELECT ",
                user_cols!(),
                " FROM users u WHERE u.username_key = ?1"
            ))?
            .query_row([key], user_of)
            .optional()
        })
        .await
    }

    async fn user_by_id(&self, id: &str) -> StoreResult<Option<UserRecord>> {
        let id = id.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(concat!(
                "SELECT ",
                user_cols!(),
                " FROM users u WHERE u.id = ?1"
            ))?
            .query_row([id], user_of)
            .optional()
        })
        .await
    }

    async fn list_users(&self) -> StoreResult<Vec<UserRecord>> {
        self.scan(|conn| {
            conn.prepare_cached(concat!(
                "SELECT ",
                user_cols!(),
                " FROM users u ORDER BY u.created_at, u.id"
            ))?
            .query_map([], user_of)?
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
        let (user_id, hash) = (user_id.to_owned(), hash.to_owned());
        let (scope, reason) = (Revoke::from(revoke), reason.to_owned());
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE users SET password_hash = ?1, password_version = password_version + 1 \
                 WHERE id = ?2",
            )?
            .execute(params![hash, user_id])?;
            revoke_in(conn, &scope, ms(now), &reason)?;
            Ok(())
        })
        .await
    }

    async fn rehash_password(&self, user_id: &str, version: u64, hash: &str) -> StoreResult<bool> {
        let (user_id, hash) = (user_id.to_owned(), hash.to_owned());
        self.write(move |conn| {
            Ok(conn
                .prepare_cached(
                    "UPDATE users SET password_hash = ?1 WHERE id = ?2 AND password_version = ?3",
                )?
                .execute(params![hash, user_id, i64_param(version)?])?
                > 0)
        })
        .await
    }

    async fn set_user_disabled(
        &self,
        user_id: &str,
        disabled_at: Option<OffsetDateTime>,
    ) -> StoreResult<bool> {
        let user_id = user_id.to_owned();
        self.write(move |conn| {
            let found = conn
                .prepare_cached("UPDATE users SET disabled_at = ?1 WHERE id = ?2")?
                .execute(params![opt_ms(disabled_at), user_id])?
                > 0;
            if let Some(now) = disabled_at {
                let scope = Revoke::User {
                    user_id,
                    except: None,
                };
                revoke_in(conn, &scope, ms(now), "user_disabled")?;
            }
            Ok(found)
        })
        .await
    }

    async fn create_session(
        &self,
        session: &SessionRecord,
        password_version: u64,
    ) -> StoreResult<bool> {
        let s = session.clone();
        self.write(move |conn| {
            let inserted = conn.prepare_cached(
                "INSERT INTO sessions (id, user_id, client_id, scope, salt, generation, rotated_at, \
                 created_at, last_used_at, absolute_expires_at, revoked_at, revoked_reason, user_agent, ip) \
                 SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14 \
                 FROM users WHERE id = ?2 AND password_version = ?15 AND disabled_at IS NULL",
            )?
            .execute(params![
                s.id,
                s.user_id,
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
                i64_param(password_version)?
            ])?;
            Ok(inserted > 0)
        })
        .await
    }

    async fn session(&self, id: &str) -> StoreResult<Option<SessionRecord>> {
        let id = id.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(concat!(
                "SELECT ",
                session_cols!(),
                " FROM sessions s WHERE s.id = ?1"
            ))?
            .query_row([id], session_of)
            .optional()
        })
        .await
    }

    async fn session_with_user(&self, id: &str) -> StoreResult<Option<SessionWithUser>> {
        let id = id.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(concat!(
                "SELECT ",
                session_cols!(),
                ", ",
                user_cols!(),
                " FROM sessions s JOIN users u ON u.id = s.user_id \
                 WHERE s.id = ?1"
            ))?
            .query_row([id], |row| {
                Ok(SessionWithUser {
                    session: session_of(row)?,
                    user: user_of(row)?,
                })
            })
            .optional()
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
        let (id, audit) = (id.to_owned(), audit.clone());
        self.write(move |conn| {
            let row = conn
                .prepare_cached(
                    "UPDATE sessions SET generation = generation + 1, rotated_at = ?1, last_used_at = ?1 \
                     WHERE id = ?2 AND generation = ?3 AND revoked_at IS NULL RETURNING *",
                )?
                .query_row(params![ms(now), id, i64_param(from)?], session_of)
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

    async fn revoke_sessions(
        &self,
        scope: RevokeScope<'_>,
        now: OffsetDateTime,
        reason: &str,
    ) -> StoreResult<u64> {
        let (scope, reason) = (Revoke::from(scope), reason.to_owned());
        self.write(move |conn| revoke_in(conn, &scope, ms(now), &reason))
            .await
    }

    async fn live_sessions(
        &self,
        user_id: Option<&str>,
        now: OffsetDateTime,
        idle_since: OffsetDateTime,
    ) -> StoreResult<Vec<SessionRecord>> {
        let user_id = user_id.map(str::to_owned);
        self.scan(move |conn| {
            conn.prepare_cached(concat!(
                "SELECT ",
                session_cols!(),
                " FROM sessions s WHERE (?1 IS NULL OR s.user_id = ?1) \
                 AND s.revoked_at IS NULL AND s.absolute_expires_at > ?2 AND s.last_used_at > ?3 \
                 ORDER BY s.created_at, s.id"
            ))?
            .query_map(params![user_id, ms(now), ms(idle_since)], session_of)?
            .collect()
        })
        .await
    }

    async fn count_live_sessions(
        &self,
        now: OffsetDateTime,
        idle_since: OffsetDateTime,
    ) -> StoreResult<u64> {
        self.scan(move |conn| {
            conn.prepare_cached(
                "SELECT COUNT(*) FROM sessions WHERE revoked_at IS NULL \
                 AND absolute_expires_at > ?1 AND last_used_at > ?2",
            )?
            .query_row(params![ms(now), ms(idle_since)], |row| row.get::<_, i64>(0))
            .map(|n| n.max(0) as u64)
        })
        .await
    }

    async fn insert_key(&self, key: &KeyRecord) -> StoreResult<()> {
        let k = key.clone();
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO signing_keys (kid, alg, private_key, encrypted, public_jwk, created_at, \
                 activates_at, retired_at, purged_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                k.kid,
                k.alg,
                k.private_key,
                k.encrypted,
                k.public_jwk,
                ms(k.created_at),
                ms(k.activates_at),
                opt_ms(k.retired_at),
                opt_ms(k.purged_at)
            ])?;
            Ok(())
        })
        .await
    }

    async fn list_keys(&self) -> StoreResult<Vec<KeyRecord>> {
        self.scan(|conn| {
            conn.prepare_cached("SELECT * FROM signing_keys ORDER BY activates_at, created_at")?
                .query_map([], key_of)?
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
        let (kid, promote) = (kid.to_owned(), promote.map(str::to_owned));
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE signing_keys SET retired_at = COALESCE(retired_at, ?1), \
                 purged_at = CASE WHEN ?2 THEN COALESCE(purged_at, ?1) ELSE purged_at END WHERE kid = ?3",
            )?
            .execute(params![ms(now), purge, kid])?;
            if let Some(successor) = promote {
                conn.prepare_cached("UPDATE signing_keys SET activates_at = ?1 WHERE kid = ?2")?
                    .execute(params![ms(now), successor])?;
            }
            Ok(())
        })
        .await
    }

    async fn delete_keys(&self, kids: &[String]) -> StoreResult<u64> {
        let kids = kids.to_vec();
        self.write(move |conn| {
            let mut deleted = 0;
            for kid in &kids {
                deleted += conn
                    .prepare_cached("DELETE FROM signing_keys WHERE kid = ?1")?
                    .execute([kid])? as u64;
            }
            Ok(deleted)
        })
        .await
    }

    async fn secret_or_insert(&self, name: &str, candidate: &[u8]) -> StoreResult<Vec<u8>> {
        let (name, candidate) = (name.to_owned(), candidate.to_vec());
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO server_secrets (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
            )?
            .execute(params![name, candidate])?;
            conn.prepare_cached("SELECT value FROM server_secrets WHERE name = ?1")?
                .query_row([name], |row| row.get(0))
        })
        .await
    }

    async fn reserve_login_attempt(&self, limit: LoginLimit<'_>) -> StoreResult<LoginAttempt> {
        let key = limit.key.to_owned();
        let (now, expired) = (ms(limit.now), ms(limit.window_start_after));
        let max = i64::from(limit.max_attempts);
        self.write(move |conn| {
            let (window_started_at, refusals) = conn
                .prepare_cached(LOGIN_ATTEMPT_UPSERT)?
                .query_row(params![key, now, expired, max], |row| {
                    Ok((
                        time_of(row, "window_started_at")?,
                        row.get::<_, i64>("refusals")?,
                    ))
                })?;
            Ok(login_attempt(window_started_at, refusals))
        })
        .await
    }

    async fn clear_login_failures(&self, key: &str) -> StoreResult<()> {
        let key = key.to_owned();
        self.write(move |conn| {
            conn.prepare_cached("DELETE FROM login_failures WHERE key = ?1")?
                .execute([key])?;
            Ok(())
        })
        .await
    }

    async fn insert_client(&self, client: &ClientRecord) -> StoreResult<()> {
        let c = client.clone();
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO clients (id, secret_hash, scope, created_at) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![c.id, c.secret_hash, c.scope, ms(c.created_at)])?;
            Ok(())
        })
        .await
    }

    async fn client(&self, id: &str) -> StoreResult<Option<ClientRecord>> {
        let id = id.to_owned();
        self.read(move |conn| {
            conn.prepare_cached("SELECT * FROM clients WHERE id = ?1")?
                .query_row([id], client_of)
                .optional()
        })
        .await
    }

    async fn list_clients(&self) -> StoreResult<Vec<ClientRecord>> {
        self.scan(|conn| {
            conn.prepare_cached("SELECT * FROM clients ORDER BY id")?
                .query_map([], client_of)?
                .collect()
        })
        .await
    }

    async fn remove_client(&self, id: &str) -> StoreResult<bool> {
        let id = id.to_owned();
        self.write(move |conn| {
            Ok(conn
                .prepare_cached("DELETE FROM clients WHERE id = ?1")?
                .execute([id])?
                > 0)
        })
        .await
    }

    async fn prune_sessions(
        &self,
        dead: DeadSessions,
        after: Option<&str>,
        batch: u32,
    ) -> StoreResult<SessionsPruned> {
        let after = after.unwrap_or_default().to_owned();
        self.write(move |conn| {
            // The window: the next `batch` ids. Bounded work whatever the
            // table's size or how few of its rows are dead.
            let last: Option<String> = conn
                .prepare_cached(
                    "SELECT MAX(id) FROM (SELECT id FROM sessions WHERE id > ?1 \
                     ORDER BY id LIMIT ?2)",
                )?
                .query_row(params![after, batch], |row| row.get(0))?;
            let Some(last) = last else {
                return Ok(SessionsPruned {
                    deleted: 0,
                    next: None,
                });
            };
            let deleted = conn
                .prepare_cached(
                    "DELETE FROM sessions WHERE id > ?1 AND id <= ?2 AND \
                     (revoked_at IS NOT NULL OR absolute_expires_at <= ?3 OR last_used_at <= ?4)",
                )?
                .execute(params![after, last, ms(dead.now), ms(dead.idle_before)])?;
            Ok(SessionsPruned {
                deleted: deleted as u64,
                next: Some(last),
            })
        })
        .await
    }

    async fn prune_login_failures(&self, before: OffsetDateTime, batch: u32) -> StoreResult<u64> {
        self.write(move |conn| {
            Ok(conn
                .prepare_cached(
                    "DELETE FROM login_failures WHERE key IN (SELECT key FROM login_failures \
                     WHERE window_started_at <= ?1 ORDER BY window_started_at LIMIT ?2)",
                )?
                .execute(params![ms(before), batch])? as u64)
        })
        .await
    }

    async fn prune_audit(&self, before: OffsetDateTime, batch: u32) -> StoreResult<u64> {
        self.write(move |conn| {
            Ok(conn
                .prepare_cached(
                    "DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log \
                     WHERE at <= ?1 ORDER BY at LIMIT ?2)",
                )?
                .execute(params![ms(before), batch])? as u64)
        })
        .await
    }

    async fn append_audit(&self, record: &AuditRecord) -> StoreResult<()> {
        let record = record.clone();
        self.write(move |conn| insert_audit(conn, &record)).await
    }

    async fn recent_audit(&self, limit: u32) -> StoreResult<Vec<AuditRecord>> {
        self.scan(move |conn| {
            conn.prepare_cached("SELECT * FROM audit_log ORDER BY id DESC LIMIT ?1")?
                .query_map([i64::from(limit)], audit_of)?
                .collect()
        })
        .await
    }
}
