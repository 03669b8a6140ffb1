//! The https-only rule for every URL the keys come from, and the redirect
//! policy that keeps it across redirects.
//!
//! Keys fetched over plain http can be swapped on the way by anyone on the
//! path, and with them every token would verify. Loopback never leaves the
//! machine, so http stays allowed there (a latchkey on
//! `http://127.0.0.1:8080` in development); anywhere else it takes the
//! explicit [`allow_insecure_http`](crate::VerifierBuilder::allow_insecure_http).

use std::fmt;
use std::net::IpAddr;

use reqwest::redirect::{Attempt, Policy};
use reqwest::Url;

/// The most redirects one fetch follows.
pub const MAX_REDIRECTS: usize = 3;

/// Why plain http was refused, for messages.
pub(crate) const PLAIN_HTTP: &str = "plain http is allowed only to a loopback host \
     (localhost, 127.0.0.0/8, ::1) or with allow_insecure_http(true)";
/// Why a redirect to http was refused, whatever the opt-in says.
pub(crate) const DOWNGRADE: &str = "a redirect may not go from https to http";

/// `localhost`, `127.0.0.0/8` or `::1`: the names that never leave the
/// machine. Deliberately exact: `localhost.`, `*.localhost` and
/// `::ffff:127.0.0.1` go through a resolver or a translation this crate
/// cannot vouch for.
pub(crate) fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    // The URL parser has already normalised IP hosts (`127.1` is
    // `127.0.0.1`), and brackets IPv6 ones.
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether keys may be fetched from `url`: `https`, or `http` to a
/// loopback host or with the opt-in. The error says why not.
pub(crate) fn check(url: &Url, allow_insecure_http: bool) -> Result<(), &'static str> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if allow_insecure_http || is_loopback(url) => Ok(()),
        "http" => Err(PLAIN_HTTP),
        _ => Err("only https (or http to a loopback host) is fetched"),
    }
}

/// Whether a chain that started at `first` may end at `last`: the check of
/// [`check`], and no downgrade from https. Applies to answers of any
/// client, including one whose redirect policy is not this crate's.
pub(crate) fn check_final(
    first: &Url,
    last: &Url,
    allow_insecure_http: bool,
) -> Result<(), &'static str> {
    if first.scheme() == "https" && last.scheme() != "https" {
        return Err(DOWNGRADE);
    }
    check(last, allow_insecure_http)
}

/// A redirect refused: to this URL, for this reason.
#[derive(Debug)]
pub(crate) struct Refused {
    pub(crate) url: Url,
    pub(crate) reason: Reason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// To plain http: a downgrade, or a host that is not loopback.
    Insecure(&'static str),
    /// One too many.
    TooMany,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason {
            Reason::Insecure(why) => write!(f, "refused the redirect to {}: {why}", self.url),
            Reason::TooMany => write!(f, "refused more than {MAX_REDIRECTS} redirects"),
        }
    }
}

impl std::error::Error for Refused {}

/// The decision of [`redirect_policy`]: may a chain through `previous`
/// (the first URL asked, then every redirect followed) go on to `next`?
///
/// Once any step was https, http is never followed, even with the opt-in:
/// the opt-in is for servers that have no TLS at all, not for letting a
/// secure fetch fall back to an insecure one.
pub(crate) fn redirect(
    next: &Url,
    previous: &[Url],
    allow_insecure_http: bool,
) -> Result<(), Reason> {
    // `previous` holds the first URL too: N entries, N - 1 redirects so far.
    if previous.len() > MAX_REDIRECTS {
        return Err(Reason::TooMany);
    }
    if next.scheme() != "https" && previous.iter().any(|u| u.scheme() == "https") {
        return Err(Reason::Insecure(DOWNGRADE));
    }
    check(next, allow_insecure_http).map_err(Reason::Insecure)
}

/// The redirect policy of the client the crate builds: at most
/// [`MAX_REDIRECTS`] redirects, never from https to http, and to plain
/// http only for a loopback host unless `allow_insecure_http`.
///
/// For a client of your own ([`http_client`](crate::VerifierBuilder::http_client)),
/// whose redirect policy applies instead of this one, pass it to
/// [`ClientBuilder::redirect`](reqwest::ClientBuilder::redirect) to get the
/// same rules:
///
/// ```
/// let client = reqwest::Client::builder()
///     .redirect(latchkey_verify::redirect_policy(false))
///     .build()?;
/// # Ok::<(), reqwest::Error>(())
/// ```
pub fn redirect_policy(allow_insecure_http: bool) -> Policy {
    Policy::custom(move |attempt: Attempt<'_>| {
        match redirect(attempt.url(), attempt.previous(), allow_insecure_http) {
            Ok(()) => attempt.follow(),
            Err(reason) => {
                let url = attempt.url().clone();
                attempt.error(Refused { url, reason })
            }
        }
    })
}

/// The refused redirect in `error`'s chain, if that is what failed.
pub(crate) fn refused_in<'e>(error: &'e (dyn std::error::Error + 'static)) -> Option<&'e Refused> {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(refused) = e.downcast_ref::<Refused>() {
            return Some(refused);
        }
        cause = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    fn urls(texts: &[&str]) -> Vec<Url> {
        texts.iter().map(|t| url(t)).collect()
    }

    #[test]
    fn loopback_is_exactly_localhost_127_8_and_ipv6_1() {
        for yes in [
            "http://localhost/",
            "http://LOCALHOST:8080/",
            "http://127.0.0.1/",
            "http://127.255.3.4:99/",
            "http://127.1/",
            "http://[::1]:8080/",
        ] {
            assert!(is_loopback(&url(yes)), "{yes}");
        }
        for no in [
            "http://localhost./",
            "http://api.localhost/",
            "http://localhost.example.com/",
            "http://127.0.0.1.nip.io/",
            "http://128.0.0.1/",
            "http://0.0.0.0/",
            "http://[::]/",
            "http://[::ffff:127.0.0.1]/",
            "http://10.0.0.1/",
            "http://login.example.com/",
        ] {
            assert!(!is_loopback(&url(no)), "{no}");
        }
    }

    #[test]
    fn https_always_http_only_to_loopback_or_with_the_opt_in() {
        assert_eq!(check(&url("https://login.example.com/"), false), Ok(()));
        assert_eq!(check(&url("http://127.0.0.1:1/"), false), Ok(()));
        assert_eq!(
            check(&url("http://login.example.com/"), false),
            Err(PLAIN_HTTP)
        );
        assert_eq!(check(&url("http://login.example.com/"), true), Ok(()));
        assert!(check(&url("ftp://127.0.0.1/"), true).is_err());
        assert!(check(&url("file:///etc/jwks.json"), true).is_err());
    }

    #[test]
    fn a_redirect_never_goes_from_https_to_http() {
        let secure = urls(&["https://login.example.com/jwks.json"]);
        for allow in [false, true] {
            for next in [
                "http://login.example.com/",
                "http://127.0.0.1/",
                "http://localhost/",
            ] {
                assert_eq!(
                    redirect(&url(next), &secure, allow),
                    Err(Reason::Insecure(DOWNGRADE)),
                    "{next}, allow={allow}"
                );
            }
            // Nor later in the chain, after a step back to loopback https.
            let chain = urls(&["https://login.example.com/", "https://localhost/"]);
            assert_eq!(
                redirect(&url("http://localhost/"), &chain, allow),
                Err(Reason::Insecure(DOWNGRADE))
            );
            assert_eq!(
                redirect(&url("https://keys.example.com/"), &secure, allow),
                Ok(())
            );
        }
    }

    #[test]
    fn a_redirect_to_remote_http_needs_the_opt_in() {
        let local = urls(&["http://127.0.0.1:8080/jwks.json"]);
        let remote = url("http://keys.example.com/jwks.json");
        assert_eq!(
            redirect(&remote, &local, false),
            Err(Reason::Insecure(PLAIN_HTTP))
        );
        assert_eq!(redirect(&remote, &local, true), Ok(()));
        // Loopback to loopback, and upgrades, are fine.
        assert_eq!(redirect(&url("http://localhost:1/"), &local, false), Ok(()));
        assert_eq!(
            redirect(&url("https://keys.example.com/"), &local, false),
            Ok(())
        );
        assert!(redirect(&url("ftp://127.0.0.1/"), &local, true).is_err());
    }

    #[test]
    fn at_most_three_redirects() {
        let next = url("https://keys.example.com/");
        let mut chain = urls(&["https://login.example.com/0"]);
        for i in 1..=MAX_REDIRECTS {
            assert_eq!(redirect(&next, &chain, false), Ok(()), "redirect {i}");
            chain.push(url(&format!("https://login.example.com/{i}")));
        }
        assert_eq!(redirect(&next, &chain, false), Err(Reason::TooMany));
    }

    #[test]
    fn the_final_url_keeps_the_rule() {
        let secure = url("https://login.example.com/");
        let local = url("http://127.0.0.1/");
        assert_eq!(check_final(&secure, &secure, false), Ok(()));
        assert_eq!(check_final(&secure, &local, true), Err(DOWNGRADE));
        assert_eq!(check_final(&local, &local, false), Ok(()));
        let remote = url("http://login.example.com/");
        assert_eq!(check_final(&local, &remote, false), Err(PLAIN_HTTP));
        assert_eq!(check_final(&local, &remote, true), Ok(()));
    }
}
