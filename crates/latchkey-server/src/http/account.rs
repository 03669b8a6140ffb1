//! `/v1/me` and `/v1/sessions`: what a logged-in user sees of their account.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use latchkey_core::SessionId;
use latchkey_proto::{ErrorBody, Me, PasswordChange, SessionList};

use super::error::ApiError;
use super::extract::{AccountAuth, Auth, Context, JsonBody};
use super::{views, AppState};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/me", get(me))
        .route("/v1/me/password", post(change_password))
        .route("/v1/sessions", get(list_sessions))
        .route("/v1/sessions/{sid}", delete(revoke_session))
}

#[utoipa::path(get, path = "/v1/me", tag = "account", security(("bearer" = []), ("access_cookie" = [])),
    responses((status = 200, body = Me), (status = 401, description = "No access token, or a bad, expired or revoked one", body = ErrorBody)))]
async fn me(Auth(auth): Auth) -> Json<Me> {
    Json(views::me(
        &auth.user,
        auth.email.as_ref(),
        auth.second_factors,
    ))
}

#[utoipa::path(post, path = "/v1/me/password", tag = "account", request_body = PasswordChange,
    security(("bearer" = []), ("access_cookie" = [])),
    responses((status = 204, description = "Changed; every other session is revoked"), (status = 400, description = "Malformed input", body = ErrorBody), (status = 401, description = "No access token, or a bad, expired or revoked one", body = ErrorBody),
        (status = 403, description = "invalid_credentials (wrong current password), csrf_rejected, or insufficient_scope (a third-party token without the account scope)", body = ErrorBody),
        (status = 429, description = "rate_limited", body = ErrorBody)))]
async fn change_password(
    State(app): State<AppState>,
    AccountAuth(auth): AccountAuth,
    Context(ctx): Context,
    JsonBody(body): JsonBody<PasswordChange>,
) -> Result<Response, ApiError> {
    app.service
        .change_password(&auth, &body.current_password, &body.new_password, &ctx)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(get, path = "/v1/sessions", tag = "account", security(("bearer" = []), ("access_cookie" = [])),
    responses((status = 200, body = SessionList), (status = 401, description = "No access token, or a bad, expired or revoked one", body = ErrorBody),
        (status = 403, description = "insufficient_scope: a third-party token without the account scope", body = ErrorBody)))]
async fn list_sessions(
    State(app): State<AppState>,
    AccountAuth(auth): AccountAuth,
) -> Result<Json<SessionList>, ApiError> {
    let sessions = app.service.live_sessions(Some(&auth.user.id)).await?;
    let current = Some(&auth.session.id);
    Ok(Json(SessionList {
        sessions: sessions
            .iter()
            .map(|s| views::session(s, current))
            .collect(),
    }))
}

#[utoipa::path(delete, path = "/v1/sessions/{sid}", tag = "account", security(("bearer" = []), ("access_cookie" = [])),
    params(("sid" = String, Path, description = "A session id of the caller's")),
    responses((status = 204, description = "Revoked"), (status = 401, description = "No access token, or a bad, expired or revoked one", body = ErrorBody),
        (status = 403, description = "csrf_rejected, or insufficient_scope: a third-party token without the account scope", body = ErrorBody),
        (status = 404, description = "not_found: no such session of the caller's", body = ErrorBody)))]
async fn revoke_session(
    State(app): State<AppState>,
    AccountAuth(auth): AccountAuth,
    Context(ctx): Context,
    Path(sid): Path<String>,
) -> Result<Response, ApiError> {
    app.service
        .revoke_own_session(&auth, &SessionId::from(sid), &ctx)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
