//! useragent: the raw `User-Agent` header is never stored, nor even handed to minimization; it is reduced to
//! browser family, major version and device class, parsed with the `woothee` crate (a maintained, data-driven
//! parser, not hand-rolled regexes). Reductions are cached in a fixed number of slots, since the same few
//! hundred agents make up nearly all traffic and a parse costs microseconds.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UaSummary {
    pub family: Arc<str>,
    pub major: Option<u32>,
    pub device: &'static str,
}

pub fn reduce(ua: &str) -> UaSummary {
    let Some(r) = woothee::parser::Parser::new().parse(ua) else {
        return UaSummary {
            family: "other".into(),
            major: None,
            device: "other",
        };
    };
    let device = match r.category {
        "pc" => "desktop",
        "smartphone" | "mobilephone" => "mobile",
        "crawler" => "bot",
        _ => "other",
    };
    let family = if r.name == "UNKNOWN" { "other" } else { r.name };
    let major = r.version.split('.').next().and_then(|m| m.parse().ok());
    UaSummary {
        family: family.into(),
        major,
        device,
    }
}

/// Agents longer than this are reduced every time instead of cached, so the cache's memory stays bounded
/// (slots × this).
pub const MAX_CACHED_UA_BYTES: usize = 512;

/// One cache slot: the exact agent string and its reduction.
type Cached = (Box<str>, UaSummary);

/// A direct-mapped cache of reductions: `slots` entries, a randomly keyed hash picks the slot, a collision
/// replaces the older entry. Bounded by construction.
pub struct UaCache {
    slots: Vec<Mutex<Option<Cached>>>,
    hasher: RandomState,
}

impl UaCache {
    pub fn new(slots: usize) -> UaCache {
        UaCache {
            slots: (0..slots.max(1)).map(|_| Mutex::new(None)).collect(),
            hasher: RandomState::new(),
        }
    }

    pub fn reduce(&self, ua: &str) -> UaSummary {
        let slot = &self.slots[(self.hasher.hash_one(ua) % self.slots.len() as u64) as usize];
        if let Some((key, summary)) = &*slot.lock().unwrap_or_else(|e| e.into_inner()) {
            if **key == *ua {
                return summary.clone();
            }
        }
        let summary = reduce(ua);
        if ua.len() <= MAX_CACHED_UA_BYTES {
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some((ua.into(), summary.clone()));
        }
        summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.109 Safari/537.36";

    #[test]
    fn common_agents_reduce_to_family_major_device() {
        let cases = [
            (CHROME, ("Chrome", Some(120), "desktop")),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
                ("Safari", Some(17), "mobile"),
            ),
            ("Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0", ("Firefox", Some(121), "desktop")),
            ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", ("Googlebot", None, "bot")),
            ("curl/8.5.0", ("HTTP Library", None, "other")),
            ("", ("other", None, "other")),
        ];
        let cache = UaCache::new(4);
        for (ua, (family, major, device)) in cases {
            for s in [reduce(ua), cache.reduce(ua), cache.reduce(ua)] {
                assert_eq!(
                    (&*s.family, s.major, s.device),
                    (family, major, device),
                    "{ua}"
                );
            }
        }
    }

    #[test]
    fn cache_is_bounded_and_exact() {
        let cache = UaCache::new(1);
        assert_eq!(&*cache.reduce(CHROME).family, "Chrome");
        // one slot: a second agent replaces the first, and each still gets its own answer
        assert_eq!(&*cache.reduce("curl/8.5.0").family, "HTTP Library");
        assert_eq!(&*cache.reduce(CHROME).family, "Chrome");
        let long = format!("{CHROME}{}", "x".repeat(MAX_CACHED_UA_BYTES));
        assert_eq!(&*cache.reduce(&long).family, "Chrome");
        let held = cache.slots[0].lock().unwrap();
        assert_eq!(
            held.as_ref().map(|(k, _)| k.len()),
            Some(CHROME.len()),
            "over-long agents are not cached"
        );
    }
}
