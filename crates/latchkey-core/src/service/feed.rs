//! The revocation feed: what resource servers are told so that they refuse
//! a dead session's access tokens before those expire.
//!
//! Every revocation is a row the store writes in the transaction that made
//! it (whichever node or command-line process made it), numbered in commit
//! order. Each node reads that table when it revoked something itself, when
//! the store says another process did (PostgreSQL's notifications), and at
//! least every [`POLL_INTERVAL`], and hands what is new to its subscribers; a subscriber first reads the table from its cursor, so it
//! misses nothing between its snapshot and the live events.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::{broadcast, Notify};

use super::Service;
use crate::error::ServiceError;
use crate::store::{RevocationRecord, Revoked};

/// How often a node looks for revocations made elsewhere (another node,
/// the command line): well inside the feed's one second.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// The largest leeway a verifier may allow on `exp`: a revoked session's
/// tokens are worth telling of until `access_ttl` plus this has passed.
pub const VERIFIER_LEEWAY: Duration = Duration::from_secs(60);

/// Rows read from the store at a time.
pub const PAGE: u32 = 1_000;

/// Live events a slow subscriber may fall behind by before its stream ends
/// (it reconnects with its cursor and catches up from the store).
const LIVE_BACKLOG: usize = 4_096;

/// One event of the feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedEvent {
    /// Where a subscriber that saw this event resumes (`Last-Event-ID`).
    pub cursor: u64,
    pub kind: FeedEventKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedEventKind {
    /// A session stopped being usable; after `until` (unix seconds) no
    /// access token of it can pass any verifier anyway.
    Revoked { sid: String, until: i64 },
    /// A signing key was purged: no token it signed may pass.
    KeyPurged { kid: String },
}

/// A subscriber's start: where its backlog begins, and the live events
/// from the moment it subscribed.
pub struct FeedSubscription {
    /// Read the backlog after this cursor (0: the whole snapshot).
    pub after: u64,
    /// Only revocations made since then still matter.
    pub since: OffsetDateTime,
    pub live: broadcast::Receiver<Arc<FeedEvent>>,
}

/// The node's side of the feed: its cursor into the table and its
/// subscribers.
pub(crate) struct FeedHub {
    sender: broadcast::Sender<Arc<FeedEvent>>,
    /// The last revocation handed to subscribers; `u64::MAX` before the
    /// first poll.
    cursor: AtomicU64,
    wake: Notify,
}

impl Default for FeedHub {
    fn default() -> Self {
        Self {
            sender: broadcast::channel(LIVE_BACKLOG).0,
            cursor: AtomicU64::new(u64::MAX),
            wake: Notify::new(),
        }
    }
}

impl Service {
    /// How long a revocation stays on the feed.
    fn feed_window(&self) -> Duration {
        self.policy.access_ttl + VERIFIER_LEEWAY
    }

    fn feed_event(&self, record: RevocationRecord) -> FeedEvent {
        let kind = match record.revoked {
            Revoked::Session(sid) => {
                let until = record.at + self.feed_window();
                FeedEventKind::Revoked {
                    sid: sid.as_str().to_owned(),
                    // Rounded up: never forgotten a moment early.
                    until: until.unix_timestamp() + i64::from(until.nanosecond() > 0),
                }
            }
            Revoked::Key(kid) => FeedEventKind::KeyPurged { kid },
        };
        FeedEvent {
            cursor: record.seq,
            kind,
        }
    }

    /// Tells the feed's poller to look now (this node just revoked something).
    pub(super) fn wake_feed(&self) {
        self.feed.wake.notify_one();
    }

    /// Starts the node's cursor at the latest revocation: subscribers read
    /// what came before from the store themselves. Must run before the
    /// first subscriber can connect, or a revocation made between its
    /// backlog and this start would reach it only at its next reconnect.
    pub async fn start_revocation_feed(&self) -> Result<(), ServiceError> {
        let last = self.store.last_revocation().await?;
        // Only the first start counts: a later one would skip events.
        let _ =
            self.feed
                .cursor
                .compare_exchange(u64::MAX, last, Ordering::AcqRel, Ordering::Acquire);
        Ok(())
    }

    /// Hands subscribers what the store recorded since the last poll.
    /// Answers how many events that was.
    pub async fn poll_revocations(&self) -> Result<usize, ServiceError> {
        let mut cursor = self.feed.cursor.load(Ordering::Acquire);
        if cursor == u64::MAX {
            self.start_revocation_feed().await?;
            return Ok(0);
        }
        let mut sent = 0;
        loop {
            let page = self
                .store
                .revocations_after(cursor, OffsetDateTime::UNIX_EPOCH, PAGE)
                .await?;
            let full = page.len() == PAGE as usize;
            for record in page {
                cursor = record.seq;
                // No subscriber is no error.
                let _ = self.feed.sender.send(Arc::new(self.feed_event(record)));
                sent += 1;
            }
            self.feed.cursor.store(cursor, Ordering::Release);
            if !full {
                return Ok(sent);
            }
        }
    }

    /// The poller: runs until dropped (the server aborts it at shutdown).
    pub async fn run_revocation_feed(&self) {
        loop {
            if let Err(e) = self.poll_revocations().await {
                tracing::warn!(error = %e, "revocation feed not polled");
            }
            tokio::select! {
                () = self.feed.wake.notified() => {}
                () = self.store.await_revocations(POLL_INTERVAL) => {}
            }
        }
    }

    /// A new subscriber, resuming after `last_event_id` when that is a
    /// cursor this store gave (else from the whole snapshot). Subscribed to
    /// the live events before its backlog is read, so nothing falls between.
    pub async fn subscribe_revocations(
        &self,
        last_event_id: Option<&str>,
    ) -> Result<FeedSubscription, ServiceError> {
        let live = self.feed.sender.subscribe();
        let last = self.store.last_revocation().await?;
        let after = last_event_id
            .and_then(|id| id.trim().parse::<u64>().ok())
            .filter(|cursor| *cursor <= last)
            .unwrap_or(0);
        Ok(FeedSubscription {
            after,
            since: self.now() - self.feed_window(),
            live,
        })
    }

    /// The next page of a subscriber's backlog: revocations after `after`
    /// made since `since`.
    pub async fn revocations_page(
        &self,
        after: u64,
        since: OffsetDateTime,
    ) -> Result<Vec<FeedEvent>, ServiceError> {
        Ok(self
            .store
            .revocations_after(after, since, PAGE)
            .await?
            .into_iter()
            .map(|record| self.feed_event(record))
            .collect())
    }

    /// Deletes revocations no verifier needs any more, a batch at a time.
    pub(super) async fn prune_revocations(&self, now: OffsetDateTime) -> Result<u64, ServiceError> {
        let before = now - self.feed_window() - VERIFIER_LEEWAY;
        let mut total = 0;
        loop {
            let n = self
                .store
                .prune_revocations(before, super::PRUNE_BATCH)
                .await?;
            total += n;
            if n < u64::from(super::PRUNE_BATCH) {
                return Ok(total);
            }
        }
    }
}
