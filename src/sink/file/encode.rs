//! What the `file` sink does to a batch before any I/O: borrows the records read back from the spool,
//! refuses a batch that could never be stored, and makes each record's line (the payload exactly as
//! minimized, then `\n`). Pure, so the bench can measure it apart from the writes and fsyncs.

use std::io;

use super::{layout, Record};
use crate::spool::StoredRecord;

/// The store's view of records read back from the spool.
pub fn records(stored: &[StoredRecord]) -> Vec<Record<'_>> {
    stored
        .iter()
        .map(|r| Record {
            site: &r.site,
            event_id: &r.event_id,
            received_ms: r.received_ms,
            payload: &r.payload,
        })
        .collect()
}

/// Refuses the batch before anything is written if any record could never be stored: an unsafe site
/// name or a payload containing `\n` ([`io::ErrorKind::InvalidInput`]).
pub fn check_batch(records: &[Record<'_>]) -> io::Result<()> {
    for record in records {
        layout::check_site(record.site)?;
        if record.payload.contains(&b'\n') {
            return Err(layout::invalid_input(format!(
                "payload of event {:?} contains a newline",
                record.event_id
            )));
        }
    }
    Ok(())
}

/// Appends one record's line to `buf`: its payload, then `\n`.
pub fn push_line(buf: &mut Vec<u8>, payload: &[u8]) {
    buf.extend_from_slice(payload);
    buf.push(b'\n');
}
