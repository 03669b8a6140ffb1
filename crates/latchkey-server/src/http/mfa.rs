//! Second factors (API.md §10): TOTP enrolment and removal under
//! `/v1/me/totp`, and the second step of a login, `/v1/auth/mfa`. Every
//! rule is the service's.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use latchkey_core::service::SecondFactor;
use latchkey_proto::{
    ErrorBody, LoginResponse, MfaLogin, RecoveryCodes, TotpConfirmation, TotpEnrolment, TotpRemoval,
};

use super::auth::issued_response;
use super::error::ApiError;
use super::extract::{check_login_origin, AccountAuth, Context, JsonBody};
use super::{no_store, AppState};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/me/totp", post(start_totp).delete(remove_totp))
        .route("/v1/me/totp/confirm", post(confirm_totp))
        .route("/v1/auth/mfa", post(second_step))
}

/// Secrets (the TOTP secret, recovery codes) are never cached.
fn secret_json<T: serde::Serialize>(body: T) -> Response {
    let mut response = Json(body).into_response();
    no_store(&mut response);
    response
}

#[utoipa::path(post, path = "/v1/me/totp", tag = "mfa",
    security(("bearer" = []), ("access_cookie" = [])),
    responses((status = 200, description = "A new secret, waiting for its first code (a new start replaces it); Cache-Control: no-store", body = TotpEnrolment),
        (status = 401, description = "No access token, or a bad, expired or revoked one", body = ErrorBody),
        (status = 403, description = "csrf_rejected, or insufficient_scope", body = ErrorBody),
        (status = 409, description = "totp_already_enabled: turn it off first", body = ErrorBody)))]
async fn start_totp(
    State(app): State<AppState>,
    AccountAuth(auth): AccountAuth,
) -> Result<Response, ApiError> {
    let enrolment = app.service.start_totp(&auth).await?;
    Ok(secret_json(TotpEnrolment {
        secret: enrolment.secret,
        otpauth_uri: enrolment.otpauth_uri,
    }))
}

#[utoipa::path(post, path = "/v1/me/totp/confirm", tag = "mfa", request_body = TotpConfirmation,
    security(("bearer" = []), ("access_cookie" = [])),
    responses((status = 200, description = "TOTP is on; the recovery codes are shown this once (Cache-Control: no-store)", body = RecoveryCodes),
        (status = 400, description = "invalid_code: not the enrolment's current code; invalid_request: malformed input, or no enrolment started", body = ErrorBody),
        (status = 401, description = "No access token, or a bad, expired or revoked one", body = ErrorBody),
        (status = 403, description = "csrf_rejected, or insufficient_scope", body = ErrorBody),
        (status = 409, description = "totp_already_enabled, or conflict: the enrolment was restarted meanwhile", body = ErrorBody)))]
async fn confirm_totp(
    State(app): State<AppState>,
    AccountAuth(auth): AccountAuth,
    Context(ctx): Context,
    JsonBody(body): JsonBody<TotpConfirmation>,
) -> Result<Response, ApiError> {
    let recovery_codes = app.service.confirm_totp(&auth, &body.code, &ctx).await?;
    Ok(secret_json(RecoveryCodes { recovery_codes }))
}

#[utoipa::path(delete, path = "/v1/me/totp", tag = "mfa", request_body = TotpRemoval,
    security(("bearer" = []), ("access_cookie" = [])),
    responses((status = 204, description = "TOTP is off; the recovery codes are deleted"),
        (status = 400, description = "Malformed input", body = ErrorBody),
        (status = 401, description = "No access token, or a bad, expired or revoked one", body = ErrorBody),
        (status = 403, description = "invalid_credentials (wrong current password), csrf_rejected, or insufficient_scope", body = ErrorBody),
        (status = 404, description = "not_found: TOTP is not on", body = ErrorBody),
        (status = 429, description = "rate_limited", body = ErrorBody)))]
async fn remove_totp(
    State(app): State<AppState>,
    AccountAuth(auth): AccountAuth,
    Context(ctx): Context,
    JsonBody(body): JsonBody<TotpRemoval>,
) -> Result<Response, ApiError> {
    app.service
        .disable_totp(&auth, &body.current_password, &ctx)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The factor a second step presents: exactly one of `code` and
/// `recovery_code`.
pub(super) fn factor<'a>(
    code: Option<&'a str>,
    recovery_code: Option<&'a str>,
) -> Result<SecondFactor<'a>, ApiError> {
    match (code, recovery_code) {
        (Some(code), None) => Ok(SecondFactor::Totp(code)),
        (None, Some(code)) => Ok(SecondFactor::RecoveryCode(code)),
        _ => Err(ApiError::bad_request(
            "give exactly one of code and recovery_code",
        )),
    }
}

#[utoipa::path(post, path = "/v1/auth/mfa", tag = "mfa", request_body = MfaLogin,
    responses((status = 200, description = "The login is done: both cookies are set, as for a password login", body = LoginResponse),
        (status = 400, description = "Malformed input, or not exactly one of code and recovery_code", body = ErrorBody),
        (status = 401, description = "invalid_credentials: a wrong code; invalid_token: an mfa_token unknown, used, expired, out of tries or older than a password change", body = ErrorBody),
        (status = 403, description = "csrf_rejected: a foreign Origin", body = ErrorBody),
        (status = 429, description = "rate_limited, with Retry-After", body = ErrorBody)))]
async fn second_step(
    State(app): State<AppState>,
    headers: HeaderMap,
    Context(ctx): Context,
    JsonBody(body): JsonBody<MfaLogin>,
) -> Result<Response, ApiError> {
    check_login_origin(&headers, &app)?;
    let factor = factor(body.code.as_deref(), body.recovery_code.as_deref())?;
    let issued = app
        .service
        .login_second_step(&body.mfa_token, factor, &ctx)
        .await?;
    Ok(issued_response(&app, &issued))
}
