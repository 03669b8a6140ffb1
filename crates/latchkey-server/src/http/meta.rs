//! Keys and health: `/.well-known/jwks.json`, `/healthz`, `/readyz`.

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use latchkey_proto::{ErrorBody, Health, JwkSet};

use super::error::ApiError;
use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/.well-known/jwks.json", get(jwks))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "keys",
    responses((status = 200, description = "Every public key that may verify a live token, and the one waiting to sign; with Cache-Control max-age", body = JwkSet)))]
async fn jwks(State(app): State<AppState>) -> Response {
    let mut response = Json(JwkSet {
        keys: app.service.jwks(),
    })
    .into_response();
    let cache = format!("public, max-age={}", app.http.jwks_max_age.as_secs());
    if let Ok(value) = HeaderValue::from_str(&cache) {
        response.headers_mut().insert(header::CACHE_CONTROL, value);
    }
    response
}

#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Health), (status = 503, description = "The store does not answer", body = ErrorBody)))]
async fn readyz(State(app): State<AppState>) -> Result<Json<Health>, ApiError> {
    app.service.ready().await?;
    Ok(Json(Health {
        status: "ok".into(),
    }))
}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus (OpenMetrics) text", content_type = "application/openmetrics-text", body = String)))]
async fn metrics(State(app): State<AppState>) -> Response {
    // The last background count: a scrape costs the same however many
    // sessions there are, and answers when the store is down.
    let live = app.service.live_sessions_counted();
    let body = app.metrics.render(live, app.service.password_queue_depth());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}
