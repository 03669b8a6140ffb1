//! Sessions once open: access tokens checked against the store, expiry,
//! logout, the device list and revocation.

use std::time::Duration;

use latchkey_proto::AccessClaims;
use time::OffsetDateTime;

use super::{Authenticated, RequestContext, Service, SessionView, UserView};
use crate::audit::{AuditEvent, AuditRecord};
use crate::error::ServiceError;
use crate::ids::{SessionId, UserId};
use crate::store::{RevokeScope, SessionRecord, SessionWithUser};
use crate::tokens::{self, Expectations, VerifiedTokens};

impl Service {
    /// When a session dies if nothing else happens: the earlier of its idle
    /// and absolute expiry.
    pub(super) fn session_expires_at(&self, session: &SessionRecord) -> OffsetDateTime {
        (session.last_used_at + self.policy.refresh_ttl).min(session.absolute_expires_at)
    }

    /// Is the session (and its user) still good at `now`?
    pub(super) fn check_live(
        &self,
        found: &SessionWithUser,
        now: OffsetDateTime,
    ) -> Result<(), ServiceError> {
        if found.session.revoked_at.is_some() {
            return Err(ServiceError::InvalidToken("session revoked"));
        }
        if found.user.disabled_at.is_some() {
            return Err(ServiceError::InvalidToken("user disabled"));
        }
        if self.session_expires_at(&found.session) <= now {
            return Err(ServiceError::InvalidToken("session expired"));
        }
        Ok(())
    }

    /// What latchkey's own verification of its access tokens expects.
    pub(super) fn expectations(&self) -> Expectations<'_> {
        Expectations {
            issuer: &self.policy.issuer,
            audience: &self.policy.audience,
            access_ttl: self.policy.access_ttl,
            leeway: Duration::ZERO,
        }
    }

    /// An access token's claims if its signature and claims check out at
    /// `now`, from the cache of tokens verified before when it is there.
    pub(super) fn verified_claims(
        &self,
        access_token: &str,
        now: OffsetDateTime,
    ) -> Result<AccessClaims, ServiceError> {
        let cache_key = VerifiedTokens::key(access_token);
        if let Some(claims) = self.verified.get(&cache_key, now.unix_timestamp()) {
            return Ok(claims);
        }
        let claims = tokens::verify(access_token, &self.ring(), &self.expectations(), now)?;
        self.verified.insert(cache_key, claims.clone());
        Ok(claims)
    }

    /// Checks an access token against the keys and then the store: a revoked
    /// session or a disabled user is refused at once.
    pub async fn authenticate(&self, access_token: &str) -> Result<Authenticated, ServiceError> {
        let now = self.now();
        let claims = self.verified_claims(access_token, now)?;
        let sid = claims
            .sid
            .as_deref()
            .map(SessionId::from)
            .ok_or(ServiceError::InvalidToken("not a user session token"))?;
        let found = self
            .store
            .session_with_user(&sid)
            .await?
            .ok_or(ServiceError::InvalidToken("unknown session"))?;
        if found.user.id.as_str() != claims.sub {
            return Err(ServiceError::InvalidToken("session of another user"));
        }
        self.check_live(&found, now)?;
        let expires_at = self.session_expires_at(&found.session);
        let mut user = found.user;
        let email = user.email.take();
        let second_factors = user.second_factors;
        Ok(Authenticated {
            claims,
            user: UserView::from(user),
            session: SessionView::of(found.session, expires_at),
            email,
            second_factors,
        })
    }

    /// Revokes one session of a user (logout, or RFC 7009 revocation).
    pub(super) async fn end_session(
        &self,
        session_id: &SessionId,
        user_id: &UserId,
        ctx: &RequestContext,
    ) -> Result<(), ServiceError> {
        let now = self.now();
        self.store
            .revoke_sessions(RevokeScope::One(session_id), now, "logout")
            .await?;
        self.wake_feed();
        self.facts.forget(session_id);
        self.audit(
            AuditRecord::new(AuditEvent::Logout, now)
                .user(user_id)
                .session(session_id)
                .ip(&ctx.ip),
        )
        .await;
        Ok(())
    }

    /// Logout: revokes the caller's own session.
    pub async fn logout(
        &self,
        auth: &Authenticated,
        ctx: &RequestContext,
    ) -> Result<(), ServiceError> {
        self.end_session(&auth.session.id, &auth.user.id, ctx).await
    }

    /// Logout with a refresh token: any genuine token of the session will do.
    /// Answers whether it named a session.
    pub async fn logout_with_refresh_token(
        &self,
        token: &str,
        ctx: &RequestContext,
    ) -> Result<bool, ServiceError> {
        let Some((_, found)) = self.presented_session(token).await? else {
            return Ok(false);
        };
        self.end_session(&found.session.id, &found.user.id, ctx)
            .await?;
        Ok(true)
    }

    /// Revokes every session of the caller's user.
    pub async fn logout_all(
        &self,
        auth: &Authenticated,
        ctx: &RequestContext,
    ) -> Result<u64, ServiceError> {
        let now = self.now();
        let user_id = &auth.user.id;
        let scope = RevokeScope::User {
            user_id,
            except: None,
        };
        let n = self.store.revoke_sessions(scope, now, "logout_all").await?;
        self.wake_feed();
        self.audit(
            AuditRecord::new(AuditEvent::LogoutAll, now)
                .user(user_id)
                .ip(&ctx.ip)
                .detail(format!("{n} sessions")),
        )
        .await;
        Ok(n)
    }

    /// The live sessions of a user (all users for `None`), oldest first.
    pub async fn live_sessions(
        &self,
        user_id: Option<&UserId>,
    ) -> Result<Vec<SessionView>, ServiceError> {
        let now = self.now();
        let idle_since = now - self.policy.refresh_ttl;
        Ok(self
            .store
            .live_sessions(user_id, now, idle_since)
            .await?
            .into_iter()
            .map(|s| {
                let expires_at = self.session_expires_at(&s);
                SessionView::of(s, expires_at)
            })
            .collect())
    }

    /// `DELETE /v1/sessions/{sid}`: only the caller's own live sessions.
    pub async fn revoke_own_session(
        &self,
        auth: &Authenticated,
        sid: &SessionId,
        ctx: &RequestContext,
    ) -> Result<(), ServiceError> {
        let not_found = || ServiceError::NotFound("no such session".into());
        if !sid.is_well_formed() {
            return Err(not_found());
        }
        let session = self.store.session(sid).await?.ok_or_else(not_found)?;
        if session.user_id != auth.user.id || session.revoked_at.is_some() {
            return Err(not_found());
        }
        let now = self.now();
        self.store
            .revoke_sessions(RevokeScope::One(sid), now, "revoked_by_user")
            .await?;
        self.wake_feed();
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
    pub async fn revoke_session(&self, sid: &SessionId) -> Result<(), ServiceError> {
        if !sid.is_well_formed() {
            return Err(ServiceError::NotFound(format!("no live session {sid}")));
        }
        let now = self.now();
        let n = self
            .store
            .revoke_sessions(RevokeScope::One(sid), now, "revoked_by_operator")
            .await?;
        self.wake_feed();
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
        self.wake_feed();
        self.audit(
            AuditRecord::new(AuditEvent::SessionRevoked, now)
                .user(&user.id)
                .detail(format!("all {n}, by an operator")),
        )
        .await;
        Ok(n)
    }
}
