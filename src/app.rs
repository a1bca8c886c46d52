//! app: owns everything that lives as long as the process — the config snapshot (`ArcSwap`), the metrics
//! `Registry`, the spool and its writer, the listeners — and the order of start and stop:
//! open spool (recovery) → admin listener (own thread; not ready yet) → sinks → public and redirect listeners →
//! ready → serve … signal → stop accepting → drain connections → final fsync.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use prometheus::Registry;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::config::{self, ConfigErrors, LoadMode, SinkConfig, Snapshot};
use crate::event::minimize::useragent::UaCache;
use crate::guard::conns::AddrSlots;
use crate::guard::jail::{GuardMetrics, Jail};
use crate::guard::ratelimit::{self, RateLimitService};
use crate::listener::{self, Kind};
use crate::metrics::Metrics;
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
}

/// Concurrent connections the admin listener serves.
const ADMIN_CONNECTIONS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("no config file to reload from")]
    NoFile,
    #[error("invalid config, nothing changed:\n{0}")]
    Invalid(ConfigErrors),
    #[error("these settings only change on restart, nothing changed: {}", .0.join(", "))]
    RequiresRestart(Vec<&'static str>),
    #[error("spool.keys: segments on disk are still encrypted with {}; keep these keys listed, nothing changed", .0.join(", "))]
    SpoolKeyInUse(Vec<String>),
    #[error("cannot read the spool: {0}")]
    Spool(String),
}

impl Ctx {
    /// Re-reads the config file, validates all of it into a new snapshot and swaps it in with one store.
    /// A failed reload leaves the running snapshot serving. Listen addresses, the spool settings and
    /// `limits.max_connections` are fixed at start: a change to them is refused with their names.
    /// Blocking (reads files): call from `spawn_blocking`.
    pub fn reload(&self) -> Result<(), ReloadError> {
        let result = self.try_reload();
        let outcome = if result.is_ok() {
            "applied"
        } else {
            "rejected"
        };
        self.metrics
            .config_reloads
            .with_label_values(&[outcome])
            .inc();
        match &result {
            Ok(()) => tracing::info!("config reloaded"),
            Err(e) => tracing::warn!(error = %e, "config reload rejected"),
        }
        result
    }

    fn try_reload(&self) -> Result<(), ReloadError> {
        let path = self.config_path.as_ref().ok_or(ReloadError::NoFile)?;
        let new = config::load(path, LoadMode::Run).map_err(ReloadError::Invalid)?;
        let old = self.config.load();
        let mut fixed = Vec::new();
        if old.listen != new.listen {
            fixed.push("listen");
        }
        if old.spool != new.spool {
            fixed.push("spool");
        }
        if old.sinks != new.sinks {
            fixed.push("sinks");
        }
        if old.limits.max_connections != new.limits.max_connections {
            fixed.push("limits.max_connections");
        }
        if !fixed.is_empty() {
            return Err(ReloadError::RequiresRestart(fixed));
        }
        let in_use = self
            .spool
            .key_ids_in_use()
            .map_err(|e| ReloadError::Spool(e.to_string()))?;
        let missing: Vec<String> = in_use
            .into_iter()
            .filter(|id| new.spool_keys.get(id).is_none())
            .collect();
        if !missing.is_empty() {
            return Err(ReloadError::SpoolKeyInUse(missing));
        }
        self.spool.set_keys(new.spool_keys.clone());
        self.ratelimit.reconfigure(new.ratelimit.clone());
        self.config.store(Arc::new(new));
        self.metrics
            .tls
            .publish_expiry(&self.config.load().tls.expiry);
        Ok(())
    }
}

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
        snapshot: Snapshot,
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
            jail: Jail::new(GuardMetrics::register(&registry)?),
            script: crate::http::script::Script::build(),
            config_loaded: AtomicBool::new(false),
            started: std::time::Instant::now(),
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
        self.writer.close().await
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
