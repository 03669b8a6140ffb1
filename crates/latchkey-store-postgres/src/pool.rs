//! The connection machinery: settings, the pool and what each new
//! connection sets, the client-side deadline (`bounded`), the migrations
//! runner, and what engine errors mean. The operations themselves live in
//! the domain files.

use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use latchkey_core::store::{StoreError, StoreResult};
use sqlx::error::ErrorKind;
use sqlx::migrate::MigrateError;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::Executor;

use crate::kept::{on_held, Held, Kept};

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
    pub(crate) pool: PgPool,
    /// Connections between the hot operations (see [`Kept`]).
    kept: Arc<Kept>,
    /// The connection that listens for other nodes' revocations.
    pub(crate) listener: Arc<tokio::sync::Mutex<Option<sqlx::postgres::PgListener>>>,
    /// Whether the pool is large enough to give a connection to listening.
    pub(crate) listens: bool,
    /// Longest an operation may take end to end; `None` when unbounded.
    deadline: Option<Duration>,
}

/// What an sqlx error means to the service: integrity violations (unique,
/// foreign key, not null, check) → `Conflict`, as in the SQLite store;
/// values that do not decode or encode → `Corrupt`; anything else (the
/// server down, a timeout, a broken connection) → `Unavailable`.
pub(crate) fn store_error(e: sqlx::Error) -> StoreError {
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

/// What a failed migration means: an engine error as [`store_error`] says
/// (an unavailable one naming the migration), a schema this build does not
/// know → `Corrupt`.
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

/// How the pool's connections are shared: one listens for the revocation
/// feed's notifications (when there are at least three), most are kept for
/// the operations of every request, and at least a quarter (one at least)
/// stays in sqlx's pool for everything else, which must never starve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PoolShare {
    listens: bool,
    kept: usize,
}

impl PoolShare {
    fn of(max_connections: u32) -> Self {
        let max = max_connections as usize;
        let listens = max >= 3;
        let free = (max / 4).max(1);
        Self {
            listens,
            kept: max.saturating_sub(free + usize::from(listens)),
        }
    }
}

impl PostgresStore {
    /// Connects to the database named by a `postgres://` (or
    /// `postgresql://`) URL and checks that it answers: an unreachable
    /// database answers `Unavailable` within `acquire_timeout`.
    pub async fn connect(url: &str, settings: &PostgresSettings) -> StoreResult<Self> {
        let store = Self::connect_lazy(url, settings)?;
        ping(&store).await?;
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
        let share = PoolShare::of(settings.max_connections);
        Ok(Self {
            pool: pool_options(settings).connect_lazy_with(options),
            listener: Arc::default(),
            listens: share.listens,
            kept: Arc::new(Kept::new(share.kept)),
            deadline,
        })
    }

    /// Closes every connection; operations after this answer `Unavailable`.
    pub async fn close(&self) {
        *self.listener.lock().await = None;
        self.kept.release_all();
        self.pool.close().await;
    }

    /// One batch of a prune: `delete` removes at most `$2` rows at or before
    /// the instant `$1`; answers how many it did.
    pub(crate) async fn delete_batch(
        &self,
        delete: &'static str,
        before: time::OffsetDateTime,
        batch: u32,
    ) -> StoreResult<u64> {
        self.bounded(async {
            let done = sqlx::query(delete)
                .bind(latchkey_store_sql::ms(before))
                .bind(i64::from(batch))
                .execute(&self.pool)
                .await?;
            Ok(done.rows_affected())
        })
        .await
    }

    /// The row `select` finds by its one text parameter, if any.
    pub(crate) async fn one<T>(
        &self,
        select: &'static str,
        key: &str,
        map: fn(&sqlx::postgres::PgRow) -> Result<T, sqlx::Error>,
    ) -> StoreResult<Option<T>> {
        self.bounded(async {
            let row = on_held!(self, |conn| sqlx::query(select)
                .bind(key)
                .fetch_optional(conn))?;
            row.as_ref().map(map).transpose()
        })
        .await
    }

    /// A connection for one of the operations every request makes (see
    /// [`on_held`]).
    pub(crate) fn drop_kept(&self) {
        self.kept.drop_idle();
    }

    pub(crate) async fn held(&self) -> Result<Held, sqlx::Error> {
        self.kept.take(&self.pool).await
    }

    /// Runs one operation under the client-side deadline.
    pub(crate) async fn bounded<T>(
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

/// Applies `migrations/`; several nodes may run this at once.
pub(crate) async fn migrate(store: &PostgresStore) -> StoreResult<()> {
    let mut conn = store.pool.acquire().await.map_err(store_error)?;
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

pub(crate) async fn ping(store: &PostgresStore) -> StoreResult<()> {
    store
        .bounded(async {
            sqlx::query("SELECT 1").execute(&store.pool).await?;
            Ok(())
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::PoolShare;

    #[test]
    fn every_use_keeps_a_share_of_the_pool() {
        let share = |max| {
            let s = PoolShare::of(max);
            (s.listens, s.kept)
        };
        assert_eq!(share(16), (true, 11));
        assert_eq!(share(4), (true, 2));
        assert_eq!(share(3), (true, 1));
        assert_eq!(share(2), (false, 1));
        assert_eq!(share(1), (false, 0));
    }
}
