//! The HTTP/1.1 client the `http` and `clickhouse` sinks share: one kept-alive connection (plain TCP, or
//! TLS through rustls with a custom CA bundle or the web PKI roots, optionally presenting a client
//! certificate), reused for every batch and re-opened after any error. A whole exchange — connect, TLS,
//! request, response body — is bounded by the sink's timeout, and a response body by [`MAX_RESPONSE_BYTES`].
//!
//! Failures come back as [`SendError::Retry`] (`Connect` or `Timeout`); what a *response* means is for the
//! sink to classify. Error text names the host and port, never a header value or a body, so secrets sent in
//! headers cannot reach logs.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderMap, HOST};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::{RetryReason, SendError};
use crate::config::{Endpoint, TlsClientFiles};

/// The most of a response body a sink reads; the rest is dropped (and the connection with it).
pub const MAX_RESPONSE_BYTES: usize = 64 << 10;

/// A client that could not be set up (TLS files, server name, request target). Names files, never their
/// content.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot read {0}: {1}")]
    Read(std::path::PathBuf, std::io::ErrorKind),
    #[error("{0} holds no PEM certificate")]
    NoCert(std::path::PathBuf),
    #[error("{0} holds no PEM private key")]
    NoKey(std::path::PathBuf),
    #[error("invalid TLS client setup: {0}")]
    Tls(#[from] rustls::Error),
    #[error("{0:?} is not a valid TLS server name")]
    ServerName(String),
    #[error("the URL's path and query are not a valid request target")]
    Target,
}

/// An answer, with its body cut at [`MAX_RESPONSE_BYTES`].
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Response {
    /// A header's value, if present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// One endpoint, one connection at a time.
pub struct HttpClient {
    host: String,
    port: u16,
    /// `Host` header value.
    authority: String,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    timeout: Duration,
    conn: Option<SendRequest<Full<Bytes>>>,
}

impl HttpClient {
    /// Loads the TLS files (for an `https` endpoint); connects lazily, on the first request.
    pub fn new(
        endpoint: &Endpoint,
        files: &TlsClientFiles,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let tls = match endpoint.https {
            false => None,
            true => {
                let name = ServerName::try_from(endpoint.host.clone())
                    .map_err(|_| ClientError::ServerName(endpoint.host.clone()))?;
                Some((TlsConnector::from(Arc::new(tls_config(files)?)), name))
            }
        };
        let host = if endpoint.host.contains(':') {
            format!("[{}]", endpoint.host)
        } else {
            endpoint.host.clone()
        };
        let default_port = if endpoint.https { 443 } else { 80 };
        let authority = if endpoint.port == default_port {
            host
        } else {
            format!("{host}:{}", endpoint.port)
        };
        Ok(Self {
            host: endpoint.host.clone(),
            port: endpoint.port,
            authority,
            tls,
            timeout,
            conn: None,
        })
    }

    /// `POST target` (path and query) with `headers` and `body`, bounded by the timeout as a whole.
    pub async fn post(
        &mut self,
        target: &Uri,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Response, SendError> {
        let timeout = self.timeout;
        let result = match tokio::time::timeout(timeout, self.exchange(target, headers, body)).await
        {
            Ok(r) => r,
            Err(_) => Err(SendError::retry(
                RetryReason::Timeout,
                format!("no answer from {} in time", self.authority),
            )),
        };
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    async fn exchange(
        &mut self,
        target: &Uri,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Response, SendError> {
        // A kept connection the server closed while idle fails without an answer; one fresh attempt follows.
        if let Some(conn) = self.conn.take().filter(|c| !c.is_closed()) {
            if let Ok(resp) = self.round_trip(conn, target, headers, body.clone()).await {
                return Ok(resp);
            }
        }
        let conn = self.connect().await?;
        self.round_trip(conn, target, headers, body).await
    }

    async fn round_trip(
        &mut self,
        mut conn: SendRequest<Full<Bytes>>,
        target: &Uri,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Response, SendError> {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(target.clone())
            .header(HOST, &self.authority)
            .body(Full::new(body))
            .map_err(|_| SendError::retry(RetryReason::Connect, "cannot build the request"))?;
        req.headers_mut()
            .extend(headers.iter().map(|(k, v)| (k.clone(), v.clone())));
        conn.ready().await.map_err(|e| self.broken(&e))?;
        let resp = conn.send_request(req).await.map_err(|e| self.broken(&e))?;
        let (parts, mut body) = resp.into_parts();
        let mut buf = BytesMut::new();
        let mut whole = true;
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame.map_err(|e| self.broken(&e))?.into_data() else {
                continue;
            };
            let room = MAX_RESPONSE_BYTES - buf.len();
            if data.len() > room {
                buf.extend_from_slice(&data[..room]);
                whole = false;
                break;
            }
            buf.extend_from_slice(&data);
        }
        if whole && !conn.is_closed() {
            self.conn = Some(conn);
        }
        Ok(Response {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: buf.freeze(),
        })
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, SendError> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| self.broken(&e))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => self.handshake(tcp).await,
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| self.broken(&e))?;
                self.handshake(tls).await
            }
        }
    }

    async fn handshake<T>(&self, io: T) -> Result<SendRequest<Full<Bytes>>, SendError>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (send, conn) = http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| self.broken(&e))?;
        let authority = self.authority.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(upstream = %authority, error = %e, "sink connection ended");
            }
        });
        Ok(send)
    }

    fn broken(&self, e: &dyn std::fmt::Display) -> SendError {
        SendError::retry(RetryReason::Connect, format!("{}: {e}", self.authority))
    }
}

/// A request target (path and query) checked once, at build time.
pub fn request_target(target: &str) -> Result<Uri, ClientError> {
    match target.parse::<Uri>() {
        Ok(uri) if target.starts_with('/') => Ok(uri),
        _ => Err(ClientError::Target),
    }
}

/// TLS 1.2 / 1.3 with Tollgate's provider, ALPN `http/1.1`, the CA bundle (else the web PKI roots), and
/// the client certificate when one is configured.
pub fn tls_config(files: &TlsClientFiles) -> Result<rustls::ClientConfig, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    match &files.ca_file {
        Some(path) => {
            for cert in certs(path)? {
                roots.add(cert)?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let builder = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots);
    let mut config = match &files.client_cert {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let pem = read(key)?;
            let key_der =
                PrivateKeyDer::from_pem_slice(&pem).map_err(|_| ClientError::NoKey(key.clone()))?;
            builder.with_client_auth_cert(certs(cert)?, key_der)?
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, ClientError> {
    std::fs::read(path).map_err(|e| ClientError::Read(path.into(), e.kind()))
}

fn certs(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let pem = read(path)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(ClientError::NoCert(path.into()));
    }
    Ok(certs)
}

/// Gzips a request body (the level that favours speed: batches are sent often).
pub fn gzip(raw: &[u8]) -> Bytes {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(raw.len() / 4 + 64),
        flate2::Compression::fast(),
    );
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(raw);
    Bytes::from(enc.finish().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_round_trips() {
        use std::io::Read;
        let raw = b"{\"a\":1}\n{\"b\":2}\n".repeat(100);
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&gzip(&raw)[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, raw);
    }

    #[test]
    fn missing_tls_files_are_named_without_content() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let files = TlsClientFiles {
            ca_file: Some(ca.clone()),
            client_cert: None,
        };
        assert!(matches!(tls_config(&files), Err(ClientError::Read(p, _)) if p == ca));
        std::fs::write(&ca, "not a certificate").unwrap();
        assert!(matches!(tls_config(&files), Err(ClientError::NoCert(_))));
        let web = tls_config(&TlsClientFiles::default()).unwrap();
        assert_eq!(web.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }

    #[test]
    fn request_targets_are_checked_once() {
        assert_eq!(request_target("/ingest?v=1").unwrap().path(), "/ingest");
        for bad in ["/has space", "relative", "http://host/x", ""] {
            assert!(request_target(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn authority_brackets_ipv6_and_drops_default_ports() {
        let ep = |https, host: &str, port| Endpoint {
            https,
            host: host.into(),
            port,
            path: "/".into(),
        };
        let files = TlsClientFiles::default();
        let t = Duration::from_secs(1);
        assert_eq!(
            HttpClient::new(&ep(false, "::1", 8123), &files, t)
                .unwrap()
                .authority,
            "[::1]:8123"
        );
        assert_eq!(
            HttpClient::new(&ep(true, "example.com", 443), &files, t)
                .unwrap()
                .authority,
            "example.com"
        );
        assert_eq!(
            HttpClient::new(&ep(false, "ch", 80), &files, t)
                .unwrap()
                .authority,
            "ch"
        );
    }
}
