//! Signing keys: generation, storage form, and the key ring that decides at
//! any instant which key signs and which keys the JWKS publishes.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
    RSA_PKCS1_SHA256,
};
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey};
use latchkey_proto::PublicJwk;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::crypto::{MasterKey, B64};
use crate::error::ServiceError;
pub use crate::store::KeyRecord;

/// A verifier's allowance for clock skew: a retired key stays published
/// this much longer than the tokens it signed live.
pub const VERIFIER_LEEWAY: Duration = Duration::from_secs(60);

/// The algorithms latchkey signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningAlg {
    EdDsa,
    Es256,
    Rs256,
}

impl SigningAlg {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EdDsa => "EdDSA",
            Self::Es256 => "ES256",
            Self::Rs256 => "RS256",
        }
    }

    fn jwt_algorithm(self) -> Algorithm {
        match self {
            Self::EdDsa => Algorithm::EdDSA,
            Self::Es256 => Algorithm::ES256,
            Self::Rs256 => Algorithm::RS256,
        }
    }
}

impl fmt::Display for SigningAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SigningAlg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "EdDSA" => Ok(Self::EdDsa),
            "ES256" => Ok(Self::Es256),
            "RS256" => Ok(Self::Rs256),
            other => Err(format!(
                "unknown algorithm {other:?}: use EdDSA, ES256 or RS256"
            )),
        }
    }
}

/// Where a key stands at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// Published, not signing yet.
    Pending,
    Signing,
    /// No longer signs; still published while tokens it signed may live.
    Retired,
    /// No longer signs nor published.
    Expired,
    Purged,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Signing => "signing",
            Self::Retired => "retired",
            Self::Expired => "expired",
            Self::Purged => "purged",
        }
    }

    pub fn published(self) -> bool {
        matches!(self, Self::Pending | Self::Signing | Self::Retired)
    }
}

/// Makes a new key record, activating at `activates_at`.
pub fn generate(
    alg: SigningAlg,
    now: OffsetDateTime,
    activates_at: OffsetDateTime,
    master_key: Option<&MasterKey>,
) -> Result<KeyRecord, ServiceError> {
    let failed = || ServiceError::Internal(format!("{alg} key generation failed"));
    let rng = SystemRandom::new();
    let kid = uuid::Uuid::new_v4().simple().to_string();
    let (pkcs8, mut jwk): (Zeroizing<Vec<u8>>, PublicJwk) = match alg {
        SigningAlg::EdDsa => {
            let doc = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| failed())?;
            let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref()).map_err(|_| failed())?;
            let jwk = PublicJwk {
                kty: "OKP".into(),
                crv: Some("Ed25519".into()),
                x: Some(B64.encode(pair.public_key().as_ref())),
                ..empty_jwk()
            };
            (Zeroizing::new(doc.as_ref().to_vec()), jwk)
        }
        SigningAlg::Es256 => {
            let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(|_| failed())?;
            let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref())
                .map_err(|_| failed())?;
            // Uncompressed point: 0x04 | x | y.
            let point = pair.public_key().as_ref();
            if point.len() != 65 {
                return Err(failed());
            }
            let jwk = PublicJwk {
                kty: "EC".into(),
                crv: Some("P-256".into()),
                x: Some(B64.encode(&point[1..33])),
                y: Some(B64.encode(&point[33..65])),
                ..empty_jwk()
            };
            (Zeroizing::new(doc.as_ref().to_vec()), jwk)
        }
        SigningAlg::Rs256 => {
            let pair = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| failed())?;
            let der = pair.as_der().map_err(|_| failed())?;
            let public = pair.public_key();
            let jwk = PublicJwk {
                kty: "RSA".into(),
                n: Some(B64.encode(public.modulus().big_endian_without_leading_zero())),
                e: Some(B64.encode(public.exponent().big_endian_without_leading_zero())),
                ..empty_jwk()
            };
            (Zeroizing::new(der.as_ref().to_vec()), jwk)
        }
    };
    jwk.kid = kid.clone();
    jwk.alg = alg.as_str().into();
    let (private_key, encrypted) = match master_key {
        Some(master) => (master.seal(&kid, &pkcs8)?, true),
        None => (pkcs8.to_vec(), false),
    };
    Ok(KeyRecord {
        public_jwk: serde_json::to_string(&jwk)
            .map_err(|e| ServiceError::Internal(format!("jwk: {e}")))?,
        kid,
        alg: alg.as_str().into(),
        private_key,
        encrypted,
        created_at: now,
        activates_at,
        retired_at: None,
        purged_at: None,
    })
}

fn empty_jwk() -> PublicJwk {
    PublicJwk {
        kty: String::new(),
        kid: String::new(),
        alg: String::new(),
        use_: "sig".into(),
        crv: None,
        x: None,
        y: None,
        n: None,
        e: None,
    }
}

/// A private key ready to sign.
pub enum Signer {
    Ed(Ed25519KeyPair),
    Ec(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

impl Signer {
    fn from_pkcs8(alg: SigningAlg, pkcs8: &[u8]) -> Result<Self, ServiceError> {
        let bad = || ServiceError::Internal(format!("a stored {alg} private key does not parse"));
        Ok(match alg {
            SigningAlg::EdDsa => Self::Ed(Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|_| bad())?),
            SigningAlg::Es256 => Self::Ec(
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
                    .map_err(|_| bad())?,
            ),
            SigningAlg::Rs256 => Self::Rsa(RsaKeyPair::from_pkcs8(pkcs8).map_err(|_| bad())?),
        })
    }

    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, ServiceError> {
        let failed = || ServiceError::Internal("signing failed".into());
        match self {
            Self::Ed(pair) => Ok(pair.sign(message).as_ref().to_vec()),
            Self::Ec(pair) => pair
                .sign(&SystemRandom::new(), message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| failed()),
            Self::Rsa(pair) => {
                let mut sig = vec![0u8; pair.public_modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), message, &mut sig)
                    .map_err(|_| failed())?;
                Ok(sig)
            }
        }
    }
}

/// One key of the ring, parsed.
pub struct LoadedKey {
    pub record: KeyRecord,
    pub alg: SigningAlg,
    pub jwk: PublicJwk,
    pub signer: Signer,
    pub verifier: DecodingKey,
    pub jwt_algorithm: Algorithm,
}

/// Every key in the store, parsed once, with the rules of docs/reference.md §8
/// evaluated at any instant.
#[derive(Default)]
pub struct KeyRing {
    keys: Vec<LoadedKey>,
    by_kid: HashMap<String, usize>,
}

impl KeyRing {
    pub fn load(
        records: Vec<KeyRecord>,
        master_key: Option<&MasterKey>,
    ) -> Result<Self, ServiceError> {
        let mut keys = Vec::with_capacity(records.len());
        for record in records {
            let alg: SigningAlg = record.alg.parse().map_err(ServiceError::Internal)?;
            let pkcs8 = if record.encrypted {
                let master = master_key.ok_or_else(|| {
                    ServiceError::Internal(
                        "signing keys are encrypted but master_key is not set".into(),
                    )
                })?;
                master.open(&record.kid, &record.private_key)?
            } else {
                Zeroizing::new(record.private_key.clone())
            };
            let signer = Signer::from_pkcs8(alg, &pkcs8)?;
            let jwk: PublicJwk = serde_json::from_str(&record.public_jwk)
                .map_err(|e| ServiceError::Internal(format!("stored jwk: {e}")))?;
            let verifier = decoding_key(&jwk)?;
            keys.push(LoadedKey {
                jwt_algorithm: alg.jwt_algorithm(),
                record,
                alg,
                jwk,
                signer,
                verifier,
            });
        }
        keys.sort_by_key(|k| (k.record.activates_at, k.record.created_at));
        let by_kid = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.record.kid.clone(), i))
            .collect();
        Ok(Self { keys, by_kid })
    }

    pub fn records(&self) -> impl Iterator<Item = &KeyRecord> {
        self.keys.iter().map(|k| &k.record)
    }

    /// The key that signs at `now`, if any.
    pub fn signing_key(&self, now: OffsetDateTime) -> Option<&LoadedKey> {
        let records: Vec<&KeyRecord> = self.records().collect();
        self.keys
            .iter()
            .rev()
            .find(|k| state_of(&k.record, &records, now, Duration::ZERO) == KeyState::Signing)
    }

    /// The key with this kid, if it may verify a token at `now`.
    pub fn verifying_key(
        &self,
        kid: &str,
        now: OffsetDateTime,
        access_ttl: Duration,
    ) -> Option<&LoadedKey> {
        let key = self.keys.get(*self.by_kid.get(kid)?)?;
        let records: Vec<&KeyRecord> = self.records().collect();
        let state = state_of(&key.record, &records, now, access_ttl);
        matches!(state, KeyState::Signing | KeyState::Retired).then_some(key)
    }

    /// The public keys of the JWKS at `now`.
    pub fn published(&self, now: OffsetDateTime, access_ttl: Duration) -> Vec<PublicJwk> {
        let records: Vec<&KeyRecord> = self.records().collect();
        self.keys
            .iter()
            .filter(|k| state_of(&k.record, &records, now, access_ttl).published())
            .map(|k| k.jwk.clone())
            .collect()
    }
}

fn decoding_key(jwk: &PublicJwk) -> Result<DecodingKey, ServiceError> {
    let missing = || ServiceError::Internal(format!("stored jwk {} lacks a member", jwk.kid));
    let key = match jwk.kty.as_str() {
        "OKP" => DecodingKey::from_ed_components(jwk.x.as_deref().ok_or_else(missing)?),
        "EC" => DecodingKey::from_ec_components(
            jwk.x.as_deref().ok_or_else(missing)?,
            jwk.y.as_deref().ok_or_else(missing)?,
        ),
        "RSA" => DecodingKey::from_rsa_components(
            jwk.n.as_deref().ok_or_else(missing)?,
            jwk.e.as_deref().ok_or_else(missing)?,
        ),
        other => return Err(ServiceError::Internal(format!("unknown kty {other}"))),
    };
    key.map_err(|e| ServiceError::Internal(format!("stored jwk {}: {e}", jwk.kid)))
}

/// When a key stopped (or will have stopped) signing, as seen at `now`: its
/// own retirement, or the activation of a later key that did sign.
fn end_of_signing(
    key: &KeyRecord,
    all: &[&KeyRecord],
    now: OffsetDateTime,
) -> Option<OffsetDateTime> {
    let superseded = all
        .iter()
        .filter(|other| other.kid != key.kid && other.purged_at.is_none())
        .filter(|other| {
            (other.activates_at, other.created_at) > (key.activates_at, key.created_at)
                && other.activates_at <= now
                && other.retired_at.is_none_or(|r| r > other.activates_at)
        })
        .map(|other| other.activates_at)
        .min();
    match (key.retired_at, superseded) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The state of one key at `now`, among all keys of the ring.
pub fn state_of(
    key: &KeyRecord,
    all: &[&KeyRecord],
    now: OffsetDateTime,
    access_ttl: Duration,
) -> KeyState {
    if key.purged_at.is_some() {
        return KeyState::Purged;
    }
    let end = end_of_signing(key, all, now);
    if key.activates_at > now {
        return match end {
            Some(_) => KeyState::Expired,
            None => KeyState::Pending,
        };
    }
    match end {
        None => KeyState::Signing,
        // Retired before it ever signed: nothing can need it.
        Some(end) if end < key.activates_at => KeyState::Expired,
        Some(end) if end + access_ttl + VERIFIER_LEEWAY > now => KeyState::Retired,
        Some(_) => KeyState::Expired,
    }
}

/// The keys no live token can need any more, which may leave the store:
/// expired ones, and purged ones once every token they signed has expired
/// anyway (until then a purged key's record says why such tokens fail).
pub fn deletable(records: &[KeyRecord], now: OffsetDateTime, access_ttl: Duration) -> Vec<String> {
    let all: Vec<&KeyRecord> = records.iter().collect();
    records
        .iter()
        .filter(|key| match state_of(key, &all, now, access_ttl) {
            KeyState::Expired => true,
            KeyState::Purged => key
                .purged_at
                .is_some_and(|at| at + access_ttl + VERIFIER_LEEWAY <= now),
            _ => false,
        })
        .map(|key| key.kid.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(900);

    fn at(s: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000 + s).unwrap()
    }

    fn key(alg: SigningAlg, created: i64, activates: i64) -> KeyRecord {
        generate(alg, at(created), at(activates), None).unwrap()
    }

    fn states(records: &[KeyRecord], now: i64) -> Vec<KeyState> {
        let all: Vec<&KeyRecord> = records.iter().collect();
        records
            .iter()
            .map(|k| state_of(k, &all, at(now), TTL))
            .collect()
    }

    #[test]
    fn every_algorithm_generates_a_key_that_signs_and_loads() {
        for alg in [SigningAlg::EdDsa, SigningAlg::Es256, SigningAlg::Rs256] {
            let record = key(alg, 0, 0);
            let ring = KeyRing::load(vec![record.clone()], None).unwrap();
            let loaded = ring.signing_key(at(1)).unwrap();
            assert_eq!(loaded.alg, alg);
            assert!(!loaded.signer.sign(b"message").unwrap().is_empty());
            let jwk: serde_json::Value = serde_json::from_str(&record.public_jwk).unwrap();
            for private in ["d", "p", "q", "dp", "dq", "qi"] {
                assert!(jwk.get(private).is_none(), "{alg}: {private} published");
            }
        }
    }

    #[test]
    fn encrypted_keys_need_the_master_key() {
        let master =
            MasterKey::from_base64("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").unwrap();
        let record = generate(SigningAlg::EdDsa, at(0), at(0), Some(&master)).unwrap();
        assert!(record.encrypted);
        assert!(Ed25519KeyPair::from_pkcs8(&record.private_key).is_err());
        assert!(KeyRing::load(vec![record.clone()], Some(&master)).is_ok());
        assert!(KeyRing::load(vec![record], None).is_err());
    }

    #[test]
    fn a_rotated_in_key_is_published_first_and_then_supersedes() {
        let old = key(SigningAlg::EdDsa, 0, 0);
        let new = key(SigningAlg::EdDsa, 100, 400);
        let ring = [old, new];
        use KeyState::*;
        assert_eq!(states(&ring, 200), [Signing, Pending]);
        assert_eq!(states(&ring, 400), [Retired, Signing]);
        // The old key stays until every token it signed has expired (+ leeway).
        assert_eq!(states(&ring, 400 + 900 + 59), [Retired, Signing]);
        assert_eq!(states(&ring, 400 + 900 + 60), [Expired, Signing]);
    }

    #[test]
    fn retirement_and_purge() {
        use KeyState::*;
        let mut k = key(SigningAlg::EdDsa, 0, 0);
        k.retired_at = Some(at(10));
        assert_eq!(states(std::slice::from_ref(&k), 20), [Retired]);
        k.purged_at = Some(at(20));
        assert_eq!(states(&[k], 20), [Purged]);
        // Retired while pending: it never signed, so it is not published.
        let mut pending = key(SigningAlg::EdDsa, 0, 100);
        pending.retired_at = Some(at(50));
        assert_eq!(states(&[pending.clone()], 60), [Expired]);
        // And it supersedes nothing when its time comes.
        let old = key(SigningAlg::EdDsa, 0, 0);
        assert_eq!(states(&[old, pending], 200), [Signing, Expired]);
    }

    #[test]
    fn only_keys_no_live_token_needs_are_deletable() {
        let old = key(SigningAlg::EdDsa, 0, 0);
        let new = key(SigningAlg::EdDsa, 100, 400);
        let ring = [old.clone(), new.clone()];
        assert!(deletable(&ring, at(400 + 900 + 59), TTL).is_empty());
        assert_eq!(
            deletable(&ring, at(400 + 900 + 60), TTL),
            [old.kid.as_str()]
        );
        // A purged key leaves once its tokens would have expired anyway.
        let mut purged = new;
        purged.purged_at = Some(at(500));
        let ring = [old.clone(), purged.clone()];
        let gone = deletable(&ring, at(500 + 900 + 59), TTL);
        assert!(!gone.contains(&purged.kid), "{gone:?}");
        let gone = deletable(&ring, at(500 + 900 + 60), TTL);
        assert!(gone.contains(&purged.kid), "{gone:?}");
        // Never the signing key, nor one waiting to sign.
        let pending = key(SigningAlg::EdDsa, 0, 10_000);
        assert!(deletable(&[old, pending], at(5_000), TTL).is_empty());
    }
}
