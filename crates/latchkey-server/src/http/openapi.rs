//! The OpenAPI 3.1 document of every route, generated from the handlers'
//! annotations and the wire types (`GET /openapi.json`).

use axum::Json;
use latchkey_proto::{
    Credentials, EmailChange, EmailVerification, ErrorBody, Health, Introspection, JwkSet,
    LoginResponse, Me, MfaLogin, MfaRequired, MfaRequiredError, MfaStatus, Passkey,
    PasskeyChallenge, PasskeyCreated, PasskeyList, PasskeyLogin, PasskeyLoginStart,
    PasskeyRegistration, PasswordChange, PasswordResetConfirm, PasswordResetRequest, PublicJwk,
    RecoveryCodes, RegisterResponse, Registration, ServerMetadata, Session, SessionList,
    TokenResponse, TotpConfirmation, TotpEnrolment, TotpRemoval, User,
};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::auth::LoginOrMfa;
use super::oauth::{IntrospectionRequest, RevocationRequest, TokenRequest};
use crate::http;

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
    info(title = "latchkey", description = "Log in once, stay logged in safely. What this document cannot say (cookies, CSRF, rotation, errors, limits) is in docs/reference.md."),
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
        http::recovery::request_reset,
        http::recovery::confirm_reset,
        http::recovery::change_email,
        http::recovery::verify_email,
        http::mfa::start_totp,
        http::mfa::confirm_totp,
        http::mfa::remove_totp,
        http::mfa::second_step,
        http::passkeys::passkey_register_start,
        http::passkeys::passkey_register_finish,
        http::passkeys::list_passkeys,
        http::passkeys::remove_passkey,
        http::passkeys::passkey_login_start,
        http::passkeys::passkey_login_finish,
        http::oauth::token,
        http::oauth::revoke,
        http::oauth::introspect,
        http::oauth::revocations,
        http::oauth::metadata,
        http::meta::jwks,
        http::meta::healthz,
        http::meta::readyz,
        http::meta::metrics,
        openapi_json,
    ),
    components(schemas(
        Credentials, ErrorBody, Health, Introspection, JwkSet, LoginResponse, PasswordChange,
        PublicJwk, RegisterResponse, ServerMetadata, Session, SessionList, TokenResponse, User,
        TokenRequest, RevocationRequest, IntrospectionRequest, Me, Registration, EmailChange,
        EmailVerification, PasswordResetRequest, PasswordResetConfirm, MfaStatus, TotpEnrolment,
        TotpConfirmation, RecoveryCodes, TotpRemoval, MfaRequired, MfaLogin, MfaRequiredError,
        LoginOrMfa,
        EmailVerification, PasswordResetRequest, PasswordResetConfirm, PasskeyChallenge,
        PasskeyRegistration, PasskeyCreated, Passkey, PasskeyList, PasskeyLoginStart, PasskeyLogin,
    )),
    modifiers(&SecuritySchemes),
)]
pub struct ApiDoc;

#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "This document (OpenAPI 3.1)", body = Object)))]
pub(crate) async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
