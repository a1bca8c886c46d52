//! lists: who may connect, and who may use a route or a tenant, by network. Three places hold allow/deny
//! CIDRs, each checked by a pure function here:
//!
//! - **per listener**, on accept, before any TLS work ([`check_listener`]): `[guard.lists]` applies to both
//!   internet-facing listeners, and `[guard.lists.public]` / `[guard.lists.redirect]` add to it for one
//!   listener. A peer must pass both: either deny list refuses it, and each non-empty allow list must hold it.
//! - **per route**, per request ([`check_route`]): `[guard.lists.routes."/healthz"]` on the request's client
//!   address, keyed by the exact path the router matches, so no spelling of a path reaches it around its list.
//! - **per tenant**, per request (`allow_networks` / `deny_networks`, checked by `access` with [`check`]).
//!
//! Guarantees, everywhere: deny wins over allow (across all the lists that apply, not only within one); an
//! empty allow list lets everyone in; an IPv4-mapped IPv6 peer (`::ffff:a.b.c.d`, what a dual-stack socket
//! reports) is checked as the IPv4 address it carries, and list entries written that way are stored as IPv4.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::listener::Kind;
use crate::reject::Reject;

/// One allow/deny pair in its runtime form: truncated, canonical networks. Lives in the config snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lists {
    /// Empty = everyone may connect.
    pub allow: Vec<IpNet>,
    pub deny: Vec<IpNet>,
}

/// `[guard.lists]` with its per-listener tables: what [`check_listener`] reads on accept. An absent listener
/// table is an empty one (it adds nothing to the global lists).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListenerLists {
    /// `[guard.lists]` itself: both internet-facing listeners.
    pub global: Lists,
    /// `[guard.lists.public]`: the TLS listener only, in addition to `global`.
    pub public: Lists,
    /// `[guard.lists.redirect]`: the plain-HTTP redirect listener only, in addition to `global`.
    pub redirect: Lists,
}

impl ListenerLists {
    /// The lists that apply on `kind`, global first. The admin listener is not guarded and has no table of
    /// its own; were it checked, only the global lists would apply.
    pub fn for_listener(&self, kind: Kind) -> [&Lists; 2] {
        static NONE: Lists = Lists {
            allow: Vec::new(),
            deny: Vec::new(),
        };
        let own = match kind {
            Kind::Public => &self.public,
            Kind::Redirect { .. } => &self.redirect,
            Kind::Admin => &NONE,
        };
        [&self.global, own]
    }
}

/// `[guard.lists.routes]`: allow/deny per public route, by exact path. A route without a table is open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteLists {
    pub by_path: BTreeMap<String, Lists>,
}

/// Why a list refused a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListRefusal {
    /// The peer is in a `deny` list.
    Denied,
    /// An `allow` list is not empty and the peer is in none of its networks.
    NotAllowed,
}

/// Admits `ip` or names the list that refuses it. Deny wins over allow.
pub fn check(ip: IpAddr, lists: &Lists) -> Result<(), ListRefusal> {
    check_all(ip, &[lists])
}

/// Admits `ip` only if every one of `all` admits it. Every deny list is read before any allow list, so a
/// peer that one list denies and another does not allow is `Denied`: deny wins across lists too.
pub fn check_all(ip: IpAddr, all: &[&Lists]) -> Result<(), ListRefusal> {
    let ip = ip.to_canonical();
    if all.iter().any(|l| l.deny.iter().any(|n| n.contains(&ip))) {
        return Err(ListRefusal::Denied);
    }
    let outside = |l: &&Lists| !l.allow.is_empty() && !l.allow.iter().any(|n| n.contains(&ip));
    if all.iter().any(outside) {
        return Err(ListRefusal::NotAllowed);
    }
    Ok(())
}

/// The accept-time check on listener `kind`: `[guard.lists]` and the listener's own table together.
pub fn check_listener(ip: IpAddr, kind: Kind, lists: &ListenerLists) -> Result<(), ListRefusal> {
    check_all(ip, &lists.for_listener(kind))
}

/// The per-request check of `path`'s lists on the request's client; a path without lists admits everyone.
/// Refuses with `403 route_network_not_allowed`.
pub fn check_route(ip: IpAddr, path: &str, routes: &RouteLists) -> Result<(), Reject> {
    match routes.by_path.get(path) {
        Some(lists) => check(ip, lists).map_err(|_| Reject::RouteNetworkNotAllowed),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lists(allow: &[&str], deny: &[&str]) -> Lists {
        let nets = |l: &[&str]| l.iter().map(|t| t.parse().unwrap()).collect();
        Lists {
            allow: nets(allow),
            deny: nets(deny),
        }
    }

    /// (allow, deny, peer, expected)
    type Case = (
        &'static [&'static str],
        &'static [&'static str],
        &'static str,
        Result<(), ListRefusal>,
    );

    #[test]
    fn table() {
        use ListRefusal::{Denied, NotAllowed};
        let cases: &[Case] = &[
            (&[], &[], "203.0.113.7", Ok(())),
            (&[], &[], "2001:db8::1", Ok(())),
            (&[], &["203.0.113.0/24"], "203.0.113.7", Err(Denied)),
            (&[], &["203.0.113.0/24"], "203.0.114.7", Ok(())),
            (&[], &["203.0.113.7/32"], "::ffff:203.0.113.7", Err(Denied)),
            (&["10.0.0.0/8"], &[], "10.1.2.3", Ok(())),
            (&["10.0.0.0/8"], &[], "::ffff:10.1.2.3", Ok(())),
            (&["10.0.0.0/8"], &[], "127.0.0.1", Err(NotAllowed)),
            (&["10.0.0.0/8"], &[], "2001:db8::1", Err(NotAllowed)),
            (&["10.0.0.0/8"], &["10.9.0.0/16"], "10.9.1.1", Err(Denied)),
            (&["10.0.0.0/8"], &["10.9.0.0/16"], "10.8.1.1", Ok(())),
            // deny wins even when the peer is also allowed
            (&["0.0.0.0/0"], &["192.0.2.1/32"], "192.0.2.1", Err(Denied)),
            (&["2001:db8::/32"], &[], "2001:db8:1::5", Ok(())),
            (&["2001:db8::/32"], &[], "2001:db9::5", Err(NotAllowed)),
            (&[], &["2001:db8:0:1::/64"], "2001:db8:0:1::ff", Err(Denied)),
            (&[], &["2001:db8:0:1::/64"], "2001:db8:0:2::ff", Ok(())),
            (&[], &["::1/128"], "::1", Err(Denied)),
            // an IPv4 network does not match an IPv6 peer outside the mapped range
            (&[], &["0.0.0.0/0"], "2001:db8::1", Ok(())),
            (&["::/0"], &[], "192.0.2.1", Err(NotAllowed)),
        ];
        for (allow, deny, peer, want) in cases {
            let got = check(peer.parse().unwrap(), &lists(allow, deny));
            assert_eq!(got, *want, "allow {allow:?} deny {deny:?} peer {peer}");
        }
    }

    /// One row of the per-listener table: (global, public, redirect) as (allow, deny) pairs, the peer, and
    /// what the public and the redirect listener decide.
    type ListenerCase = (
        [(&'static [&'static str], &'static [&'static str]); 3],
        &'static str,
        Result<(), ListRefusal>,
        Result<(), ListRefusal>,
    );

    #[test]
    fn per_listener_combinations() {
        use ListRefusal::{Denied, NotAllowed};
        const E: (&[&str], &[&str]) = (&[], &[]);
        const LAN: &[&str] = &["10.0.0.0/8"];
        const HOST: &[&str] = &["10.1.2.3/32"];
        let public = Kind::Public;
        let redirect = Kind::Redirect { https_port: 443 };
        let cases: &[ListenerCase] = &[
            // nothing configured: everyone, everywhere
            ([E, E, E], "10.1.2.3", Ok(()), Ok(())),
            // the global deny applies on both listeners
            ([(&[], HOST), E, E], "10.1.2.3", Err(Denied), Err(Denied)),
            // a listener's deny applies there only
            ([E, E, (&[], HOST)], "10.1.2.3", Ok(()), Err(Denied)),
            ([E, (&[], LAN), E], "10.1.2.3", Err(Denied), Ok(())),
            // a listener's allow narrows that listener only
            ([E, (LAN, &[]), E], "192.0.2.1", Err(NotAllowed), Ok(())),
            ([E, (LAN, &[]), E], "::ffff:10.1.2.3", Ok(()), Ok(())),
            // both allows must hold the peer: the listener's allow cannot widen the global one
            (
                [(LAN, &[]), (&["192.0.2.0/24"], &[]), E],
                "192.0.2.1",
                Err(NotAllowed),
                Err(NotAllowed),
            ),
            (
                [(LAN, &[]), (HOST, &[]), E],
                "10.9.9.9",
                Err(NotAllowed),
                Ok(()),
            ),
            ([(LAN, &[]), (HOST, &[]), E], "10.1.2.3", Ok(()), Ok(())),
            // deny wins across lists: allowed by the listener, denied globally (and the reverse)
            (
                [(&[], LAN), (HOST, &[]), E],
                "10.1.2.3",
                Err(Denied),
                Err(Denied),
            ),
            (
                [(LAN, &[]), (&[], HOST), E],
                "10.1.2.3",
                Err(Denied),
                Ok(()),
            ),
            // denied by the listener and outside the global allow: reported as denied
            (
                [(&["192.0.2.0/24"], &[]), (&[], HOST), E],
                "10.1.2.3",
                Err(Denied),
                Err(NotAllowed),
            ),
            // IPv6 per listener
            (
                [E, E, (&[], &["2001:db8::/32"])],
                "2001:db8::7",
                Ok(()),
                Err(Denied),
            ),
            (
                [E, (&["2001:db8::/32"], &[]), E],
                "2001:db9::7",
                Err(NotAllowed),
                Ok(()),
            ),
        ];
        for ([g, p, r], peer, want_public, want_redirect) in cases {
            let ll = ListenerLists {
                global: lists(g.0, g.1),
                public: lists(p.0, p.1),
                redirect: lists(r.0, r.1),
            };
            let ip: IpAddr = peer.parse().unwrap();
            let row = format!("{g:?} {p:?} {r:?} {peer}");
            assert_eq!(
                check_listener(ip, public, &ll),
                *want_public,
                "public {row}"
            );
            assert_eq!(
                check_listener(ip, redirect, &ll),
                *want_redirect,
                "redirect {row}"
            );
            // the admin listener has no table of its own: only the global lists
            assert_eq!(
                check_listener(ip, Kind::Admin, &ll),
                check(ip, &ll.global),
                "admin {row}"
            );
        }
    }

    #[test]
    fn route_lists_apply_to_their_exact_path_only() {
        let routes = RouteLists {
            by_path: BTreeMap::from([
                ("/healthz".to_string(), lists(&["10.0.0.0/8"], &[])),
                (
                    "/v1/events".to_string(),
                    lists(&[], &["2001:db8::/32", "192.0.2.0/24"]),
                ),
            ]),
        };
        let refused = Err(Reject::RouteNetworkNotAllowed);
        let cases: &[(&str, &str, Result<(), Reject>)] = &[
            ("/healthz", "10.1.2.3", Ok(())),
            ("/healthz", "::ffff:10.1.2.3", Ok(())),
            ("/healthz", "127.0.0.2", refused.clone()),
            ("/healthz", "2001:db8::1", refused.clone()),
            ("/v1/events", "127.0.0.2", Ok(())),
            ("/v1/events", "192.0.2.9", refused.clone()),
            ("/v1/events", "::ffff:192.0.2.9", refused.clone()),
            ("/v1/events", "2001:db8:1::1", refused.clone()),
            ("/v1/events", "2001:db9::1", Ok(())),
            // other paths (404 anyway) and other spellings have no lists: the router serves none of them
            ("/healthz/", "127.0.0.2", Ok(())),
            ("/HEALTHZ", "127.0.0.2", Ok(())),
            ("/nope", "192.0.2.9", Ok(())),
        ];
        for (path, peer, want) in cases {
            let got = check_route(peer.parse().unwrap(), path, &routes);
            assert_eq!(&got, want, "{path} {peer}");
        }
        assert_eq!(
            check_route(
                "192.0.2.9".parse().unwrap(),
                "/v1/events",
                &RouteLists::default()
            ),
            Ok(())
        );
    }
}
