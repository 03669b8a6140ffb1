//! Access tokens: RFC 9068 JWTs, signed with the ring's signing key and
//! verified with the algorithm pinned from the key named by `kid`.

use std::collections::HashSet;
use std::time::Duration;

use base64::Engine;
use jsonwebtoken::Validation;
use latchkey_proto::AccessClaims;
use serde::Serialize;
use time::OffsetDateTime;

use crate::crypto::B64;
use crate::error::ServiceError;
use crate::keys::{KeyRing, LoadedKey};

/// Nodes' clocks differ a little: a token another node issued a moment ago
/// must not be refused as not yet valid. Expiry gets no such allowance.
pub const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// The `typ` of every access token (RFC 9068 §2.1).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

#[derive(Serialize)]
struct Header<'a> {
    alg: &'a str,
    typ: &'a str,
    kid: &'a str,
}

/// Signs `claims` with `key` as a compact JWS.
pub fn sign(claims: &AccessClaims, key: &LoadedKey) -> Result<String, ServiceError> {
    let header = Header {
        alg: key.alg.as_str(),
        typ: ACCESS_TOKEN_TYP,
        kid: &key.record.kid,
    };
    let mut token = B64.encode(to_json(&header)?);
    token.push('.');
    token.push_str(&B64.encode(to_json(claims)?));
    let signature = key.signer.sign(token.as_bytes())?;
    token.push('.');
    token.push_str(&B64.encode(signature));
    Ok(token)
}

fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>, ServiceError> {
    serde_json::to_vec(value).map_err(|e| ServiceError::Internal(format!("json: {e}")))
}

/// What a token must match to be accepted.
pub struct Expectations<'a> {
    pub issuer: &'a str,
    pub audience: &'a str,
    pub access_ttl: Duration,
    pub leeway: Duration,
}

/// Verifies an access token against the ring at `now`. Every failure is the
/// same `InvalidToken`; the reason is only for logs.
pub fn verify(
    token: &str,
    ring: &KeyRing,
    expect: &Expectations<'_>,
    now: OffsetDateTime,
) -> Result<AccessClaims, ServiceError> {
    let header = jsonwebtoken::decode_header(token)
        .map_err(|_| ServiceError::InvalidToken("malformed access token"))?;
    let typ_ok = header.typ.as_deref().is_some_and(|t| {
        t.eq_ignore_ascii_case(ACCESS_TOKEN_TYP) || t.eq_ignore_ascii_case("application/at+jwt")
    });
    if !typ_ok {
        return Err(ServiceError::InvalidToken("not an access token (typ)"));
    }
    let kid = header
        .kid
        .as_deref()
        .ok_or(ServiceError::InvalidToken("no kid"))?;
    let key = ring
        .verifying_key(kid, now, expect.access_ttl)
        .ok_or(ServiceError::InvalidToken("unknown kid"))?;
    // The key decides the algorithm; the header's `alg` must agree with it.
    let mut validation = Validation::new(key.jwt_algorithm);
    validation.required_spec_claims = HashSet::new();
    // Time is checked below against the injected clock.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.set_issuer(&[expect.issuer]);
    validation.set_audience(&[expect.audience]);
    let data = jsonwebtoken::decode::<AccessClaims>(token, &key.verifier, &validation)
        .map_err(|_| ServiceError::InvalidToken("bad signature or claims"))?;
    let claims = data.claims;
    let now_s = now.unix_timestamp();
    let leeway = expect.leeway.as_secs() as i64;
    if claims.exp + leeway <= now_s {
        return Err(ServiceError::InvalidToken("expired"));
    }
    if claims.nbf - leeway.max(CLOCK_SKEW.as_secs() as i64) > now_s {
        return Err(ServiceError::InvalidToken("not yet valid"));
    }
    Ok(claims)
}

/// Access tokens whose signature and claims already checked out, by the
/// SHA-256 of the whole token, so a token used on every request is verified
/// once. Bounded, with room for one token of each session of a large app's
/// live set (past it the least useful entries go, S3-FIFO). Entries are
/// never trusted past their `exp`, and the session is still checked against
/// the store.
pub struct VerifiedTokens {
    entries: quick_cache::sync::Cache<[u8; 32], AccessClaims>,
}

const VERIFIED_TOKENS_MAX: usize = 262_144;

impl Default for VerifiedTokens {
    fn default() -> Self {
        Self {
            entries: quick_cache::sync::Cache::new(VERIFIED_TOKENS_MAX),
        }
    }
}

impl VerifiedTokens {
    pub fn key(token: &str) -> [u8; 32] {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(digest.as_ref());
        key
    }

    pub fn get(&self, key: &[u8; 32], now_s: i64) -> Option<AccessClaims> {
        self.entries
            .get(key)
            .filter(|c| c.exp > now_s && c.nbf - CLOCK_SKEW.as_secs() as i64 <= now_s)
    }

    pub fn insert(&self, key: [u8; 32], claims: AccessClaims) {
        self.entries.insert(key, claims);
    }

    pub fn clear(&self) {
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{generate, SigningAlg};

    const ISS: &str = "https://id.example";

    fn t(s: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000 + s).unwrap()
    }

    fn claims(iat: i64) -> AccessClaims {
        let iat = t(iat).unix_timestamp();
        AccessClaims {
            iss: ISS.into(),
            sub: "user-1".into(),
            aud: ISS.into(),
            exp: iat + 900,
            iat,
            nbf: iat,
            jti: "j".into(),
            sid: Some("s".into()),
            client_id: "web".into(),
            scope: String::new(),
            amr: vec!["pwd".into(), "otp".into()],
            auth_time: Some(iat - 30),
        }
    }

    fn expect() -> Expectations<'static> {
        Expectations {
            issuer: ISS,
            audience: ISS,
            access_ttl: Duration::from_secs(900),
            leeway: Duration::ZERO,
        }
    }

    fn ring(alg: SigningAlg) -> KeyRing {
        KeyRing::load(vec![generate(alg, t(-10), t(-10), None).unwrap()], None).unwrap()
    }

    fn forge(header: &str, claims: &AccessClaims, sig: &[u8]) -> String {
        format!(
            "{}.{}.{}",
            B64.encode(header),
            B64.encode(serde_json::to_vec(claims).unwrap()),
            B64.encode(sig)
        )
    }

    #[test]
    fn tokens_of_every_algorithm_verify() {
        for alg in [SigningAlg::EdDsa, SigningAlg::Es256, SigningAlg::Rs256] {
            let ring = ring(alg);
            let token = sign(&claims(0), ring.signing_key(t(0)).unwrap()).unwrap();
            assert_eq!(
                verify(&token, &ring, &expect(), t(1)).unwrap(),
                claims(0),
                "{alg}"
            );
        }
    }

    #[test]
    fn time_claims_are_enforced() {
        let ring = ring(SigningAlg::EdDsa);
        let token = sign(&claims(0), ring.signing_key(t(0)).unwrap()).unwrap();
        assert!(verify(&token, &ring, &expect(), t(899)).is_ok());
        assert!(verify(&token, &ring, &expect(), t(900)).is_err(), "expired");
        // Not before: another node's clock may be up to a minute behind.
        let later = sign(&claims(100), ring.signing_key(t(0)).unwrap()).unwrap();
        assert!(verify(&later, &ring, &expect(), t(40)).is_ok());
        assert!(
            verify(&later, &ring, &expect(), t(39)).is_err(),
            "not yet valid"
        );
        let lenient = Expectations {
            leeway: Duration::from_secs(60),
            ..expect()
        };
        assert!(verify(&token, &ring, &lenient, t(930)).is_ok());
    }

    #[test]
    fn wrong_issuer_audience_typ_kid_and_alg_are_refused() {
        let ring = ring(SigningAlg::EdDsa);
        let key = ring.signing_key(t(0)).unwrap();
        let kid = &key.record.kid;
        let good = sign(&claims(0), key).unwrap();
        let other_iss = Expectations {
            issuer: "https://evil",
            ..expect()
        };
        assert!(verify(&good, &ring, &other_iss, t(1)).is_err());
        let other_aud = Expectations {
            audience: "api",
            ..expect()
        };
        assert!(verify(&good, &ring, &other_aud, t(1)).is_err());

        // Same key, same claims, but a different header: each must fail.
        let signed_with_header = |header: String| {
            let mut token = format!(
                "{}.{}",
                B64.encode(&header),
                B64.encode(serde_json::to_vec(&claims(0)).unwrap())
            );
            let sig = key.signer.sign(token.as_bytes()).unwrap();
            token.push('.');
            token.push_str(&B64.encode(sig));
            token
        };
        let jwt_typ = signed_with_header(format!(r#"{{"alg":"EdDSA","typ":"JWT","kid":"{kid}"}}"#));
        assert!(verify(&jwt_typ, &ring, &expect(), t(1)).is_err(), "typ JWT");
        let no_typ = signed_with_header(format!(r#"{{"alg":"EdDSA","kid":"{kid}"}}"#));
        assert!(verify(&no_typ, &ring, &expect(), t(1)).is_err(), "no typ");
        let media = signed_with_header(format!(
            r#"{{"alg":"EdDSA","typ":"application/at+jwt","kid":"{kid}"}}"#
        ));
        assert!(
            verify(&media, &ring, &expect(), t(1)).is_ok(),
            "application/at+jwt is allowed"
        );
        let unknown_kid =
            signed_with_header(r#"{"alg":"EdDSA","typ":"at+jwt","kid":"nope"}"#.into());
        assert!(
            verify(&unknown_kid, &ring, &expect(), t(1)).is_err(),
            "unknown kid"
        );
        let no_kid = signed_with_header(r#"{"alg":"EdDSA","typ":"at+jwt"}"#.into());
        assert!(verify(&no_kid, &ring, &expect(), t(1)).is_err(), "no kid");
        let other_alg =
            signed_with_header(format!(r#"{{"alg":"ES256","typ":"at+jwt","kid":"{kid}"}}"#));
        assert!(
            verify(&other_alg, &ring, &expect(), t(1)).is_err(),
            "alg not the key's"
        );

        // alg none, no signature.
        let none = forge(
            &format!(r#"{{"alg":"none","typ":"at+jwt","kid":"{kid}"}}"#),
            &claims(0),
            b"",
        );
        assert!(verify(&none, &ring, &expect(), t(1)).is_err(), "alg none");
        // HS256 with the public key as the secret (the classic confusion).
        let hs = forge(
            &format!(r#"{{"alg":"HS256","typ":"at+jwt","kid":"{kid}"}}"#),
            &claims(0),
            &[0u8; 32],
        );
        assert!(verify(&hs, &ring, &expect(), t(1)).is_err(), "HS256");
    }

    #[test]
    fn a_foreign_key_with_the_same_kid_is_refused() {
        let ring_a = ring(SigningAlg::EdDsa);
        let mut foreign = generate(SigningAlg::EdDsa, t(-10), t(-10), None).unwrap();
        let kid = ring_a.signing_key(t(0)).unwrap().record.kid.clone();
        foreign.kid = kid;
        let ring_b = KeyRing::load(vec![foreign], None).unwrap();
        let token = sign(&claims(0), ring_b.signing_key(t(0)).unwrap()).unwrap();
        assert!(verify(&token, &ring_a, &expect(), t(1)).is_err());
    }

    #[test]
    fn verified_tokens_are_never_trusted_past_exp_and_stay_bounded() {
        let cache = VerifiedTokens::default();
        let c = claims(0);
        let key = VerifiedTokens::key("token-a");
        assert_ne!(key, VerifiedTokens::key("token-b"));
        cache.insert(key, c.clone());
        assert_eq!(cache.get(&key, c.iat), Some(c.clone()));
        assert_eq!(cache.get(&key, c.exp), None, "expired");
        assert_eq!(
            cache.get(&key, c.nbf - 60),
            Some(c.clone()),
            "another node's clock a little behind"
        );
        assert_eq!(cache.get(&key, c.nbf - 61), None, "not yet valid");
        for i in 0..2 * VERIFIED_TOKENS_MAX {
            cache.insert(VerifiedTokens::key(&i.to_string()), c.clone());
        }
        assert!(cache.entries.len() <= VERIFIED_TOKENS_MAX);
        cache.clear();
        assert_eq!(cache.get(&VerifiedTokens::key("1"), c.iat), None);
    }

    #[test]
    fn a_tampered_claim_fails_the_signature() {
        let ring = ring(SigningAlg::Es256);
        let token = sign(&claims(0), ring.signing_key(t(0)).unwrap()).unwrap();
        let mut parts: Vec<&str> = token.split('.').collect();
        let mut evil = claims(0);
        evil.sub = "admin".into();
        let body = B64.encode(serde_json::to_vec(&evil).unwrap());
        parts[1] = &body;
        assert!(verify(&parts.join("."), &ring, &expect(), t(1)).is_err());
    }
}
