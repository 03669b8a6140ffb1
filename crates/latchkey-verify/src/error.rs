//! The typed failures: why a token was refused, why keys could not be
//! fetched, why a [`Verifier`](crate::Verifier) could not be built.

use std::time::Duration;

use crate::jwk::Algorithm;

/// Why [`Verifier::verify`](crate::Verifier::verify) refused a token.
///
/// Every variant but [`Error::KeysUnavailable`], [`Error::StaleKeys`] and
/// [`Error::FeedUnavailable`] means the token itself is bad (HTTP 401
/// `invalid_token`); those three mean the verifier could not tell, because
/// the issuer's keys could not be fetched or its revocation feed is out of
/// reach (HTTP 503).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Not a compact JWS: wrong number of parts, bad base64url, a header
    /// that is not a JSON object, an unsupported `crit`, too long.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The header's `typ` is neither `at+jwt` nor `application/at+jwt`
    /// (RFC 9068 §4).
    #[error("the token is not an access token (typ)")]
    InvalidType,
    /// The header's `alg` is `none`, symmetric, or unknown.
    #[error("the token's algorithm {0:?} is not accepted")]
    UnsupportedAlgorithm(String),
    /// The header names no key (`kid`).
    #[error("the token names no key (kid)")]
    MissingKeyId,
    /// The `kid` is not in the issuer's key set, even after a refetch.
    #[error("the token's key {0:?} is not among the issuer's keys")]
    UnknownKey(String),
    /// The header's `alg` is not the algorithm of the key it names: the
    /// algorithm is pinned by the key, never chosen by the token.
    #[error("the token's algorithm {header:?} is not its key's ({key})")]
    AlgorithmMismatch {
        /// What the token's header says.
        header: String,
        /// What the key is for.
        key: Algorithm,
    },
    /// The signature does not verify with the key.
    #[error("the token's signature is invalid")]
    InvalidSignature,
    /// The payload is not a JSON object of the expected claim types.
    #[error("the token's claims are malformed: {0}")]
    MalformedClaims(String),
    /// A required claim is absent.
    #[error("the token lacks the {0} claim")]
    MissingClaim(&'static str),
    /// `exp` is past (beyond the leeway).
    #[error("the token has expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("the token is not valid yet")]
    NotYetValid,
    /// `iss` is not the configured issuer.
    #[error("the token's issuer is not accepted")]
    InvalidIssuer,
    /// `aud` does not name the configured audience.
    #[error("the token's audience is not accepted")]
    InvalidAudience,
    /// No key could be had to check the token with: the key set was never
    /// fetched successfully (or holds no key at all) and the last fetch
    /// failed.
    #[error("the issuer's keys are unavailable: {0}")]
    KeysUnavailable(#[source] FetchError),
    /// The cached keys are older than their `max-age` plus
    /// [`max_stale`](crate::VerifierBuilder::max_stale), and every refetch
    /// since has failed: they are no longer trusted, until a refetch
    /// succeeds.
    #[error(
        "the issuer's keys could not be refreshed for longer than max_stale \
         ({max_stale:?}) past their max-age: {source}"
    )]
    StaleKeys {
        /// The configured bound.
        max_stale: Duration,
        /// Why the last refetch failed.
        source: FetchError,
    },
    /// The token's session (`sid`) was revoked, as the
    /// [revocation feed](crate::VerifierBuilder::revocation_feed) said.
    #[error("the token's session was revoked")]
    RevokedSession,
    /// The token's key was purged by the issuer (through the revocation
    /// feed): refused while the key set still lists it.
    #[error("the token's key {0:?} was purged by the issuer")]
    PurgedKey(String),
    /// The revocation feed cannot be trusted now (never in sync yet,
    /// silent too long, overflowed) and the outage policy is
    /// [`RefuseAll`](crate::FeedOutagePolicy::RefuseAll): no token can be
    /// told apart from a revoked one. Not the token's fault: 503.
    #[error("{0}, and the outage policy refuses every token")]
    FeedUnavailable(String),
}

impl Error {
    /// `true` when the token itself is bad (everything but
    /// [`Error::KeysUnavailable`], [`Error::StaleKeys`] and
    /// [`Error::FeedUnavailable`]).
    pub fn is_invalid_token(&self) -> bool {
        !matches!(
            self,
            Self::KeysUnavailable(_) | Self::StaleKeys { .. } | Self::FeedUnavailable(_)
        )
    }

    /// A short fixed description, safe to send to a client: it never echoes
    /// anything the token said.
    pub fn description(&self) -> &'static str {
        match self {
            Self::Malformed(_) | Self::MalformedClaims(_) => "the access token is malformed",
            Self::InvalidType => "the token is not an access token",
            Self::UnsupportedAlgorithm(_) | Self::AlgorithmMismatch { .. } => {
                "the token's algorithm is not accepted"
            }
            Self::MissingKeyId | Self::UnknownKey(_) => "the token's signing key is not known",
            Self::InvalidSignature => "the token's signature is invalid",
            Self::MissingClaim(_) => "the token lacks a required claim",
            Self::Expired => "the access token expired",
            Self::NotYetValid => "the access token is not valid yet",
            Self::InvalidIssuer => "the token's issuer is not accepted",
            Self::InvalidAudience => "the token's audience is not accepted",
            Self::KeysUnavailable(_) => "the issuer's keys cannot be fetched, try again shortly",
            Self::StaleKeys { .. } => {
                "the issuer's keys are out of date and cannot be refreshed, try again shortly"
            }
            Self::RevokedSession => "the token's session was revoked",
            Self::PurgedKey(_) => "the token's signing key was withdrawn",
            Self::FeedUnavailable(_) => {
                "the list of revoked sessions is out of date, try again shortly"
            }
        }
    }
}

/// Why the key set (or the discovery document) could not be fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The whole fetch (connect, headers, body) took longer than the
    /// configured timeout.
    #[error("fetching {url} timed out after {timeout:?}")]
    Timeout {
        /// What was fetched.
        url: String,
        /// The bound.
        timeout: Duration,
    },
    /// The answer was not a success.
    #[error("{url} answered HTTP {status}")]
    Status {
        /// What was fetched.
        url: String,
        /// The HTTP status code.
        status: u16,
    },
    /// The body was larger than the configured bound.
    #[error("{url} sent more than {limit} bytes")]
    TooLarge {
        /// What was fetched.
        url: String,
        /// The bound, in bytes.
        limit: usize,
    },
    /// Connection, TLS or protocol failure.
    #[error("cannot fetch {url}: {message}")]
    Transport {
        /// What was fetched.
        url: String,
        /// The transport's description.
        message: String,
    },
    /// The body is not what was expected (not JSON, not a key set, a
    /// discovery document for another issuer, no `jwks_uri`).
    #[error("{url} is not usable: {message}")]
    Invalid {
        /// What was fetched.
        url: String,
        /// What is wrong with it.
        message: String,
    },
    /// A URL the keys would have come from is neither `https` nor plain
    /// `http` to a loopback host (and
    /// [`allow_insecure_http`](crate::VerifierBuilder::allow_insecure_http)
    /// is off): a `jwks_uri` found by discovery, a redirect, the URL an
    /// answer came from in the end; or a redirect from `https` to `http`
    /// (refused even with the opt-in).
    #[error("refusing {url}: {message}")]
    Insecure {
        /// The URL refused.
        url: String,
        /// Why.
        message: String,
    },
    /// The key set holds no key this crate can verify with (Ed25519, P-256
    /// or RSA of 2048 bits or more, for signatures, with a `kid`).
    #[error("{url} holds no usable signing key")]
    NoUsableKeys {
        /// What was fetched.
        url: String,
    },
}

/// Why [`VerifierBuilder::build`](crate::VerifierBuilder::build) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// `issuer` was not set: tokens' `iss` must be checked.
    #[error("the issuer must be set")]
    MissingIssuer,
    /// `audience` was not set: tokens' `aud` must be checked.
    #[error("the audience must be set")]
    MissingAudience,
    /// The leeway is longer than 60 s.
    #[error("the leeway must be at most 60 s, not {0:?}")]
    LeewayTooLarge(Duration),
    /// The issuer or the JWKS URL is not an absolute `http(s)` URL.
    #[error("{url:?} is not usable: {message}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        message: &'static str,
    },
    /// The issuer (when discovery uses it) or the JWKS URL is plain
    /// `http` to a host that is not loopback, and
    /// [`allow_insecure_http`](crate::VerifierBuilder::allow_insecure_http)
    /// is off.
    #[error(
        "{url:?} is plain http to a host that is not loopback: use https \
         (allow_insecure_http(true) lifts this, for development only)"
    )]
    InsecureUrl {
        /// The URL given.
        url: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    /// [`revocation_feed_url`](crate::VerifierBuilder::revocation_feed_url)
    /// was given without
    /// [`revocation_feed`](crate::VerifierBuilder::revocation_feed) and its
    /// client credentials.
    #[error("a revocation feed URL needs revocation_feed(client_id, client_secret)")]
    MissingFeedClient,
}
