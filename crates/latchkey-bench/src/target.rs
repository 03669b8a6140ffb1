//! The servers measured: their paths, users and answer shapes.

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// latchkey: its `/v1` browser session API and its `/oauth2` endpoints.
    Latchkey,
    /// The Express + jsonwebtoken + cookie-parser baseline (express-seed).
    Express,
    /// panva's oidc-provider (bench/oidc-provider): OAuth endpoints only.
    OidcProvider,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Log in once, then GET the "me" path with the access token.
    Me,
    /// Log in once, then POST refresh with the refresh cookie, rotating it.
    Refresh,
    /// POST login with correct credentials, over and over.
    Login,
    /// POST the token endpoint, `grant_type=client_credentials`.
    TokenCc,
    /// Get a refresh token once, then POST the token endpoint with
    /// `grant_type=refresh_token`, keeping the rotated token each time.
    TokenRefresh,
    /// Get an access token once, then POST it to the introspection endpoint.
    Introspect,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Me => "me",
            Scenario::Refresh => "refresh",
            Scenario::Login => "login",
            Scenario::TokenCc => "token-cc",
            Scenario::TokenRefresh => "token-refresh",
            Scenario::Introspect => "introspect",
        }
    }

    /// Whether each virtual user needs a session (or a token) before the
    /// load starts.
    pub fn needs_session(self) -> bool {
        matches!(
            self,
            Scenario::Me | Scenario::Refresh | Scenario::TokenRefresh | Scenario::Introspect
        )
    }

    /// Whether it speaks OAuth with client authentication (`--client-id`).
    pub fn is_oauth(self) -> bool {
        matches!(
            self,
            Scenario::TokenCc | Scenario::TokenRefresh | Scenario::Introspect
        )
    }
}

/// The name of the refresh cookie on both cookie servers.
pub const REFRESH_COOKIE: &str = "refreshToken";

/// latchkey's `/v1` paths (the soak, abuse and kill -9 programs use them).
pub const LATCHKEY_LOGIN: &str = "/v1/auth/login";
pub const LATCHKEY_REFRESH: &str = "/v1/auth/refresh";
pub const LATCHKEY_ME: &str = "/v1/me";

/// Where oidc-provider's bench-only route mints a refresh token.
pub const OIDC_MINT_REFRESH: &str = "/bench/refresh-token";

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Latchkey => "latchkey",
            Target::Express => "express",
            Target::OidcProvider => "oidc-provider",
        }
    }

    /// The registration path, for a server whose users the benchmark creates.
    pub fn register_path(self) -> Option<&'static str> {
        match self {
            Target::Latchkey => Some("/v1/auth/register"),
            Target::Express | Target::OidcProvider => None,
        }
    }

    pub fn login_path(self) -> Option<&'static str> {
        match self {
            Target::Latchkey => Some(LATCHKEY_LOGIN),
            Target::Express => Some("/login"),
            Target::OidcProvider => None,
        }
    }

    pub fn refresh_path(self) -> Option<&'static str> {
        match self {
            Target::Latchkey => Some(LATCHKEY_REFRESH),
            Target::Express => Some("/refresh-token"),
            Target::OidcProvider => None,
        }
    }

    pub fn me_path(self) -> Option<&'static str> {
        match self {
            Target::Latchkey => Some(LATCHKEY_ME),
            Target::Express => Some("/me"),
            Target::OidcProvider => None,
        }
    }

    /// The OAuth token endpoint.
    pub fn token_path(self) -> Option<&'static str> {
        match self {
            Target::Latchkey => Some("/oauth2/token"),
            Target::Express => None,
            Target::OidcProvider => Some("/token"),
        }
    }

    /// The OAuth introspection endpoint (RFC 7662).
    pub fn introspect_path(self) -> Option<&'static str> {
        match self {
            Target::Latchkey => Some("/oauth2/introspect"),
            Target::Express => None,
            Target::OidcProvider => Some("/token/introspection"),
        }
    }

    /// The username of virtual user `i` (0-based). oidc-provider has no
    /// users here: the name only labels messages.
    pub fn username(self, i: usize) -> String {
        match self {
            Target::Latchkey | Target::OidcProvider => format!("bench-{i:03}"),
            // express-seed seeds `alice` then `user00001` ... `user09999`.
            Target::Express => format!("user{:05}", i + 1),
        }
    }

    pub fn password(self) -> &'static str {
        match self {
            Target::Latchkey => "correct horse battery",
            Target::Express => "password123",
            Target::OidcProvider => "",
        }
    }

    /// The JSON field of the login answer that holds the access token.
    pub fn access_token_field(self) -> &'static str {
        match self {
            Target::Latchkey | Target::OidcProvider => "access_token",
            Target::Express => "accessToken",
        }
    }

    /// Whether cookie-API POSTs carry `Origin` (latchkey's CSRF rule needs
    /// it on cookie-authenticated POSTs; a browser sends it on every POST).
    /// OAuth form POSTs never do: no browser makes them.
    pub fn sends_origin(self) -> bool {
        matches!(self, Target::Latchkey)
    }

    /// The path of each scenario's measured request; `None` where the
    /// server has no such request.
    pub fn path_of(self, scenario: Scenario) -> Option<&'static str> {
        match scenario {
            Scenario::Me => self.me_path(),
            Scenario::Refresh => self.refresh_path(),
            Scenario::Login => self.login_path(),
            Scenario::TokenCc | Scenario::TokenRefresh => self.token_path(),
            Scenario::Introspect => self.introspect_path(),
        }
    }

    pub fn supports(self, scenario: Scenario) -> bool {
        self.path_of(scenario).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert_eq!(Target::Latchkey.username(0), "bench-000");
        assert_eq!(Target::Latchkey.username(31), "bench-031");
        assert_eq!(Target::Latchkey.username(1234), "bench-1234");
        assert_eq!(Target::Express.username(0), "user00001");
        assert_eq!(Target::Express.username(31), "user00032");
    }

    #[test]
    fn who_supports_what() {
        let all = Scenario::value_variants();
        let of = |t: Target| -> Vec<&str> {
            all.iter()
                .filter(|s| t.supports(**s))
                .map(|s| s.name())
                .collect()
        };
        assert_eq!(of(Target::Latchkey).len(), all.len());
        assert_eq!(of(Target::Express), ["me", "refresh", "login"]);
        assert_eq!(
            of(Target::OidcProvider),
            ["token-cc", "token-refresh", "introspect"]
        );
        assert_eq!(
            Target::OidcProvider.path_of(Scenario::Introspect),
            Some("/token/introspection")
        );
        // The names on the command line are the names in the reports.
        for s in all {
            let v = s.to_possible_value().unwrap();
            assert_eq!(v.get_name(), s.name());
        }
        for t in Target::value_variants() {
            let v = t.to_possible_value().unwrap();
            assert_eq!(v.get_name(), t.name());
        }
    }
}
