//! minimize: `ValidEvent` → `MinimizedEvent`, the last step before anything is written. Guarantees, by
//! construction: the client IP is never an input, so it is never stored; `customer.email` leaves only as
//! `email_hash` = HMAC-SHA256(tenant key, lower(trim(email))) tagged with the key id; first and last names and
//! the street are dropped; age becomes a band; the postal code keeps its leading characters; `page_url` loses
//! its fragment and every query key outside `utm_*`.
//! (The declarative per-tenant policy engine replaces these fixed defaults in a later stage of the roadmap.)

pub mod detect;
pub mod geo;

use serde::Serialize;

use super::{MinimizedEvent, Shipping, ValidEvent};
use crate::keys::HmacKey;

/// Leading characters of a postal code kept by default.
pub const POSTAL_PREFIX: usize = 2;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MinCustomer {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(in crate::event) email_hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(in crate::event) age_band: Option<&'static str>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MinShipping {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(in crate::event) postal_prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(in crate::event) region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(in crate::event) country: Option<String>,
}

pub fn minimize(ev: ValidEvent, key: &HmacKey, received_ms: i64) -> MinimizedEvent {
    let customer = ev.customer.map(|c| MinCustomer {
        email_hash: c.email.map(|e| key.tag(normalize_email(&e).as_bytes())),
        age_band: c.age.map(age_band),
    });
    MinimizedEvent {
        site: ev.site,
        kind: ev.kind,
        event_id: ev.event_id,
        ts: ev.ts,
        received_ms,
        page_url: ev.page_url.map(|u| scrub_url(&u)),
        customer: customer.filter(|c| c.email_hash.is_some() || c.age_band.is_some()),
        cart: ev.cart,
        transaction: ev.transaction,
        plan: ev.plan,
        shipping: ev.shipping.map(shipping),
        converted: ev.converted,
    }
}

pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

pub fn age_band(age: u32) -> &'static str {
    match age {
        0..=17 => "under-18",
        18..=24 => "18-24",
        25..=34 => "25-34",
        35..=44 => "35-44",
        45..=54 => "45-54",
        55..=64 => "55-64",
        _ => "65+",
    }
}

fn shipping(s: Shipping) -> MinShipping {
    let postal_prefix = s.postal_code.map(|p| {
        p.chars()
            .filter(|c| !c.is_whitespace())
            .take(POSTAL_PREFIX)
            .collect::<String>()
            .to_uppercase()
    });
    MinShipping {
        postal_prefix,
        region: s.region,
        country: s.country,
    }
}

/// Keeps scheme, host and path; drops the fragment and every query pair whose key does not start with `utm_`.
pub fn scrub_url(url: &str) -> String {
    let without_fragment = url.split('#').next().unwrap_or_default();
    let (base, query) = match without_fragment.split_once('?') {
        Some((b, q)) => (b, q),
        None => return without_fragment.to_string(),
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| pair.starts_with("utm_"))
        .collect();
    if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{decode, validate};

    fn sample() -> ValidEvent {
        let body = include_bytes!("../../../tests/fixtures/sample_event.json");
        let limits = crate::config::Limits {
            max_body_bytes: 65536,
            max_events: 100,
            max_depth: 16,
            max_string_bytes: 2048,
            max_object_keys: 64,
            max_connections: 1,
            max_header_count: 8,
            max_header_bytes: 1024,
            h2_max_concurrent_streams: 1,
        };
        validate(decode(body, &limits).unwrap().remove(0)).unwrap()
    }

    #[test]
    fn sample_loses_its_personal_data() {
        let key = HmacKey::new("k1", &[1u8; 32]);
        let out = String::from_utf8(minimize(sample(), &key, 7).to_record()).unwrap();
        for gone in [
            "Ann",
            "Example.com",
            "example.com",
            "Lee",
            "Main St",
            "1012",
            "a@b.c",
            "#checkout",
        ] {
            assert!(!out.contains(gone), "{gone} leaked: {out}");
        }
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["customer"]["email_hash"], key.tag(b"ann@example.com"));
        assert!(v["customer"]["email_hash"]
            .as_str()
            .unwrap()
            .starts_with("k1:"));
        assert_eq!(v["customer"]["age_band"], "25-34");
        assert_eq!(v["shipping"]["postal_prefix"], "10");
        assert_eq!(v["page_url"], "https://shop.example/cart?utm_source=mail");
        assert_eq!(v["received_ms"], 7);
        assert_eq!(v["cart"]["items"][0]["sku"], "TSHIRT-M");
    }

    #[test]
    fn email_normalization_makes_hashes_equal() {
        let key = HmacKey::new("k1", &[1u8; 32]);
        let a = key.tag(normalize_email("  Ann@Example.COM ").as_bytes());
        assert_eq!(a, key.tag(b"ann@example.com"));
        let other = HmacKey::new("k2", &[2u8; 32]);
        assert_ne!(a[3..], other.tag(b"ann@example.com")[3..]);
    }

    #[test]
    fn url_scrubbing_table() {
        let cases = [
            ("https://s.example/p", "https://s.example/p"),
            ("https://s.example/p?email=a@b.c", "https://s.example/p"),
            (
                "https://s.example/p?utm_source=x&token=1&utm_medium=y#frag",
                "https://s.example/p?utm_source=x&utm_medium=y",
            ),
            ("https://s.example/p#a?utm_source=x", "https://s.example/p"),
        ];
        for (input, want) in cases {
            assert_eq!(scrub_url(input), want);
        }
    }

    #[test]
    fn age_bands_cover_every_age() {
        let cases = [
            (0, "under-18"),
            (17, "under-18"),
            (18, "18-24"),
            (34, "25-34"),
            (64, "55-64"),
            (65, "65+"),
            (150, "65+"),
        ];
        for (age, band) in cases {
            assert_eq!(age_band(age), band);
        }
    }
}
