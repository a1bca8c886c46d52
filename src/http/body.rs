//! Request bodies are read only up to their bound and within their deadline: a declared `Content-Length`
//! over the limit is refused before a byte is read, a streamed body is cut at the limit.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;

use crate::reject::Reject;

pub async fn read(
    body: Incoming,
    declared_len: Option<u64>,
    max: usize,
    deadline: Duration,
) -> Result<Bytes, Reject> {
    if declared_len.is_some_and(|n| n > max as u64) {
        return Err(Reject::BodyTooLarge);
    }
    match tokio::time::timeout(deadline, Limited::new(body, max).collect()).await {
        Err(_) => Err(Reject::BodyTimeout),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(Reject::BodyTooLarge),
        Ok(Err(_)) => Err(Reject::BodyIncomplete),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}
