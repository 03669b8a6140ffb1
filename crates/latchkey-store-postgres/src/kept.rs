//! Connections kept between operations, in front of sqlx's pool.
//!
//! sqlx 0.8 pings every connection handed back to its pool (one more round
//! trip to the database per operation, off the request's path but not off
//! the database's). The hot operations take a connection from here instead:
//! one that worked last time comes back to this list without the ping, so a
//! refresh or an access check costs the database one request. sqlx's pool
//! still opens every connection and bounds how many there are. A connection
//! idle for a while is pinged before use (after a database restart callers
//! get fresh connections, not errors), and one kept for long goes back to
//! sqlx now and then, where its lifetime limits apply.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::postgres::PgPool;
use sqlx::{Connection as _, Postgres};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a connection may sit unused before it is checked first.
pub(crate) const PING_WHEN_IDLE_FOR: Duration = Duration::from_secs(1);

/// How long a connection stays out of sqlx's pool before it goes back
/// (sqlx then checks it, and closes it past its lifetime).
const RETURN_AFTER: Duration = Duration::from_secs(60);

struct Idle {
    conn: PoolConnection<Postgres>,
    /// When this store took it from sqlx's pool.
    taken_at: Instant,
    /// When its last operation ended.
    used_at: Instant,
}

/// The connections that finished an operation without an error, most
/// recently used last, and the permits that bound how many this store holds
/// (kept or in use): fewer than the pool's size, so that the other
/// operations always find a connection in sqlx's pool, and an operation
/// waiting here is served by the next one that ends.
pub(crate) struct Kept {
    idle: Mutex<IdleList>,
    permits: Arc<Semaphore>,
    limit: usize,
}

#[derive(Default)]
struct IdleList {
    conns: Vec<Idle>,
    /// The store is closing: nothing is kept any more.
    closed: bool,
}

impl std::fmt::Debug for Kept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kept")
            .field("idle", &self.list().conns.len())
            .finish()
    }
}

impl Kept {
    /// Keeps at most `limit` connections (none: every operation uses sqlx's pool).
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            idle: Mutex::default(),
            permits: Arc::new(Semaphore::new(limit)),
            limit,
        }
    }

    fn list(&self) -> MutexGuard<'_, IdleList> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A connection: a kept one if there is one that is fit, else one from
    /// the pool.
    pub(crate) async fn take(self: &Arc<Self>, pool: &PgPool) -> Result<Held, sqlx::Error> {
        // No permit at all (a pool of one): nothing is kept.
        let permit = match self.limit {
            0 => None,
            _ => Some(
                Arc::clone(&self.permits)
                    .acquire_owned()
                    .await
                    .map_err(|_| sqlx::Error::PoolClosed)?,
            ),
        };
        loop {
            let popped = match permit {
                Some(_) => self.list().conns.pop(),
                None => None,
            };
            let Some(mut idle) = popped else {
                let conn = pool.acquire().await?;
                return Ok(self.held(conn, Instant::now(), permit, false));
            };
            if idle.taken_at.elapsed() >= RETURN_AFTER {
                drop(idle.conn); // back to sqlx, which checks it
                continue;
            }
            if idle.used_at.elapsed() >= PING_WHEN_IDLE_FOR && idle.conn.ping().await.is_err() {
                idle.conn.close_on_drop();
                continue;
            }
            return Ok(self.held(idle.conn, idle.taken_at, permit, true));
        }
    }

    fn held(
        self: &Arc<Self>,
        conn: PoolConnection<Postgres>,
        taken_at: Instant,
        permit: Option<OwnedSemaphorePermit>,
        was_kept: bool,
    ) -> Held {
        Held {
            kept: Arc::clone(self),
            conn: Some(conn),
            taken_at,
            fit: false,
            permit,
            was_kept,
        }
    }

    /// Hands every kept connection back to sqlx's pool, which checks them.
    pub(crate) fn drop_idle(&self) {
        let all = std::mem::take(&mut self.list().conns);
        drop(all);
    }

    /// Hands every kept connection back to sqlx's pool and keeps none from
    /// now on (the pool is closing, and waits for them).
    pub(crate) fn release_all(&self) {
        let all = {
            let mut list = self.list();
            list.closed = true;
            std::mem::take(&mut list.conns)
        };
        drop(all);
    }
}

impl Drop for Kept {
    fn drop(&mut self) {
        // Possibly outside a runtime: a pooled connection's drop would spawn.
        for idle in std::mem::take(&mut self.list().conns) {
            drop(idle.conn.detach());
        }
    }
}

/// A connection taken for one operation. Marked [`fit`](Held::fit) when the
/// operation ended well it is kept for the next; otherwise (an error, a
/// deadline that cancelled it mid-answer) it goes back to sqlx, which checks
/// it or closes it.
pub(crate) struct Held {
    kept: Arc<Kept>,
    conn: Option<PoolConnection<Postgres>>,
    taken_at: Instant,
    fit: bool,
    /// Released after the connection is back in the list (or gone).
    permit: Option<OwnedSemaphorePermit>,
    /// It came from the list unchecked (used less than a second ago), not
    /// from sqlx's pool, which checks what it hands out.
    was_kept: bool,
}

impl Held {
    pub(crate) fn fit(&mut self) {
        self.fit = true;
    }

    pub(crate) fn was_kept(&self) -> bool {
        self.was_kept
    }

    /// The connection (there until the drop).
    pub(crate) fn connection(&mut self) -> Result<&mut sqlx::PgConnection, sqlx::Error> {
        match self.conn.as_mut() {
            Some(conn) => Ok(conn),
            None => Err(sqlx::Error::PoolClosed),
        }
    }
}

/// Whether `e` says the connection itself is gone (a database restart,
/// terminated backends, a cut network), rather than the statement failing.
pub(crate) fn connection_lost(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => true,
        // Class 08: connection exception; 57P: operator intervention.
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
        _ => false,
    }
}

/// Runs `$op`, an expression of `$conn: &mut PgConnection` giving a future
/// of `Result<T, sqlx::Error>`, on a connection from [`Kept`]. A kept
/// connection found dead is replaced once by a checked one from the pool:
/// every operation run this way is a read or a compare-and-swap, so running
/// it again is safe even if the first attempt took effect.
macro_rules! on_held {
    ($store:expr, |$conn:ident| $op:expr) => {{
        let mut retried = false;
        loop {
            let mut held = $store.held().await?;
            let result = {
                let $conn = held.connection()?;
                $op.await
            };
            match result {
                Ok(value) => {
                    held.fit();
                    break Ok(value);
                }
                Err(e) if !retried && held.was_kept() && $crate::kept::connection_lost(&e) => {
                    // The others were likely cut with it: the retry takes
                    // a checked connection from the pool.
                    retried = true;
                    $store.drop_kept();
                }
                Err(e) => break Err(e),
            }
        }
    }};
}
pub(crate) use on_held;

impl Drop for Held {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        let mut list = self.kept.list();
        if self.fit && self.permit.is_some() && !list.closed {
            list.conns.push(Idle {
                conn,
                taken_at: self.taken_at,
                used_at: Instant::now(),
            });
        } else {
            drop(list);
            drop(conn);
        }
    }
}
