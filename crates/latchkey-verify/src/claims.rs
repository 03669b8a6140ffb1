//! The claims of a verified access token (RFC 9068 §2.2).

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// The claims of an access token that passed every check.
///
/// A handler that takes `Claims` as an argument is only reached with a valid
/// token (see [`AuthLayer`](crate::AuthLayer) and the crate docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The subject: the user id, or the client id for `client_credentials`
    /// tokens.
    pub sub: String,
    /// The session the token belongs to; `None` for `client_credentials`
    /// tokens.
    pub sid: Option<String>,
    /// Space-separated scopes, possibly empty. See [`Claims::has_scope`].
    pub scope: String,
    /// The client the token was issued to (`web` for latchkey's own API).
    pub client_id: String,
    /// The token's unique id.
    pub jti: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: i64,
    /// Issue time, seconds since the Unix epoch.
    pub iat: i64,
    /// Not-before, seconds since the Unix epoch, when the token has one.
    pub nbf: Option<i64>,
    /// The issuer (checked against the configured one).
    pub iss: String,
    /// The audiences (one of them is the configured one); latchkey issues
    /// exactly one.
    pub aud: Vec<String>,
    /// How the user logged in (RFC 8176: `pwd`, `otp`, `mfa`, `hwk`,
    /// `user`); empty when the token does not say (`client_credentials`).
    /// See [`Claims::has_amr`] and [`Claims::require_amr`].
    pub amr: Vec<String>,
    /// When the user logged in, seconds since the Unix epoch (kept by
    /// refreshes); see [`Claims::require_auth_within`].
    pub auth_time: Option<i64>,
}

impl Claims {
    /// `true` when `scope` is one of the token's space-separated scopes
    /// (exact, case-sensitive match of a whole scope).
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes().any(|s| s == scope)
    }

    /// The token's scopes, one by one.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope.split(' ').filter(|s| !s.is_empty())
    }
}

/// `aud` is a string or an array of strings (RFC 7519 §4.1.3).
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// The payload as sent: every claim optional, so that a missing one is
/// told apart from a malformed one.
#[derive(Deserialize)]
struct RawClaims {
    iss: Option<String>,
    sub: Option<String>,
    aud: Option<OneOrMany>,
    exp: Option<i64>,
    iat: Option<i64>,
    nbf: Option<i64>,
    jti: Option<String>,
    sid: Option<String>,
    client_id: Option<String>,
    scope: Option<String>,
    #[serde(default)]
    amr: Vec<String>,
    auth_time: Option<i64>,
}

/// What a token's claims must match.
pub(crate) struct Expectations<'a> {
    pub(crate) issuer: &'a str,
    pub(crate) audience: &'a str,
    pub(crate) leeway: i64,
}

/// Parses the payload and checks it against `expect` at `now` (Unix
/// seconds).
pub(crate) fn check(payload: &[u8], expect: &Expectations<'_>, now: i64) -> Result<Claims, Error> {
    let raw: RawClaims =
        serde_json::from_slice(payload).map_err(|e| Error::MalformedClaims(e.to_string()))?;
    let iss = raw.iss.ok_or(Error::MissingClaim("iss"))?;
    let sub = raw.sub.ok_or(Error::MissingClaim("sub"))?;
    let aud = match raw.aud.ok_or(Error::MissingClaim("aud"))? {
        OneOrMany::One(a) => vec![a],
        OneOrMany::Many(many) => many,
    };
    let exp = raw.exp.ok_or(Error::MissingClaim("exp"))?;
    let iat = raw.iat.ok_or(Error::MissingClaim("iat"))?;
    let jti = raw.jti.ok_or(Error::MissingClaim("jti"))?;
    let client_id = raw.client_id.ok_or(Error::MissingClaim("client_id"))?;
    let scope = raw.scope.ok_or(Error::MissingClaim("scope"))?;
    if iss != expect.issuer {
        return Err(Error::InvalidIssuer);
    }
    if !aud.iter().any(|a| a == expect.audience) {
        return Err(Error::InvalidAudience);
    }
    // RFC 7519 §4.1.4: the current time must be before `exp`.
    if now >= exp.saturating_add(expect.leeway) {
        return Err(Error::Expired);
    }
    if let Some(nbf) = raw.nbf {
        if now < nbf.saturating_sub(expect.leeway) {
            return Err(Error::NotYetValid);
        }
    }
    Ok(Claims {
        sub,
        sid: raw.sid,
        scope,
        client_id,
        jti,
        exp,
        iat,
        nbf: raw.nbf,
        iss,
        aud,
        amr: raw.amr,
        auth_time: raw.auth_time,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    const EXPECT: Expectations<'static> = Expectations {
        issuer: "https://i",
        audience: "https://a",
        leeway: 60,
    };

    fn payload(overrides: serde_json::Value) -> Vec<u8> {
        let mut base = serde_json::json!({
            "iss": "https://i", "sub": "u1", "aud": "https://a", "exp": 1000,
            "iat": 900, "nbf": 900, "jti": "j", "sid": "s", "client_id": "web",
            "scope": "read write",
        });
        for (k, v) in overrides.as_object().unwrap() {
            if v.is_null() {
                base.as_object_mut().unwrap().remove(k);
            } else {
                base[k] = v.clone();
            }
        }
        serde_json::to_vec(&base).unwrap()
    }

    #[test]
    fn a_good_payload_gives_typed_claims() {
        let c = check(&payload(serde_json::json!({})), &EXPECT, 950).unwrap();
        assert_eq!(c.sub, "u1");
        assert_eq!(c.sid.as_deref(), Some("s"));
        assert_eq!(c.aud, ["https://a"]);
        assert!(c.has_scope("write"));
        assert!(!c.has_scope("wri"));
        assert!(!c.has_scope(""));
        // Without amr and auth_time (a client's own token): empty, none.
        assert!(c.amr.is_empty());
        assert_eq!(c.auth_time, None);
        let c = check(
            &payload(serde_json::json!({"amr": ["pwd", "otp"], "auth_time": 890})),
            &EXPECT,
            950,
        )
        .unwrap();
        assert_eq!(c.amr, ["pwd", "otp"]);
        assert_eq!(c.auth_time, Some(890));
        let p = payload(serde_json::json!({"amr": "pwd"}));
        assert!(matches!(
            check(&p, &EXPECT, 950),
            Err(Error::MalformedClaims(_))
        ));
    }

    #[test]
    fn leeway_applies_both_ways() {
        let p = payload(serde_json::json!({}));
        assert!(check(&p, &EXPECT, 1059).is_ok());
        assert!(matches!(check(&p, &EXPECT, 1060), Err(Error::Expired)));
        assert!(check(&p, &EXPECT, 840).is_ok());
        assert!(matches!(check(&p, &EXPECT, 839), Err(Error::NotYetValid)));
    }

    #[test]
    fn audience_may_be_an_array() {
        let p = payload(serde_json::json!({"aud": ["x", "https://a"]}));
        assert!(check(&p, &EXPECT, 950).is_ok());
        let p = payload(serde_json::json!({"aud": ["x"]}));
        assert!(matches!(
            check(&p, &EXPECT, 950),
            Err(Error::InvalidAudience)
        ));
    }

    #[test]
    fn missing_and_malformed_claims_are_told_apart() {
        for claim in [
            "iss",
            "sub",
            "aud",
            "exp",
            "iat",
            "jti",
            "client_id",
            "scope",
        ] {
            let p = payload(serde_json::json!({ claim: null }));
            match check(&p, &EXPECT, 950) {
                Err(Error::MissingClaim(c)) => assert_eq!(c, claim),
                other => panic!("{claim}: {other:?}"),
            }
        }
        let p = payload(serde_json::json!({"exp": "soon"}));
        assert!(matches!(
            check(&p, &EXPECT, 950),
            Err(Error::MalformedClaims(_))
        ));
        // sid and nbf are optional.
        let p = payload(serde_json::json!({"sid": null, "nbf": null}));
        assert!(check(&p, &EXPECT, 950).is_ok());
    }
}
