//! The password check that opens a session, and the login limit that
//! bounds how many such checks one (username, address) gets.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::Ipv6Net;
use time::OffsetDateTime;

use super::{round_up_secs, Issued, LoginOutcome, RequestContext, Service, UserView};
use crate::amr;
use crate::audit::{AuditEvent, AuditRecord};
use crate::crypto::random_bytes;
use crate::error::ServiceError;
use crate::ids::SessionId;
use crate::policy::WEB_CLIENT_ID;
use crate::store::{LoginAttempt, LoginLimit, SessionRecord, UserRecord};
use crate::validate::{LoginPassword, Username};

/// Bytes of a session's random salt (part of every refresh token's MAC).
const SALT_LEN: usize = 16;

impl Service {
    /// The login limit's key: the username and the client's address, IPv6
    /// by its /64 (one host's share of a network).
    pub(super) fn rate_key(username: &Username, ctx: &RequestContext) -> String {
        // Usernames hold no control character: U+001F cannot be forged into one.
        format!("{}\u{1f}{}", username.key(), Self::address_key(ctx))
    }

    /// The client's address as the limits count it: IPv6 by its /64.
    pub(super) fn address_key(ctx: &RequestContext) -> String {
        match ctx.ip.parse::<IpAddr>().map(|ip| ip.to_canonical()) {
            Ok(IpAddr::V6(v6)) => Ipv6Net::new(v6, 64)
                .map(|net| net.trunc().to_string())
                .unwrap_or_else(|_| v6.to_string()),
            Ok(v4) => v4.to_string(),
            Err(_) => ctx.ip.clone(),
        }
    }

    /// Counts an attempt before its password is checked, so that however
    /// many race, at most `login_max_failures` of them are checked in a
    /// window. The first refusal of a window is audited, not every one.
    pub(super) async fn reserve_attempt(
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
                } else {
                    self.count_event(&record.event);
                }
                let left = (window_started_at + self.policy.login_window - now).unsigned_abs();
                Err(ServiceError::RateLimited {
                    retry_after: round_up_secs(left).max(Duration::from_secs(1)),
                })
            }
        }
    }

    /// `POST /v1/auth/login`: checks the password and opens a session of
    /// the `web` client, or asks for the second factor.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        ctx: &RequestContext,
    ) -> Result<LoginOutcome, ServiceError> {
        let scope = self.policy.default_scope.clone();
        self.password_login(username, password, ctx, WEB_CLIENT_ID, scope)
            .await
    }

    /// Checks the password and opens a session for `client_id` with `scope`
    /// (the `/v1` login and the password grant); for a user with TOTP on,
    /// the session waits for the second step instead.
    pub(super) async fn password_login(
        &self,
        username: &str,
        password: &str,
        ctx: &RequestContext,
        client_id: &str,
        scope: String,
    ) -> Result<LoginOutcome, ServiceError> {
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
        let second_step = user.second_factors.totp;
        // With a second factor to come, the attempt stays counted until it
        // is given: else each right password would clear the count, and
        // the codes tried in between would never add up to the limit.
        if !second_step {
            self.store.clear_login_failures(&rate_key).await?;
        }
        if verified.needs_rehash {
            if let Ok(hash) = hashing.hash(password.expose()).await {
                self.store
                    .rehash_password(&user.id, user.password_version, &hash)
                    .await?;
            }
        }
        drop(hashing);
        if second_step {
            let challenge = self.mfa_challenge(&user, client_id, scope, ctx).await?;
            return Ok(LoginOutcome::MfaRequired(challenge));
        }
        let issued = self
            .open_session(user, client_id, scope, amr::of(&[amr::PWD]), ctx)
            .await?;
        Ok(LoginOutcome::Session(Box::new(issued)))
    }

    /// Opens a session of `client_id` with `scope` for `user`, whose login
    /// was just made by the methods `amr` (RFC 8176): every way in (a
    /// password, a second factor, a passkey) ends here. The session opens
    /// only while the user is enabled and still at the `password_version`
    /// of `user` as it was read for the check.
    pub(super) async fn open_session(
        &self,
        user: UserRecord,
        client_id: &str,
        scope: String,
        amr: Vec<String>,
        ctx: &RequestContext,
    ) -> Result<Issued, ServiceError> {
        let now = self.now();
        let session = SessionRecord {
            id: SessionId::random(),
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
            amr,
            auth_time: now,
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
                .ip(&ctx.ip)
                .detail(format!("amr {}", amr::join(&session.amr))),
        )
        .await;
        self.facts.insert(&session, &user);
        self.issue(session, UserView::from(user), now)
    }
}
