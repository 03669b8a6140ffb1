//! The few primitives latchkey composes, all from aws-lc-rs: OS randomness,
//! HKDF, HMAC, AES-256-GCM. Nothing here is invented.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::hkdf;
use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use zeroize::Zeroizing;

use crate::error::ServiceError;

pub(crate) const B64: base64::engine::GeneralPurpose =
    base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// `n` bytes from the system's CSPRNG.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], ServiceError> {
    let mut out = [0u8; N];
    SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| ServiceError::Internal("the system random source failed".into()))?;
    Ok(out)
}

/// The operator's `master_key`: 32 bytes, given as base64.
#[derive(Clone)]
pub struct MasterKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<hidden>)")
    }
}

impl MasterKey {
    pub fn from_base64(text: &str) -> Result<Self, String> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .or_else(|_| B64.decode(text.trim()))
            .map_err(|_| "must be base64".to_owned())?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "must be 32 bytes (base64 of 32 bytes)".to_owned())?;
        Ok(Self(Zeroizing::new(key)))
    }

    /// A sub-key for one purpose, so the master key itself is never used twice.
    pub fn derive(&self, purpose: &'static str) -> Result<Zeroizing<[u8; 32]>, ServiceError> {
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"latchkey");
        let prk = salt.extract(self.0.as_ref());
        let mut out = Zeroizing::new([0u8; 32]);
        let info = [purpose.as_bytes()];
        prk.expand(&info, HkdfLen)
            .and_then(|okm| okm.fill(out.as_mut()))
            .map_err(|_| ServiceError::Internal("key derivation failed".into()))?;
        Ok(out)
    }

    /// Encrypts a private signing key (AES-256-GCM, random nonce, `label`
    /// bound as AAD).
    pub fn seal(&self, label: &str, plain: &[u8]) -> Result<Vec<u8>, ServiceError> {
        self.seal_for(Sealed::SigningKey, label, plain)
    }

    /// Decrypts what [`MasterKey::seal`] made with the same `label`.
    pub fn open(&self, label: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, ServiceError> {
        self.open_for(Sealed::SigningKey, label, sealed)
    }

    /// Encrypts `plain` under the sub-key of `what` (AES-256-GCM, random
    /// nonce, `label` bound as AAD).
    pub fn seal_for(
        &self,
        what: Sealed,
        label: &str,
        plain: &[u8],
    ) -> Result<Vec<u8>, ServiceError> {
        let key = self.aead_key(what)?;
        let nonce_bytes = random_bytes::<NONCE_LEN>()?;
        let mut data = plain.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce_bytes),
            Aad::from(label.as_bytes()),
            &mut data,
        )
        .map_err(|_| ServiceError::Internal("encryption failed".into()))?;
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&data);
        Ok(out)
    }

    /// Decrypts what [`MasterKey::seal_for`] made for `what` with the same `label`.
    pub fn open_for(
        &self,
        what: Sealed,
        label: &str,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, ServiceError> {
        let wrong = || {
            ServiceError::Internal(format!(
                "a stored {} does not decrypt: is master_key the one it was stored with?",
                what.noun()
            ))
        };
        if sealed.len() < NONCE_LEN {
            return Err(wrong());
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| wrong())?;
        let key = self.aead_key(what)?;
        let mut data = Zeroizing::new(body.to_vec());
        let plain_len = key
            .open_in_place(nonce, Aad::from(label.as_bytes()), data.as_mut())
            .map_err(|_| wrong())?
            .len();
        data.truncate(plain_len);
        Ok(data)
    }

    fn aead_key(&self, what: Sealed) -> Result<LessSafeKey, ServiceError> {
        let sub = self.derive(what.purpose())?;
        UnboundKey::new(&AES_256_GCM, sub.as_ref())
            .map(LessSafeKey::new)
            .map_err(|_| ServiceError::Internal("bad AEAD key".into()))
    }
}

/// What a master key seals: each kind under a sub-key of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sealed {
    SigningKey,
    TotpSecret,
}

impl Sealed {
    fn purpose(self) -> &'static str {
        match self {
            Self::SigningKey => "signing-key-encryption",
            Self::TotpSecret => "totp-secret-encryption",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Self::SigningKey => "private key",
            Self::TotpSecret => "TOTP secret",
        }
    }
}

struct HkdfLen;

impl hkdf::KeyType for HkdfLen {
    fn len(&self) -> usize {
        32
    }
}

/// The server secret refresh tokens are MACed with.
#[derive(Clone)]
pub struct RefreshSecret(hmac::Key);

impl RefreshSecret {
    pub fn new(secret: &[u8]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    pub fn sign(&self, parts: &[&[u8]]) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.0);
        for part in parts {
            // Length-prefixed so that no two part lists MAC the same bytes.
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part);
        }
        ctx.sign()
    }

    /// Constant-time check of a presented MAC.
    pub fn verify(&self, parts: &[&[u8]], presented: &[u8]) -> bool {
        let expected = self.sign(parts);
        subtle::ConstantTimeEq::ct_eq(expected.as_ref(), presented).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_data_opens_only_with_the_same_key_and_label() {
        let key =
            MasterKey::from_base64(&base64::engine::general_purpose::STANDARD.encode([7u8; 32]))
                .unwrap();
        let other =
            MasterKey::from_base64(&base64::engine::general_purpose::STANDARD.encode([8u8; 32]))
                .unwrap();
        let sealed = key.seal("kid-1", b"secret").unwrap();
        assert_eq!(key.open("kid-1", &sealed).unwrap().as_slice(), b"secret");
        assert!(key.open("kid-2", &sealed).is_err());
        assert!(other.open("kid-1", &sealed).is_err());
        assert!(key.open("kid-1", &sealed[..5]).is_err());
        // Another kind of secret has a sub-key of its own.
        assert!(key.open_for(Sealed::TotpSecret, "kid-1", &sealed).is_err());
        let totp = key.seal_for(Sealed::TotpSecret, "u", b"otp").unwrap();
        assert_eq!(
            key.open_for(Sealed::TotpSecret, "u", &totp)
                .unwrap()
                .as_slice(),
            b"otp"
        );
    }

    #[test]
    fn derived_keys_are_stable_and_differ_by_purpose() {
        let key =
            MasterKey::from_base64(&base64::engine::general_purpose::STANDARD.encode([7u8; 32]))
                .unwrap();
        let a = key.derive("a").unwrap();
        assert_eq!(a, key.derive("a").unwrap());
        assert_ne!(a, key.derive("b").unwrap());
        assert_ne!(*a, [0u8; 32]);
    }

    #[test]
    fn master_keys_must_be_32_bytes_of_base64() {
        assert!(MasterKey::from_base64("not base64!").is_err());
        assert!(MasterKey::from_base64("AAAA").is_err());
    }

    #[test]
    fn macs_are_length_prefixed_and_checked() {
        let s = RefreshSecret::new(b"k");
        let tag = s.sign(&[b"ab", b"c"]);
        assert!(s.verify(&[b"ab", b"c"], tag.as_ref()));
        assert!(!s.verify(&[b"a", b"bc"], tag.as_ref()));
        assert!(!s.verify(&[b"ab", b"c"], &tag.as_ref()[..31]));
    }
}
