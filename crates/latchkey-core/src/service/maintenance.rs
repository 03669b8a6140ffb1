//! What keeps the store from growing without end, and the counts the
//! metrics show.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::Service;
use crate::audit::{AuditEvent, AuditRecord};
use crate::error::ServiceError;
use crate::keys;
use crate::store::{DeadSessions, Pruned};

/// Rows a prune statement deletes at most: a few milliseconds of the store.
pub const PRUNE_BATCH: u32 = 2_000;
/// Sessions a prune statement looks at: they are visited in id order, each
/// a random page of a large store, so fewer than the rows of the tables
/// pruned in time order (10M sessions on SQLite: 27 ms a window at 2,000).
pub const SESSION_PRUNE_WINDOW: u32 = 256;

impl Service {
    /// Counts the live sessions of all users (a scan of the sessions
    /// table: done in the background, never per scrape).
    pub async fn recount_live_sessions(&self) -> Result<u64, ServiceError> {
        let now = self.now();
        let n = self
            .store
            .count_live_sessions(now, now - self.policy.refresh_ttl)
            .await?;
        self.live_sessions.store(n, Ordering::Relaxed);
        Ok(n)
    }

    /// Live sessions at the last [`Service::recount_live_sessions`].
    pub fn live_sessions_counted(&self) -> Option<u64> {
        Some(self.live_sessions.load(Ordering::Relaxed)).filter(|n| *n != u64::MAX)
    }

    /// Removes dead sessions, finished login-limit windows, expired logins
    /// waiting for a second factor, expired WebAuthn challenges, audit rows
    /// past their retention and keys no live token can need, a batch at a
    /// time so that no statement holds the store for long.
    pub async fn prune(&self) -> Result<Pruned, ServiceError> {
        let started = Instant::now();
        let now = self.now();
        let mut pruned = Pruned::default();
        let dead = DeadSessions {
            now,
            idle_before: now - self.policy.refresh_ttl,
        };
        let mut after: Option<String> = None;
        loop {
            let batch = timed(
                &mut pruned,
                self.store
                    .prune_sessions(dead, after.as_deref(), SESSION_PRUNE_WINDOW),
            )
            .await?;
            pruned.sessions += batch.deleted;
            match batch.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        let failures_before = now - self.policy.login_window;
        loop {
            let n = timed(
                &mut pruned,
                self.store
                    .prune_login_failures(failures_before, PRUNE_BATCH),
            )
            .await?;
            pruned.login_failures += n;
            if n < u64::from(PRUNE_BATCH) {
                break;
            }
        }
        loop {
            let n = timed(&mut pruned, self.store.prune_mfa_logins(now, PRUNE_BATCH)).await?;
            pruned.mfa_logins += n;
            if n < u64::from(PRUNE_BATCH) {
                break;
            }
        }
        let audit_before = now - self.policy.audit_retention;
        loop {
            let n = timed(
                &mut pruned,
                self.store.prune_audit(audit_before, PRUNE_BATCH),
            )
            .await?;
            pruned.audit_rows += n;
            if n < u64::from(PRUNE_BATCH) {
                break;
            }
        }
        pruned.revocations = self.prune_revocations(now).await?;
        loop {
            let n = timed(
                &mut pruned,
                self.store.prune_webauthn_challenges(now, PRUNE_BATCH),
            )
            .await?;
            pruned.webauthn_challenges += n;
            if n < u64::from(PRUNE_BATCH) {
                break;
            }
        }
        let records = self.store.list_keys().await?;
        let gone = keys::deletable(&records, now, self.policy.access_ttl);
        if !gone.is_empty() {
            pruned.keys = self.store.delete_keys(&gone).await?;
            self.audit(
                AuditRecord::new(AuditEvent::KeyDeleted, now)
                    .detail(format!("kids={}", gone.join(","))),
            )
            .await;
        }
        pruned.took = started.elapsed();
        Ok(pruned)
    }
}

/// Runs one batch, keeping the longest time a batch took, then rests as
/// long as it took: the prune has at most half of the store's time, and
/// requests the other half, however much there is to delete (5 million
/// dead sessions at full speed tripled SQLite's refresh p99).
async fn timed<T>(pruned: &mut Pruned, batch: impl Future<Output = T>) -> T {
    let started = Instant::now();
    let out = batch.await;
    let took = started.elapsed();
    pruned.longest_batch = pruned.longest_batch.max(took);
    tokio::time::sleep(took).await;
    out
}
