//! Rotation, the grace window and reuse detection (docs/reference.md §5), and
//! the issuing of a pair.

use latchkey_proto::AccessClaims;
use time::OffsetDateTime;

use super::{round_up_secs, Issued, RequestContext, Service, SessionView, UserView};
use crate::audit::{AuditEvent, AuditRecord};
use crate::error::ServiceError;
use crate::ids::{SessionId, UserId};
use crate::policy::WEB_CLIENT_ID;
use crate::refresh::{self, ParsedRefreshToken};
use crate::store::{Advance, RevokeScope, SessionRecord, SessionWithUser};
use crate::tokens;

const INVALID: ServiceError = ServiceError::InvalidToken("invalid refresh token");
const ANOTHER_CLIENT: ServiceError =
    ServiceError::InvalidToken("a refresh token of another client");

impl Service {
    /// The one way from a presented refresh token to its session: parse it,
    /// read the session it names, check its MAC. `None` for anything that
    /// is not a genuine token of a stored session: session ids are public,
    /// so a string whose MAC fails is merely invalid, never evidence.
    pub(super) async fn presented_session(
        &self,
        token: &str,
    ) -> Result<Option<(ParsedRefreshToken, SessionWithUser)>, ServiceError> {
        let Some(presented) = ParsedRefreshToken::parse(token) else {
            return Ok(None);
        };
        let Some(found) = self.store.session_with_user(&presented.session_id).await? else {
            return Ok(None);
        };
        if !presented.is_genuine(&self.refresh_secret, &found.session.salt) {
            return Ok(None);
        }
        self.facts.insert(&found.session, &found.user);
        Ok(Some((presented, found)))
    }

    /// `POST /v1/auth/refresh`: rotation, the grace window and reuse detection.
    pub async fn refresh(&self, token: &str, ctx: &RequestContext) -> Result<Issued, ServiceError> {
        self.refresh_for(token, ctx, WEB_CLIENT_ID).await
    }

    /// A refresh by `client_id`: a token of another client's session is
    /// refused before anything is spent.
    pub(super) async fn refresh_for(
        &self,
        token: &str,
        ctx: &RequestContext,
        client_id: &str,
    ) -> Result<Issued, ServiceError> {
        if let Some(issued) = self.refresh_known(token, ctx, client_id).await? {
            return Ok(issued);
        }
        // The MAC first: a forged string never counts as reuse.
        let (presented, found) = self.presented_session(token).await?.ok_or(INVALID)?;
        if found.session.client_id != client_id {
            return Err(ANOTHER_CLIENT);
        }
        let now = self.now();
        self.check_live(&found, now).map_err(|_| INVALID)?;
        if presented.generation != found.session.generation {
            return self
                .replay_or_reuse(presented.generation, found, now, ctx)
                .await;
        }
        let user = UserView::from(&found.user);
        match self
            .swap(&found.session.id, presented.generation, &user.id, ctx, now)
            .await?
        {
            Advance::Advanced(advanced) => self.issue(*advanced, user, now),
            // Another request won the race: decide on what it left.
            Advance::Lost => {
                self.decide_after_losing(&found.session.id, presented.generation, now, ctx)
                    .await
            }
        }
    }

    /// The usual refresh, of a session whose facts are in memory: its MAC
    /// checked without I/O, then the store's swap, which checks the rest.
    /// `None` when the facts are unknown or the swap lost: the caller
    /// reads the session and decides (grace window, reuse, or dead).
    async fn refresh_known(
        &self,
        token: &str,
        ctx: &RequestContext,
        client_id: &str,
    ) -> Result<Option<Issued>, ServiceError> {
        let presented = ParsedRefreshToken::parse(token).ok_or(INVALID)?;
        let Some(facts) = self.facts.get(&presented.session_id) else {
            return Ok(None);
        };
        if !presented.is_genuine(&self.refresh_secret, &facts.salt) {
            return Err(INVALID);
        }
        if facts.client_id != client_id {
            return Err(ANOTHER_CLIENT);
        }
        let now = self.now();
        if facts.absolute_expires_at <= now {
            return Err(INVALID);
        }
        let id = &presented.session_id;
        match self
            .swap(id, presented.generation, &facts.user_id, ctx, now)
            .await?
        {
            Advance::Advanced(advanced) => Ok(Some(self.issue(*advanced, facts.user(), now)?)),
            Advance::Lost => Ok(None),
        }
    }

    /// The compare-and-swap from `from`, with its audit row; only a live
    /// session moves (a disabled user's are revoked).
    async fn swap(
        &self,
        id: &SessionId,
        from: u64,
        user_id: &UserId,
        ctx: &RequestContext,
        now: OffsetDateTime,
    ) -> Result<Advance, ServiceError> {
        // The audit row commits with the compare-and-swap: one transaction.
        let audit = AuditRecord::new(AuditEvent::Refreshed, now)
            .user(user_id)
            .session(id)
            .ip(&ctx.ip);
        let idle_before = now - self.policy.refresh_ttl;
        let advance = self
            .store
            .advance_generation(id, from, now, idle_before, &audit)
            .await?;
        if matches!(advance, Advance::Advanced(_)) {
            self.log_audit(&audit);
        }
        Ok(advance)
    }

    /// After a lost swap from `presented`: the session as another request
    /// left it, or as it always was, decides.
    async fn decide_after_losing(
        &self,
        id: &SessionId,
        presented: u64,
        now: OffsetDateTime,
        ctx: &RequestContext,
    ) -> Result<Issued, ServiceError> {
        let again = self.store.session_with_user(id).await?.ok_or(INVALID)?;
        self.check_live(&again, now).map_err(|_| INVALID)?;
        self.replay_or_reuse(presented, again, now, ctx).await
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
            return Err(INVALID);
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
            return self.issue(session, UserView::from(user), now);
        }
        let (event, case) = if previous {
            (AuditEvent::ReuseLateRetry, "late_retry")
        } else {
            (AuditEvent::ReuseStaleCopy, "stale_copy")
        };
        self.store
            .revoke_sessions(RevokeScope::One(&session.id), now, &format!("reuse_{case}"))
            .await?;
        self.wake_feed();
        self.facts.forget(&session.id);
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

    /// The claims of every access token latchkey signs: of a session
    /// (`sid`), or of a client itself (`client_credentials`, no `sid`).
    pub(super) fn access_claims(
        &self,
        sub: &str,
        sid: Option<&str>,
        client_id: &str,
        scope: &str,
        now: OffsetDateTime,
    ) -> AccessClaims {
        let iat = now.unix_timestamp();
        AccessClaims {
            iss: self.policy.issuer.clone(),
            sub: sub.to_owned(),
            aud: self.policy.audience.clone(),
            exp: iat + self.policy.access_ttl.as_secs() as i64,
            iat,
            nbf: iat,
            jti: uuid::Uuid::new_v4().to_string(),
            sid: sid.map(str::to_owned),
            client_id: client_id.to_owned(),
            scope: scope.to_owned(),
            amr: Vec::new(),
            auth_time: None,
        }
    }

    /// Signs claims with the key that signs now.
    pub(super) fn sign(
        &self,
        claims: &AccessClaims,
        now: OffsetDateTime,
    ) -> Result<String, ServiceError> {
        let ring = self.ring();
        let key = ring
            .signing_key(now)
            .ok_or_else(|| ServiceError::Internal("no signing key".into()))?;
        tokens::sign(claims, key)
    }

    /// A pair for the session at its current generation.
    pub(super) fn issue(
        &self,
        session: SessionRecord,
        user: UserView,
        now: OffsetDateTime,
    ) -> Result<Issued, ServiceError> {
        let mut claims = self.access_claims(
            user.id.as_str(),
            Some(session.id.as_str()),
            &session.client_id,
            &session.scope,
            now,
        );
        // How the session logged in, which a refresh keeps (RFC 9470's
        // step-up reads them).
        claims.amr = session.amr.clone();
        claims.auth_time = Some(session.auth_time.unix_timestamp());
        let access_token = self.sign(&claims, now)?;
        let refresh_token = refresh::mint(
            &self.refresh_secret,
            &session.id,
            &session.salt,
            session.generation,
        );
        let expires_at = self.session_expires_at(&session);
        let refresh_lifetime = round_up_secs((expires_at - now).unsigned_abs());
        Ok(Issued {
            access_token,
            expires_in: self.policy.access_ttl,
            refresh_token,
            refresh_lifetime,
            session: SessionView::of(session, expires_at),
            user,
        })
    }
}
