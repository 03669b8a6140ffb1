//! The OpenAPI 3.1 document of every route, generated from the handlers'
//! annotations and the wire types (`GET /openapi.json`).

use latchkey_proto::{
    Credentials, ErrorBody, Health, Introspection, JwkSet, LoginResponse, PasswordChange,
    PublicJwk, RegisterResponse, ServerMetadata, Session, SessionList, TokenResponse, User,
};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::http;

/// The form of `POST /oauth2/token` (RFC 6749 §4.3, §6, §4.4). Documentation only.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct TokenRequest {
    /// `password`, `refresh_token` or `client_credentials`.
    grant_type: String,
    username: Option<String>,
    password: Option<String>,
    refresh_token: Option<String>,
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

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "access_cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new("accessToken"))),
        );
        components.add_security_scheme(
            "refresh_cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new("refreshToken"))),
        );
        components.add_security_scheme(
            "client_basic",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "latchkey", description = "Log in once, stay logged in safely: the HTTP contract of API.md."),
    paths(
        http::auth::register,
        http::auth::login,
        http::auth::refresh,
        http::auth::logout,
        http::auth::logout_all,
        http::account::me,
        http::account::change_password,
        http::account::list_sessions,
        http::account::revoke_session,
        http::oauth::token,
        http::oauth::revoke,
        http::oauth::introspect,
        http::oauth::metadata,
        http::meta::jwks,
        http::meta::healthz,
        http::meta::readyz,
        http::meta::metrics,
        http::meta::openapi_json,
    ),
    components(schemas(
        Credentials, ErrorBody, Health, Introspection, JwkSet, LoginResponse, PasswordChange,
        PublicJwk, RegisterResponse, ServerMetadata, Session, SessionList, TokenResponse, User,
        TokenRequest, RevocationRequest, IntrospectionRequest,
    )),
    modifiers(&SecuritySchemes),
)]
pub struct ApiDoc;
