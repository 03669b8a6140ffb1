//! `/v1/auth/*`: register, login, refresh, logout, logout-all.

use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use latchkey_core::service::Issued;
use latchkey_proto::{Credentials, LoginResponse, RegisterResponse};

use super::error::ApiError;
use super::extract::{access_token, bearer, check_csrf, Context, JsonBody, TokenSource};
use super::{cookies, no_store, views, AppState};
use crate::config::origin_of;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/auth/register", post(register))
        .route("/v1/auth/login", post(login))
        .route("/v1/auth/refresh", post(refresh))
        .route("/v1/auth/logout", post(logout))
        .route("/v1/auth/logout-all", post(logout_all))
}

async fn register(
    State(app): State<AppState>,
    Context(ctx): Context,
    JsonBody(body): JsonBody<Credentials>,
) -> Result<Response, ApiError> {
    let user = app
        .service
        .register(&body.username, &body.password, &ctx)
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
fn issued_response(app: &AppState, issued: &Issued) -> Response {
    let body = LoginResponse {
        access_token: issued.access_token.clone(),
        token_type: "Bearer".into(),
        expires_in: issued.expires_in.as_secs(),
        session_id: issued.session.id.clone(),
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

async fn login(
    State(app): State<AppState>,
    headers: HeaderMap,
    Context(ctx): Context,
    JsonBody(body): JsonBody<Credentials>,
) -> Result<Response, ApiError> {
    // A browser posting a login form from a foreign site (login CSRF).
    if let Some(origin) = headers.get(header::ORIGIN) {
        let allowed = origin
            .to_str()
            .ok()
            .and_then(origin_of)
            .is_some_and(|o| app.http.allowed_origins.contains(&o));
        if !allowed {
            return Err(ApiError::CsrfRejected);
        }
    }
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

async fn refresh(
    State(app): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Context(ctx): Context,
) -> Response {
    let result = async {
        let token =
            cookies::read(&headers, &app.http.cookies.refresh_name).ok_or(ApiError::Service(
                latchkey_core::ServiceError::InvalidToken("no refresh cookie"),
            ))?;
        check_csrf(&method, &headers, &app)?;
        Ok::<_, ApiError>(app.service.refresh(&token, &ctx).await?)
    }
    .await;
    match result {
        Ok(issued) => issued_response(&app, &issued),
        // A refresh that fails for its token leaves the browser with nothing stale.
        Err(e @ ApiError::Service(latchkey_core::ServiceError::InvalidToken(_))) => {
            cleared(&app, e.into_response())
        }
        Err(e) => e.into_response(),
    }
}

async fn logout(
    State(app): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Context(ctx): Context,
) -> Result<Response, ApiError> {
    let service = &app.service;
    if let Some(token) = bearer(&headers) {
        let auth = service.authenticate(token).await?;
        service
            .logout(&auth.session.id, &auth.user.id, &ctx)
            .await?;
    } else if let Some(refresh) = cookies::read(&headers, &app.http.cookies.refresh_name) {
        check_csrf(&method, &headers, &app)?;
        service.logout_with_refresh_token(&refresh, &ctx).await?;
    } else if let Some((token, TokenSource::Cookie)) = access_token(&headers, &app) {
        check_csrf(&method, &headers, &app)?;
        let auth = service.authenticate(&token).await?;
        service
            .logout(&auth.session.id, &auth.user.id, &ctx)
            .await?;
    } else {
        return Err(ApiError::MissingToken);
    }
    Ok(cleared(&app, StatusCode::NO_CONTENT.into_response()))
}

async fn logout_all(
    State(app): State<AppState>,
    super::extract::Auth(auth): super::extract::Auth,
    Context(ctx): Context,
) -> Result<Response, ApiError> {
    app.service.logout_all(&auth.user.id, &ctx).await?;
    Ok(cleared(&app, StatusCode::NO_CONTENT.into_response()))
}
