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
}

impl ServiceError {
    pub fn invalid_request(msg: impl Into<String>) -> Self {
        Self::InvalidRequest(msg.into())
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => Self::Conflict(what),
            other => Self::Unavailable(other),
        }
    }
}
