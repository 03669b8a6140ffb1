//! The revocation feed's table: a row for every session revoked and every
//! key purged, written in the transaction that did it. Every such
//! transaction first takes one advisory lock, held to its commit, so rows
//! commit in the order of their numbers: a node that reads "after the last
//! number I saw" never skips a row that committed late.

use latchkey_core::store::{RevocationRecord, StoreResult};
use latchkey_store_sql::{ms, revocation_cols, revocation_of};
use sqlx::PgConnection;
use time::OffsetDateTime;

use crate::PostgresStore;

/// The advisory lock of revocation writers ("latchkey" in ASCII).
const WRITERS: i64 = 0x6c61_7463_686b_6579;

/// The channel every node listens on, told at each commit of revocations.
pub(crate) const CHANNEL: &str = "latchkey_revocations";

/// Takes the writers' lock for the rest of the transaction on `conn`, and
/// tells every listening node when it commits (a rolled-back transaction
/// tells no one).
pub(crate) async fn lock(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock($1), pg_notify($2, '')")
        .bind(WRITERS)
        .bind(CHANNEL)
        .execute(conn)
        .await?;
    Ok(())
}

/// Waits for a notification on [`CHANNEL`], at most `within`. The listening
/// connection is opened on first use and again after it fails; without it
/// (or with a pool too small to spare one) the wait is a plain sleep: the
/// caller polls anyway.
pub(crate) async fn wait(store: &PostgresStore, within: std::time::Duration) {
    let deadline = tokio::time::Instant::now() + within;
    if !store.listens {
        tokio::time::sleep_until(deadline).await;
        return;
    }
    let mut listener = store.listener.lock().await;
    if listener.is_none() {
        let opened = tokio::time::timeout_at(deadline, async {
            let mut l = sqlx::postgres::PgListener::connect_with(&store.pool).await?;
            l.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(l)
        })
        .await;
        match opened {
            Ok(Ok(l)) => *listener = Some(l),
            Ok(Err(e)) => tracing::debug!(error = %e, "revocation notifications not listened to"),
            Err(_) => return,
        }
    }
    let Some(l) = listener.as_mut() else {
        tokio::time::sleep_until(deadline).await;
        return;
    };
    match tokio::time::timeout_at(deadline, l.recv()).await {
        Ok(Ok(_)) | Err(_) => {}
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "revocation notifications lost; listening again");
            *listener = None;
            tokio::time::sleep_until(deadline).await;
        }
    }
}

pub(crate) async fn after(
    store: &PostgresStore,
    after: u64,
    since: OffsetDateTime,
    limit: u32,
) -> StoreResult<Vec<RevocationRecord>> {
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    store
        .bounded(async {
            let rows = sqlx::query(concat!(
                "SELECT ",
                revocation_cols!(),
                " FROM revocations WHERE seq > $1 AND at >= $2 ORDER BY seq LIMIT $3"
            ))
            .bind(after)
            .bind(ms(since))
            .bind(i64::from(limit))
            .fetch_all(&store.pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                out.extend(revocation_of(row)?);
            }
            Ok(out)
        })
        .await
}

pub(crate) async fn last(store: &PostgresStore) -> StoreResult<u64> {
    store
        .bounded(async {
            // The sequence, not MAX(seq): pruning every row keeps the count.
            let (value, called): (i64, bool) =
                sqlx::query_as("SELECT last_value, is_called FROM revocations_seq_seq")
                    .fetch_one(&store.pool)
                    .await?;
            Ok(if called {
                u64::try_from(value).unwrap_or(0)
            } else {
                0
            })
        })
        .await
}

/// One batch of the prune: the oldest rows at or before `$1`, at most `$2`.
pub(crate) const PRUNE: &str = "DELETE FROM revocations WHERE seq IN \
    (SELECT seq FROM revocations WHERE at <= $1 ORDER BY at LIMIT $2)";
