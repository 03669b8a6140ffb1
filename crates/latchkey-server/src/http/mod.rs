//! The HTTP edge: routes, extractors, cookies, CSRF, CORS, body limits, and
//! the mapping of errors to statuses. Every rule about users, sessions and
//! tokens is the service's.

pub(crate) mod account;
pub(crate) mod auth;
pub mod client_ip;
pub mod cookies;
pub mod error;
mod extract;
mod feed;
pub mod listener;
pub(crate) mod meta;
pub(crate) mod mfa;
pub(crate) mod oauth;
pub mod openapi;
pub(crate) mod passkeys;
pub(crate) mod recovery;
pub mod views;

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, HttpBody as _};
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use ipnet::IpNet;
use latchkey_core::Service;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};

use self::cookies::CookieSettings;
use self::error::ApiError;
use crate::metrics::{Metrics, RequestLabels};

/// Largest request body accepted (docs/reference.md §9).
pub const MAX_BODY: usize = 64 * 1024;

/// What the HTTP layer needs beside the service.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub cookies: CookieSettings,
    pub allowed_origins: Vec<String>,
    pub trusted_proxies: Vec<IpNet>,
    pub jwks_max_age: Duration,
    /// A request body must have arrived this long after its head.
    pub body_timeout: Duration,
}

/// What every handler reads; cloned per request, so one `Arc` for all.
#[derive(Clone)]
pub struct AppState(Arc<AppParts>);

pub struct AppParts {
    pub service: Arc<Service>,
    pub http: HttpSettings,
    pub metrics: Arc<Metrics>,
    /// Turns true when the server starts stopping: long-lived answers (the
    /// revocation feed) end then, so the graceful shutdown can finish.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

impl AppState {
    pub fn new(
        service: Arc<Service>,
        http: HttpSettings,
        metrics: Arc<Metrics>,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        Self(Arc::new(AppParts {
            service,
            http,
            metrics,
            shutdown,
        }))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppParts;

    fn deref(&self) -> &AppParts {
        &self.0
    }
}

pub fn router(state: AppState) -> Router {
    let body_timeout = state.http.body_timeout;
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(
            state
                .http
                .allowed_origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok()),
        ))
        .allow_credentials(true)
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
        .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION])
        // A page on another origin can tell how long to wait, and quote
        // the request id when it reports a problem.
        .expose_headers([header::RETRY_AFTER, REQUEST_ID.clone()])
        .max_age(Duration::from_secs(600));
    Router::new()
        .merge(auth::router())
        .merge(account::router())
        .merge(meta::router())
        .merge(oauth::router())
        .merge(recovery::router())
        .merge(mfa::router())
        .merge(passkeys::router())
        .route("/openapi.json", axum::routing::get(openapi::openapi_json))
        .fallback(|| async { ApiError::RouteNotFound })
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
        .layer(middleware::from_fn(move |request, next| {
            contract_errors(body_timeout, request, next)
        }))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(cors)
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_request(())
                .on_failure(())
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
        .layer(SetRequestIdLayer::new(REQUEST_ID.clone(), MakeRequestUuid))
}

static REQUEST_ID: header::HeaderName = header::HeaderName::from_static("x-request-id");

/// One log line per request: its id, method and route pattern. Never the
/// raw URI, headers or body, where a token or a password could be.
fn request_span(request: &Request) -> tracing::Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    let request_id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let method = method_label(request.method());
    tracing::info_span!("request", request_id, method, route)
}

/// A method as a label: one of the standard ones, or `other`, so that no
/// request can add a metrics series (or a long log field) of its own.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

/// Counts and times every routed request by its route pattern.
async fn observe(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = method_label(request.method());
    let response = next.run(request).await;
    let labels = RequestLabels {
        route,
        method,
        status: response.status().as_u16(),
    };
    app.metrics.observe_request(labels, started.elapsed());
    response
}

/// The transport rules around every handler: a declared over-long body is
/// refused before anything runs; the whole body (at most 64 KiB) is read
/// within `body_timeout` of the head, else 408 and the connection closes;
/// and the answers axum makes itself (405) get the contract's JSON body.
async fn contract_errors(body_timeout: Duration, request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return ApiError::PayloadTooLarge.into_response();
    }
    let request = match read_body(body_timeout, request).await {
        Ok(request) => request,
        Err(refused) => return refused,
    };
    let response = next.run(request).await;
    if response.status() == StatusCode::METHOD_NOT_ALLOWED
        && !response.headers().contains_key(header::CONTENT_TYPE)
    {
        let allow = response.headers().get(header::ALLOW).cloned();
        let mut contract = ApiError::MethodNotAllowed.into_response();
        if let Some(allow) = allow {
            contract.headers_mut().insert(header::ALLOW, allow);
        }
        return contract;
    }
    response
}

/// The request with its whole body in memory, or the answer that refuses it.
async fn read_body(body_timeout: Duration, request: Request) -> Result<Request, Response> {
    // Nothing to wait for (a GET, a refresh): no buffer, no timer.
    if request.body().is_end_stream() {
        return Ok(request);
    }
    let (parts, body) = request.into_parts();
    let limited = http_body_util::Limited::new(body, MAX_BODY);
    let collected =
        tokio::time::timeout(body_timeout, http_body_util::BodyExt::collect(limited)).await;
    match collected {
        Ok(Ok(collected)) => Ok(Request::from_parts(parts, Body::from(collected.to_bytes()))),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            Err(ApiError::PayloadTooLarge.into_response())
        }
        Ok(Err(_)) => {
            Err(ApiError::bad_request("the request body could not be read").into_response())
        }
        Err(_) => {
            let mut response = ApiError::RequestTimeout(body_timeout).into_response();
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            Err(response)
        }
    }
}

/// `Cache-Control: no-store` and `Pragma: no-cache` for answers that carry tokens.
pub fn no_store(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}
