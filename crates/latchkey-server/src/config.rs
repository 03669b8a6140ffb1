//! Configuration: a TOML file, then `LATCHKEY_*` variables, then flags, each
//! overriding the one before. Every value is parsed here, once; a bad one
//! stops start-up with one line naming the setting.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use latchkey_core::crypto::MasterKey;
use latchkey_core::keys::SigningAlg;

/// Every setting of API.md section 2, plus latchkey's own (documented in the README).
pub const SETTINGS: &[&str] = &[
    "listen",
    "database_url",
    "issuer",
    "audience",
    "access_ttl",
    "refresh_ttl",
    "session_max_age",
    "refresh_reuse_grace",
    "signing_alg",
    "registration",
    "default_scope",
    "allowed_origins",
    "cookie_secure",
    "cookie_domain",
    "access_cookie",
    "refresh_cookie",
    "login_max_failures",
    "login_window",
    "trusted_proxies",
    "jwks_max_age",
    "master_key",
    "log_format",
    "sqlite_synchronous",
    "password_queue",
    "prune_interval",
    "audit_retention",
    "database_max_connections",
    "database_acquire_timeout",
    "database_statement_timeout",
    "master_key_file",
    "max_connections",
    "header_read_timeout",
    "request_body_timeout",
    "keep_alive_timeout",
];

/// No lifetime or interval may be longer (API.md section 8): time
/// arithmetic on any accepted setting stays far from overflowing.
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// The grace window's bound: a spent token good for longer is no longer
/// single-use in any useful sense.
pub const MAX_REUSE_GRACE: Duration = Duration::from_secs(60);

/// A setting that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting {setting}: {message}")]
pub struct ConfigError {
    pub setting: String,
    pub message: String,
}

fn bad(setting: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        setting: setting.to_owned(),
        message: message.into(),
    }
}

/// Raw values by setting name, before parsing.
pub type RawSettings = BTreeMap<String, String>;

/// Reads the layers in order: file, environment, flags.
pub fn layer(
    config_path: Option<&Path>,
    env: impl Iterator<Item = (String, String)>,
    flags: &RawSettings,
) -> Result<RawSettings, ConfigError> {
    let mut raw = RawSettings::new();
    let default_path = PathBuf::from("latchkey.toml");
    let path = match config_path {
        Some(p) => Some(p.to_path_buf()),
        None => default_path.exists().then_some(default_path),
    };
    if let Some(path) = path {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| bad("config", format!("cannot read {}: {e}", path.display())))?;
        raw.extend(parse_toml(&text).map_err(|e| ConfigError {
            message: format!("{} (in {})", e.message, path.display()),
            ..e
        })?);
    }
    for (name, value) in env {
        if let Some(setting) = name.strip_prefix("LATCHKEY_") {
            let setting = setting.to_ascii_lowercase();
            if SETTINGS.contains(&setting.as_str()) {
                raw.insert(setting, value);
            }
        }
    }
    raw.extend(flags.iter().map(|(k, v)| (k.clone(), v.clone())));
    Ok(raw)
}

fn parse_toml(text: &str) -> Result<RawSettings, ConfigError> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| bad("config", format!("not valid TOML: {}", e.message())))?;
    let mut raw = RawSettings::new();
    for (name, value) in table {
        if !SETTINGS.contains(&name.as_str()) {
            return Err(bad(&name, "unknown setting"));
        }
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Array(items) => items
                .iter()
                .map(|v| match v {
                    toml::Value::String(s) => Ok(s.clone()),
                    _ => Err(bad(&name, "list items must be strings")),
                })
                .collect::<Result<Vec<_>, _>>()?
                .join(","),
            _ => return Err(bad(&name, "must be a string, a number or a boolean")),
        };
        raw.insert(name, text);
    }
    Ok(raw)
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The parsed configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub database_url: String,
    /// `None`: `http://<bound address>`, known once bound.
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    pub session_max_age: Duration,
    pub refresh_reuse_grace: Duration,
    pub signing_alg: SigningAlg,
    pub registration_open: bool,
    pub default_scope: String,
    /// `None`: the issuer's origin.
    pub allowed_origins: Option<Vec<String>>,
    pub cookie_secure: bool,
    pub cookie_domain: Option<String>,
    pub access_cookie: String,
    pub refresh_cookie: String,
    pub login_max_failures: u32,
    pub login_window: Duration,
    pub trusted_proxies: Vec<IpNet>,
    pub jwks_max_age: Duration,
    pub master_key: Option<MasterKey>,
    /// Where `master_key` was read from, when from a file.
    pub master_key_file: Option<PathBuf>,
    pub log_format: LogFormat,
    /// SQLite `synchronous=FULL` instead of `NORMAL`.
    pub sqlite_synchronous_full: bool,
    pub password_queue: usize,
    /// How often dead sessions and old audit rows are deleted.
    pub prune_interval: Duration,
    pub audit_retention: Duration,
    /// PostgreSQL pool: connections per node, wait for one, per statement.
    pub database_max_connections: u32,
    pub database_acquire_timeout: Duration,
    pub database_statement_timeout: Duration,
    /// Connections served at once, and how long each phase of one may last.
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub request_body_timeout: Duration,
    pub keep_alive_timeout: Duration,
}

impl Config {
    /// Parses every setting, with the defaults of API.md.
    pub fn from_raw(raw: &RawSettings) -> Result<Self, ConfigError> {
        let get = |name: &str| raw.get(name).map(|s| s.trim()).filter(|s| !s.is_empty());
        let duration = |name: &str, default: Duration| -> Result<Duration, ConfigError> {
            let d =
                get(name).map_or(Ok(default), |v| parse_duration(v).map_err(|m| bad(name, m)))?;
            if d > MAX_DURATION {
                return Err(bad(name, "must be at most 10 years (3650d)"));
            }
            Ok(d)
        };
        let positive = |name: &str, d: Duration| -> Result<Duration, ConfigError> {
            if d.is_zero() {
                Err(bad(name, "must be more than 0"))
            } else {
                Ok(d)
            }
        };
        let boolean = |name: &str, default: bool| -> Result<bool, ConfigError> {
            get(name).map_or(Ok(default), |v| parse_bool(v).map_err(|m| bad(name, m)))
        };
        let listen = get("listen")
            .unwrap_or("127.0.0.1:8080")
            .parse()
            .map_err(|_| {
                bad(
                    "listen",
                    "must be HOST:PORT with an IP address, e.g. 127.0.0.1:8080",
                )
            })?;
        let database_url = get("database_url")
            .unwrap_or("sqlite://latchkey.db")
            .to_owned();
        let postgres =
            database_url.starts_with("postgres://") || database_url.starts_with("postgresql://");
        if !(database_url.starts_with("sqlite:") || postgres) {
            return Err(bad(
                "database_url",
                "must be sqlite://PATH or postgres://...",
            ));
        }
        let issuer = get("issuer")
            .map(|v| parse_url_base(v).map_err(|m| bad("issuer", m)))
            .transpose()?;
        let audience = get("audience").map(str::to_owned);
        let access_ttl = duration("access_ttl", Duration::from_secs(15 * 60))?;
        if access_ttl < Duration::from_secs(1) {
            return Err(bad("access_ttl", "must be at least 1s"));
        }
        let refresh_ttl = duration("refresh_ttl", Duration::from_secs(7 * 24 * 3600))?;
        let session_max_age = duration("session_max_age", Duration::from_secs(30 * 24 * 3600))?;
        for (name, d) in [
            ("refresh_ttl", refresh_ttl),
            ("session_max_age", session_max_age),
        ] {
            if d < Duration::from_secs(1) {
                return Err(bad(name, "must be at least 1s"));
            }
        }
        let refresh_reuse_grace = duration("refresh_reuse_grace", Duration::from_secs(10))?;
        if refresh_reuse_grace > MAX_REUSE_GRACE {
            return Err(bad("refresh_reuse_grace", "must be at most 60s"));
        }
        let signing_alg = get("signing_alg")
            .unwrap_or("EdDSA")
            .parse()
            .map_err(|m: String| bad("signing_alg", m))?;
        let registration_open = match get("registration").unwrap_or("open") {
            "open" => true,
            "closed" => false,
            _ => return Err(bad("registration", "must be open or closed")),
        };
        let default_scope = get("default_scope")
            .unwrap_or("")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let allowed_origins = get("allowed_origins")
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|o| !o.is_empty())
                    .map(|o| parse_origin(o).map_err(|m| bad("allowed_origins", m)))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        let cookie_name = |name: &str, default: &str| -> Result<String, ConfigError> {
            let v = get(name).unwrap_or(default);
            let token = v
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if token {
                Ok(v.to_owned())
            } else {
                Err(bad(name, "not a valid cookie name"))
            }
        };
        let login_max_failures = get("login_max_failures")
            .map_or(Ok(10), |v| {
                v.parse::<u32>().ok().filter(|n| *n >= 1).ok_or(())
            })
            .map_err(|()| bad("login_max_failures", "must be a whole number of at least 1"))?;
        let trusted_proxies = get("trusted_proxies")
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        p.parse::<IpNet>()
                            .or_else(|_| p.parse::<std::net::IpAddr>().map(IpNet::from))
                            .map_err(|_| {
                                bad(
                                    "trusted_proxies",
                                    format!("{p:?} is not an address or CIDR"),
                                )
                            })
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?
            .unwrap_or_default();
        let master_key_file = get("master_key_file").map(PathBuf::from);
        let master_key = match (get("master_key"), &master_key_file) {
            (Some(_), Some(_)) => {
                return Err(bad(
                    "master_key_file",
                    "set master_key or master_key_file, not both",
                ))
            }
            (Some(v), None) => Some(MasterKey::from_base64(v).map_err(|m| bad("master_key", m))?),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    bad(
                        "master_key_file",
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                Some(
                    MasterKey::from_base64(text.trim())
                        .map_err(|m| bad("master_key_file", format!("{} {m}", path.display())))?,
                )
            }
            (None, None) => None,
        };
        let timeout = |name: &str, default: Duration| -> Result<Duration, ConfigError> {
            let d = duration(name, default)?;
            if d < Duration::from_secs(1) {
                return Err(bad(name, "must be at least 1s"));
            }
            Ok(d)
        };
        let log_format = match get("log_format").unwrap_or("text") {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            _ => return Err(bad("log_format", "must be text or json")),
        };
        let sqlite_synchronous_full = match get("sqlite_synchronous").unwrap_or("normal") {
            "normal" | "NORMAL" => false,
            "full" | "FULL" => true,
            _ => return Err(bad("sqlite_synchronous", "must be normal or full")),
        };
        let password_queue = get("password_queue")
            .map_or(Ok(32), |v| v.parse::<usize>().map_err(|_| ()))
            .map_err(|()| bad("password_queue", "must be a whole number"))?;
        Ok(Self {
            listen,
            database_url,
            issuer,
            audience,
            access_ttl,
            refresh_ttl,
            session_max_age,
            refresh_reuse_grace,
            signing_alg,
            registration_open,
            default_scope,
            allowed_origins,
            cookie_secure: boolean("cookie_secure", true)?,
            cookie_domain: get("cookie_domain").map(str::to_owned),
            access_cookie: cookie_name("access_cookie", "accessToken")?,
            refresh_cookie: cookie_name("refresh_cookie", "refreshToken")?,
            login_max_failures,
            login_window: duration("login_window", Duration::from_secs(15 * 60))?,
            trusted_proxies,
            jwks_max_age: duration("jwks_max_age", Duration::from_secs(5 * 60))?,
            master_key,
            master_key_file,
            log_format,
            sqlite_synchronous_full,
            password_queue,
            prune_interval: positive(
                "prune_interval",
                duration("prune_interval", Duration::from_secs(3600))?,
            )?,
            audit_retention: duration("audit_retention", Duration::from_secs(90 * 24 * 3600))?,
            database_max_connections: get("database_max_connections")
                .map_or(Ok(16), |v| {
                    v.parse::<u32>().ok().filter(|n| *n >= 1).ok_or(())
                })
                .map_err(|()| {
                    bad(
                        "database_max_connections",
                        "must be a whole number of at least 1",
                    )
                })?,
            database_acquire_timeout: positive(
                "database_acquire_timeout",
                duration("database_acquire_timeout", Duration::from_secs(5))?,
            )?,
            database_statement_timeout: duration(
                "database_statement_timeout",
                Duration::from_secs(5),
            )?,
            max_connections: get("max_connections")
                .map_or(Ok(10_000), |v| {
                    v.parse::<usize>()
                        .ok()
                        .filter(|n| (1..=1_000_000).contains(n))
                        .ok_or(())
                })
                .map_err(|()| {
                    bad(
                        "max_connections",
                        "must be a whole number from 1 to 1000000",
                    )
                })?,
            header_read_timeout: timeout("header_read_timeout", Duration::from_secs(10))?,
            request_body_timeout: timeout("request_body_timeout", Duration::from_secs(30))?,
            keep_alive_timeout: timeout("keep_alive_timeout", Duration::from_secs(60))?,
        })
    }

    pub fn is_postgres(&self) -> bool {
        self.database_url.starts_with("postgres://")
            || self.database_url.starts_with("postgresql://")
    }

    /// The issuer once the address is known; refuses a wildcard address
    /// without an explicit issuer (tokens would name an unreachable host).
    pub fn resolve_issuer(&self, bound: SocketAddr) -> Result<String, ConfigError> {
        if let Some(issuer) = &self.issuer {
            return Ok(issuer.clone());
        }
        if self.is_postgres() {
            return Err(bad(
                "issuer",
                "must be set when the store is PostgreSQL (several nodes must agree on it)",
            ));
        }
        if bound.ip().is_unspecified() {
            return Err(bad(
                "issuer",
                "must be set when listen is a wildcard address",
            ));
        }
        Ok(format!("http://{bound}"))
    }
}

/// `250ms`, `10s`, `15m`, `2h`, `7d`, or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let err = || format!("{text:?} is not a duration (e.g. 250ms, 10s, 15m, 2h, 7d, or seconds)");
    if digits.is_empty() || digits.len() > 12 {
        return Err(err());
    }
    let n: u64 = digits.parse().map_err(|_| err())?;
    let millis = match unit {
        "ms" => Some(n),
        "" | "s" => n.checked_mul(1000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        "d" => n.checked_mul(86_400_000),
        _ => None,
    }
    .ok_or_else(err)?;
    Ok(Duration::from_millis(millis))
}

fn parse_bool(text: &str) -> Result<bool, String> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(format!("{text:?} is not true or false")),
    }
}

/// An origin: `scheme://host[:port]`, lower case, no path.
pub fn parse_origin(text: &str) -> Result<String, String> {
    let lower = text.trim().trim_end_matches('/').to_ascii_lowercase();
    let rest = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"))
        .ok_or_else(|| format!("{text:?} is not an http(s) origin"))?;
    if rest.is_empty() || rest.contains(['/', '?', '#', ' ', '@']) {
        return Err(format!("{text:?} is not an origin (scheme://host[:port])"));
    }
    Ok(lower)
}

fn parse_url_base(text: &str) -> Result<String, String> {
    let trimmed = text.trim().trim_end_matches('/');
    if !(trimmed.starts_with("http://") || trimmed.starts_with("https://"))
        || trimmed.contains(char::is_whitespace)
    {
        return Err(format!("{text:?} is not an http(s) URL"));
    }
    Ok(trimmed.to_owned())
}

/// The origin of an http(s) URL (issuer or Referer).
pub fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    parse_origin(&format!("{scheme}://{authority}")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn raw(pairs: &[(&str, &str)]) -> RawSettings {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(
            parse_duration("7d").unwrap(),
            Duration::from_secs(7 * 86400)
        );
        assert_eq!(parse_duration("42").unwrap(), Duration::from_secs(42));
        for bad in ["", "s", "10x", "-1s", "1.5s", "10 s", "99999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn duration_parsing_never_panics(s in "\\PC{0,30}") {
            let _ = parse_duration(&s);
        }

        #[test]
        fn durations_round_trip(n in 0u64..1_000_000, unit in prop::sample::select(vec!["ms", "s", "m", "h", "d", ""])) {
            let d = parse_duration(&format!("{n}{unit}")).unwrap();
            let factor = match unit { "ms" => 1, "" | "s" => 1000, "m" => 60_000, "h" => 3_600_000, _ => 86_400_000 };
            prop_assert_eq!(d.as_millis(), u128::from(n) * factor);
        }
    }

    #[test]
    fn defaults_are_those_of_the_contract() {
        let c = Config::from_raw(&RawSettings::new()).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.database_url, "sqlite://latchkey.db");
        assert_eq!(c.access_ttl, Duration::from_secs(900));
        assert_eq!(c.refresh_ttl, Duration::from_secs(7 * 86400));
        assert_eq!(c.session_max_age, Duration::from_secs(30 * 86400));
        assert_eq!(c.refresh_reuse_grace, Duration::from_secs(10));
        assert_eq!(c.signing_alg, SigningAlg::EdDsa);
        assert!(c.registration_open && c.cookie_secure);
        assert_eq!(
            (c.access_cookie.as_str(), c.refresh_cookie.as_str()),
            ("accessToken", "refreshToken")
        );
        assert_eq!(c.login_max_failures, 10);
        assert_eq!(c.jwks_max_age, Duration::from_secs(300));
        assert_eq!(
            c.resolve_issuer("127.0.0.1:9000".parse().unwrap()).unwrap(),
            "http://127.0.0.1:9000"
        );
        assert!(c.resolve_issuer("0.0.0.0:9000".parse().unwrap()).is_err());
    }

    #[test]
    fn a_bad_value_names_its_setting() {
        for (name, value) in [
            ("access_ttl", "soon"),
            ("listen", "localhost"),
            ("signing_alg", "HS256"),
            ("registration", "maybe"),
            ("cookie_secure", "perhaps"),
            ("login_max_failures", "0"),
            ("trusted_proxies", "10.0.0.0/99"),
            ("master_key", "short"),
            ("allowed_origins", "ftp://x"),
            ("log_format", "xml"),
            ("issuer", "example.com"),
            ("database_url", "mysql://x"),
        ] {
            let e = Config::from_raw(&raw(&[(name, value)])).unwrap_err();
            assert_eq!(e.setting, name);
            assert!(
                e.to_string()
                    .starts_with(&format!("invalid setting {name}: ")),
                "{e}"
            );
            assert!(!e.to_string().contains('\n'));
        }
    }

    #[test]
    fn layers_override_in_order_file_env_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "access_ttl = \"1m\"\nrefresh_ttl = \"2d\"\nlogin_max_failures = 3\ncookie_secure = false\n").unwrap();
        let env = vec![
            ("LATCHKEY_REFRESH_TTL".to_string(), "3d".to_string()),
            ("LATCHKEY_SESSION_MAX_AGE".to_string(), "4d".to_string()),
            ("UNRELATED".to_string(), "x".to_string()),
        ];
        let flags = raw(&[("session_max_age", "5d")]);
        let merged = layer(Some(&path), env.into_iter(), &flags).unwrap();
        let c = Config::from_raw(&merged).unwrap();
        assert_eq!(c.access_ttl, Duration::from_secs(60), "file");
        assert_eq!(
            c.refresh_ttl,
            Duration::from_secs(3 * 86400),
            "env over file"
        );
        assert_eq!(
            c.session_max_age,
            Duration::from_secs(5 * 86400),
            "flag over env"
        );
        assert_eq!(c.login_max_failures, 3);
        assert!(!c.cookie_secure);
    }

    #[test]
    fn postgres_needs_an_explicit_issuer() {
        let pg =
            Config::from_raw(&raw(&[("database_url", "postgres://root@127.0.0.1/x")])).unwrap();
        assert!(pg.is_postgres());
        let e = pg
            .resolve_issuer("127.0.0.1:9000".parse().unwrap())
            .unwrap_err();
        assert_eq!(e.setting, "issuer");
        let named = Config::from_raw(&raw(&[
            ("database_url", "postgresql://root@127.0.0.1/x"),
            ("issuer", "https://id.example/"),
        ]))
        .unwrap();
        assert_eq!(
            named
                .resolve_issuer("127.0.0.1:9000".parse().unwrap())
                .unwrap(),
            "https://id.example"
        );
        assert_eq!(named.database_max_connections, 16);
        assert_eq!(named.database_acquire_timeout, Duration::from_secs(5));
    }

    #[test]
    fn unknown_file_settings_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "acces_ttl = \"1m\"\n").unwrap();
        let e = layer(Some(&path), std::iter::empty(), &RawSettings::new()).unwrap_err();
        assert_eq!(e.setting, "acces_ttl");
    }

    #[test]
    fn origins() {
        assert_eq!(
            parse_origin("HTTPS://App.Example/").unwrap(),
            "https://app.example"
        );
        assert!(parse_origin("https://app.example/path").is_err());
        assert_eq!(
            origin_of("http://127.0.0.1:8080/v1/x?y").as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(origin_of("not a url"), None);
    }
}
