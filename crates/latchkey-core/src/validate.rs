//! Parse, don't validate: the only ways to get a `Username` or a password are
//! the constructors here, which enforce docs/reference.md §3.

use std::fmt;

use unicode_general_category::{get_general_category, GeneralCategory};
use unicode_normalization::UnicodeNormalization;
use zeroize::Zeroizing;

use crate::error::ServiceError;

const USERNAME_MAX_CHARS: usize = 254;
const NEW_PASSWORD_MIN_BYTES: usize = 8;
const PASSWORD_MAX_BYTES: usize = 1024;

/// A username: trimmed, 1 to 254 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username {
    display: String,
    key: String,
}

impl Username {
    pub fn parse(raw: &str) -> Result<Self, ServiceError> {
        let trimmed = raw.trim();
        let chars = trimmed.chars().count();
        if chars == 0 {
            return Err(ServiceError::invalid_request("username must not be empty"));
        }
        if chars > USERNAME_MAX_CHARS {
            return Err(ServiceError::invalid_request(
                "username must be at most 254 characters",
            ));
        }
        if trimmed.chars().any(is_control) {
            return Err(ServiceError::invalid_request(
                "username must not contain control characters",
            ));
        }
        Ok(Self {
            key: canonical_key(trimmed),
            display: trimmed.to_owned(),
        })
    }

    /// The name as the user typed it, trimmed: what is stored and shown.
    pub fn as_str(&self) -> &str {
        &self.display
    }

    /// NFC then lower case: two names with the same key are the same user.
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}

const PASSKEY_NAME_MAX_CHARS: usize = 64;

/// What a user calls a passkey: trimmed, 1 to 64 characters, no control
/// characters (it is shown back in a list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeyName(String);

impl PasskeyName {
    pub fn parse(raw: &str) -> Result<Self, ServiceError> {
        let trimmed = raw.trim();
        let chars = trimmed.chars().count();
        if chars == 0 || chars > PASSKEY_NAME_MAX_CHARS {
            return Err(ServiceError::invalid_request(
                "name must be 1 to 64 characters",
            ));
        }
        if trimmed.chars().any(is_control) {
            return Err(ServiceError::invalid_request(
                "name must not contain control characters",
            ));
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn canonical_key(name: &str) -> String {
    name.nfc().collect::<String>().to_lowercase()
}

fn is_control(c: char) -> bool {
    matches!(
        get_general_category(c),
        GeneralCategory::Control | GeneralCategory::Format
    )
}

/// A password that may be set: 8 to 1024 bytes of UTF-8, never trimmed.
pub struct NewPassword(Zeroizing<String>);

impl NewPassword {
    pub fn parse(raw: &str) -> Result<Self, ServiceError> {
        if raw.len() < NEW_PASSWORD_MIN_BYTES || raw.len() > PASSWORD_MAX_BYTES {
            return Err(ServiceError::invalid_request(
                "password must be 8 to 1024 bytes",
            ));
        }
        Ok(Self(Zeroizing::new(raw.to_owned())))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A password presented at login: any 1 to 1024 bytes, so that a later
/// change of policy never locks anyone out.
pub struct LoginPassword(Zeroizing<String>);

impl LoginPassword {
    pub fn parse(raw: &str) -> Result<Self, ServiceError> {
        if raw.is_empty() || raw.len() > PASSWORD_MAX_BYTES {
            return Err(ServiceError::invalid_request(
                "password must be 1 to 1024 bytes",
            ));
        }
        Ok(Self(Zeroizing::new(raw.to_owned())))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NewPassword(..)")
    }
}

impl fmt::Debug for LoginPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LoginPassword(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn username_is_trimmed_and_keyed_case_insensitively() {
        let a = Username::parse("  Alice\u{3000}").unwrap();
        assert_eq!(a.as_str(), "Alice");
        assert_eq!(a.key(), "alice");
        // "é" composed and decomposed are one user.
        let composed = Username::parse("Jos\u{e9}").unwrap();
        let decomposed = Username::parse("JOSE\u{301}").unwrap();
        assert_eq!(composed.key(), decomposed.key());
    }

    #[test]
    fn username_bounds_and_controls() {
        assert!(Username::parse("   ").is_err());
        assert!(Username::parse("").is_err());
        assert!(Username::parse(&"x".repeat(254)).is_ok());
        assert!(Username::parse(&"é".repeat(254)).is_ok());
        assert!(Username::parse(&"x".repeat(255)).is_err());
        assert!(Username::parse("a\u{0}b").is_err());
        assert!(Username::parse("a\nb").is_err());
        assert!(
            Username::parse("a\u{200b}b").is_err(),
            "Cf: zero width space"
        );
        assert!(
            Username::parse("a\u{202e}b").is_err(),
            "Cf: right-to-left override"
        );
    }

    #[test]
    fn password_bounds_are_bytes_not_chars() {
        assert!(NewPassword::parse("1234567").is_err());
        assert!(NewPassword::parse("12345678").is_ok());
        assert!(NewPassword::parse("éééé").is_ok(), "4 chars, 8 bytes");
        assert!(NewPassword::parse(&"x".repeat(1024)).is_ok());
        assert!(NewPassword::parse(&"x".repeat(1025)).is_err());
        assert!(NewPassword::parse("  spaces kept  ")
            .unwrap()
            .expose()
            .starts_with("  "));
        assert!(LoginPassword::parse("").is_err());
        assert!(LoginPassword::parse("x").is_ok());
        assert!(LoginPassword::parse(&"x".repeat(1025)).is_err());
    }

    proptest! {
        #[test]
        fn parsed_usernames_hold_the_invariants(raw in "\\PC{0,300}|[\\x00-\\x20a-z]{0,10}") {
            if let Ok(name) = Username::parse(&raw) {
                let n = name.as_str().chars().count();
                prop_assert!((1..=254).contains(&n));
                prop_assert_eq!(name.as_str(), name.as_str().trim());
                prop_assert!(!name.as_str().chars().any(is_control));
                let again = Username::parse(name.as_str()).unwrap();
                prop_assert_eq!(again.key(), name.key());
            }
        }
    }
}
