//! `/v1/auth/*`: register, login, refresh, logout, logout-all.

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use latchkey_core::service::Issued;
use latchkey_proto::{Credentials, ErrorBody, LoginResponse, RegisterResponse, Registration};

use super::error::ApiError;
use super::extract::{
    access_token, bearer, check_csrf, check_login_origin, Context, JsonBody, TokenSource,
};
use super::{cookies, no_store, views, AppState};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/auth/register", post(register))
        .route("/v1/auth/login", post(login))
        .route("/v1/auth/refresh", post(refresh))
        .route("/v1/auth/logout", post(logout))
        .route("/v1/auth/logout-all", post(logout_all))
}

#[utoipa::path(post, path = "/v1/auth/register", tag = "session", request_body = Registration,
    responses((status = 201, body = RegisterResponse), (status = 400, description = "Malformed input", body = ErrorBody),
        (status = 403, description = "registration_closed", body = ErrorBody),
        (status = 409, description = "username_taken", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody)))]
async fn register(
    State(app): State<AppState>,
    Context(ctx): Context,
    JsonBody(body): JsonBody<Registration>,
) -> Result<Response, ApiError> {
    let user = app
        .service
        .register(&body.username, &body.password, body.email.as_deref(), &ctx)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(RegisterResponse {
            user: views::user(&user),
        }),
    )
        .into_response())
}

/// A pair as the browser gets it: access token in the body and a cookie,
/// refresh token in its cookie only.
pub(super) fn issued_response(app: &AppState, issued: &Issued) -> Response {
    let body = LoginResponse {
        access_token: issued.access_token.clone(),
        token_type: "Bearer".into(),
        expires_in: issued.expires_in.as_secs(),
        session_id: issued.session.id.as_str().to_owned(),
        user: views::user(&issued.user),
    };
    let mut response = Json(body).into_response();
    app.http.cookies.set_pair(
        response.headers_mut(),
        &issued.access_token,
        issued.expires_in,
        &issued.refresh_token,
        issued.refresh_lifetime,
    );
    no_store(&mut response);
    response
}

#[utoipa::path(post, path = "/v1/auth/login", tag = "session", request_body = Credentials,
    responses((status = 200, description = "Both cookies are set; the refresh token is only in its cookie", body = LoginResponse),
        (status = 400, description = "Malformed input", body = ErrorBody),
        (status = 401, description = "invalid_credentials", body = ErrorBody),
        (status = 403, description = "csrf_rejected: a foreign Origin", body = ErrorBody),
        (status = 429, description = "rate_limited, with Retry-After", body = ErrorBody),
        (status = 503, description = "unavailable: the hashing queue is full, with Retry-After", body = ErrorBody)))]
async fn login(
    State(app): State<AppState>,
    headers: HeaderMap,
    Context(ctx): Context,
    JsonBody(body): JsonBody<Credentials>,
) -> Result<Response, ApiError> {
    check_login_origin(&headers, &app)?;
    let issued = app
        .service
        .login(&body.username, &body.password, &ctx)
        .await?;
    Ok(issued_response(&app, &issued))
}

fn cleared(app: &AppState, mut response: Response) -> Response {
    app.http.cookies.clear_pair(response.headers_mut());
    response
}

#[utoipa::path(post, path = "/v1/auth/refresh", tag = "session",
    security(("refresh_cookie" = [])),
    responses((status = 200, description = "A new pair; both cookies are set", body = LoginResponse),
        (status = 401, description = "invalid_token; both cookies are cleared when a refresh cookie was presented", body = ErrorBody),
        (status = 403, description = "csrf_rejected", body = ErrorBody)))]
async fn refresh(
    State(app): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Context(ctx): Context,
) -> Response {
    // Without a refresh cookie there is nothing of ours to clear: answering
    // with cleared cookies would let any page log the user out (or a
    // sibling domain's tossed duplicate do it).
    let Some(token) = cookies::read(&headers, &app.http.cookies.refresh_name) else {
        return ApiError::Service(latchkey_core::ServiceError::InvalidToken(
            "no refresh cookie",
        ))
        .into_response();
    };
    if let Err(e) = check_csrf(&method, &headers, &app) {
        return e.into_response();
    }
    match app.service.refresh(&token, &ctx).await {
        Ok(issued) => issued_response(&app, &issued),
        // A refresh that fails for its token leaves the browser with nothing stale.
        Err(e @ latchkey_core::ServiceError::InvalidToken(_)) => {
            cleared(&app, ApiError::from(e).into_response())
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

#[utoipa::path(post, path = "/v1/auth/logout", tag = "session",
    security(("bearer" = []), ("refresh_cookie" = []), ("access_cookie" = [])),
    responses((status = 204, description = "This session is revoked; both cookies are cleared"),
        (status = 401, description = "No access token, or a bad, expired or revoked one", body = ErrorBody), (status = 403, description = "csrf_rejected", body = ErrorBody)))]
async fn logout(
    State(app): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Context(ctx): Context,
) -> Result<Response, ApiError> {
    let service = &app.service;
    if let Some(token) = bearer(&headers) {
        let auth = service.authenticate(token).await?;
        service.logout(&auth, &ctx).await?;
    } else if let Some(refresh) = cookies::read(&headers, &app.http.cookies.refresh_name) {
        check_csrf(&method, &headers, &app)?;
        service.logout_with_refresh_token(&refresh, &ctx).await?;
    } else if let Some((token, TokenSource::Cookie)) = access_token(&headers, &app) {
        check_csrf(&method, &headers, &app)?;
        let auth = service.authenticate(&token).await?;
        service.logout(&auth, &ctx).await?;
    } else {
        return Err(ApiError::MissingToken);
    }
    Ok(cleared(&app, StatusCode::NO_CONTENT.into_response()))
}

#[utoipa::path(post, path = "/v1/auth/logout-all", tag = "session",
    security(("bearer" = []), ("access_cookie" = [])),
    responses((status = 204, description = "Every session of the user is revoked; both cookies are cleared"),
        (status = 401, description = "No access token, or a bad, expired or revoked one", body = ErrorBody), (status = 403, description = "csrf_rejected, or insufficient_scope: a third-party token without the account scope", body = ErrorBody)))]
async fn logout_all(
    State(app): State<AppState>,
    super::extract::AccountAuth(auth): super::extract::AccountAuth,
    Context(ctx): Context,
) -> Result<Response, ApiError> {
    app.service.logout_all(&auth, &ctx).await?;
    Ok(cleared(&app, StatusCode::NO_CONTENT.into_response()))
}
