//! The connection machinery: settings, the database file and its mode, the
//! writer thread with its group commit and savepoints, the pool of read
//! connections, the three ways an operation runs (`write`, `read`, `scan`),
//! the migrations, and what engine errors mean. The operations themselves
//! live in the domain files.

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use latchkey_core::store::{StoreError, StoreResult};
use rusqlite::{Connection, ErrorCode, OpenFlags};
use time::OffsetDateTime;
use tokio::sync::oneshot;

/// The schema, in order; `PRAGMA user_version` counts those applied.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_init.sql"),
    include_str!("../migrations/0002_clients.sql"),
    include_str!("../migrations/0003_hardening.sql"),
    include_str!("../migrations/0004_sessions_by_client.sql"),
    include_str!("../migrations/0005_revocations.sql"),
    include_str!("../migrations/0006_email_recovery.sql"),
    include_str!("../migrations/0007_mfa.sql"),
    include_str!("../migrations/0008_passkeys.sql"),
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
    /// The writer's page cache, in KiB. Readers lose theirs whenever
    /// anything is written (WAL), so only the writer's is worth sizing: it
    /// keeps the B-trees' inner pages of a large store, and a refresh's
    /// compare-and-swap then reads only leaves.
    pub writer_cache_kib: u32,
    /// How often the checkpointer copies the WAL into the database file.
    pub checkpoint_interval: Duration,
}

impl Default for SqliteSettings {
    fn default() -> Self {
        Self {
            durability: Durability::Normal,
            max_idle_readers: 8,
            busy_timeout: Duration::from_secs(5),
            max_batch: 256,
            writer_cache_kib: 64 * 1024,
            checkpoint_interval: Duration::from_millis(100),
        }
    }
}

type Reply = Box<dyn FnOnce(Option<&StoreError>) + Send>;
type Job = Box<dyn FnOnce(&Connection) -> Reply + Send>;

/// One SQLite database: its writer thread and its read connections.
pub struct SqliteStore {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    readers: Arc<ReaderPool>,
    /// `<database>.secret`, where the refresh-token secret lives without a
    /// master key; `None` for an in-memory database.
    pub(crate) secret_file: Option<PathBuf>,
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
            None => (self.open)().map_err(store_error)?,
        };
        let result = f(&conn).map_err(store_error);
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.max_idle {
            idle.push(conn);
        }
        result
    }
}

/// What a rusqlite error means to the service: constraint violations →
/// `Conflict`, values that do not decode or do not fit → `Corrupt`,
/// anything else (I/O, locks, a closed connection) → `Unavailable`.
pub(crate) fn store_error(e: rusqlite::Error) -> StoreError {
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
        .map_err(store_error)?;
        writer
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0))
            .map_err(store_error)?;
        configure(&writer, settings).map_err(store_error)?;
        writer
            .pragma_update(None, "cache_size", -i64::from(settings.writer_cache_kib))
            .map_err(store_error)?;
        // Checkpoints are the checkpointer's (a file store); the writer's own
        // are the fallback that bounds the WAL should it fall behind.
        let autocheckpoint = if path.is_some() {
            WAL_FALLBACK_PAGES
        } else {
            1000
        };
        writer
            .pragma_update(None, "wal_autocheckpoint", autocheckpoint)
            .map_err(store_error)?;
        let checkpointer = match &path {
            Some(path) => {
                let conn = Connection::open(path).map_err(store_error)?;
                configure(&conn, settings).map_err(store_error)?;
                Some(conn)
            }
            None => None,
        };
        let (jobs, queue) = mpsc::channel::<Job>();
        let secret_file = path.as_ref().map(|p| {
            let mut name = p.as_os_str().to_owned();
            name.push(".secret");
            PathBuf::from(name)
        });
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
        // The checkpointer stops when the writer does (its channel closes).
        let (writer_alive, writer_gone) = mpsc::channel::<()>();
        if let Some(conn) = checkpointer {
            let every = settings.checkpoint_interval;
            std::thread::Builder::new()
                .name("latchkey-sqlite-checkpointer".into())
                .spawn(move || checkpoint_loop(&conn, &writer_gone, every))
                .map_err(|e| {
                    StoreError::Unavailable(format!("cannot start the checkpointer: {e}"))
                })?;
        }
        std::thread::Builder::new()
            .name("latchkey-sqlite-writer".into())
            .spawn(move || {
                write_loop(&writer, &queue, max_batch);
                drop(writer_alive);
            })
            .map_err(|e| StoreError::Unavailable(format!("cannot start the writer: {e}")))?;
        Ok(Self {
            jobs: Mutex::new(Some(jobs)),
            readers: Arc::new(readers),
            secret_file,
        })
    }

    /// Stops the writer thread once the queued operations are done.
    pub fn close(&self) {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// One batch of a prune: `delete` removes at most `?2` rows at or before
    /// the instant `?1`; answers how many it did.
    pub(crate) async fn delete_batch(
        &self,
        delete: &'static str,
        before: OffsetDateTime,
        batch: u32,
    ) -> StoreResult<u64> {
        self.write(move |conn| {
            let deleted = conn
                .prepare_cached(delete)?
                .execute(rusqlite::params![latchkey_store_sql::ms(before), batch])?;
            Ok(deleted as u64)
        })
        .await
    }

    /// Runs `f` in the writer's next transaction; answers after the commit.
    pub(crate) async fn write<T: Send + 'static>(
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
    pub(crate) async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> StoreResult<T> {
        if self.readers.max_idle == 0 {
            return self.write(f).await;
        }
        self.readers.with(f)
    }

    /// The row `select` finds by its one text parameter, if any.
    pub(crate) async fn one<T: Send + 'static>(
        &self,
        select: &'static str,
        key: &str,
        map: fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> StoreResult<Option<T>> {
        let key = key.to_owned();
        self.read(move |conn| {
            rusqlite::OptionalExtension::optional(
                conn.prepare_cached(select)?.query_row([key], map),
            )
        })
        .await
    }

    /// A read that may visit many rows: on the blocking pool, so that it
    /// never holds an async worker for longer than a hand-off.
    pub(crate) async fn scan<T: Send + 'static>(
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

/// Applies the migrations this database has not seen yet, in order.
pub(crate) async fn migrate(store: &SqliteStore) -> StoreResult<()> {
    // A schema a newer build made: this one would misread it (and any
    // command migrates), so it stops, as the PostgreSQL store does.
    let applied: i64 = store
        .write(|conn| conn.query_row("PRAGMA user_version", [], |row| row.get(0)))
        .await?;
    if usize::try_from(applied).is_ok_and(|n| n > MIGRATIONS.len()) {
        return Err(StoreError::Corrupt(format!(
            "the database's schema is at version {applied}, newer than this build's {}: \
             run the latchkey that made it",
            MIGRATIONS.len()
        )));
    }
    store
        .write(|conn| {
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

pub(crate) async fn ping(store: &SqliteStore) -> StoreResult<()> {
    store
        .read(|conn| conn.query_row("SELECT 1", [], |_| Ok(())))
        .await
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
    run(conn, "SAVEPOINT op").map_err(store_error)?;
    match f(conn) {
        Ok(value) => {
            run(conn, "RELEASE op").map_err(store_error)?;
            Ok(value)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK TO op; RELEASE op");
            Err(store_error(e))
        }
    }
}

/// A statement without parameters, prepared once per connection.
fn run(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// WAL pages past which the checkpointer restarts the log (briefly holding
/// writers back), so that it stays short under a write load that never
/// pauses: 16 MiB.
const WAL_RESTART_PAGES: i64 = 4_096;
/// WAL pages past which the writer checkpoints itself, should the
/// checkpointer fall behind: 64 MiB.
const WAL_FALLBACK_PAGES: i64 = 16_384;

/// Copies the WAL into the database file beside the writer, so that no
/// commit waits for a checkpoint (the writer's own, after a commit, held
/// every answer of its batch), and restarts the log when it grows long.
fn checkpoint_loop(conn: &Connection, writer_gone: &mpsc::Receiver<()>, every: Duration) {
    while let Err(mpsc::RecvTimeoutError::Timeout) = writer_gone.recv_timeout(every) {
        let passive = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            row.get::<_, i64>(1)
        });
        let outcome = match passive {
            Ok(log) if log >= WAL_RESTART_PAGES => conn
                .query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()))
                .map(drop),
            other => other.map(drop),
        };
        if let Err(e) = outcome {
            tracing::warn!(error = %e, "SQLite: checkpoint failed");
        }
    }
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
        let committed = run(conn, "COMMIT").map_err(store_error);
        if committed.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        let error = committed.err();
        for reply in replies {
            reply(error.as_ref());
        }
    }
}
