//! Configuration: a TOML file, then `LATCHKEY_*` variables, then flags, each
//! overriding the one before. Every setting is one row of [`SETTINGS`]:
//! its name (which makes its flag and its variable) and how its value is
//! parsed into one field of [`Config`] or of the service's [`Policy`],
//! whose `Default`s are the defaults. A bad value stops start-up with one
//! line naming the setting.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use latchkey_core::crypto::MasterKey;
use latchkey_core::Policy;

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

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The parsed configuration: the service's rules, and what the server
/// itself needs (where to listen, the store, cookies, transport limits).
#[derive(Debug, Clone)]
pub struct Config {
    /// The service's rules. Its `issuer` and `audience` are filled in by
    /// [`Config::policy_for`] once the bound address is known.
    pub policy: Policy,
    pub listen: SocketAddr,
    pub database_url: String,
    /// `None`: `http://<bound address>`, known once bound.
    pub issuer: Option<String>,
    /// `None`: the issuer.
    pub audience: Option<String>,
    /// `None`: the issuer's origin.
    pub allowed_origins: Option<Vec<String>>,
    pub cookie_secure: bool,
    pub cookie_domain: Option<String>,
    pub access_cookie: String,
    pub refresh_cookie: String,
    pub trusted_proxies: Vec<IpNet>,
    pub master_key: Option<MasterKey>,
    /// Where `master_key` was read from, when from a file.
    pub master_key_file: Option<PathBuf>,
    pub log_format: LogFormat,
    /// SQLite `synchronous=FULL` instead of `NORMAL`.
    pub sqlite_synchronous_full: bool,
    /// How often dead sessions and old audit rows are deleted.
    pub prune_interval: Duration,
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

impl Default for Config {
    fn default() -> Self {
        Self {
            policy: Policy::default(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: "sqlite://latchkey.db".into(),
            issuer: None,
            audience: None,
            allowed_origins: None,
            cookie_secure: true,
            cookie_domain: None,
            access_cookie: "accessToken".into(),
            refresh_cookie: "refreshToken".into(),
            trusted_proxies: Vec::new(),
            master_key: None,
            master_key_file: None,
            log_format: LogFormat::Text,
            sqlite_synchronous_full: false,
            prune_interval: Duration::from_secs(3600),
            database_max_connections: 16,
            database_acquire_timeout: Duration::from_secs(5),
            database_statement_timeout: Duration::from_secs(5),
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(10),
            request_body_timeout: Duration::from_secs(30),
            keep_alive_timeout: Duration::from_secs(60),
        }
    }
}

/// One setting: its name, and how a value of it sets the configuration.
pub struct Setting {
    pub name: &'static str,
    set: fn(&mut Config, &str) -> Result<(), String>,
}

/// No lifetime or interval may be longer (API.md section 8): time
/// arithmetic on any accepted setting stays far from overflowing.
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// The grace window's bound: a spent token good for longer is no longer
/// single-use in any useful sense.
pub const MAX_REUSE_GRACE: Duration = Duration::from_secs(60);

const SECOND: Duration = Duration::from_secs(1);

macro_rules! setting {
    ($name:literal, |$c:ident, $v:ident| $set:expr) => {
        Setting {
            name: $name,
            set: |$c: &mut Config, $v: &str| {
                $set;
                Ok(())
            },
        }
    };
}

/// Every setting of API.md section 2, plus latchkey's own (in the README).
pub const SETTINGS: &[Setting] = &[
    setting!("listen", |c, v| c.listen = v.parse().map_err(|_| {
        "must be HOST:PORT with an IP address, e.g. 127.0.0.1:8080".to_owned()
    })?),
    setting!("database_url", |c, v| c.database_url =
        parse_database_url(v)?),
    setting!("issuer", |c, v| c.issuer = Some(parse_url_base(v)?)),
    setting!("audience", |c, v| c.audience = Some(v.to_owned())),
    setting!("access_ttl", |c, v| c.policy.access_ttl =
        duration(v, SECOND, MAX_DURATION)?),
    setting!("refresh_ttl", |c, v| c.policy.refresh_ttl =
        duration(v, SECOND, MAX_DURATION)?),
    setting!("session_max_age", |c, v| {
        c.policy.session_max_age = duration(v, SECOND, MAX_DURATION)?
    }),
    setting!("refresh_reuse_grace", |c, v| {
        c.policy.refresh_reuse_grace = duration(v, Duration::ZERO, MAX_REUSE_GRACE)?
    }),
    setting!("signing_alg", |c, v| c.policy.signing_alg = v.parse()?),
    setting!("registration", |c, v| {
        c.policy.registration_open = match v {
            "open" => true,
            "closed" => false,
            _ => return Err("must be open or closed".into()),
        }
    }),
    setting!("default_scope", |c, v| c.policy.default_scope =
        scope_list(v)),
    setting!("allowed_origins", |c, v| {
        c.allowed_origins = Some(list(v).map(parse_origin).collect::<Result<Vec<_>, _>>()?)
    }),
    setting!("cookie_secure", |c, v| c.cookie_secure = parse_bool(v)?),
    setting!("cookie_domain", |c, v| c.cookie_domain = Some(v.to_owned())),
    setting!("access_cookie", |c, v| c.access_cookie = cookie_name(v)?),
    setting!("refresh_cookie", |c, v| c.refresh_cookie = cookie_name(v)?),
    setting!("login_max_failures", |c, v| {
        c.policy.login_max_failures = whole(v, 1, u32::MAX)?
    }),
    setting!("login_window", |c, v| {
        c.policy.login_window = duration(v, Duration::ZERO, MAX_DURATION)?
    }),
    setting!("trusted_proxies", |c, v| {
        c.trusted_proxies = list(v).map(parse_net).collect::<Result<Vec<_>, _>>()?
    }),
    setting!("jwks_max_age", |c, v| {
        c.policy.jwks_max_age = duration(v, Duration::ZERO, MAX_DURATION)?
    }),
    setting!("master_key", |c, v| c.master_key =
        Some(MasterKey::from_base64(v)?)),
    setting!("master_key_file", |c, v| {
        let path = PathBuf::from(v);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        c.master_key = Some(
            MasterKey::from_base64(text.trim()).map_err(|m| format!("{} {m}", path.display()))?,
        );
        c.master_key_file = Some(path);
    }),
    setting!("log_format", |c, v| {
        c.log_format = match v {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            _ => return Err("must be text or json".into()),
        }
    }),
    setting!("sqlite_synchronous", |c, v| {
        c.sqlite_synchronous_full = match v.to_ascii_lowercase().as_str() {
            "normal" => false,
            "full" => true,
            _ => return Err("must be normal or full".into()),
        }
    }),
    setting!("password_queue", |c, v| c.policy.password_queue =
        whole(v, 0, 1_000_000)?),
    setting!("prune_interval", |c, v| {
        c.prune_interval = duration(v, Duration::from_millis(1), MAX_DURATION)?
    }),
    setting!("audit_retention", |c, v| {
        c.policy.audit_retention = duration(v, Duration::ZERO, MAX_DURATION)?
    }),
    setting!("database_max_connections", |c, v| {
        c.database_max_connections = whole(v, 1, 10_000)?
    }),
    setting!("database_acquire_timeout", |c, v| {
        c.database_acquire_timeout = duration(v, SECOND, MAX_DURATION)?
    }),
    setting!("database_statement_timeout", |c, v| {
        c.database_statement_timeout = duration(v, Duration::ZERO, MAX_DURATION)?
    }),
    setting!("max_connections", |c, v| c.max_connections =
        whole(v, 1, 1_000_000)?),
    setting!("header_read_timeout", |c, v| {
        c.header_read_timeout = duration(v, SECOND, MAX_DURATION)?
    }),
    setting!("request_body_timeout", |c, v| {
        c.request_body_timeout = duration(v, SECOND, MAX_DURATION)?
    }),
    setting!("keep_alive_timeout", |c, v| {
        c.keep_alive_timeout = duration(v, SECOND, MAX_DURATION)?
    }),
];

/// The setting of that name.
pub fn setting(name: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.name == name)
}

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
        if let Some(name) = name.strip_prefix("LATCHKEY_") {
            let name = name.to_ascii_lowercase();
            if setting(&name).is_some() {
                raw.insert(name, value);
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
        if setting(&name).is_none() {
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

impl Config {
    /// Parses every setting given; the rest keep their defaults.
    pub fn from_raw(raw: &RawSettings) -> Result<Self, ConfigError> {
        if raw.contains_key("master_key") && raw.contains_key("master_key_file") {
            return Err(bad(
                "master_key_file",
                "set master_key or master_key_file, not both",
            ));
        }
        let mut config = Self::default();
        for (name, value) in raw {
            let value = value.trim();
            if value.is_empty() {
                continue;
            }
            let setting = setting(name).ok_or_else(|| bad(name, "unknown setting"))?;
            (setting.set)(&mut config, value).map_err(|m| bad(name, m))?;
        }
        Ok(config)
    }

    pub fn is_postgres(&self) -> bool {
        is_postgres_url(&self.database_url)
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

    /// The service's rules for this issuer (the audience defaults to it).
    pub fn policy_for(&self, issuer: String) -> Policy {
        Policy {
            audience: self.audience.clone().unwrap_or_else(|| issuer.clone()),
            issuer,
            ..self.policy.clone()
        }
    }
}

fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

fn parse_database_url(text: &str) -> Result<String, String> {
    if text.starts_with("sqlite:") || is_postgres_url(text) {
        Ok(text.to_owned())
    } else {
        Err("must be sqlite://PATH or postgres://...".into())
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

/// A duration within `min..=max`, said in the bounds' own words.
fn duration(text: &str, min: Duration, max: Duration) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d < min {
        return Err(format!("must be at least {}", words(min)));
    }
    if d > max {
        return Err(format!("must be at most {}", words(max)));
    }
    Ok(d)
}

fn words(d: Duration) -> String {
    match d.as_millis() {
        ms if ms % 86_400_000 == 0 && ms > 0 => format!("{}d", ms / 86_400_000),
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    }
}

/// A whole number within `min..=max`.
fn whole<T: std::str::FromStr + PartialOrd + std::fmt::Display>(
    text: &str,
    min: T,
    max: T,
) -> Result<T, String> {
    text.parse::<T>()
        .ok()
        .filter(|n| *n >= min && *n <= max)
        .ok_or_else(|| format!("must be a whole number from {min} to {max}"))
}

fn parse_bool(text: &str) -> Result<bool, String> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(format!("{text:?} is not true or false")),
    }
}

/// The items of a comma-separated list, trimmed, empty ones dropped.
fn list(text: &str) -> impl Iterator<Item = &str> {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
}

/// Scopes, space-separated, normalised to single spaces.
fn scope_list(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn parse_net(text: &str) -> Result<IpNet, String> {
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{text:?} is not an address or CIDR"))
}

fn cookie_name(text: &str) -> Result<String, String> {
    let token = text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if token {
        Ok(text.to_owned())
    } else {
        Err("not a valid cookie name".into())
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
    use latchkey_core::keys::SigningAlg;
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
        assert_eq!(c.policy.access_ttl, Duration::from_secs(900));
        assert_eq!(c.policy.refresh_ttl, Duration::from_secs(7 * 86400));
        assert_eq!(c.policy.session_max_age, Duration::from_secs(30 * 86400));
        assert_eq!(c.policy.refresh_reuse_grace, Duration::from_secs(10));
        assert_eq!(c.policy.signing_alg, SigningAlg::EdDsa);
        assert!(c.policy.registration_open && c.cookie_secure);
        assert_eq!(
            (c.access_cookie.as_str(), c.refresh_cookie.as_str()),
            ("accessToken", "refreshToken")
        );
        assert_eq!(c.policy.login_max_failures, 10);
        assert_eq!(c.policy.jwks_max_age, Duration::from_secs(300));
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
        assert_eq!(c.policy.access_ttl, Duration::from_secs(60), "file");
        assert_eq!(
            c.policy.refresh_ttl,
            Duration::from_secs(3 * 86400),
            "env over file"
        );
        assert_eq!(
            c.policy.session_max_age,
            Duration::from_secs(5 * 86400),
            "flag over env"
        );
        assert_eq!(c.policy.login_max_failures, 3);
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
    fn each_setting_is_one_row() {
        let mut names: Vec<&str> = SETTINGS.iter().map(|s| s.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), SETTINGS.len());
        let e = Config::from_raw(&raw(&[("acces_ttl", "1m")])).unwrap_err();
        assert_eq!(e.setting, "acces_ttl");
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
