//! access: an event may enter only for a configured tenant (`site`), and only through one of two doors.
//! A browser request (one carrying `Origin`, or failing that `Referer`) must come from one of the tenant's
//! allowed origins. A request with neither is a server-side caller: it must present the tenant's secret as
//! `Authorization: Bearer`, compared in constant time, from an address in the tenant's server networks.
//! A tenant with no allowed origins accepts no browser traffic; one without a server secret accepts no
//! server-side traffic. The secret is kept only as its SHA-256 digest and never printed.
//!
//! Past either door, the tenant's own networks (`allow_networks` / `deny_networks`, [`lists::check`]) apply
//! to every caller, browser or server, on the request's client address: 403 `network_not_allowed`, deny
//! winning over allow. They are read after the door so that a caller without the origin or the secret learns
//! nothing about them; for a server caller both they and its `server_networks` must admit the address.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::digest::{digest, SHA256, SHA256_OUTPUT_LEN};
use aws_lc_rs::error::Unspecified;
use hyper::header::{self, HeaderMap};
use ipnet::IpNet;

use crate::config::Tenant;
use crate::guard::lists;
use crate::keys::Secret;
use crate::reject::Reject;

/// The one comparison of a presented credential with the configured one: constant time, on digests of equal
/// length, so neither the content nor the length of the secret leaks through timing.
const CT_EQ: fn(&[u8], &[u8]) -> Result<(), Unspecified> = verify_slices_are_equal;

/// How a tenant's server-side callers get in: its bearer secret and the networks they post from.
pub struct ServerAccess {
    secret: [u8; SHA256_OUTPUT_LEN],
    networks: Vec<IpNet>,
}

impl fmt::Debug for ServerAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerAccess")
            .field("secret", &"<redacted>")
            .field("networks", &self.networks)
            .finish()
    }
}

impl ServerAccess {
    /// `networks` should be canonical (IPv4 as IPv4, not IPv4-mapped IPv6): client addresses are.
    pub fn new(secret: &Secret, networks: Vec<IpNet>) -> ServerAccess {
        ServerAccess {
            secret: sha256(secret.expose().as_bytes()),
            networks,
        }
    }

    fn secret_matches(&self, presented: &[u8]) -> bool {
        self.secret_matches_with(presented, CT_EQ)
    }

    fn secret_matches_with(
        &self,
        presented: &[u8],
        eq: impl FnOnce(&[u8], &[u8]) -> Result<(), Unspecified>,
    ) -> bool {
        eq(&sha256(presented), &self.secret).is_ok()
    }

    fn admits(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.networks.iter().any(|n| n.contains(&ip))
    }
}

/// Whether `presented` hashes to `digest`, compared in constant time (see [`CT_EQ`]).
pub(crate) fn digest_matches(presented: &[u8], digest: &[u8; SHA256_OUTPUT_LEN]) -> bool {
    CT_EQ(&sha256(presented), digest).is_ok()
}

pub(crate) fn sha256(bytes: &[u8]) -> [u8; SHA256_OUTPUT_LEN] {
    let mut out = [0u8; SHA256_OUTPUT_LEN];
    out.copy_from_slice(digest(&SHA256, bytes).as_ref());
    out
}

/// RFC 6750 `b64token`: what a bearer credential may be made of. Configured secrets must be one too.
pub fn is_bearer_token(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

/// Who is asking, as far as access is concerned; read once per request by [`caller`].
#[derive(Clone, PartialEq, Eq)]
pub enum Caller {
    /// A browser: its `Origin`, or the `scheme://host[:port]` of its `Referer`; `None` if unusable; and its
    /// address.
    Browser { origin: Option<String>, ip: IpAddr },
    /// No `Origin` and no `Referer`: a server-side caller, its bearer token (if any) and address.
    Server { bearer: Option<String>, ip: IpAddr },
}

impl fmt::Debug for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Caller::Browser { origin, ip } => f
                .debug_struct("Browser")
                .field("origin", origin)
                .field("ip", ip)
                .finish(),
            Caller::Server { bearer, ip } => f
                .debug_struct("Server")
                .field("bearer", &bearer.as_ref().map(|_| "<redacted>"))
                .field("ip", ip)
                .finish(),
        }
    }
}

impl Caller {
    /// The request's client address, canonical (IPv4-mapped IPv6 as IPv4).
    pub fn ip(&self) -> IpAddr {
        match self {
            Caller::Browser { ip, .. } | Caller::Server { ip, .. } => *ip,
        }
    }
}

/// Reads the access-relevant headers. A malformed or repeated `Authorization` header is refused here (a
/// repeated one reaches this only from unit tests: `screen::unambiguous` refuses it first with `400`).
pub fn caller(headers: &HeaderMap, ip: IpAddr) -> Result<Caller, Reject> {
    let bearer = bearer(headers)?;
    let ip = ip.to_canonical();
    let text = |name| headers.get(name).map(|v| v.to_str().ok());
    if let Some(origin) = text(header::ORIGIN) {
        let origin = origin.map(str::to_owned);
        return Ok(Caller::Browser { origin, ip });
    }
    if let Some(referer) = text(header::REFERER) {
        let origin = referer.and_then(referer_origin).map(str::to_owned);
        return Ok(Caller::Browser { origin, ip });
    }
    Ok(Caller::Server { bearer, ip })
}

/// The bearer token of `Authorization`, if any; a malformed or repeated header is refused.
pub(crate) fn bearer(headers: &HeaderMap) -> Result<Option<String>, Reject> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Reject::CredentialInvalid);
    }
    let text = value.to_str().map_err(|_| Reject::CredentialInvalid)?;
    let (scheme, token) = text.split_once(' ').ok_or(Reject::CredentialInvalid)?;
    let token = token.trim_start_matches(' ');
    if !scheme.eq_ignore_ascii_case("bearer") || !is_bearer_token(token) {
        return Err(Reject::CredentialInvalid);
    }
    Ok(Some(token.to_owned()))
}

/// `https://shop.example:8443/cart?x#y` → `https://shop.example:8443`; `None` unless http(s) with a host.
fn referer_origin(referer: &str) -> Option<&str> {
    let starts = |p: &str| {
        referer
            .get(..p.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(p))
    };
    let scheme = ["https://", "http://"]
        .into_iter()
        .find(|p| starts(p))?
        .len();
    let end = referer[scheme..]
        .find(['/', '?', '#'])
        .map_or(referer.len(), |i| scheme + i);
    let host = &referer[scheme..end];
    (!host.is_empty() && !host.contains(['@', ' ', '\\'])).then_some(&referer[..end])
}

/// The tenant named by `site`, if `caller` may write to it: through its door, then from its networks.
pub fn check<'a>(
    site: &str,
    caller: &Caller,
    tenants: &'a HashMap<String, Tenant>,
) -> Result<&'a Tenant, Reject> {
    let tenant = tenants.get(site).ok_or_else(|| Reject::UnknownSite {
        field: "site".into(),
    })?;
    match caller {
        Caller::Browser { origin, .. } => browser(tenant, origin.as_deref())?,
        Caller::Server { bearer, ip } => server(tenant, bearer.as_deref(), *ip)?,
    }
    lists::check(caller.ip(), &tenant.networks).map_err(|_| Reject::NetworkNotAllowed)?;
    Ok(tenant)
}

fn browser(tenant: &Tenant, origin: Option<&str>) -> Result<(), Reject> {
    let allowed = origin.is_some_and(|o| {
        tenant
            .allowed_origins
            .iter()
            .any(|a| a.eq_ignore_ascii_case(o))
    });
    allowed.then_some(()).ok_or(Reject::OriginNotAllowed)
}

/// Credential first, then network: a caller without the secret learns nothing about the networks.
fn server(tenant: &Tenant, bearer: Option<&str>, ip: IpAddr) -> Result<(), Reject> {
    let token = bearer.ok_or(Reject::CredentialMissing)?;
    let access = tenant.server.as_ref().ok_or(Reject::CredentialInvalid)?;
    if !access.secret_matches(token.as_bytes()) {
        return Err(Reject::CredentialInvalid);
    }
    access
        .admits(ip)
        .then_some(())
        .ok_or(Reject::NetworkNotAllowed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const SECRET: &str = "s3rver-secret-0123456789abcdef-ABCDEF";
    const SHOP: &str = "https://shop.example";
    const V4_IN: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));
    const V4_OUT: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));

    fn access(secret: &str, networks: &[&str]) -> ServerAccess {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.secret");
        std::fs::write(&path, format!("{secret}\n")).unwrap();
        let nets = networks.iter().map(|n| n.parse().unwrap()).collect();
        ServerAccess::new(&Secret::from_file(&path).unwrap(), nets)
    }

    fn tenants() -> HashMap<String, Tenant> {
        let mut demo = Tenant::for_test("demo", &[SHOP]);
        demo.server = Some(access(SECRET, &["10.0.0.0/8", "2001:db8::/32"]));
        let quiet = Tenant::for_test("quiet", &[]);
        HashMap::from([("demo".into(), demo), ("quiet".into(), quiet)])
    }

    fn browser(origin: Option<&str>) -> Caller {
        browser_at(origin, V4_IN)
    }

    fn browser_at(origin: Option<&str>, ip: IpAddr) -> Caller {
        Caller::Browser {
            origin: origin.map(str::to_owned),
            ip,
        }
    }

    fn server(bearer: Option<&str>, ip: IpAddr) -> Caller {
        Caller::Server {
            bearer: bearer.map(str::to_owned),
            ip,
        }
    }

    #[test]
    fn table() {
        let mapped = IpAddr::V6(Ipv4Addr::new(10, 9, 9, 9).to_ipv6_mapped());
        let v6_in = IpAddr::V6("2001:db8::5".parse::<Ipv6Addr>().unwrap());
        let wrong = &format!("{SECRET}x");
        let unknown = || UnknownSite {
            field: "site".into(),
        };
        use Reject::*;
        let cases: &[(&str, Caller, Result<&str, Reject>)] = &[
            ("demo", browser(Some(SHOP)), Ok("demo")),
            ("demo", browser(Some("HTTPS://SHOP.EXAMPLE")), Ok("demo")),
            (
                "demo",
                browser(Some("https://evil.example")),
                Err(OriginNotAllowed),
            ),
            ("demo", browser(Some("null")), Err(OriginNotAllowed)),
            ("demo", browser(None), Err(OriginNotAllowed)),
            ("quiet", browser(Some(SHOP)), Err(OriginNotAllowed)),
            ("demo", server(None, V4_IN), Err(CredentialMissing)),
            ("demo", server(Some(wrong), V4_IN), Err(CredentialInvalid)),
            ("demo", server(Some(SECRET), V4_IN), Ok("demo")),
            ("demo", server(Some(SECRET), mapped), Ok("demo")),
            ("demo", server(Some(SECRET), v6_in), Ok("demo")),
            ("demo", server(Some(SECRET), V4_OUT), Err(NetworkNotAllowed)),
            ("demo", server(Some(wrong), V4_OUT), Err(CredentialInvalid)),
            ("quiet", server(None, V4_IN), Err(CredentialMissing)),
            ("quiet", server(Some(SECRET), V4_IN), Err(CredentialInvalid)),
            ("nope", server(Some(SECRET), V4_IN), Err(unknown())),
            ("nope", browser(Some(SHOP)), Err(unknown())),
        ];
        let tenants = tenants();
        for (site, caller, want) in cases {
            let got = check(site, caller, &tenants).map(|t| t.site.as_str());
            assert_eq!(&got, want, "{site} {caller:?}");
        }
    }

    /// `allow_networks` / `deny_networks` apply to both doors, after the door; deny wins over every allow.
    #[test]
    fn tenant_networks_apply_to_every_caller() {
        let nets = |l: &[&str]| l.iter().map(|n| n.parse().unwrap()).collect();
        let mut demo = Tenant::for_test("demo", &[SHOP]);
        demo.server = Some(access(SECRET, &["0.0.0.0/0", "::/0"]));
        demo.networks = lists::Lists {
            allow: nets(&["10.0.0.0/8", "2001:db8::/32"]),
            deny: nets(&["10.9.0.0/16", "2001:db8:bad::/48", "10.1.1.1/32"]),
        };
        let tenants = HashMap::from([("demo".to_string(), demo)]);
        let ip = |t: &str| t.parse::<IpAddr>().unwrap();
        // what `caller` builds: the address canonical
        let b = |t: &str| browser_at(Some(SHOP), ip(t).to_canonical());
        let s = |t: &str| server(Some(SECRET), ip(t).to_canonical());
        use Reject::*;
        let cases: &[(Caller, Result<&str, Reject>)] = &[
            (b("10.1.2.3"), Ok("demo")),
            (s("10.1.2.3"), Ok("demo")),
            (b("::ffff:10.1.2.3"), Ok("demo")),
            (b("2001:db8::1"), Ok("demo")),
            (s("2001:db8::1"), Ok("demo")),
            // outside the allow list
            (b("192.0.2.7"), Err(NetworkNotAllowed)),
            (s("192.0.2.7"), Err(NetworkNotAllowed)),
            (b("2001:db9::1"), Err(NetworkNotAllowed)),
            (s("::ffff:192.0.2.7"), Err(NetworkNotAllowed)),
            // denied inside the allow list: deny wins
            (b("10.9.0.1"), Err(NetworkNotAllowed)),
            (s("10.9.0.1"), Err(NetworkNotAllowed)),
            (b("::ffff:10.1.1.1"), Err(NetworkNotAllowed)),
            (s("10.1.1.1"), Err(NetworkNotAllowed)),
            (b("2001:db8:bad::1"), Err(NetworkNotAllowed)),
            // the door first: a denied address without the origin or the secret learns nothing of the lists
            (
                browser_at(Some("https://evil.example"), ip("10.9.0.1")),
                Err(OriginNotAllowed),
            ),
            (server(None, ip("10.9.0.1")), Err(CredentialMissing)),
        ];
        for (caller, want) in cases {
            let got = check("demo", caller, &tenants).map(|t| t.site.as_str());
            assert_eq!(&got, want, "{caller:?}");
        }
    }

    #[test]
    fn server_networks_and_tenant_networks_must_both_admit() {
        let nets = |l: &[&str]| l.iter().map(|n| n.parse().unwrap()).collect();
        let mut demo = Tenant::for_test("demo", &[]);
        demo.server = Some(access(SECRET, &["10.0.0.0/8"]));
        demo.networks.deny = nets(&["10.2.0.0/16"]);
        let tenants = HashMap::from([("demo".to_string(), demo)]);
        let at = |t: &str| check("demo", &server(Some(SECRET), t.parse().unwrap()), &tenants);
        assert!(at("10.1.0.1").is_ok());
        assert_eq!(at("10.2.0.1").unwrap_err(), Reject::NetworkNotAllowed);
        assert_eq!(at("192.0.2.1").unwrap_err(), Reject::NetworkNotAllowed);
    }

    fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            let name = header::HeaderName::from_bytes(name.as_bytes()).unwrap();
            map.append(name, HeaderValue::from_bytes(value).unwrap());
        }
        map
    }

    #[test]
    fn origin_or_referer_makes_a_browser_request() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("origin", SHOP, Some(SHOP)),
            ("origin", "null", Some("null")),
            (
                "referer",
                "https://a.example:8443/b?q=1#t",
                Some("https://a.example:8443"),
            ),
            ("referer", "HTTP://A.example?x", Some("HTTP://A.example")),
            ("referer", "android-app://com.x/", None),
            ("referer", "https://user@a.example/", None),
            ("referer", "", None),
        ];
        let ip = IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped());
        // Either door: the address canonical (IPv4-mapped IPv6 becomes IPv4).
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        for (name, value, want) in cases {
            let map = headers(&[(name, value.as_bytes())]);
            let got = caller(&map, ip);
            assert_eq!(got, Ok(browser_at(*want, loopback)), "{name}: {value}");
        }
        let both = headers(&[
            ("origin", b"https://a.example"),
            ("referer", b"https://b.example/"),
        ]);
        let a = Some("https://a.example");
        assert_eq!(caller(&both, ip), Ok(browser_at(a, loopback)));
        // Neither: a server-side caller.
        assert_eq!(caller(&HeaderMap::new(), ip), Ok(server(None, loopback)));
    }

    #[test]
    fn authorization_must_be_one_well_formed_bearer() {
        let cases: &[(&[&[u8]], Option<&str>)] = &[
            (&[b"Bearer abc.DEF-1_~+/=="], Some("abc.DEF-1_~+/==")),
            (&[b"bearer   tok"], Some("tok")),
            (&[b"Basic dXNlcjpwYXNz"], None),
            (&[b"Bearer"], None),
            (&[b"Bearer "], None),
            (&[b"Bearer a b"], None),
            (&[b"Bearer =abc"], None),
            (&[b"Bearer \xffabc"], None),
            (&[b"Bearer a", b"Bearer a"], None),
        ];
        for (values, want) in cases {
            // Refused on either door: no browser sends a malformed or repeated Authorization header.
            for origin in [None, Some(SHOP)] {
                let mut pairs: Vec<(&str, &[u8])> =
                    values.iter().map(|v| ("authorization", *v)).collect();
                pairs.extend(origin.map(|o| ("origin", o.as_bytes())));
                let got = caller(&headers(&pairs), V4_IN);
                match (want, origin) {
                    (None, _) => assert_eq!(got, Err(Reject::CredentialInvalid), "{values:?}"),
                    (Some(_), Some(_)) => assert_eq!(got, Ok(browser(origin))),
                    (Some(t), None) => assert_eq!(got, Ok(server(Some(t), V4_IN))),
                }
            }
        }
    }

    #[test]
    fn the_comparison_is_constant_time_on_equal_length_digests() {
        let ct: fn(&[u8], &[u8]) -> Result<(), Unspecified> = verify_slices_are_equal;
        assert!(std::ptr::fn_addr_eq(CT_EQ, ct), "CT_EQ must be aws-lc-rs's");
        let a = access(SECRET, &["10.0.0.0/8"]);
        for len in [0, 1, 31, 32, SECRET.len(), 33, 4096] {
            let presented = "a".repeat(len);
            let mut seen = Vec::new();
            a.secret_matches_with(presented.as_bytes(), |x, y| {
                seen.push((x.len(), y.len()));
                CT_EQ(x, y)
            });
            assert_eq!(
                seen,
                [(32, 32)],
                "one comparison of two digests for length {len}"
            );
        }
    }

    #[test]
    fn only_the_exact_secret_matches() {
        let a = access(SECRET, &["10.0.0.0/8"]);
        assert!(a.secret_matches(SECRET.as_bytes()));
        let longer = [
            format!("{SECRET}x"),
            format!("{SECRET}="),
            format!("{SECRET}{SECRET}"),
        ];
        let shorter = (0..SECRET.len()).map(|n| SECRET[..n].to_string());
        for other in longer.into_iter().chain(shorter) {
            assert!(!a.secret_matches(other.as_bytes()), "{other:?} matched");
        }
        assert!(!a.secret_matches(SECRET.to_ascii_uppercase().as_bytes()));
    }

    #[test]
    fn debug_never_shows_the_secret_or_its_digest() {
        let tenants = tenants();
        let d = sha256(SECRET.as_bytes());
        let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
        let decimal = format!("{:?}", &d[..4])
            .trim_matches(['[', ']'])
            .to_string();
        let caller = server(Some(SECRET), V4_IN);
        for text in [format!("{:?}", tenants["demo"]), format!("{caller:?}")] {
            assert!(text.contains("redacted"), "{text}");
            for leak in [SECRET, &hex[..16], &decimal] {
                assert!(!text.contains(leak), "{leak} in {text}");
            }
        }
    }
}
