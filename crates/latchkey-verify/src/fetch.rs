//! Bounded HTTP fetches of the JWKS and of the discovery document, and the
//! cache lifetime a `Cache-Control` header grants.

use std::time::Duration;

use http::header::{HeaderMap, ACCEPT, AGE, CACHE_CONTROL};
use reqwest::Url;

use crate::error::FetchError;
use crate::https::{self, Reason};

/// How long keys are kept when the JWKS says nothing of it.
pub(crate) const DEFAULT_MAX_AGE: Duration = Duration::from_secs(5 * 60);
/// The longest a key set is kept without asking again, whatever it says.
pub(crate) const MAX_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// The bounds every fetch is held to.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bounds {
    pub(crate) timeout: Duration,
    pub(crate) max_bytes: usize,
    /// Plain http to hosts that are not loopback (see [`https`]).
    pub(crate) allow_insecure_http: bool,
}

fn insecure(url: &Url, message: impl Into<String>) -> FetchError {
    FetchError::Insecure {
        url: url.to_string(),
        message: message.into(),
    }
}

/// GETs `url` within `bounds`: the whole exchange, body included, within
/// the timeout, and the body within the size (checked on the announced
/// length and again while reading, for a server that lies or sends chunks).
///
/// Every fetch passes here, so the https rule is checked here too: on the
/// URL asked and on the one that answered, since a client of the user's
/// own may follow redirects this crate's policy would refuse.
pub(crate) async fn get(
    client: &reqwest::Client,
    url: &Url,
    bounds: Bounds,
) -> Result<(Vec<u8>, HeaderMap), FetchError> {
    https::check(url, bounds.allow_insecure_http).map_err(|why| insecure(url, why))?;
    let name = url.as_str();
    let exchange = async {
        let transport = |e: reqwest::Error| {
            if let Some(refused) = https::refused_in(&e) {
                if let Reason::Insecure(why) = refused.reason {
                    return insecure(&refused.url, why);
                }
            }
            if e.is_timeout() {
                return FetchError::Timeout {
                    url: name.to_owned(),
                    timeout: bounds.timeout,
                };
            }
            // reqwest's own text hides the cause: add the chain.
            let mut message = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                message.push_str(": ");
                message.push_str(&cause.to_string());
                source = cause.source();
            }
            FetchError::Transport {
                url: name.to_owned(),
                message,
            }
        };
        let mut response = client
            .get(url.clone())
            .header(ACCEPT, "application/json")
            .send()
            .await
            .map_err(transport)?;
        https::check_final(url, response.url(), bounds.allow_insecure_http)
            .map_err(|why| insecure(response.url(), why))?;
        if !response.status().is_success() {
            return Err(FetchError::Status {
                url: name.to_owned(),
                status: response.status().as_u16(),
            });
        }
        let too_large = || FetchError::TooLarge {
            url: name.to_owned(),
            limit: bounds.max_bytes,
        };
        if response
            .content_length()
            .is_some_and(|n| n > bounds.max_bytes as u64)
        {
            return Err(too_large());
        }
        let headers = response.headers().clone();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > bounds.max_bytes {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok((body, headers))
    };
    tokio::time::timeout(bounds.timeout, exchange)
        .await
        .map_err(|_| FetchError::Timeout {
            url: name.to_owned(),
            timeout: bounds.timeout,
        })?
}

/// How long an answer may be kept: `max-age` (less `Age`), zero for
/// `no-cache`/`no-store`, [`DEFAULT_MAX_AGE`] when neither is said, never
/// more than [`MAX_MAX_AGE`].
pub(crate) fn max_age(headers: &HeaderMap) -> Duration {
    let mut max_age = None;
    for value in headers.get_all(CACHE_CONTROL) {
        let Ok(text) = value.to_str() else { continue };
        for directive in text.split(',') {
            let directive = directive.trim();
            let (name, arg) = match directive.split_once('=') {
                Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
                None => (directive, None),
            };
            if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
                return Duration::ZERO;
            }
            if name.eq_ignore_ascii_case("max-age") {
                match arg.and_then(|a| a.parse::<u64>().ok()) {
                    Some(secs) => max_age = Some(secs),
                    // RFC 9111 §4.2.1: an invalid max-age means stale.
                    None => return Duration::ZERO,
                }
            }
        }
    }
    let Some(secs) = max_age else {
        return DEFAULT_MAX_AGE;
    };
    let age = headers
        .get(AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    Duration::from_secs(secs.saturating_sub(age)).min(MAX_MAX_AGE)
}

/// `{issuer}/.well-known/oauth-authorization-server`, inserted between the
/// host and the issuer's path as RFC 8414 §3.1 says.
pub(crate) fn discovery_url(issuer: &Url) -> Url {
    let mut url = issuer.clone();
    let path = issuer.path().trim_end_matches('/');
    url.set_path(&format!("/.well-known/oauth-authorization-server{path}"));
    url.set_query(None);
    url.set_fragment(None);
    url
}

/// The metadata member naming the key set.
pub(crate) const JWKS_URI: &str = "jwks_uri";
/// The metadata member naming latchkey's revocation feed.
pub(crate) const REVOCATION_FEED_ENDPOINT: &str = "revocation_feed_endpoint";

/// Reads the authorization server's metadata (RFC 8414) and answers the URL
/// its `member` names (such as [`JWKS_URI`]); the document must name the
/// same issuer (§3.3).
pub(crate) async fn discover(
    client: &reqwest::Client,
    issuer: &Url,
    issuer_text: &str,
    bounds: Bounds,
    member: &str,
) -> Result<Url, FetchError> {
    let url = discovery_url(issuer);
    let (body, _) = get(client, &url, bounds).await?;
    let invalid = |message: String| FetchError::Invalid {
        url: url.to_string(),
        message,
    };
    let metadata: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&body)
        .map_err(|e| invalid(format!("not authorization server metadata: {e}")))?;
    let named = metadata.get("issuer").and_then(|v| v.as_str());
    if named != Some(issuer_text) {
        return Err(invalid(format!(
            "it names the issuer {named:?}, not {issuer_text:?}"
        )));
    }
    let found = metadata
        .get(member)
        .and_then(|v| v.as_str())
        .ok_or_else(|| invalid(format!("it has no {member}")))?;
    let found =
        Url::parse(found).map_err(|e| invalid(format!("its {member} is not a URL: {e}")))?;
    // A document served over https may still point at http.
    https::check(&found, bounds.allow_insecure_http)
        .map_err(|why| insecure(&found, format!("the {member} named by {url}: {why}")))?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn cache_control_is_honoured() {
        let secs = |pairs| max_age(&headers(pairs)).as_secs();
        assert_eq!(secs(&[]), DEFAULT_MAX_AGE.as_secs());
        assert_eq!(secs(&[("cache-control", "public, max-age=300")]), 300);
        assert_eq!(secs(&[("cache-control", "max-age=\"60\"")]), 60);
        assert_eq!(
            secs(&[("cache-control", "max-age=300"), ("age", "100")]),
            200
        );
        assert_eq!(secs(&[("cache-control", "max-age=10"), ("age", "100")]), 0);
        assert_eq!(secs(&[("cache-control", "no-cache, max-age=300")]), 0);
        assert_eq!(secs(&[("cache-control", "no-store")]), 0);
        assert_eq!(secs(&[("cache-control", "max-age=soon")]), 0);
        assert_eq!(
            secs(&[("cache-control", "max-age=99999999")]),
            MAX_MAX_AGE.as_secs()
        );
        assert_eq!(
            secs(&[("cache-control", "public"), ("cache-control", "max-age=7")]),
            7
        );
    }

    #[test]
    fn discovery_url_follows_rfc_8414() {
        let d = |i: &str| discovery_url(&Url::parse(i).unwrap()).to_string();
        assert_eq!(
            d("https://login.example.com"),
            "https://login.example.com/.well-known/oauth-authorization-server"
        );
        assert_eq!(
            d("https://example.com/tenant/"),
            "https://example.com/.well-known/oauth-authorization-server/tenant"
        );
        assert_eq!(
            d("http://127.0.0.1:8080"),
            "http://127.0.0.1:8080/.well-known/oauth-authorization-server"
        );
    }
}
