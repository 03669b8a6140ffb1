//! The two cookies of docs/reference.md §4.3: built, read and cleared here only.

use std::time::Duration;

use axum::http::{header, HeaderMap, HeaderValue};
use cookie::{Cookie, SameSite};

/// Cookie names and attributes from the configuration.
#[derive(Debug, Clone)]
pub struct CookieSettings {
    pub access_name: String,
    pub refresh_name: String,
    pub secure: bool,
    pub domain: Option<String>,
}

/// The refresh cookie is sent only to the auth endpoints.
pub const REFRESH_PATH: &str = "/v1/auth";

impl CookieSettings {
    fn build(
        &self,
        name: &str,
        value: &str,
        path: &'static str,
        same_site: SameSite,
        max_age: Duration,
    ) -> HeaderValue {
        let mut cookie = Cookie::build((name.to_owned(), value.to_owned()))
            .http_only(true)
            .same_site(same_site)
            .path(path)
            .secure(self.secure)
            .max_age(cookie::time::Duration::seconds(max_age.as_secs() as i64));
        if let Some(domain) = &self.domain {
            cookie = cookie.domain(domain.clone());
        }
        // Names are checked at start-up and values are base64url: always valid.
        HeaderValue::from_str(&cookie.build().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// Both cookies of a fresh pair.
    pub fn set_pair(
        &self,
        headers: &mut HeaderMap,
        access: &str,
        access_ttl: Duration,
        refresh: &str,
        refresh_ttl: Duration,
    ) {
        headers.append(
            header::SET_COOKIE,
            self.build(&self.access_name, access, "/", SameSite::Lax, access_ttl),
        );
        headers.append(
            header::SET_COOKIE,
            self.build(
                &self.refresh_name,
                refresh,
                REFRESH_PATH,
                SameSite::Strict,
                refresh_ttl,
            ),
        );
    }

    /// Clears both cookies (`Max-Age=0`).
    pub fn clear_pair(&self, headers: &mut HeaderMap) {
        headers.append(
            header::SET_COOKIE,
            self.build(&self.access_name, "", "/", SameSite::Lax, Duration::ZERO),
        );
        headers.append(
            header::SET_COOKIE,
            self.build(
                &self.refresh_name,
                "",
                REFRESH_PATH,
                SameSite::Strict,
                Duration::ZERO,
            ),
        );
    }
}

/// The value of the named cookie among the request's `Cookie` headers. A
/// name sent twice counts as absent: the second may have been planted by a
/// sibling subdomain (cookie tossing), and nothing tells which is ours.
pub fn read(headers: &HeaderMap, name: &str) -> Option<String> {
    let mut values = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(n, _)| *n == name)
        .map(|(_, v)| v);
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    Some(value.trim_matches('"').to_owned()).filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_named_cookie_among_several_headers() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; refreshToken=r1"),
        );
        h.append(header::COOKIE, HeaderValue::from_static("accessToken=t"));
        assert_eq!(read(&h, "refreshToken").as_deref(), Some("r1"));
        assert_eq!(read(&h, "accessToken").as_deref(), Some("t"));
        assert_eq!(read(&h, "missing"), None);
        h.append(header::COOKIE, HeaderValue::from_static("empty="));
        assert_eq!(read(&h, "empty"), None);
    }

    #[test]
    fn a_name_sent_twice_is_absent() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("refreshToken=ours; refreshToken=tossed"),
        );
        assert_eq!(read(&h, "refreshToken"), None);
        let mut split = HeaderMap::new();
        split.append(
            header::COOKIE,
            HeaderValue::from_static("refreshToken=ours"),
        );
        split.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; refreshToken=x"),
        );
        assert_eq!(read(&split, "refreshToken"), None);
        assert_eq!(read(&split, "a").as_deref(), Some("1"));
    }
}
