//! connmeta: who is on the other end of a connection, decided once per connection in the listener and handed to
//! every later stage instead of a bare `SocketAddr`. Guarantees: `client` is the TCP peer, or the source of a
//! PROXY v2 header on a listener that requires one; it is always canonical (IPv4-mapped IPv6 as IPv4).
//! `X-Forwarded-For` can change a request's client only when `client` is a trusted proxy
//! ([`ConnMeta::request_client`]); a malformed header never does. The address is used for decisions
//! (lists, access, limits, country) and never stored.

use std::net::{IpAddr, SocketAddr};

use hyper::header::HeaderMap;
use ipnet::IpNet;

use crate::listener::Kind;

/// One connection's identity, built once in the listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnMeta {
    pub listener: Kind,
    /// The TCP peer as accepted (a load balancer when PROXY is on).
    pub peer: SocketAddr,
    /// The client: the PROXY source if the listener requires PROXY, else the TCP peer; canonical.
    pub client: IpAddr,
}

impl ConnMeta {
    pub fn new(listener: Kind, peer: SocketAddr, proxied: Option<SocketAddr>) -> Self {
        let client = proxied.unwrap_or(peer).ip().to_canonical();
        Self {
            listener,
            peer,
            client,
        }
    }

    /// The client of one request: when the connection's client is a trusted proxy, the right-most
    /// `X-Forwarded-For` address that is not itself a trusted proxy (the left-most if all are); the connection's
    /// client when it is not trusted, there is no header, or any entry walked is malformed.
    pub fn request_client(&self, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
        let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
        if !is_trusted(&self.client) {
            return self.client;
        }
        let mut last = None;
        // Several header lines are one list in order; walk it from the right, without collecting it.
        for value in headers.get_all("x-forwarded-for").iter().rev() {
            let Ok(text) = value.to_str() else {
                return self.client;
            };
            for entry in text.rsplit(',') {
                let Ok(ip) = entry.trim().parse::<IpAddr>() else {
                    return self.client;
                };
                let ip = ip.to_canonical();
                if !is_trusted(&ip) {
                    return ip;
                }
                last = Some(ip);
            }
        }
        last.unwrap_or(self.client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(client: &str) -> ConnMeta {
        let peer: SocketAddr = "10.9.9.9:4000".parse().unwrap();
        ConnMeta::new(
            Kind::Public,
            peer,
            Some(SocketAddr::new(client.parse().unwrap(), 1)),
        )
    }

    #[test]
    fn the_client_is_canonical_and_proxy_wins_over_the_peer() {
        let peer: SocketAddr = "[::ffff:203.0.113.9]:1".parse().unwrap();
        assert_eq!(
            ConnMeta::new(Kind::Public, peer, None).client.to_string(),
            "203.0.113.9"
        );
        assert_eq!(meta("198.51.100.1").client.to_string(), "198.51.100.1");
        assert_eq!(meta("198.51.100.1").peer.to_string(), "10.9.9.9:4000");
    }

    #[test]
    fn forwarded_for_counts_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
        // (connection client, X-Forwarded-For lines, expected client)
        let table: &[(&str, &[&str], &str)] = &[
            ("198.51.100.1", &["203.0.113.7"], "198.51.100.1"),
            ("10.0.0.1", &[], "10.0.0.1"),
            ("10.0.0.1", &["203.0.113.7"], "203.0.113.7"),
            ("10.0.0.1", &["1.1.1.1, 203.0.113.7"], "203.0.113.7"),
            (
                "10.0.0.1",
                &["1.1.1.1, 203.0.113.7, 10.0.0.2"],
                "203.0.113.7",
            ),
            (
                "10.0.0.1",
                &["1.1.1.1", "203.0.113.7, 10.1.1.1"],
                "203.0.113.7",
            ),
            ("10.0.0.1", &["10.0.0.3, 10.0.0.2"], "10.0.0.3"),
            ("10.0.0.1", &["::ffff:203.0.113.9"], "203.0.113.9"),
            ("::1", &["2001:db8::1"], "2001:db8::1"),
            ("10.0.0.1", &["nonsense"], "10.0.0.1"),
            ("10.0.0.1", &["203.0.113.7, "], "10.0.0.1"),
            ("10.0.0.1", &["203.0.113.7:443"], "10.0.0.1"),
            ("10.0.0.1", &["garbage, 203.0.113.7"], "203.0.113.7"),
        ];
        for (client, xff, want) in table {
            let mut headers = HeaderMap::new();
            for line in *xff {
                headers.append("x-forwarded-for", line.parse().unwrap());
            }
            let got = meta(client).request_client(&headers, &trusted);
            assert_eq!(got.to_string(), *want, "{client} with {xff:?}");
        }
        let mut headers = HeaderMap::new();
        headers.append("x-forwarded-for", "203.0.113.7".parse().unwrap());
        assert_eq!(
            meta("10.0.0.1").request_client(&headers, &[]).to_string(),
            "10.0.0.1"
        );
    }
}
