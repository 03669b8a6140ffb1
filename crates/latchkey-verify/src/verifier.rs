//! The [`Verifier`]: a key-set cache and the checks every token goes
//! through.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::Url;
use tokio::sync::{watch, Mutex};

use crate::claims::{self, Claims, Expectations};
use crate::error::{BuildError, Error, FetchError};
use crate::feed::{
    self, Connector, Feed, FeedOutagePolicy, FeedSettings, FeedStatus,
    DEFAULT_FEED_MAX_REVOKED_SESSIONS, DEFAULT_FEED_MAX_SILENCE,
};
use crate::fetch::{self, Bounds};
use crate::https;
use crate::jwk::{self, Keys, VerifyingKey};
use crate::token;

/// The longest leeway allowed for `exp` and `nbf` (docs/reference.md §8).
pub const MAX_LEEWAY: Duration = Duration::from_secs(60);
/// The default leeway for `exp` and `nbf`.
pub const DEFAULT_LEEWAY: Duration = MAX_LEEWAY;
/// The default shortest time between two fetches of the key set.
pub const DEFAULT_MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// The default bound on one fetch, connection to last byte.
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The default bound on the size of the key set (and discovery document).
pub const DEFAULT_MAX_JWKS_BYTES: usize = 64 * 1024;
/// The default time cached keys still serve past their `max-age` while
/// every refetch fails.
pub const DEFAULT_MAX_STALE: Duration = Duration::from_secs(60 * 60);
/// The most purged keys remembered beyond those the key set lists.
const MAX_PURGED_KEYS: usize = 1024;

/// Checks latchkey access tokens offline, against the issuer's published
/// keys.
///
/// Cheap to clone (an `Arc` inside): build one per issuer and share it. See
/// the [crate docs](crate) for an example and for what is checked.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

struct Inner {
    issuer: String,
    issuer_url: Url,
    audience: String,
    jwks_url: Option<Url>,
    leeway: i64,
    min_refetch_interval: Duration,
    max_stale: Duration,
    bounds: Bounds,
    token_cookie: Option<String>,
    client: reqwest::Client,
    keys: RwLock<Arc<KeySet>>,
    refresh: Mutex<RefreshState>,
    /// Keys the revocation feed purged, each with whether the key set
    /// lists it; refused, and kept out of the cached set, until a fetched
    /// key set no longer lists them. Lock before `keys`.
    purged: RwLock<HashMap<String, bool>>,
    feed: Option<Arc<Feed>>,
    /// Dropped with the last clone: the feed's tasks end.
    stop: watch::Sender<()>,
}

/// One fetched key set. `generation` counts successful fetches, so a caller
/// that waited for a refresh can tell whether one happened meanwhile.
struct KeySet {
    keys: Keys,
    generation: u64,
    /// When to refresh (in the background); `None` before the first fetch.
    fresh_until: Option<Instant>,
    /// When to stop trusting these keys unless a refetch succeeds (max-age
    /// plus max-stale); `None` for never.
    usable_until: Option<Instant>,
}

impl KeySet {
    fn is_stale(&self, now: Instant) -> bool {
        self.fresh_until.is_none_or(|t| now >= t)
    }

    fn is_expired(&self, now: Instant) -> bool {
        self.usable_until.is_some_and(|t| now >= t)
    }
}

#[derive(Default)]
struct RefreshState {
    last_attempt: Option<Instant>,
    last_error: Option<FetchError>,
    /// The `jwks_uri` discovery found (when no JWKS URL was given).
    discovered: Option<Url>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("issuer", &self.inner.issuer)
            .field("audience", &self.inner.audience)
            .field("jwks_url", &self.inner.jwks_url.as_ref().map(Url::as_str))
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// Starts a [`VerifierBuilder`].
    pub fn builder() -> VerifierBuilder {
        VerifierBuilder::default()
    }

    /// Verifies `token` (a compact JWS, without `Bearer `) and answers its
    /// claims.
    ///
    /// Fetches the key set on first use, when the cached one has gone stale
    /// (in the background: the stale keys still serve meanwhile, for up to
    /// [`max_stale`](VerifierBuilder::max_stale)), and when the token names
    /// a key not in it (at most once per
    /// [`min_refetch_interval`](VerifierBuilder::min_refetch_interval), one
    /// request however many callers wait). With keys cached, no I/O happens.
    ///
    /// # Errors
    ///
    /// Why the token was refused; [`Error::KeysUnavailable`] when there were
    /// no keys to check it with, [`Error::StaleKeys`] when the only keys are
    /// past `max_stale` and cannot be refreshed.
    pub async fn verify(&self, token: &str) -> Result<Claims, Error> {
        if let Some(feed) = &self.inner.feed {
            if !feed.started.load(Ordering::Relaxed) {
                self.inner.start_feed();
            }
        }
        let parsed = token::parse(token)?;
        let key = self.key(&parsed.kid).await?;
        let payload = parsed.verify(&key)?;
        let expect = Expectations {
            issuer: &self.inner.issuer,
            audience: &self.inner.audience,
            leeway: self.inner.leeway,
        };
        let now = unix_now();
        let claims = claims::check(&payload, &expect, now)?;
        if let Some(feed) = &self.inner.feed {
            feed.check(claims.sid.as_deref(), now)?;
        }
        Ok(claims)
    }

    /// The revocation feed's health, `None` without one (see
    /// [`FeedStatus`] for what to export as metrics).
    pub fn feed_status(&self) -> Option<FeedStatus> {
        let feed = self.inner.feed.as_ref()?;
        let purged = self
            .inner
            .purged
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        Some(feed.status(purged, unix_now()))
    }

    /// Waits until the revocation feed is in sync (its `ready` received on
    /// the current connection): at start-up, before serving, so that
    /// [`FeedOutagePolicy::RefuseAll`] does not refuse the first requests.
    /// Answers at once without a feed; starts the feed if it was not
    /// (see [`revocation_feed`](VerifierBuilder::revocation_feed)). Bound
    /// it with `tokio::time::timeout`: it waits as long as the feed is
    /// unreachable.
    pub async fn feed_ready(&self) {
        if let Some(feed) = &self.inner.feed {
            self.inner.start_feed();
            feed.wait_ready().await;
        }
    }

    /// Fetches the key set now (single flight, but regardless of the
    /// refetch interval): call it at start-up to fail early or to warm the
    /// cache.
    ///
    /// # Errors
    ///
    /// Why the fetch failed; previously cached keys are kept (and serve
    /// until [`max_stale`](VerifierBuilder::max_stale) past their
    /// `max-age`).
    pub async fn refresh_keys(&self) -> Result<(), FetchError> {
        self.inner.start_feed();
        let seen = self.inner.current().generation;
        Inner::refresh_detached(&self.inner, seen, true)
            .await
            .map(|_| ())
    }

    /// The ids (`kid`) of the keys cached now.
    pub fn cached_kids(&self) -> Vec<String> {
        self.inner.current().keys.keys().cloned().collect()
    }

    /// The configured issuer.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// The configured audience.
    pub fn audience(&self) -> &str {
        &self.inner.audience
    }

    /// The cookie also read for a token when there is no `Authorization`
    /// header, if one was configured.
    pub fn token_cookie(&self) -> Option<&str> {
        self.inner.token_cookie.as_deref()
    }

    async fn key(&self, kid: &str) -> Result<Arc<VerifyingKey>, Error> {
        let set = self.inner.current();
        let now = Instant::now();
        if let Some(key) = set.keys.get(kid) {
            if !set.is_stale(now) {
                return Ok(key.clone());
            }
            if !set.is_expired(now) {
                self.inner.refresh_in_background(set.generation);
                return Ok(key.clone());
            }
        }
        // A purged key is refused without a fetch: the key set may well
        // still list it.
        if self.inner.is_purged(kid) {
            return Err(Error::PurgedKey(kid.to_owned()));
        }
        // Unknown kid, nothing fetched yet, or keys past max-stale: wait for
        // a refetch.
        let set = match Inner::refresh_detached(&self.inner, set.generation, false).await {
            // Also when the refetch was skipped (the interval) because the
            // last one succeeded: those keys are as fresh as allowed.
            Ok(set) => set,
            Err(e) => {
                let cached = self.inner.current();
                if cached.keys.is_empty() {
                    return Err(Error::KeysUnavailable(e));
                }
                if cached.is_expired(Instant::now()) {
                    return Err(Error::StaleKeys {
                        max_stale: self.inner.max_stale,
                        source: e,
                    });
                }
                cached
            }
        };
        set.keys.get(kid).cloned().ok_or_else(|| {
            if self.inner.is_purged(kid) {
                Error::PurgedKey(kid.to_owned())
            } else {
                Error::UnknownKey(kid.to_owned())
            }
        })
    }
}

impl Inner {
    /// Starts the feed's tasks, once, if there is a feed and a runtime.
    fn start_feed(self: &Arc<Self>) {
        let Some(feed) = &self.feed else { return };
        if feed.started.load(Ordering::Relaxed) || tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        if feed.started.swap(true, Ordering::AcqRel) {
            return;
        }
        // Weak: the tasks must not keep the verifier alive.
        let weak = Arc::downgrade(self);
        feed::spawn(
            feed.clone(),
            Connector {
                client: self.client.clone(),
                issuer_url: self.issuer_url.clone(),
                issuer: self.issuer.clone(),
                bounds: self.bounds,
                purge: Box::new(move |kid| weak.upgrade().map(|i| i.purge_key(kid)).is_some()),
                stop: self.stop.subscribe(),
            },
        );
    }

    fn is_purged(&self, kid: &str) -> bool {
        self.purged
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(kid)
    }

    /// Refuses `kid` from now on: out of the cached set, and kept out of
    /// the next ones while they list it.
    fn purge_key(&self, kid: &str) {
        let mut purged = self.purged.write().unwrap_or_else(PoisonError::into_inner);
        let mut keys = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        let listed = keys.keys.contains_key(kid);
        purged.insert(kid.to_owned(), listed);
        if purged.len() > MAX_PURGED_KEYS {
            // Those the set does not list only guard against its listing
            // them again; the listed ones are as few as the set's keys.
            purged.retain(|k, listed| *listed || k == kid);
        }
        if listed {
            let mut left = keys.keys.clone();
            left.remove(kid);
            *keys = Arc::new(KeySet {
                keys: left,
                generation: keys.generation,
                fresh_until: keys.fresh_until,
                usable_until: keys.usable_until,
            });
        }
    }

    fn current(&self) -> Arc<KeySet> {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Refreshes in a task of its own, so that a caller that goes away
    /// (a closed connection) does not cancel a fetch others wait on.
    async fn refresh_detached(
        this: &Arc<Self>,
        seen: u64,
        force: bool,
    ) -> Result<Arc<KeySet>, FetchError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return this.refresh(seen, force).await;
        }
        let inner = this.clone();
        match tokio::spawn(async move { inner.refresh(seen, force).await }).await {
            Ok(result) => result,
            Err(e) => Err(FetchError::Transport {
                url: this.jwks_name(),
                message: format!("the fetch task failed: {e}"),
            }),
        }
    }

    /// A stale set still serves; one task refreshes it when the interval
    /// allows and no refresh is running.
    fn refresh_in_background(self: &Arc<Self>, seen: u64) {
        let Ok(state) = self.refresh.try_lock() else {
            return;
        };
        if !self.may_fetch(&state) {
            return;
        }
        drop(state);
        if tokio::runtime::Handle::try_current().is_ok() {
            let inner = self.clone();
            tokio::spawn(async move {
                let _ = inner.refresh(seen, false).await;
            });
        }
    }

    fn may_fetch(&self, state: &RefreshState) -> bool {
        state
            .last_attempt
            .is_none_or(|at| at.elapsed() >= self.min_refetch_interval)
    }

    /// The single flight: callers queue on the lock; the first fetches, the
    /// others find the new generation (or the interval not yet over) and
    /// answer without fetching.
    async fn refresh(&self, seen: u64, force: bool) -> Result<Arc<KeySet>, FetchError> {
        let mut state = self.refresh.lock().await;
        let current = self.current();
        if !force {
            if current.generation != seen {
                return Ok(current);
            }
            if !self.may_fetch(&state) {
                return match &state.last_error {
                    Some(e) => Err(e.clone()),
                    None => Ok(current),
                };
            }
        }
        state.last_attempt = Some(Instant::now());
        match self.fetch(&mut state).await {
            Ok((mut keys, max_age)) => {
                tracing::debug!(keys = keys.len(), ?max_age, "fetched the JWKS");
                // A purge is forgotten once the set no longer lists the key.
                let mut purged = self.purged.write().unwrap_or_else(PoisonError::into_inner);
                purged.retain(|kid, listed| {
                    *listed = keys.contains_key(kid);
                    *listed
                });
                keys.retain(|kid, _| !purged.contains_key(kid));
                let fresh_until = Instant::now() + max_age;
                let set = Arc::new(KeySet {
                    keys,
                    generation: current.generation + 1,
                    fresh_until: Some(fresh_until),
                    usable_until: fresh_until.checked_add(self.max_stale),
                });
                *self.keys.write().unwrap_or_else(PoisonError::into_inner) = set.clone();
                drop(purged);
                state.last_error = None;
                Ok(set)
            }
            Err(e) => {
                tracing::warn!(error = %e, "JWKS fetch failed; the cached keys serve up to max_stale");
                state.last_error = Some(e.clone());
                // Discover again next time: the document may have moved.
                state.discovered = None;
                Err(e)
            }
        }
    }

    async fn fetch(&self, state: &mut RefreshState) -> Result<(Keys, Duration), FetchError> {
        let url = match (&self.jwks_url, &state.discovered) {
            (Some(url), _) | (None, Some(url)) => url.clone(),
            (None, None) => {
                let url = fetch::discover(
                    &self.client,
                    &self.issuer_url,
                    &self.issuer,
                    self.bounds,
                    fetch::JWKS_URI,
                )
                .await?;
                state.discovered = Some(url.clone());
                url
            }
        };
        let (body, headers) = fetch::get(&self.client, &url, self.bounds).await?;
        let keys = jwk::parse_set(&body).map_err(|message| FetchError::Invalid {
            url: url.to_string(),
            message,
        })?;
        if keys.is_empty() {
            return Err(FetchError::NoUsableKeys {
                url: url.to_string(),
            });
        }
        Ok((keys, fetch::max_age(&headers)))
    }

    fn jwks_name(&self) -> String {
        match &self.jwks_url {
            Some(url) => url.to_string(),
            None => fetch::discovery_url(&self.issuer_url).to_string(),
        }
    }
}

pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Configures a [`Verifier`]. `issuer` and `audience` are required; the
/// key set is found by discovery from the issuer unless
/// [`jwks_url`](Self::jwks_url) is given.
#[derive(Debug, Clone)]
#[must_use]
pub struct VerifierBuilder {
    issuer: Option<String>,
    audience: Option<String>,
    jwks_url: Option<String>,
    leeway: Duration,
    min_refetch_interval: Duration,
    fetch_timeout: Duration,
    max_jwks_bytes: usize,
    max_stale: Duration,
    allow_insecure_http: bool,
    token_cookie: Option<String>,
    client: Option<reqwest::Client>,
    feed: Option<FeedSettings>,
    feed_url: Option<String>,
    feed_max_silence: Duration,
    feed_outage_policy: FeedOutagePolicy,
    feed_max_revoked_sessions: usize,
}

impl Default for VerifierBuilder {
    fn default() -> Self {
        Self {
            issuer: None,
            audience: None,
            jwks_url: None,
            leeway: DEFAULT_LEEWAY,
            min_refetch_interval: DEFAULT_MIN_REFETCH_INTERVAL,
            fetch_timeout: DEFAULT_FETCH_TIMEOUT,
            max_jwks_bytes: DEFAULT_MAX_JWKS_BYTES,
            max_stale: DEFAULT_MAX_STALE,
            allow_insecure_http: false,
            token_cookie: None,
            client: None,
            feed: None,
            feed_url: None,
            feed_max_silence: DEFAULT_FEED_MAX_SILENCE,
            feed_outage_policy: FeedOutagePolicy::KeepAccepting,
            feed_max_revoked_sessions: DEFAULT_FEED_MAX_REVOKED_SESSIONS,
        }
    }
}

impl VerifierBuilder {
    /// The issuer tokens must name in `iss`, exactly (latchkey's is its
    /// public URL, such as `https://login.example.com`). Without
    /// [`jwks_url`](Self::jwks_url), the key set is found from its RFC 8414
    /// metadata at `{issuer}/.well-known/oauth-authorization-server`.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// The audience tokens must name in `aud` (latchkey's `audience`
    /// setting, by default its issuer URL).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// Where the key set is, such as
    /// `https://login.example.com/.well-known/jwks.json`; skips discovery.
    ///
    /// It must be `https`, or plain `http` to a loopback host (see
    /// [`allow_insecure_http`](Self::allow_insecure_http)).
    pub fn jwks_url(mut self, url: impl Into<String>) -> Self {
        self.jwks_url = Some(url.into());
        self
    }

    /// Clock skew allowed on `exp` and `nbf`: at most 60 s, 60 s by default.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// The shortest time between two fetches of the key set (30 s by
    /// default): a flood of tokens with unknown `kid`s makes at most one
    /// fetch per interval.
    pub fn min_refetch_interval(mut self, interval: Duration) -> Self {
        self.min_refetch_interval = interval;
        self
    }

    /// The bound on one fetch, from connecting to the last byte (5 s by
    /// default).
    pub fn fetch_timeout(mut self, timeout: Duration) -> Self {
        self.fetch_timeout = timeout;
        self
    }

    /// The bound on the size of the key set and of the discovery document
    /// (64 KiB by default).
    pub fn max_jwks_bytes(mut self, bytes: usize) -> Self {
        self.max_jwks_bytes = bytes;
        self
    }

    /// How long the cached keys still serve past their `max-age` while
    /// every refetch fails (1 h by default, [`DEFAULT_MAX_STALE`]).
    ///
    /// Riding out an issuer outage keeps the API up, but keys that cannot
    /// be refreshed may have been retired (a leaked key rotated out): past
    /// this bound, tokens are refused with [`Error::StaleKeys`] (503 from
    /// the layer and the extractors, like any key-fetch failure) until a
    /// refetch succeeds, at most one per
    /// [`min_refetch_interval`](Self::min_refetch_interval). `Duration::MAX`
    /// keeps them forever.
    pub fn max_stale(mut self, max_stale: Duration) -> Self {
        self.max_stale = max_stale;
        self
    }

    /// Lets the key set and the discovery document be fetched over plain
    /// `http` from any host (off by default). **For development and
    /// testing only**: anyone on the path could swap the keys, and with
    /// them forge any token.
    ///
    /// Without it, every URL fetched (the JWKS URL, the discovery document
    /// derived from the issuer, the `jwks_uri` it names, each redirect) must
    /// be `https`, or plain `http` to a loopback host: `localhost`,
    /// `127.0.0.0/8` or `[::1]`. Even with it, a redirect from `https` to
    /// `http` is refused.
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.allow_insecure_http = allow;
        self
    }

    /// Also takes the token from this cookie (latchkey's is `accessToken`)
    /// when a request has no `Authorization: Bearer` header.
    ///
    /// A cookie is sent by the browser on cross-site requests too: protect
    /// state-changing routes that accept it against CSRF (latchkey's cookies
    /// are `SameSite`, which helps only when the API shares their site).
    pub fn token_cookie(mut self, name: impl Into<String>) -> Self {
        self.token_cookie = Some(name.into());
        self
    }

    /// The HTTP client to fetch with (for a proxy or extra root
    /// certificates); the fetch timeout, the size bound and the https rule
    /// (on the URLs asked and on the URL of each answer) still apply.
    ///
    /// Its redirect policy applies, not this crate's: build it with
    /// [`redirect_policy`](crate::redirect_policy) so that no redirect goes
    /// through plain http on the way to an https answer.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.client = Some(client);
        self
    }

    /// Subscribes to latchkey's revocation feed as the confidential OAuth
    /// client `client_id` (HTTP Basic, RFC 6749 §2.3.1), so that tokens of
    /// a revoked session are refused within about a second, not when they
    /// expire. The feed's URL is found by RFC 8414 discovery from the
    /// issuer (its `revocation_feed_endpoint`) unless
    /// [`revocation_feed_url`](Self::revocation_feed_url) gives it.
    ///
    /// ```no_run
    /// # use latchkey_verify::{FeedOutagePolicy, Verifier};
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let verifier = Verifier::builder()
    ///     .issuer("https://login.example.com")
    ///     .audience("https://login.example.com")
    ///     .revocation_feed("orders-api", std::env::var("FEED_SECRET")?)
    ///     .feed_outage_policy(FeedOutagePolicy::RefuseAll)
    ///     .build()?;
    /// // Serve once the revoked sessions are known.
    /// tokio::time::timeout(std::time::Duration::from_secs(10), verifier.feed_ready()).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// - The feed is followed by a task on the Tokio runtime, started by
    ///   [`build`](Self::build) when called within one, else by the first
    ///   [`verify`](Verifier::verify), [`refresh_keys`](Verifier::refresh_keys)
    ///   or [`feed_ready`](Verifier::feed_ready). It holds no strong
    ///   reference: it stops when the last clone of the verifier is
    ///   dropped.
    /// - It reconnects after any failure with `Last-Event-ID`, waiting
    ///   100 ms doubling to 10 s (or the server's `retry:`), with jitter.
    /// - A token whose `sid` is revoked is refused with
    ///   [`Error::RevokedSession`] (401 `invalid_token`); tokens without
    ///   `sid` (`client_credentials`) are not affected by revocations. A
    ///   key the feed purges is dropped from the cached key set and refused
    ///   ([`Error::PurgedKey`]) until a fetched key set no longer lists it.
    /// - Each revocation is held until its `until`, then forgotten (no
    ///   token of that session can pass by then), at most
    ///   [`feed_max_revoked_sessions`](Self::feed_max_revoked_sessions) at
    ///   once.
    /// - While the feed cannot be trusted (never in sync yet, silent longer
    ///   than [`feed_max_silence`](Self::feed_max_silence), or overflowed),
    ///   the [`feed_outage_policy`](Self::feed_outage_policy) applies.
    /// - [`Verifier::feed_status`] tells how it goes.
    ///
    /// The feed URL carries the client's secret: it follows the same https
    /// rule as the key set (see
    /// [`allow_insecure_http`](Self::allow_insecure_http)).
    pub fn revocation_feed(
        mut self,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
    ) -> Self {
        self.feed = Some(FeedSettings {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
        });
        self
    }

    /// Where the revocation feed is (latchkey's `revocation_feed_endpoint`),
    /// instead of finding it by discovery. Needs
    /// [`revocation_feed`](Self::revocation_feed) for the credentials.
    pub fn revocation_feed_url(mut self, url: impl Into<String>) -> Self {
        self.feed_url = Some(url.into());
        self
    }

    /// How long the revocation feed may be unreachable or silent before the
    /// [`feed_outage_policy`](Self::feed_outage_policy) applies (30 s by
    /// default, [`DEFAULT_FEED_MAX_SILENCE`](crate::DEFAULT_FEED_MAX_SILENCE)):
    /// measured from its last event or heartbeat while in sync. A
    /// connection silent that long is also given up and made again.
    ///
    /// Keep it above the server's heartbeat interval (latchkey sends one at
    /// least every 15 s): the default allows one heartbeat to be late.
    pub fn feed_max_silence(mut self, max_silence: Duration) -> Self {
        self.feed_max_silence = max_silence;
        self
    }

    /// What to do with tokens while the revocation feed cannot be trusted
    /// ([`FeedOutagePolicy::KeepAccepting`] by default).
    pub fn feed_outage_policy(mut self, policy: FeedOutagePolicy) -> Self {
        self.feed_outage_policy = policy;
        self
    }

    /// The most revoked sessions held at once (1,000,000 by default,
    /// [`DEFAULT_FEED_MAX_REVOKED_SESSIONS`](crate::DEFAULT_FEED_MAX_REVOKED_SESSIONS);
    /// each costs about its `sid`'s length plus 60 bytes, so some 100 MB
    /// for a million UUIDs).
    ///
    /// A revocation that comes when the set is full (after dropping what
    /// expired) cannot be held, and its session would pass: so the set
    /// counts as incomplete, and the
    /// [`feed_outage_policy`](Self::feed_outage_policy) applies, until the
    /// latest `until` of the revocations dropped has passed (by then they
    /// would have been forgotten anyway).
    pub fn feed_max_revoked_sessions(mut self, max: usize) -> Self {
        self.feed_max_revoked_sessions = max;
        self
    }

    /// Checks the settings and builds the verifier. No key is fetched
    /// yet: the first [`verify`](Verifier::verify) does it, or
    /// [`refresh_keys`](Verifier::refresh_keys). Within a Tokio runtime,
    /// the [revocation feed](Self::revocation_feed), if any, is started.
    ///
    /// # Errors
    ///
    /// A missing issuer or audience, a leeway over 60 s, a URL that is not
    /// absolute `http(s)`, a URL to fetch from that is plain `http` to a
    /// host that is not loopback (without
    /// [`allow_insecure_http`](Self::allow_insecure_http)), an HTTP client
    /// that cannot be built, a feed URL without
    /// [`revocation_feed`](Self::revocation_feed).
    pub fn build(self) -> Result<Verifier, BuildError> {
        let issuer = self.issuer.ok_or(BuildError::MissingIssuer)?;
        let audience = self.audience.ok_or(BuildError::MissingAudience)?;
        if self.leeway > MAX_LEEWAY {
            return Err(BuildError::LeewayTooLarge(self.leeway));
        }
        let issuer_url = http_url(&issuer)?;
        let jwks_url = self.jwks_url.as_deref().map(http_url).transpose()?;
        // The issuer is fetched from only for discovery; otherwise it is a
        // name compared with `iss`, whatever its scheme.
        let fetched = jwks_url.as_ref().unwrap_or(&issuer_url);
        if https::check(fetched, self.allow_insecure_http).is_err() {
            return Err(BuildError::InsecureUrl {
                url: fetched.to_string(),
            });
        }
        let feed = match (self.feed, self.feed_url) {
            (None, Some(_)) => return Err(BuildError::MissingFeedClient),
            (None, None) => None,
            (Some(settings), url) => {
                let url = url.as_deref().map(http_url).transpose()?;
                // The credentials go there (or to what discovery finds).
                let fetched = url.as_ref().unwrap_or(&issuer_url);
                if https::check(fetched, self.allow_insecure_http).is_err() {
                    return Err(BuildError::InsecureUrl {
                        url: fetched.to_string(),
                    });
                }
                Some(Arc::new(Feed::new(
                    feed::basic_authorization(&settings.client_id, &settings.client_secret),
                    url,
                    self.feed_max_silence,
                    self.feed_outage_policy,
                    self.feed_max_revoked_sessions,
                )))
            }
        };
        let client = match self.client {
            Some(client) => client,
            None => reqwest::Client::builder()
                .timeout(self.fetch_timeout)
                .connect_timeout(self.fetch_timeout)
                .redirect(https::redirect_policy(self.allow_insecure_http))
                .user_agent(concat!("latchkey-verify/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| BuildError::Client(e.to_string()))?,
        };
        let leeway = i64::try_from(self.leeway.as_secs()).unwrap_or(60);
        let verifier = Verifier {
            inner: Arc::new(Inner {
                issuer,
                issuer_url,
                audience,
                jwks_url,
                leeway,
                min_refetch_interval: self.min_refetch_interval,
                max_stale: self.max_stale,
                bounds: Bounds {
                    timeout: self.fetch_timeout,
                    max_bytes: self.max_jwks_bytes,
                    allow_insecure_http: self.allow_insecure_http,
                },
                token_cookie: self.token_cookie,
                client,
                keys: RwLock::new(Arc::new(KeySet {
                    keys: Keys::new(),
                    generation: 0,
                    fresh_until: None,
                    usable_until: None,
                })),
                refresh: Mutex::new(RefreshState::default()),
                purged: RwLock::default(),
                feed,
                stop: watch::Sender::new(()),
            }),
        };
        verifier.inner.start_feed();
        Ok(verifier)
    }
}

fn http_url(text: &str) -> Result<Url, BuildError> {
    let invalid = |message| BuildError::InvalidUrl {
        url: text.to_owned(),
        message,
    };
    let url = Url::parse(text).map_err(|_| invalid("not an absolute URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("not http or https"));
    }
    if url.host_str().is_none() {
        return Err(invalid("no host"));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn base() -> VerifierBuilder {
        Verifier::builder()
            .issuer("https://login.example.com")
            .audience("https://api.example.com")
    }

    #[test]
    fn the_builder_refuses_what_cannot_be_checked() {
        assert_eq!(
            Verifier::builder().audience("a").build().unwrap_err(),
            BuildError::MissingIssuer
        );
        assert_eq!(
            Verifier::builder().issuer("https://i").build().unwrap_err(),
            BuildError::MissingAudience
        );
        assert_eq!(
            base().leeway(Duration::from_secs(61)).build().unwrap_err(),
            BuildError::LeewayTooLarge(Duration::from_secs(61))
        );
        assert!(base().leeway(Duration::ZERO).build().is_ok());
        assert!(matches!(
            base().jwks_url("/jwks.json").build(),
            Err(BuildError::InvalidUrl { .. })
        ));
        assert!(matches!(
            base().jwks_url("ftp://x/jwks.json").build(),
            Err(BuildError::InvalidUrl { .. })
        ));
        assert!(matches!(
            Verifier::builder().issuer("login").audience("a").build(),
            Err(BuildError::InvalidUrl { .. })
        ));
        assert!(matches!(
            base()
                .jwks_url("http://login.example.com/jwks.json")
                .build(),
            Err(BuildError::InsecureUrl { .. })
        ));
        assert!(base()
            .jwks_url("http://login.example.com/jwks.json")
            .allow_insecure_http(true)
            .build()
            .is_ok());
        assert_eq!(DEFAULT_MAX_STALE, Duration::from_secs(3600));
        assert_eq!(Verifier::builder().max_stale, DEFAULT_MAX_STALE);
        assert!(!Verifier::builder().allow_insecure_http);
        let v = base().token_cookie("accessToken").build().unwrap();
        assert_eq!(v.token_cookie(), Some("accessToken"));
        assert!(v.cached_kids().is_empty());
        assert_eq!(v.feed_status(), None);
    }

    #[test]
    fn the_feed_settings_are_checked() {
        assert_eq!(
            base()
                .revocation_feed_url("https://login.example.com/feed")
                .build()
                .unwrap_err(),
            BuildError::MissingFeedClient
        );
        // The secret goes to the feed: https, or loopback http.
        assert!(matches!(
            base()
                .revocation_feed("api", "secret")
                .revocation_feed_url("http://login.example.com/feed")
                .build(),
            Err(BuildError::InsecureUrl { .. })
        ));
        // By discovery, from the issuer, whatever the JWKS URL.
        assert!(matches!(
            Verifier::builder()
                .issuer("http://login.example.com")
                .audience("a")
                .jwks_url("https://login.example.com/jwks.json")
                .revocation_feed("api", "secret")
                .build(),
            Err(BuildError::InsecureUrl { .. })
        ));
        assert!(base()
            .revocation_feed("api", "secret")
            .revocation_feed_url("http://127.0.0.1:1/feed")
            .build()
            .is_ok());
        let builder = base().revocation_feed("api", "hunter2");
        assert!(!format!("{builder:?}").contains("hunter2"));
        assert_eq!(builder.feed_max_silence, DEFAULT_FEED_MAX_SILENCE);
        assert_eq!(builder.feed_outage_policy, FeedOutagePolicy::KeepAccepting);
        assert_eq!(builder.feed_max_revoked_sessions, 1_000_000);
        // Built outside a runtime: not started, never in sync, an outage.
        let v = builder.build().unwrap();
        let status = v.feed_status().unwrap();
        assert!(!status.connected && !status.ready && status.outage);
        assert_eq!((status.revoked_sessions, status.reconnects), (0, 0));
    }
}
