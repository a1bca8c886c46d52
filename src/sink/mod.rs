//! Sinks: the last stage. A sink takes records read back from the [`crate::spool`] and stores them
//! somewhere else, and says a batch is stored only once it is durable there, so the spool's cursor
//! may move past it. Delivery is at-least-once: a batch that failed is retried whole. This round has
//! one sink, [`file`](mod@file), which writes newline-delimited JSON into a local directory tree.

pub mod deliver;
pub mod file;
