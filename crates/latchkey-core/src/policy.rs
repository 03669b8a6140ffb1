//! The settings that shape the rules (lifetimes, windows, algorithm).

use std::sync::Arc;
use std::time::Duration;

use crate::keys::SigningAlg;
use crate::mail::Templates;

/// What the service needs to write mails (API.md §11); `None` in
/// [`Policy::mail`] without `smtp_url`.
#[derive(Debug, Clone)]
pub struct MailPolicy {
    /// The app's page a reset link opens (`?token=` is appended).
    pub password_reset_url: String,
    /// The app's page an address check opens.
    pub email_verify_url: String,
    pub templates: Arc<Templates>,
}

/// Everything the service needs to know of the configuration.
#[derive(Debug, Clone)]
pub struct Policy {
    pub issuer: String,
    pub audience: String,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    pub session_max_age: Duration,
    pub refresh_reuse_grace: Duration,
    pub signing_alg: SigningAlg,
    pub registration_open: bool,
    pub default_scope: String,
    pub login_max_failures: u32,
    pub login_window: Duration,
    pub jwks_max_age: Duration,
    /// Concurrent Argon2 computations plus those allowed to wait; beyond it
    /// logins answer 503 at once.
    pub password_queue: usize,
    /// How long audit rows are kept before the prune job removes them.
    pub audit_retention: Duration,
    /// Mail is configured: the reset and address-check endpoints exist.
    pub mail: Option<MailPolicy>,
    /// The WebAuthn relying party id (`webauthn_rp_id`): passkeys belong
    /// to this domain.
    pub webauthn_rp_id: String,
    /// The origins whose pages may make and use passkeys (`allowed_origins`).
    pub webauthn_origins: Vec<String>,
}

/// How often a running server reloads keys from the store.
pub const KEY_PICKUP_INTERVAL: Duration = Duration::from_secs(5);

/// The client id of tokens issued through the `/v1` API.
pub const WEB_CLIENT_ID: &str = "web";

impl Default for Policy {
    /// The defaults of every rule; `issuer`, `audience` and the WebAuthn
    /// relying party are empty until the server knows its address (or is
    /// told them).
    fn default() -> Self {
        Self {
            issuer: String::new(),
            audience: String::new(),
            access_ttl: Duration::from_secs(15 * 60),
            refresh_ttl: Duration::from_secs(7 * 24 * 3600),
            session_max_age: Duration::from_secs(30 * 24 * 3600),
            refresh_reuse_grace: Duration::from_secs(10),
            signing_alg: SigningAlg::EdDsa,
            registration_open: true,
            default_scope: String::new(),
            login_max_failures: 10,
            login_window: Duration::from_secs(15 * 60),
            jwks_max_age: Duration::from_secs(5 * 60),
            password_queue: 32,
            audit_retention: Duration::from_secs(90 * 24 * 3600),
            mail: None,
            webauthn_rp_id: String::new(),
            webauthn_origins: Vec::new(),
        }
    }
}
