//! Sinks: the last stage. A sink takes records read back from the [`crate::spool`] and stores them
//! somewhere else, and says a batch is stored only once it is durable there, so the spool's cursor may move
//! past it. Delivery is at-least-once: a batch that failed is retried whole, with the same id.
//!
//! Each sink is one small [`Sink`] implementation in a folder of its own (`file`, `clickhouse`, `http`,
//! `nats`); [`deliver`] runs any of them as its own task with its own spool reader, batching, retry with
//! capped exponential backoff and full jitter, circuit state and dead letters; [`outcome`] is the one place
//! that decides whether a failure is retried or dead-lettered.

pub mod build;
pub mod clickhouse;
pub mod client;
pub mod deadletter;
pub mod deliver;
pub mod file;
pub mod http;
pub mod metrics;
pub mod nats;
pub mod outcome;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::pin::Pin;

pub use outcome::{DeadReason, RetryReason, SendError};

use crate::spool::StoredRecord;

/// A boxed future, so that [`Sink`] stays object-safe without extra crates.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One batch as a sink sees it.
#[derive(Debug, Clone, Copy)]
pub struct SinkBatch<'a> {
    /// Deterministic for a given sink and spool position: the same batch carries the same id on every
    /// retry (the idempotency key downstream).
    pub id: &'a str,
    pub records: &'a [StoredRecord],
}

/// A place events are stored. `send` resolves `Ok` only once the downstream said the whole batch is stored.
pub trait Sink: Send {
    fn send<'a>(&'a mut self, batch: SinkBatch<'a>) -> BoxFuture<'a, Result<(), SendError>>;

    /// Flushes and releases what the sink holds; called once at shutdown.
    fn close(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
}
