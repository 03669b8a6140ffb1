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
use latchkey_core::mail::Templates;
use latchkey_core::policy::MailPolicy;
use latchkey_core::Policy;

mod values;

pub use values::SmtpUrl;
use values::{
    cookie_name, duration, is_postgres_url, list, parse_bool, parse_database_url, parse_mailbox,
    parse_net, parse_page_url, parse_rp_id, parse_url_base, scope_list, whole,
};
pub use values::{origin_of, parse_duration, parse_origin};

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
    /// The SQLite writer's page cache, in MiB.
    pub sqlite_cache_mib: u32,
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
    /// Mail (API.md §11): the SMTP server; without it, no mail and no reset.
    pub smtp_url: Option<SmtpUrl>,
    /// `None`: `latchkey@<issuer host>`.
    pub mail_from: Option<String>,
    /// `None`: the first allowed origin + `/reset-password`.
    pub password_reset_url: Option<String>,
    /// `None`: the first allowed origin + `/verify-email`.
    pub email_verify_url: Option<String>,
    /// The `mail_templates` directory, and the templates read from it
    /// (the built-in ones where it has no file).
    pub mail_templates: Option<PathBuf>,
    pub templates: Option<std::sync::Arc<Templates>>,
    /// `None`: the issuer's host.
    pub webauthn_rp_id: Option<String>,
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
            sqlite_cache_mib: 64,
            prune_interval: Duration::from_secs(3600),
            database_max_connections: 16,
            database_acquire_timeout: Duration::from_secs(5),
            database_statement_timeout: Duration::from_secs(5),
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(10),
            request_body_timeout: Duration::from_secs(30),
            keep_alive_timeout: Duration::from_secs(60),
            smtp_url: None,
            mail_from: None,
            password_reset_url: None,
            email_verify_url: None,
            mail_templates: None,
            templates: None,
            webauthn_rp_id: None,
        }
    }
}

/// One setting: its name, and how a value of it sets the configuration.
pub struct Setting {
    pub name: &'static str,
    set: fn(&mut Config, &str) -> Result<(), String>,
}

/// No lifetime or interval may be longer (docs/reference.md §10): time
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

/// Every setting (docs/operations.md lists them with their defaults and bounds).
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
        c.policy.login_window = duration(v, SECOND, MAX_DURATION)?
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
    setting!("sqlite_cache_mib", |c, v| c.sqlite_cache_mib =
        whole(v, 2, 65_536)?),
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
    setting!("smtp_url", |c, v| c.smtp_url = Some(SmtpUrl::parse(v)?)),
    setting!("mail_from", |c, v| c.mail_from = Some(parse_mailbox(v)?)),
    setting!("password_reset_url", |c, v| c.password_reset_url =
        Some(parse_page_url(v)?)),
    setting!("email_verify_url", |c, v| c.email_verify_url =
        Some(parse_page_url(v)?)),
    setting!("mail_templates", |c, v| {
        let dir = PathBuf::from(v);
        if !dir.is_dir() {
            return Err(format!("{} is not a directory", dir.display()));
        }
        let templates = Templates::load(Some(&dir)).map_err(|e| e.to_string())?;
        c.templates = Some(std::sync::Arc::new(templates));
        c.mail_templates = Some(dir);
    }),
    setting!("webauthn_rp_id", |c, v| c.webauthn_rp_id =
        Some(parse_rp_id(v)?)),
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

    /// The origins allowed on cookie requests: the setting, or the issuer's.
    pub fn allowed_origins_for(&self, issuer: &str) -> Vec<String> {
        match &self.allowed_origins {
            Some(list) => list.clone(),
            None => origin_of(issuer).into_iter().collect(),
        }
    }

    /// The sender of latchkey's mails: `mail_from`, or `latchkey@` the
    /// issuer's host.
    pub fn mail_from_for(&self, issuer: &str) -> String {
        if let Some(from) = &self.mail_from {
            return from.clone();
        }
        let host = issuer_host(issuer);
        if host.parse::<std::net::IpAddr>().is_ok() || host.is_empty() {
            // An address is no mail domain: the conventional local one.
            return "latchkey@localhost".into();
        }
        format!("latchkey@{host}")
    }

    /// The service's rules for this issuer (the audience defaults to it,
    /// the WebAuthn relying party id to its host; the mailed links to the
    /// first allowed origin's pages).
    pub fn policy_for(&self, issuer: String) -> Result<Policy, ConfigError> {
        let mail = match &self.smtp_url {
            None => None,
            Some(_) => {
                let first = self.allowed_origins_for(&issuer).into_iter().next();
                let page = |set: &Option<String>, name: &str, path: &str| match (set, &first) {
                    (Some(url), _) => Ok(url.clone()),
                    (None, Some(origin)) => Ok(format!("{origin}{path}")),
                    (None, None) => Err(bad(name, "must be set when no allowed origin is known")),
                };
                let templates = match &self.templates {
                    Some(t) => t.clone(),
                    None => std::sync::Arc::new(
                        Templates::builtin().map_err(|e| bad("mail_templates", e.to_string()))?,
                    ),
                };
                Some(MailPolicy {
                    password_reset_url: page(
                        &self.password_reset_url,
                        "password_reset_url",
                        "/reset-password",
                    )?,
                    email_verify_url: page(
                        &self.email_verify_url,
                        "email_verify_url",
                        "/verify-email",
                    )?,
                    templates,
                })
            }
        };
        Ok(Policy {
            audience: self.audience.clone().unwrap_or_else(|| issuer.clone()),
            webauthn_rp_id: self
                .webauthn_rp_id
                .clone()
                .unwrap_or_else(|| issuer_host(&issuer)),
            webauthn_origins: self.allowed_origins_for(&issuer),
            issuer,
            mail,
            ..self.policy.clone()
        })
    }
}

/// The host of the issuer's URL: no scheme, port or brackets.
fn issuer_host(issuer: &str) -> String {
    let host = origin_of(issuer)
        .and_then(|o| o.split_once("://").map(|(_, rest)| rest.to_owned()))
        .unwrap_or_default();
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h.to_owned(),
        _ => host,
    };
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned()
}

#[cfg(test)]
mod tests;
