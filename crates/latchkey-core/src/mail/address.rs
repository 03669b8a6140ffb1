//! Email addresses: what latchkey accepts, and the key they are unique by.

use std::fmt;

use crate::error::ServiceError;

/// RFC 5321's limits: a path of 256 octets holds at most 254 of address.
const MAX_BYTES: usize = 254;
const LOCAL_MAX_BYTES: usize = 64;
const LABEL_MAX_BYTES: usize = 63;

/// An address latchkey will mail: `local@domain`, trimmed; the local part
/// a dot-atom of ASCII (no quoted forms), the domain ASCII host labels (an
/// internationalised domain in its `xn--` form).
#[derive(Clone, PartialEq, Eq)]
pub struct EmailAddress {
    address: String,
    key: String,
}

impl EmailAddress {
    pub fn parse(raw: &str) -> Result<Self, ServiceError> {
        let bad = |why: &str| ServiceError::invalid_request(format!("email {why}"));
        let address = raw.trim();
        if address.is_empty() {
            return Err(bad("must not be empty"));
        }
        if address.len() > MAX_BYTES {
            return Err(bad("must be at most 254 characters"));
        }
        let (local, domain) = address
            .rsplit_once('@')
            .ok_or_else(|| bad("must be local@domain"))?;
        if local.is_empty() || local.len() > LOCAL_MAX_BYTES {
            return Err(bad("must have a local part of 1 to 64 characters"));
        }
        let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c);
        if local.starts_with('.')
            || local.ends_with('.')
            || local.contains("..")
            || !local.chars().all(|c| c == '.' || atext(c))
        {
            return Err(bad("has a local part latchkey does not accept"));
        }
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= LABEL_MAX_BYTES
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        };
        if !domain.split('.').all(label_ok) {
            return Err(bad("has a domain latchkey does not accept"));
        }
        Ok(Self {
            key: format!("{local}@{}", domain.to_ascii_lowercase()),
            address: address.to_owned(),
        })
    }

    /// As given, trimmed.
    pub fn as_str(&self) -> &str {
        &self.address
    }

    /// The local part as given, the domain lower-cased: the local part is
    /// the receiving server's to interpret, the domain is not.
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl fmt::Debug for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.address, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_domain_is_compared_without_case_and_the_local_part_with_it() {
        let a = EmailAddress::parse("  Alice.Smith+x@Example.COM ").unwrap();
        assert_eq!(a.as_str(), "Alice.Smith+x@Example.COM");
        assert_eq!(a.key(), "Alice.Smith+x@example.com");
        assert_ne!(
            EmailAddress::parse("alice@example.com").unwrap().key(),
            a.key()
        );
        assert!(EmailAddress::parse("bob@localhost").is_ok());
        assert!(EmailAddress::parse("bob@xn--bcher-kva.example").is_ok());
    }

    #[test]
    fn what_is_refused() {
        let long_local = format!("{}@example.com", "a".repeat(65));
        let long = format!("a@{}.com", "b.".repeat(130));
        for bad in [
            "",
            "   ",
            "alice",
            "@example.com",
            "alice@",
            "alice@@example.com",
            "al ice@example.com",
            "\"quoted\"@example.com",
            ".alice@example.com",
            "alice.@example.com",
            "al..ice@example.com",
            "alice@exa mple.com",
            "alice@-example.com",
            "alice@example..com",
            "alice@example.com.",
            "alice@ex\u{e4}mple.com",
            "al\u{e4}ce@example.com",
            "alice@example.com\r\nBcc: x@y.z",
            "alice\u{0}@example.com",
            "<alice@example.com>",
            long_local.as_str(),
            long.as_str(),
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad:?}");
        }
    }
}
