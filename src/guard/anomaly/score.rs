//! Compiling an [`AnomalyConfig`] into an [`Engine`] and scoring a request with it.

use aho_corasick::{AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use regex::bytes::RegexSetBuilder;

use super::normalize::{needs_scan, normalize, ua_needs_scan};
use super::rules::{self, Rule};
use super::{
    AnomalyConfig, AnomalyError, Engine, Family, Hit, Mode, ProtocolFacts, Severity, Verdict,
    MAX_HITS,
};

/// Field names of hits that do not come from a JSON value.
pub const FIELD_USER_AGENT: &str = "request.user_agent";
pub const FIELD_CONTENT_TYPE: &str = "request.content_type";
pub const FIELD_HEADERS: &str = "request.headers";
pub const FIELD_BODY: &str = "request.body";

impl Engine {
    /// Validates `config` and compiles the rules it leaves on.
    pub fn new(config: &AnomalyConfig) -> Result<Engine, AnomalyError> {
        if !(1..=4).contains(&config.paranoia) {
            return Err(AnomalyError::Paranoia(config.paranoia));
        }
        if config.threshold == 0 {
            return Err(AnomalyError::Threshold);
        }
        if let Some(i) = config
            .exclusions
            .iter()
            .position(|e| e.tenant.is_none() && e.field_prefix.is_empty() && e.family.is_none())
        {
            return Err(AnomalyError::ExcludesEverything(i));
        }
        let on = |family: Family, paranoia: u8| {
            config.families.get(family) != Mode::Off && paranoia <= config.paranoia
        };
        let set_rules: Vec<&'static Rule> = rules::RULES
            .iter()
            .filter(|r| on(r.family, r.paranoia))
            .collect();
        let set = RegexSetBuilder::new(set_rules.iter().map(|r| r.pattern))
            .case_insensitive(true)
            .unicode(false)
            .size_limit(64 << 20)
            .dfa_size_limit(16 << 20)
            .build()
            .expect("built-in anomaly rules compile");
        let scanner_rules: Vec<&'static rules::Scanner> = rules::SCANNERS
            .iter()
            .filter(|s| on(Family::Scanner, s.paranoia))
            .collect();
        let scanners = (!scanner_rules.is_empty()).then(|| {
            // A full DFA: the list is small, and every request's user agent is searched.
            AhoCorasickBuilder::new()
                .ascii_case_insensitive(true)
                .kind(Some(AhoCorasickKind::DFA))
                .match_kind(MatchKind::Standard)
                .build(scanner_rules.iter().map(|s| s.needle))
                .expect("built-in scanner list compiles")
        });
        // Needles are lower case (a unit test holds them to it).
        let scanner_fast = (!scanner_rules.is_empty()).then(|| {
            AhoCorasickBuilder::new()
                .match_kind(MatchKind::LeftmostFirst)
                .build(scanner_rules.iter().map(|s| s.needle))
                .expect("built-in scanner list compiles")
        });
        Ok(Engine {
            scanner_fast,
            threshold: config.threshold,
            paranoia: config.paranoia,
            families: config.families,
            exclusions: config.exclusions.clone(),
            allowed_content_types: config.allowed_content_types.clone(),
            set,
            set_rules,
            scanners,
            scanner_rules,
        })
    }

    pub fn threshold(&self) -> u32 {
        self.threshold
    }

    /// The mode `family` runs in.
    pub fn mode(&self, family: Family) -> Mode {
        self.families.get(family)
    }

    /// Scores string values (field path, value) and the user agent, with no protocol facts.
    pub fn score_strings<'a>(
        &self,
        tenant: &str,
        values: impl Iterator<Item = (&'a str, &'a str)>,
        user_agent: Option<&str>,
    ) -> Verdict {
        self.score(tenant, &ProtocolFacts::default(), values, user_agent)
    }

    /// Scores a whole request: protocol facts, every string value and the user agent.
    pub fn score<'a>(
        &self,
        tenant: &str,
        facts: &ProtocolFacts<'_>,
        values: impl Iterator<Item = (&'a str, &'a str)>,
        user_agent: Option<&str>,
    ) -> Verdict {
        let mut acc = Acc {
            engine: self,
            tenant,
            verdict: Verdict::default(),
        };
        self.protocol(facts, user_agent, &mut acc);
        for (field, value) in values {
            self.value(field, value, &mut acc);
        }
        if let Some(ua) = user_agent {
            self.user_agent(ua, &mut acc);
        }
        let mut v = acc.verdict;
        v.blocked = v.enforced_score >= self.threshold;
        v
    }

    fn value(&self, field: &str, value: &str, acc: &mut Acc<'_>) {
        if !needs_scan(value.as_bytes()) {
            return;
        }
        let norm = normalize(value);
        if !self.set.is_match(&norm) {
            return;
        }
        for i in self.set.matches(&norm).iter() {
            let r = self.set_rules[i];
            acc.hit(r.family, r.id, r.severity, field);
        }
    }

    fn user_agent(&self, ua: &str, acc: &mut Acc<'_>) {
        if let Some(ac) = self
            .scanners
            .as_ref()
            .filter(|_| self.scanner_may_match(ua))
        {
            // One hit per rule id: several needles share one.
            let mut seen: u64 = 0;
            for m in ac.find_overlapping_iter(ua) {
                let s = self.scanner_rules[m.pattern().as_usize()];
                let bit = 1u64 << (s.id % 64);
                if seen & bit == 0 {
                    seen |= bit;
                    acc.hit(Family::Scanner, s.id, s.severity, FIELD_USER_AGENT);
                }
            }
        }
        if ua_needs_scan(ua.as_bytes()) {
            self.value(FIELD_USER_AGENT, ua, acc);
        }
    }

    /// Whether any scanner needle occurs in `ua`, case-insensitively: the user agent lower-cased (on the
    /// stack up to 512 bytes) and searched case-sensitively, which lets `aho-corasick` use its SIMD prefilter
    /// (a browser's user agent then costs a few dozen nanoseconds). The overlapping search that names the
    /// rules runs only after this says yes.
    fn scanner_may_match(&self, ua: &str) -> bool {
        let Some(fast) = &self.scanner_fast else {
            return false;
        };
        let mut buf = [0u8; 512];
        match buf.get_mut(..ua.len()) {
            Some(lower) => {
                lower.copy_from_slice(ua.as_bytes());
                lower.make_ascii_lowercase();
                fast.is_match(&*lower)
            }
            None => fast.is_match(&ua.to_ascii_lowercase()),
        }
    }

    fn protocol(&self, facts: &ProtocolFacts<'_>, user_agent: Option<&str>, acc: &mut Acc<'_>) {
        if self.families.get(Family::Protocol) == Mode::Off {
            return;
        }
        let p = Family::Protocol;
        if let Some(ct) = facts.content_type {
            let media = ct.split(';').next().unwrap_or("").trim();
            if !self
                .allowed_content_types
                .iter()
                .any(|a| a.eq_ignore_ascii_case(media))
            {
                acc.hit(p, 920420, Severity::Critical, FIELD_CONTENT_TYPE);
            }
        }
        if facts.conflicting_lengths {
            acc.hit(p, 920180, Severity::Critical, FIELD_HEADERS);
        }
        if facts.abnormal_headers > 0 {
            acc.hit(p, 920270, Severity::Warning, FIELD_HEADERS);
        }
        if let Some(path) = facts.duplicate_key {
            acc.hit(p, 920700, Severity::Error, path);
        }
        if facts.schema_errors > 0 {
            acc.hit(p, 920710, Severity::Warning, FIELD_BODY);
        }
        if user_agent.is_none() && self.paranoia >= 2 {
            acc.hit(p, 920320, Severity::Notice, FIELD_USER_AGENT);
        }
    }

    fn excluded(&self, tenant: &str, family: Family, field: &str) -> bool {
        self.exclusions.iter().any(|e| {
            e.tenant.as_deref().is_none_or(|t| t == tenant)
                && e.family.is_none_or(|f| f == family)
                && under(field, &e.field_prefix)
        })
    }
}

/// `field` is `prefix` or below it (`prefix.x`, `prefix[0]`).
fn under(field: &str, prefix: &str) -> bool {
    match field.strip_prefix(prefix) {
        Some(rest) => prefix.is_empty() || rest.is_empty() || rest.starts_with(['.', '[']),
        None => false,
    }
}

struct Acc<'e> {
    engine: &'e Engine,
    tenant: &'e str,
    verdict: Verdict,
}

impl Acc<'_> {
    fn hit(&mut self, family: Family, rule_id: u32, severity: Severity, field: &str) {
        let mode = self.engine.families.get(family);
        if mode == Mode::Off || self.engine.excluded(self.tenant, family, field) {
            return;
        }
        let v = &mut self.verdict;
        v.score = v.score.saturating_add(severity.score());
        if mode == Mode::Enforce {
            v.enforced_score = v.enforced_score.saturating_add(severity.score());
        }
        if v.hits.len() < MAX_HITS {
            v.hits.push(Hit {
                family,
                rule_id,
                severity,
                field: field.to_owned(),
            });
        }
    }
}
