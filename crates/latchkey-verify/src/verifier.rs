//! The [`Verifier`]: a key-set cache and the checks every token goes
//! through.

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::Url;
use tokio::sync::Mutex;

use crate::claims::{self, Claims, Expectations};
use crate::error::{BuildError, Error, FetchError};
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
        let parsed = token::parse(token)?;
        let key = self.key(&parsed.kid).await?;
        let payload = parsed.verify(&key)?;
        let expect = Expectations {
            issuer: &self.inner.issuer,
            audience: &self.inner.audience,
            leeway: self.inner.leeway,
        };
        claims::check(&payload, &expect, unix_now())
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
        set.keys
            .get(kid)
            .cloned()
            .ok_or_else(|| Error::UnknownKey(kid.to_owned()))
    }
}

impl Inner {
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
            Ok((keys, max_age)) => {
                tracing::debug!(keys = keys.len(), ?max_age, "fetched the JWKS");
                let fresh_until = Instant::now() + max_age;
                let set = Arc::new(KeySet {
                    keys,
                    generation: current.generation + 1,
                    fresh_until: Some(fresh_until),
                    usable_until: fresh_until.checked_add(self.max_stale),
                });
                *self.keys.write().unwrap_or_else(PoisonError::into_inner) = set.clone();
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

fn unix_now() -> i64 {
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

    /// Checks the settings and builds the verifier. Nothing is fetched
    /// yet: the first [`verify`](Verifier::verify) does it, or
    /// [`refresh_keys`](Verifier::refresh_keys).
    ///
    /// # Errors
    ///
    /// A missing issuer or audience, a leeway over 60 s, a URL that is not
    /// absolute `http(s)`, a URL to fetch from that is plain `http` to a
    /// host that is not loopback (without
    /// [`allow_insecure_http`](Self::allow_insecure_http)), an HTTP client
    /// that cannot be built.
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
        Ok(Verifier {
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
            }),
        })
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
    }
}
