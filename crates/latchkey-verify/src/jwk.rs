//! JSON Web Keys (RFC 7517) turned into parsed verification keys, each
//! pinned to exactly one algorithm by its key type and curve.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use aws_lc_rs::signature::{
    ParsedPublicKey, RsaPublicKeyComponents, ECDSA_P256_SHA256_FIXED, ED25519,
    RSA_PKCS1_2048_8192_SHA256,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Deserialize;

/// A signature algorithm this crate verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// `EdDSA` with an Ed25519 key (`kty` `OKP`, `crv` `Ed25519`).
    EdDsa,
    /// `ES256`: ECDSA with P-256 and SHA-256 (`kty` `EC`, `crv` `P-256`).
    Es256,
    /// `RS256`: RSASSA-PKCS1-v1_5 with SHA-256, keys of 2048 to 8192 bits.
    Rs256,
}

impl Algorithm {
    /// The JOSE name (`EdDSA`, `ES256`, `RS256`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EdDsa => "EdDSA",
            Self::Es256 => "ES256",
            Self::Rs256 => "RS256",
        }
    }

    /// The algorithm a JOSE header names, if it is one of ours. `Ed25519`
    /// (RFC 9864's fully-specified name) is the same as `EdDSA` here, since
    /// only Ed25519 keys are accepted for it.
    pub(crate) fn from_jose(name: &str) -> Option<Self> {
        match name {
            "EdDSA" | "Ed25519" => Some(Self::EdDsa),
            "ES256" => Some(Self::Es256),
            "RS256" => Some(Self::Rs256),
            _ => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A public key ready to verify with, and the one algorithm it verifies.
pub(crate) struct VerifyingKey {
    pub(crate) alg: Algorithm,
    key: ParsedPublicKey,
}

impl VerifyingKey {
    /// Checks `signature` over `message` with the key's own algorithm.
    #[inline]
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        self.key.verify_sig(message, signature).is_ok()
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// The keys of one JWKS, by `kid`.
pub(crate) type Keys = HashMap<String, Arc<VerifyingKey>>;

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    key_ops: Option<Vec<String>>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    n: Option<String>,
    e: Option<String>,
}

/// Parses a JWKS body. Keys this crate cannot use (other types, curves,
/// algorithms or uses, no `kid`, malformed members) are skipped, not fatal:
/// an issuer may publish keys for others. A `kid` given twice is dropped
/// altogether rather than guessed at.
pub(crate) fn parse_set(body: &[u8]) -> Result<Keys, String> {
    let set: RawSet = serde_json::from_slice(body).map_err(|e| format!("not a JWKS: {e}"))?;
    let mut keys = Keys::new();
    let mut doubled = Vec::new();
    for value in set.keys {
        let jwk: RawJwk = match serde_json::from_value(value) {
            Ok(jwk) => jwk,
            Err(e) => {
                tracing::debug!(error = %e, "skipping a malformed JWK");
                continue;
            }
        };
        let Some(kid) = jwk.kid.clone() else {
            tracing::debug!("skipping a JWK without kid");
            continue;
        };
        match parse_key(&jwk) {
            Ok(key) => {
                if keys.insert(kid.clone(), Arc::new(key)).is_some() {
                    doubled.push(kid);
                }
            }
            Err(why) => tracing::debug!(%kid, why, "skipping a JWK"),
        }
    }
    for kid in doubled {
        tracing::warn!(%kid, "the JWKS names this kid twice: ignoring it");
        keys.remove(&kid);
    }
    Ok(keys)
}

fn member(value: &Option<String>, name: &'static str) -> Result<Vec<u8>, &'static str> {
    let text = value.as_deref().ok_or(name)?;
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| "a member is not base64url")
}

/// One key, pinned to its algorithm by `kty`/`crv`; an `alg` member, when
/// present, must agree.
fn parse_key(jwk: &RawJwk) -> Result<VerifyingKey, &'static str> {
    if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
        return Err("not a signature key (use)");
    }
    if let Some(ops) = &jwk.key_ops {
        if !ops.iter().any(|op| op == "verify") {
            return Err("not a verification key (key_ops)");
        }
    }
    let alg = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
        ("OKP", Some("Ed25519")) => Algorithm::EdDsa,
        ("EC", Some("P-256")) => Algorithm::Es256,
        ("RSA", _) => Algorithm::Rs256,
        _ => return Err("unsupported key type or curve"),
    };
    if let Some(named) = jwk.alg.as_deref() {
        if Algorithm::from_jose(named) != Some(alg) {
            return Err("alg does not match the key type");
        }
    }
    let key = match alg {
        Algorithm::EdDsa => {
            let x = member(&jwk.x, "x")?;
            if x.len() != 32 {
                return Err("an Ed25519 key is 32 bytes");
            }
            ParsedPublicKey::new(&ED25519, x)
        }
        Algorithm::Es256 => {
            let x = member(&jwk.x, "x")?;
            let y = member(&jwk.y, "y")?;
            if x.len() != 32 || y.len() != 32 {
                return Err("P-256 coordinates are 32 bytes");
            }
            let mut point = Vec::with_capacity(65);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
        }
        Algorithm::Rs256 => {
            let n = member(&jwk.n, "n")?;
            let e = member(&jwk.e, "e")?;
            let n = strip_zeros(&n);
            let e = strip_zeros(&e);
            if n.len() < 256 {
                return Err("RSA keys shorter than 2048 bits are refused");
            }
            RsaPublicKeyComponents { n, e }.to_parsed_public_key(&RSA_PKCS1_2048_8192_SHA256)
        }
    }
    .map_err(|_| "the key is not a valid public key")?;
    Ok(VerifyingKey { alg, key })
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};

    fn ed_jwk(extra: &str) -> String {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap();
        let x = URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
        format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{x}"{extra}}}"#)
    }

    #[test]
    fn keys_are_pinned_and_unusable_ones_skipped() {
        let body = format!(
            r#"{{"keys":[{},{},{},{},{},{{"kty":"oct","kid":"h","k":"c2VjcmV0"}},{{"kty":"EC","crv":"P-384","kid":"p"}},42]}}"#,
            ed_jwk(r#","kid":"a","alg":"EdDSA","use":"sig""#),
            ed_jwk(r#","kid":"b""#),
            ed_jwk(r#","kid":"c","alg":"RS256""#),
            ed_jwk(r#","kid":"d","use":"enc""#),
            ed_jwk(""),
        );
        let keys = parse_set(body.as_bytes()).unwrap();
        let mut kids: Vec<_> = keys.keys().cloned().collect();
        kids.sort();
        assert_eq!(kids, ["a", "b"]);
        assert_eq!(keys["a"].alg, Algorithm::EdDsa);
    }

    #[test]
    fn a_doubled_kid_is_dropped() {
        let body = format!(
            r#"{{"keys":[{},{},{}]}}"#,
            ed_jwk(r#","kid":"a""#),
            ed_jwk(r#","kid":"a""#),
            ed_jwk(r#","kid":"b""#),
        );
        let keys = parse_set(body.as_bytes()).unwrap();
        assert_eq!(keys.len(), 1);
        assert!(keys.contains_key("b"));
    }

    #[test]
    fn not_a_jwks_is_an_error() {
        assert!(parse_set(b"[]").is_err());
        assert!(parse_set(b"{\"keys\":{}}").is_err());
    }
}
