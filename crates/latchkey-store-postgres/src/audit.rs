//! The audit log: appending, the latest rows, and the prune of old ones.

use latchkey_core::audit::AuditRecord;
use latchkey_core::store::StoreResult;
use latchkey_store_sql::{audit_cols, audit_of, ms};

use crate::PostgresStore;

pub(crate) async fn append(store: &PostgresStore, r: &AuditRecord) -> StoreResult<()> {
    store
        .bounded(async {
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
            .execute(&store.pool)
            .await?;
            Ok(())
        })
        .await
}

pub(crate) async fn recent(store: &PostgresStore, limit: u32) -> StoreResult<Vec<AuditRecord>> {
    store
        .bounded(async {
            sqlx::query(concat!(
                "SELECT ",
                audit_cols!(),
                " FROM audit_log ORDER BY id DESC LIMIT $1"
            ))
            .bind(i64::from(limit))
            .fetch_all(&store.pool)
            .await?
            .iter()
            .map(audit_of)
            .collect()
        })
        .await
}

/// A prune batch: the oldest rows first, along the index on `at`.
pub(crate) const PRUNE: &str = "DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log \
                          WHERE at <= $1 ORDER BY at LIMIT $2)";
