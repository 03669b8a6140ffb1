//! Step-up authentication (RFC 9470): a route may demand more of how the
//! user logged in than a valid token, namely a method (`amr`, RFC 8176) or
//! a recent login (`auth_time`). A token short of it is answered 401
//! `insufficient_user_authentication`, with what would do in the challenge,
//! so that the client can have the user log in again.

use std::time::Duration;

use crate::claims::Claims;
use crate::request::Rejection;
use crate::verifier::unix_now;

/// The methods (`amr`) that make a latchkey login more than a password:
/// TOTP (`otp`), a recovery code (`mfa`), a passkey (`hwk`; latchkey always
/// has the authenticator verify its user, with a PIN or a biometric).
pub const SECOND_FACTOR_AMR: [&str; 3] = ["otp", "mfa", "hwk"];

/// What a refusal for want of a second factor names in `acr_values`.
const SECOND_FACTOR_WANTED: &str = "mfa";

/// What a route demands of the user's login: every method of `amr`, with
/// `second_factor` any one of [`SECOND_FACTOR_AMR`], and, with `max_age`, a
/// login no older than that. Made empty by `default()`; a layer carries
/// one ([`AuthLayer::require_amr`](crate::AuthLayer::require_amr),
/// [`AuthLayer::require_second_factor`](crate::AuthLayer::require_second_factor),
/// [`AuthLayer::require_max_age`](crate::AuthLayer::require_max_age)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthRequirement {
    amr: Vec<String>,
    second_factor: bool,
    max_age: Option<Duration>,
}

impl AuthRequirement {
    /// Also requires more than a password, whichever second factor it was
    /// (see [`SECOND_FACTOR_AMR`]). A login without one is refused with
    /// `acr_values="mfa"`.
    #[must_use]
    pub fn second_factor(mut self) -> Self {
        self.second_factor = true;
        self
    }

    /// Also requires the method `amr` (e.g. `"otp"`, `"hwk"`, `"mfa"`).
    /// For "a second factor, any", [`AuthRequirement::second_factor`]:
    /// `amr("otp")` refuses a user who logged in with a passkey.
    #[must_use]
    pub fn amr(mut self, amr: impl Into<String>) -> Self {
        self.amr.push(amr.into());
        self
    }

    /// Also requires a login (`auth_time`) at most `max_age` ago; of two
    /// calls, the stricter holds.
    #[must_use]
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = Some(self.max_age.map_or(max_age, |m| m.min(max_age)));
        self
    }

    /// `true` when nothing is required.
    pub fn is_empty(&self) -> bool {
        self.amr.is_empty() && !self.second_factor && self.max_age.is_none()
    }

    /// Checks `claims` at `now` (Unix seconds).
    ///
    /// # Errors
    ///
    /// [`Rejection::InsufficientUserAuthentication`] naming what is missing.
    pub fn check_at(&self, claims: &Claims, now: i64) -> Result<(), Rejection> {
        let mut missing: Vec<String> = self
            .amr
            .iter()
            .filter(|m| !claims.has_amr(m))
            .cloned()
            .collect();
        let named = missing.iter().any(|m| m == SECOND_FACTOR_WANTED);
        if self.second_factor && !claims.has_second_factor() && !named {
            missing.push(SECOND_FACTOR_WANTED.to_owned());
        }
        let too_old = self.max_age.filter(|max| {
            let max = i64::try_from(max.as_secs()).unwrap_or(i64::MAX);
            // A token that does not say when its login was cannot prove it recent.
            claims
                .auth_time
                .is_none_or(|at| now.saturating_sub(at) > max)
        });
        if missing.is_empty() && too_old.is_none() {
            return Ok(());
        }
        Err(Rejection::InsufficientUserAuthentication {
            acr_values: missing,
            max_age: too_old.map(|d| d.as_secs()),
        })
    }

    /// [`AuthRequirement::check_at`] now.
    ///
    /// # Errors
    ///
    /// As [`AuthRequirement::check_at`].
    pub fn check(&self, claims: &Claims) -> Result<(), Rejection> {
        self.check_at(claims, unix_now())
    }
}

impl Claims {
    /// `true` when the login used the method `amr` (RFC 8176).
    pub fn has_amr(&self, amr: &str) -> bool {
        self.amr.iter().any(|m| m == amr)
    }

    /// `Ok` when the login used the method `amr`; else the 401
    /// `insufficient_user_authentication` refusal (`acr_values` naming it),
    /// so that a handler can say `claims.require_amr("otp")?;`.
    ///
    /// # Errors
    ///
    /// [`Rejection::InsufficientUserAuthentication`].
    pub fn require_amr(&self, amr: &str) -> Result<(), Rejection> {
        AuthRequirement::default().amr(amr).check(self)
    }

    /// `true` when the login took more than a password: one of
    /// [`SECOND_FACTOR_AMR`].
    pub fn has_second_factor(&self) -> bool {
        SECOND_FACTOR_AMR.iter().any(|m| self.has_amr(m))
    }

    /// `Ok` when the login took a second factor, whichever; else the 401
    /// `insufficient_user_authentication` refusal (`acr_values="mfa"`).
    ///
    /// # Errors
    ///
    /// [`Rejection::InsufficientUserAuthentication`].
    pub fn require_second_factor(&self) -> Result<(), Rejection> {
        AuthRequirement::default().second_factor().check(self)
    }

    /// `Ok` when the login was at most `max_age` ago; else the 401
    /// `insufficient_user_authentication` refusal (with `max_age`), so that
    /// a handler can say `claims.require_auth_within(Duration::from_secs(300))?;`.
    ///
    /// # Errors
    ///
    /// [`Rejection::InsufficientUserAuthentication`].
    pub fn require_auth_within(&self, max_age: Duration) -> Result<(), Rejection> {
        AuthRequirement::default().max_age(max_age).check(self)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use http::header::WWW_AUTHENTICATE;
    use http::StatusCode;

    use super::*;

    fn claims(amr: &[&str], auth_time: Option<i64>) -> Claims {
        Claims {
            sub: "u1".into(),
            sid: Some("s1".into()),
            scope: String::new(),
            client_id: "web".into(),
            jti: "j".into(),
            exp: 2_000,
            iat: 1_000,
            nbf: Some(1_000),
            iss: "https://i".into(),
            aud: vec!["https://i".into()],
            amr: amr.iter().map(|m| (*m).to_owned()).collect(),
            auth_time,
        }
    }

    #[test]
    fn a_method_is_required_by_name() {
        let need = AuthRequirement::default().amr("otp");
        assert!(need.check_at(&claims(&["pwd", "otp"], Some(0)), 10).is_ok());
        match need.check_at(&claims(&["pwd"], Some(0)), 10) {
            Err(Rejection::InsufficientUserAuthentication {
                acr_values,
                max_age: None,
            }) => assert_eq!(acr_values, ["otp"]),
            other => panic!("{other:?}"),
        }
        let both = need.clone().amr("hwk");
        match both.check_at(&claims(&["hwk", "user"], Some(0)), 10) {
            Err(Rejection::InsufficientUserAuthentication { acr_values, .. }) => {
                assert_eq!(acr_values, ["otp"], "only what is missing");
            }
            other => panic!("{other:?}"),
        }
        assert!(AuthRequirement::default().is_empty());
        assert!(!need.is_empty());
    }

    #[test]
    fn a_second_factor_is_any_of_latchkeys() {
        let need = AuthRequirement::default().second_factor();
        assert!(!need.is_empty());
        for amr in [&["pwd", "otp"][..], &["pwd", "mfa"], &["hwk", "user"]] {
            assert!(need.check_at(&claims(amr, Some(0)), 10).is_ok(), "{amr:?}");
            assert!(claims(amr, Some(0)).has_second_factor(), "{amr:?}");
        }
        for amr in [&["pwd"][..], &["user"], &[]] {
            match need.check_at(&claims(amr, Some(0)), 10) {
                Err(Rejection::InsufficientUserAuthentication {
                    acr_values,
                    max_age: None,
                }) => assert_eq!(acr_values, ["mfa"], "{amr:?}"),
                other => panic!("{amr:?}: {other:?}"),
            }
        }
        // Beside a named method, each missing one is named once.
        let mfa_twice = need.clone().amr("mfa");
        match mfa_twice.check_at(&claims(&["pwd"], Some(0)), 10) {
            Err(Rejection::InsufficientUserAuthentication { acr_values, .. }) => {
                assert_eq!(acr_values, ["mfa"]);
            }
            other => panic!("{other:?}"),
        }
        let both = need.amr("otp");
        match both.check_at(&claims(&["pwd"], Some(0)), 10) {
            Err(Rejection::InsufficientUserAuthentication { acr_values, .. }) => {
                assert_eq!(acr_values, ["otp", "mfa"]);
            }
            other => panic!("{other:?}"),
        }
        assert!(claims(&["hwk", "user"], Some(0))
            .require_second_factor()
            .is_ok());
        assert!(claims(&["pwd"], Some(0)).require_second_factor().is_err());
    }

    #[test]
    fn a_recent_login_is_required_up_to_max_age() {
        let need = AuthRequirement::default().max_age(Duration::from_secs(300));
        assert!(need.check_at(&claims(&["pwd"], Some(1_000)), 1_300).is_ok());
        match need.check_at(&claims(&["pwd"], Some(1_000)), 1_301) {
            Err(Rejection::InsufficientUserAuthentication {
                acr_values,
                max_age: Some(300),
            }) => assert!(acr_values.is_empty()),
            other => panic!("{other:?}"),
        }
        // No auth_time: nothing proves the login recent.
        assert!(need.check_at(&claims(&["pwd"], None), 1_000).is_err());
        // The stricter of two ages holds.
        let stricter = need
            .max_age(Duration::from_secs(60))
            .max_age(Duration::from_secs(120));
        assert!(stricter.check_at(&claims(&[], Some(1_000)), 1_061).is_err());
        assert!(stricter.check_at(&claims(&[], Some(1_000)), 1_060).is_ok());
    }

    #[test]
    fn the_refusal_follows_rfc_9470() {
        let r: http::Response<String> = Rejection::InsufficientUserAuthentication {
            acr_values: Vec::new(),
            max_age: Some(300),
        }
        .to_response();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let challenge = r.headers()[WWW_AUTHENTICATE].to_str().unwrap();
        assert_eq!(
            challenge,
            r#"Bearer error="insufficient_user_authentication", error_description="a more recent login is required", max_age="300""#
        );
        let body: serde_json::Value = serde_json::from_str(r.body()).unwrap();
        assert_eq!(body["error"], "insufficient_user_authentication");
        assert_eq!(body.as_object().unwrap().len(), 2);

        let r: http::Response<String> = Rejection::InsufficientUserAuthentication {
            acr_values: vec!["otp".into(), "hwk".into()],
            max_age: None,
        }
        .to_response();
        assert_eq!(
            r.headers()[WWW_AUTHENTICATE],
            r#"Bearer error="insufficient_user_authentication", error_description="a login with otp hwk is required", acr_values="otp hwk""#
        );
        let both = Rejection::InsufficientUserAuthentication {
            acr_values: vec!["otp".into()],
            max_age: Some(60),
        };
        assert!(both
            .challenge()
            .unwrap()
            .ends_with(r#"acr_values="otp", max_age="60""#));
    }

    #[test]
    fn claims_say_how_and_when_the_user_logged_in() {
        let c = claims(&["pwd", "otp"], Some(unix_now()));
        assert!(c.has_amr("otp"));
        assert!(!c.has_amr("ot"));
        assert!(c.require_amr("pwd").is_ok());
        assert!(c.require_amr("hwk").is_err());
        assert!(c.require_auth_within(Duration::from_secs(60)).is_ok());
        let old = claims(&["pwd"], Some(unix_now() - 600));
        assert!(old.require_auth_within(Duration::from_secs(300)).is_err());
    }
}
