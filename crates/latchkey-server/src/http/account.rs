//! `/v1/me` and `/v1/sessions`: what a logged-in user sees of their account.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use latchkey_proto::{PasswordChange, SessionList, User};

use super::error::ApiError;
use super::extract::{Auth, Context, JsonBody};
use super::{views, AppState};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/me", get(me))
        .route("/v1/me/password", post(change_password))
        .route("/v1/sessions", get(list_sessions))
        .route("/v1/sessions/{sid}", delete(revoke_session))
}

async fn me(Auth(auth): Auth) -> Json<User> {
    Json(views::user(&auth.user))
}

async fn change_password(
    State(app): State<AppState>,
    Auth(auth): Auth,
    Context(ctx): Context,
    JsonBody(body): JsonBody<PasswordChange>,
) -> Result<Response, ApiError> {
    app.service
        .change_password(&auth, &body.current_password, &body.new_password, &ctx)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_sessions(
    State(app): State<AppState>,
    Auth(auth): Auth,
) -> Result<Json<SessionList>, ApiError> {
    let sessions = app.service.live_sessions(Some(&auth.user.id)).await?;
    let current = Some(auth.session.id.as_str());
    Ok(Json(SessionList {
        sessions: sessions
            .iter()
            .map(|s| views::session(&app.service, s, current))
            .collect(),
    }))
}

async fn revoke_session(
    State(app): State<AppState>,
    Auth(auth): Auth,
    Context(ctx): Context,
    Path(sid): Path<String>,
) -> Result<Response, ApiError> {
    app.service.revoke_own_session(&auth, &sid, &ctx).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
