//! Wire types of latchkey: what crosses HTTP, shared by the server, its tests
//! and the clients that want typed bodies.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A user as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct User {
    pub id: String,
    pub username: String,
    /// RFC 3339, UTC.
    pub created_at: String,
}

/// `GET /v1/me` answer: the user, with their email address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Me {
    pub id: String,
    pub username: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// The account's address, null when none was given.
    pub email: Option<String>,
    /// Whether that address was confirmed by its mailed token.
    pub email_verified: bool,
    /// The second factors the account has.
    pub mfa: MfaStatus,
}

/// The second factors of an account, as `GET /v1/me` shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MfaStatus {
    /// TOTP is on: a password login asks for a code.
    pub totp: bool,
    /// Passkeys registered.
    pub passkeys: u64,
}

/// `POST /v1/me/totp` answer: a new secret, waiting for its first code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TotpEnrolment {
    /// The secret, base32 without padding, for typing into an app.
    pub secret: String,
    /// `otpauth://totp/ISSUER:USERNAME?secret=...&issuer=ISSUER`, for a QR code.
    pub otpauth_uri: String,
}

/// `POST /v1/me/totp/confirm` body: the app's current code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TotpConfirmation {
    pub code: String,
}

/// `POST /v1/me/totp/confirm` answer, shown this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RecoveryCodes {
    /// Ten codes, each good once in place of a TOTP code.
    pub recovery_codes: Vec<String>,
}

/// `DELETE /v1/me/totp` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TotpRemoval {
    pub current_password: String,
}

/// `POST /v1/auth/login` answer when the user has TOTP on: no cookie yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MfaRequired {
    /// Always true.
    pub mfa_required: bool,
    /// For `POST /v1/auth/mfa`, within 5 minutes.
    pub mfa_token: String,
    /// `["totp", "recovery_code"]`.
    pub methods: Vec<String>,
}

/// `POST /v1/auth/mfa` body: the `mfa_token` and exactly one of `code`
/// (TOTP) or `recovery_code`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MfaLogin {
    pub mfa_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_code: Option<String>,
}

/// The token endpoint's 403 for a password grant whose user has TOTP on:
/// an error body with the `mfa_token` for the grant
/// `urn:latchkey:params:oauth:grant-type:mfa`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MfaRequiredError {
    /// `mfa_required`.
    pub error: String,
    pub error_description: String,
    pub mfa_token: String,
}

/// `POST /v1/auth/register` body: a login's credentials and, optionally,
/// an email address (unverified until its mailed token is used).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    pub username: String,
    pub password: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// `PUT /v1/me/email` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailChange {
    pub email: String,
    pub current_password: String,
}

/// `POST /v1/me/email/verify` body: the token mailed to the address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailVerification {
    pub token: String,
}

/// `POST /v1/auth/password-reset` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordResetRequest {
    /// A username, or a verified email address.
    pub login: String,
}

/// `POST /v1/auth/password-reset/confirm` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordResetConfirm {
    /// The token from the reset mail.
    pub token: String,
    pub new_password: String,
}

/// `POST /v1/auth/register` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RegisterResponse {
    pub user: User,
}

/// A session (one login on one device) as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Session {
    pub id: String,
    pub created_at: String,
    pub last_used_at: String,
    /// The earlier of the idle and the absolute expiry.
    pub expires_at: String,
    pub user_agent: Option<String>,
    pub ip: String,
    /// True for the session of the calling token.
    pub current: bool,
    /// How its login was made (RFC 8176): `["pwd"]`, `["pwd", "otp"]`, ...
    pub amr: Vec<String>,
    /// When that login was made, RFC 3339.
    pub auth_time: String,
}

/// `GET /v1/sessions` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SessionList {
    pub sessions: Vec<Session>,
}

/// Answer of login and refresh. The refresh token is never in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LoginResponse {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: u64,
    pub session_id: String,
    pub user: User,
}

/// Body of register and login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// Body of `POST /v1/me/password`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    pub current_password: String,
    pub new_password: String,
}

/// Every error body: `{"error", "error_description"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
    pub error_description: String,
}

/// Claims of an access token (RFC 9068).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    /// Absent for `client_credentials` tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    pub client_id: String,
    /// Space-separated, always present, may be empty.
    pub scope: String,
    /// How the session's login was made (RFC 8176); absent without a session.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
    /// When that login was made (seconds since the epoch); absent without a
    /// session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
}

/// A public key of the JWKS (RFC 7517), never with private members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PublicJwk {
    pub kty: String,
    pub kid: String,
    pub alg: String,
    #[serde(rename = "use")]
    pub use_: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
}

/// `GET /.well-known/jwks.json` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JwkSet {
    pub keys: Vec<PublicJwk>,
}

/// `POST /oauth2/token` answer (RFC 6749 §5.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: u64,
    /// Absent for `client_credentials`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    pub scope: String,
}

/// `POST /oauth2/introspect` answer (RFC 7662): only `active` when not active.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Introspection {
    pub active: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// `Bearer` for an access token, absent for a refresh token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    /// How the session's login was made (RFC 8176), for a token of a session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amr: Option<Vec<String>>,
    /// When that login was made (seconds since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
}

/// `GET /.well-known/oauth-authorization-server` answer (RFC 8414).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ServerMetadata {
    pub issuer: String,
    pub token_endpoint: String,
    pub revocation_endpoint: String,
    pub introspection_endpoint: String,
    /// latchkey's revocation feed (Server-Sent Events), for resource servers.
    pub revocation_feed_endpoint: String,
    pub jwks_uri: String,
    pub grant_types_supported: Vec<String>,
    pub response_types_supported: Vec<String>,
    pub token_endpoint_auth_methods_supported: Vec<String>,
    pub revocation_endpoint_auth_methods_supported: Vec<String>,
    pub introspection_endpoint_auth_methods_supported: Vec<String>,
    pub access_token_signing_alg_values_supported: Vec<String>,
}

/// `GET /healthz` and `GET /readyz` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
}

// Passkeys (API.md §10).

/// The first half of a WebAuthn ceremony (`POST /v1/me/passkeys/register/start`,
/// `POST /v1/auth/passkey/start`): the options for
/// `navigator.credentials.create()` or `.get()`, binary members base64url
/// as `toJSON()` writes them (`PublicKeyCredential.parseCreationOptionsFromJSON`
/// and `parseRequestOptionsFromJSON` read them), and the id that finishes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PasskeyChallenge {
    /// `PublicKeyCredentialCreationOptions` or `PublicKeyCredentialRequestOptions`.
    #[serde(rename = "publicKey")]
    #[schema(value_type = Object)]
    pub public_key: serde_json::Value,
    /// Good once, for 5 minutes.
    pub challenge_id: String,
}

/// `POST /v1/me/passkeys/register/finish` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasskeyRegistration {
    pub challenge_id: String,
    /// The `PublicKeyCredential` that `navigator.credentials.create()`
    /// answered, as its `toJSON()` writes it.
    #[schema(value_type = Object)]
    pub credential: serde_json::Value,
    /// What the user calls it (1 to 64 characters); `Passkey` without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `POST /v1/me/passkeys/register/finish` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PasskeyCreated {
    pub id: String,
    pub name: String,
    /// RFC 3339, UTC.
    pub created_at: String,
}

/// A passkey as its owner sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Passkey {
    pub id: String,
    pub name: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// The latest login with it, RFC 3339; null before the first.
    pub last_used_at: Option<String>,
}

/// `GET /v1/me/passkeys` answer, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PasskeyList {
    pub passkeys: Vec<Passkey>,
}

/// `POST /v1/auth/passkey/start` body.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasskeyLoginStart {
    /// Whose passkeys may answer; without it, any discoverable passkey.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
}

/// `POST /v1/auth/passkey/finish` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasskeyLogin {
    pub challenge_id: String,
    /// The `PublicKeyCredential` that `navigator.credentials.get()`
    /// answered, as its `toJSON()` writes it.
    #[schema(value_type = Object)]
    pub credential: serde_json::Value,
}
