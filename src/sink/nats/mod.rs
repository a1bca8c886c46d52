//! The `nats` sink: publishes each record to the JetStream subject `<subject>.<site>` with the header
//! `Nats-Msg-Id: <event_id>`, the payload being the minimized event as stored. A batch is `Ok` only once
//! **every** message of it has its PubAck (at most `max_in_flight` awaiting at once, each bounded by the
//! sink's `timeout`); any failed or missing ack retries the whole batch, and JetStream drops the copies it
//! already stored by `Nats-Msg-Id` within the stream's duplicate window (a PubAck with `duplicate: true`
//! counts as stored). The window is at least 2 minutes and longer than three capped retry rounds
//! ([`config::duplicate_window`]); past it a re-sent event can be stored twice, and `event_id` remains the
//! key to de-duplicate by downstream.
//!
//! # What a PubAck means (nats-server 2.9.10, Debian 12)
//! - **R1 (one server):** the message was appended to the stream's block file with `write(2)` before the ack
//!   (streams use flush-in-place, `AsyncFlush = false`), so it survives a crash or `kill -9` of nats-server.
//!   It is **not** fsynced: stream files are fsynced by a timer every **2 minutes** (`server/stream.go`
//!   sets `fsCfg.SyncInterval = 2 * time.Minute` for every stream; the file store's own 60 s default does
//!   not apply). An OS crash or power loss can lose up to ~2 minutes of acknowledged messages.
//! - **R3 (cluster):** the ack comes after the stream's Raft entry was committed, i.e. written (not
//!   fsynced; the Raft WAL syncs every 5 minutes) on a quorum, 2 of 3 servers. It survives the loss of one
//!   server; a power loss that takes a quorum at once can still lose the last minutes.
//! - 2.9.x has **no setting** to make it stronger: its `jetstream {}` block has no `sync_interval`, and
//!   nats-server 2.9.10 refuses to start with `unknown field "sync_interval"`. nats-server **2.10.0** added
//!   `jetstream { sync_interval: always }` (alias `sync`; or a duration, default still 2 minutes), which
//!   fsyncs stream writes before the ack; the Raft WAL of R3 streams follows it only from 2.10.23 on.
//!   On 2.9, R3 across separate failure domains is the durability.
//!
//! [`classify`] is the one place a NATS failure becomes retry or dead letter.

pub mod config;
pub mod encode;
pub mod service;

use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::{self, ErrorCode};

pub use service::NatsSink;

use super::{DeadReason, RetryReason, SendError};

/// Classifies a failed publish or PubAck. Connection trouble, timeouts, "no responders" (no stream leader
/// or no stream yet), a full stream or store are retried; a message the stream refuses for good (larger
/// than the server's `max_payload` or the stream's `max_msg_size`, or its headers too large) is dead.
/// Unknown JetStream errors are retried: dead-lettering on a guess would take events out of the stream.
pub fn classify(e: &PublishError) -> SendError {
    let retry = |reason| SendError::retry(reason, e.to_string());
    match e.kind() {
        PublishErrorKind::TimedOut => retry(RetryReason::Timeout),
        PublishErrorKind::BrokenPipe => retry(RetryReason::Connect),
        PublishErrorKind::StreamNotFound | PublishErrorKind::MaxAckPending => {
            retry(RetryReason::Throttled)
        }
        PublishErrorKind::MaxPayloadExceeded => SendError::dead(DeadReason::Invalid, e.to_string()),
        _ => {
            let js =
                std::error::Error::source(e).and_then(|s| s.downcast_ref::<jetstream::Error>());
            match js.map(|j| j.error_code()) {
                Some(
                    ErrorCode::STREAM_MESSAGE_EXCEEDS_MAXIMUM
                    | ErrorCode::STREAM_HEADER_EXCEEDS_MAXIMUM,
                ) => SendError::dead(DeadReason::Invalid, e.to_string()),
                Some(
                    ErrorCode::STREAM_STORE_FAILED
                    | ErrorCode::STORAGE_RESOURCES_EXCEEDED
                    | ErrorCode::ACCOUNT_RESOURCES_EXCEEDED
                    | ErrorCode::MEMORY_RESOURCES_EXCEEDED
                    | ErrorCode::INSUFFICIENT_RESOURCES,
                ) => retry(RetryReason::Throttled),
                _ => retry(RetryReason::Server),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_error(code: u64) -> PublishError {
        let body = format!(r#"{{"code":400,"err_code":{code},"description":"x"}}"#);
        let js: jetstream::Error = serde_json::from_str(&body).unwrap();
        PublishError::with_source(PublishErrorKind::Other, js)
    }

    #[test]
    fn nats_failures_are_classified_in_one_table() {
        let retry = |e: &PublishError| match classify(e) {
            SendError::Retry { reason, .. } => Some(reason),
            SendError::Dead { .. } => None,
        };
        for (kind, want) in [
            (PublishErrorKind::TimedOut, Some(RetryReason::Timeout)),
            (PublishErrorKind::BrokenPipe, Some(RetryReason::Connect)),
            (
                PublishErrorKind::StreamNotFound,
                Some(RetryReason::Throttled),
            ),
            (
                PublishErrorKind::MaxAckPending,
                Some(RetryReason::Throttled),
            ),
            (PublishErrorKind::MaxPayloadExceeded, None),
            (PublishErrorKind::Other, Some(RetryReason::Server)),
        ] {
            assert_eq!(retry(&PublishError::new(kind)), want, "{kind:?}");
        }
        for (code, want) in [
            (10054, None),
            (10097, None),
            (10077, Some(RetryReason::Throttled)),
            (10047, Some(RetryReason::Throttled)),
            (10008, Some(RetryReason::Server)),
            (10999, Some(RetryReason::Server)),
        ] {
            assert_eq!(retry(&server_error(code)), want, "{code}");
        }
        assert!(matches!(
            classify(&server_error(10054)),
            SendError::Dead {
                reason: DeadReason::Invalid,
                ..
            }
        ));
    }
}
