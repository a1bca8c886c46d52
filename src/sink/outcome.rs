//! What happens to a batch after its events were acknowledged with `204`: the one place that classifies a
//! failure into *retry* (the downstream may take it later) or *dead letter* (it never will), with closed
//! reasons for metric labels (vector's `RetryLogic`). Done is `Ok(())`.

use std::time::Duration;

/// Why a batch will be tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryReason {
    /// Could not connect, or the connection broke.
    Connect,
    /// No answer within the sink's timeout.
    Timeout,
    /// 5xx, or a server-side error the downstream says is temporary.
    Server,
    /// 429 / 503 with `Retry-After`, or a JetStream "no responders" / full stream.
    Throttled,
    /// Local I/O (the file sink's disk).
    Io,
}

/// Why a batch went to the dead-letter directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadReason {
    /// A 4xx other than 408 / 429: the downstream refuses this batch as it is.
    Refused,
    /// The downstream parsed the batch and rejected its content (a ClickHouse type error, …).
    Invalid,
}

impl RetryReason {
    pub const ALL: [RetryReason; 5] = [
        Self::Connect,
        Self::Timeout,
        Self::Server,
        Self::Throttled,
        Self::Io,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Timeout => "timeout",
            Self::Server => "server",
            Self::Throttled => "throttled",
            Self::Io => "io",
        }
    }
}

impl DeadReason {
    pub const ALL: [DeadReason; 2] = [Self::Refused, Self::Invalid];

    pub fn label(self) -> &'static str {
        match self {
            Self::Refused => "refused",
            Self::Invalid => "invalid",
        }
    }
}

/// A batch that was not stored, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("retry ({}): {detail}", reason.label())]
    Retry {
        reason: RetryReason,
        /// The downstream's own wait (`Retry-After`), which wins over the backoff.
        after: Option<Duration>,
        /// For logs only: never a metric label. Must not contain secrets or payloads.
        detail: String,
    },
    #[error("dead letter ({}): {detail}", reason.label())]
    Dead { reason: DeadReason, detail: String },
}

impl SendError {
    pub fn retry(reason: RetryReason, detail: impl Into<String>) -> Self {
        Self::Retry {
            reason,
            after: None,
            detail: detail.into(),
        }
    }

    pub fn dead(reason: DeadReason, detail: impl Into<String>) -> Self {
        Self::Dead {
            reason,
            detail: detail.into(),
        }
    }
}

/// Classifies an HTTP answer: 2xx is done, 408 / 429 / 5xx are retried (`Retry-After` in seconds honoured,
/// at most `cap`), any other status is dead-lettered.
pub fn classify_http(
    status: u16,
    retry_after: Option<&str>,
    cap: Duration,
    detail: &str,
) -> Result<(), SendError> {
    let after = retry_after
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| Duration::from_secs(s).min(cap));
    match status {
        200..=299 => Ok(()),
        429 | 503 => Err(SendError::Retry {
            reason: RetryReason::Throttled,
            after,
            detail: format!("{status} {detail}"),
        }),
        408 => Err(SendError::Retry {
            reason: RetryReason::Timeout,
            after,
            detail: format!("{status} {detail}"),
        }),
        500..=599 => Err(SendError::Retry {
            reason: RetryReason::Server,
            after,
            detail: format!("{status} {detail}"),
        }),
        _ => Err(SendError::dead(
            DeadReason::Refused,
            format!("{status} {detail}"),
        )),
    }
}

/// Classifies a local I/O error: `InvalidInput` / `InvalidData` mean the batch itself is unacceptable.
pub fn classify_io(e: &std::io::Error) -> SendError {
    match e.kind() {
        std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData => {
            SendError::dead(DeadReason::Invalid, e.to_string())
        }
        _ => SendError::retry(RetryReason::Io, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_statuses_are_classified_in_one_table() {
        let cap = Duration::from_secs(60);
        let retry =
            |r| move |e: &SendError| matches!(e, SendError::Retry { reason, .. } if *reason == r);
        for (status, after, check) in [
            (200u16, None, None),
            (204, None, None),
            (408, None, Some(retry(RetryReason::Timeout))),
            (429, Some("7"), Some(retry(RetryReason::Throttled))),
            (503, None, Some(retry(RetryReason::Throttled))),
            (500, None, Some(retry(RetryReason::Server))),
            (599, None, Some(retry(RetryReason::Server))),
        ] {
            let got = classify_http(status, after, cap, "x");
            match check {
                None => assert_eq!(got, Ok(()), "{status}"),
                Some(f) => assert!(f(got.as_ref().unwrap_err()), "{status}: {got:?}"),
            }
        }
        for status in [400u16, 401, 403, 404, 413, 422] {
            assert!(matches!(
                classify_http(status, None, cap, "x"),
                Err(SendError::Dead {
                    reason: DeadReason::Refused,
                    ..
                })
            ));
        }
        let Err(SendError::Retry { after, .. }) = classify_http(429, Some("7"), cap, "x") else {
            panic!()
        };
        assert_eq!(after, Some(Duration::from_secs(7)));
        let Err(SendError::Retry { after, .. }) = classify_http(429, Some("100000"), cap, "x")
        else {
            panic!()
        };
        assert_eq!(after, Some(cap), "Retry-After is capped");
    }

    #[test]
    fn io_errors_retry_unless_the_batch_is_unacceptable() {
        use std::io::{Error, ErrorKind};
        assert!(matches!(
            classify_io(&Error::from(ErrorKind::StorageFull)),
            SendError::Retry { .. }
        ));
        assert!(matches!(
            classify_io(&Error::from(ErrorKind::InvalidInput)),
            SendError::Dead { .. }
        ));
    }
}
