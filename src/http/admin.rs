//! The admin listener (loopback only): `GET /metrics` in Prometheus text format and `GET /healthz`.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use super::{json, Resp};
use crate::app::Ctx;
use crate::reject::Reject;

pub async fn handle(req: Request<Incoming>, ctx: Arc<Ctx>) -> Result<Resp, Infallible> {
    let res = match (req.uri().path(), req.method()) {
        ("/metrics", &Method::GET) => {
            let mut res = Response::new(Full::new(Bytes::from(crate::metrics::render(
                &ctx.registry,
            ))));
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            res
        }
        ("/healthz", &Method::GET) => json(StatusCode::OK, r#"{"status":"ok"}"#),
        ("/metrics" | "/healthz", _) => Reject::MethodNotAllowed { allow: "GET" }.into_response(),
        _ => Reject::NotFound.into_response(),
    };
    Ok(res)
}
