//! The `file` sink's store: newline-delimited JSON files under one root directory.
//!
//! What it guarantees: [`FileStore::write_batch`] returns `Ok` only after every line of the call has
//! been written and `fsync`ed, together with every directory whose entries changed (a new directory
//! or file is made durable by syncing its parent). A line is exactly one record's payload followed by
//! `\n`, and lands in `<root>/<site>/<YYYY-MM-DD>/<HH>-<n>.ndjson`, named by the UTC day and hour of the
//! record's `received_ms`. A file, once finished, is never written again: it is finished when the next
//! line would take it past `max_file_bytes` (a line longer than that gets a file of its own), when a
//! record for a later hour of the same site needs a new file, when it is the least recently used of
//! [`MAX_OPEN_FILES`], when a batch that wrote to it fails, and when the process ends. Files are only
//! ever created (`create_new`, mode `0600`, directories `0700`), numbered one past the highest number
//! already in their directory, so a restart never reopens an old file.
//!
//! A failed batch may leave some of its lines behind (in files that are then finished, possibly ending
//! in a torn line without `\n`); the caller retries the whole batch, so readers see each record at
//! least once and must skip a last line that lacks its `\n`. [`std::io::ErrorKind::InvalidInput`] means
//! the batch itself is unacceptable (an unsafe site name, a payload with a newline) and nothing was
//! written: retrying it cannot help. One process may use a root at a time.

mod civil;
mod encode;
mod layout;
mod open_file;
mod service;
mod store;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

/// The per-batch work before any write, public for `benches/encode.rs`.
#[doc(hidden)]
pub use encode::{check_batch, push_line, records};
pub use service::FileSink;
pub use store::FileStore;

/// How many files a [`FileStore`] keeps open at once; opening one more finishes the least recently
/// used. Bounds file descriptors and write buffers (each buffer holds up to 64 KiB plus one line).
pub const MAX_OPEN_FILES: usize = 64;

/// One record handed to a sink: read back from the spool.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// The site (tenant) it belongs to; becomes a directory name, so it must be a safe one.
    pub site: &'a str,
    /// The event's id, kept for the sink's bookkeeping; the file store does not write it.
    pub event_id: &'a str,
    /// When the gateway received it, in milliseconds since the Unix epoch (UTC).
    pub received_ms: i64,
    /// One JSON object, no newline inside.
    pub payload: &'a [u8],
}

/// Where the store lives and how large a file may grow. Both are restart-only settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStoreConfig {
    /// Root directory, created (mode `0700`) if missing.
    pub root: PathBuf,
    /// A file is finished before a line would take it past this many bytes; must be at least 1.
    pub max_file_bytes: u64,
}

/// What one successful [`FileStore::write_batch`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Records written, one line each.
    pub records: u64,
    /// Bytes written, newlines included.
    pub bytes: u64,
    /// Files finished during the call (by size, hour or the open-file bound); never written again.
    pub files_finished: u64,
}
