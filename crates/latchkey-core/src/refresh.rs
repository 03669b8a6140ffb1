//! Refresh tokens: `lk1.<sid>.<generation>.<mac>`, with
//! `mac = HMAC-SHA256(server secret, sid | salt | generation)`.
//!
//! No row per token: the session keeps a salt and a generation counter, and
//! the token of any generation can be re-derived (that is how the grace
//! window answers the *same* successor twice).

use crate::ids::SessionId;
use base64::Engine;

use crate::crypto::{RefreshSecret, B64};

const VERSION: &str = "lk1";
const MAC_LEN: usize = 32;
const MAX_SID_LEN: usize = 64;

/// A refresh token taken apart. Parsing checks only the shape; the MAC is
/// checked against the session's salt by [`RefreshSecret`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedRefreshToken {
    pub session_id: SessionId,
    pub generation: u64,
    pub mac: [u8; MAC_LEN],
}

impl ParsedRefreshToken {
    /// `None` for anything that is not shaped like a refresh token.
    pub fn parse(token: &str) -> Option<Self> {
        let mut parts = token.split('.');
        let (version, sid, generation, mac) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || version != VERSION {
            return None;
        }
        if sid.is_empty()
            || sid.len() > MAX_SID_LEN
            || !sid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return None;
        }
        if generation.is_empty()
            || generation.len() > 20
            || !generation.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let generation = generation.parse().ok()?;
        let mac: [u8; MAC_LEN] = B64.decode(mac).ok()?.try_into().ok()?;
        Some(Self {
            session_id: SessionId::from(sid),
            generation,
            mac,
        })
    }

    /// Whether the MAC is the one the server would make for this session.
    pub fn is_genuine(&self, secret: &RefreshSecret, salt: &[u8]) -> bool {
        secret.verify(
            &mac_input(
                self.session_id.as_str(),
                salt,
                &self.generation.to_be_bytes(),
            ),
            &self.mac,
        )
    }
}

/// The refresh token of one generation of a session.
pub fn mint(
    secret: &RefreshSecret,
    session_id: &SessionId,
    salt: &[u8],
    generation: u64,
) -> String {
    let gen_bytes = generation.to_be_bytes();
    let tag = secret.sign(&mac_input(session_id.as_str(), salt, &gen_bytes));
    format!(
        "{VERSION}.{session_id}.{generation}.{}",
        B64.encode(tag.as_ref())
    )
}

fn mac_input<'a>(sid: &'a str, salt: &'a [u8], generation: &'a [u8; 8]) -> [&'a [u8]; 3] {
    [sid.as_bytes(), salt, generation]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn secret() -> RefreshSecret {
        RefreshSecret::new(&[1u8; 32])
    }

    #[test]
    fn minted_tokens_parse_and_verify_only_with_their_salt() {
        let t = mint(&secret(), &"3f0c-aa".into(), b"salt-1", 7);
        let p = ParsedRefreshToken::parse(&t).unwrap();
        assert_eq!((p.session_id.as_str(), p.generation), ("3f0c-aa", 7));
        assert!(p.is_genuine(&secret(), b"salt-1"));
        assert!(!p.is_genuine(&secret(), b"salt-2"));
        assert!(!p.is_genuine(&RefreshSecret::new(&[2u8; 32]), b"salt-1"));
    }

    #[test]
    fn a_forged_generation_fails_the_mac() {
        let t = mint(&secret(), &"sid".into(), b"salt", 1);
        let forged = t.replacen(".1.", ".2.", 1);
        let p = ParsedRefreshToken::parse(&forged).unwrap();
        assert!(!p.is_genuine(&secret(), b"salt"));
    }

    #[test]
    fn malformed_tokens_do_not_parse() {
        for bad in [
            "",
            "lk1",
            "lk1.sid.1",
            "lk2.sid.1.AAAA",
            "lk1..1.AAAA",
            "lk1.s d.1.AAAA",
            "lk1.sid.-1.AAAA",
            "lk1.sid.1.AAAA",
            "lk1.sid.99999999999999999999999.AAAA",
            "lk1.sid.1.AAAA.extra",
        ] {
            assert!(ParsedRefreshToken::parse(bad).is_none(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn parsing_never_panics(s in "\\PC{0,200}") {
            let _ = ParsedRefreshToken::parse(&s);
        }

        #[test]
        fn minted_tokens_round_trip(sid in "[a-zA-Z0-9-]{1,64}", generation in any::<u64>(),
                                    salt in proptest::collection::vec(any::<u8>(), 0..40)) {
            let t = mint(&secret(), &SessionId::from(sid.as_str()), &salt, generation);
            let p = ParsedRefreshToken::parse(&t).unwrap();
            prop_assert_eq!(p.session_id.as_str(), sid.as_str());
            prop_assert_eq!(p.generation, generation);
            prop_assert!(p.is_genuine(&secret(), &salt));
        }
    }
}
