//! The JetStream stream the sink writes to: the subjects it publishes on, the stream it creates (or only
//! checks), and the duplicate window that makes a re-sent batch harmless.

use std::time::Duration;

use async_nats::jetstream::context::{CreateStreamErrorKind, GetStreamErrorKind};
use async_nats::jetstream::stream::{Config, StorageType};
use async_nats::jetstream::{self, ErrorCode};

use crate::config::{NatsConfig, SinkConfig};

/// The shortest duplicate window the sink accepts (JetStream's own default is also 2 minutes).
pub const MIN_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// The duplicate window a stream created by the sink gets: at least [`MIN_DUPLICATE_WINDOW`], and at least
/// three capped retry rounds (`3 × (retry_cap + timeout)`), so that a batch re-sent after a failed attempt
/// is still within the window of the copies the failed attempt stored. A batch that waits longer than this
/// (an outage longer than the window) can store an event twice; `event_id` stays the key downstream.
pub fn duplicate_window(cfg: &SinkConfig) -> Duration {
    MIN_DUPLICATE_WINDOW.max((cfg.retry.cap + cfg.timeout) * 3)
}

/// Checks that `subject` is a valid subject prefix: dot-separated, non-empty tokens, no wildcards or spaces.
pub fn check_subject(subject: &str) -> Result<(), String> {
    if subject.split('.').all(is_token) {
        Ok(())
    } else {
        Err(format!(
            "subject {subject:?} must be dot-separated tokens without wildcards or whitespace"
        ))
    }
}

/// A single subject token: non-empty, printable, no `.`, `*`, `>` or whitespace.
pub fn is_token(t: &str) -> bool {
    !t.is_empty()
        && t.chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && !matches!(c, '.' | '*' | '>'))
}

/// Whether the stream subject `pattern` captures every subject `<prefix>.<site>`.
pub fn covers(pattern: &str, prefix: &str) -> bool {
    let mut pat = pattern.split('.');
    for token in prefix.split('.') {
        match pat.next() {
            Some(">") => return true,
            Some(p) if p == "*" || p == token => {}
            _ => return false,
        }
    }
    pat.next() == Some(">") && pat.next().is_none()
}

/// The stream the sink creates.
pub fn stream_config(cfg: &SinkConfig, nats: &NatsConfig) -> Config {
    Config {
        name: nats.stream.clone(),
        subjects: vec![format!("{}.>", nats.subject)],
        storage: StorageType::File,
        num_replicas: nats.replicas,
        duplicate_window: duplicate_window(cfg),
        ..Default::default()
    }
}

/// Finds the stream, creates it if allowed and missing, and checks it will store what the sink publishes.
pub async fn ensure_stream(
    js: &jetstream::Context,
    cfg: &SinkConfig,
    nats: &NatsConfig,
) -> Result<(), StreamProblem> {
    let info = match js.get_stream(&nats.stream).await {
        Ok(stream) => stream.cached_info().clone(),
        Err(e) => match e.kind() {
            GetStreamErrorKind::JetStream(j) if j.error_code() == ErrorCode::STREAM_NOT_FOUND => {
                if !nats.create_stream {
                    return Err(StreamProblem::Unfit(format!(
                        "stream {:?} does not exist (and create_stream is off)",
                        nats.stream
                    )));
                }
                let created = js
                    .create_stream(stream_config(cfg, nats))
                    .await
                    .map_err(|e| {
                        let m = format!("create stream {:?}: {e}", nats.stream);
                        match e.kind() {
                            CreateStreamErrorKind::JetStream(_)
                            | CreateStreamErrorKind::InvalidStreamName
                            | CreateStreamErrorKind::EmptyStreamName
                            | CreateStreamErrorKind::DomainAndExternalSet => {
                                StreamProblem::Unfit(m)
                            }
                            _ => StreamProblem::Unreached(m),
                        }
                    })?;
                tracing::info!(sink = %cfg.name, stream = %nats.stream, "created JetStream stream");
                created.cached_info().clone()
            }
            _ => {
                return Err(StreamProblem::Unreached(format!(
                    "look up stream {:?}: {e}",
                    nats.stream
                )))
            }
        },
    };
    verify(&info.config, cfg, nats).map_err(StreamProblem::Unfit)
}

/// Why the stream is not usable yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamProblem {
    /// The server (or its JetStream) did not answer: try again later.
    Unreached(String),
    /// The stream does not fit the sink's settings, or cannot be created: an operator must act.
    Unfit(String),
}

/// Checks an existing stream. With `create_stream` the sink owns the stream's shape, so replicas, storage and
/// the duplicate window must match what it would create; without it only the subjects are required and a
/// short duplicate window is a warning.
pub fn verify(have: &Config, cfg: &SinkConfig, nats: &NatsConfig) -> Result<(), String> {
    let stream = &nats.stream;
    let mut wrong = Vec::new();
    if !have.subjects.iter().any(|p| covers(p, &nats.subject)) {
        wrong.push(format!(
            "subjects {:?} do not capture \"{}.>\"",
            have.subjects, nats.subject
        ));
    }
    let window = duplicate_window(cfg);
    if nats.create_stream {
        if have.num_replicas != nats.replicas {
            wrong.push(format!(
                "num_replicas is {}, configured {}",
                have.num_replicas, nats.replicas
            ));
        }
        if have.storage != StorageType::File {
            wrong.push("storage is not file".into());
        }
        if have.duplicate_window < window {
            wrong.push(format!(
                "duplicate_window {:?} is shorter than {window:?}",
                have.duplicate_window
            ));
        }
    } else if have.duplicate_window < window {
        tracing::warn!(
            sink = %cfg.name, %stream, have = ?have.duplicate_window, want = ?window,
            "duplicate window shorter than the sink's retry horizon: a retried batch may store duplicates"
        );
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(format!("stream {stream:?}: {}", wrong.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_subjects_cover_the_prefix() {
        for (pattern, ok) in [
            ("tollgate.events.>", true),
            ("tollgate.>", true),
            (">", true),
            ("*.events.>", true),
            ("tollgate.*.>", true),
            ("tollgate.events.*", false),
            ("tollgate.events", false),
            ("tollgate.events.>.x", false),
            ("tollgate.other.>", false),
            ("tollgate.events.x.>", false),
        ] {
            assert_eq!(covers(pattern, "tollgate.events"), ok, "{pattern}");
        }
    }

    #[test]
    fn subjects_are_plain_tokens() {
        assert!(check_subject("tollgate.events").is_ok());
        for bad in ["", "a..b", "a.*", "a.>", "a b", ".a", "a."] {
            assert!(check_subject(bad).is_err(), "{bad:?}");
        }
    }
}
