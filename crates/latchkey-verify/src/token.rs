//! A compact JWS taken apart (RFC 7515 §7.1), before any key is looked up.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Deserialize;

use crate::error::Error;
use crate::jwk::{Algorithm, VerifyingKey};

/// Longer tokens are refused before any decoding.
pub(crate) const MAX_TOKEN_LEN: usize = 16 * 1024;

#[derive(Deserialize)]
struct Header {
    alg: Option<String>,
    typ: Option<String>,
    kid: Option<String>,
    crit: Option<serde_json::Value>,
}

/// A token whose header passed: what is left is the key and the signature.
pub(crate) struct Parsed<'t> {
    pub(crate) alg: Algorithm,
    alg_name: String,
    pub(crate) kid: String,
    signing_input: &'t str,
    payload: &'t str,
    signature: &'t str,
}

fn b64(part: &str) -> Result<Vec<u8>, Error> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| Error::Malformed("a part is not base64url"))
}

/// Splits the token and checks its header: `typ`, `alg` (known, not
/// `none`), `kid` present, no `crit`.
pub(crate) fn parse(token: &str) -> Result<Parsed<'_>, Error> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(Error::Malformed("too long"));
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Error::Malformed("not three dot-separated parts"));
    };
    if header.is_empty() || payload.is_empty() {
        return Err(Error::Malformed("an empty part"));
    }
    let header_bytes = b64(header)?;
    let h: Header = serde_json::from_slice(&header_bytes)
        .map_err(|_| Error::Malformed("the header is not a JSON object"))?;
    if h.crit.is_some() {
        return Err(Error::Malformed("crit extensions are not understood"));
    }
    let typ_ok = h.typ.as_deref().is_some_and(|t| {
        t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt")
    });
    if !typ_ok {
        return Err(Error::InvalidType);
    }
    let alg_name = h.alg.ok_or(Error::Malformed("the header has no alg"))?;
    let alg = Algorithm::from_jose(&alg_name)
        .ok_or_else(|| Error::UnsupportedAlgorithm(alg_name.clone()))?;
    let kid = h.kid.ok_or(Error::MissingKeyId)?;
    if signature.is_empty() {
        return Err(Error::Malformed("no signature"));
    }
    let signing_input = &token[..header.len() + 1 + payload.len()];
    Ok(Parsed {
        alg,
        alg_name,
        kid,
        signing_input,
        payload,
        signature,
    })
}

impl Parsed<'_> {
    /// Checks the signature with `key`, whose algorithm must be the one the
    /// header names; answers the decoded payload.
    pub(crate) fn verify(&self, key: &VerifyingKey) -> Result<Vec<u8>, Error> {
        if key.alg != self.alg {
            return Err(Error::AlgorithmMismatch {
                header: self.alg_name.clone(),
                key: key.alg,
            });
        }
        let signature = b64(self.signature)?;
        if !key.verify(self.signing_input.as_bytes(), &signature) {
            return Err(Error::InvalidSignature);
        }
        b64(self.payload)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    fn token(header: &str) -> String {
        format!("{}.e30.c2ln", URL_SAFE_NO_PAD.encode(header))
    }

    fn err(header: &str) -> Error {
        match parse(&token(header)) {
            Err(e) => e,
            Ok(_) => panic!("{header} accepted"),
        }
    }

    #[test]
    fn headers_are_checked() {
        let t = token(r#"{"alg":"EdDSA","typ":"AT+JWT","kid":"k"}"#);
        let ok = parse(&t).unwrap();
        assert_eq!((ok.alg, ok.kid.as_str()), (Algorithm::EdDsa, "k"));
        assert!(parse(&token(
            r#"{"alg":"ES256","typ":"application/at+jwt","kid":"k"}"#
        ))
        .is_ok());
        assert!(matches!(
            err(r#"{"alg":"EdDSA","typ":"JWT","kid":"k"}"#),
            Error::InvalidType
        ));
        assert!(matches!(
            err(r#"{"alg":"EdDSA","kid":"k"}"#),
            Error::InvalidType
        ));
        for alg in ["none", "None", "HS256", "PS256", "ES384"] {
            let header = format!(r#"{{"alg":"{alg}","typ":"at+jwt","kid":"k"}}"#);
            assert!(matches!(err(&header), Error::UnsupportedAlgorithm(_)));
        }
        assert!(matches!(
            err(r#"{"alg":"EdDSA","typ":"at+jwt"}"#),
            Error::MissingKeyId
        ));
        assert!(matches!(
            err(r#"{"alg":"EdDSA","typ":"at+jwt","kid":"k","crit":["exp"]}"#),
            Error::Malformed(_)
        ));
    }

    #[test]
    fn shapes_are_checked() {
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"EdDSA","typ":"at+jwt","kid":"k"}"#);
        assert!(matches!(
            parse(&format!("{header}.e30.")),
            Err(Error::Malformed("no signature"))
        ));
        for bad in ["", "a.b", "a.b.c.d", "..", "e30=.e30.c2ln", "!!.e30.c2ln"] {
            assert!(matches!(parse(bad), Err(Error::Malformed(_))), "{bad}");
        }
        assert!(matches!(
            parse(&"a".repeat(MAX_TOKEN_LEN + 1)),
            Err(Error::Malformed(_))
        ));
    }
}
