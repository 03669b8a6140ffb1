//! Second factors (API.md §10): time-based one-time passwords (RFC 6238:
//! HMAC-SHA-1, 6 digits, 30-second steps, computed by the `totp-rs` crate),
//! the recovery codes that stand in for them, and the records the store
//! keeps of both and of logins waiting for their second factor.

use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, TOTP};
use zeroize::Zeroizing;

use time::OffsetDateTime;

use crate::crypto::random_bytes;
use crate::error::ServiceError;
use crate::ids::UserId;

/// Digits of a code.
pub const DIGITS: usize = 6;
/// Seconds of a step.
pub const STEP_SECS: u64 = 30;
/// Steps either side of now whose codes pass (clock drift, typing time).
const SKEW_STEPS: u64 = 1;
/// Bytes of a secret: 160 bits, RFC 4226's recommendation.
const SECRET_BYTES: usize = 20;
/// A presented code longer than this is not one (spaces included).
pub const CODE_MAX_CHARS: usize = 64;

/// Recovery codes made when TOTP is turned on.
pub const RECOVERY_CODES: usize = 10;
/// Bytes of a recovery code: 80 random bits, far beyond guessing at the
/// login limit's pace.
const RECOVERY_CODE_BYTES: usize = 10;
/// The letters of recovery codes: base32 without the look-alikes 0/o, 1/l.
const RECOVERY_ALPHABET: &[u8; 32] = b"abcdefghijkmnpqrstuvwxyz23456789";

/// A user's TOTP secret; wiped from memory when dropped, never printed.
pub struct TotpSecret(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpSecret(<hidden>)")
    }
}

impl TotpSecret {
    /// A new secret from the system's CSPRNG.
    pub fn random() -> Result<Self, ServiceError> {
        Ok(Self(Zeroizing::new(
            random_bytes::<SECRET_BYTES>()?.to_vec(),
        )))
    }

    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    fn totp(&self, digits: usize, issuer: Option<String>, account: String) -> TOTP {
        // Unchecked: the secret is ours (160 bits) and the label's `:` is
        // percent-encoded by `get_url`, so a username may hold one.
        TOTP::new_unchecked(
            Algorithm::SHA1,
            digits,
            SKEW_STEPS as u8,
            STEP_SECS,
            self.0.to_vec(),
            issuer,
            account,
        )
    }

    /// The secret as authenticator apps take it typed in: base32, no padding.
    pub fn base32(&self) -> String {
        self.totp(DIGITS, None, String::new()).get_secret_base32()
    }

    /// The `otpauth://totp/ISSUER:ACCOUNT?secret=...&issuer=ISSUER` URI of
    /// a QR code.
    pub fn otpauth_uri(&self, issuer: &str, account: &str) -> String {
        self.totp(DIGITS, Some(issuer.to_owned()), account.to_owned())
            .get_url()
    }

    fn code_with(&self, digits: usize, unix_secs: u64) -> String {
        self.totp(digits, None, String::new()).generate(unix_secs)
    }

    /// The code of the step holding `unix_secs`.
    pub fn code_at(&self, unix_secs: u64) -> String {
        self.code_with(DIGITS, unix_secs)
    }

    /// The step (`unix_secs / 30`) whose code `code` is, among the step of
    /// `unix_secs` and one either side; `None` when it is none of theirs.
    /// Spaces a person typed are ignored. The caller must still refuse a
    /// step already used (the replay guard is the store's).
    pub fn step_of(&self, code: &str, unix_secs: u64) -> Option<u64> {
        let code: String = code.chars().filter(|c| *c != ' ').collect();
        let now = unix_secs / STEP_SECS;
        let mut found = None;
        // Every candidate is compared, in constant time, whichever matches.
        for step in now.saturating_sub(SKEW_STEPS)..=now + SKEW_STEPS {
            let expected = self.code_at(step * STEP_SECS);
            if bool::from(expected.as_bytes().ct_eq(code.as_bytes())) {
                found = Some(step);
            }
        }
        found
    }
}

/// The name authenticator apps show for this server: the issuer URL's host,
/// without scheme, port or path.
pub fn issuer_name(issuer: &str) -> String {
    let rest = issuer.split_once("://").map_or(issuer, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or(v6)
    } else {
        host_port.split(':').next().unwrap_or(host_port)
    };
    if host.is_empty() {
        "latchkey".to_owned()
    } else {
        host.to_owned()
    }
}

/// A new recovery code, `xxxx-xxxx-xxxx-xxxx`: 80 random bits.
pub fn new_recovery_code() -> Result<String, ServiceError> {
    let bytes = random_bytes::<RECOVERY_CODE_BYTES>()?;
    let mut bits = bytes
        .iter()
        .fold(0u128, |acc, b| (acc << 8) | u128::from(*b));
    let mut letters = Vec::with_capacity(19);
    for i in 0..16 {
        if i > 0 && i % 4 == 0 {
            letters.push(b'-');
        }
        letters.push(RECOVERY_ALPHABET[(bits >> 75) as usize & 31]);
        bits <<= 5;
    }
    Ok(String::from_utf8_lossy(&letters).into_owned())
}

/// What the store keeps of a recovery code, and compares: the SHA-256 of
/// the code as typed, less dashes and spaces, in lower case.
pub fn recovery_code_hash(code: &str) -> Vec<u8> {
    let normal: String = code
        .chars()
        .filter(|c| *c != '-' && *c != ' ')
        .flat_map(char::to_lowercase)
        .collect();
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, normal.as_bytes())
        .as_ref()
        .to_vec()
}

/// The index of `hash` among `stored`, each compared in constant time.
pub fn find_hash(stored: &[Vec<u8>], hash: &[u8]) -> Option<usize> {
    let mut found = None;
    for (i, candidate) in stored.iter().enumerate() {
        if bool::from(candidate.as_slice().ct_eq(hash)) {
            found = Some(i);
        }
    }
    found
}

/// The label a sealed TOTP secret is bound to: one user's secret cannot be
/// moved to another's row.
pub fn seal_label(user_id: &str) -> String {
    format!("totp:{user_id}")
}

/// What second factors a user has, read with the user (so that a login
/// and `GET /v1/me` need no other read).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SecondFactors {
    /// TOTP is on (confirmed).
    pub totp: bool,
    pub passkeys: u64,
}

/// A user's TOTP as the store keeps it.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpRecord {
    pub user_id: UserId,
    /// Sealed under the master key when `encrypted` (label: [`seal_label`]).
    pub secret: Vec<u8>,
    pub encrypted: bool,
    pub created_at: OffsetDateTime,
    /// `None` while enrolment waits for its first code.
    pub confirmed_at: Option<OffsetDateTime>,
    /// The latest step a code was accepted for.
    pub last_step: Option<u64>,
}

impl std::fmt::Debug for TotpRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TotpRecord")
            .field("user_id", &self.user_id)
            .field("secret", &"<redacted>")
            .field("encrypted", &self.encrypted)
            .field("created_at", &self.created_at)
            .field("confirmed_at", &self.confirmed_at)
            .field("last_step", &self.last_step)
            .finish()
    }
}

/// A login whose password was right, waiting for its second factor.
#[derive(Clone, PartialEq, Eq)]
pub struct MfaLoginRecord {
    /// SHA-256 of the `mfa_token`.
    pub hash: Vec<u8>,
    pub user_id: UserId,
    pub client_id: String,
    pub scope: String,
    /// The password version checked: a password change since kills it.
    pub password_version: u64,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    /// Codes tried with it, the one being checked included.
    pub failures: u32,
}

impl std::fmt::Debug for MfaLoginRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MfaLoginRecord")
            .field("hash", &"<redacted>")
            .field("user_id", &self.user_id)
            .field("client_id", &self.client_id)
            .field("scope", &self.scope)
            .field("password_version", &self.password_version)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("failures", &self.failures)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B, SHA-1: the 20-byte ASCII seed, and the 8-digit
    /// codes at each time.
    const RFC6238_SEED: &[u8] = b"12345678901234567890";
    const RFC6238_SHA1: [(u64, &str); 6] = [
        (59, "94287082"),
        (1_111_111_109, "07081804"),
        (1_111_111_111, "14050471"),
        (1_234_567_890, "89005924"),
        (2_000_000_000, "69279037"),
        (20_000_000_000, "65353130"),
    ];

    #[test]
    fn rfc6238_appendix_b_sha1_vectors() {
        let secret = TotpSecret::from_bytes(RFC6238_SEED.to_vec());
        for (time, code) in RFC6238_SHA1 {
            assert_eq!(secret.code_with(8, time), code, "T = {time}");
            // Six digits are the last six of the eight (the same truncation
            // modulo 10^6): what users type.
            assert_eq!(secret.code_at(time), code[2..], "T = {time}");
            assert_eq!(secret.step_of(&code[2..], time), Some(time / 30));
        }
    }

    #[test]
    fn codes_pass_one_step_either_side_and_no_further() {
        let secret = TotpSecret::from_bytes(RFC6238_SEED.to_vec());
        let t = 1_234_567_890;
        let code = secret.code_at(t);
        let step = t / STEP_SECS;
        assert_eq!(secret.step_of(&code, t - STEP_SECS), Some(step));
        assert_eq!(secret.step_of(&code, t + STEP_SECS), Some(step));
        assert_eq!(secret.step_of(&code, t - 2 * STEP_SECS), None);
        assert_eq!(secret.step_of(&code, t + 2 * STEP_SECS), None);
        // As typed, with a space in the middle.
        let spaced = format!("{} {}", &code[..3], &code[3..]);
        assert_eq!(secret.step_of(&spaced, t), Some(step));
        assert_eq!(secret.step_of("", t), None);
        assert_eq!(secret.step_of("12345", t), None);
        assert_eq!(secret.step_of(&format!("{code}0"), t), None);
        // Near the epoch the window does not wrap around.
        assert!(secret.step_of(&secret.code_at(0), 0).is_some());
    }

    #[test]
    fn secrets_are_random_and_their_uri_names_issuer_and_account() {
        let a = TotpSecret::random().unwrap();
        let b = TotpSecret::random().unwrap();
        assert_ne!(a.expose(), b.expose());
        assert_eq!(a.expose().len(), 20);
        let base32 = a.base32();
        assert_eq!(base32.len(), 32);
        assert!(base32
            .bytes()
            .all(|c| c.is_ascii_uppercase() || (b'2'..=b'7').contains(&c)));
        let uri = a.otpauth_uri("id.example.com", "al:ice");
        assert_eq!(
            uri,
            format!("otpauth://totp/id.example.com:al%3Aice?secret={base32}&issuer=id.example.com")
        );
        assert!(!format!("{a:?}").contains(&base32));
    }

    #[test]
    fn issuer_names_are_hosts() {
        assert_eq!(issuer_name("https://id.example.com"), "id.example.com");
        assert_eq!(issuer_name("http://127.0.0.1:8080/"), "127.0.0.1");
        assert_eq!(
            issuer_name("https://user@id.example.com:8443/auth?x"),
            "id.example.com"
        );
        assert_eq!(issuer_name("http://[::1]:8080"), "::1");
        assert_eq!(issuer_name(""), "latchkey");
    }

    #[test]
    fn recovery_codes_are_random_readable_and_hashed_as_typed() {
        let code = new_recovery_code().unwrap();
        assert_eq!(code.len(), 19, "{code}");
        let groups: Vec<&str> = code.split('-').collect();
        assert_eq!(groups.len(), 4);
        assert!(groups
            .iter()
            .all(|g| g.len() == 4 && g.bytes().all(|c| RECOVERY_ALPHABET.contains(&c))));
        assert_ne!(code, new_recovery_code().unwrap());
        let hash = recovery_code_hash(&code);
        assert_eq!(hash.len(), 32);
        assert_eq!(recovery_code_hash(&code.to_uppercase()), hash);
        assert_eq!(recovery_code_hash(&code.replace('-', " ")), hash);
        assert_ne!(recovery_code_hash(&code[1..]), hash);
        let stored = vec![recovery_code_hash("other"), hash.clone()];
        assert_eq!(find_hash(&stored, &hash), Some(1));
        assert_eq!(find_hash(&stored, &recovery_code_hash("nope")), None);
    }
}
