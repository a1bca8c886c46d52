//! scrub_url: keeps what a URL says about the page, not about the person. Scheme, host and path stay (host and
//! path run through the detectors, so `/account/ann@example.com` loses the address); userinfo and the fragment
//! go; of the query only allowlisted keys stay (`utm_*` by default), their values redacted too. The URL is
//! split in its NFKC form, so a full-width `？` or `＃` ends the path like its ASCII form does.

use super::detect::{nfkc, redact, Hits};
use super::policy::Profile;

pub fn scrub_url(url: &str, profile: &Profile, hits: &mut Hits) -> String {
    let url = nfkc(url);
    let url = url.split('#').next().unwrap_or_default();
    let (before_query, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = String::with_capacity(url.len());
    let rest = match before_query.find("://") {
        Some(i) => {
            out.push_str(&before_query[..i + 3]);
            let after = &before_query[i + 3..];
            let (authority, path) = after.split_at(after.find('/').unwrap_or(after.len()));
            let host = authority
                .rsplit_once('@')
                .map_or(authority, |(_, host)| host);
            out.push_str(&redact(host, &profile.detectors, hits));
            path
        }
        None => before_query,
    };
    out.push_str(&redact(rest, &profile.detectors, hits));
    let mut first = true;
    for pair in query.into_iter().flat_map(|q| q.split('&')) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key.is_empty() || !profile.query_key_allowed(key) {
            continue;
        }
        out.push(if first { '?' } else { '&' });
        first = false;
        out.push_str(&redact(key, &profile.detectors, hits));
        if pair.contains('=') {
            out.push('=');
            out.push_str(&redact(value, &profile.detectors, hits));
        }
    }
    out
}
