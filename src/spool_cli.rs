//! `tollgate spool dump | verify | status`: read-only views of a spool directory, decrypted with the keys of
//! a config file (loaded as `tollgate check` loads it: nothing is written).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use tollgate::clock::{Clock, SystemClock};
use tollgate::config::{self, LoadMode, Snapshot};
use tollgate::spool::{self, SpoolKeys};

fn load(config: &Path) -> anyhow::Result<Snapshot> {
    config::load(config, LoadMode::Check).map_err(|e| anyhow::anyhow!("invalid config:\n{e}"))
}

/// The spool directory and keys to use: `--dir` overrides the config's directory.
fn target(
    config: Option<&Path>,
    dir: Option<&Path>,
) -> anyhow::Result<(PathBuf, Option<SpoolKeys>, Vec<String>)> {
    match (config, dir) {
        (Some(c), dir) => {
            let snap = load(c)?;
            let dir = dir.map_or(snap.spool.dir.clone(), Path::to_path_buf);
            Ok((
                dir,
                Some(snap.spool_keys.clone()),
                snap.spool.consumers.clone(),
            ))
        }
        (None, Some(dir)) => Ok((dir.to_path_buf(), None, Vec::new())),
        (None, None) => anyhow::bail!("give -c FILE (and optionally --dir DIR)"),
    }
}

pub fn dump(config: Option<&Path>, dir: Option<&Path>) -> anyhow::Result<ExitCode> {
    let (dir, keys, _) = target(config, dir)?;
    let records = spool::read_all(&dir, keys.as_ref())
        .with_context(|| format!("reading spool {}", dir.display()))?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for r in records {
        out.write_all(&r.payload)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

pub fn verify(config: &Path, dir: Option<&Path>) -> anyhow::Result<ExitCode> {
    let (dir, keys, _) = target(Some(config), dir)?;
    let report = spool::verify(&dir, keys.as_ref())?;
    let mut records = 0;
    for s in &report.segments {
        records += s.records;
        for d in &s.damage {
            println!(
                "segment {}: damaged bytes {}..{} ({}), about {} record(s) unreadable",
                s.seg_no,
                d.start,
                d.end,
                d.kind.as_str(),
                d.lost
            );
        }
        if let Some(at) = s.torn_tail {
            println!(
                "segment {}: torn tail from byte {at} to {} (cut at the next start)",
                s.seg_no, s.len
            );
        }
    }
    for u in &report.unreadable {
        println!("{u}");
    }
    let verdict = if report.is_clean() {
        "clean"
    } else {
        "DAMAGED"
    };
    println!(
        "{}: {} segment(s), {records} intact record(s): {verdict}",
        dir.display(),
        report.segments.len() + report.unreadable.len()
    );
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub fn status(config: &Path, dir: Option<&Path>) -> anyhow::Result<ExitCode> {
    let (dir, keys, consumers) = target(Some(config), dir)?;
    let st = spool::status(&dir, keys.as_ref(), &consumers, SystemClock.now_ms())?;
    println!("spool {}", dir.display());
    println!("segments {}", st.segments);
    println!("bytes {}", st.bytes);
    println!("records {}", st.records);
    match st.oldest_record_age_seconds {
        Some(s) => println!("oldest_record_age_seconds {s}"),
        None => println!("oldest_record_age_seconds -"),
    }
    for c in &st.consumers {
        println!(
            "consumer {} cursor {}:{} lag_records {} lag_bytes {} lag_seconds {}",
            c.name, c.cursor.seg, c.cursor.offset, c.lag_records, c.lag_bytes, c.lag_seconds
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `tollgate deadletter replay -c FILE --sink NAME`.
pub fn replay(config: &Path, sink: &str) -> anyhow::Result<()> {
    let snap = load(config)?;
    let cfg = snap
        .sinks
        .iter()
        .find(|s| s.name == sink)
        .with_context(|| format!("no sink named {sink:?} in {}", config.display()))?
        .clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let letters = tollgate::sink::deadletter::DeadLetters::new(&snap.data_dir, sink);
    let done = rt.block_on(async {
        let mut built = tollgate::sink::build::build(&cfg).await?;
        let done =
            tollgate::sink::deadletter::replay(&letters, &snap.spool_keys, built.as_mut()).await;
        built.close().await;
        done.map_err(|e| anyhow::anyhow!(e))
    })?;
    println!(
        "sink {sink}: {} batch(es), {} event(s) delivered; {} still refused (kept in {})",
        done.batches,
        done.records,
        done.refused,
        letters.dir().display()
    );
    Ok(())
}
