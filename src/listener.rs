//! listener: accept loops and per-connection serving. Each listener holds a semaphore of
//! `limits.max_connections` permits: a connection is accepted only with a permit in hand, so excess
//! connections wait in the kernel backlog instead of growing memory. Shutdown stops the accept loops, asks
//! every connection to finish its in-flight requests (`graceful_shutdown`), and waits until all permits are back.
//!
//! Each connection's [`ConnMeta`] (listener, TCP peer, client address) is built once, here. With
//! `listen.public_proxy_protocol` every public connection must first send a PROXY v2 header, read within the
//! TLS handshake timeout and [`proxy::MAX_HEADER_BYTES`]; its source becomes the client, and a missing or bad
//! header closes the connection. On the internet-facing listeners (public, redirect) the connection then
//! passes the connection guard ([`conns::admit`]: `[guard.lists]` from the current snapshot, then the ban
//! table, then the per-address cap) on that client address, before any TLS or HTTP work; a refused one is closed at once and
//! counted in `tollgate_connections_refused_total`. The admin listener skips that guard (bans and caps must
//! not lock an operator out) and checks only `[admin] allow` ([`guard::admin::source`]), refusing and counting
//! the same way. It runs its accept loop on its own thread and runtime ([`spawn_admin`]) so that it answers
//! while the public runtime is saturated.
//!
//! Two timers bound a connection that holds a slot. [`IdleTimeout`] closes one on which no byte moves
//! (`timeouts.idle_ms`): a stalled TLS record, a body that stopped. On the internet-facing listeners an
//! [`activity::Watchdog`] closes one on which bytes move but no request comes: `timeouts.header_read_ms` after
//! the TLS handshake (public) or the accept (redirect) until the first request, protocol detection included,
//! then `timeouts.keepalive_idle_ms` after the last request ended. HTTP/2 PINGs do not keep a connection open.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulConnection;
use prometheus::IntCounter;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use crate::app::Ctx;
use crate::config::Snapshot;
use crate::guard::connmeta::ConnMeta;
use crate::guard::conns::{self, Refused, Slot};
use crate::guard::{self, proxy};
use crate::http::activity::{self, Watchdog};
use crate::http::{self, idle::IdleTimeout};
use crate::tls::hello::Tap;
use crate::tls::metrics::SniKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// TLS, HTTP/1.1 + HTTP/2, the event routes.
    Public,
    /// Plain HTTP/1.1, redirect to HTTPS only; carries the public port for the Location.
    Redirect { https_port: u16 },
    /// Plain HTTP/1.1, probes, status, metrics, reload and bans (`http::admin`).
    Admin,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Public => "public",
            Kind::Redirect { .. } => "redirect",
            Kind::Admin => "admin",
        }
    }

    /// Whether accepted connections pass the connection guard (lists, per-address cap).
    fn guarded(self) -> bool {
        !matches!(self, Kind::Admin)
    }
}

/// What an open connection holds until it ends: its global permit and, when guarded, its per-address slot.
struct Held {
    _permit: OwnedSemaphorePermit,
    _slot: Option<Slot>,
}

/// One accepted connection on its way to being served; its fields are what every stage needs.
struct Handler {
    kind: Kind,
    ctx: Arc<Ctx>,
    refused: [IntCounter; Refused::ALL.len()],
    /// `tollgate_connections_idle_closed_total` of this listener, by [`activity::Phase`].
    idle_closed: [IntCounter; 2],
    stop: watch::Receiver<bool>,
}

/// Resolves once shutdown has been requested (also if it already was).
pub async fn signalled(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Accepts until shutdown, then returns once every connection of this listener has ended.
pub async fn accept_loop(
    tcp: TcpListener,
    kind: Kind,
    ctx: Arc<Ctx>,
    max_connections: usize,
    mut stop: watch::Receiver<bool>,
) {
    let label = kind.label();
    let refused = ctx.metrics.connections_refused.for_listener(label);
    let idle_closed = ctx.metrics.connections_idle_closed.for_listener(label);
    let permits = Arc::new(Semaphore::new(max_connections));
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.expect("semaphore never closed"),
            _ = signalled(&mut stop) => break,
        };
        let (stream, peer) = tokio::select! {
            r = tcp.accept() => match r {
                Ok(conn) => conn,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(listener = label, error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = signalled(&mut stop) => break,
        };
        ctx.metrics
            .connections_total
            .with_label_values(&[label])
            .inc();
        let handler = Handler {
            kind,
            ctx: ctx.clone(),
            refused: refused.clone(),
            idle_closed: idle_closed.clone(),
            stop: stop.clone(),
        };
        tokio::spawn(handler.run(stream, peer, permit));
    }
    drop(tcp);
    // Every connection holds a permit until it ends: having them all back means all are done.
    let _ = permits.acquire_many(max_connections as u32).await;
}

impl Handler {
    async fn run(self, mut stream: TcpStream, peer: SocketAddr, permit: OwnedSemaphorePermit) {
        // One snapshot per connection: its guard, TLS config, bounds and timeouts all come from one version.
        let snap = self.ctx.config.load_full();
        let (meta, slot) = match self.admit(&mut stream, peer, &snap).await {
            Ok(admitted) => admitted,
            Err(r) => {
                conns::count(&self.refused, r);
                let label = self.kind.label();
                let peer = peer.ip();
                tracing::debug!(listener = label, %peer, reason = r.label(), "connection refused");
                // Dropping the stream closes it: no TLS, no HTTP. The permit goes back with it.
                return;
            }
        };
        let _ = stream.set_nodelay(true);
        let held = Held {
            _permit: permit,
            _slot: slot,
        };
        self.serve(stream, meta, &snap, held).await;
    }

    /// Builds the connection's [`ConnMeta`] (reading the PROXY header where required), then runs the
    /// connection guard on its client address. Pure decisions live in `proxy` and `conns`.
    async fn admit(
        &self,
        stream: &mut TcpStream,
        peer: SocketAddr,
        snap: &Snapshot,
    ) -> Result<(ConnMeta, Option<Slot>), Refused> {
        let proxied = if self.kind == Kind::Public && snap.listen.public_proxy_protocol {
            match tokio::time::timeout(snap.timeouts.tls_handshake, proxy::read(stream)).await {
                Ok(Ok(source)) => source,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "bad PROXY header");
                    return Err(Refused::ProxyHeader);
                }
                Err(_) => return Err(Refused::ProxyHeader),
            }
        } else {
            None
        };
        let meta = ConnMeta::new(self.kind, peer, proxied);
        if self.kind == Kind::Admin {
            guard::admin::source(peer.ip(), &snap.admin)?;
        }
        let slot = match self.kind.guarded() {
            true => Some(conns::admit(
                meta.client,
                self.kind,
                &snap.connections,
                &self.ctx.conns,
                &self.ctx.jail.bans,
                tokio::time::Instant::now().into_std(),
            )?),
            false => None,
        };
        Ok((meta, slot))
    }

    async fn serve(self, stream: TcpStream, meta: ConnMeta, snap: &Snapshot, held: Held) {
        let Handler {
            kind,
            ctx,
            stop,
            idle_closed,
            ..
        } = self;
        let open = ctx
            .metrics
            .connections_open
            .with_label_values(&[kind.label()]);
        open.inc();
        let io = IdleTimeout::new(stream, snap.timeouts.idle);
        let end = End {
            stop,
            idle_closed: &idle_closed,
            ctx: &ctx,
        };
        match kind {
            Kind::Public => serve_tls(io, meta, snap, &ctx, end).await,
            Kind::Redirect { https_port } => {
                let limits = activity::Limits::from(&snap.timeouts);
                let (tracker, watchdog) = activity::watch(tokio::time::Instant::now(), limits);
                let c = ctx.clone();
                let svc = service_fn(move |req| {
                    tracker.track(http::redirect::handle(req, c.clone(), https_port))
                });
                serve_plain(io, snap, svc, end, Some(watchdog)).await
            }
            Kind::Admin => {
                let c = ctx.clone();
                let svc = service_fn(move |req| http::admin::handle(req, c.clone()));
                serve_plain(io, snap, svc, end, None).await
            }
        }
        // Free the per-address slot before the gauge drops: a reader who sees the gauge fall may connect again.
        drop(held);
        open.dec();
    }
}

/// What ends a connection besides the client: shutdown, or its watchdog (counted here).
struct End<'a> {
    stop: watch::Receiver<bool>,
    idle_closed: &'a [IntCounter; 2],
    ctx: &'a Arc<Ctx>,
}

impl End<'_> {
    /// Drives `conn` until it ends. On shutdown it finishes its in-flight requests (`graceful_shutdown`); when
    /// `watchdog` fires it is asked to close the same way (HTTP/2: GOAWAY) and dropped after
    /// [`activity::CLOSE_GRACE`] at the latest. A protocol error or timeout is counted.
    async fn drive<C: GracefulConnection>(mut self, conn: C, watchdog: Option<Watchdog>) {
        tokio::pin!(conn);
        let idle = async {
            match watchdog {
                Some(mut w) => w.expired().await,
                None => std::future::pending().await,
            }
        };
        let result = tokio::select! {
            r = conn.as_mut() => r,
            _ = signalled(&mut self.stop) => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
            phase = idle => {
                activity::count(self.idle_closed, phase);
                conn.as_mut().graceful_shutdown();
                tokio::time::timeout(activity::CLOSE_GRACE, conn).await.unwrap_or(Ok(()))
            }
        };
        if result.is_err() {
            self.ctx.metrics.connection_errors.inc();
        }
    }
}

async fn serve_tls(
    io: IdleTimeout<TcpStream>,
    meta: ConnMeta,
    snap: &Snapshot,
    ctx: &Arc<Ctx>,
    end: End<'_>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(snap.tls.config.clone());
    let failures = &ctx.metrics.tls_handshake_failures;
    let io = Tap::new(io);
    let mut tls = match tokio::time::timeout(snap.timeouts.tls_handshake, acceptor.accept(io)).await
    {
        Ok(Ok(tls)) => tls,
        Ok(Err(_)) => return failures.with_label_values(&["error"]).inc(),
        Err(_) => return failures.with_label_values(&["timeout"]).inc(),
    };
    // The tapped ClientHello is read once and freed here: the connection keeps no copy.
    let (tap, session) = tls.get_mut();
    let sni = SniKind::classify(session.server_name(), &snap.tls.resolver, &tap.finish());
    ctx.metrics.tls.count_sni(sni);
    let version = match session.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "1.2",
        _ => "other",
    };
    ctx.metrics
        .tls_handshakes
        .with_label_values(&[version])
        .inc();
    // From here the client owes a request: protocol detection counts against `header_read`.
    let limits = activity::Limits::from(&snap.timeouts);
    let (tracker, watchdog) = activity::watch(tokio::time::Instant::now(), limits);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(h1_head_timeout(&snap.timeouts, true))
        .max_headers(snap.limits.max_header_count)
        .max_buf_size(snap.limits.max_header_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(snap.limits.h2_max_concurrent_streams)
        .max_header_list_size(snap.limits.max_header_bytes as u32)
        .max_pending_accept_reset_streams(Some(20))
        .max_local_error_reset_streams(Some(100));
    let c = ctx.clone();
    let svc = service_fn(move |req| tracker.track(http::public::handle(req, c.clone(), meta)));
    let conn = builder.serve_connection(TokioIo::new(tls), svc);
    end.drive(conn, Some(watchdog)).await
}

/// hyper's HTTP/1.1 head timeout. hyper starts it as soon as a connection waits for its next request, so it
/// also bounds the keep-alive wait. Where an [`activity`] watchdog bounds both the first request
/// (`header_read`) and the keep-alive (`keepalive_idle`), hyper's timer is only a backstop at the longer of the
/// two; otherwise a `header_read` shorter than `keepalive_idle` would end every idle keep-alive early.
fn h1_head_timeout(t: &crate::config::Timeouts, watched: bool) -> std::time::Duration {
    match watched {
        true => t.header_read.max(t.keepalive_idle),
        false => t.header_read,
    }
}

async fn serve_plain<S>(
    io: IdleTimeout<TcpStream>,
    snap: &Snapshot,
    svc: S,
    end: End<'_>,
    watchdog: Option<Watchdog>,
) where
    S: hyper::service::Service<
        hyper::Request<hyper::body::Incoming>,
        Response = http::Resp,
        Error = std::convert::Infallible,
    >,
    S::Future: Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(h1_head_timeout(&snap.timeouts, watchdog.is_some()))
        .max_headers(snap.limits.max_header_count)
        .max_buf_size(snap.limits.max_header_bytes);
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    end.drive(conn, watchdog).await
}

/// Serves the admin listener on a thread of its own with a single-threaded runtime, so that a saturated
/// public runtime (every worker busy, every permit taken) cannot keep it from answering. `tcp` is bound by
/// the caller (errors surface at start); the thread ends when `stop` turns true (or its sender is dropped)
/// and every admin connection has ended; `done` resolves then.
pub fn spawn_admin(
    tcp: std::net::TcpListener,
    ctx: Arc<Ctx>,
    max_connections: usize,
    stop: watch::Receiver<bool>,
) -> std::io::Result<tokio::sync::oneshot::Receiver<()>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    tcp.set_nonblocking(true)?;
    let (done_tx, done) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("tollgate-admin".into())
        .spawn(move || {
            runtime.block_on(async move {
                match TcpListener::from_std(tcp) {
                    Ok(tcp) => accept_loop(tcp, Kind::Admin, ctx, max_connections, stop).await,
                    Err(e) => tracing::error!(error = %e, "admin listener failed"),
                }
            });
            // Connections' tasks that outlived the loop are dropped with the runtime.
            drop(runtime);
            let _ = done_tx.send(());
        })?;
    Ok(done)
}

/// Binds a listener; the address may use port 0.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
