//! Passkeys (API.md §10): `/v1/me/passkeys*` (add, list, remove; account
//! endpoints like the others of `/v1/me/`) and `/v1/auth/passkey/*` (log
//! in with one). Every rule is the service's.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use latchkey_core::clock::rfc3339;
use latchkey_core::service::{CeremonyStart, PasskeyView};
use latchkey_core::PasskeyId;
use latchkey_proto::{
    ErrorBody, LoginResponse, Passkey, PasskeyChallenge, PasskeyCreated, PasskeyList, PasskeyLogin,
    PasskeyLoginStart, PasskeyRegistration,
};

use super::auth::issued_response;
use super::error::ApiError;
use super::extract::{check_login_origin, AccountAuth, Context, JsonBody};
use super::{no_store, AppState};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/me/passkeys", get(list_passkeys))
        .route(
            "/v1/me/passkeys/register/start",
            post(passkey_register_start),
        )
        .route(
            "/v1/me/passkeys/register/finish",
            post(passkey_register_finish),
        )
        .route("/v1/me/passkeys/{id}", delete(remove_passkey))
        .route("/v1/auth/passkey/start", post(passkey_login_start))
        .route("/v1/auth/passkey/finish", post(passkey_login_finish))
}

/// A ceremony's options, never cached: each is good once.
fn challenge(start: CeremonyStart) -> Response {
    let mut response = Json(PasskeyChallenge {
        public_key: start.options,
        challenge_id: start.challenge_id,
    })
    .into_response();
    no_store(&mut response);
    response
}

fn passkey(p: &PasskeyView) -> Passkey {
    Passkey {
        id: p.id.to_string(),
        name: p.name.clone(),
        created_at: rfc3339(p.created_at),
        last_used_at: p.last_used_at.map(rfc3339),
    }
}

#[utoipa::path(post, path = "/v1/me/passkeys/register/start", tag = "passkeys",
    security(("bearer" = []), ("access_cookie" = [])),
    responses((status = 200, description = "PublicKeyCredentialCreationOptions for navigator.credentials.create() (a resident key and user verification required; the caller's passkeys excluded), and the challenge_id that finishes it. The request body is ignored.", body = PasskeyChallenge),
        (status = 401, description = "No access token, or a bad, expired or revoked one", body = ErrorBody),
        (status = 403, description = "csrf_rejected, or insufficient_scope: a third-party token without the account scope", body = ErrorBody)))]
async fn passkey_register_start(
    State(app): State<AppState>,
    AccountAuth(auth): AccountAuth,
) -> Result<Response, ApiError> {
    let start = app.service.start_passkey_registration(&auth).await?;
    Ok(challenge(start))
}

#[utoipa::path(post, path = "/v1/me/passkeys/register/finish", tag = "passkeys", request_body = PasskeyRegistration,
    security(("bearer" = []), ("access_cookie" = [])),
    responses((status = 201, description = "The passkey is the caller's", body = PasskeyCreated),
        (status = 400, description = "invalid_request: malformed input, a challenge that is unknown, used, expired or another user's, or a credential that does not verify", body = ErrorBody),
        (status = 401, description = "No access token, or a bad, expired or revoked one", body = ErrorBody),
        (status = 403, description = "csrf_rejected, or insufficient_scope", body = ErrorBody),
        (status = 409, description = "conflict: this authenticator's credential is registered already", body = ErrorBody)))]
async fn passkey_register_finish(
    State(app): State<AppState>,
    AccountAuth(auth): AccountAuth,
    Context(ctx): Context,
    JsonBody(body): JsonBody<PasskeyRegistration>,
) -> Result<Response, ApiError> {
    let added = app
        .service
        .finish_passkey_registration(
            &auth,
            &body.challenge_id,
            body.credential,
            body.name.as_deref(),
            &ctx,
        )
        .await?;
    let body = PasskeyCreated {
        id: added.id.to_string(),
        name: added.name,
        created_at: rfc3339(added.created_at),
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

#[utoipa::path(get, path = "/v1/me/passkeys", tag = "passkeys",
    security(("bearer" = []), ("access_cookie" = [])),
    responses((status = 200, description = "The caller's passkeys, oldest first", body = PasskeyList),
        (status = 401, description = "No access token, or a bad, expired or revoked one", body = ErrorBody),
        (status = 403, description = "insufficient_scope", body = ErrorBody)))]
async fn list_passkeys(
    State(app): State<AppState>,
    AccountAuth(auth): AccountAuth,
) -> Result<Json<PasskeyList>, ApiError> {
    let passkeys = app.service.passkeys(&auth).await?;
    Ok(Json(PasskeyList {
        passkeys: passkeys.iter().map(passkey).collect(),
    }))
}

#[utoipa::path(delete, path = "/v1/me/passkeys/{id}", tag = "passkeys",
    security(("bearer" = []), ("access_cookie" = [])),
    params(("id" = String, Path, description = "A passkey id of the caller's")),
    responses((status = 204, description = "Removed: it logs nobody in any more"),
        (status = 401, description = "No access token, or a bad, expired or revoked one", body = ErrorBody),
        (status = 403, description = "csrf_rejected, or insufficient_scope", body = ErrorBody),
        (status = 404, description = "not_found: no such passkey of the caller's", body = ErrorBody)))]
async fn remove_passkey(
    State(app): State<AppState>,
    AccountAuth(auth): AccountAuth,
    Context(ctx): Context,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    app.service
        .remove_passkey(&auth, &PasskeyId::from(id), &ctx)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(post, path = "/v1/auth/passkey/start", tag = "passkeys", request_body = PasskeyLoginStart,
    responses((status = 200, description = "PublicKeyCredentialRequestOptions for navigator.credentials.get() (user verification required): the username's passkeys, or none listed (any discoverable passkey) without a username. A username of nobody with a passkey gets options of the same shape that no authenticator can answer.", body = PasskeyChallenge),
        (status = 400, description = "Malformed input", body = ErrorBody),
        (status = 403, description = "csrf_rejected: a foreign Origin", body = ErrorBody)))]
async fn passkey_login_start(
    State(app): State<AppState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<PasskeyLoginStart>,
) -> Result<Response, ApiError> {
    check_login_origin(&headers, &app)?;
    let start = app
        .service
        .start_passkey_login(body.username.as_deref())
        .await?;
    Ok(challenge(start))
}

#[utoipa::path(post, path = "/v1/auth/passkey/finish", tag = "passkeys", request_body = PasskeyLogin,
    responses((status = 200, description = "Logged in with amr [\"hwk\", \"user\"]: both cookies are set, as by a password login", body = LoginResponse),
        (status = 400, description = "invalid_request: malformed input, or a challenge that is unknown, used or expired", body = ErrorBody),
        (status = 401, description = "invalid_credentials: the passkey is unknown, not the user's, removed, of a disabled user, or its signature, user verification or counter does not hold", body = ErrorBody),
        (status = 403, description = "csrf_rejected: a foreign Origin", body = ErrorBody),
        (status = 429, description = "rate_limited: too many attempts from this address, with Retry-After", body = ErrorBody)))]
async fn passkey_login_finish(
    State(app): State<AppState>,
    headers: HeaderMap,
    Context(ctx): Context,
    JsonBody(body): JsonBody<PasskeyLogin>,
) -> Result<Response, ApiError> {
    check_login_origin(&headers, &app)?;
    let issued = app
        .service
        .finish_passkey_login(&body.challenge_id, body.credential, &ctx)
        .await?;
    Ok(issued_response(&app, &issued))
}
