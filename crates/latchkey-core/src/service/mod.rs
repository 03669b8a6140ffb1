//! The session service: every rule of docs/reference.md §3 to §8 that is
//! not about HTTP. The HTTP layer and the CLI are two doors into it.
//!
//! One file per concern: [`keys`] (signing keys), [`users`] (accounts and
//! passwords), [`login`] (the password check and the login limit),
//! [`refresh`] (rotation, the grace window, reuse), [`mfa`] (second
//! factors and a login's second step), [`sessions`] (access
//! tokens checked against the store, logout, revocation), [`oauth`] (the
//! OAuth door: clients, grants, revocation, introspection), [`passkeys`]
//! (WebAuthn registration and login) and [`maintenance`] (prune, counts).

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use latchkey_proto::AccessClaims;
use time::OffsetDateTime;

use crate::audit::AuditRecord;
use crate::clock::Clock;
use crate::crypto::{MasterKey, RefreshSecret, SealKey};
use crate::error::ServiceError;
use crate::keys::KeyRing;
use crate::password::PasswordHasher;
use crate::policy::{Policy, WEB_CLIENT_ID};
use crate::store::Store;
use crate::tokens::VerifiedTokens;

mod client_cache;
mod email;
mod facts;
mod feed;
mod keys;
mod login;
mod maintenance;
mod mfa;
mod oauth;
mod passkeys;
mod recovery;
mod refresh;
mod sessions;
mod users;
mod views;

pub use client_cache::CLIENT_CACHE_TTL;
pub use feed::{FeedEvent, FeedEventKind, FeedSubscription, POLL_INTERVAL, VERIFIER_LEEWAY};
pub use maintenance::PRUNE_BATCH;
pub use mfa::{
    LoginOutcome, MfaChallenge, MfaSummary, SecondFactor, TotpEnrolment, MFA_MAX_CODES,
    MFA_METHODS, MFA_TOKEN_TTL,
};
pub use oauth::{ClientAuth, NewClient, PUBLIC_CLIENT_ID};
pub use passkeys::{CeremonyStart, PasskeyView};
pub use recovery::{
    MAIL_PRUNE_AFTER, RESET_MAILS_PER_HOUR, RESET_TOKEN_TTL, VERIFY_MAILS_PER_HOUR,
    VERIFY_TOKEN_TTL,
};
pub use views::{ClientView, KeyView, SessionView, UserView};

/// Who is calling, as far as the rules care.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    pub ip: String,
    pub user_agent: Option<String>,
}

/// A freshly issued pair (login or refresh).
#[derive(Debug, Clone)]
pub struct Issued {
    pub access_token: String,
    pub expires_in: Duration,
    pub refresh_token: String,
    /// How long the refresh token may live from now: the earlier of the idle
    /// and the absolute expiry.
    pub refresh_lifetime: Duration,
    pub session: SessionView,
    pub user: UserView,
}

/// A caller whose access token checked out against the store.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub claims: AccessClaims,
    pub user: UserView,
    pub session: SessionView,
    /// The user's address, read with the session at no extra cost.
    pub email: Option<crate::mail::EmailRecord>,
    /// The user's second factors, read with the session the same way.
    pub second_factors: crate::mfa::SecondFactors,
}

/// The scope that lets a third-party client's token manage the account.
pub const ACCOUNT_SCOPE: &str = "account";

impl Authenticated {
    /// Sessions, logout everywhere, the password and the rest of `/v1/me/`
    /// take the `web` client's token, or one granted the `account` scope:
    /// an app the user merely let read their profile cannot lock them out.
    pub fn require_account_access(&self) -> Result<(), ServiceError> {
        let first_party = self.claims.client_id == WEB_CLIENT_ID;
        if first_party || self.claims.scope.split(' ').any(|s| s == ACCOUNT_SCOPE) {
            Ok(())
        } else {
            Err(ServiceError::InsufficientScope(ACCOUNT_SCOPE))
        }
    }
}

/// Told of every security event (the audit log's), e.g. to count them.
pub trait EventSink: Send + Sync + 'static {
    fn event(&self, event: &str);
}

pub struct Service {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    policy: Policy,
    hasher: PasswordHasher,
    refresh_secret: RefreshSecret,
    master_key: Option<MasterKey>,
    ring: RwLock<Arc<KeyRing>>,
    verified: VerifiedTokens,
    facts: facts::FactsCache,
    clients: client_cache::ClientCache,
    feed: feed::FeedHub,
    events: Option<Arc<dyn EventSink>>,
    /// Live sessions at the last count (`u64::MAX`: never counted).
    live_sessions: AtomicU64,
    /// Told when a mail is queued, so that this node's sender starts at once.
    outbox: tokio::sync::Notify,
    /// Reset requests being looked up in the background (bounded).
    reset_jobs: Arc<tokio::sync::Semaphore>,
    /// Passkeys' relying party (its id and origins).
    relying_party: crate::webauthn::RelyingParty,
    /// Seals a passkey login's state into its `challenge_id`.
    login_seal: SealKey,
}

/// How long [`Service::ready`] waits for the store.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

impl Service {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        policy: Policy,
        refresh_secret: RefreshSecret,
        master_key: Option<MasterKey>,
    ) -> Result<Self, ServiceError> {
        Ok(Self {
            hasher: PasswordHasher::new(policy.password_queue)?,
            relying_party: crate::webauthn::RelyingParty::new(
                &policy.webauthn_rp_id,
                &policy.webauthn_origins,
            )?,
            login_seal: refresh_secret.seal_key(passkeys::LOGIN_SEAL_PURPOSE)?,
            store,
            clock,
            policy,
            refresh_secret,
            master_key,
            ring: RwLock::new(Arc::new(KeyRing::default())),
            verified: VerifiedTokens::default(),
            facts: facts::FactsCache::default(),
            clients: client_cache::ClientCache::default(),
            feed: feed::FeedHub::default(),
            events: None,
            live_sessions: AtomicU64::new(u64::MAX),
            outbox: tokio::sync::Notify::new(),
            reset_jobs: Arc::new(tokio::sync::Semaphore::new(recovery::RESET_JOBS)),
        })
    }

    /// Reports every security event to `sink` as well.
    pub fn with_events(mut self, sink: Arc<dyn EventSink>) -> Self {
        self.events = Some(sink);
        self
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The clock's time in whole milliseconds, the precision stores keep, so
    /// that what is answered now reads back the same later.
    pub fn now(&self) -> OffsetDateTime {
        let now = self.clock.now();
        now.replace_nanosecond(now.nanosecond() / 1_000_000 * 1_000_000)
            .unwrap_or(now)
    }

    pub fn password_queue_depth(&self) -> usize {
        self.hasher.queue_depth()
    }

    /// Whether the store answers, within a couple of seconds.
    pub async fn ready(&self) -> Result<(), ServiceError> {
        match tokio::time::timeout(READY_TIMEOUT, self.store.ping()).await {
            Ok(answer) => Ok(answer?),
            Err(_) => Err(ServiceError::Unavailable(
                crate::store::StoreError::Unavailable("the store did not answer in time".into()),
            )),
        }
    }

    /// The structured log line of a security event (never a secret), and
    /// its count.
    fn log_audit(&self, record: &AuditRecord) {
        tracing::info!(
            target: "latchkey::audit",
            event = %record.event,
            user_id = record.user_id.as_deref(),
            session_id = record.session_id.as_deref(),
            ip = record.ip.as_deref(),
            detail = record.detail.as_deref(),
        );
        self.count_event(&record.event);
    }

    /// Counts an event without a log line or an audit row.
    fn count_event(&self, event: &str) {
        if let Some(sink) = &self.events {
            sink.event(event);
        }
    }

    /// Audit rows are best effort beside the operation they describe: a
    /// failure to write one is logged, not answered.
    async fn audit(&self, record: AuditRecord) {
        self.log_audit(&record);
        if let Err(e) = self.store.append_audit(&record).await {
            tracing::warn!(error = %e, event = %record.event, "audit row not written");
        }
    }
}

fn round_up_secs(d: Duration) -> Duration {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    Duration::from_secs(secs)
}
