//! The one place where failures become HTTP statuses and error bodies.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use latchkey_core::ServiceError;
use latchkey_proto::{ErrorBody, MfaRequiredError};

/// Everything a handler can answer as an error.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error("no access token")]
    MissingToken,
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("the body is larger than 64 KiB")]
    PayloadTooLarge,
    #[error("cross-site request refused: its Origin is not allowed")]
    CsrfRejected,
    #[error("no such route")]
    RouteNotFound,
    #[error("this method is not allowed here")]
    MethodNotAllowed,
    #[error("the request body did not arrive within {} s", .0.as_secs())]
    RequestTimeout(std::time::Duration),
    /// The token endpoint's password grant for a user with TOTP on: the
    /// body carries the `mfa_token` of the second step.
    #[error("a second factor is required: finish with the mfa grant")]
    MfaRequired { mfa_token: String },
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::Service(ServiceError::invalid_request(message))
    }

    fn parts(&self) -> (StatusCode, &'static str) {
        use ServiceError as S;
        match self {
            Self::Service(e) => match e {
                S::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
                S::InvalidCredentials => (StatusCode::UNAUTHORIZED, "invalid_credentials"),
                S::WrongCurrentPassword => (StatusCode::FORBIDDEN, "invalid_credentials"),
                S::InvalidToken(_) => (StatusCode::UNAUTHORIZED, "invalid_token"),
                S::RegistrationClosed => (StatusCode::FORBIDDEN, "registration_closed"),
                S::UsernameTaken => (StatusCode::CONFLICT, "username_taken"),
                S::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
                S::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
                S::Busy { .. } | S::Unavailable(_) => {
                    (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
                }
                S::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
                S::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
                S::InvalidClient(_) => (StatusCode::UNAUTHORIZED, "invalid_client"),
                S::InvalidGrant(_) => (StatusCode::BAD_REQUEST, "invalid_grant"),
                S::InvalidScope => (StatusCode::BAD_REQUEST, "invalid_scope"),
                S::UnauthorizedClient(_) => (StatusCode::BAD_REQUEST, "unauthorized_client"),
                S::UnsupportedGrantType => (StatusCode::BAD_REQUEST, "unsupported_grant_type"),
                S::InsufficientScope(_) => (StatusCode::FORBIDDEN, "insufficient_scope"),
                S::InvalidMailToken => (StatusCode::BAD_REQUEST, "invalid_request"),
                S::EmailTaken => (StatusCode::CONFLICT, "email_taken"),
                S::TotpAlreadyEnabled => (StatusCode::CONFLICT, "totp_already_enabled"),
                S::WrongCode => (StatusCode::BAD_REQUEST, "invalid_code"),
                S::InvalidMfaToken => (StatusCode::UNAUTHORIZED, "invalid_token"),
            },
            Self::MissingToken => (StatusCode::UNAUTHORIZED, "invalid_token"),
            Self::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "invalid_request")
            }
            Self::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "invalid_request"),
            Self::CsrfRejected => (StatusCode::FORBIDDEN, "csrf_rejected"),
            Self::RouteNotFound => (StatusCode::NOT_FOUND, "not_found"),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::RequestTimeout(_) => (StatusCode::REQUEST_TIMEOUT, "invalid_request"),
            Self::MfaRequired { .. } => (StatusCode::FORBIDDEN, "mfa_required"),
        }
    }

    /// What the client is told. Internal and store errors say nothing of
    /// their cause (that goes to the log).
    fn description(&self) -> String {
        match self {
            Self::Service(ServiceError::Internal(_)) => "internal error".into(),
            Self::Service(ServiceError::Unavailable(_)) => {
                "the store is unavailable, try again shortly".into()
            }
            Self::Service(ServiceError::InvalidToken(_)) => {
                "the token is invalid, expired or revoked".into()
            }
            other => other.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        match &self {
            Self::Service(ServiceError::Internal(cause)) => {
                tracing::error!(%cause, "internal error")
            }
            Self::Service(ServiceError::Unavailable(cause)) => {
                tracing::warn!(%cause, "store unavailable")
            }
            Self::Service(ServiceError::InvalidToken(why)) => tracing::debug!(why, "token refused"),
            _ => {}
        }
        let mut response = match &self {
            Self::MfaRequired { mfa_token } => {
                let body = MfaRequiredError {
                    error: code.to_owned(),
                    error_description: self.description(),
                    mfa_token: mfa_token.clone(),
                };
                (status, Json(body)).into_response()
            }
            _ => {
                let body = ErrorBody {
                    error: code.to_owned(),
                    error_description: self.description(),
                };
                (status, Json(body)).into_response()
            }
        };
        let headers = response.headers_mut();
        match &self {
            Self::MissingToken => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Self::Service(ServiceError::InvalidToken(_)) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer error="invalid_token""#),
                );
            }
            Self::Service(
                ServiceError::RateLimited { retry_after } | ServiceError::Busy { retry_after },
            ) => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after.as_secs().max(1)),
                );
            }
            Self::Service(ServiceError::Unavailable(_)) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            Self::Service(ServiceError::InsufficientScope(scope)) => {
                let challenge = format!(r#"Bearer error="insufficient_scope", scope="{scope}""#);
                if let Ok(value) = HeaderValue::from_str(&challenge) {
                    headers.insert(header::WWW_AUTHENTICATE, value);
                }
            }
            Self::Service(ServiceError::InvalidClient(_)) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Basic realm="latchkey""#),
                );
            }
            _ => {}
        }
        response
    }
}
