//! The client of latchkey's revocation feed: a Server-Sent Events stream of
//! revoked sessions and purged keys, kept in memory so that `verify` can
//! refuse a revoked session's tokens before they expire.
//!
//! One task per [`Verifier`](crate::Verifier) holds the connection; another
//! sweeps expired revocations. Both end when the last clone of the
//! verifier is dropped.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::header::{ACCEPT, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE};
use http::HeaderValue;
use reqwest::Url;
use serde::Deserialize;
use tokio::sync::watch;

use crate::error::Error;
use crate::fetch::{self, Bounds};
use crate::https;
use crate::sse::{self, Item, Parser};

/// The default for [`feed_max_silence`](crate::VerifierBuilder::feed_max_silence).
pub const DEFAULT_FEED_MAX_SILENCE: Duration = Duration::from_secs(30);
/// The default for
/// [`feed_max_revoked_sessions`](crate::VerifierBuilder::feed_max_revoked_sessions).
pub const DEFAULT_FEED_MAX_REVOKED_SESSIONS: usize = 1_000_000;
/// The longest line (and the most data in one event) the feed may send;
/// more is a protocol error, and the connection is made again.
pub const FEED_MAX_LINE: usize = 64 * 1024;
/// The longest session id or key id an event may carry (latchkey's are
/// 36-character UUIDs); longer is a protocol error. Bounds the memory of
/// the revoked set with its entry count.
pub const FEED_MAX_ID_LEN: usize = 256;

/// The first wait before connecting again, doubled on each failure.
const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between two attempts (unless the server's `retry:`
/// asks for longer).
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A server's `retry:` is held within these.
const MIN_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(60);
/// The stream is opened again after this long, whatever happens: it bounds
/// the request's total time, which for a stream must be long.
const STREAM_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);
/// How often expired revocations are dropped and the outage state checked.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// Shards of the revoked set: a sweep or an insert locks one at a time.
const SHARDS: usize = 16;
/// The most of an error body read for its `error` member.
const MAX_ERROR_BODY: usize = 4096;

/// What [`verify`](crate::Verifier::verify) does while the revocation feed
/// cannot be trusted to be complete: before its first `ready`, after more
/// than [`feed_max_silence`](crate::VerifierBuilder::feed_max_silence)
/// without hearing from it (an event or a heartbeat, in sync), or while
/// revocations beyond
/// [`feed_max_revoked_sessions`](crate::VerifierBuilder::feed_max_revoked_sessions)
/// had to be dropped and have not expired yet.
///
/// Either way a session found revoked in what the feed did deliver is
/// refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum FeedOutagePolicy {
    /// Keep accepting tokens whose signature and claims pass, and log a
    /// `tracing::warn!` once per outage: a revoked session's tokens then
    /// pass until they expire, as without a feed (the access-token
    /// lifetime is the guarantee again). Keeps the API up through an
    /// outage of latchkey.
    #[default]
    KeepAccepting,
    /// Refuse every token with [`Error::FeedUnavailable`] (`503
    /// temporarily_unavailable`, `Retry-After: 5`): no token passes
    /// unless its session is known not to be revoked. The token itself is
    /// not bad, so this is not a `401`.
    RefuseAll,
}

/// A snapshot of the revocation feed's health, from
/// [`Verifier::feed_status`](crate::Verifier::feed_status).
///
/// What to export as metrics: `staleness` (alert well before it reaches
/// [`feed_max_silence`](crate::VerifierBuilder::feed_max_silence)),
/// `outage` and `outages`, `revoked_sessions` (against
/// [`feed_max_revoked_sessions`](crate::VerifierBuilder::feed_max_revoked_sessions)),
/// `reconnects` (as a counter), and `last_error` in logs or a health page.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FeedStatus {
    /// A connection to the feed is open (it answered `200`).
    pub connected: bool,
    /// That connection has sent `ready`: every revocation up to now is
    /// held.
    pub ready: bool,
    /// How long since the feed was last known in sync: its last event or
    /// heartbeat after `ready`. `None` before the first `ready`.
    pub staleness: Option<Duration>,
    /// The [outage policy](FeedOutagePolicy) applies now.
    pub outage: bool,
    /// Outages entered since the verifier was built (the first, before the
    /// first `ready`, included).
    pub outages: u64,
    /// Revoked sessions held (their tokens are refused).
    pub revoked_sessions: usize,
    /// Revocations had to be dropped (more than
    /// [`feed_max_revoked_sessions`](crate::VerifierBuilder::feed_max_revoked_sessions))
    /// and have not all expired yet: an outage.
    pub overflowed: bool,
    /// Keys purged by the feed and refused while the key set still lists
    /// them.
    pub purged_keys: usize,
    /// Connections attempted after the first one.
    pub reconnects: u64,
    /// Why the last connection or attempt failed, if one did (kept after
    /// recovery).
    pub last_error: Option<String>,
    /// The cursor the next connection resumes from (`Last-Event-ID`).
    pub last_event_id: Option<String>,
}

/// The feed's settings, as the builder holds them (the secret out of
/// `Debug`).
#[derive(Clone)]
pub(crate) struct FeedSettings {
    pub(crate) client_id: String,
    pub(crate) client_secret: String,
}

impl fmt::Debug for FeedSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FeedSettings")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .finish()
    }
}

/// `Basic base64(urlencode(id):urlencode(secret))` (RFC 6749 §2.3.1).
pub(crate) fn basic_authorization(client_id: &str, client_secret: &str) -> HeaderValue {
    let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let credentials = format!("{}:{}", encode(client_id), encode(client_secret));
    let mut value = HeaderValue::try_from(format!("Basic {}", STANDARD.encode(credentials)))
        .unwrap_or_else(|_| HeaderValue::from_static("Basic"));
    value.set_sensitive(true);
    value
}

/// Why the feed cannot be trusted now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outage {
    NeverSynced,
    Silent(Duration),
    Overflow,
}

impl fmt::Display for Outage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NeverSynced => f.write_str("the revocation feed has not been in sync yet"),
            Self::Silent(d) => write!(f, "the revocation feed has been silent for {d:?}"),
            Self::Overflow => f.write_str("revocations beyond the configured maximum were dropped"),
        }
    }
}

/// One shard: session id → `until` (Unix seconds).
type Shard = RwLock<HashMap<Box<str>, i64>>;

/// Revoked sessions by id, each until its `until`.
pub(crate) struct RevokedSet {
    shards: Box<[Shard]>,
    hasher: RandomState,
    len: AtomicUsize,
    cap: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Inserted {
    Added,
    Known,
    AlreadyExpired,
    Full,
}

impl RevokedSet {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            hasher: RandomState::new(),
            len: AtomicUsize::new(0),
            cap,
        }
    }

    fn shard(&self, sid: &str) -> &Shard {
        let i = usize::try_from(self.hasher.hash_one(sid) % SHARDS as u64).unwrap_or(0);
        &self.shards[i]
    }

    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Whether `sid` is revoked at `now`; an expired entry is dropped.
    pub(crate) fn contains(&self, sid: &str, now: i64) -> bool {
        let shard = self.shard(sid);
        let until = shard
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(sid)
            .copied();
        match until {
            None => false,
            Some(until) if now < until => true,
            Some(_) => {
                let mut map = shard.write().unwrap_or_else(PoisonError::into_inner);
                if map.get(sid).is_some_and(|&u| now >= u) {
                    map.remove(sid);
                    self.len.fetch_sub(1, Ordering::Relaxed);
                }
                false
            }
        }
    }

    pub(crate) fn insert(&self, sid: &str, until: i64, now: i64) -> Inserted {
        if until <= now {
            return Inserted::AlreadyExpired;
        }
        let shard = self.shard(sid);
        {
            let mut map = shard.write().unwrap_or_else(PoisonError::into_inner);
            if let Some(held) = map.get_mut(sid) {
                *held = (*held).max(until);
                return Inserted::Known;
            }
            if self.len() < self.cap {
                map.insert(sid.into(), until);
                self.len.fetch_add(1, Ordering::Relaxed);
                return Inserted::Added;
            }
        }
        // Full: make room from what expired, once, before giving up.
        self.sweep(now);
        let mut map = shard.write().unwrap_or_else(PoisonError::into_inner);
        if self.len() < self.cap {
            map.insert(sid.into(), until);
            self.len.fetch_add(1, Ordering::Relaxed);
            return Inserted::Added;
        }
        Inserted::Full
    }

    /// Drops every entry whose `until` has come.
    pub(crate) fn sweep(&self, now: i64) {
        for shard in &*self.shards {
            let mut map = shard.write().unwrap_or_else(PoisonError::into_inner);
            let before = map.len();
            map.retain(|_, until| now < *until);
            self.len.fetch_sub(before - map.len(), Ordering::Relaxed);
        }
    }
}

/// The feed's state, shared by the verifier (which reads it per token) and
/// the tasks (which write it).
pub(crate) struct Feed {
    pub(crate) authorization: HeaderValue,
    pub(crate) url: Option<Url>,
    pub(crate) max_silence: Duration,
    pub(crate) policy: FeedOutagePolicy,
    pub(crate) revoked: RevokedSet,
    /// The time base of the millisecond stamps below.
    base: Instant,
    /// When the feed was last known in sync, in ms since `base`; `NEVER`
    /// before the first `ready`.
    synced_at: AtomicU64,
    /// Revocations were dropped for want of room; the set is incomplete
    /// until the latest of their `until`s (Unix seconds).
    incomplete_until: AtomicI64,
    in_outage: AtomicBool,
    outages: AtomicU64,
    connected: AtomicBool,
    ready: watch::Sender<bool>,
    reconnects: AtomicU64,
    pub(crate) started: AtomicBool,
    text: Mutex<StatusText>,
}

const NEVER: u64 = u64::MAX;

#[derive(Default)]
struct StatusText {
    last_error: Option<String>,
    last_event_id: String,
}

impl Feed {
    pub(crate) fn new(
        authorization: HeaderValue,
        url: Option<Url>,
        max_silence: Duration,
        policy: FeedOutagePolicy,
        max_revoked: usize,
    ) -> Self {
        Self {
            authorization,
            url,
            max_silence,
            policy,
            revoked: RevokedSet::new(max_revoked),
            base: Instant::now(),
            synced_at: AtomicU64::new(NEVER),
            incomplete_until: AtomicI64::new(i64::MIN),
            in_outage: AtomicBool::new(false),
            outages: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            ready: watch::Sender::new(false),
            reconnects: AtomicU64::new(0),
            started: AtomicBool::new(false),
            text: Mutex::new(StatusText::default()),
        }
    }

    fn millis(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(NEVER - 1)
    }

    fn since_synced(&self) -> Option<Duration> {
        let at = self.synced_at.load(Ordering::Acquire);
        (at != NEVER).then(|| Duration::from_millis(self.millis().saturating_sub(at)))
    }

    pub(crate) fn outage(&self, now: i64) -> Option<Outage> {
        let Some(since) = self.since_synced() else {
            return Some(Outage::NeverSynced);
        };
        if since > self.max_silence {
            return Some(Outage::Silent(since));
        }
        if now < self.incomplete_until.load(Ordering::Relaxed) {
            return Some(Outage::Overflow);
        }
        None
    }

    /// The per-token check, after the signature and the claims passed.
    pub(crate) fn check(&self, sid: Option<&str>, now: i64) -> Result<(), Error> {
        if sid.is_some_and(|sid| self.revoked.contains(sid, now)) {
            return Err(Error::RevokedSession);
        }
        if let Some(outage) = self.outage(now) {
            self.enter_outage(outage);
            if self.policy == FeedOutagePolicy::RefuseAll {
                return Err(Error::FeedUnavailable(outage.to_string()));
            }
        }
        Ok(())
    }

    /// Logs the start of an outage, once.
    fn enter_outage(&self, outage: Outage) {
        // A load first: in a long outage every token passes here.
        if self.in_outage.load(Ordering::Relaxed) || self.in_outage.swap(true, Ordering::AcqRel) {
            return;
        }
        self.outages.fetch_add(1, Ordering::Relaxed);
        let last_error = self.last_error();
        match self.policy {
            FeedOutagePolicy::KeepAccepting => tracing::warn!(
                %outage, last_error, "revocation feed outage: tokens of revoked sessions are \
                 accepted until they expire (feed_outage_policy KeepAccepting)"
            ),
            FeedOutagePolicy::RefuseAll => tracing::warn!(
                %outage, last_error, "revocation feed outage: every token is refused \
                 (feed_outage_policy RefuseAll)"
            ),
        }
    }

    /// Notes the end of an outage, if one was on and is over.
    fn check_recovery(&self, now: i64) {
        match self.outage(now) {
            Some(outage) => {
                // Noticed without traffic too.
                if outage != Outage::NeverSynced {
                    self.enter_outage(outage);
                }
            }
            None => {
                if self.in_outage.swap(false, Ordering::AcqRel) {
                    tracing::info!("revocation feed in sync again");
                }
            }
        }
    }

    fn touch(&self) {
        self.synced_at.store(self.millis(), Ordering::Release);
    }

    fn last_error(&self) -> Option<String> {
        self.text
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .last_error
            .clone()
    }

    fn set_error(&self, error: String) {
        self.text
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .last_error = Some(error);
    }

    fn set_cursor(&self, id: &str) {
        id.clone_into(
            &mut self
                .text
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .last_event_id,
        );
    }

    /// Waits for the current connection to be in sync.
    pub(crate) async fn wait_ready(&self) {
        let mut ready = self.ready.subscribe();
        // The sender lives as long as `self`.
        let _ = ready.wait_for(|r| *r).await;
    }

    pub(crate) fn status(&self, purged_keys: usize, now: i64) -> FeedStatus {
        let text = self.text.lock().unwrap_or_else(PoisonError::into_inner);
        FeedStatus {
            connected: self.connected.load(Ordering::Relaxed),
            ready: *self.ready.borrow(),
            staleness: self.since_synced(),
            outage: self.outage(now).is_some(),
            outages: self.outages.load(Ordering::Relaxed),
            revoked_sessions: self.revoked.len(),
            overflowed: now < self.incomplete_until.load(Ordering::Relaxed),
            purged_keys,
            reconnects: self.reconnects.load(Ordering::Relaxed),
            last_error: text.last_error.clone(),
            last_event_id: Some(text.last_event_id.clone()).filter(|id| !id.is_empty()),
        }
    }
}

/// What the connection task needs besides the feed.
pub(crate) struct Connector {
    pub(crate) client: reqwest::Client,
    pub(crate) issuer_url: Url,
    pub(crate) issuer: String,
    pub(crate) bounds: Bounds,
    /// Refuses a key from now on; `false` once the verifier is gone.
    pub(crate) purge: Box<dyn Fn(&str) -> bool + Send + Sync>,
    /// Changes (closes) when the verifier is dropped.
    pub(crate) stop: watch::Receiver<()>,
}

/// Starts the connection and the sweeper.
pub(crate) fn spawn(feed: Arc<Feed>, connector: Connector) {
    let mut stop = connector.stop.clone();
    let sweeper = feed.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SWEEP_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                _ = tick.tick() => {
                    let now = crate::verifier::unix_now();
                    sweeper.revoked.sweep(now);
                    sweeper.check_recovery(now);
                }
            }
        }
    });
    tokio::spawn(run(feed, connector));
}

/// Connects, reads, and connects again, until the verifier is dropped.
async fn run(feed: Arc<Feed>, connector: Connector) {
    let mut stop = connector.stop.clone();
    let mut conn = Connection {
        feed: &feed,
        connector: &connector,
        cursor: String::new(),
        retry: None,
        discovered: None,
    };
    let mut failures: u32 = 0;
    let mut first = true;
    loop {
        if !first {
            feed.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        first = false;
        let ended = tokio::select! {
            _ = stop.changed() => return,
            ended = conn.session() => ended,
        };
        let Some(Ended { synced, why }) = ended else {
            return; // The verifier is gone.
        };
        // The error first: whoever sees the connection down sees why.
        feed.set_error(why.clone());
        feed.connected.store(false, Ordering::Relaxed);
        feed.ready.send_replace(false);
        if synced {
            failures = 0;
        }
        // The first failure since start or since the last sync is news;
        // the retries after it are not.
        if failures == 0 {
            tracing::warn!(error = %why, "revocation feed connection failed; reconnecting");
        } else {
            tracing::debug!(error = %why, "revocation feed connection failed again");
        }
        // Find the endpoint again: it may have moved.
        conn.discovered = None;
        let delay = backoff(conn.retry, failures);
        failures = failures.saturating_add(1);
        tokio::select! {
            _ = stop.changed() => return,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// How long to wait before attempt `failures + 1` since the last sync: the
/// server's `retry:` or 100 ms, doubled per failure up to 10 s (or the
/// `retry:`), plus up to half of it again at random so that many verifiers
/// do not come back at once. Never shorter than `retry:`.
fn backoff(retry: Option<Duration>, failures: u32) -> Duration {
    let base = retry.unwrap_or(INITIAL_BACKOFF);
    let cap = MAX_BACKOFF.max(base);
    let delay = base.saturating_mul(1 << failures.min(16)).min(cap);
    let mut random = [0u8; 4];
    let fraction = match aws_lc_rs::rand::fill(&mut random) {
        Ok(()) => f64::from(u32::from_le_bytes(random)) / f64::from(u32::MAX),
        Err(_) => 0.5,
    };
    delay + (delay / 2).mul_f64(fraction)
}

/// Why a connection ended, and whether it had been in sync.
struct Ended {
    synced: bool,
    why: String,
}

struct Connection<'a> {
    feed: &'a Feed,
    connector: &'a Connector,
    /// The `Last-Event-ID` to resume from.
    cursor: String,
    retry: Option<Duration>,
    discovered: Option<Url>,
}

#[derive(Deserialize)]
struct Revoked {
    sid: String,
    until: i64,
}

#[derive(Deserialize)]
struct KeyPurged {
    kid: String,
}

impl Connection<'_> {
    async fn endpoint(&mut self) -> Result<Url, String> {
        if let Some(url) = self.feed.url.as_ref().or(self.discovered.as_ref()) {
            return Ok(url.clone());
        }
        let c = self.connector;
        let url = fetch::discover(
            &c.client,
            &c.issuer_url,
            &c.issuer,
            c.bounds,
            fetch::REVOCATION_FEED_ENDPOINT,
        )
        .await
        .map_err(|e| e.to_string())?;
        self.discovered = Some(url.clone());
        Ok(url)
    }

    /// One connection, to its end; `None` when the verifier is gone.
    async fn session(&mut self) -> Option<Ended> {
        let mut synced = false;
        match self.stream(&mut synced).await {
            Ok(()) => None,
            Err(why) => Some(Ended { synced, why }),
        }
    }

    async fn open(&mut self) -> Result<(Url, reqwest::Response), String> {
        let url = self.endpoint().await?;
        let bounds = self.connector.bounds;
        https::check(&url, bounds.allow_insecure_http)
            .map_err(|why| format!("refusing {url}: {why}"))?;
        let mut request = self
            .connector
            .client
            .get(url.clone())
            .header(ACCEPT, "text/event-stream")
            .header(CACHE_CONTROL, "no-store")
            .header(AUTHORIZATION, self.feed.authorization.clone())
            // The client's own timeout (the JWKS fetch's) would cut the
            // stream: this one replaces it.
            .timeout(STREAM_LIFETIME);
        if !self.cursor.is_empty() {
            match HeaderValue::from_str(&self.cursor) {
                Ok(id) => request = request.header("last-event-id", id),
                // Unsendable: the snapshot again, which is safe.
                Err(_) => tracing::debug!("revocation feed cursor not sendable as a header"),
            }
        }
        let response = tokio::time::timeout(bounds.timeout, request.send())
            .await
            .map_err(|_| format!("{url} did not answer within {:?}", bounds.timeout))?
            .map_err(|e| format!("cannot reach {url}: {}", error_chain(&e)))?;
        https::check_final(&url, response.url(), bounds.allow_insecure_http)
            .map_err(|why| format!("refusing {}: {why}", response.url()))?;
        Ok((url, response))
    }

    /// Reads the stream until it fails; `Ok` only when the verifier is
    /// gone. `synced` tells whether it reached `ready`.
    async fn stream(&mut self, synced: &mut bool) -> Result<(), String> {
        let (url, mut response) = self.open().await?;
        let status = response.status();
        if status != http::StatusCode::OK {
            return Err(format!(
                "{url} answered HTTP {}{}",
                status.as_u16(),
                error_member(&mut response).await
            ));
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let is_sse = content_type
            .split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/event-stream"));
        if !is_sse {
            return Err(format!(
                "{url} answered {content_type:?}, not text/event-stream"
            ));
        }
        self.feed.connected.store(true, Ordering::Relaxed);
        let mut parser = Parser::new(&self.cursor, FEED_MAX_LINE);
        let mut items = Vec::new();
        loop {
            let chunk = match tokio::time::timeout(self.feed.max_silence, response.chunk()).await {
                Err(_) => {
                    return Err(format!(
                        "nothing from the feed for {:?} (feed_max_silence)",
                        self.feed.max_silence
                    ))
                }
                Ok(Err(e)) => return Err(format!("reading the feed: {}", error_chain(&e))),
                Ok(Ok(None)) => return Err("the feed closed the connection".into()),
                Ok(Ok(Some(chunk))) => chunk,
            };
            items.clear();
            let parsed = parser.push(&chunk, &mut items);
            for item in items.drain(..) {
                match item {
                    Item::Comment => {}
                    Item::Retry(ms) => {
                        self.retry = Some(Duration::from_millis(ms).clamp(MIN_RETRY, MAX_RETRY));
                    }
                    Item::Event(event) => {
                        if !self.apply(&event, synced)? {
                            return Ok(());
                        }
                        self.cursor.clone_from(&event.id);
                        self.feed.set_cursor(&event.id);
                    }
                }
                if *synced {
                    self.feed.touch();
                }
            }
            parsed.map_err(|e| e.to_string())?;
            if self.cursor != parser.last_id() {
                parser.last_id().clone_into(&mut self.cursor);
                self.feed.set_cursor(&self.cursor);
            }
        }
    }

    /// Applies one event; `Ok(false)` when the verifier is gone.
    fn apply(&mut self, event: &sse::Event, synced: &mut bool) -> Result<bool, String> {
        let malformed =
            |e: String| format!("malformed {} event (id {:?}): {e}", event.kind, event.id);
        match event.kind.as_str() {
            "revoked" => {
                let r: Revoked =
                    serde_json::from_str(&event.data).map_err(|e| malformed(e.to_string()))?;
                if r.sid.len() > FEED_MAX_ID_LEN {
                    return Err(malformed(format!(
                        "a sid longer than {FEED_MAX_ID_LEN} bytes"
                    )));
                }
                let now = crate::verifier::unix_now();
                if self.feed.revoked.insert(&r.sid, r.until, now) == Inserted::Full {
                    self.feed
                        .incomplete_until
                        .fetch_max(r.until, Ordering::Relaxed);
                    self.feed.enter_outage(Outage::Overflow);
                }
            }
            "key_purged" => {
                let p: KeyPurged =
                    serde_json::from_str(&event.data).map_err(|e| malformed(e.to_string()))?;
                if p.kid.len() > FEED_MAX_ID_LEN {
                    return Err(malformed(format!(
                        "a kid longer than {FEED_MAX_ID_LEN} bytes"
                    )));
                }
                tracing::info!(kid = %p.kid, "key purged by the revocation feed");
                if !(self.connector.purge)(&p.kid) {
                    return Ok(false);
                }
            }
            "ready" => {
                *synced = true;
                self.feed.touch();
                self.feed.ready.send_replace(true);
                self.feed.check_recovery(crate::verifier::unix_now());
            }
            // Forward compatible: events of later versions are skipped.
            _ => {}
        }
        Ok(true)
    }
}

/// reqwest's own text hides the cause: add the chain.
fn error_chain(e: &reqwest::Error) -> String {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// `: invalid_client (description)` from an OAuth error body, if it is one.
async fn error_member(response: &mut reqwest::Response) -> String {
    let mut body = Vec::new();
    let read = async {
        while let Ok(Some(chunk)) = response.chunk().await {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_ERROR_BODY {
                return;
            }
        }
    };
    if tokio::time::timeout(Duration::from_secs(1), read)
        .await
        .is_err()
        || body.len() > MAX_ERROR_BODY
    {
        return String::new();
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return String::new();
    };
    let text = |k: &str| value.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    match (text("error"), text("error_description")) {
        (Some(e), Some(d)) => format!(": {e} ({d})"),
        (Some(e), None) => format!(": {e}"),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn basic_credentials_are_form_urlencoded_first() {
        let v = basic_authorization("svc:1", "p@ss word+%");
        assert!(v.is_sensitive());
        let b64 = v.to_str().unwrap().strip_prefix("Basic ").unwrap();
        let decoded = String::from_utf8(STANDARD.decode(b64).unwrap()).unwrap();
        assert_eq!(decoded, "svc%3A1:p%40ss+word%2B%25");
    }

    #[test]
    fn the_revoked_set_forgets_at_until_and_is_capped() {
        let set = RevokedSet::new(3);
        assert_eq!(set.insert("a", 110, 100), Inserted::Added);
        assert_eq!(set.insert("a", 105, 100), Inserted::Known);
        assert_eq!(set.insert("x", 100, 100), Inserted::AlreadyExpired);
        assert!(set.contains("a", 109));
        assert!(!set.contains("a", 110), "forgotten at until");
        assert_eq!(set.len(), 0, "dropped on lookup");
        for (i, sid) in ["b", "c", "d"].iter().enumerate() {
            assert_eq!(set.insert(sid, 120 + i as i64, 100), Inserted::Added);
        }
        assert_eq!(set.insert("e", 200, 100), Inserted::Full);
        assert!(!set.contains("e", 101));
        // Room made from what expired.
        assert_eq!(set.insert("e", 200, 120), Inserted::Added);
        assert_eq!(set.len(), 3);
        set.sweep(130);
        assert_eq!(set.len(), 1);
        assert!(set.contains("e", 130));
    }

    #[test]
    fn backoff_doubles_to_ten_seconds_and_honours_retry() {
        for failures in 0..20 {
            let d = backoff(None, failures);
            let plain = (INITIAL_BACKOFF * 2u32.pow(failures.min(16))).min(MAX_BACKOFF);
            assert!(d >= plain && d <= plain + plain / 2, "{failures}: {d:?}");
        }
        let retry = Duration::from_secs(20);
        assert!(backoff(Some(retry), 0) >= retry);
        assert!(backoff(Some(retry), 5) <= retry + retry / 2);
        assert!(backoff(Some(Duration::from_millis(500)), 0) >= Duration::from_millis(500));
    }
}
