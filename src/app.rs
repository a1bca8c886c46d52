//! app: owns everything that lives as long as the process — the config snapshot (`ArcSwap`), the metrics
//! `Registry`, the spool and its writer, the listeners — and the order of start and stop:
//! open spool (recovery) → admin listener (own thread; not ready yet) → sinks → public and redirect listeners →
//! ready → serve … signal → stop accepting → drain connections → final fsync.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use prometheus::Registry;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::audit::{Audit, Event};
use crate::clock::Clock;
use crate::config::{SinkConfig, Snapshot};
use crate::event::minimize::useragent::UaCache;
use crate::guard::conns::AddrSlots;
use crate::guard::jail::{GuardMetrics, Jail};
use crate::guard::ratelimit::{self, RateLimitService};
use crate::listener::{self, Kind};
use crate::metrics::Metrics;
pub use crate::reload::apply::ReloadError;
use crate::reload::{self, Trigger};
use crate::sink::build;
use crate::sink::deadletter::DeadLetters;
use crate::sink::deliver::Delivery;
use crate::spool::{Faults, Recovery, Spool, SpoolError, SpoolWriter};
use governor::clock::QuantaClock;

/// What every request handler can reach.
pub struct Ctx {
    pub config: Arc<ArcSwap<Snapshot>>,
    pub metrics: Arc<Metrics>,
    pub registry: Registry,
    pub spool: Spool,
    pub clock: Arc<dyn Clock>,
    /// Reduced user agents, bounded.
    pub user_agents: UaCache,
    /// The file `reload` reads; `None` for a snapshot built in memory.
    pub config_path: Option<PathBuf>,
    /// Rate-limit state: outlives reloads (which only change its limits).
    pub ratelimit: RateLimitService,
    /// Open connections per client address (the cap itself is in the snapshot): outlives reloads.
    pub conns: AddrSlots,
    /// Bans and behaviour windows: outlive reloads (policies are in the snapshot).
    pub jail: Jail,
    /// `beacon.js`, prepared once.
    pub script: crate::http::script::Script,
    /// Set once `App::start` has every listener accepting and every sink running (readiness).
    pub config_loaded: AtomicBool,
    /// When the app was built, for `uptime_s`.
    pub started: std::time::Instant,
    /// The hash-chained audit log (`[audit]`); shared with the jail and the sinks.
    pub audit: Arc<Audit>,
    /// Held across read + validate + store: reloads happen one at a time, so an older file can never be
    /// stored after a newer one.
    pub(crate) reloading: Mutex<()>,
    /// Reloads attempted (applied or rejected), for the file watcher to notice other triggers.
    pub(crate) reload_attempts: AtomicU64,
}

/// Concurrent connections the admin listener serves.
const ADMIN_CONNECTIONS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("spool: {0}")]
    Spool(#[from] SpoolError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error(transparent)]
    Sink(#[from] build::BuildError),
    #[error("audit log {0}: {1}")]
    Audit(PathBuf, std::io::Error),
}

pub struct App {
    ctx: Arc<Ctx>,
    writer: SpoolWriter,
}

/// A started gateway: its bound addresses and the handle to stop it.
pub struct Running {
    pub public_addr: SocketAddr,
    pub redirect_addr: Option<SocketAddr>,
    pub admin_addr: Option<SocketAddr>,
    pub ctx: Arc<Ctx>,
    stop: watch::Sender<bool>,
    loops: Vec<JoinHandle<()>>,
    writer: SpoolWriter,
}

impl App {
    /// Opens (and recovers) the spool and registers metrics. Nothing listens yet.
    pub fn new(
        snapshot: Snapshot,
        clock: Arc<dyn Clock>,
        config_path: Option<PathBuf>,
    ) -> Result<(App, Recovery), AppError> {
        let (app, recovery, _) = Self::build(snapshot, clock, config_path, false)?;
        Ok((app, recovery))
    }

    /// [`App::new`] with the spool's fault-injection seam ([`Spool::open_with_faults`]): for tests that make
    /// the spool writer fail. The gateway binary never calls it.
    #[doc(hidden)]
    pub fn with_spool_faults(
        snapshot: Snapshot,
        clock: Arc<dyn Clock>,
        config_path: Option<PathBuf>,
    ) -> Result<(App, Arc<Faults>), AppError> {
        let (app, _, faults) = Self::build(snapshot, clock, config_path, true)?;
        Ok((app, faults.expect("opened with faults")))
    }

    fn build(
        mut snapshot: Snapshot,
        clock: Arc<dyn Clock>,
        config_path: Option<PathBuf>,
        faults: bool,
    ) -> Result<(App, Recovery, Option<Arc<Faults>>), AppError> {
        let registry = Registry::new();
        let metrics = Arc::new(Metrics::register(&registry)?);
        metrics.tls.publish_expiry(&snapshot.tls.expiry);
        let (cfg, keys) = (snapshot.spool.clone(), Some(snapshot.spool_keys.clone()));
        let (spool, writer, recovery, faults) = match faults {
            false => {
                let (s, w, r) = Spool::open(cfg, keys, clock.clone(), metrics.spool.clone())?;
                (s, w, r, None)
            }
            true => {
                let (s, w, r, f) =
                    Spool::open_with_faults(cfg, keys, clock.clone(), metrics.spool.clone())?;
                (s, w, r, Some(f))
            }
        };
        metrics
            .spool_max_bytes
            .set(i64::try_from(snapshot.spool.max_bytes).unwrap_or(i64::MAX));
        let ratelimit = RateLimitService::new(snapshot.ratelimit.clone(), QuantaClock::default());
        let audit = Arc::new(match &snapshot.operator.audit {
            Some(path) => {
                Audit::open(path, clock.clone()).map_err(|e| AppError::Audit(path.clone(), e))?
            }
            None => Audit::off(clock.clone()),
        });
        snapshot.generation = 1;
        metrics.config_applied(1, clock.now_ms());
        tracing::info!(trigger = Trigger::Startup.label(), generation = 1, sha256 = %snapshot.source.sha256,
            "config loaded");
        let config = Arc::new(ArcSwap::from_pointee(snapshot));
        let ctx = Arc::new(Ctx {
            config,
            metrics,
            registry: registry.clone(),
            spool,
            clock,
            user_agents: UaCache::new(1024),
            config_path,
            ratelimit,
            conns: AddrSlots::default(),
            jail: Jail::new(GuardMetrics::register(&registry)?).with_audit(audit.clone()),
            script: crate::http::script::Script::build(),
            config_loaded: AtomicBool::new(false),
            started: std::time::Instant::now(),
            audit,
            reloading: Mutex::new(()),
            reload_attempts: AtomicU64::new(0),
        });
        Ok((App { ctx, writer }, recovery, faults))
    }

    pub fn ctx(&self) -> &Arc<Ctx> {
        &self.ctx
    }

    /// Starts one sink's delivery task on its own spool reader.
    async fn start_sink(
        &self,
        sink: &SinkConfig,
        stop: watch::Receiver<bool>,
    ) -> Result<JoinHandle<()>, AppError> {
        let reader = self.ctx.spool.reader(&sink.name)?;
        let built = build::build(sink).await?;
        let data_dir = self.ctx.config.load().data_dir.clone();
        let delivery = Delivery {
            cfg: sink.clone(),
            reader,
            sink: built,
            dead: DeadLetters::new(&data_dir, &sink.name),
            metrics: self.ctx.metrics.sinks.for_sink(&sink.name),
            clock: self.ctx.clock.clone(),
            audit: Some(self.ctx.audit.clone()),
        };
        Ok(tokio::spawn(delivery.run(stop)))
    }

    /// Binds every configured listener, starts every sink, and starts accepting. The admin listener comes
    /// first, on its own thread: until the rest is up, `/readyz` says `config_not_loaded`.
    pub async fn start(self) -> Result<Running, AppError> {
        let snap = self.ctx.config.load_full();
        let (stop, stop_rx) = watch::channel(false);
        let max = snap.limits.max_connections;
        let bind = |addr: SocketAddr| async move {
            listener::bind(addr)
                .await
                .map_err(|e| AppError::Bind(addr, e))
        };
        let mut loops = Vec::new();
        let mut admin_addr = None;
        if let Some(addr) = snap.listen.admin {
            // Bound here (tokio sets SO_REUSEADDR), served on the admin thread's own runtime. If start fails
            // later, dropping `stop` ends that thread.
            let tcp = bind(addr).await?;
            admin_addr = tcp.local_addr().ok();
            let on_thread = |tcp: tokio::net::TcpListener| {
                let ctx = self.ctx.clone();
                listener::spawn_admin(tcp.into_std()?, ctx, ADMIN_CONNECTIONS, stop_rx.clone())
            };
            let done = on_thread(tcp).map_err(|e| AppError::Bind(addr, e))?;
            loops.push(tokio::spawn(async move {
                let _ = done.await;
            }));
        }
        let public = bind(snap.listen.public).await?;
        let public_addr = public
            .local_addr()
            .map_err(|e| AppError::Bind(snap.listen.public, e))?;
        for sink in &snap.sinks {
            loops.push(self.start_sink(sink, stop_rx.clone()).await?);
        }
        loops.push(tokio::spawn(sweep_limiters(
            self.ctx.clone(),
            stop_rx.clone(),
        )));
        loops.push(tokio::spawn(reload::watch::run(
            self.ctx.clone(),
            stop_rx.clone(),
        )));
        let mut spawn = |tcp, kind, permits: usize| {
            loops.push(tokio::spawn(listener::accept_loop(
                tcp,
                kind,
                self.ctx.clone(),
                permits,
                stop_rx.clone(),
            )));
        };
        spawn(public, Kind::Public, max);
        let mut redirect_addr = None;
        if let Some(addr) = snap.listen.redirect {
            let tcp = bind(addr).await?;
            redirect_addr = tcp.local_addr().ok();
            spawn(
                tcp,
                Kind::Redirect {
                    https_port: public_addr.port(),
                },
                max,
            );
        }
        let (generation, sha256) = self.ctx.generation();
        self.ctx.audit.record(Event::Startup {
            generation,
            config_sha256: &sha256,
        });
        self.ctx.config_loaded.store(true, Ordering::Release);
        Ok(Running {
            public_addr,
            redirect_addr,
            admin_addr,
            ctx: self.ctx,
            stop,
            loops,
            writer: self.writer,
        })
    }
}

impl Running {
    /// A cloneable trigger for shutdown (signal handlers, tests).
    pub fn stopper(&self) -> watch::Sender<bool> {
        self.stop.clone()
    }

    /// Waits for a shutdown request, then drains: listeners stop accepting, in-flight requests finish
    /// (at most `timeouts.shutdown_grace`), and the spool writer completes and fsyncs what is queued.
    pub async fn wait(self) -> Result<(), SpoolError> {
        let mut rx = self.stop.subscribe();
        listener::signalled(&mut rx).await;
        let grace = self.ctx.config.load().timeouts.shutdown_grace;
        let drained = tokio::time::timeout(grace, futures_join(self.loops)).await;
        if drained.is_err() {
            tracing::warn!(
                ?grace,
                "shutdown grace elapsed with connections still open; closing them"
            );
        }
        let closed = self.writer.close().await;
        self.ctx.audit.record(Event::Shutdown);
        closed
    }

    /// Requests shutdown and waits for it to complete.
    pub async fn stop(self) -> Result<(), SpoolError> {
        let _ = self.stop.send(true);
        self.wait().await
    }
}

/// Every `SWEEP_PERIOD`: drops idle rate-limiter keys, forgotten bans and silent behaviour windows, and
/// publishes the key and ban counts.
async fn sweep_limiters(ctx: Arc<Ctx>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(ratelimit::SWEEP_PERIOD);
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tick.tick() => {
                ctx.ratelimit.sweep();
                ctx.metrics.limits.publish_keys(&ctx.ratelimit);
                let snap = ctx.config.load();
                let now = tokio::time::Instant::now().into_std();
                ctx.jail.sweep(snap.bans.as_ref(), snap.behaviour.as_ref(), now);
            }
        }
    }
}

async fn futures_join(handles: Vec<JoinHandle<()>>) {
    for h in handles {
        let _ = h.await;
    }
}
