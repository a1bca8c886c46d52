//! Sending one batch to the upstream and classifying its answer.

use hyper::header::{
    HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER,
};
use hyper::Uri;

use super::encode::ndjson;
use crate::config::{HttpConfig, RetryPolicy, SinkConfig};
use crate::sink::build::BuildError;
use crate::sink::client::{gzip, request_target, HttpClient};
use crate::sink::outcome::classify_http;
use crate::sink::{BoxFuture, DeadReason, SendError, Sink, SinkBatch};

const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// The running `http` sink.
pub struct HttpSink {
    client: HttpClient,
    /// Path and query of every request.
    target: Uri,
    /// Headers every request carries (the token marked sensitive).
    headers: HeaderMap,
    retry: RetryPolicy,
}

impl HttpSink {
    /// Loads the TLS files and prepares the fixed headers; connects on the first batch.
    pub fn new(cfg: &SinkConfig, http: &HttpConfig) -> Result<HttpSink, BuildError> {
        let client = HttpClient::new(&http.endpoint, &http.tls, cfg.timeout)
            .map_err(|e| BuildError::new(cfg, e))?;
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        );
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        if let Some(token) = &http.token {
            // `Secret` is one line without control characters; the error never shows it.
            let mut value = HeaderValue::try_from(format!("Bearer {}", token.expose()))
                .map_err(|_| BuildError::new(cfg, "token: not a valid HTTP header value"))?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        Ok(HttpSink {
            client,
            target: request_target(&http.endpoint.path).map_err(|e| BuildError::new(cfg, e))?,
            headers,
            retry: cfg.retry,
        })
    }

    async fn send_batch(&mut self, batch: SinkBatch<'_>) -> Result<(), SendError> {
        let mut headers = self.headers.clone();
        let key = HeaderValue::try_from(batch.id).map_err(|_| {
            SendError::dead(DeadReason::Refused, "batch id is not a valid header value")
        })?;
        headers.insert(IDEMPOTENCY_KEY, key);
        let body = gzip(&ndjson(batch.records));
        let resp = self.client.post(&self.target, &headers, body).await?;
        let detail = format!("from the upstream for {} events", batch.records.len());
        classify_http(
            resp.status,
            resp.header(RETRY_AFTER.as_str()),
            self.retry.cap,
            &detail,
        )
    }
}

impl Sink for HttpSink {
    fn send<'a>(&'a mut self, batch: SinkBatch<'a>) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(self.send_batch(batch))
    }
}
