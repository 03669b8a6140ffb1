//! Extractors: JSON bodies with the contract's error codes, the request
//! context, and the access-token check (with CSRF for cookies).

use std::net::SocketAddr;

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRef, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use latchkey_core::service::{Authenticated, RequestContext};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::{client_ip, cookies, AppState};
use crate::config::origin_of;

/// `axum::Json`, with its rejections mapped to docs/reference.md §9.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::UnsupportedMediaType(
                "the body must be JSON (Content-Type: application/json)".into(),
            )),
            Err(JsonRejection::JsonDataError(e)) => Err(ApiError::bad_request(e.body_text())),
            Err(JsonRejection::JsonSyntaxError(e)) => Err(ApiError::bad_request(e.body_text())),
            Err(JsonRejection::BytesRejection(e))
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                Err(ApiError::PayloadTooLarge)
            }
            Err(other) => Err(ApiError::bad_request(other.body_text())),
        }
    }
}

/// Who is calling: client address and User-Agent.
pub struct Context(pub RequestContext);

impl<S: Send + Sync> FromRequestParts<S> for Context
where
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let app = AppState::from_ref(state);
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(peer)| peer.ip())
            .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
        let ip = client_ip::client_ip(peer, &parts.headers, &app.http.trusted_proxies);
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(512).collect());
        Ok(Self(RequestContext {
            ip: ip.to_string(),
            user_agent,
        }))
    }
}

/// Where an access token came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    Header,
    Cookie,
}

/// The bearer token of the `Authorization` header, if it uses that scheme.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The access token of a request: the header wins over the cookie.
pub fn access_token(headers: &HeaderMap, app: &AppState) -> Option<(String, TokenSource)> {
    if let Some(token) = bearer(headers) {
        return Some((token.to_owned(), TokenSource::Header));
    }
    cookies::read(headers, &app.http.cookies.access_name).map(|t| (t, TokenSource::Cookie))
}

/// Whether an `Origin` (or `Referer`) value names an allowed origin.
fn origin_allowed(app: &AppState, named: Option<&HeaderValue>) -> bool {
    named
        .and_then(|v| v.to_str().ok())
        .and_then(origin_of)
        .is_some_and(|origin| app.http.allowed_origins.contains(&origin))
}

/// The CSRF rule: a cookie-authenticated request that is not GET or HEAD
/// must come from an allowed origin (`Origin`, or without it `Referer`).
pub fn check_csrf(method: &Method, headers: &HeaderMap, app: &AppState) -> Result<(), ApiError> {
    if method == Method::GET || method == Method::HEAD {
        return Ok(());
    }
    let named = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER));
    if origin_allowed(app, named) {
        Ok(())
    } else {
        Err(ApiError::CsrfRejected)
    }
}

/// Login CSRF: a login posted by a browser from a foreign site carries that
/// site's `Origin` and is refused; one without `Origin` is no browser's
/// cross-site form (a script, an app) and goes on.
pub fn check_login_origin(headers: &HeaderMap, app: &AppState) -> Result<(), ApiError> {
    match headers.get(header::ORIGIN) {
        Some(origin) if !origin_allowed(app, Some(origin)) => Err(ApiError::CsrfRejected),
        _ => Ok(()),
    }
}

/// A caller with a valid access token whose session is live.
pub struct Auth(pub Authenticated);

impl<S: Send + Sync> FromRequestParts<S> for Auth
where
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let app = AppState::from_ref(state);
        let (token, source) = access_token(&parts.headers, &app).ok_or(ApiError::MissingToken)?;
        if source == TokenSource::Cookie {
            check_csrf(&parts.method, &parts.headers, &app)?;
        }
        Ok(Self(app.service.authenticate(&token).await?))
    }
}

/// A caller allowed to manage the account: sessions, logout everywhere, the
/// password (docs/reference.md §4.7).
pub struct AccountAuth(pub Authenticated);

impl<S: Send + Sync> FromRequestParts<S> for AccountAuth
where
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Auth(auth) = Auth::from_request_parts(parts, state).await?;
        auth.require_account_access()?;
        Ok(Self(auth))
    }
}
