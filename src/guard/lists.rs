//! lists: who may open a connection at all. The operator's `[guard.lists]` (allow and deny CIDRs) is checked
//! on accept, before any TLS work, by the pure [`check`]. Guarantees: deny wins over allow; an empty allow list
//! lets everyone in; an IPv4-mapped IPv6 peer (`::ffff:a.b.c.d`, what a dual-stack socket reports) is checked
//! as the IPv4 address it carries, and list entries written that way are stored as IPv4 too.

use std::net::IpAddr;

use ipnet::IpNet;

/// `[guard.lists]` in its runtime form: truncated, canonical networks. Lives in the config snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lists {
    /// Empty = everyone may connect.
    pub allow: Vec<IpNet>,
    pub deny: Vec<IpNet>,
}

/// Why a list refused a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListRefusal {
    /// The peer is in `deny`.
    Denied,
    /// `allow` is not empty and the peer is in none of its networks.
    NotAllowed,
}

/// Admits `ip` or names the list that refuses it. Deny wins over allow.
pub fn check(ip: IpAddr, lists: &Lists) -> Result<(), ListRefusal> {
    let ip = ip.to_canonical();
    if lists.deny.iter().any(|n| n.contains(&ip)) {
        return Err(ListRefusal::Denied);
    }
    if !lists.allow.is_empty() && !lists.allow.iter().any(|n| n.contains(&ip)) {
        return Err(ListRefusal::NotAllowed);
    }
    Ok(())
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
}
