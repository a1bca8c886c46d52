//! One open, unfinished file: buffered appends, a sync, and nothing else. Dropping it discards what
//! is still buffered and closes it, which finishes it.

use std::fs::File;
use std::io::{self, Write};

use super::civil::UtcHour;

/// Buffered bytes are written out once the buffer holds this many.
const FLUSH_BYTES: usize = 64 * 1024;

pub(super) struct OpenFile {
    pub(super) site: String,
    pub(super) hour: UtcHour,
    /// The store's use counter when this file was last written; the smallest is closed first.
    pub(super) last_used: u64,
    file: File,
    /// Bytes in the file, buffered ones included.
    len: u64,
    buf: Vec<u8>,
    /// Written or buffered since the last sync.
    dirty: bool,
}

impl OpenFile {
    /// Wraps a newly created, empty file.
    pub(super) fn new(site: &str, hour: UtcHour, file: File, last_used: u64) -> OpenFile {
        OpenFile {
            site: site.to_owned(),
            hour,
            last_used,
            file,
            len: 0,
            buf: Vec::new(),
            dirty: false,
        }
    }

    pub(super) fn is(&self, site: &str, hour: UtcHour) -> bool {
        self.hour == hour && self.site == site
    }

    /// Whether a line of `line_len` bytes may still go into this file: it stays within `max`,
    /// or the file is empty (a line longer than `max` gets a file of its own).
    pub(super) fn fits(&self, line_len: u64, max: u64) -> bool {
        self.len == 0 || self.len.saturating_add(line_len) <= max
    }

    /// Appends `payload` and a newline.
    pub(super) fn append(&mut self, payload: &[u8]) -> io::Result<()> {
        super::encode::push_line(&mut self.buf, payload);
        self.len += payload.len() as u64 + 1;
        self.dirty = true;
        if self.buf.len() >= FLUSH_BYTES {
            self.write_out()?;
        }
        Ok(())
    }

    /// Writes out the buffer and makes everything appended so far durable.
    pub(super) fn sync(&mut self) -> io::Result<()> {
        if self.dirty {
            self.write_out()?;
            self.file.sync_data()?;
            self.dirty = false;
        }
        Ok(())
    }

    /// Syncs and closes the file; it is never written again.
    pub(super) fn finish(mut self) -> io::Result<()> {
        self.sync()
    }

    fn write_out(&mut self) -> io::Result<()> {
        let result = self.file.write_all(&self.buf);
        self.buf.clear();
        result
    }
}
