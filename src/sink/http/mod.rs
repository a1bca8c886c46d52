//! The `http` sink: each batch is one `POST` of gzip-compressed NDJSON (one minimized event per line) to an
//! HTTPS upstream, over one kept-alive connection ([`super::client`]).
//!
//! What it guarantees: a batch counts as stored only on a `2xx`. Every attempt of one batch carries the same
//! `Idempotency-Key` (the batch id, deterministic per spool position), so an upstream that honours the key
//! stores a retried batch once; each line also carries its `event_id` for de-duplication downstream.
//! Answers are classified by [`super::outcome::classify_http`]: `408` / `429` / `5xx` are retried
//! (`Retry-After` in seconds wins over the backoff, capped at `retry_cap_ms`), other statuses dead-lettered;
//! no answer within `timeout_ms` is a retry. The bearer token is sent in `Authorization` only, never logged.
//!
//! ```text
//! POST <path> HTTP/1.1
//! Content-Type: application/x-ndjson
//! Content-Encoding: gzip
//! Idempotency-Key: <sink>-<segment>-<offset>
//! Authorization: Bearer <token>            (when token_file / token_env is set)
//! ```

mod encode;
mod service;

pub use encode::ndjson;
pub use service::HttpSink;
