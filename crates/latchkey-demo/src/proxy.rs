//! The reverse proxy to latchkey: `/v1/*` and `/.well-known/*` go through
//! unchanged, so that the page, its API and the auth endpoints share one
//! origin and latchkey's cookies are first-party.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header::{
    ACCEPT, ALLOW, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, COOKIE, ORIGIN, REFERER,
    RETRY_AFTER, SET_COOKIE, USER_AGENT, WWW_AUTHENTICATE,
};
use axum::http::{HeaderMap, HeaderName, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::AppState;

/// Request headers passed on to latchkey.
const REQUEST_HEADERS: [HeaderName; 7] = [
    COOKIE,
    CONTENT_TYPE,
    ORIGIN,
    REFERER,
    USER_AGENT,
    AUTHORIZATION,
    ACCEPT,
];

/// Response headers passed back to the browser.
const RESPONSE_HEADERS: [HeaderName; 6] = [
    SET_COOKIE,
    CONTENT_TYPE,
    CACHE_CONTROL,
    WWW_AUTHENTICATE,
    RETRY_AFTER,
    ALLOW,
];

/// Forwards one request to latchkey and its answer back.
pub(crate) async fn forward(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned());
    let mut request = state
        .client
        .request(method.clone(), format!("{}{path}", state.latchkey_url))
        .body(body);
    for name in &REQUEST_HEADERS {
        for value in headers.get_all(name) {
            request = request.header(name, value.clone());
        }
    }
    let answer = match request.send().await {
        Ok(answer) => answer,
        Err(_) => {
            return (
                StatusCode::BAD_GATEWAY,
                Json(json!({
                    "error": "unavailable",
                    "error_description": "latchkey cannot be reached",
                })),
            )
                .into_response()
        }
    };
    let status = answer.status();
    let mut out = HeaderMap::new();
    for name in &RESPONSE_HEADERS {
        for value in answer.headers().get_all(name) {
            out.append(name, value.clone());
        }
    }
    let bytes = match answer.bytes().await {
        Ok(bytes) => bytes,
        Err(_) => return StatusCode::BAD_GATEWAY.into_response(),
    };
    if status == StatusCode::OK {
        learn_name(&state, &method, uri.path(), &bytes);
    }
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    *response.headers_mut() = out;
    response
}

/// Remembers the username of a login (either step), refresh or `/v1/me`
/// answer, so that comments can name their author (tokens carry only the
/// user id).
fn learn_name(state: &AppState, method: &Method, path: &str, body: &[u8]) {
    let user = match (method, path) {
        (&Method::POST, "/v1/auth/login" | "/v1/auth/mfa" | "/v1/auth/refresh") => "/user",
        (&Method::GET, "/v1/me") => "",
        _ => return,
    };
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let Some(user) = value.pointer(user) else {
        return;
    };
    if let (Some(id), Some(username)) = (
        user.get("id").and_then(Value::as_str),
        user.get("username").and_then(Value::as_str),
    ) {
        state.names.remember(id, username);
    }
}
