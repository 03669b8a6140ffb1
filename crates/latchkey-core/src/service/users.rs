//! Accounts: registration, lookup, disabling, and passwords set by the
//! user or by an operator.

use super::{Authenticated, RequestContext, Service, UserView};
use crate::audit::{AuditEvent, AuditRecord};
use crate::error::ServiceError;
use crate::ids::UserId;
use crate::mail::EmailAddress;
use crate::password::Admitted;
use crate::store::{RevokeScope, StoreError, UserRecord};
use crate::validate::{LoginPassword, NewPassword, Username};

impl Service {
    /// `POST /v1/auth/register`.
    /// With an `email`, it is stored unverified and mailed a check.
    pub async fn register(
        &self,
        username: &str,
        password: &str,
        email: Option<&str>,
        ctx: &RequestContext,
    ) -> Result<UserView, ServiceError> {
        if !self.policy.registration_open {
            return Err(ServiceError::RegistrationClosed);
        }
        let address = email.map(EmailAddress::parse).transpose()?;
        let user = self.create_user(username, password).await?;
        self.audit(
            AuditRecord::new(AuditEvent::Registered, user.created_at)
                .user(&user.id)
                .ip(&ctx.ip),
        )
        .await;
        if let Some(address) = address {
            let record = self.user_record(&user.username).await?;
            self.set_unverified_email(&record, &address, Some(ctx))
                .await?;
        }
        Ok(user)
    }

    /// `latchkey user add`: a user whatever `registration` says, audited as
    /// the operator's.
    pub async fn add_user(&self, username: &str, password: &str) -> Result<UserView, ServiceError> {
        let user = self.create_user(username, password).await?;
        self.audit(
            AuditRecord::new(AuditEvent::UserAdded, user.created_at)
                .user(&user.id)
                .detail("by the command line"),
        )
        .await;
        Ok(user)
    }

    /// Creates a user whatever `registration` says.
    async fn create_user(&self, username: &str, password: &str) -> Result<UserView, ServiceError> {
        let username = Username::parse(username)?;
        let password = NewPassword::parse(password)?;
        if self.store.user_by_key(username.key()).await?.is_some() {
            return Err(ServiceError::UsernameTaken);
        }
        let hash = self.hasher.hash(password.expose()).await?;
        let user = UserRecord {
            id: UserId::random(),
            username: username.as_str().to_owned(),
            username_key: username.key().to_owned(),
            password_hash: hash,
            password_version: 0,
            created_at: self.now(),
            disabled_at: None,
            email: None,
            second_factors: Default::default(),
        };
        match self.store.create_user(&user).await {
            Err(StoreError::Conflict(_)) => Err(ServiceError::UsernameTaken),
            other => other.map(|()| UserView::from(&user)).map_err(Into::into),
        }
    }

    /// The stored user of a username, or `NotFound`.
    pub(super) async fn user_record(&self, username: &str) -> Result<UserRecord, ServiceError> {
        let name = Username::parse(username)?;
        self.store
            .user_by_key(name.key())
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no user {}", name.as_str())))
    }

    pub async fn user_by_name(&self, username: &str) -> Result<UserView, ServiceError> {
        Ok(UserView::from(&self.user_record(username).await?))
    }

    pub async fn list_users(&self) -> Result<Vec<UserView>, ServiceError> {
        Ok(self
            .store
            .list_users()
            .await?
            .iter()
            .map(UserView::from)
            .collect())
    }

    /// Disables a user (revoking every session) or enables one.
    pub async fn set_user_disabled(
        &self,
        username: &str,
        disabled: bool,
    ) -> Result<UserView, ServiceError> {
        let user = self.user_record(username).await?;
        let now = self.now();
        self.store
            .set_user_disabled(&user.id, disabled.then_some(now))
            .await?;
        self.wake_feed();
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
        let user = self.user_record(username).await?;
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
        self.wake_feed();
        self.audit(
            AuditRecord::new(AuditEvent::PasswordChanged, now)
                .user(&user.id)
                .detail("set by an operator"),
        )
        .await;
        Ok(())
    }

    /// The caller's current password, checked as an attempt of the login
    /// limit: a wrong one is audited (with `detail`) and counts, a right one
    /// clears the count. Answers the user and the hashing slot it held,
    /// kept for the hash of a new password.
    pub(super) async fn confirm_current_password(
        &self,
        auth: &Authenticated,
        current: &LoginPassword,
        ctx: &RequestContext,
        detail: Option<&str>,
    ) -> Result<(UserRecord, Admitted), ServiceError> {
        let username = Username::parse(&auth.user.username)?;
        let hashing = self.hasher.admit()?;
        let rate_key = Self::rate_key(&username, ctx);
        let now = self.now();
        self.reserve_attempt(&rate_key, now, ctx).await?;
        let user = self
            .store
            .user_by_id(&auth.user.id)
            .await?
            .ok_or(ServiceError::InvalidToken("unknown user"))?;
        let verified = hashing
            .verify(current.expose(), Some(&user.password_hash))
            .await?;
        if !verified.matched {
            let mut record = AuditRecord::new(AuditEvent::PasswordChangeFailed, now)
                .user(&user.id)
                .ip(&ctx.ip);
            if let Some(detail) = detail {
                record = record.detail(detail);
            }
            self.audit(record).await;
            return Err(ServiceError::WrongCurrentPassword);
        }
        self.store.clear_login_failures(&rate_key).await?;
        Ok((user, hashing))
    }

    /// `POST /v1/me/password`: checks the current password (an attempt of
    /// the login limit), sets the new one and revokes every other session.
    pub async fn change_password(
        &self,
        auth: &Authenticated,
        current: &str,
        new: &str,
        ctx: &RequestContext,
    ) -> Result<(), ServiceError> {
        let current = LoginPassword::parse(current)?;
        let new = NewPassword::parse(new)?;
        let (user, hashing) = self
            .confirm_current_password(auth, &current, ctx, None)
            .await?;
        let now = self.now();
        let hash = hashing.hash(new.expose()).await?;
        let scope = RevokeScope::User {
            user_id: &user.id,
            except: Some(&auth.session.id),
        };
        self.store
            .set_password_hash(&user.id, &hash, scope, now, "password_changed")
            .await?;
        self.wake_feed();
        self.audit(
            AuditRecord::new(AuditEvent::PasswordChanged, now)
                .user(&user.id)
                .session(&auth.session.id)
                .ip(&ctx.ip),
        )
        .await;
        Ok(())
    }
}
