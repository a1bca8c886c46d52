//! The running sink: one NATS connection, one JetStream context, publishes pipelined up to
//! `max_in_flight` unacknowledged messages, and a batch is done only when every PubAck arrived.

use std::collections::VecDeque;
use std::time::Duration;

use async_nats::jetstream::context::{
    ContextBuilder, PublishAckFuture, PublishError, PublishErrorKind,
};
use async_nats::jetstream::{self, publish::PublishAck};

use super::classify;
use super::config::{ensure_stream, StreamProblem};
use super::encode::{check_batch, message};
use crate::config::{NatsConfig, SinkConfig};
use crate::sink::build::BuildError;
use crate::sink::{BoxFuture, RetryReason, SendError, Sink, SinkBatch};
use crate::spool::StoredRecord;

/// A JetStream sink. See the [module docs](super) for what its `Ok` means.
pub struct NatsSink {
    name: String,
    cfg: SinkConfig,
    nats: NatsConfig,
    /// `None` until the server was reached (a gateway starts, and ingests, while NATS is down).
    conn: Option<Connected>,
    subject: String,
    max_in_flight: usize,
    timeout: Duration,
}

struct Connected {
    client: async_nats::Client,
    js: jetstream::Context,
}

impl std::fmt::Debug for NatsSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsSink")
            .field("name", &self.name)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

impl NatsSink {
    /// Checks the subject and tries to connect to `nats://<server>` and find, create or check the stream
    /// (see [`ensure_stream`](super::config::ensure_stream)). A stream that does not fit is a
    /// [`BuildError`]; a server that cannot be reached is not: the gateway starts and ingests anyway, and
    /// the sink connects on its first batch (a retry with reason `connect` until the server is back).
    pub async fn connect(cfg: &SinkConfig, nats: &NatsConfig) -> Result<NatsSink, BuildError> {
        super::config::check_subject(&nats.subject).map_err(|m| BuildError::new(cfg, m))?;
        let mut sink = NatsSink {
            name: cfg.name.clone(),
            cfg: cfg.clone(),
            nats: nats.clone(),
            conn: None,
            subject: nats.subject.clone(),
            max_in_flight: nats.max_in_flight.max(1),
            timeout: cfg.timeout,
        };
        match sink.ensure_connected().await {
            Ok(()) => {}
            Err(Unreached::Connect(e)) => {
                tracing::warn!(sink = %cfg.name, error = %e, "nats: server not reachable at start; will retry");
            }
            Err(Unreached::Stream(m)) => return Err(BuildError::new(cfg, m)),
        }
        Ok(sink)
    }

    /// Connects and checks the stream unless already connected.
    async fn ensure_connected(&mut self) -> Result<(), Unreached> {
        if self.conn.is_some() {
            return Ok(());
        }
        let (cfg, nats) = (&self.cfg, &self.nats);
        let client = async_nats::ConnectOptions::new()
            .name(format!("tollgate-{}", cfg.name))
            .connection_timeout(cfg.timeout)
            .request_timeout(Some(cfg.timeout))
            .connect(nats.server.as_str())
            .await
            .map_err(|e| Unreached::Connect(format!("connect nats://{}: {e}", nats.server)))?;
        // The context's own permit pool is the same bound as ours; with backpressure a publish waits for a
        // permit that an abandoned ack of a failed batch still holds (released after `ack_timeout`).
        let js = ContextBuilder::new()
            .timeout(cfg.timeout)
            .ack_timeout(cfg.timeout)
            .max_ack_inflight(nats.max_in_flight)
            .backpressure_on_inflight(true)
            .build(client.clone());
        match ensure_stream(&js, cfg, nats).await {
            Ok(()) => {}
            Err(StreamProblem::Unreached(m)) => return Err(Unreached::Connect(m)),
            Err(StreamProblem::Unfit(m)) => return Err(Unreached::Stream(m)),
        }
        self.conn = Some(Connected { client, js });
        Ok(())
    }

    /// The underlying connection, once connected (tests read the stream back through it).
    pub fn client(&self) -> Option<&async_nats::Client> {
        self.conn.as_ref().map(|c| &c.client)
    }

    async fn send_batch(&mut self, records: &[StoredRecord]) -> Result<(), SendError> {
        match self.ensure_connected().await {
            Ok(()) => {}
            Err(Unreached::Connect(e)) => return Err(SendError::retry(RetryReason::Connect, e)),
            Err(Unreached::Stream(m)) => {
                tracing::error!(sink = %self.name, problem = %m, "nats: the stream does not fit the sink's settings");
                return Err(SendError::retry(RetryReason::Server, m));
            }
        }
        check_batch(records)?;
        let mut pending: VecDeque<PublishAckFuture> =
            VecDeque::with_capacity(self.max_in_flight.min(records.len()));
        let (mut stored, mut duplicates) = (0usize, 0usize);
        let mut count = |ack: PublishAck| {
            stored += 1;
            duplicates += usize::from(ack.duplicate);
        };
        for record in records {
            if pending.len() >= self.max_in_flight {
                let ack = pending.pop_front().expect("pending is full");
                count(self.ack(ack).await?);
            }
            pending.push_back(self.publish(record).await?);
        }
        while let Some(ack) = pending.pop_front() {
            count(self.ack(ack).await?);
        }
        tracing::debug!(sink = %self.name, stored, duplicates, "batch acknowledged by JetStream");
        Ok(())
    }

    /// Publishes one record; the wait for a send slot is bounded by the sink's timeout.
    async fn publish(&self, record: &StoredRecord) -> Result<PublishAckFuture, SendError> {
        let (subject, msg) = message(&self.subject, record);
        let js = &self.conn.as_ref().expect("connected before publishing").js;
        match tokio::time::timeout(self.timeout, js.send_publish(subject, msg)).await {
            Ok(sent) => sent.map_err(|e| classify(&e)),
            Err(_) => Err(classify(&PublishError::new(PublishErrorKind::TimedOut))),
        }
    }

    /// Waits for one PubAck, at most the sink's timeout. A duplicate ack counts as stored.
    async fn ack(&self, ack: PublishAckFuture) -> Result<PublishAck, SendError> {
        match tokio::time::timeout(self.timeout, ack).await {
            Ok(acked) => acked.map_err(|e| classify(&e)),
            Err(_) => Err(classify(&PublishError::new(PublishErrorKind::TimedOut))),
        }
    }
}

/// Why the sink is not connected.
enum Unreached {
    /// The server did not answer (or has no JetStream yet): retry later.
    Connect(String),
    /// The stream exists but does not fit, or cannot be created: an operator must act.
    Stream(String),
}

impl Sink for NatsSink {
    fn send<'a>(&'a mut self, batch: SinkBatch<'a>) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let out = self.send_batch(batch.records).await;
            if let Err(e) = &out {
                tracing::debug!(sink = %self.name, batch = batch.id, error = %e, "JetStream batch not stored");
            }
            out
        })
    }

    fn close(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            // Nothing is buffered that is not already acknowledged; flush only releases the socket politely.
            if let Some(c) = &self.conn {
                let _ = tokio::time::timeout(self.timeout, c.client.flush()).await;
            }
        })
    }
}
