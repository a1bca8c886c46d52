//! access: an event may enter only for a configured tenant (`site`), and a browser request (one carrying an
//! `Origin` header) only from one of that tenant's allowed origins. Requests without `Origin` are server-side
//! callers. A tenant with no allowed origins accepts no browser traffic.

use std::collections::HashMap;

use crate::config::Tenant;
use crate::reject::Reject;

pub fn check<'a>(
    site: &str,
    origin: Option<&str>,
    tenants: &'a HashMap<String, Tenant>,
) -> Result<&'a Tenant, Reject> {
    let tenant = tenants.get(site).ok_or_else(|| Reject::UnknownSite {
        field: "site".into(),
    })?;
    match origin {
        None => Ok(tenant),
        Some(o)
            if tenant
                .allowed_origins
                .iter()
                .any(|a| a.eq_ignore_ascii_case(o)) =>
        {
            Ok(tenant)
        }
        Some(_) => Err(Reject::OriginNotAllowed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let mut tenants = HashMap::new();
        tenants.insert(
            "demo".to_string(),
            Tenant::for_test("demo", &["https://shop.example"]),
        );
        tenants.insert("quiet".to_string(), Tenant::for_test("quiet", &[]));
        let cases: &[(&str, Option<&str>, Result<&str, Reject>)] = &[
            ("demo", None, Ok("demo")),
            ("demo", Some("https://shop.example"), Ok("demo")),
            ("demo", Some("HTTPS://SHOP.EXAMPLE"), Ok("demo")),
            (
                "demo",
                Some("https://evil.example"),
                Err(Reject::OriginNotAllowed),
            ),
            ("demo", Some("null"), Err(Reject::OriginNotAllowed)),
            (
                "quiet",
                Some("https://shop.example"),
                Err(Reject::OriginNotAllowed),
            ),
            ("quiet", None, Ok("quiet")),
            (
                "nope",
                None,
                Err(Reject::UnknownSite {
                    field: "site".into(),
                }),
            ),
        ];
        for (site, origin, want) in cases {
            let got = check(site, *origin, &tenants).map(|t| t.site.as_str());
            assert_eq!(&got, want, "{site} {origin:?}");
        }
    }
}
