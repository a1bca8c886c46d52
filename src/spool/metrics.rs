//! Spool metrics, registered into a registry that is passed in.

use prometheus::{exponential_buckets, Histogram, HistogramOpts, IntCounter, IntGauge, Registry};

/// Counters of the spool writer and of recovery.
#[derive(Debug, Clone)]
pub struct SpoolMetrics {
    /// `tollgate_spool_commits_total`: group commits (one write + one fsync each).
    pub commits: IntCounter,
    /// `tollgate_spool_records_total`: records acknowledged as durable.
    pub records: IntCounter,
    /// `tollgate_spool_bytes`: current total bytes of all segments.
    pub bytes: IntGauge,
    /// `tollgate_spool_commit_seconds`: duration of write + fsync of one commit.
    pub commit_seconds: Histogram,
    /// `tollgate_spool_full_total`: appends refused because `max_bytes` would be exceeded.
    pub full: IntCounter,
    /// `tollgate_spool_recovered_records_total`: complete records found at startup.
    pub recovered_records: IntCounter,
    /// `tollgate_spool_torn_tails_total`: torn tails truncated from the last segment at startup.
    pub torn_tails: IntCounter,
    /// `tollgate_spool_truncated_bytes_total`: bytes removed by those truncations.
    pub truncated_bytes: IntCounter,
    /// `tollgate_spool_corrupt_records_total`: records lost to damage found at startup (skipped, quarantined).
    pub corrupt_records: IntCounter,
    /// `tollgate_spool_segments`: live segment files.
    pub segments: IntGauge,
    /// `tollgate_spool_segments_deleted_total`: segments deleted behind every consumer (or expired).
    pub segments_deleted: IntCounter,
    /// `tollgate_spool_expired_records_total`: records deleted by `max_age` before every consumer read them.
    pub expired_records: IntCounter,
}

impl SpoolMetrics {
    /// Creates the metrics and registers them into `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let commit_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "tollgate_spool_commit_seconds",
                "Duration of one spool group commit (write + fsync).",
            )
            .buckets(exponential_buckets(0.000_1, 2.0, 16)?),
        )?;
        let metrics = Self {
            commits: counter(
                "tollgate_spool_commits_total",
                "Spool group commits (write + fsync).",
            )?,
            records: counter(
                "tollgate_spool_records_total",
                "Records durably written to the spool.",
            )?,
            bytes: IntGauge::new(
                "tollgate_spool_bytes",
                "Current total bytes of all spool segments.",
            )?,
            commit_seconds,
            full: counter(
                "tollgate_spool_full_total",
                "Appends refused because the spool is full.",
            )?,
            recovered_records: counter(
                "tollgate_spool_recovered_records_total",
                "Complete records found in the spool at startup.",
            )?,
            torn_tails: counter(
                "tollgate_spool_torn_tails_total",
                "Torn or corrupt segment tails truncated at startup.",
            )?,
            truncated_bytes: counter(
                "tollgate_spool_truncated_bytes_total",
                "Bytes truncated from torn or corrupt segment tails at startup.",
            )?,
            corrupt_records: counter(
                "tollgate_spool_corrupt_records_total",
                "Spool records lost to damage found at startup (skipped and quarantined).",
            )?,
            segments: IntGauge::new("tollgate_spool_segments", "Live spool segment files.")?,
            segments_deleted: counter(
                "tollgate_spool_segments_deleted_total",
                "Spool segments deleted once every consumer passed them, or expired.",
            )?,
            expired_records: counter(
                "tollgate_spool_expired_records_total",
                "Spool records expired by max_age before every consumer read them.",
            )?,
        };
        registry.register(Box::new(metrics.commits.clone()))?;
        registry.register(Box::new(metrics.corrupt_records.clone()))?;
        registry.register(Box::new(metrics.segments.clone()))?;
        registry.register(Box::new(metrics.segments_deleted.clone()))?;
        registry.register(Box::new(metrics.expired_records.clone()))?;
        registry.register(Box::new(metrics.records.clone()))?;
        registry.register(Box::new(metrics.bytes.clone()))?;
        registry.register(Box::new(metrics.commit_seconds.clone()))?;
        registry.register(Box::new(metrics.full.clone()))?;
        registry.register(Box::new(metrics.recovered_records.clone()))?;
        registry.register(Box::new(metrics.torn_tails.clone()))?;
        registry.register(Box::new(metrics.truncated_bytes.clone()))?;
        Ok(metrics)
    }
}

fn counter(name: &str, help: &str) -> prometheus::Result<IntCounter> {
    IntCounter::new(name, help)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_every_name_once() {
        let registry = Registry::new();
        let metrics = SpoolMetrics::register(&registry).unwrap();
        metrics.commit_seconds.observe(0.001);
        let mut names: Vec<_> = registry
            .gather()
            .iter()
            .map(|f| f.name().to_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "tollgate_spool_bytes",
                "tollgate_spool_commit_seconds",
                "tollgate_spool_commits_total",
                "tollgate_spool_corrupt_records_total",
                "tollgate_spool_expired_records_total",
                "tollgate_spool_full_total",
                "tollgate_spool_records_total",
                "tollgate_spool_recovered_records_total",
                "tollgate_spool_segments",
                "tollgate_spool_segments_deleted_total",
                "tollgate_spool_torn_tails_total",
                "tollgate_spool_truncated_bytes_total",
            ]
        );
        assert!(
            SpoolMetrics::register(&registry).is_err(),
            "double registration must fail"
        );
    }
}
