//! The two servers measured: their paths, users and answer shapes.

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// latchkey's `/v1` browser session API.
    Latchkey,
    /// The Express + jsonwebtoken + cookie-parser baseline (express-seed).
    Express,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// Log in once, then GET the "me" path with the access token.
    Me,
    /// Log in once, then POST refresh with the refresh cookie, rotating it.
    Refresh,
    /// POST login with correct credentials, over and over.
    Login,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Me => "me",
            Scenario::Refresh => "refresh",
            Scenario::Login => "login",
        }
    }

    /// Whether each virtual user needs a session before the load starts.
    pub fn needs_session(self) -> bool {
        matches!(self, Scenario::Me | Scenario::Refresh)
    }
}

/// The name of the refresh cookie on both servers.
pub const REFRESH_COOKIE: &str = "refreshToken";

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Latchkey => "latchkey",
            Target::Express => "express",
        }
    }

    /// The registration path, for a server whose users the benchmark creates.
    pub fn register_path(self) -> Option<&'static str> {
        match self {
            Target::Latchkey => Some("/v1/auth/register"),
            Target::Express => None,
        }
    }

    pub fn login_path(self) -> &'static str {
        match self {
            Target::Latchkey => "/v1/auth/login",
            Target::Express => "/login",
        }
    }

    pub fn refresh_path(self) -> &'static str {
        match self {
            Target::Latchkey => "/v1/auth/refresh",
            Target::Express => "/refresh-token",
        }
    }

    pub fn me_path(self) -> &'static str {
        match self {
            Target::Latchkey => "/v1/me",
            Target::Express => "/me",
        }
    }

    /// The username of virtual user `i` (0-based).
    pub fn username(self, i: usize) -> String {
        match self {
            Target::Latchkey => format!("bench-{i:03}"),
            // express-seed seeds `alice` then `user00001` ... `user09999`.
            Target::Express => format!("user{:05}", i + 1),
        }
    }

    pub fn password(self) -> &'static str {
        match self {
            Target::Latchkey => "correct horse battery",
            Target::Express => "password123",
        }
    }

    /// The JSON field of the login answer that holds the access token.
    pub fn access_token_field(self) -> &'static str {
        match self {
            Target::Latchkey => "access_token",
            Target::Express => "accessToken",
        }
    }

    /// Whether POSTs carry `Origin` (latchkey's CSRF rule needs it on
    /// cookie-authenticated POSTs; a browser sends it on every POST).
    pub fn sends_origin(self) -> bool {
        matches!(self, Target::Latchkey)
    }

    /// The path of each scenario's measured request, for reports.
    pub fn path_of(self, scenario: Scenario) -> &'static str {
        match scenario {
            Scenario::Me => self.me_path(),
            Scenario::Refresh => self.refresh_path(),
            Scenario::Login => self.login_path(),
        }
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
}
