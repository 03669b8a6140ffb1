//! The security events written to the audit log.

use time::OffsetDateTime;

use crate::ids::{SessionId, UserId};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditEvent {
    LoginSucceeded,
    LoginFailed,
    LoginRateLimited,
    Registered,
    /// A user made by an operator (`latchkey user add`).
    UserAdded,
    Refreshed,
    /// The previous token came back inside the grace window: the same
    /// successor was answered again, the session unchanged.
    RefreshRetried,
    /// The previous token came back just after the grace window.
    ReuseLateRetry,
    /// An older token came back: a stale copy, the theft case.
    ReuseStaleCopy,
    Logout,
    LogoutAll,
    SessionRevoked,
    PasswordChanged,
    PasswordChangeFailed,
    UserDisabled,
    UserEnabled,
    KeyRotated,
    KeyRetired,
    /// Keys no live token can need, deleted by the prune job.
    KeyDeleted,
    /// An OAuth client removed, and its sessions revoked.
    ClientRemoved,
    /// A reset mail queued for a user.
    PasswordResetRequested,
    /// A reset asked for while the user's hourly allowance of mails was spent.
    PasswordResetLimited,
    /// A password set with a mailed reset token; every session revoked.
    PasswordResetCompleted,
    EmailChanged,
    EmailVerified,
    /// A right password of a user with TOTP on: the login waits for its
    /// second factor.
    LoginSecondFactorRequired,
    TotpEnabled,
    TotpDisabled,
    /// A recovery code stood in for a TOTP code (and is spent).
    RecoveryCodeUsed,
    /// An operator removed a user's second factors (`user mfa-reset`).
    MfaReset,
    PasskeyAdded,
    PasskeyRemoved,
    /// A passkey login whose signature counter did not move past the
    /// stored one: the sign of a cloned authenticator. Refused.
    PasskeyCounterRejected,
}

impl AuditEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LoginSucceeded => "login_succeeded",
            Self::LoginFailed => "login_failed",
            Self::LoginRateLimited => "login_rate_limited",
            Self::Registered => "registered",
            Self::UserAdded => "user_added",
            Self::Refreshed => "refreshed",
            Self::RefreshRetried => "refresh_retried",
            Self::ReuseLateRetry => "reuse_detected_late_retry",
            Self::ReuseStaleCopy => "reuse_detected_stale_copy",
            Self::Logout => "logout",
            Self::LogoutAll => "logout_all",
            Self::SessionRevoked => "session_revoked",
            Self::PasswordChanged => "password_changed",
            Self::PasswordChangeFailed => "password_change_failed",
            Self::UserDisabled => "user_disabled",
            Self::UserEnabled => "user_enabled",
            Self::KeyRotated => "key_rotated",
            Self::KeyRetired => "key_retired",
            Self::KeyDeleted => "key_deleted",
            Self::ClientRemoved => "client_removed",
            Self::PasswordResetRequested => "password_reset_requested",
            Self::PasswordResetLimited => "password_reset_limited",
            Self::PasswordResetCompleted => "password_reset_completed",
            Self::EmailChanged => "email_changed",
            Self::EmailVerified => "email_verified",
            Self::LoginSecondFactorRequired => "login_second_factor_required",
            Self::TotpEnabled => "totp_enabled",
            Self::TotpDisabled => "totp_disabled",
            Self::RecoveryCodeUsed => "recovery_code_used",
            Self::MfaReset => "mfa_reset",
            Self::PasskeyAdded => "passkey_added",
            Self::PasskeyRemoved => "passkey_removed",
            Self::PasskeyCounterRejected => "passkey_counter_rejected",
        }
    }
}

/// One row of the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub at: OffsetDateTime,
    pub event: String,
    pub user_id: Option<String>,
    pub session_id: Option<String>,
    pub ip: Option<String>,
    /// Free text for a person: never a secret.
    pub detail: Option<String>,
}

impl AuditRecord {
    pub fn new(event: AuditEvent, at: OffsetDateTime) -> Self {
        Self {
            at,
            event: event.as_str().to_owned(),
            user_id: None,
            session_id: None,
            ip: None,
            detail: None,
        }
    }

    pub fn user(mut self, id: &UserId) -> Self {
        self.user_id = Some(id.as_str().to_owned());
        self
    }

    pub fn session(mut self, id: &SessionId) -> Self {
        self.session_id = Some(id.as_str().to_owned());
        self
    }

    pub fn ip(mut self, ip: &str) -> Self {
        self.ip = Some(ip.to_owned());
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}
