//! The OAuth 2.0 endpoints: token (RFC 6749), revocation (RFC 7009),
//! introspection (RFC 7662) and the authorization server's metadata
//! (RFC 8414). A second door into the same service as `/v1`.

use std::collections::HashSet;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use latchkey_core::service::{ClientAuth, LoginOutcome};
use latchkey_core::ServiceError;
use latchkey_proto::{ErrorBody, Introspection, MfaRequiredError, ServerMetadata, TokenResponse};

use utoipa::ToSchema;

use super::error::ApiError;
use super::extract::Context;
use super::{no_store, AppState};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/oauth2/token", post(token))
        .route("/oauth2/revoke", post(revoke))
        .route("/oauth2/introspect", post(introspect))
        .route(
            "/oauth2/revocations",
            get(revocations).post(revocations_post),
        )
        .route("/.well-known/oauth-authorization-server", get(metadata))
}

/// The grant that finishes a password grant whose user has TOTP on.
pub const MFA_GRANT: &str = "urn:latchkey:params:oauth:grant-type:mfa";

/// The form of `POST /oauth2/token` (RFC 6749 §4.3, §6, §4.4). Documentation only.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct TokenRequest {
    /// `password`, `refresh_token`, `client_credentials` or
    /// `urn:latchkey:params:oauth:grant-type:mfa`.
    grant_type: String,
    username: Option<String>,
    password: Option<String>,
    refresh_token: Option<String>,
    /// The mfa grant: the token of the password grant's 403 `mfa_required`.
    mfa_token: Option<String>,
    /// The mfa grant: a TOTP code (or `recovery_code` instead).
    code: Option<String>,
    recovery_code: Option<String>,
    /// Space-separated; within the client's scopes.
    scope: Option<String>,
    /// A public client's id, or a confidential one's with `client_secret_post`.
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// The form of `POST /oauth2/revoke` (RFC 7009). Documentation only.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct RevocationRequest {
    token: String,
    token_type_hint: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// The form of `POST /oauth2/introspect` (RFC 7662). Documentation only.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct IntrospectionRequest {
    token: String,
    token_type_hint: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// Most parameters a form may carry (docs/reference.md §10).
pub const MAX_FORM_PARAMS: usize = 100;

/// A form body whose parameters each appear at most once (RFC 6749 §3.2),
/// at most [`MAX_FORM_PARAMS`] of them, parsed in time linear in the body.
pub struct Params(Vec<(String, String)>);

impl Params {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    fn required(&self, name: &'static str) -> Result<&str, ApiError> {
        self.get(name)
            .ok_or_else(|| ApiError::bad_request(format!("the {name} parameter is required")))
    }

    /// Parses `application/x-www-form-urlencoded` bytes.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let mut pairs = Vec::new();
        let mut seen = HashSet::new();
        for (name, value) in form_urlencoded::parse(body) {
            if pairs.len() == MAX_FORM_PARAMS {
                return Err(ApiError::bad_request(format!(
                    "a form may carry at most {MAX_FORM_PARAMS} parameters"
                )));
            }
            if !seen.insert(name.clone()) {
                return Err(ApiError::bad_request(format!(
                    "the {name} parameter appears twice"
                )));
            }
            pairs.push((name.into_owned(), value.into_owned()));
        }
        Ok(Self(pairs))
    }
}

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let form_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| {
                v.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
        if !form_type {
            return Err(ApiError::UnsupportedMediaType(
                "the body must be application/x-www-form-urlencoded".into(),
            ));
        }
        let body = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::bad_request(e.body_text())
            }
        })?;
        Self::parse(&body)
    }
}

/// The client's credentials from HTTP Basic or the body
/// (`client_secret_post`), never both.
fn client_credentials(
    headers: &HeaderMap,
    params: &Params,
) -> Result<(Option<String>, Option<String>), ApiError> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .map(|(_, creds)| creds.trim());
    let from_body = (params.get("client_id"), params.get("client_secret"));
    match basic {
        Some(encoded) => {
            if from_body.1.is_some() {
                return Err(ApiError::bad_request(
                    "use one client authentication method, not two",
                ));
            }
            let invalid = || {
                ApiError::Service(ServiceError::InvalidClient(
                    "malformed HTTP Basic credentials",
                ))
            };
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|_| invalid())?;
            let decoded = String::from_utf8(decoded).map_err(|_| invalid())?;
            let (id, secret) = decoded.split_once(':').ok_or_else(invalid)?;
            // RFC 6749 §2.3.1: both are form-urlencoded before Basic encoding.
            let unescape = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8()
                    .map(|c| c.into_owned())
                    .map_err(|_| invalid())
            };
            let (id, secret) = (unescape(id)?, unescape(secret)?);
            if from_body.0.is_some_and(|body_id| body_id != id) {
                return Err(ApiError::bad_request(
                    "client_id differs from the Basic credentials",
                ));
            }
            Ok((Some(id), Some(secret).filter(|s| !s.is_empty())))
        }
        None => Ok((
            from_body.0.map(str::to_owned),
            from_body.1.map(str::to_owned),
        )),
    }
}

async fn client(
    app: &AppState,
    headers: &HeaderMap,
    params: &Params,
) -> Result<ClientAuth, ApiError> {
    let (id, secret) = client_credentials(headers, params)?;
    Ok(app
        .service
        .authenticate_client(id.as_deref(), secret.as_deref())
        .await?)
}

fn oauth(e: ServiceError) -> ApiError {
    ApiError::Service(e.into_oauth())
}

fn uncached(mut response: Response) -> Response {
    no_store(&mut response);
    response
}

#[utoipa::path(post, path = "/oauth2/token", tag = "oauth2",
    request_body(content = TokenRequest, content_type = "application/x-www-form-urlencoded"),
    security((), ("client_basic" = [])),
    responses((status = 200, description = "With Cache-Control: no-store", body = TokenResponse),
        (status = 400, description = "invalid_request, invalid_grant, invalid_scope, unauthorized_client or unsupported_grant_type", body = ErrorBody),
        (status = 401, description = "invalid_client, with WWW-Authenticate: Basic", body = ErrorBody),
        (status = 403, description = "mfa_required: the password was right and the user has TOTP on; finish with the mfa grant and this mfa_token", body = MfaRequiredError),
        (status = 415, description = "Not form-encoded", body = ErrorBody),
        (status = 429, description = "rate_limited", body = ErrorBody)))]
async fn token(
    State(app): State<AppState>,
    headers: HeaderMap,
    Context(ctx): Context,
    params: Result<Params, ApiError>,
) -> Response {
    let result = async {
        let params = params?;
        let client = client(&app, &headers, &params).await?;
        let scope = params.get("scope");
        let service = &app.service;
        let body = match params.required("grant_type")? {
            "password" => {
                let (username, password) =
                    (params.required("username")?, params.required("password")?);
                match service
                    .password_grant(&client, username, password, scope, &ctx)
                    .await
                    .map_err(oauth)?
                {
                    LoginOutcome::Session(issued) => pair_response(*issued),
                    LoginOutcome::MfaRequired(challenge) => {
                        return Err(ApiError::MfaRequired {
                            mfa_token: challenge.mfa_token,
                        })
                    }
                }
            }
            MFA_GRANT => {
                let mfa_token = params.required("mfa_token")?;
                let factor = super::mfa::factor(params.get("code"), params.get("recovery_code"))?;
                let issued = service
                    .mfa_grant(&client, mfa_token, factor, &ctx)
                    .await
                    .map_err(oauth)?;
                pair_response(issued)
            }
            "refresh_token" => {
                let token = params.required("refresh_token")?;
                let issued = service
                    .refresh_grant(&client, token, scope, &ctx)
                    .await
                    .map_err(oauth)?;
                pair_response(issued)
            }
            "client_credentials" => {
                let (access_token, ttl, scope) = service
                    .client_credentials_grant(&client, scope)
                    .await
                    .map_err(oauth)?;
                TokenResponse {
                    access_token,
                    token_type: "Bearer".into(),
                    expires_in: ttl.as_secs(),
                    refresh_token: None,
                    scope,
                }
            }
            _ => return Err(ApiError::Service(ServiceError::UnsupportedGrantType)),
        };
        Ok::<_, ApiError>(Json(body).into_response())
    }
    .await;
    uncached(result.unwrap_or_else(IntoResponse::into_response))
}

#[utoipa::path(post, path = "/oauth2/revoke", tag = "oauth2",
    request_body(content = RevocationRequest, content_type = "application/x-www-form-urlencoded"),
    security((), ("client_basic" = [])),
    responses((status = 200, description = "Revoked, or unknown: a refresh or an access token revokes its session"),
        (status = 400, description = "invalid_request, or unauthorized_client: a token of another client", body = ErrorBody),
        (status = 401, description = "invalid_client", body = ErrorBody)))]
async fn revoke(
    State(app): State<AppState>,
    headers: HeaderMap,
    Context(ctx): Context,
    params: Result<Params, ApiError>,
) -> Result<Response, ApiError> {
    let params = params?;
    let client = client(&app, &headers, &params).await?;
    let token = params.required("token")?;
    app.service
        .revoke_token(&client, token, &ctx)
        .await
        .map_err(oauth)?;
    Ok(uncached(StatusCode::OK.into_response()))
}

#[utoipa::path(post, path = "/oauth2/introspect", tag = "oauth2",
    request_body(content = IntrospectionRequest, content_type = "application/x-www-form-urlencoded"),
    security(("client_basic" = [])),
    responses((status = 200, body = Introspection),
        (status = 400, description = "invalid_request", body = ErrorBody),
        (status = 401, description = "invalid_client: introspection is for confidential clients", body = ErrorBody)))]
async fn introspect(
    State(app): State<AppState>,
    headers: HeaderMap,
    params: Result<Params, ApiError>,
) -> Result<Response, ApiError> {
    let params = params?;
    let client = client(&app, &headers, &params).await?;
    if !client.confidential {
        return Err(ApiError::Service(ServiceError::InvalidClient(
            "introspection is for confidential clients",
        )));
    }
    let token = params.required("token")?;
    let answer = app.service.introspect(token).await?;
    Ok(uncached(Json(answer).into_response()))
}

#[utoipa::path(get, path = "/oauth2/revocations", tag = "oauth2",
    security(("client_basic" = [])),
    params(("Last-Event-ID" = Option<String>, Header,
        description = "Resume after this event (the `id` of the last event seen)")),
    responses((status = 200, content_type = "text/event-stream",
            description = "Server-Sent Events: `revoked` {sid, until} and `key_purged` {kid} \
                events with an `id`, the snapshot first, then `ready`, then live events; a \
                comment line at least every 15 s"),
        (status = 401, description = "invalid_client: the feed is for confidential clients", body = ErrorBody)))]
async fn revocations(
    State(app): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    // A GET has no form: HTTP Basic only.
    revocation_feed(app, &headers, &Params::parse(b"")?).await
}

/// The feed by `POST`, for a client that sends its credentials in the form
/// (`client_secret_post`).
async fn revocations_post(
    State(app): State<AppState>,
    headers: HeaderMap,
    params: Result<Params, ApiError>,
) -> Result<Response, ApiError> {
    revocation_feed(app, &headers, &params?).await
}

async fn revocation_feed(
    app: AppState,
    headers: &HeaderMap,
    params: &Params,
) -> Result<Response, ApiError> {
    let client = client(&app, headers, params).await?;
    if !client.confidential {
        return Err(ApiError::Service(ServiceError::InvalidClient(
            "the revocation feed is for confidential clients",
        )));
    }
    let last_event_id = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    let subscription = app.service.subscribe_revocations(last_event_id).await?;
    Ok(super::feed::response(app, subscription))
}

#[utoipa::path(get, path = "/.well-known/oauth-authorization-server", tag = "oauth2",
    responses((status = 200, body = ServerMetadata)))]
async fn metadata(State(app): State<AppState>) -> Json<ServerMetadata> {
    let policy = app.service.policy();
    let issuer = &policy.issuer;
    let names = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    Json(ServerMetadata {
        issuer: issuer.clone(),
        token_endpoint: format!("{issuer}/oauth2/token"),
        revocation_endpoint: format!("{issuer}/oauth2/revoke"),
        introspection_endpoint: format!("{issuer}/oauth2/introspect"),
        revocation_feed_endpoint: format!("{issuer}/oauth2/revocations"),
        jwks_uri: format!("{issuer}/.well-known/jwks.json"),
        grant_types_supported: names(&[
            "password",
            "refresh_token",
            "client_credentials",
            MFA_GRANT,
        ]),
        response_types_supported: Vec::new(),
        token_endpoint_auth_methods_supported: names(&[
            "client_secret_basic",
            "client_secret_post",
            "none",
        ]),
        revocation_endpoint_auth_methods_supported: names(&[
            "client_secret_basic",
            "client_secret_post",
            "none",
        ]),
        introspection_endpoint_auth_methods_supported: names(&[
            "client_secret_basic",
            "client_secret_post",
        ]),
        access_token_signing_alg_values_supported: names(&[policy.signing_alg.as_str()]),
    })
}

fn pair_response(issued: latchkey_core::service::Issued) -> TokenResponse {
    TokenResponse {
        access_token: issued.access_token,
        token_type: "Bearer".into(),
        expires_in: issued.expires_in.as_secs(),
        refresh_token: Some(issued.refresh_token),
        scope: issued.session.scope,
    }
}
