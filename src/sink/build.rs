//! Builds the running sink for a configured one.

use super::file::{FileStore, FileStoreConfig};
use super::Sink;
use crate::config::{SinkConfig, SinkKind};

/// A sink that could not be set up (unreadable TLS files, a server that refuses the stream, …).
#[derive(Debug, thiserror::Error)]
#[error("sink {sink}: {message}")]
pub struct BuildError {
    pub sink: String,
    pub message: String,
}

impl BuildError {
    pub fn new(cfg: &SinkConfig, message: impl std::fmt::Display) -> Self {
        Self {
            sink: cfg.name.clone(),
            message: message.to_string(),
        }
    }
}

/// Sets up the sink `cfg` describes.
pub async fn build(cfg: &SinkConfig) -> Result<Box<dyn Sink>, BuildError> {
    match &cfg.kind {
        SinkKind::File {
            dir,
            max_file_bytes,
        } => {
            let store = FileStore::open(FileStoreConfig {
                root: dir.clone(),
                max_file_bytes: *max_file_bytes,
            })
            .map_err(|e| BuildError::new(cfg, e))?;
            Ok(Box::new(super::file::FileSink::new(store)))
        }
        SinkKind::Http(http) => Ok(Box::new(super::http::HttpSink::new(cfg, http)?)),
        SinkKind::ClickHouse(ch) => Ok(Box::new(super::clickhouse::ClickHouseSink::new(cfg, ch)?)),
        SinkKind::Nats(nats) => Ok(Box::new(super::nats::NatsSink::connect(cfg, nats).await?)),
    }
}
