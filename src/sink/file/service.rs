//! The file store as a [`Sink`]: writes on the blocking pool (it fsyncs), classifies I/O errors.

use super::encode::records;
use super::FileStore;
use crate::sink::outcome::classify_io;
use crate::sink::{BoxFuture, SendError, Sink, SinkBatch};

/// The embedded default sink.
pub struct FileSink {
    store: Option<FileStore>,
}

impl FileSink {
    pub fn new(store: FileStore) -> Self {
        Self { store: Some(store) }
    }
}

impl Sink for FileSink {
    fn send<'a>(&'a mut self, batch: SinkBatch<'a>) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let Some(mut store) = self.store.take() else {
                return Err(SendError::retry(
                    crate::sink::RetryReason::Io,
                    "file store lost after a panic",
                ));
            };
            let owned = batch.records.to_vec();
            let joined = tokio::task::spawn_blocking(move || {
                let result = store.write_batch(&records(&owned)).map(|_| ());
                (store, result)
            })
            .await;
            let (store, result) = joined
                .map_err(|e| SendError::retry(crate::sink::RetryReason::Io, e.to_string()))?;
            self.store = Some(store);
            result.map_err(|e| classify_io(&e))
        })
    }

    fn close(mut self: Box<Self>) -> BoxFuture<'static, ()> {
        let store = self.store.take();
        Box::pin(async move {
            if let Some(s) = store {
                if let Ok(Err(e)) = tokio::task::spawn_blocking(move || s.close()).await {
                    tracing::warn!(error = %e, "file sink: closing files failed");
                }
            }
        })
    }
}
