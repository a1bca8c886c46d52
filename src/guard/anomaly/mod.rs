//! anomaly: CRS-style anomaly scoring of a beacon's string values, its user agent and a few protocol facts.
//! Guarantees: every string value is matched after normalisation (URL-decoding until stable, at most three
//! rounds; HTML entities, named common ones and numeric; full-width ASCII folded to ASCII; `/*…*/` comments
//! and the `/*!` version marker replaced by a space; ASCII case-insensitive); matching is linear time
//! (`regex::bytes::RegexSet` and `aho-corasick`, no backtracking); each rule counts once per field; a rule
//! above the configured paranoia level or in an `Off` family is not even compiled. Scores follow the OWASP
//! Core Rule Set: critical 5, error 4, warning 3, notice 2, inbound threshold 5 by default. Only hits in
//! `Enforce` families count towards [`Verdict::blocked`]; `Detect` families are scored and reported only.
//! Exclusions (tenant, field prefix, family) drop hits as CRS rule exclusions do. The engine is pure: it is
//! compiled once per config snapshot and never allocates for a clean value without special characters.
//!
//! Unicode: `unicode-normalization` is not in `Cargo.lock`, so full NFKC is *not* applied; only the full-width
//! ASCII block (U+FF01–U+FF5E) and the ideographic space are folded.

mod normalize;
mod rules;
mod score;
#[cfg(test)]
mod tests;

use aho_corasick::AhoCorasick;
use regex::bytes::RegexSet;

pub(crate) use normalize::needs_scan;
pub use normalize::normalize;

/// A rule family; each can be set to [`Mode::Enforce`], [`Mode::Detect`] or [`Mode::Off`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// Content type, abnormal headers, duplicate JSON keys, schema errors, NUL bytes (CRS 920).
    Protocol,
    /// SQL injection (CRS 942).
    Sqli,
    /// Cross-site scripting (CRS 941).
    Xss,
    /// Path traversal, OS file access, stream wrappers (CRS 930).
    Traversal,
    /// OS command injection (CRS 932).
    CommandInjection,
    /// Server-side template / expression-language injection.
    TemplateInjection,
    /// JNDI lookups (log4shell, CRS 944150).
    Jndi,
    /// Security-scanner user agents (CRS 913).
    Scanner,
}

impl Family {
    pub const ALL: [Family; 8] = [
        Family::Protocol,
        Family::Sqli,
        Family::Xss,
        Family::Traversal,
        Family::CommandInjection,
        Family::TemplateInjection,
        Family::Jndi,
        Family::Scanner,
    ];

    /// The metric label (`family="sqli"`).
    pub fn label(self) -> &'static str {
        match self {
            Family::Protocol => "protocol",
            Family::Sqli => "sqli",
            Family::Xss => "xss",
            Family::Traversal => "traversal",
            Family::CommandInjection => "cmdi",
            Family::TemplateInjection => "ssti",
            Family::Jndi => "jndi",
            Family::Scanner => "scanner",
        }
    }

    /// Inverse of [`Family::label`].
    pub fn from_label(label: &str) -> Option<Family> {
        Family::ALL.into_iter().find(|f| f.label() == label)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What a family's hits do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Scored and counted towards blocking.
    #[default]
    Enforce,
    /// Scored and reported, never blocks.
    Detect,
    /// Not compiled, never reported.
    Off,
}

/// CRS severities and their anomaly scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Notice,
    Warning,
    Error,
    Critical,
}

impl Severity {
    pub fn score(self) -> u32 {
        match self {
            Severity::Critical => 5,
            Severity::Error => 4,
            Severity::Warning => 3,
            Severity::Notice => 2,
        }
    }
}

/// One mode per family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FamilyModes([Mode; Family::ALL.len()]);

impl FamilyModes {
    pub fn get(&self, family: Family) -> Mode {
        self.0[family.index()]
    }

    pub fn set(&mut self, family: Family, mode: Mode) {
        self.0[family.index()] = mode;
    }

    /// `self` with `family` set to `mode`.
    pub fn with(mut self, family: Family, mode: Mode) -> Self {
        self.set(family, mode);
        self
    }
}

/// Drops hits the way a CRS rule exclusion does: for one tenant (or all), for fields under a path prefix
/// (`""` = every field; `"cart.items"` covers `cart.items[0].name` but not `cart.items_count`), for one
/// family (or all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exclusion {
    pub tenant: Option<String>,
    pub field_prefix: String,
    pub family: Option<Family>,
}

/// `[guard.anomaly]` in its runtime form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnomalyConfig {
    /// Inbound anomaly threshold; a request whose enforced score reaches it is blocked. CRS default 5.
    pub threshold: u32,
    /// 1–4; rules of a higher paranoia level are off. CRS default 1.
    pub paranoia: u8,
    pub families: FamilyModes,
    pub exclusions: Vec<Exclusion>,
    /// Media types (before `;`, lower case) a body may be sent as.
    pub allowed_content_types: Vec<String>,
}

impl Default for AnomalyConfig {
    fn default() -> Self {
        AnomalyConfig {
            threshold: 5,
            paranoia: 1,
            families: FamilyModes::default(),
            exclusions: Vec::new(),
            allowed_content_types: vec!["application/json".into(), "text/plain".into()],
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AnomalyError {
    #[error("paranoia: {0} is not a paranoia level (1-4)")]
    Paranoia(u8),
    #[error("threshold: must be at least 1")]
    Threshold,
    #[error("exclusions[{0}]: an exclusion for every tenant, field and family disables the engine; use modes")]
    ExcludesEverything(usize),
}

/// One matched rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub family: Family,
    /// CRS-style rule id (942100, …).
    pub rule_id: u32,
    pub severity: Severity,
    /// Field path (`cart.items[0].name`), `request.user_agent`, or `request.*` for protocol facts.
    pub field: String,
}

/// The engine's answer for one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Sum over every hit, enforced and detect-only.
    pub score: u32,
    /// Sum over hits in enforced families; `blocked` compares this with the threshold.
    pub enforced_score: u32,
    /// At most [`MAX_HITS`]; the scores count every hit.
    pub hits: Vec<Hit>,
    pub blocked: bool,
}

/// Bound on [`Verdict::hits`].
pub const MAX_HITS: usize = 32;

/// Facts the HTTP and decode stages know about a request; `Default` = nothing abnormal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProtocolFacts<'a> {
    /// The `Content-Type` header as sent, `None` when absent.
    pub content_type: Option<&'a str>,
    /// Path of the first duplicated JSON key, if any.
    pub duplicate_key: Option<&'a str>,
    /// Schema v1 errors found by validation.
    pub schema_errors: u32,
    /// Headers the HTTP layer found abnormal (control bytes, repeated singletons, oversized).
    pub abnormal_headers: u32,
    /// Both `Content-Length` and `Transfer-Encoding` (request smuggling).
    pub conflicting_lengths: bool,
}

/// The compiled engine; build once per config snapshot.
#[derive(Debug)]
pub struct Engine {
    threshold: u32,
    paranoia: u8,
    families: FamilyModes,
    exclusions: Vec<Exclusion>,
    allowed_content_types: Vec<String>,
    /// Compiled payload rules and, index for index, their metadata.
    set: RegexSet,
    set_rules: Vec<&'static rules::Rule>,
    scanners: Option<AhoCorasick>,
    /// The same needles, case-sensitive, for a lower-cased user agent: the fast "any match?" check.
    scanner_fast: Option<AhoCorasick>,
    scanner_rules: Vec<&'static rules::Scanner>,
}
