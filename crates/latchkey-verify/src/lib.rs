//! Verify latchkey access tokens offline, in the
//! resource servers that receive them.
//!
//! A [`Verifier`] fetches the issuer's public keys (its JWKS) once, keeps
//! them as long as `Cache-Control` allows, and checks each token locally:
//! no call to latchkey per request. An [`AuthLayer`] (a tower layer) and
//! the [`Claims`] extractor put it in front of axum handlers.
//!
//! # Protect a route
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use latchkey_verify::{Claims, Verifier};
//!
//! async fn me(claims: Claims) -> String {
//!     format!("hello {}", claims.sub) // reached only with a valid token
//! }
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let verifier = Verifier::builder()
//!     .issuer("https://login.example.com")
//!     .jwks_url("https://login.example.com/.well-known/jwks.json")
//!     .audience("https://login.example.com")
//!     .build()?;
//! let app = Router::new().route("/me", get(me)).route_layer(verifier.layer());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```
//!
//! A request without a token is answered `401` with a bare
//! `WWW-Authenticate: Bearer` challenge; a bad token `401` with
//! `Bearer error="invalid_token"`; both with a JSON body
//! `{"error", "error_description"}` (RFC 6750 §3, see [`Rejection`]).
//!
//! # Scopes
//!
//! Three ways to ask for a scope, each answering `403` with
//! `Bearer error="insufficient_scope", scope="..."`:
//!
//! ```
//! use axum::{routing::post, Router};
//! use latchkey_verify::{scope, Claims, Rejection, RequireScope, Verifier};
//!
//! scope!(PostsWrite = "posts:write");
//!
//! async fn create(claims: RequireScope<PostsWrite>) -> String {
//!     format!("post by {}", claims.sub)
//! }
//!
//! async fn delete(claims: Claims) -> Result<&'static str, Rejection> {
//!     claims.require_scope("posts:admin")?;
//!     Ok("deleted")
//! }
//!
//! # fn app(verifier: Verifier) -> Router {
//! Router::new()
//!     .route("/posts", post(create))
//!     .route("/posts/delete", post(delete))
//!     .route_layer(verifier.layer())
//!     // or, for every route of a router:
//!     .merge(Router::new().route("/admin", post(|| async { "ok" }))
//!         .route_layer(verifier.layer().require_scope("admin")))
//! # }
//! ```
//!
//! # Step-up: how and when the user logged in
//!
//! latchkey's tokens say how the user logged in (`amr`, RFC 8176: `pwd`,
//! `otp`, `mfa`, `hwk`, `user`) and when (`auth_time`, kept by refreshes).
//! A route can demand a method or a recent login (RFC 9470); a token short
//! of it is answered `401` with
//! `Bearer error="insufficient_user_authentication"` and `acr_values` (the
//! methods missing) or `max_age` (seconds), for the client to send the
//! user through a login again:
//!
//! ```
//! use std::time::Duration;
//!
//! use axum::{routing::post, Router};
//! use latchkey_verify::{Claims, Rejection, Verifier};
//!
//! async fn delete_post(claims: Claims) -> Result<&'static str, Rejection> {
//!     // Logged in within the last 5 minutes, however.
//!     claims.require_auth_within(Duration::from_secs(300))?;
//!     Ok("deleted")
//! }
//!
//! # fn app(verifier: Verifier) -> Router {
//! Router::new()
//!     .route("/posts/delete", post(delete_post))
//!     .route_layer(verifier.layer())
//!     // or, for every route of a router: a second factor, recently.
//!     .merge(Router::new().route("/billing", post(|| async { "ok" }))
//!         .route_layer(verifier.layer().require_second_factor()
//!             .require_max_age(Duration::from_secs(600))))
//! # }
//! ```
//!
//! Without a layer, `.layer(axum::Extension(verifier))` lets the
//! [`Claims`] extractor verify the token itself, so that only the handlers
//! that take `Claims` require one; `Option<Claims>` makes the token
//! optional (a bad one is still refused).
//!
//! # What is checked
//!
//! - The header: `typ` is `at+jwt` or `application/at+jwt` (RFC 9068 §4,
//!   case-insensitive); `alg` is `EdDSA`, `ES256` or `RS256` (never `none`,
//!   never an HMAC); `kid` names a key of the key set; no `crit`.
//! - The algorithm is pinned by the key (`kty`/`crv`: Ed25519 → `EdDSA`,
//!   P-256 → `ES256`, RSA → `RS256`): a header naming another one is
//!   refused, never followed.
//! - The signature.
//! - The claims: `iss` is the configured issuer, `aud` names the configured
//!   audience, `exp` is not past and `nbf` not future, with a leeway of at
//!   most 60 s (60 s by default); `iss`, `sub`, `aud`, `exp`, `iat`, `jti`,
//!   `client_id` and `scope` are present.
//!
//! # The key set
//!
//! - Found by [`VerifierBuilder::jwks_url`] (latchkey serves it at
//!   `/.well-known/jwks.json`) or else by RFC 8414 discovery from the
//!   issuer.
//! - Fetched on first use (or by [`Verifier::refresh_keys`]), kept for the
//!   answer's `Cache-Control: max-age` (5 min when it says nothing, at most
//!   a day), then refreshed in the background while the old keys still
//!   serve.
//! - Fetched again when a token names an unknown `kid` (a key rotated
//!   in), at most once per [`min_refetch_interval`](VerifierBuilder::min_refetch_interval),
//!   with a single request in flight however many verifications wait.
//! - Each fetch is bounded in time ([`fetch_timeout`](VerifierBuilder::fetch_timeout))
//!   and size ([`max_jwks_bytes`](VerifierBuilder::max_jwks_bytes)); a
//!   failed one keeps the cached keys in use, for at most
//!   [`max_stale`](VerifierBuilder::max_stale) (1 h by default) past their
//!   `max-age`. After that, tokens are refused with [`Error::StaleKeys`]
//!   (`503`, like any key-fetch failure) until a refetch succeeds.
//! - Fetched over `https` only: plain `http` is allowed to a loopback host
//!   (`localhost`, `127.0.0.0/8`, `[::1]`) and, for development only, to
//!   any host with [`allow_insecure_http`](VerifierBuilder::allow_insecure_http).
//!   A JWKS URL (or, for discovery, an issuer) that breaks this fails
//!   [`build`](VerifierBuilder::build); a `jwks_uri` discovery finds, a
//!   redirect, or an answer's final URL that breaks it fails the fetch
//!   ([`FetchError::Insecure`]).
//! - Redirects: at most [`MAX_REDIRECTS`], never from `https` to `http`
//!   (even with the opt-in). With a client of your own
//!   ([`http_client`](VerifierBuilder::http_client)), its redirect policy
//!   applies: give it [`redirect_policy`].
//!
//! # Revoked sessions
//!
//! An access token is valid until it expires, even after its session is
//! revoked (a logout, a password change, an admin's revocation). With
//! [`VerifierBuilder::revocation_feed`], the verifier follows latchkey's
//! revocation feed (Server-Sent Events, as a confidential OAuth client) and
//! refuses the tokens of a revoked session within about a second
//! ([`Error::RevokedSession`], `401`), and those signed by a purged key
//! ([`Error::PurgedKey`]):
//!
//! ```no_run
//! # use latchkey_verify::{FeedOutagePolicy, Verifier};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let verifier = Verifier::builder()
//!     .issuer("https://login.example.com")
//!     .audience("https://login.example.com")
//!     .revocation_feed("orders-api", "its client secret")
//!     .feed_outage_policy(FeedOutagePolicy::KeepAccepting) // the default
//!     .build()?;
//! # Ok(()) }
//! ```
//!
//! While the feed cannot be trusted (not in sync yet, silent for longer
//! than [`feed_max_silence`](VerifierBuilder::feed_max_silence), or holding
//! more than [`feed_max_revoked_sessions`](VerifierBuilder::feed_max_revoked_sessions)),
//! [`FeedOutagePolicy`] decides: keep accepting (with a warning: the token
//! lifetime bounds a revoked session again) or refuse every token (`503`).
//! [`Verifier::feed_status`] gives what to watch.
//!
//! With keys cached, verifying costs little more than the signature check
//! itself, feed or not (see `benches/verify.rs`).
#![deny(missing_docs)]

mod claims;
mod error;
mod feed;
mod fetch;
mod https;
mod jwk;
mod layer;
mod request;
mod sse;
mod step_up;
mod token;
mod verifier;

pub use crate::claims::Claims;
pub use crate::error::{BuildError, Error, FetchError};
pub use crate::feed::{
    FeedOutagePolicy, FeedStatus, DEFAULT_FEED_MAX_REVOKED_SESSIONS, DEFAULT_FEED_MAX_SILENCE,
    FEED_MAX_ID_LEN, FEED_MAX_LINE,
};
pub use crate::https::{redirect_policy, MAX_REDIRECTS};
pub use crate::jwk::Algorithm;
pub use crate::layer::{Auth, AuthLayer, RequireScope, Scope};
pub use crate::request::Rejection;
pub use crate::step_up::{AuthRequirement, SECOND_FACTOR_AMR};
pub use crate::verifier::{
    Verifier, VerifierBuilder, DEFAULT_FETCH_TIMEOUT, DEFAULT_LEEWAY, DEFAULT_MAX_JWKS_BYTES,
    DEFAULT_MAX_STALE, DEFAULT_MIN_REFETCH_INTERVAL, MAX_LEEWAY,
};
