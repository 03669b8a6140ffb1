//! The few primitives latchkey composes, all from aws-lc-rs: OS randomness,
//! HKDF, HMAC, AES-256-GCM (and -GCM-SIV). Nothing here is invented.

use aws_lc_rs::aead::{
    Aad, Algorithm, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, AES_256_GCM_SIV, NONCE_LEN,
};
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
        SealKey::new(&AES_256_GCM, self.derive(what.purpose())?.as_ref())?.seal(label, plain)
    }

    /// Decrypts what [`MasterKey::seal_for`] made for `what` with the same `label`.
    pub fn open_for(
        &self,
        what: Sealed,
        label: &str,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, ServiceError> {
        SealKey::new(&AES_256_GCM, self.derive(what.purpose())?.as_ref())?
            .open(label, sealed)
            .ok_or_else(|| {
                ServiceError::Internal(format!(
                    "a stored {} does not decrypt: is master_key the one it was stored with?",
                    what.noun()
                ))
            })
    }
}

/// An AEAD key: each seal takes a random nonce (written before the
/// ciphertext) and binds a `label` as AAD.
pub struct SealKey(LessSafeKey);

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(<hidden>)")
    }
}

impl SealKey {
    fn new(algorithm: &'static Algorithm, key: &[u8]) -> Result<Self, ServiceError> {
        UnboundKey::new(algorithm, key)
            .map(|key| Self(LessSafeKey::new(key)))
            .map_err(|_| ServiceError::Internal("bad AEAD key".into()))
    }

    pub fn seal(&self, label: &str, plain: &[u8]) -> Result<Vec<u8>, ServiceError> {
        let nonce_bytes = random_bytes::<NONCE_LEN>()?;
        let mut data = plain.to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::from(label.as_bytes()),
                &mut data,
            )
            .map_err(|_| ServiceError::Internal("encryption failed".into()))?;
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&data);
        Ok(out)
    }

    /// What [`SealKey::seal`] made with this key and `label`; `None` for
    /// anything else.
    pub fn open(&self, label: &str, sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        let (nonce, body) = sealed.split_at_checked(NONCE_LEN)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut data = Zeroizing::new(body.to_vec());
        let plain_len = self
            .0
            .open_in_place(nonce, Aad::from(label.as_bytes()), data.as_mut())
            .ok()?
            .len();
        data.truncate(plain_len);
        Some(data)
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

    /// A key to seal state handed to clients with, one per `purpose`:
    /// every node holds the same secret, so any node opens it. AES-GCM-SIV,
    /// because anyone may ask for sealed texts, as many as they like, and a
    /// random nonce drawn twice must not give the key away.
    pub fn seal_key(&self, purpose: &str) -> Result<SealKey, ServiceError> {
        let key = self.sign(&[b"latchkey seal key", purpose.as_bytes()]);
        SealKey::new(&AES_256_GCM_SIV, key.as_ref())
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
    fn state_sealed_for_clients_opens_on_every_node_and_only_for_its_purpose() {
        let node_a = RefreshSecret::new(b"shared").seal_key("p").unwrap();
        let node_b = RefreshSecret::new(b"shared").seal_key("p").unwrap();
        let sealed = node_a.seal("label", b"state").unwrap();
        assert_eq!(node_b.open("label", &sealed).unwrap().as_slice(), b"state");
        assert!(node_b.open("other label", &sealed).is_none());
        let other_purpose = RefreshSecret::new(b"shared").seal_key("q").unwrap();
        assert!(other_purpose.open("label", &sealed).is_none());
        let other_secret = RefreshSecret::new(b"other").seal_key("p").unwrap();
        assert!(other_secret.open("label", &sealed).is_none());
        for i in 0..sealed.len() {
            let mut tampered = sealed.clone();
            tampered[i] ^= 1;
            assert!(node_b.open("label", &tampered).is_none());
        }
        assert!(node_b.open("label", &sealed[..NONCE_LEN]).is_none());
        assert!(node_b.open("label", &[]).is_none());
        // Sealing twice gives two texts (random nonces).
        assert_ne!(sealed, node_a.seal("label", b"state").unwrap());
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
