//! script: `beacon.js`, the script a shop pastes (`assets/beacon.js`, written for this project, no
//! dependencies). It is prepared once at startup: comment lines and indentation removed (the source keeps its
//! semicolons, so line breaks stay safe), gzip level 9 beside it, a strong `ETag` from its SHA-256, and the
//! Subresource Integrity value (`sha384-…`) that `tollgate snippet` prints. Served with
//! `Content-Type: text/javascript`, `Cache-Control: public, max-age=3600` (an hour, so a new version reaches
//! pages soon; the SRI hash in a pasted snippet pins one version), gzip when the client accepts it, and `304`
//! for a matching `If-None-Match`.

use std::io::Write;

use aws_lc_rs::digest::{digest, SHA256, SHA384};
use base64::Engine;
use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::Compression;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::StatusCode;

use super::Resp;

const SOURCE: &str = include_str!("../../assets/beacon.js");

/// The served script and what describes it.
#[derive(Debug, Clone)]
pub struct Script {
    pub body: Bytes,
    pub gzip: Bytes,
    pub etag: HeaderValue,
    /// `sha384-<base64>` for a `<script integrity>` attribute.
    pub integrity: String,
}

/// Comment lines and indentation removed.
pub fn minify(source: &str) -> String {
    source
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Script {
    pub fn build() -> Script {
        let body = minify(SOURCE).into_bytes();
        let mut gz = GzEncoder::new(Vec::new(), Compression::best());
        gz.write_all(&body).expect("gzip into memory");
        let gzip = gz.finish().expect("gzip into memory");
        let sha = digest(&SHA256, &body);
        let hex: String = sha.as_ref()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let etag = HeaderValue::from_str(&format!("\"{hex}\"")).expect("hex is a header value");
        let b64 = base64::engine::general_purpose::STANDARD;
        let integrity = format!("sha384-{}", b64.encode(digest(&SHA384, &body)));
        Script {
            body: body.into(),
            gzip: gzip.into(),
            etag,
            integrity,
        }
    }

    /// The answer to a `GET` (or `HEAD`) of the script.
    pub fn serve(&self, headers: &HeaderMap) -> Resp {
        let fresh = headers
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim() == self.etag || t.trim() == "*");
        let gzip = accepts_gzip(headers);
        let mut res = match (fresh, gzip) {
            (true, _) => {
                let mut r = Resp::new(Default::default());
                *r.status_mut() = StatusCode::NOT_MODIFIED;
                r
            }
            (false, true) => Resp::new(self.gzip.clone().into()),
            (false, false) => Resp::new(self.body.clone().into()),
        };
        let h = res.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/javascript; charset=utf-8"),
        );
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=3600"),
        );
        h.insert(header::ETAG, self.etag.clone());
        h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        h.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        if gzip && !fresh {
            h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        res
    }
}

/// The HTML a merchant pastes into every page, for tenant `site` and the gateway at `base` (`https://host[:port]`):
/// a stub that queues calls until the script has loaded, `init`, and the script tag pinned by its SRI hash.
pub fn snippet(site: &str, base: &str, script_path: &str, integrity: &str) -> String {
    let base = base.trim_end_matches('/');
    let init = serde_json::json!({"site": site, "endpoint": format!("{base}/v1/events")});
    format!(
        "<script>window.tollgate=window.tollgate||function(){{(tollgate.q=tollgate.q||[]).push(arguments)}};\n\
         tollgate(\"init\",{init});</script>\n\
         <script async src=\"{base}{script_path}\" integrity=\"{integrity}\" crossorigin=\"anonymous\"></script>\n"
    )
}

/// `Accept-Encoding` lists gzip with a non-zero q.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|c| {
            let mut parts = c.split(';').map(str::trim);
            let name = parts.next().unwrap_or_default();
            let q_zero = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !q_zero
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minify_drops_comment_lines_and_indentation_only() {
        let m =
            minify("// head\n(function () {\n  var a = 1; // tail stays\n\n  // inner\n})();\n");
        assert_eq!(m, "(function () {\nvar a = 1; // tail stays\n})();");
    }

    #[test]
    fn gzip_negotiation() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::ACCEPT_ENCODING, v.parse().unwrap());
            accepts_gzip(&m)
        };
        assert!(h("gzip, deflate, br"));
        assert!(h("br;q=1.0, gzip;q=0.8"));
        assert!(!h("gzip;q=0"));
        assert!(!h("br"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }
}
