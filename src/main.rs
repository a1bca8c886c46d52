//! The `tollgate` command: `run`, `check`, `spool dump`, `audit verify`, ...

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

mod health_cli;
mod spool_cli;

/// mimalloc instead of glibc's malloc: request handling allocates and frees many small buffers across two
/// threads, where glibc's arenas showed ~10% of server CPU in profiles (docs/performance.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
use clap::{Parser, Subcommand};
use tollgate::app::App;
use tollgate::clock::SystemClock;
use tollgate::config::{self, LoadMode};

#[derive(Parser)]
#[command(
    name = "tollgate",
    version,
    about = "Edge ingestion gateway for browser beacon traffic"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Run {
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Validate a config file offline, print every error with its path; exit 0 if valid, 1 if not.
    Check {
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Print suppression-list entries (`<key id>:<hash>`, with the tenant's active key) for e-mail addresses of data
    /// subjects who asked to be forgotten; append them to the tenant's `suppression_file`.
    Suppress {
        #[arg(short, long)]
        config: PathBuf,
        #[arg(long)]
        site: String,
        /// E-mail addresses; read from standard input, one per line, when none are given.
        emails: Vec<String>,
    },
    /// Dead-letter batches that a sink refused for good.
    Deadletter {
        #[command(subcommand)]
        command: DeadletterCommand,
    },
    /// Print the HTML snippet a shop pastes into its pages for tenant SITE: the queue stub, `init`, and
    /// `beacon.js` with its Subresource Integrity hash.
    Snippet {
        #[arg(short, long)]
        config: PathBuf,
        #[arg(long)]
        site: String,
        /// The gateway's public URL as browsers reach it (`https://track.shop.example`); default
        /// `https://localhost:<public port>`.
        #[arg(long)]
        url: Option<String>,
    },
    /// Inspect the local spool.
    Spool {
        #[command(subcommand)]
        command: SpoolCommand,
    },
    /// Probe the admin listener: one HTTP GET, exit 0 on 200 and 1 otherwise (a container HEALTHCHECK
    /// without curl).
    Health {
        #[arg(long, default_value = "http://127.0.0.1:9090/healthz")]
        url: String,
        /// Connect, write and read timeout.
        #[arg(long, default_value_t = 3000)]
        timeout_ms: u64,
    },
    /// The hash-chained audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain of an audit log; name the first line that breaks it. Exit 0 if intact, 1 if not.
    Verify { file: PathBuf },
}

#[derive(Subcommand)]
enum DeadletterCommand {
    /// Send a sink's dead letters again (oldest first); each delivered batch is deleted. Stops, losing nothing,
    /// at the first batch the sink wants retried.
    Replay {
        #[arg(short, long)]
        config: PathBuf,
        #[arg(long)]
        sink: String,
    },
}

#[derive(Subcommand)]
enum SpoolCommand {
    /// Print every stored record as one JSON line, oldest first (decrypted with the config's spool keys).
    /// Never modifies the spool.
    Dump {
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Spool directory, instead of the config's (the keys still come from the config).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Check every frame of every segment; report damage with offsets, change nothing. Exit 0 if clean, 1 if not.
    Verify {
        #[arg(short, long)]
        config: PathBuf,
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Segments, bytes, oldest record age, and each sink's lag in records, bytes and seconds.
    Status {
        #[arg(short, long)]
        config: PathBuf,
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tollgate::logs::init(match &cli.command {
        Command::Run { config } => config::log_format(config),
        _ => config::LogFormat::Human,
    });
    let result = match cli.command {
        Command::Run { config } => run(config),
        Command::Check { config } => return check(&config),
        Command::Spool { command } => return spool_command(command),
        Command::Audit {
            command: AuditCommand::Verify { file },
        } => return audit_verify(&file),
        Command::Deadletter {
            command: DeadletterCommand::Replay { config, sink },
        } => spool_cli::replay(&config, &sink),
        Command::Suppress {
            config,
            site,
            emails,
        } => suppress(&config, &site, emails),
        Command::Snippet { config, site, url } => snippet(&config, &site, url),
        Command::Health { url, timeout_ms } => {
            health_cli::probe(&url, std::time::Duration::from_millis(timeout_ms))
                .map(|status| println!("{url}: {status}"))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tollgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `RUST_LOG`, default `info,rustls=error`. Whatever it says, rustls's ClientHello parser stays at `error`: it
/// warns once per handshake about an IP literal or a malformed name as SNI, a line any client could make us
/// write at will. Those are counted instead (`tollgate_tls_sni_total`, `tollgate_tls_handshake_failures_total`).
fn check(path: &std::path::Path) -> ExitCode {
    match config::load(path, LoadMode::Check) {
        Ok(_) => {
            println!("{}: ok", path.display());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            println!("{errors}");
            println!("{}: {} error(s)", path.display(), errors.0.len());
            ExitCode::FAILURE
        }
    }
}

fn snippet(path: &std::path::Path, site: &str, url: Option<String>) -> anyhow::Result<()> {
    let snapshot =
        config::load(path, LoadMode::Check).map_err(|e| anyhow::anyhow!("invalid config:\n{e}"))?;
    anyhow::ensure!(
        snapshot.tenants.contains_key(site),
        "no tenant with site {site:?}"
    );
    let url = url.unwrap_or_else(|| format!("https://localhost:{}", snapshot.listen.public.port()));
    anyhow::ensure!(
        url.starts_with("https://") && !url["https://".len()..].trim_end_matches('/').contains('/'),
        "--url must be https://host[:port] (the gateway as browsers reach it), got {url:?}"
    );
    let script = tollgate::http::script::Script::build();
    print!(
        "{}",
        tollgate::http::script::snippet(
            site,
            &url,
            &snapshot.beacon.script_path,
            &script.integrity
        )
    );
    Ok(())
}

fn audit_verify(path: &std::path::Path) -> ExitCode {
    let text = match std::fs::read(path) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) => {
            eprintln!("tollgate: {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    };
    match tollgate::audit::chain::verify(&text) {
        Ok(lines) => {
            println!("{}: ok, {lines} line(s), chain intact", path.display());
            ExitCode::SUCCESS
        }
        Err(b) => {
            println!(
                "{}: line {}: {}",
                path.display(),
                b.line,
                b.fault.describe()
            );
            ExitCode::FAILURE
        }
    }
}

fn spool_command(command: SpoolCommand) -> ExitCode {
    let result = match command {
        SpoolCommand::Dump { config, dir } => spool_cli::dump(config.as_deref(), dir.as_deref()),
        SpoolCommand::Verify { config, dir } => spool_cli::verify(&config, dir.as_deref()),
        SpoolCommand::Status { config, dir } => spool_cli::status(&config, dir.as_deref()),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tollgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn suppress(path: &std::path::Path, site: &str, mut emails: Vec<String>) -> anyhow::Result<()> {
    // Loaded as `run` loads it: a development key that does not exist yet is created on disk, so these entries
    // match what the gateway will hash (an in-memory throwaway key would make them useless).
    let snapshot =
        config::load(path, LoadMode::Run).map_err(|e| anyhow::anyhow!("invalid config:\n{e}"))?;
    let tenant = snapshot
        .tenants
        .get(site)
        .with_context(|| format!("no tenant with site {site:?}"))?;
    if emails.is_empty() {
        emails = std::io::stdin()
            .lines()
            .map_while(Result::ok)
            .filter(|l| !l.trim().is_empty())
            .collect();
    }
    let key = tenant.keys.active();
    for e in emails {
        println!(
            "{}",
            key.tag(tollgate::event::minimize::normalize(&e).as_bytes())
        );
    }
    Ok(())
}

fn run(path: PathBuf) -> anyhow::Result<()> {
    let snapshot =
        config::load(&path, LoadMode::Run).map_err(|e| anyhow::anyhow!("invalid config:\n{e}"))?;
    if let Some(ca) = &snapshot.dev_ca {
        tracing::info!(ca = %ca.display(), "development CA in use");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let (app, recovery) = App::new(snapshot, Arc::new(SystemClock), Some(path.clone()))?;
        tracing::info!(?recovery, "spool recovered");
        let running = app.start().await?;
        // Handlers are installed before the "listening" line: a signal sent as soon as a supervisor sees
        // it must reach them, not the default action (which would kill the process).
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = signal(SignalKind::hangup())?;
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let addr = |a: Option<std::net::SocketAddr>| a.map_or("off".to_string(), |a| a.to_string());
        // One machine-readable line on stdout: operators and tests read the bound addresses from it.
        println!(
            "tollgate listening public={} redirect={} admin={}",
            running.public_addr,
            addr(running.redirect_addr),
            addr(running.admin_addr)
        );
        let ctx = running.ctx.clone();
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                let ctx = ctx.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    ctx.reload_from(tollgate::reload::Trigger::Signal)
                })
                .await;
            }
        });
        let stopper = running.stopper();
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::info!("shutdown requested: draining");
            let _ = stopper.send(true);
        });
        running.wait().await?;
        tracing::info!("stopped cleanly");
        anyhow::Ok(())
    })
}
