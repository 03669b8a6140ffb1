//! The revocation feed's stream (docs/reference.md §9): the subscriber's
//! backlog read from the store page by page, then `ready`, then the live
//! events of this node's poller, each once, in order. The stream ends when
//! the server stops, when the store fails, or when the subscriber falls too
//! far behind; it reconnects with `Last-Event-ID` and loses nothing.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use latchkey_core::service::{FeedEvent, FeedEventKind, FeedSubscription};
use tokio::sync::broadcast::error::RecvError;

use super::{no_store, AppState};

/// A comment line at least this often, so that proxies keep the connection
/// and subscribers can tell a quiet feed from a dead one.
pub const HEARTBEAT: Duration = Duration::from_secs(10);

enum Phase {
    /// Reading the store after this cursor.
    Backlog {
        after: u64,
    },
    Ready,
    Live,
}

struct Feed {
    app: AppState,
    subscription: FeedSubscription,
    phase: Phase,
    pending: VecDeque<FeedEvent>,
    /// The last cursor sent: live events up to it were in the backlog.
    sent: u64,
    _counted: crate::metrics::Subscribed,
}

pub fn response(app: AppState, subscription: FeedSubscription) -> Response {
    let feed = Feed {
        phase: Phase::Backlog {
            after: subscription.after,
        },
        sent: subscription.after,
        _counted: app.metrics.feed_subscribed(),
        app,
        subscription,
        pending: VecDeque::new(),
    };
    let mut response = Sse::new(events(feed))
        .keep_alive(KeepAlive::new().interval(HEARTBEAT).text("keep-alive"))
        .into_response();
    no_store(&mut response);
    response
}

fn events(feed: Feed) -> impl Stream<Item = Result<Event, Infallible>> {
    futures::stream::unfold(feed, |mut feed| async move {
        let event = feed.next().await?;
        Some((Ok(event), feed))
    })
}

impl Feed {
    /// The next event to send; `None` ends the stream.
    async fn next(&mut self) -> Option<Event> {
        let mut shutdown = self.app.shutdown.clone();
        loop {
            if *shutdown.borrow_and_update() {
                return None;
            }
            if let Some(event) = self.pending.pop_front() {
                self.sent = event.cursor;
                return Some(wire(&event));
            }
            match self.phase {
                Phase::Backlog { after } => {
                    let page = self
                        .app
                        .service
                        .revocations_page(after, self.subscription.since)
                        .await;
                    match page {
                        Ok(page) => match page.last() {
                            Some(last) => {
                                self.phase = Phase::Backlog { after: last.cursor };
                                self.pending.extend(page);
                            }
                            None => self.phase = Phase::Ready,
                        },
                        Err(e) => {
                            tracing::warn!(error = %e, "revocation feed: backlog not read");
                            return None;
                        }
                    }
                }
                Phase::Ready => {
                    self.phase = Phase::Live;
                    return Some(Event::default().event("ready").data("{}"));
                }
                Phase::Live => {
                    tokio::select! {
                        received = self.subscription.live.recv() => match received {
                            Ok(event) if event.cursor > self.sent => {
                                self.pending.push_back(Arc::unwrap_or_clone(event));
                            }
                            Ok(_) => {}
                            // Too far behind (or the node is going away):
                            // the subscriber resumes from its cursor.
                            Err(RecvError::Lagged(_) | RecvError::Closed) => return None,
                        },
                        _ = shutdown.changed() => return None,
                    }
                }
            }
        }
    }
}

/// An event as it goes on the wire.
fn wire(event: &FeedEvent) -> Event {
    let (name, data) = match &event.kind {
        FeedEventKind::Revoked { sid, until } => {
            ("revoked", serde_json::json!({ "sid": sid, "until": until }))
        }
        FeedEventKind::KeyPurged { kid } => ("key_purged", serde_json::json!({ "kid": kid })),
    };
    Event::default()
        .event(name)
        .id(event.cursor.to_string())
        .data(data.to_string())
}
