//! app: owns everything that lives as long as the process — the config snapshot (`ArcSwap`), the metrics
//! `Registry`, the spool and its writer, the listeners — and the order of start and stop:
//! open spool (recovery) → bind listeners → serve … signal → stop accepting → drain connections → final fsync.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use prometheus::Registry;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::audit::{Audit, Event};
use crate::clock::Clock;
use crate::config::{self, ConfigErrors, LoadMode, SinkConfig, Snapshot};
use crate::event::minimize::useragent::UaCache;
use crate::guard::conns::AddrSlots;
use crate::guard::jail::{GuardMetrics, Jail};
use crate::guard::ratelimit::{self, RateLimitService};
use crate::listener::{self, Kind};
use crate::metrics::Metrics;
use crate::reload::{self, Generation, Trigger};
use crate::sink::build;
use crate::sink::deadletter::DeadLetters;
use crate::sink::deliver::Delivery;
use crate::spool::{Recovery, Spool, SpoolError, SpoolWriter};
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
    /// The hash-chained audit log (`[audit]`); shared with the jail and the sinks.
    pub audit: Arc<Audit>,
    /// Held across read + validate + store: reloads happen one at a time, so an older file can never be
    /// stored after a newer one.
    reloading: Mutex<()>,
    /// Reloads attempted (applied or rejected), for the file watcher to notice other triggers.
    reload_attempts: AtomicU64,
}

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

impl ReloadError {
    /// A closed label for logs and the audit log.
    pub fn reason(&self) -> &'static str {
        match self {
            ReloadError::NoFile => "no_file",
            ReloadError::Invalid(_) => "invalid",
            ReloadError::RequiresRestart(_) => "requires_restart",
            ReloadError::SpoolKeyInUse(_) => "spool_key_in_use",
            ReloadError::Spool(_) => "spool",
        }
    }

    /// What the error names — config paths, settings, key ids — without its text (which may quote a value).
    pub fn fields(&self) -> Vec<String> {
        match self {
            ReloadError::Invalid(e) => e.0.iter().map(|e| e.path.clone()).collect(),
            ReloadError::RequiresRestart(names) => names.iter().map(|n| n.to_string()).collect(),
            ReloadError::SpoolKeyInUse(ids) => ids.clone(),
            ReloadError::NoFile | ReloadError::Spool(_) => Vec::new(),
        }
    }
}

impl Ctx {
    /// Reloads as `POST /admin/reload` does; see [`Ctx::reload_from`].
    pub fn reload(&self) -> Result<(), ReloadError> {
        self.reload_from(Trigger::Admin).map(|_| ())
    }

    /// Re-reads the config file, validates all of it into a new snapshot and swaps it in with one store, as
    /// generation `old + 1` carrying the SHA-256 of the bytes it was built from. One reload at a time: a
    /// second caller waits, so the file read last is the one stored last. A failed reload leaves the running
    /// snapshot serving; either way the outcome is logged (with `trigger`), counted in
    /// `tollgate_config_reloads_total{outcome}` and written to the audit log. Listen addresses, the spool
    /// settings, sinks, `[audit]`, `[log]` and `limits.max_connections` are fixed at start: a change to them
    /// is refused with their names. Blocking (reads files): call from `spawn_blocking`.
    pub fn reload_from(&self, trigger: Trigger) -> Result<Generation, ReloadError> {
        let _one = self
            .reloading
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let old = self.config.load_full();
        let result = self.try_reload(&old);
        self.reload_attempts.fetch_add(1, Ordering::SeqCst);
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
            Ok(new) => {
                self.metrics.config_applied(new.number, self.clock.now_ms());
                tracing::info!(trigger = trigger.label(), generation = new.number, sha256 = %new.sha256,
                    old_sha256 = %old.source.sha256, "config reloaded");
                self.audit.record(Event::Reload {
                    trigger,
                    old_sha256: &old.source.sha256,
                    new_sha256: &new.sha256,
                    generation: new.number,
                });
            }
            Err(e) => {
                tracing::warn!(trigger = trigger.label(), generation = old.generation, error = %e,
                    "config reload rejected");
                self.audit.record(Event::ReloadRejected {
                    trigger,
                    reason: e.reason(),
                    fields: e.fields(),
                });
            }
        }
        result
    }

    /// Reloads attempted since start, applied or rejected, by any trigger.
    pub fn reload_attempts(&self) -> u64 {
        self.reload_attempts.load(Ordering::SeqCst)
    }

    /// The generation number and config SHA-256 (hex) of the snapshot serving now.
    pub fn generation(&self) -> (u64, String) {
        let snap = self.config.load();
        (snap.generation, snap.source.sha256.clone())
    }

    fn try_reload(&self, old: &Snapshot) -> Result<Generation, ReloadError> {
        let path = self.config_path.as_ref().ok_or(ReloadError::NoFile)?;
        let mut new = config::load(path, LoadMode::Run).map_err(ReloadError::Invalid)?;
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
        if old.operator.audit != new.operator.audit {
            fixed.push("audit");
        }
        if old.operator.log != new.operator.log {
            fixed.push("log");
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
        new.generation = old.generation + 1;
        let applied = Generation {
            number: new.generation,
            sha256: new.source.sha256.clone(),
        };
        self.config.store(Arc::new(new));
        Ok(applied)
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
        mut snapshot: Snapshot,
        clock: Arc<dyn Clock>,
        config_path: Option<PathBuf>,
    ) -> Result<(App, Recovery), AppError> {
        let registry = Registry::new();
        let metrics = Arc::new(Metrics::register(&registry)?);
        let (spool, writer, recovery) = Spool::open(
            snapshot.spool.clone(),
            Some(snapshot.spool_keys.clone()),
            clock.clone(),
            metrics.spool.clone(),
        )?;
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
            audit,
            reloading: Mutex::new(()),
            reload_attempts: AtomicU64::new(0),
        });
        Ok((App { ctx, writer }, recovery))
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

    /// Binds every configured listener, starts every sink, and starts accepting.
    pub async fn start(self) -> Result<Running, AppError> {
        let snap = self.ctx.config.load_full();
        let (stop, stop_rx) = watch::channel(false);
        let max = snap.limits.max_connections;
        let bind = |addr: SocketAddr| async move {
            listener::bind(addr)
                .await
                .map_err(|e| AppError::Bind(addr, e))
        };
        let public = bind(snap.listen.public).await?;
        let public_addr = public
            .local_addr()
            .map_err(|e| AppError::Bind(snap.listen.public, e))?;
        let mut loops = Vec::new();
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
        let mut admin_addr = None;
        if let Some(addr) = snap.listen.admin {
            let tcp = bind(addr).await?;
            admin_addr = tcp.local_addr().ok();
            spawn(tcp, Kind::Admin, 64);
        }
        let (generation, sha256) = self.ctx.generation();
        self.ctx.audit.record(Event::Startup {
            generation,
            config_sha256: &sha256,
        });
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
