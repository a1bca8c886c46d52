//! pixel: `GET /v1/p.gif?d=<base64url JSON>`, the last fallback of `beacon.js` (and a way to send an event
//! from an `<img>` where no script runs). `d` is the same body a `POST /v1/events` carries, base64url with or
//! without padding; it runs the same pipeline ([`super::ingest::accept`]: guard, validation, minimization,
//! spool) and gets the same refusals, plus `invalid_value` on field `d` when `d` is missing or not
//! base64url. An `<img>` sends a `Referer`, not an `Origin`: the tenant's origins are checked against it. The
//! answer is a 1×1 transparent GIF with `Cache-Control: no-store`, so a browser never reuses it.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use std::net::IpAddr;

use base64::Engine;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, StatusCode};

use super::{ingest, Resp};
use crate::app::Ctx;
use crate::config::Snapshot;
use crate::reject::Reject;

/// The smallest transparent GIF (43 bytes).
pub const GIF: &[u8] = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff\x21\xf9\x04\x01\x00\x00\x00\x00\x2c\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02\x44\x01\x00\x3b";

const URL_SAFE: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The body `d` carries, or why not. `max_body_bytes` bounds the decoded body as it bounds a POST's.
pub fn body_of(query: Option<&str>, max_body_bytes: usize) -> Result<Vec<u8>, Reject> {
    let bad = || Reject::InvalidValue {
        field: "d".into(),
        detail: "the query must carry d=<base64url of the event JSON>",
    };
    let d = query
        .unwrap_or_default()
        .split('&')
        .find_map(|kv| kv.strip_prefix("d="))
        .ok_or_else(bad)?;
    // Padding may arrive percent-encoded.
    let d = d.trim_end_matches("%3D").trim_end_matches("%3d");
    if d.len() / 4 * 3 > max_body_bytes {
        return Err(Reject::BodyTooLarge);
    }
    URL_SAFE.decode(d).map_err(|_| bad())
}

pub(super) async fn get(
    req: Request<Incoming>,
    ctx: &Ctx,
    snap: &Snapshot,
    client: IpAddr,
) -> Result<Resp, Reject> {
    let bytes = body_of(req.uri().query(), snap.limits.max_body_bytes)?;
    ingest::accept(req.headers(), client, ctx, snap, &bytes).await?;
    let mut res = Resp::new(Bytes::from_static(GIF).into());
    *res.status_mut() = StatusCode::OK;
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/gif"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn d_is_base64url_with_or_without_padding() {
        let enc = |s: &[u8]| base64::engine::general_purpose::URL_SAFE.encode(s);
        let body = br#"{"site":"demo","x":"??>>"}"#;
        let padded = enc(body);
        assert!(
            padded.contains(['-', '_']) || padded.ends_with('='),
            "{padded}"
        );
        for d in [
            padded.clone(),
            padded.trim_end_matches('=').to_owned(),
            padded.replace('=', "%3D"),
        ] {
            let q = format!("v=1&d={d}");
            assert_eq!(body_of(Some(&q), 1024).unwrap(), body);
        }
    }

    #[test]
    fn missing_bad_and_oversized_d() {
        let invalid =
            |q: Option<&str>| matches!(body_of(q, 1024), Err(Reject::InvalidValue { .. }));
        assert!(invalid(None));
        assert!(invalid(Some("x=1")));
        assert!(invalid(Some("d=not*base64")));
        let big = "A".repeat(2000);
        assert_eq!(
            body_of(Some(&format!("d={big}")), 1024),
            Err(Reject::BodyTooLarge)
        );
    }

    #[test]
    fn the_gif_is_a_1x1_gif() {
        assert_eq!(GIF.len(), 43);
        assert_eq!(&GIF[..6], b"GIF89a");
        assert_eq!((GIF[6], GIF[8]), (1, 1));
    }
}
