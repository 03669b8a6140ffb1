//! The mail outbox: mails queued with the operation that made them,
//! leased to a sender, marked sent or retried, and pruned.

use latchkey_core::mail::OutboxMail;
use latchkey_core::store::{MailClaim, StoreResult};
use latchkey_store_sql::{ms, outbox_cols, outbox_of};
use rusqlite::{params, Connection};
use time::OffsetDateTime;

use crate::SqliteStore;

/// Queues a mail, due at once (`next_attempt_at` 0): the sender's clock,
/// not the caller's, times its attempts.
pub(crate) fn insert_mail(conn: &Connection, m: &OutboxMail) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO mail_outbox (id, recipient, subject, text_body, html_body, created_at, \
         attempts, next_attempt_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, 0)",
    )?
    .execute(params![
        m.id,
        m.recipient,
        m.subject,
        m.text_body,
        m.html_body,
        ms(m.created_at)
    ])?;
    Ok(())
}

pub(crate) async fn enqueue(store: &SqliteStore, mail: &OutboxMail) -> StoreResult<()> {
    let mail = mail.clone();
    store.write(move |conn| insert_mail(conn, &mail)).await
}

/// The one writer makes the lease a single step: no two claims overlap.
pub(crate) async fn claim(store: &SqliteStore, claim: MailClaim) -> StoreResult<Vec<OutboxMail>> {
    store
        .write(move |conn| {
            conn.prepare_cached(concat!(
                "UPDATE mail_outbox SET claimed_until = ?2, \
                   deliver_by = COALESCE(deliver_by, ?3) \
                 WHERE id IN (SELECT id FROM mail_outbox \
                   WHERE done_at IS NULL AND next_attempt_at <= ?1 \
                     AND (claimed_until IS NULL OR claimed_until <= ?1) \
                   ORDER BY next_attempt_at LIMIT ?4) \
                 RETURNING ",
                outbox_cols!()
            ))?
            .query_map(
                params![
                    ms(claim.now),
                    ms(claim.lease_until),
                    ms(claim.deliver_by),
                    i64::from(claim.limit)
                ],
                |row| outbox_of(row),
            )?
            .collect()
        })
        .await
}

pub(crate) async fn sent(store: &SqliteStore, id: &str, now: OffsetDateTime) -> StoreResult<()> {
    let id = id.to_owned();
    store
        .write(move |conn| {
            conn.prepare_cached(
                "UPDATE mail_outbox SET done_at = ?1, sent = 1, attempts = attempts + 1, \
                 claimed_until = NULL, text_body = '', html_body = '', last_error = NULL \
                 WHERE id = ?2",
            )?
            .execute(params![ms(now), id])?;
            Ok(())
        })
        .await
}

pub(crate) async fn failed(
    store: &SqliteStore,
    id: &str,
    now: OffsetDateTime,
    retry_at: Option<OffsetDateTime>,
    error: &str,
) -> StoreResult<()> {
    let (id, error) = (id.to_owned(), error.to_owned());
    // Past `deliver_by` (or without a retry) it is given up, bodies wiped.
    let retry = retry_at.map(ms);
    store
        .write(move |conn| {
            conn.prepare_cached(
                "UPDATE mail_outbox SET attempts = attempts + 1, claimed_until = NULL, \
                   last_error = ?3, \
                   next_attempt_at = COALESCE(?2, next_attempt_at), \
                   done_at = CASE WHEN ?2 IS NULL OR ?2 > deliver_by THEN ?1 END, \
                   text_body = CASE WHEN ?2 IS NULL OR ?2 > deliver_by THEN '' ELSE text_body END, \
                   html_body = CASE WHEN ?2 IS NULL OR ?2 > deliver_by THEN '' ELSE html_body END \
                 WHERE id = ?4",
            )?
            .execute(params![ms(now), retry, error, id])?;
            Ok(())
        })
        .await
}

/// Finished mails and old tokens, each a batch along its index.
pub(crate) async fn prune(
    store: &SqliteStore,
    before: OffsetDateTime,
    batch: u32,
) -> StoreResult<u64> {
    store
        .write(move |conn| {
            let before = ms(before);
            let mails = conn
                .prepare_cached(
                    "DELETE FROM mail_outbox WHERE id IN (SELECT id FROM mail_outbox \
                     WHERE done_at IS NOT NULL AND done_at <= ?1 ORDER BY done_at LIMIT ?2)",
                )?
                .execute(params![before, batch])?;
            let tokens = conn
                .prepare_cached(
                    "DELETE FROM mail_tokens WHERE hash IN (SELECT hash FROM mail_tokens \
                     WHERE created_at <= ?1 ORDER BY created_at LIMIT ?2)",
                )?
                .execute(params![before, batch])?;
            Ok(mails.max(tokens) as u64)
        })
        .await
}
