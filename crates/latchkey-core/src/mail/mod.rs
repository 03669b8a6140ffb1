//! Mail: addresses, the tokens mailed for a password reset or an address
//! check, the records the store keeps of them and of the outbox, and the
//! templates the mails are written from. Sending is the server's (SMTP);
//! nothing here does I/O beyond reading a template directory at start-up.

mod address;
mod templates;

use time::OffsetDateTime;

use crate::crypto::{random_bytes, B64};
use crate::error::ServiceError;
use crate::ids::UserId;

pub use address::EmailAddress;
pub use templates::{MailKind, Rendered, TemplateError, Templates, TEMPLATE_VARIABLES};

/// A user's address as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailRecord {
    /// As given (trimmed): what mail is sent to and what is shown.
    pub email: String,
    /// The local part as given, the domain lower-cased: the unique key
    /// among verified addresses.
    pub email_key: String,
    pub verified_at: Option<OffsetDateTime>,
}

/// What a mailed token is good for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPurpose {
    PasswordReset,
    VerifyEmail,
}

impl TokenPurpose {
    /// The `purpose` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PasswordReset => "password_reset",
            Self::VerifyEmail => "verify_email",
        }
    }

    pub fn from_column(text: &str) -> Option<Self> {
        match text {
            "password_reset" => Some(Self::PasswordReset),
            "verify_email" => Some(Self::VerifyEmail),
            _ => None,
        }
    }
}

/// A mailed token as the store keeps it: its SHA-256, never the token.
#[derive(Clone, PartialEq, Eq)]
pub struct MailTokenRecord {
    pub hash: Vec<u8>,
    pub user_id: UserId,
    pub purpose: TokenPurpose,
    /// The address it was mailed to.
    pub email: String,
    /// The user's `password_version` when it was made: any password change
    /// since kills it.
    pub password_version: u64,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    /// Used, or superseded by a newer one.
    pub spent_at: Option<OffsetDateTime>,
}

impl std::fmt::Debug for MailTokenRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailTokenRecord")
            .field("hash", &"<redacted>")
            .field("user_id", &self.user_id)
            .field("purpose", &self.purpose)
            .field("email", &self.email)
            .field("password_version", &self.password_version)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("spent_at", &self.spent_at)
            .finish()
    }
}

/// A mail waiting in the outbox (or claimed from it to be sent).
#[derive(Clone, PartialEq, Eq)]
pub struct OutboxMail {
    pub id: String,
    pub recipient: String,
    pub subject: String,
    pub text_body: String,
    pub html_body: String,
    pub created_at: OffsetDateTime,
    /// Sending attempts before this one.
    pub attempts: u32,
}

impl std::fmt::Debug for OutboxMail {
    // A body may hold a live token: never in a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxMail")
            .field("id", &self.id)
            .field("recipient", &self.recipient)
            .field("subject", &self.subject)
            .field("created_at", &self.created_at)
            .field("attempts", &self.attempts)
            .finish()
    }
}

impl OutboxMail {
    pub fn new(recipient: &str, rendered: Rendered, now: OffsetDateTime) -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            recipient: recipient.to_owned(),
            subject: rendered.subject,
            text_body: rendered.text,
            html_body: rendered.html,
            created_at: now,
            attempts: 0,
        }
    }
}

/// Bytes of a mailed token's secret: 256 bits, beyond the 128 required.
const TOKEN_BYTES: usize = 32;
/// A presented token longer than this is not one of ours.
pub const TOKEN_MAX_CHARS: usize = 128;

/// A fresh token: the string to mail, and the hash to store.
pub fn new_token() -> Result<(String, Vec<u8>), ServiceError> {
    let token = base64::Engine::encode(&B64, random_bytes::<TOKEN_BYTES>()?);
    let hash = token_hash(&token);
    Ok((token, hash))
}

/// What the store keeps of a token, and looks it up by. The token has 256
/// random bits, so looking up its hash leaks nothing a timing could use.
pub fn token_hash(token: &str) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes())
        .as_ref()
        .to_vec()
}

/// `base?token=...` (or `&token=` when the page's URL has a query already).
pub fn link(base: &str, token: &str) -> String {
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}token={token}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_hashed() {
        let (a, hash) = new_token().unwrap();
        let (b, _) = new_token().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(hash, token_hash(&a));
        assert_eq!(hash.len(), 32);
        assert!(!format!(
            "{:?}",
            OutboxMail::new("a@b", Rendered::default(), OffsetDateTime::UNIX_EPOCH)
        )
        .contains("token"));
    }

    #[test]
    fn links_keep_the_page_query() {
        assert_eq!(link("https://a/reset", "t"), "https://a/reset?token=t");
        assert_eq!(link("https://a/p?x=1", "t"), "https://a/p?x=1&token=t");
    }
}
