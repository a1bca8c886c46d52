//! Request bodies are read only up to their bound and within their deadline: a declared `Content-Length`
//! over the limit is refused before a byte is read, a streamed body is cut at the limit.
//!
//! A refusal decided before the body was read ([`discard`]) still reaches the client: the body is read and
//! thrown away first, up to a byte budget and within a short deadline. Answering while the client still
//! sends resets an HTTP/2 stream (curl: "Stream error in the HTTP/2 framing layer", no status) and, over
//! HTTP/1.1, closing with unread bytes makes the kernel send a TCP RST that can overtake the answer (what
//! nginx's lingering close avoids). A body that does not end within the budget and deadline is given up on:
//! the answer goes out anyway, with `Connection: close` over HTTP/1.1; over HTTP/2 the stream is reset after
//! it, which a client may report instead of the status.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Body;
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

/// How long a refused body may take to drain, at most: a refusal should not wait a full `body_read`.
pub const DISCARD_WITHIN: Duration = Duration::from_secs(1);

/// Reads and throws away a refused request's body: at most `budget` bytes, within `deadline`. True when the
/// body ended, so the connection can carry another request; false when it was given up on.
pub async fn discard(mut body: Incoming, budget: usize, deadline: Duration) -> bool {
    if body.is_end_stream() {
        return true;
    }
    let drain = async {
        let mut left = budget;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { return false };
            if let Ok(data) = frame.into_data() {
                let Some(rest) = left.checked_sub(data.len()) else {
                    return false;
                };
                left = rest;
            }
        }
        true
    };
    tokio::time::timeout(deadline, drain).await.unwrap_or(false)
}
