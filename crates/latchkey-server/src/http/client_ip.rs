//! The client address: the peer's, or from `X-Forwarded-For` when the peer
//! is a trusted proxy.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::IpNet;

/// `trusted_proxies` (docs/reference.md §6): the forwarded-for headers, read in
/// order as one list; its right-most address not in the trusted list is the
/// client, or its left-most when all are trusted. Anything unreadable ends
/// the walk at the last trusted hop, which is then the client as far as we
/// can tell. An IPv4-mapped IPv6 address (a dual-stack socket's view of an
/// IPv4 peer) is taken as the IPv4 address it maps.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Some(ip) = parse_hop(hop) else {
            return client;
        };
        client = ip;
        if !is_trusted(&ip) {
            return ip;
        }
    }
    client
}

fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn untrusted_peers_are_the_client_whatever_they_claim() {
        let h = headers(&["1.2.3.4"]);
        assert_eq!(client_ip(ip("9.9.9.9"), &h, &[]), ip("9.9.9.9"));
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        let trusted = ["10.0.0.0/8".parse().unwrap()];
        let h = headers(&["6.6.6.6, 1.2.3.4", "10.0.0.2"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("1.2.3.4"));
    }

    #[test]
    fn all_trusted_gives_the_left_most() {
        let trusted = ["10.0.0.0/8".parse().unwrap()];
        let h = headers(&["10.0.0.5, 10.0.0.2"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("10.0.0.5"));
        assert_eq!(
            client_ip(ip("10.0.0.1"), &HeaderMap::new(), &trusted),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn ipv4_mapped_peers_are_ipv4() {
        let trusted = ["10.0.0.0/8".parse().unwrap()];
        let h = headers(&["1.2.3.4"]);
        assert_eq!(
            client_ip(ip("::ffff:10.0.0.1"), &h, &trusted),
            ip("1.2.3.4")
        );
        assert_eq!(
            client_ip(ip("::ffff:9.9.9.9"), &HeaderMap::new(), &[]),
            ip("9.9.9.9")
        );
    }

    #[test]
    fn garbage_stops_at_the_last_trusted_hop() {
        let trusted = ["10.0.0.0/8".parse().unwrap()];
        let h = headers(&["1.2.3.4, nonsense, 10.0.0.2"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("10.0.0.2"));
        let with_port = headers(&["[2001:db8::1]:443"]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), &with_port, &trusted),
            ip("2001:db8::1")
        );
    }

    proptest! {
        #[test]
        fn never_panics_and_answers_a_listed_address(xff in "[0-9a-f.:, \\[\\]]{0,80}") {
            let trusted = ["127.0.0.0/8".parse().unwrap()];
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&xff) {
                h.append("x-forwarded-for", v);
            }
            let got = client_ip(ip("127.0.0.1"), &h, &trusted);
            prop_assert!(got == ip("127.0.0.1") || xff.contains(&got.to_string()) || got.is_ipv6());
        }
    }
}
