//! Account recovery (API.md §11): a password reset asked for by username
//! or verified address and mailed as a token, the reset itself, the mails'
//! outbox signal and prune.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use super::{RequestContext, Service};
use crate::audit::{AuditEvent, AuditRecord};
use crate::error::ServiceError;
use crate::mail::{
    link, new_token, token_hash, EmailAddress, MailKind, MailTokenRecord, OutboxMail, TokenPurpose,
    TOKEN_MAX_CHARS,
};
use crate::policy::MailPolicy;
use crate::store::{LoginAttempt, LoginLimit, MailLimit, UserRecord};
use crate::validate::{NewPassword, Username};

/// A reset token is good this long.
pub const RESET_TOKEN_TTL: Duration = Duration::from_secs(30 * 60);
/// An address-check token is good this long (the mail may be read later).
pub const VERIFY_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);
/// Reset mails one user may get in an hour.
pub const RESET_MAILS_PER_HOUR: u32 = 3;
/// Address-check mails one user may get in an hour.
pub const VERIFY_MAILS_PER_HOUR: u32 = 5;
/// Mailed tokens and finished outbox rows are deleted this long after.
pub const MAIL_PRUNE_AFTER: Duration = Duration::from_secs(24 * 3600);
/// Reset requests looked up in the background at once; beyond, a request
/// is still answered 202 but dropped (a flood from many addresses).
pub(super) const RESET_JOBS: usize = 64;

const HOUR: Duration = Duration::from_secs(3600);

fn in_words(d: Duration) -> String {
    match d.as_secs() {
        s if s % 3600 == 0 && s >= 3600 => format!("{} hours", s / 3600),
        s => format!("{} minutes", s / 60),
    }
}

/// A presented token: bounded, else not worth a lookup.
pub(super) fn presented_token(token: &str) -> Result<&str, ServiceError> {
    if token.is_empty() || token.chars().count() > TOKEN_MAX_CHARS {
        return Err(ServiceError::invalid_request(
            "token must be 1 to 128 characters",
        ));
    }
    Ok(token)
}

impl Service {
    /// The mail settings, or the 404 of a server without `smtp_url`.
    pub(super) fn mail_policy(&self) -> Result<&MailPolicy, ServiceError> {
        self.policy.mail.as_ref().ok_or_else(|| {
            ServiceError::NotFound("mail is not configured on this server (smtp_url)".into())
        })
    }

    /// Resolves when this node queued a mail (or after a spurious wake):
    /// the outbox's sender waits on it between polls.
    pub async fn mail_queued(&self) {
        self.outbox.notified().await;
    }

    fn wake_outbox(&self) {
        self.outbox.notify_one();
    }

    /// Makes a token of `purpose` for `user`, renders its mail and queues
    /// both, unless the user's hourly allowance is spent. Answers whether
    /// a mail was queued.
    pub(super) async fn mail_token(
        &self,
        user: &UserRecord,
        to: &str,
        purpose: TokenPurpose,
    ) -> Result<bool, ServiceError> {
        let mail = self.mail_policy()?;
        let (kind, page, ttl, per_hour) = match purpose {
            TokenPurpose::PasswordReset => (
                MailKind::PasswordReset,
                &mail.password_reset_url,
                RESET_TOKEN_TTL,
                RESET_MAILS_PER_HOUR,
            ),
            TokenPurpose::VerifyEmail => (
                MailKind::VerifyEmail,
                &mail.email_verify_url,
                VERIFY_TOKEN_TTL,
                VERIFY_MAILS_PER_HOUR,
            ),
        };
        let now = self.now();
        let (token, hash) = new_token()?;
        let vars = BTreeMap::from([
            ("username", user.username.clone()),
            ("email", to.to_owned()),
            ("link", link(page, &token)),
            ("token", token),
            ("expires_in", in_words(ttl)),
            ("issuer", self.policy.issuer.clone()),
        ]);
        let rendered = mail.templates.render(kind, &vars);
        let record = MailTokenRecord {
            hash,
            user_id: user.id.clone(),
            purpose,
            email: to.to_owned(),
            password_version: user.password_version,
            created_at: now,
            expires_at: now + ttl,
            spent_at: None,
        };
        let limit = MailLimit {
            since: now - HOUR,
            max: per_hour,
        };
        let outbox = OutboxMail::new(to, rendered, now);
        let queued = self.store.issue_mail_token(&record, &outbox, limit).await?;
        if queued {
            self.wake_outbox();
        }
        Ok(queued)
    }

    /// `POST /v1/auth/password-reset`: counts the request against the
    /// client address's limit, then answers at once; the account is looked
    /// up and its mail queued in the background, so that the answer takes
    /// the same time whether or not the account exists.
    pub async fn request_password_reset(
        self: &Arc<Self>,
        login: &str,
        ctx: &RequestContext,
    ) -> Result<(), ServiceError> {
        self.mail_policy()?;
        let login = login.trim();
        if login.is_empty() || login.chars().count() > 254 {
            return Err(ServiceError::invalid_request(
                "login must be 1 to 254 characters",
            ));
        }
        let now = self.now();
        self.reserve_reset_request(now, ctx).await?;
        let Ok(permit) = self.reset_jobs.clone().try_acquire_owned() else {
            tracing::warn!("too many password resets in progress: one is dropped");
            return Ok(());
        };
        let this = self.clone();
        let (login, ip) = (login.to_owned(), ctx.ip.clone());
        tokio::spawn(async move {
            if let Err(e) = this.mail_password_reset(&login, &ip).await {
                tracing::warn!(error = %e, "password reset mail not queued");
            }
            drop(permit);
        });
        Ok(())
    }

    /// The per-address limit on reset requests: the login limit's
    /// machinery under a key no username can make (they hold no control
    /// character), with its count and window.
    async fn reserve_reset_request(
        &self,
        now: OffsetDateTime,
        ctx: &RequestContext,
    ) -> Result<(), ServiceError> {
        let key = format!("\u{1f}password_reset\u{1f}{}", Self::address_key(ctx));
        let limit = LoginLimit {
            key: &key,
            now,
            window_start_after: now - self.policy.login_window,
            max_attempts: self.policy.login_max_failures,
        };
        match self.store.reserve_login_attempt(limit).await? {
            LoginAttempt::Allowed => Ok(()),
            LoginAttempt::Refused {
                window_started_at, ..
            } => {
                let left = (window_started_at + self.policy.login_window - now).unsigned_abs();
                Err(ServiceError::RateLimited {
                    retry_after: super::round_up_secs(left).max(Duration::from_secs(1)),
                })
            }
        }
    }

    /// The account a reset names: a verified address first (no one can
    /// take another's verified address, while anyone may name themselves
    /// after it), then a username.
    async fn reset_account(&self, login: &str) -> Result<Option<UserRecord>, ServiceError> {
        if let Ok(address) = EmailAddress::parse(login) {
            if let Some(user) = self.store.user_by_verified_email(address.key()).await? {
                return Ok(Some(user));
            }
        }
        match Username::parse(login) {
            Ok(name) => Ok(self.store.user_by_key(name.key()).await?),
            Err(_) => Ok(None),
        }
    }

    async fn mail_password_reset(&self, login: &str, ip: &str) -> Result<(), ServiceError> {
        let Some(user) = self.reset_account(login).await? else {
            return Ok(());
        };
        if user.disabled_at.is_some() {
            return Ok(());
        }
        // Reset mails go only to a verified address.
        let Some(email) = user.email.clone().filter(|e| e.verified_at.is_some()) else {
            return Ok(());
        };
        let queued = self
            .mail_token(&user, &email.email, TokenPurpose::PasswordReset)
            .await?;
        let event = if queued {
            AuditEvent::PasswordResetRequested
        } else {
            AuditEvent::PasswordResetLimited
        };
        self.audit(AuditRecord::new(event, self.now()).user(&user.id).ip(ip))
            .await;
        Ok(())
    }

    /// `POST /v1/auth/password-reset/confirm`: a live reset token sets the
    /// password (under the registration policy) and revokes every session.
    pub async fn confirm_password_reset(
        &self,
        token: &str,
        new_password: &str,
        ctx: &RequestContext,
    ) -> Result<(), ServiceError> {
        self.mail_policy()?;
        let token = presented_token(token)?;
        let new = NewPassword::parse(new_password)?;
        let hash = token_hash(token);
        let now = self.now();
        // Checked before the costly hash: a guessed token costs a lookup.
        let live = self.store.mail_token(&hash).await?.is_some_and(|t| {
            t.purpose == TokenPurpose::PasswordReset && t.spent_at.is_none() && t.expires_at > now
        });
        if !live {
            return Err(ServiceError::InvalidMailToken);
        }
        let hashing = self.hasher.admit()?;
        let password_hash = hashing.hash(new.expose()).await?;
        drop(hashing);
        let user_id = self
            .store
            .reset_password_with_token(&hash, &password_hash, now)
            .await?
            .ok_or(ServiceError::InvalidMailToken)?;
        self.wake_feed();
        self.audit(
            AuditRecord::new(AuditEvent::PasswordResetCompleted, now)
                .user(&user_id)
                .ip(&ctx.ip),
        )
        .await;
        Ok(())
    }

    /// Deletes mailed tokens and finished outbox rows older than a day,
    /// by the outbox sender's clock `now`.
    pub async fn prune_mail(&self, now: OffsetDateTime) -> Result<u64, ServiceError> {
        let before = now - MAIL_PRUNE_AFTER;
        let mut total = 0;
        loop {
            let n = self.store.prune_mail(before, super::PRUNE_BATCH).await?;
            total += n;
            if n < u64::from(super::PRUNE_BATCH) {
                return Ok(total);
            }
            tokio::task::yield_now().await;
        }
    }
}
