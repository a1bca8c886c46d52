//! `[guard]`: the rate limits, the allow/deny lists and the connection bounds, validated into their runtime form.

use std::net::IpAddr;
use std::num::NonZeroU32;

use ipnet::{IpNet, Ipv4Net};

use std::time::Duration;

use super::file::{BansFile, BehaviourFile, GuardFile, NetListFile, QuotaFile, RateLimitFile};
use super::validate::Errors;
use crate::guard::bans::BanPolicy;
use crate::guard::behaviour::BehaviourPolicy;
use crate::guard::conns::ConnPolicy;
use crate::guard::jail::BehaviourConfig;
use crate::guard::lists::{ListenerLists, Lists, RouteLists};
use crate::guard::ratelimit::{Mode, Quota, RateLimits};

/// The most connections one address may hold; far above any real client, below the global cap's range.
const MAX_PER_ADDRESS_LIMIT: u64 = 1_000_000;

pub(super) fn ratelimit(f: &RateLimitFile, errs: &mut Errors) -> RateLimits {
    let mode = match f.mode.as_str() {
        "enforce" => Mode::Enforce,
        "detect" => Mode::Detect,
        other => {
            errs.push(
                "guard.ratelimit.mode",
                format!("{other:?} is not \"enforce\" or \"detect\""),
            );
            Mode::Enforce
        }
    };
    if f.max_keys > 10_000_000 {
        errs.push(
            "guard.ratelimit.max_keys",
            format!("{} is out of range 0..=10000000", f.max_keys),
        );
    }
    RateLimits {
        per_address: quota("per_address", f.per_address.as_ref(), errs),
        per_tenant: quota("per_tenant", f.per_tenant.as_ref(), errs),
        per_address_tenant: quota("per_address_tenant", f.per_address_tenant.as_ref(), errs),
        max_keys: f.max_keys as usize,
        mode,
    }
}

fn quota(name: &str, q: Option<&QuotaFile>, errs: &mut Errors) -> Option<Quota> {
    let q = q?;
    let mut field = |key: &str, v: u64| {
        let n = u32::try_from(v)
            .ok()
            .and_then(NonZeroU32::new)
            .filter(|n| n.get() <= 10_000_000);
        if n.is_none() {
            errs.push(
                format!("guard.ratelimit.{name}.{key}"),
                format!("{v} is out of range 1..=10000000"),
            );
        }
        n
    };
    let (rate, burst) = (field("rate_per_s", q.rate_per_s), field("burst", q.burst));
    Some(Quota {
        rate_per_s: rate?,
        burst: burst?,
    })
}

/// `[guard.lists]` (with `[guard.lists.public]` and `[guard.lists.redirect]`) and `[guard.connections]`.
pub(super) fn connections(f: &GuardFile, errs: &mut Errors) -> ConnPolicy {
    let l = &f.lists;
    let lists = ListenerLists {
        global: Lists {
            allow: networks(&l.allow, "guard.lists.allow", errs),
            deny: networks(&l.deny, "guard.lists.deny", errs),
        },
        public: pair(&l.public, "guard.lists.public", errs),
        redirect: pair(&l.redirect, "guard.lists.redirect", errs),
    };
    let v = f.connections.max_per_address;
    let max = u32::try_from(v)
        .ok()
        .and_then(NonZeroU32::new)
        .filter(|n| u64::from(n.get()) <= MAX_PER_ADDRESS_LIMIT);
    if max.is_none() {
        errs.push(
            "guard.connections.max_per_address",
            format!("{v} is out of range 1..={MAX_PER_ADDRESS_LIMIT}"),
        );
    }
    ConnPolicy {
        lists,
        max_per_address: max.unwrap_or(ConnPolicy::default().max_per_address),
    }
}

/// `[guard.lists.routes]`: one table per public route, keyed by its exact path; an unknown path is an error.
pub(super) fn route_lists(f: &GuardFile, errs: &mut Errors) -> RouteLists {
    let mut by_path = std::collections::BTreeMap::new();
    for (path, table) in &f.lists.routes {
        let at = format!("guard.lists.routes.{path:?}");
        if !crate::http::public::ROUTES.contains(&path.as_str()) {
            let known = crate::http::public::ROUTES.join("\", \"");
            errs.push(
                &at,
                format!("no public route {path:?} (routes: \"{known}\")"),
            );
            continue;
        }
        by_path.insert(path.clone(), pair(table, &at, errs));
    }
    RouteLists { by_path }
}

/// One `allow`/`deny` table, its entries reported under `{at}.allow[i]` and `{at}.deny[i]`.
fn pair(f: &NetListFile, at: &str, errs: &mut Errors) -> Lists {
    Lists {
        allow: networks(&f.allow, &format!("{at}.allow"), errs),
        deny: networks(&f.deny, &format!("{at}.deny"), errs),
    }
}

/// CIDR networks (a bare address is one host), IPv4-mapped IPv6 ones written as IPv4, as peers are checked;
/// every bad entry is reported as `{at}[i]`.
pub(super) fn networks(list: &[String], at: &str, errs: &mut Errors) -> Vec<IpNet> {
    let mut out = Vec::with_capacity(list.len());
    for (i, text) in list.iter().enumerate() {
        let parsed = text
            .parse::<IpNet>()
            .or_else(|_| text.parse::<IpAddr>().map(IpNet::from));
        match parsed.ok().and_then(canonical) {
            Some(net) => out.push(net.trunc()),
            None => errs.push(
                format!("{at}[{i}]"),
                format!("{text:?} is not a network like \"10.0.0.0/8\" or \"2001:db8::/32\" or an address"),
            ),
        }
    }
    out
}

/// `::ffff:10.0.0.0/104` → `10.0.0.0/8`; `None` for an IPv4-mapped network wider than the mapped range.
fn canonical(net: IpNet) -> Option<IpNet> {
    let IpNet::V6(v6) = net else { return Some(net) };
    match v6.addr().to_canonical() {
        IpAddr::V4(v4) => {
            let prefix = v6.prefix_len().checked_sub(96)?;
            Ipv4Net::new(v4, prefix).ok().map(IpNet::V4)
        }
        IpAddr::V6(_) => Some(net),
    }
}

/// The anomaly engine, compiled; `None` when `[guard.anomaly]` is absent.
pub(super) fn anomaly(
    f: Option<&super::file::AnomalyFile>,
    errs: &mut Errors,
) -> Option<std::sync::Arc<crate::guard::anomaly::Engine>> {
    use crate::guard::anomaly::{
        AnomalyConfig, Engine, Exclusion, Family, FamilyModes, Mode as FamilyMode,
    };
    let f = f?;
    let mode = match f.mode.as_str() {
        "enforce" => FamilyMode::Enforce,
        "detect" => FamilyMode::Detect,
        other => {
            errs.push(
                "guard.anomaly.mode",
                format!("{other:?} is not \"enforce\" or \"detect\""),
            );
            return None;
        }
    };
    let mut families = FamilyModes::default();
    for family in Family::ALL {
        families.set(family, mode);
    }
    let family_of = |label: &str, at: String, errs: &mut Errors| {
        let found = Family::from_label(label);
        if found.is_none() {
            let all: Vec<&str> = Family::ALL.iter().map(|f| f.label()).collect();
            errs.push(
                at,
                format!("{label:?} is not a family ({})", all.join(", ")),
            );
        }
        found
    };
    for (label, m) in &f.families {
        let at = format!("guard.anomaly.families.{label}");
        let m = match m.as_str() {
            "enforce" => FamilyMode::Enforce,
            "detect" => FamilyMode::Detect,
            "off" => FamilyMode::Off,
            other => {
                errs.push(
                    &at,
                    format!("{other:?} is not \"enforce\", \"detect\" or \"off\""),
                );
                continue;
            }
        };
        if let Some(family) = family_of(label, at, errs) {
            families.set(family, m);
        }
    }
    let mut exclusions = Vec::with_capacity(f.exclusions.len());
    for (i, e) in f.exclusions.iter().enumerate() {
        let family = match &e.family {
            Some(l) => match family_of(l, format!("guard.anomaly.exclusions[{i}].family"), errs) {
                Some(f) => Some(f),
                None => continue,
            },
            None => None,
        };
        exclusions.push(Exclusion {
            tenant: e.tenant.clone(),
            field_prefix: e.field.clone(),
            family,
        });
    }
    let config = AnomalyConfig {
        threshold: u32::try_from(f.threshold).unwrap_or(u32::MAX),
        paranoia: u8::try_from(f.paranoia).unwrap_or(u8::MAX),
        families,
        exclusions,
        ..AnomalyConfig::default()
    };
    Engine::new(&config)
        .map(std::sync::Arc::new)
        .map_err(|e| errs.push("guard.anomaly", e.to_string()))
        .ok()
}

fn enforce(mode: &str, at: &str, errs: &mut Errors) -> bool {
    match mode {
        "enforce" => true,
        "detect" => false,
        other => {
            errs.push(at, format!("{other:?} is not \"enforce\" or \"detect\""));
            true
        }
    }
}

/// `v` as a count within `lo..=hi`, reported at `at` otherwise.
fn bounded(v: u64, lo: u64, hi: u64, at: &str, errs: &mut Errors) -> u64 {
    if !(lo..=hi).contains(&v) {
        errs.push(at, format!("{v} is out of range {lo}..={hi}"));
    }
    v.clamp(lo, hi)
}

/// `[guard.bans]`; `None` when absent.
pub(super) fn bans(f: Option<&BansFile>, errs: &mut Errors) -> Option<BanPolicy> {
    let f = f?;
    let secs = |v: u64, key: &str, errs: &mut Errors| {
        Duration::from_secs(bounded(
            v,
            1,
            365 * 86_400,
            &format!("guard.bans.{key}"),
            errs,
        ))
    };
    let ttl = secs(f.ttl_s, "ttl_s", errs);
    let max_ttl = secs(f.max_ttl_s, "max_ttl_s", errs);
    if max_ttl < ttl {
        errs.push("guard.bans.max_ttl_s", "must be at least ttl_s");
    }
    Some(BanPolicy {
        enforce: enforce(&f.mode, "guard.bans.mode", errs),
        ttl,
        max_ttl,
        forget: secs(f.forget_s, "forget_s", errs),
        max_entries: bounded(f.max_entries, 1, 10_000_000, "guard.bans.max_entries", errs) as usize,
        exempt: networks(&f.exempt, "guard.bans.exempt", errs),
    })
}

/// `[guard.behaviour]`; `None` when absent.
pub(super) fn behaviour(f: Option<&BehaviourFile>, errs: &mut Errors) -> Option<BehaviourConfig> {
    let f = f?;
    let n = |v: u64, key: &str, errs: &mut Errors| {
        bounded(
            v,
            1,
            u64::from(u32::MAX),
            &format!("guard.behaviour.{key}"),
            errs,
        ) as u32
    };
    let policy = BehaviourPolicy {
        window: Duration::from_secs(bounded(
            f.window_s,
            1,
            86_400,
            "guard.behaviour.window_s",
            errs,
        )),
        max_client_errors: n(f.max_client_errors, "max_client_errors", errs),
        max_unknown_sites: n(f.max_unknown_sites, "max_unknown_sites", errs).min(1024),
        max_events: n(f.max_events, "max_events", errs),
        max_keys: bounded(f.max_keys, 1, 10_000_000, "guard.behaviour.max_keys", errs) as usize,
    };
    Some(BehaviourConfig {
        policy,
        enforce: enforce(&f.mode, "guard.behaviour.mode", errs),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::file::{ConnectionsFile, ListsFile};

    fn guard(allow: &[&str], deny: &[&str], max: u64) -> GuardFile {
        let strings = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        GuardFile {
            ratelimit: Default::default(),
            lists: ListsFile {
                allow: strings(allow),
                deny: strings(deny),
                ..ListsFile::default()
            },
            connections: ConnectionsFile {
                max_per_address: max,
            },
            trusted_proxies: vec![],
            anomaly: None,
            bans: None,
            behaviour: None,
        }
    }

    #[test]
    fn every_bad_entry_is_reported_with_its_path() {
        let mut errs = Errors::default();
        connections(
            &guard(
                &["10.0.0.0/8", "nope"],
                &["1.2.3.4", "::1", "10.0.0.0/33"],
                0,
            ),
            &mut errs,
        );
        let paths: Vec<&str> = errs.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "guard.lists.allow[1]",
                "guard.lists.deny[2]",
                "guard.connections.max_per_address"
            ]
        );
    }

    #[test]
    fn entries_are_canonical_and_truncated() {
        let mut errs = Errors::default();
        let p = connections(
            &guard(
                &[],
                &["::ffff:10.1.2.3/104", "192.0.2.7", "2001:db8::5/32"],
                2,
            ),
            &mut errs,
        );
        assert!(errs.0.is_empty());
        let deny: Vec<String> = p.lists.global.deny.iter().map(|n| n.to_string()).collect();
        assert_eq!(deny, ["10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32"]);
        assert_eq!(p.max_per_address.get(), 2);
    }

    #[test]
    fn defaults_let_everyone_in_with_256_per_address() {
        let mut errs = Errors::default();
        let p = connections(&GuardFile::default(), &mut errs);
        assert!(errs.0.is_empty());
        assert_eq!(p, ConnPolicy::default());
        assert_eq!(p.max_per_address.get(), 256);
    }

    fn parse(text: &str) -> GuardFile {
        toml::from_str(text).unwrap()
    }

    fn strings(nets: &[IpNet]) -> Vec<String> {
        nets.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn listener_and_route_tables_compile_with_their_paths() {
        let f = parse(
            r#"
            [lists]
            deny = ["192.0.2.1"]
            [lists.redirect]
            deny = ["::ffff:10.0.0.0/104", "nope"]
            [lists.public]
            allow = ["2001:db8::/32"]
            [lists.routes."/healthz"]
            allow = ["10.0.0.0/8", "10.0.0.300"]
            [lists.routes."/nope"]
            deny = ["bad"]
            [lists.routes."/v1/events"]
            "#,
        );
        let mut errs = Errors::default();
        let p = connections(&f, &mut errs);
        let routes = route_lists(&f, &mut errs);
        let paths: Vec<&str> = errs.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "guard.lists.redirect.deny[1]",
                "guard.lists.routes.\"/healthz\".allow[1]",
                "guard.lists.routes.\"/nope\"",
            ]
        );
        assert_eq!(strings(&p.lists.global.deny), ["192.0.2.1/32"]);
        assert_eq!(strings(&p.lists.redirect.deny), ["10.0.0.0/8"]);
        assert_eq!(strings(&p.lists.public.allow), ["2001:db8::/32"]);
        assert!(p.lists.public.deny.is_empty() && p.lists.redirect.allow.is_empty());
        let keys: Vec<&str> = routes.by_path.keys().map(String::as_str).collect();
        assert_eq!(keys, ["/healthz", "/v1/events"]);
        assert_eq!(strings(&routes.by_path["/healthz"].allow), ["10.0.0.0/8"]);
        assert_eq!(routes.by_path["/v1/events"], Lists::default());
    }

    #[test]
    fn unknown_keys_in_list_tables_are_errors() {
        for text in [
            "[lists.public]\nalow = []\n",
            "[lists.admin]\ndeny = []\n",
            "[lists.routes.\"/healthz\"]\ndenny = []\n",
        ] {
            assert!(toml::from_str::<GuardFile>(text).is_err(), "{text}");
        }
    }
}
