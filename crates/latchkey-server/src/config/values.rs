//! Parsers of setting values: durations, numbers, lists, origins, URLs.

use std::time::Duration;

use ipnet::IpNet;

pub(super) fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

pub(super) fn parse_database_url(text: &str) -> Result<String, String> {
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
pub(super) fn duration(text: &str, min: Duration, max: Duration) -> Result<Duration, String> {
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
pub(super) fn whole<T: std::str::FromStr + PartialOrd + std::fmt::Display>(
    text: &str,
    min: T,
    max: T,
) -> Result<T, String> {
    text.parse::<T>()
        .ok()
        .filter(|n| *n >= min && *n <= max)
        .ok_or_else(|| format!("must be a whole number from {min} to {max}"))
}

pub(super) fn parse_bool(text: &str) -> Result<bool, String> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(format!("{text:?} is not true or false")),
    }
}

/// The items of a comma-separated list, trimmed, empty ones dropped.
pub(super) fn list(text: &str) -> impl Iterator<Item = &str> {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
}

/// Scopes, space-separated, normalised to single spaces.
pub(super) fn scope_list(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub(super) fn parse_net(text: &str) -> Result<IpNet, String> {
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{text:?} is not an address or CIDR"))
}

pub(super) fn cookie_name(text: &str) -> Result<String, String> {
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

/// `webauthn_rp_id`: a domain name, lower case, without scheme, port or
/// path. Browsers refuse an IP address as a relying party id.
pub(super) fn parse_rp_id(text: &str) -> Result<String, String> {
    let id = text.trim().trim_end_matches('.').to_ascii_lowercase();
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if id.len() > 253 || !id.split('.').all(label_ok) {
        return Err(format!(
            "{text:?} is not a domain name such as example.com (an internationalised one in its xn-- form)"
        ));
    }
    if id.parse::<std::net::IpAddr>().is_ok() {
        return Err(format!(
            "{text:?} is an IP address: browsers take only a domain name as a relying party id"
        ));
    }
    Ok(id)
}

pub(super) fn parse_url_base(text: &str) -> Result<String, String> {
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

/// `smtp_url`: `smtp://[user[:password]@]host[:port]` (STARTTLS when the
/// server offers it) or `smtps://...` (TLS from the start). Its Debug form
/// never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpUrl(String);

impl SmtpUrl {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let rest = text
            .strip_prefix("smtp://")
            .or_else(|| text.strip_prefix("smtps://"))
            .ok_or("must be smtp://HOST[:PORT] or smtps://HOST[:PORT], credentials optional")?;
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        if host.is_empty() || host.starts_with(':') || text.contains(char::is_whitespace) {
            return Err("names no host".into());
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether TLS starts with the connection (`smtps://`).
    pub fn implicit_tls(&self) -> bool {
        self.0.starts_with("smtps://")
    }
}

impl std::fmt::Debug for SmtpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.implicit_tls() { "smtps" } else { "smtp" };
        write!(f, "SmtpUrl({scheme}://<hidden>)")
    }
}

/// `mail_from`: `address` or `Name <address>`, one line.
pub(super) fn parse_mailbox(text: &str) -> Result<String, String> {
    let text = text.trim();
    let address = match (text.rfind('<'), text.ends_with('>')) {
        (Some(open), true) => &text[open + 1..text.len() - 1],
        _ => text,
    };
    if text.chars().any(char::is_control) {
        return Err("must be one line".into());
    }
    latchkey_core::mail::EmailAddress::parse(address)
        .map(|_| text.to_owned())
        .map_err(|e| format!("{text:?}: {e}"))
}

/// A page of the app that mailed links open: an http(s) URL.
pub(super) fn parse_page_url(text: &str) -> Result<String, String> {
    let text = text.trim();
    if !(text.starts_with("http://") || text.starts_with("https://"))
        || text.contains(char::is_whitespace)
        || text.contains('#')
    {
        return Err(format!("{text:?} is not an http(s) URL without a fragment"));
    }
    Ok(text.to_owned())
}
