//! Account recovery by email (API.md §11): the password reset, and the
//! account's address with its check. Every rule is the service's.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use axum::Router;
use latchkey_proto::{
    EmailChange, EmailVerification, ErrorBody, PasswordResetConfirm, PasswordResetRequest,
};

use super::error::ApiError;
use super::extract::{AccountAuth, Context, JsonBody};
use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/auth/password-reset", post(request_reset))
        .route("/v1/auth/password-reset/confirm", post(confirm_reset))
        .route("/v1/me/email", put(change_email))
        .route("/v1/me/email/verify", post(verify_email))
}

#[utoipa::path(post, path = "/v1/auth/password-reset", tag = "recovery", request_body = PasswordResetRequest,
    responses((status = 202, description = "Accepted, whether or not the account exists; a reset mail goes to the account's verified address (at most 3 an hour)"),
        (status = 400, description = "Malformed input", body = ErrorBody),
        (status = 404, description = "not_found: mail is not configured (smtp_url)", body = ErrorBody),
        (status = 429, description = "rate_limited: too many requests from this address, with Retry-After", body = ErrorBody)))]
async fn request_reset(
    State(app): State<AppState>,
    Context(ctx): Context,
    JsonBody(body): JsonBody<PasswordResetRequest>,
) -> Result<Response, ApiError> {
    app.service
        .request_password_reset(&body.login, &ctx)
        .await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

#[utoipa::path(post, path = "/v1/auth/password-reset/confirm", tag = "recovery", request_body = PasswordResetConfirm,
    responses((status = 204, description = "The password is set; every session of the user is revoked"),
        (status = 400, description = "invalid_request: malformed input, a password outside the policy, or a token that is unknown, used, superseded or expired", body = ErrorBody),
        (status = 404, description = "not_found: mail is not configured (smtp_url)", body = ErrorBody),
        (status = 503, description = "unavailable: the hashing queue is full, with Retry-After", body = ErrorBody)))]
async fn confirm_reset(
    State(app): State<AppState>,
    Context(ctx): Context,
    JsonBody(body): JsonBody<PasswordResetConfirm>,
) -> Result<Response, ApiError> {
    app.service
        .confirm_password_reset(&body.token, &body.new_password, &ctx)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(put, path = "/v1/me/email", tag = "recovery", request_body = EmailChange,
    security(("bearer" = []), ("access_cookie" = [])),
    responses((status = 204, description = "Set, unverified until the token mailed to it is used"),
        (status = 400, description = "Malformed input or address", body = ErrorBody),
        (status = 401, description = "No access token, or a bad, expired or revoked one", body = ErrorBody),
        (status = 403, description = "invalid_credentials (wrong current password), csrf_rejected, or insufficient_scope", body = ErrorBody),
        (status = 429, description = "rate_limited", body = ErrorBody)))]
async fn change_email(
    State(app): State<AppState>,
    AccountAuth(auth): AccountAuth,
    Context(ctx): Context,
    JsonBody(body): JsonBody<EmailChange>,
) -> Result<Response, ApiError> {
    app.service
        .change_email(&auth, &body.email, &body.current_password, &ctx)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(post, path = "/v1/me/email/verify", tag = "recovery", request_body = EmailVerification,
    security(("bearer" = []), ("access_cookie" = [])),
    responses((status = 204, description = "The address is verified"),
        (status = 400, description = "invalid_request: malformed input, or a token that is unknown, used, superseded, expired or another user's", body = ErrorBody),
        (status = 401, description = "No access token, or a bad, expired or revoked one", body = ErrorBody),
        (status = 403, description = "csrf_rejected, or insufficient_scope", body = ErrorBody),
        (status = 404, description = "not_found: mail is not configured (smtp_url)", body = ErrorBody),
        (status = 409, description = "email_taken: the address is verified on another account", body = ErrorBody)))]
async fn verify_email(
    State(app): State<AppState>,
    AccountAuth(auth): AccountAuth,
    Context(ctx): Context,
    JsonBody(body): JsonBody<EmailVerification>,
) -> Result<Response, ApiError> {
    app.service.verify_email(&auth, &body.token, &ctx).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
