//! The fixed parts of every insert: the URL (query and settings) and the headers (format, compression,
//! credentials).

use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE};

use crate::config::ClickHouseConfig;

/// Settings sent with every insert, as URL parameters; each exists in ClickHouse 18.16 and later.
/// Request bodies are decompressed by `Content-Encoding` alone (`enable_http_compression` governs
/// *responses*, which the sink does not ask to compress).
pub const SETTINGS: &[(&str, &str)] = &[
    // A table may lack a column the row carries (say `type`): the row still goes in.
    ("input_format_skip_unknown_fields", "1"),
    // Never skip a row ClickHouse cannot parse: the whole batch fails and is dead-lettered, not thinned.
    ("input_format_allow_errors_num", "0"),
    ("input_format_allow_errors_ratio", "0"),
];

const USER: HeaderName = HeaderName::from_static("x-clickhouse-user");
const KEY: HeaderName = HeaderName::from_static("x-clickhouse-key");

/// `path?query=INSERT INTO `db`.`table` FORMAT JSONEachRow&<settings>`, URL-encoded; `path` may already
/// carry a query.
pub fn insert_target(path: &str, database: &str, table: &str) -> String {
    let query = format!("INSERT INTO `{database}`.`{table}` FORMAT JSONEachRow");
    let mut out = String::from(path);
    out.push(if path.contains('?') { '&' } else { '?' });
    out.push_str("query=");
    out.push_str(&url_encode(&query));
    for (name, value) in SETTINGS {
        out.push_str(&format!("&{name}={value}"));
    }
    out
}

/// The headers of every insert; `Err` names the field whose value cannot be a header (never the value).
pub(super) fn headers(ch: &ClickHouseConfig) -> Result<HeaderMap, &'static str> {
    let mut headers = HeaderMap::new();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    let user = match (&ch.user, &ch.password) {
        (Some(u), _) => Some(u.as_str()),
        (None, Some(_)) => Some("default"),
        (None, None) => None,
    };
    if let Some(user) = user {
        headers.insert(
            USER,
            HeaderValue::try_from(user).map_err(|_| "user: not a valid HTTP header value")?,
        );
    }
    if let Some(password) = &ch.password {
        let mut key = HeaderValue::try_from(password.expose())
            .map_err(|_| "password: not a valid HTTP header value")?;
        key.set_sensitive(true);
        headers.insert(KEY, key);
    }
    Ok(headers)
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_encodes_the_query_and_appends_settings() {
        let t = insert_target("/", "tollgate", "events");
        assert!(
            t.starts_with(
                "/?query=INSERT%20INTO%20%60tollgate%60.%60events%60%20FORMAT%20JSONEachRow&"
            ),
            "{t}"
        );
        assert!(t.contains("&input_format_skip_unknown_fields=1"));
        assert!(insert_target("/ch/?x=1", "d", "t").starts_with("/ch/?x=1&query=INSERT"));
    }
}
