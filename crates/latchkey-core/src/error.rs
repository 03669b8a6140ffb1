//! What can go wrong in the service, in words the HTTP layer maps to statuses.

use std::time::Duration;

use crate::store::StoreError;

/// Every failure the service reports. The HTTP layer maps each to a status
/// and an error code in exactly one place.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    InvalidRequest(String),
    /// Wrong username or password at login.
    #[error("invalid username or password")]
    InvalidCredentials,
    /// A wrong current password on a password change (403, not 401).
    #[error("the current password is wrong")]
    WrongCurrentPassword,
    /// A bad, expired, revoked or unknown token.
    #[error("{0}")]
    InvalidToken(&'static str),
    #[error("registration is closed")]
    RegistrationClosed,
    #[error("this username is taken")]
    UsernameTaken,
    #[error("{0}")]
    NotFound(String),
    #[error("too many failed attempts")]
    RateLimited { retry_after: Duration },
    /// The password-hashing queue is full.
    #[error("the server is busy, try again shortly")]
    Busy { retry_after: Duration },
    #[error("the store is unavailable")]
    Unavailable(#[source] StoreError),
    #[error("{0}")]
    Conflict(String),
    #[error("internal error: {0}")]
    Internal(String),
    /// OAuth: the client is unknown, or its authentication failed.
    #[error("{0}")]
    InvalidClient(&'static str),
    /// OAuth: the scope asked for is not the client's to ask.
    #[error("the requested scope is not allowed for this client")]
    InvalidScope,
    /// OAuth: the client may not do this (RFC 6749 §5.2, RFC 7009 §2.1).
    #[error("{0}")]
    UnauthorizedClient(&'static str),
    #[error("unsupported grant_type")]
    UnsupportedGrantType,
    /// OAuth: a grant that does not hold (wrong password, bad refresh token).
    #[error("{0}")]
    InvalidGrant(&'static str),
    /// A mailed token (reset or address check) that is unknown, spent,
    /// superseded or expired.
    #[error("the token is invalid, used or expired: ask for a new one")]
    InvalidMailToken,
    /// The address is verified on another account.
    #[error("this email address is taken")]
    EmailTaken,
    /// TOTP is on already: it must be turned off before a new enrolment.
    #[error("TOTP is already on: turn it off first")]
    TotpAlreadyEnabled,
    /// A TOTP code that is not the enrolment's (confirming it).
    #[error("the code is wrong or expired")]
    WrongCode,
    /// An `mfa_token` that is unknown, spent, expired, out of tries, or
    /// made before a password change.
    #[error("the mfa_token is invalid, used or expired: log in again")]
    InvalidMfaToken,
    /// RFC 6750: the token is good but lacks this scope.
    #[error("this needs a token of the web client, or one with the {0} scope")]
    InsufficientScope(&'static str),
}

impl ServiceError {
    pub fn invalid_request(msg: impl Into<String>) -> Self {
        Self::InvalidRequest(msg.into())
    }
}

impl ServiceError {
    /// The same failure in RFC 6749's words: at the token endpoint a wrong
    /// password or a bad refresh token is `invalid_grant`.
    pub fn into_oauth(self) -> Self {
        match self {
            Self::InvalidCredentials => Self::InvalidGrant("wrong username or password"),
            Self::InvalidToken(why) => Self::InvalidGrant(why),
            Self::InvalidMfaToken => {
                Self::InvalidGrant("the mfa_token is invalid, used or expired: log in again")
            }
            other => other,
        }
    }
}

/// A store's failure as the service reports it: a conflict stays one; data
/// this version cannot read, or files not safe to use, are internal errors
/// (500, logged at error level for an operator), never a "try again";
/// anything else is the store being unavailable (503).
impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => Self::Conflict(what),
            StoreError::Corrupt(what) => {
                Self::Internal(format!("corrupt data in the store: {what}"))
            }
            StoreError::Unsafe(what) => Self::Internal(what),
            other => Self::Unavailable(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_data_is_internal_and_an_outage_is_unavailable() {
        let corrupt = ServiceError::from(StoreError::Corrupt("generation -1".into()));
        assert!(matches!(corrupt, ServiceError::Internal(ref m) if m.contains("generation -1")));
        let down = ServiceError::from(StoreError::Unavailable("refused".into()));
        assert!(matches!(down, ServiceError::Unavailable(_)));
        let taken = ServiceError::from(StoreError::Conflict("users.username_key".into()));
        assert!(matches!(taken, ServiceError::Conflict(_)));
    }
}
