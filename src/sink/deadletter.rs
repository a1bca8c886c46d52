//! Dead letters: a batch a sink refused for good is never dropped. It is written to
//! `data/deadletter/<sink>/<batch id>.seg` — in the spool's encrypted format, under the active spool key —
//! with `<batch id>.json` beside it (batch id, reason label, record count, time; never the downstream's
//! error text, which can echo data), counted, and the sink moves on. `tollgate deadletter replay` sends them again.

use std::path::{Path, PathBuf};

use super::{SendError, Sink, SinkBatch};
use crate::spool::{self, SpoolKeys, StoredRecord};

/// The dead-letter directory of one sink.
#[derive(Debug, Clone)]
pub struct DeadLetters {
    dir: PathBuf,
}

impl DeadLetters {
    pub fn new(data_dir: &Path, sink: &str) -> Self {
        Self {
            dir: data_dir.join("deadletter").join(sink),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stores a refused batch durably. A batch already stored under this id (a retry after a crash) is kept.
    pub fn store(
        &self,
        keys: &SpoolKeys,
        batch_id: &str,
        records: &[StoredRecord],
        reason: &str,
        now_ms: i64,
    ) -> Result<(), spool::SpoolError> {
        spool::private_dir(&self.dir)?;
        let seg = self.dir.join(format!("{batch_id}.seg"));
        if seg.exists() {
            return Ok(());
        }
        let meta = serde_json::json!({
            "batch": batch_id, "reason": reason, "records": records.len(), "at_ms": now_ms,
        });
        let meta_path = self.dir.join(format!("{batch_id}.json"));
        let _ = std::fs::remove_file(&meta_path);
        std::fs::write(&meta_path, meta.to_string())?;
        spool::write_records(&seg, keys, records)
    }

    /// Dead-letter batches, oldest id first.
    pub fn list(&self) -> std::io::Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        match std::fs::read_dir(&self.dir) {
            Ok(entries) => {
                for e in entries {
                    let p = e?.path();
                    if p.extension().is_some_and(|x| x == "seg") {
                        out.push(p);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        out.sort();
        Ok(out)
    }
}

/// What a replay did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Replayed {
    pub batches: u64,
    pub records: u64,
    /// Batches still refused (kept in place).
    pub refused: u64,
}

/// Sends every dead-letter batch of `letters` through `sink`, oldest first; a delivered batch is deleted. A
/// batch the sink wants retried stops the replay (the downstream is not ready): nothing is lost.
pub async fn replay(
    letters: &DeadLetters,
    keys: &SpoolKeys,
    sink: &mut dyn Sink,
) -> Result<Replayed, String> {
    let mut done = Replayed::default();
    for seg in letters.list().map_err(|e| e.to_string())? {
        let records = spool::read_records(&seg, keys).map_err(|e| e.to_string())?;
        let id = seg
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("replay")
            .to_owned();
        match sink
            .send(SinkBatch {
                id: &id,
                records: &records,
            })
            .await
        {
            Ok(()) => {
                std::fs::remove_file(&seg).map_err(|e| e.to_string())?;
                let _ = std::fs::remove_file(seg.with_extension("json"));
                done.batches += 1;
                done.records += records.len() as u64;
            }
            Err(SendError::Dead { reason, .. }) => {
                tracing::warn!(batch = %id, reason = reason.label(), "deadletter replay: still refused, kept");
                done.refused += 1;
            }
            Err(e @ SendError::Retry { .. }) => {
                return Err(format!("batch {id}: {e}; stopped, nothing lost"))
            }
        }
    }
    Ok(done)
}
