//! What a client sent as SNI, for counting, not logging. rustls treats an IP literal in SNI like no SNI (and
//! logs a warning per handshake, silenced in `main`); to count the two apart, [`Tap`] keeps a copy of the bytes
//! read during the handshake — at most [`MAX_TAP_BYTES`], dropped as soon as the handshake ends — and
//! [`hello_sni`] reads the `server_name` extension out of the first record. Guarantees: the parser reads
//! untrusted bytes with bounds checks only (no panic, no allocation), and anything it cannot follow is
//! [`HelloSni::Unparsed`], never a guess.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// One TLS record header plus the largest plaintext record: a ClientHello that fits one record fits here.
pub const MAX_TAP_BYTES: usize = 5 + (1 << 14);

/// The `server_name` extension of a ClientHello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelloSni {
    /// No `server_name` extension.
    Missing,
    /// A `host_name` that is an IPv4 or IPv6 literal (RFC 6066 forbids it; some clients send it).
    IpLiteral,
    /// Any other `host_name`.
    Name,
    /// Not a ClientHello in one record, or cut short.
    Unparsed,
}

/// Reads the `server_name` extension from the first TLS record in `bytes`.
pub fn hello_sni(bytes: &[u8]) -> HelloSni {
    parse(bytes).unwrap_or(HelloSni::Unparsed)
}

fn parse(bytes: &[u8]) -> Option<HelloSni> {
    let mut rec = Cursor(bytes);
    (rec.u8()? == 22).then_some(())?; // handshake record
    rec.take(2)?;
    let mut hs = Cursor(rec.vec16()?);
    (hs.u8()? == 1).then_some(())?; // ClientHello
    let len = hs.take(3)?;
    let len = usize::from(len[0]) << 16 | usize::from(len[1]) << 8 | usize::from(len[2]);
    let mut hello = Cursor(hs.take(len)?);
    hello.take(2 + 32)?; // legacy_version, random
    hello.vec8()?; // session id
    hello.vec16()?; // cipher suites
    hello.vec8()?; // compression methods
    if hello.0.is_empty() {
        return Some(HelloSni::Missing); // no extensions at all
    }
    let mut exts = Cursor(hello.vec16()?);
    while !exts.0.is_empty() {
        let kind = exts.u16()?;
        let body = exts.vec16()?;
        if kind == 0 {
            let mut list = Cursor(Cursor(body).vec16()?);
            (list.u8()? == 0).then_some(())?; // host_name
            let name = std::str::from_utf8(list.vec16()?).ok()?;
            return Some(match name.parse::<std::net::IpAddr>() {
                Ok(_) => HelloSni::IpLiteral,
                Err(_) => HelloSni::Name,
            });
        }
    }
    Some(HelloSni::Missing)
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = tail;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(n.into())
    }
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(n.into())
    }
}

/// Passes bytes through, keeping a copy of what was read (at most [`MAX_TAP_BYTES`]) until [`Tap::finish`].
pub struct Tap<IO> {
    inner: IO,
    seen: Option<Vec<u8>>,
}

impl<IO> Tap<IO> {
    pub fn new(inner: IO) -> Self {
        Self {
            inner,
            seen: Some(Vec::new()),
        }
    }

    /// The bytes kept so far; from now on nothing more is kept.
    pub fn finish(&mut self) -> Vec<u8> {
        self.seen.take().unwrap_or_default()
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Tap<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let (Poll::Ready(Ok(())), Some(seen)) = (&r, this.seen.as_mut()) {
            let fresh = &buf.filled()[before..];
            let room = MAX_TAP_BYTES.saturating_sub(seen.len());
            seen.extend_from_slice(&fresh[..fresh.len().min(room)]);
        }
        r
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Tap<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first record a real rustls client writes for `name` (None: no SNI).
    fn client_hello(name: rustls::pki_types::ServerName<'static>, sni: bool) -> Vec<u8> {
        let mut cfg = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        cfg.enable_sni = sni;
        let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(cfg), name).unwrap();
        let mut out = Vec::new();
        conn.write_tls(&mut out).unwrap();
        out
    }

    #[test]
    fn reads_the_server_name_of_real_client_hellos() {
        use rustls::pki_types::ServerName;
        let dns = ServerName::try_from("track.shop.example").unwrap();
        assert_eq!(hello_sni(&client_hello(dns.clone(), true)), HelloSni::Name);
        assert_eq!(hello_sni(&client_hello(dns, false)), HelloSni::Missing);
        // rustls itself never sends an IP as SNI: write one by hand into a real hello
        let ip = ServerName::try_from("127.0.0.1").unwrap();
        assert_eq!(hello_sni(&client_hello(ip, true)), HelloSni::Missing);
        let mut forged = client_hello(ServerName::try_from("abcdefghi").unwrap(), true);
        let at = forged.windows(9).position(|w| w == b"abcdefghi").unwrap();
        forged[at..at + 9].copy_from_slice(b"127.0.0.1");
        assert_eq!(hello_sni(&forged), HelloSni::IpLiteral);
    }

    #[test]
    fn anything_cut_short_or_foreign_is_unparsed() {
        let full = client_hello(
            rustls::pki_types::ServerName::try_from("a.example").unwrap(),
            true,
        );
        for n in [0, 1, 5, 9, 40, full.len() - 1] {
            assert_eq!(hello_sni(&full[..n]), HelloSni::Unparsed, "cut at {n}");
        }
        assert_eq!(hello_sni(b"GET / HTTP/1.1\r\n\r\n"), HelloSni::Unparsed);
    }

    #[tokio::test]
    async fn the_tap_keeps_a_bounded_copy_until_taken() {
        use tokio::io::AsyncReadExt;
        let data = vec![7u8; MAX_TAP_BYTES + 100];
        let mut tap = Tap::new(&data[..]);
        let mut sink = Vec::new();
        tap.read_to_end(&mut sink).await.unwrap();
        assert_eq!(sink.len(), data.len());
        assert_eq!(tap.finish().len(), MAX_TAP_BYTES);
        assert!(tap.finish().is_empty());
    }
}
