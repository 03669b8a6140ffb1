//! A user's email address (API.md §11): given at registration or changed
//! with the current password, checked by a mailed token, and set by an
//! operator.

use super::{Authenticated, RequestContext, Service};
use crate::audit::{AuditEvent, AuditRecord};
use crate::error::ServiceError;
use crate::mail::{token_hash, EmailAddress, EmailRecord, TokenPurpose};
use crate::store::{StoreError, UserRecord};
use crate::validate::LoginPassword;

impl Service {
    /// Stores an unverified address and, with mail configured, mails it a
    /// token to check it. A failure to queue the mail is logged, not
    /// answered: the address is set, and asking again sends another.
    pub(super) async fn set_unverified_email(
        &self,
        user: &UserRecord,
        address: &EmailAddress,
        ctx: Option<&RequestContext>,
    ) -> Result<(), ServiceError> {
        let now = self.now();
        let record = EmailRecord {
            email: address.as_str().to_owned(),
            email_key: address.key().to_owned(),
            verified_at: None,
        };
        self.store.set_user_email(&user.id, &record, now).await?;
        let mut row = AuditRecord::new(AuditEvent::EmailChanged, now).user(&user.id);
        if let Some(ctx) = ctx {
            row = row.ip(&ctx.ip);
        }
        self.audit(row).await;
        if self.policy.mail.is_some() {
            match self
                .mail_token(user, address.as_str(), TokenPurpose::VerifyEmail)
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    tracing::info!(user_id = %user.id, "address check not mailed: hourly limit")
                }
                Err(e) => tracing::warn!(error = %e, "address check mail not queued"),
            }
        }
        Ok(())
    }

    /// `PUT /v1/me/email`: the current password (an attempt of the login
    /// limit), then the new address, unverified until its mailed token is
    /// used. The same address again, already verified, changes nothing.
    pub async fn change_email(
        &self,
        auth: &Authenticated,
        email: &str,
        current_password: &str,
        ctx: &RequestContext,
    ) -> Result<(), ServiceError> {
        let address = EmailAddress::parse(email)?;
        let current = LoginPassword::parse(current_password)?;
        // The hashing slot is not needed after the check: let go at once.
        let (user, _) = self
            .confirm_current_password(
                auth,
                &current,
                ctx,
                Some("wrong current password on an email change"),
            )
            .await?;
        let unchanged = user
            .email
            .as_ref()
            .is_some_and(|e| e.email == address.as_str() && e.verified_at.is_some());
        if unchanged {
            return Ok(());
        }
        self.set_unverified_email(&user, &address, Some(ctx)).await
    }

    /// `POST /v1/me/email/verify`: a live check token of the caller's
    /// marks the address it was mailed to verified, while it is still theirs.
    pub async fn verify_email(
        &self,
        auth: &Authenticated,
        token: &str,
        ctx: &RequestContext,
    ) -> Result<(), ServiceError> {
        self.mail_policy()?;
        let token = super::recovery::presented_token(token)?;
        let now = self.now();
        match self
            .store
            .verify_email_with_token(&token_hash(token), &auth.user.id, now)
            .await
        {
            Ok(true) => {}
            Ok(false) => return Err(ServiceError::InvalidMailToken),
            Err(StoreError::Conflict(_)) => return Err(ServiceError::EmailTaken),
            Err(e) => return Err(e.into()),
        }
        self.audit(
            AuditRecord::new(AuditEvent::EmailVerified, now)
                .user(&auth.user.id)
                .ip(&ctx.ip),
        )
        .await;
        Ok(())
    }

    /// `latchkey user set-email`: an operator's address for a user,
    /// verified at once or mailed a check like the user's own change.
    pub async fn set_email(
        &self,
        username: &str,
        email: &str,
        verified: bool,
    ) -> Result<EmailRecord, ServiceError> {
        let user = self.user_record(username).await?;
        let address = EmailAddress::parse(email)?;
        if !verified {
            self.set_unverified_email(&user, &address, None).await?;
        } else {
            let now = self.now();
            let record = EmailRecord {
                email: address.as_str().to_owned(),
                email_key: address.key().to_owned(),
                verified_at: Some(now),
            };
            match self.store.set_user_email(&user.id, &record, now).await {
                Err(StoreError::Conflict(_)) => return Err(ServiceError::EmailTaken),
                other => other?,
            }
            self.audit(
                AuditRecord::new(AuditEvent::EmailVerified, now)
                    .user(&user.id)
                    .detail("set verified by an operator"),
            )
            .await;
        }
        self.store
            .user_by_id(&user.id)
            .await?
            .and_then(|u| u.email)
            .ok_or_else(|| ServiceError::Internal("the address just set is gone".into()))
    }
}
