//! The audit log: appending, the latest rows, and the prune of old ones.

use latchkey_core::audit::AuditRecord;
use latchkey_core::store::StoreResult;
use latchkey_store_sql::{audit_cols, audit_of, ms};
use rusqlite::{params, Connection};

use crate::SqliteStore;

/// Also written by the refresh compare-and-swap, in its own savepoint.
pub(crate) fn insert_audit(conn: &Connection, r: &AuditRecord) -> rusqlite::Result<()> {
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

pub(crate) async fn append(store: &SqliteStore, record: &AuditRecord) -> StoreResult<()> {
    let record = record.clone();
    store.write(move |conn| insert_audit(conn, &record)).await
}

pub(crate) async fn recent(store: &SqliteStore, limit: u32) -> StoreResult<Vec<AuditRecord>> {
    store
        .scan(move |conn| {
            conn.prepare_cached(concat!(
                "SELECT ",
                audit_cols!(),
                " FROM audit_log ORDER BY id DESC LIMIT ?1"
            ))?
            .query_map([i64::from(limit)], |row| audit_of(row))?
            .collect()
        })
        .await
}

/// A prune batch: the oldest rows first, along the index on `at`.
pub(crate) const PRUNE: &str = "DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log \
                          WHERE at <= ?1 ORDER BY at LIMIT ?2)";
