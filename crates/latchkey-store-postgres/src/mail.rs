//! The mail outbox: mails queued with the operation that made them,
//! leased to one sender among the nodes, marked sent or retried, and pruned.

use latchkey_core::mail::OutboxMail;
use latchkey_core::store::{MailClaim, StoreResult};
use latchkey_store_sql::{ms, outbox_cols, outbox_of};
use sqlx::PgConnection;
use time::OffsetDateTime;

use crate::PostgresStore;

/// Queues a mail, due at once (`next_attempt_at` 0): the sender's clock,
/// not the caller's, times its attempts.
pub(crate) async fn insert_mail(
    conn: &mut PgConnection,
    m: &OutboxMail,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO mail_outbox (id, recipient, subject, text_body, html_body, created_at, \
         attempts, next_attempt_at) VALUES ($1, $2, $3, $4, $5, $6, 0, 0)",
    )
    .bind(&m.id)
    .bind(&m.recipient)
    .bind(&m.subject)
    .bind(&m.text_body)
    .bind(&m.html_body)
    .bind(ms(m.created_at))
    .execute(conn)
    .await?;
    Ok(())
}

pub(crate) async fn enqueue(store: &PostgresStore, mail: &OutboxMail) -> StoreResult<()> {
    store
        .bounded(async {
            let mut conn = store.pool.acquire().await?;
            insert_mail(&mut conn, mail).await
        })
        .await
}

/// `SKIP LOCKED`: nodes claiming at once each lease different mails, and
/// a leased mail is not due for another until its lease runs out.
pub(crate) async fn claim(store: &PostgresStore, claim: MailClaim) -> StoreResult<Vec<OutboxMail>> {
    store
        .bounded(async {
            sqlx::query(concat!(
                "UPDATE mail_outbox SET claimed_until = $2, \
                   deliver_by = COALESCE(deliver_by, $3) \
                 WHERE id IN (SELECT id FROM mail_outbox \
                   WHERE done_at IS NULL AND next_attempt_at <= $1 \
                     AND (claimed_until IS NULL OR claimed_until <= $1) \
                   ORDER BY next_attempt_at LIMIT $4 FOR UPDATE SKIP LOCKED) \
                 RETURNING ",
                outbox_cols!()
            ))
            .bind(ms(claim.now))
            .bind(ms(claim.lease_until))
            .bind(ms(claim.deliver_by))
            .bind(i64::from(claim.limit))
            .fetch_all(&store.pool)
            .await?
            .iter()
            .map(outbox_of)
            .collect()
        })
        .await
}

pub(crate) async fn sent(store: &PostgresStore, id: &str, now: OffsetDateTime) -> StoreResult<()> {
    store
        .bounded(async {
            sqlx::query(
                "UPDATE mail_outbox SET done_at = $1, sent = TRUE, attempts = attempts + 1, \
                 claimed_until = NULL, text_body = '', html_body = '', last_error = NULL \
                 WHERE id = $2",
            )
            .bind(ms(now))
            .bind(id)
            .execute(&store.pool)
            .await?;
            Ok(())
        })
        .await
}

pub(crate) async fn failed(
    store: &PostgresStore,
    id: &str,
    now: OffsetDateTime,
    retry_at: Option<OffsetDateTime>,
    error: &str,
) -> StoreResult<()> {
    store
        .bounded(async {
            // Past `deliver_by` (or without a retry) it is given up, bodies wiped.
            sqlx::query(
                "UPDATE mail_outbox SET attempts = attempts + 1, claimed_until = NULL, \
                   last_error = $3, \
                   next_attempt_at = COALESCE($2, next_attempt_at), \
                   done_at = CASE WHEN $2::BIGINT IS NULL OR $2 > deliver_by THEN $1 END, \
                   text_body = CASE WHEN $2::BIGINT IS NULL OR $2 > deliver_by THEN '' \
                               ELSE text_body END, \
                   html_body = CASE WHEN $2::BIGINT IS NULL OR $2 > deliver_by THEN '' \
                               ELSE html_body END \
                 WHERE id = $4",
            )
            .bind(ms(now))
            .bind(retry_at.map(ms))
            .bind(error)
            .bind(id)
            .execute(&store.pool)
            .await?;
            Ok(())
        })
        .await
}

/// Finished mails and old tokens, each a batch along its index.
pub(crate) async fn prune(
    store: &PostgresStore,
    before: OffsetDateTime,
    batch: u32,
) -> StoreResult<u64> {
    store
        .bounded(async {
            let mails = sqlx::query(
                "DELETE FROM mail_outbox WHERE id IN (SELECT id FROM mail_outbox \
                 WHERE done_at IS NOT NULL AND done_at <= $1 ORDER BY done_at LIMIT $2)",
            )
            .bind(ms(before))
            .bind(i64::from(batch))
            .execute(&store.pool)
            .await?
            .rows_affected();
            let tokens = sqlx::query(
                "DELETE FROM mail_tokens WHERE hash IN (SELECT hash FROM mail_tokens \
                 WHERE created_at <= $1 ORDER BY created_at LIMIT $2)",
            )
            .bind(ms(before))
            .bind(i64::from(batch))
            .execute(&store.pool)
            .await?
            .rows_affected();
            Ok(mails.max(tokens))
        })
        .await
}
