//! TLS metrics: what clients sent as SNI (a closed enum, resolved once) and when each configured certificate
//! expires (labelled by config entry: `default` or the entry's first name, never by what a client sent).

use prometheus::{IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry};

use super::hello::HelloSni;
use super::sni::{Pick, SniResolver};
use super::CertExpiry;

/// What a completed handshake's SNI was, as counted by `tollgate_tls_sni_total{kind}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SniKind {
    /// A configured name (exact or wildcard) picked its certificate.
    Matched,
    /// A name no entry covers: the default certificate answered.
    Unknown,
    /// No SNI (or a ClientHello the counter could not read).
    Missing,
    /// An IP literal as SNI: served like no SNI, counted here instead of a log line per handshake.
    IpLiteral,
}

impl SniKind {
    pub const ALL: [SniKind; 4] = [
        SniKind::Matched,
        SniKind::Unknown,
        SniKind::Missing,
        SniKind::IpLiteral,
    ];

    pub fn label(self) -> &'static str {
        match self {
            SniKind::Matched => "matched",
            SniKind::Unknown => "unknown",
            SniKind::Missing => "missing",
            SniKind::IpLiteral => "ip_literal",
        }
    }

    /// From what rustls accepted as SNI (`server_name`) and, when it accepted none, the tapped ClientHello.
    pub fn classify(server_name: Option<&str>, resolver: &SniResolver, hello: &[u8]) -> SniKind {
        match (server_name, resolver.pick(server_name)) {
            (Some(_), Pick::Exact(_) | Pick::Wildcard(_)) => SniKind::Matched,
            (Some(_), Pick::Default) => SniKind::Unknown,
            (None, _) => match super::hello::hello_sni(hello) {
                HelloSni::IpLiteral => SniKind::IpLiteral,
                HelloSni::Missing | HelloSni::Name | HelloSni::Unparsed => SniKind::Missing,
            },
        }
    }
}

pub struct TlsMetrics {
    /// `tollgate_tls_sni_total{kind}`, indexed like [`SniKind::ALL`].
    sni: [IntCounter; 4],
    /// `tollgate_tls_certificate_expiry_timestamp_seconds{name}`.
    expiry: IntGaugeVec,
}

impl TlsMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let sni = IntCounterVec::new(
            Opts::new(
                "tollgate_tls_sni_total",
                "Completed TLS handshakes by what the client sent as SNI.",
            ),
            &["kind"],
        )?;
        registry.register(Box::new(sni.clone()))?;
        let expiry = IntGaugeVec::new(
            Opts::new(
                "tollgate_tls_certificate_expiry_timestamp_seconds",
                "notAfter of each configured server certificate, by config entry.",
            ),
            &["name"],
        )?;
        registry.register(Box::new(expiry.clone()))?;
        Ok(Self {
            sni: SniKind::ALL.map(|k| sni.with_label_values(&[k.label()])),
            expiry,
        })
    }

    pub fn count_sni(&self, kind: SniKind) {
        self.sni[kind as usize].inc();
    }

    /// Replaces every expiry series with `expiry` (an entry removed from the config disappears).
    pub fn publish_expiry(&self, expiry: &[CertExpiry]) {
        self.expiry.reset();
        for e in expiry {
            self.expiry.with_label_values(&[&e.name]).set(e.not_after);
        }
    }
}
