//! Sending one batch as one insert and classifying ClickHouse's answer.

use hyper::header::{HeaderMap, RETRY_AFTER};
use hyper::Uri;

use super::config::{headers, insert_target};
use super::encode::rows;
use super::outcome::{classify, exception_code, lookup, Class};
use crate::config::{ClickHouseConfig, RetryPolicy, SinkConfig};
use crate::sink::build::BuildError;
use crate::sink::client::{gzip, request_target, HttpClient};
use crate::sink::{BoxFuture, SendError, Sink, SinkBatch};

const EXCEPTION_CODE: &str = "x-clickhouse-exception-code";

/// The running `clickhouse` sink.
pub struct ClickHouseSink {
    name: String,
    client: HttpClient,
    /// Path and query of every insert.
    target: Uri,
    /// Format, compression and credentials (the password marked sensitive).
    headers: HeaderMap,
    retry: RetryPolicy,
}

impl ClickHouseSink {
    /// Loads the TLS files and prepares the insert; connects on the first batch.
    pub fn new(cfg: &SinkConfig, ch: &ClickHouseConfig) -> Result<ClickHouseSink, BuildError> {
        let client = HttpClient::new(&ch.endpoint, &ch.tls, cfg.timeout)
            .map_err(|e| BuildError::new(cfg, e))?;
        Ok(ClickHouseSink {
            name: cfg.name.clone(),
            client,
            target: request_target(&insert_target(&ch.endpoint.path, &ch.database, &ch.table))
                .map_err(|e| BuildError::new(cfg, e))?,
            headers: headers(ch).map_err(|e| BuildError::new(cfg, e))?,
            retry: cfg.retry,
        })
    }

    async fn send_batch(&mut self, batch: SinkBatch<'_>) -> Result<(), SendError> {
        let body = gzip(&rows(batch.records)?);
        let resp = self.client.post(&self.target, &self.headers, body).await?;
        let code = exception_code(resp.status, resp.header(EXCEPTION_CODE), &resp.body);
        if let Some((Class::Operator, name)) = code.and_then(lookup) {
            tracing::error!(sink = %self.name, code, name,
                "clickhouse refuses every insert until the sink's table, database or credentials are fixed; \
                 batches wait in the spool");
        }
        classify(
            resp.status,
            code,
            resp.header(RETRY_AFTER.as_str()),
            self.retry.cap,
        )
    }
}

impl Sink for ClickHouseSink {
    fn send<'a>(&'a mut self, batch: SinkBatch<'a>) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(self.send_batch(batch))
    }
}
