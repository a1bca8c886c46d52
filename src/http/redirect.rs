//! The plain-HTTP listener accepts nothing. `GET`/`HEAD` get a `308` to the same path on HTTPS; every other
//! method gets `403` with `Connection: close`, and its body is never read.

use std::convert::Infallible;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, StatusCode};

use super::{json, Resp};
use crate::app::Ctx;
use crate::reject::Reject;

pub async fn handle(
    req: Request<Incoming>,
    ctx: Arc<Ctx>,
    https_port: u16,
) -> Result<Resp, Infallible> {
    let outcome = if req.method() == Method::GET || req.method() == Method::HEAD {
        location(&req, https_port).ok_or(Reject::InvalidValue {
            field: "host".into(),
            detail: "missing or malformed Host",
        })
    } else {
        Err(Reject::PlainHttp)
    };
    let res = match outcome {
        Ok(loc) => {
            ctx.metrics
                .plain_requests
                .with_label_values(&["redirected"])
                .inc();
            let mut res = json(StatusCode::PERMANENT_REDIRECT, r#"{"redirect":"https"}"#);
            res.headers_mut().insert(header::LOCATION, loc);
            res
        }
        Err(reject) => {
            ctx.metrics
                .plain_requests
                .with_label_values(&["refused"])
                .inc();
            ctx.metrics.reject(&reject);
            reject.into_response()
        }
    };
    Ok(res)
}

/// `https://<host from the Host header>[:port]<path?query>`. The host must be a DNS name or IP literal.
fn location(req: &Request<Incoming>, https_port: u16) -> Option<HeaderValue> {
    let host_header = req.headers().get(header::HOST)?.to_str().ok()?;
    let host = strip_port(host_header)?;
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']');
    if host.is_empty() || !host.chars().all(valid) {
        return None;
    }
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let port = if https_port == 443 {
        String::new()
    } else {
        format!(":{https_port}")
    };
    HeaderValue::from_str(&format!("https://{host}{port}{path}")).ok()
}

fn strip_port(host: &str) -> Option<&str> {
    if host.starts_with('[') {
        let end = host.find(']')?;
        return Some(&host[..=end]);
    }
    Some(host.rsplit_once(':').map_or(host, |(h, _)| h))
}

#[cfg(test)]
mod tests {
    use super::strip_port;

    #[test]
    fn host_without_port() {
        assert_eq!(strip_port("shop.example:8080"), Some("shop.example"));
        assert_eq!(strip_port("shop.example"), Some("shop.example"));
        assert_eq!(strip_port("[::1]:8080"), Some("[::1]"));
        assert_eq!(strip_port("[::1"), None);
    }
}
