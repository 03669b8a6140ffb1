//! The session service: every rule of API.md sections 1, 3 and 5 that is
//! not about HTTP. The HTTP layer and the CLI are two doors into it.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ipnet::Ipv6Net;
use latchkey_proto::{AccessClaims, PublicJwk};
use time::OffsetDateTime;

use crate::audit::{AuditEvent, AuditRecord};
use crate::clock::Clock;
use crate::crypto::{random_bytes, MasterKey, RefreshSecret};
use crate::error::ServiceError;
use crate::keys::{self, KeyRecord, KeyRing, KeyState};
use crate::password::PasswordHasher;
use crate::policy::{Policy, KEY_PICKUP_INTERVAL, WEB_CLIENT_ID};
use crate::refresh::{self, ParsedRefreshToken};
use crate::store::{
    Advance, DeadSessions, LoginAttempt, LoginLimit, Pruned, RevokeScope, SessionRecord,
    SessionWithUser, Store, StoreError, UserRecord,
};
use crate::tokens::{self, Expectations, VerifiedTokens};
use crate::validate::{LoginPassword, NewPassword, Username};

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
    pub session: SessionRecord,
    pub user: UserRecord,
}

/// A caller whose access token checked out against the store.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub claims: AccessClaims,
    pub user: UserRecord,
    pub session: SessionRecord,
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

/// A key and where it stands, for `key list`.
#[derive(Debug, Clone)]
pub struct KeyStatus {
    pub record: KeyRecord,
    pub state: KeyState,
}

const SALT_LEN: usize = 16;

/// Rows a prune statement deletes at most: a few milliseconds of the store.
pub const PRUNE_BATCH: u32 = 2_000;

mod oauth;

pub use oauth::{ClientAuth, NewClient};

pub struct Service {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    policy: Policy,
    hasher: PasswordHasher,
    refresh_secret: RefreshSecret,
    master_key: Option<MasterKey>,
    ring: RwLock<Arc<KeyRing>>,
    verified: VerifiedTokens,
    events: Option<Arc<dyn EventSink>>,
    /// Live sessions at the last count (`u64::MAX`: never counted).
    live_sessions: AtomicU64,
}

/// Told of every security event (the audit log's), e.g. to count them.
pub trait EventSink: Send + Sync + 'static {
    fn event(&self, event: &str);
}

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
            store,
            clock,
            policy,
            refresh_secret,
            master_key,
            ring: RwLock::new(Arc::new(KeyRing::default())),
            verified: VerifiedTokens::default(),
            events: None,
            live_sessions: AtomicU64::new(u64::MAX),
        })
    }

    /// Reports every security event to `sink` as well.
    pub fn with_events(mut self, sink: Arc<dyn EventSink>) -> Self {
        self.events = Some(sink);
        self
    }

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

    // ---- keys -------------------------------------------------------------

    fn ring(&self) -> Arc<KeyRing> {
        self.ring.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Re-reads the signing keys from the store (what another node or the
    /// CLI changed shows up here).
    pub async fn reload_keys(&self) -> Result<(), ServiceError> {
        let records = self.store.list_keys().await?;
        if self.ring().records().eq(records.iter()) {
            return Ok(());
        }
        let ring = KeyRing::load(records, self.master_key.as_ref())?;
        *self.ring.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(ring);
        // A retired or purged key must not live on in verified tokens.
        self.verified.clear();
        Ok(())
    }

    /// Loads the keys, making a first one when none signs.
    pub async fn ensure_signing_key(&self) -> Result<(), ServiceError> {
        self.reload_keys().await?;
        let now = self.now();
        if self.ring().signing_key(now).is_none() {
            let key = keys::generate(self.policy.signing_alg, now, now, self.master_key.as_ref())?;
            self.store.insert_key(&key).await?;
            self.reload_keys().await?;
        }
        Ok(())
    }

    /// Keys stored in clear that a token may still need or that may sign:
    /// made before a master key was set.
    pub async fn unencrypted_live_keys(&self) -> Result<Vec<String>, ServiceError> {
        Ok(self
            .list_keys()
            .await?
            .into_iter()
            .filter(|k| !k.record.encrypted)
            .filter(|k| {
                matches!(
                    k.state,
                    KeyState::Signing | KeyState::Pending | KeyState::Retired
                )
            })
            .map(|k| k.record.kid)
            .collect())
    }

    /// The public keys of the JWKS.
    pub fn jwks(&self) -> Vec<PublicJwk> {
        self.ring().published(self.now(), self.policy.access_ttl)
    }

    pub async fn list_keys(&self) -> Result<Vec<KeyStatus>, ServiceError> {
        let records = self.store.list_keys().await?;
        let now = self.now();
        let all: Vec<&KeyRecord> = records.iter().collect();
        let mut out: Vec<KeyStatus> = records
            .iter()
            .map(|r| KeyStatus {
                state: keys::state_of(r, &all, now, self.policy.access_ttl),
                record: r.clone(),
            })
            .collect();
        out.sort_by_key(|k| (k.record.activates_at, k.record.created_at));
        Ok(out)
    }

    /// Adds a key: published at once, signing after every verifier has had
    /// time to fetch it (`jwks_max_age` + the pick-up interval), or at once
    /// with `now` (an emergency).
    pub async fn rotate_key(&self, now_flag: bool) -> Result<KeyStatus, ServiceError> {
        let now = self.now();
        let activates_at = if now_flag {
            now
        } else {
            now + self.policy.jwks_max_age + KEY_PICKUP_INTERVAL
        };
        let key = keys::generate(
            self.policy.signing_alg,
            now,
            activates_at,
            self.master_key.as_ref(),
        )?;
        self.store.insert_key(&key).await?;
        self.audit(
            AuditRecord::new(AuditEvent::KeyRotated, now)
                .detail(format!("kid={} alg={} now={now_flag}", key.kid, key.alg)),
        )
        .await;
        let state = if now_flag {
            KeyState::Signing
        } else {
            KeyState::Pending
        };
        Ok(KeyStatus { record: key, state })
    }

    /// Retires a key; retiring the signing key hands signing to the newest
    /// published key at once, and is refused when there is none.
    pub async fn retire_key(&self, kid: &str, purge: bool) -> Result<KeyStatus, ServiceError> {
        let now = self.now();
        let keys = self.list_keys().await?;
        let target = keys
            .iter()
            .find(|k| k.record.kid == kid)
            .ok_or_else(|| ServiceError::NotFound(format!("no key {kid}")))?;
        let promote = if target.state == KeyState::Signing {
            let successor = keys
                .iter()
                .filter(|k| k.state == KeyState::Pending)
                .max_by_key(|k| k.record.created_at)
                .ok_or_else(|| {
                    ServiceError::Conflict(
                        "this key signs and no other key is published to take over: run `key rotate` first"
                            .into(),
                    )
                })?;
            Some(successor.record.kid.clone())
        } else {
            None
        };
        self.store
            .retire_key(kid, now, purge, promote.as_deref())
            .await?;
        self.audit(
            AuditRecord::new(AuditEvent::KeyRetired, now)
                .detail(format!("kid={kid} purge={purge}")),
        )
        .await;
        self.reload_keys().await?;
        self.list_keys()
            .await?
            .into_iter()
            .find(|k| k.record.kid == kid)
            .ok_or_else(|| ServiceError::NotFound(format!("no key {kid}")))
    }

    // ---- users ------------------------------------------------------------

    /// `POST /v1/auth/register`.
    pub async fn register(
        &self,
        username: &str,
        password: &str,
        ctx: &RequestContext,
    ) -> Result<UserRecord, ServiceError> {
        if !self.policy.registration_open {
            return Err(ServiceError::RegistrationClosed);
        }
        let user = self.create_user(username, password).await?;
        self.audit(
            AuditRecord::new(AuditEvent::Registered, user.created_at)
                .user(&user.id)
                .ip(&ctx.ip),
        )
        .await;
        Ok(user)
    }

    /// Creates a user whatever `registration` says (the CLI's `user add`).
    pub async fn create_user(
        &self,
        username: &str,
        password: &str,
    ) -> Result<UserRecord, ServiceError> {
        let username = Username::parse(username)?;
        let password = NewPassword::parse(password)?;
        if self.store.user_by_key(username.key()).await?.is_some() {
            return Err(ServiceError::UsernameTaken);
        }
        let hash = self.hasher.hash(password.expose()).await?;
        let user = UserRecord {
            id: uuid::Uuid::new_v4().to_string(),
            username: username.as_str().to_owned(),
            username_key: username.key().to_owned(),
            password_hash: hash,
            password_version: 0,
            created_at: self.now(),
            disabled_at: None,
        };
        match self.store.create_user(&user).await {
            Err(StoreError::Conflict(_)) => Err(ServiceError::UsernameTaken),
            other => other.map(|()| user).map_err(Into::into),
        }
    }

    pub async fn user_by_name(&self, username: &str) -> Result<UserRecord, ServiceError> {
        let name = Username::parse(username)?;
        self.store
            .user_by_key(name.key())
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no user {}", name.as_str())))
    }

    pub async fn list_users(&self) -> Result<Vec<UserRecord>, ServiceError> {
        Ok(self.store.list_users().await?)
    }

    /// Disables a user (revoking every session) or enables one.
    pub async fn set_user_disabled(
        &self,
        username: &str,
        disabled: bool,
    ) -> Result<UserRecord, ServiceError> {
        let user = self.user_by_name(username).await?;
        let now = self.now();
        self.store
            .set_user_disabled(&user.id, disabled.then_some(now))
            .await?;
        let event = if disabled {
            AuditEvent::UserDisabled
        } else {
            AuditEvent::UserEnabled
        };
        self.audit(AuditRecord::new(event, now).user(&user.id))
            .await;
        self.user_by_name(username).await
    }

    /// Sets a password from the CLI; every session of the user is revoked.
    pub async fn set_password(&self, username: &str, password: &str) -> Result<(), ServiceError> {
        let user = self.user_by_name(username).await?;
        let password = NewPassword::parse(password)?;
        let hash = self.hasher.hash(password.expose()).await?;
        let now = self.now();
        let scope = RevokeScope::User {
            user_id: &user.id,
            except: None,
        };
        self.store
            .set_password_hash(&user.id, &hash, scope, now, "password_set")
            .await?;
        self.audit(
            AuditRecord::new(AuditEvent::PasswordChanged, now)
                .user(&user.id)
                .detail("set by an operator"),
        )
        .await;
        Ok(())
    }

    // ---- login, refresh, logout ------------------------------------------

    /// The login limit's key: the username and the client's address, IPv6
    /// by its /64 (one host's share of a network).
    fn rate_key(username: &Username, ctx: &RequestContext) -> String {
        let address = match ctx.ip.parse::<IpAddr>().map(|ip| ip.to_canonical()) {
            Ok(IpAddr::V6(v6)) => Ipv6Net::new(v6, 64)
                .map(|net| net.trunc().to_string())
                .unwrap_or_else(|_| v6.to_string()),
            Ok(v4) => v4.to_string(),
            Err(_) => ctx.ip.clone(),
        };
        // Usernames hold no control character: U+001F cannot be forged into one.
        format!("{}\u{1f}{address}", username.key())
    }

    /// Counts an attempt before its password is checked, so that however
    /// many race, at most `login_max_failures` of them are checked in a
    /// window. The first refusal of a window is audited, not every one.
    async fn reserve_attempt(
        &self,
        key: &str,
        now: OffsetDateTime,
        ctx: &RequestContext,
    ) -> Result<(), ServiceError> {
        let limit = LoginLimit {
            key,
            now,
            window_start_after: now - self.policy.login_window,
            max_attempts: self.policy.login_max_failures,
        };
        match self.store.reserve_login_attempt(limit).await? {
            LoginAttempt::Allowed => Ok(()),
            LoginAttempt::Refused {
                window_started_at,
                first,
            } => {
                let record = AuditRecord::new(AuditEvent::LoginRateLimited, now).ip(&ctx.ip);
                if first {
                    self.audit(record).await;
                } else if let Some(sink) = &self.events {
                    sink.event(&record.event);
                }
                let left = (window_started_at + self.policy.login_window - now).unsigned_abs();
                Err(ServiceError::RateLimited {
                    retry_after: round_up_secs(left).max(Duration::from_secs(1)),
                })
            }
        }
    }

    /// `POST /v1/auth/login`: checks the password and opens a session of
    /// the `web` client.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        ctx: &RequestContext,
    ) -> Result<Issued, ServiceError> {
        let scope = self.policy.default_scope.clone();
        self.open_session(username, password, ctx, WEB_CLIENT_ID, scope)
            .await
    }

    /// Checks the password and opens a session for `client_id` with `scope`
    /// (the `/v1` login and the password grant).
    pub(crate) async fn open_session(
        &self,
        username: &str,
        password: &str,
        ctx: &RequestContext,
        client_id: &str,
        scope: String,
    ) -> Result<Issued, ServiceError> {
        let username = Username::parse(username)?;
        let password = LoginPassword::parse(password)?;
        // The queue first: past it, an attempt costs nothing, not even a row.
        let hashing = self.hasher.admit()?;
        let now = self.now();
        let rate_key = Self::rate_key(&username, ctx);
        self.reserve_attempt(&rate_key, now, ctx).await?;
        let user = self.store.user_by_key(username.key()).await?;
        let verified = hashing
            .verify(
                password.expose(),
                user.as_ref().map(|u| u.password_hash.as_str()),
            )
            .await?;
        let user = match user {
            Some(user) if verified.matched && user.disabled_at.is_none() => user,
            other => {
                let mut row = AuditRecord::new(AuditEvent::LoginFailed, now).ip(&ctx.ip);
                if let Some(u) = &other {
                    row = row.user(&u.id);
                }
                self.audit(row).await;
                return Err(ServiceError::InvalidCredentials);
            }
        };
        self.store.clear_login_failures(&rate_key).await?;
        if verified.needs_rehash {
            if let Ok(hash) = hashing.hash(password.expose()).await {
                self.store
                    .rehash_password(&user.id, user.password_version, &hash)
                    .await?;
            }
        }
        drop(hashing);
        let session = SessionRecord {
            id: uuid::Uuid::new_v4().to_string(),
            user_id: user.id.clone(),
            client_id: client_id.to_owned(),
            scope,
            salt: random_bytes::<SALT_LEN>()?.to_vec(),
            generation: 0,
            rotated_at: None,
            created_at: now,
            last_used_at: now,
            absolute_expires_at: now + self.policy.session_max_age,
            revoked_at: None,
            revoked_reason: None,
            user_agent: ctx.user_agent.clone(),
            ip: ctx.ip.clone(),
        };
        // The password checked may have changed (or the user been disabled)
        // while it was being hashed: then this login opens nothing.
        if !self
            .store
            .create_session(&session, user.password_version)
            .await?
        {
            self.audit(
                AuditRecord::new(AuditEvent::LoginFailed, now)
                    .user(&user.id)
                    .ip(&ctx.ip)
                    .detail("the password changed or the user was disabled during the login"),
            )
            .await;
            return Err(ServiceError::InvalidCredentials);
        }
        self.audit(
            AuditRecord::new(AuditEvent::LoginSucceeded, now)
                .user(&user.id)
                .session(&session.id)
                .ip(&ctx.ip),
        )
        .await;
        self.issue(session, user, now)
    }

    /// `POST /v1/auth/refresh`: rotation, the grace window and reuse detection.
    pub async fn refresh(&self, token: &str, ctx: &RequestContext) -> Result<Issued, ServiceError> {
        self.refresh_for(token, ctx, WEB_CLIENT_ID).await
    }

    /// A refresh by `client_id`: a token of another client's session is
    /// refused before anything is spent.
    pub(crate) async fn refresh_for(
        &self,
        token: &str,
        ctx: &RequestContext,
        client_id: &str,
    ) -> Result<Issued, ServiceError> {
        const INVALID: ServiceError = ServiceError::InvalidToken("invalid refresh token");
        let presented = ParsedRefreshToken::parse(token).ok_or(INVALID)?;
        let found = self
            .store
            .session_with_user(&presented.session_id)
            .await?
            .ok_or(INVALID)?;
        // The MAC first: a forged string never counts as reuse.
        if !presented.is_genuine(&self.refresh_secret, &found.session.salt) {
            return Err(INVALID);
        }
        if found.session.client_id != client_id {
            return Err(ServiceError::InvalidToken(
                "a refresh token of another client",
            ));
        }
        let now = self.now();
        self.check_live(&found, now).map_err(|_| INVALID)?;
        let SessionWithUser { session, user } = found;
        if presented.generation == session.generation {
            // The audit row commits with the compare-and-swap: one transaction.
            let audit = AuditRecord::new(AuditEvent::Refreshed, now)
                .user(&user.id)
                .session(&session.id)
                .ip(&ctx.ip);
            match self
                .store
                .advance_generation(&session.id, presented.generation, now, &audit)
                .await?
            {
                Advance::Advanced(advanced) => {
                    self.log_audit(&audit);
                    return self.issue(*advanced, user, now);
                }
                Advance::Lost => {
                    // Another request won the race: decide on what it left.
                    let again = self
                        .store
                        .session_with_user(&session.id)
                        .await?
                        .ok_or(INVALID)?;
                    self.check_live(&again, now).map_err(|_| INVALID)?;
                    return self
                        .replay_or_reuse(presented.generation, again, now, ctx)
                        .await;
                }
            }
        }
        self.replay_or_reuse(
            presented.generation,
            SessionWithUser { session, user },
            now,
            ctx,
        )
        .await
    }

    /// A token older than the session's current one: the same successor
    /// inside the grace window, else reuse.
    async fn replay_or_reuse(
        &self,
        presented: u64,
        found: SessionWithUser,
        now: OffsetDateTime,
        ctx: &RequestContext,
    ) -> Result<Issued, ServiceError> {
        let SessionWithUser { session, user } = found;
        if presented >= session.generation {
            // A genuine MAC for a generation the session never reached: a
            // restored backup. Refuse, but it is no evidence of theft.
            return Err(ServiceError::InvalidToken("invalid refresh token"));
        }
        let grace = self.policy.refresh_reuse_grace;
        let previous = presented + 1 == session.generation;
        let in_grace =
            previous && !grace.is_zero() && session.rotated_at.is_some_and(|at| now - at <= grace);
        if in_grace {
            self.audit(
                AuditRecord::new(AuditEvent::RefreshRetried, now)
                    .user(&user.id)
                    .session(&session.id)
                    .ip(&ctx.ip),
            )
            .await;
            return self.issue(session, user, now);
        }
        let (event, case) = if previous {
            (AuditEvent::ReuseLateRetry, "late_retry")
        } else {
            (AuditEvent::ReuseStaleCopy, "stale_copy")
        };
        self.store
            .revoke_sessions(RevokeScope::One(&session.id), now, &format!("reuse_{case}"))
            .await?;
        tracing::warn!(session_id = %session.id, case, "refresh token reuse: session revoked");
        self.audit(
            AuditRecord::new(event, now)
                .user(&user.id)
                .session(&session.id)
                .ip(&ctx.ip)
                .detail(format!(
                    "presented generation {presented}, current {}",
                    session.generation
                )),
        )
        .await;
        Err(ServiceError::InvalidToken(
            "refresh token reuse: the session is revoked",
        ))
    }

    fn idle_deadline(&self, session: &SessionRecord) -> OffsetDateTime {
        session.last_used_at + self.policy.refresh_ttl
    }

    /// Is the session (and its user) still good at `now`?
    fn check_live(&self, found: &SessionWithUser, now: OffsetDateTime) -> Result<(), ServiceError> {
        let s = &found.session;
        if s.revoked_at.is_some() {
            return Err(ServiceError::InvalidToken("session revoked"));
        }
        if found.user.disabled_at.is_some() {
            return Err(ServiceError::InvalidToken("user disabled"));
        }
        if s.absolute_expires_at <= now || self.idle_deadline(s) <= now {
            return Err(ServiceError::InvalidToken("session expired"));
        }
        Ok(())
    }

    fn issue(
        &self,
        session: SessionRecord,
        user: UserRecord,
        now: OffsetDateTime,
    ) -> Result<Issued, ServiceError> {
        let ring = self.ring();
        let key = ring
            .signing_key(now)
            .ok_or_else(|| ServiceError::Internal("no signing key".into()))?;
        let iat = now.unix_timestamp();
        let ttl = self.policy.access_ttl;
        let claims = AccessClaims {
            iss: self.policy.issuer.clone(),
            sub: user.id.clone(),
            aud: self.policy.audience.clone(),
            exp: iat + ttl.as_secs() as i64,
            iat,
            nbf: iat,
            jti: uuid::Uuid::new_v4().to_string(),
            sid: Some(session.id.clone()),
            client_id: session.client_id.clone(),
            scope: session.scope.clone(),
        };
        let access_token = tokens::sign(&claims, key)?;
        let refresh_token = refresh::mint(
            &self.refresh_secret,
            &session.id,
            &session.salt,
            session.generation,
        );
        let deadline = self
            .idle_deadline(&session)
            .min(session.absolute_expires_at);
        let refresh_lifetime = round_up_secs((deadline - now).unsigned_abs());
        Ok(Issued {
            access_token,
            expires_in: ttl,
            refresh_token,
            refresh_lifetime,
            session,
            user,
        })
    }

    /// Checks an access token against the keys and then the store: a revoked
    /// session or a disabled user is refused at once.
    pub async fn authenticate(&self, access_token: &str) -> Result<Authenticated, ServiceError> {
        let now = self.now();
        let expect = Expectations {
            issuer: &self.policy.issuer,
            audience: &self.policy.audience,
            access_ttl: self.policy.access_ttl,
            leeway: Duration::ZERO,
        };
        let cache_key = VerifiedTokens::key(access_token);
        let claims = match self.verified.get(&cache_key, now.unix_timestamp()) {
            Some(claims) => claims,
            None => {
                let claims = tokens::verify(access_token, &self.ring(), &expect, now)?;
                self.verified.insert(cache_key, claims.clone());
                claims
            }
        };
        let sid = claims
            .sid
            .as_deref()
            .ok_or(ServiceError::InvalidToken("not a user session token"))?;
        let found = self
            .store
            .session_with_user(sid)
            .await?
            .ok_or(ServiceError::InvalidToken("unknown session"))?;
        if found.user.id != claims.sub {
            return Err(ServiceError::InvalidToken("session of another user"));
        }
        self.check_live(&found, now)?;
        Ok(Authenticated {
            claims,
            user: found.user,
            session: found.session,
        })
    }

    /// Revokes one session (logout).
    pub async fn logout(
        &self,
        session_id: &str,
        user_id: &str,
        ctx: &RequestContext,
    ) -> Result<(), ServiceError> {
        let now = self.now();
        self.store
            .revoke_sessions(RevokeScope::One(session_id), now, "logout")
            .await?;
        self.audit(
            AuditRecord::new(AuditEvent::Logout, now)
                .user(user_id)
                .session(session_id)
                .ip(&ctx.ip),
        )
        .await;
        Ok(())
    }

    /// Logout with a refresh token: any genuine token of the session will do.
    /// Answers whether it named a session.
    pub async fn logout_with_refresh_token(
        &self,
        token: &str,
        ctx: &RequestContext,
    ) -> Result<bool, ServiceError> {
        let Some(presented) = ParsedRefreshToken::parse(token) else {
            return Ok(false);
        };
        let Some(session) = self.store.session(&presented.session_id).await? else {
            return Ok(false);
        };
        if !presented.is_genuine(&self.refresh_secret, &session.salt) {
            return Ok(false);
        }
        self.logout(&session.id, &session.user_id, ctx).await?;
        Ok(true)
    }

    /// Revokes every session of the user.
    pub async fn logout_all(
        &self,
        user_id: &str,
        ctx: &RequestContext,
    ) -> Result<u64, ServiceError> {
        let now = self.now();
        let scope = RevokeScope::User {
            user_id,
            except: None,
        };
        let n = self.store.revoke_sessions(scope, now, "logout_all").await?;
        self.audit(
            AuditRecord::new(AuditEvent::LogoutAll, now)
                .user(user_id)
                .ip(&ctx.ip)
                .detail(format!("{n} sessions")),
        )
        .await;
        Ok(n)
    }

    /// `POST /v1/me/password`: checks the current password (a wrong one
    /// counts toward the login limit), sets the new one and revokes every
    /// other session.
    pub async fn change_password(
        &self,
        auth: &Authenticated,
        current: &str,
        new: &str,
        ctx: &RequestContext,
    ) -> Result<(), ServiceError> {
        let current = LoginPassword::parse(current)?;
        let new = NewPassword::parse(new)?;
        let username = Username::parse(&auth.user.username)?;
        let hashing = self.hasher.admit()?;
        let rate_key = Self::rate_key(&username, ctx);
        let now = self.now();
        self.reserve_attempt(&rate_key, now, ctx).await?;
        let verified = hashing
            .verify(current.expose(), Some(&auth.user.password_hash))
            .await?;
        if !verified.matched {
            self.audit(
                AuditRecord::new(AuditEvent::PasswordChangeFailed, now)
                    .user(&auth.user.id)
                    .ip(&ctx.ip),
            )
            .await;
            return Err(ServiceError::WrongCurrentPassword);
        }
        self.store.clear_login_failures(&rate_key).await?;
        let hash = hashing.hash(new.expose()).await?;
        let scope = RevokeScope::User {
            user_id: &auth.user.id,
            except: Some(&auth.session.id),
        };
        self.store
            .set_password_hash(&auth.user.id, &hash, scope, now, "password_changed")
            .await?;
        self.audit(
            AuditRecord::new(AuditEvent::PasswordChanged, now)
                .user(&auth.user.id)
                .session(&auth.session.id)
                .ip(&ctx.ip),
        )
        .await;
        Ok(())
    }

    /// The live sessions of a user (all users for `None`).
    pub async fn live_sessions(
        &self,
        user_id: Option<&str>,
    ) -> Result<Vec<SessionRecord>, ServiceError> {
        let now = self.now();
        let idle_since = now - self.policy.refresh_ttl;
        Ok(self.store.live_sessions(user_id, now, idle_since).await?)
    }

    /// When a session dies if nothing else happens: the earlier of its idle
    /// and absolute expiry.
    pub fn session_expires_at(&self, session: &SessionRecord) -> OffsetDateTime {
        self.idle_deadline(session).min(session.absolute_expires_at)
    }

    /// `DELETE /v1/sessions/{sid}`: only the caller's own live sessions.
    pub async fn revoke_own_session(
        &self,
        auth: &Authenticated,
        sid: &str,
        ctx: &RequestContext,
    ) -> Result<(), ServiceError> {
        let not_found = || ServiceError::NotFound("no such session".into());
        let session = self.store.session(sid).await?.ok_or_else(not_found)?;
        if session.user_id != auth.user.id || session.revoked_at.is_some() {
            return Err(not_found());
        }
        let now = self.now();
        self.store
            .revoke_sessions(RevokeScope::One(sid), now, "revoked_by_user")
            .await?;
        self.audit(
            AuditRecord::new(AuditEvent::SessionRevoked, now)
                .user(&auth.user.id)
                .session(sid)
                .ip(&ctx.ip),
        )
        .await;
        Ok(())
    }

    /// `session revoke SID` (operator). Not found when no live session has it.
    pub async fn revoke_session(&self, sid: &str) -> Result<(), ServiceError> {
        let now = self.now();
        let n = self
            .store
            .revoke_sessions(RevokeScope::One(sid), now, "revoked_by_operator")
            .await?;
        if n == 0 {
            return Err(ServiceError::NotFound(format!("no live session {sid}")));
        }
        self.audit(
            AuditRecord::new(AuditEvent::SessionRevoked, now)
                .session(sid)
                .detail("by an operator"),
        )
        .await;
        Ok(())
    }

    /// `session revoke-all USERNAME` (operator).
    pub async fn revoke_user_sessions(&self, username: &str) -> Result<u64, ServiceError> {
        let user = self.user_by_name(username).await?;
        let now = self.now();
        let scope = RevokeScope::User {
            user_id: &user.id,
            except: None,
        };
        let n = self
            .store
            .revoke_sessions(scope, now, "revoked_by_operator")
            .await?;
        self.audit(
            AuditRecord::new(AuditEvent::SessionRevoked, now)
                .user(&user.id)
                .detail(format!("all {n}, by an operator")),
        )
        .await;
        Ok(n)
    }

    /// Removes dead sessions, finished login-limit windows, audit rows past
    /// their retention and keys no live token can need, a batch at a time
    /// so that no statement holds the store for long.
    pub async fn prune(&self) -> Result<Pruned, ServiceError> {
        let now = self.now();
        let mut pruned = Pruned::default();
        let dead = DeadSessions {
            now,
            idle_before: now - self.policy.refresh_ttl,
        };
        let mut after: Option<String> = None;
        loop {
            let batch = self
                .store
                .prune_sessions(dead, after.as_deref(), PRUNE_BATCH)
                .await?;
            pruned.sessions += batch.deleted;
            match batch.next {
                Some(next) => after = Some(next),
                None => break,
            }
            tokio::task::yield_now().await;
        }
        let failures_before = now - self.policy.login_window;
        loop {
            let n = self
                .store
                .prune_login_failures(failures_before, PRUNE_BATCH)
                .await?;
            pruned.login_failures += n;
            if n < u64::from(PRUNE_BATCH) {
                break;
            }
        }
        let audit_before = now - self.policy.audit_retention;
        loop {
            let n = self.store.prune_audit(audit_before, PRUNE_BATCH).await?;
            pruned.audit_rows += n;
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
        Ok(pruned)
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
        if let Some(sink) = &self.events {
            sink.event(&record.event);
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
