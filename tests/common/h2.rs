//! Hand-written HTTP/2 over real TLS: frames written byte by byte, for clients no library would be (one that
//! only pings, one that resets every stream it opens).

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, WriteHalf};
use tokio::task::JoinHandle;

use super::Fixture;

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;

/// One HTTP/2 frame on the connection (stream 0): 9-byte header (24-bit length, type, flags, stream) and payload.
pub fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
    stream_frame(kind, flags, 0, payload)
}

/// One HTTP/2 frame on `stream`.
pub fn stream_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = len.to_be_bytes()[1..].to_vec();
    f.extend([kind, flags]);
    f.extend((stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// What a hand-written HTTP/2 client saw until the server closed the connection.
#[derive(Debug, Default)]
pub struct Seen {
    pub ping_acks: usize,
    pub goaway: bool,
    /// The GOAWAY's error code (`0xb` ENHANCE_YOUR_CALM, …).
    pub goaway_code: Option<u32>,
    /// RST_STREAM frames from the server (a refused or cancelled stream).
    pub resets: usize,
    pub frames: usize,
}

/// Reads frames until EOF or a read error (the server closed); counts PING ACKs and notes a GOAWAY.
pub async fn read_frames(mut rd: impl AsyncRead + Unpin) -> Seen {
    let mut seen = Seen::default();
    let mut head = [0u8; 9];
    while rd.read_exact(&mut head).await.is_ok() {
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0u8; len];
        if rd.read_exact(&mut payload).await.is_err() {
            break;
        }
        seen.frames += 1;
        match (head[3], head[4] & ACK) {
            (PING, ACK) => seen.ping_acks += 1,
            (RST_STREAM, _) => seen.resets += 1,
            (GOAWAY, _) => {
                seen.goaway = true;
                if payload.len() >= 8 {
                    let code = u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]);
                    seen.goaway_code = Some(code);
                }
            }
            _ => {}
        }
    }
    seen
}

pub type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// A TLS 1.3 connection to `addr` (SNI `localhost`) offering only `alpn`.
pub async fn tls(fx: &Fixture, addr: SocketAddr, alpn: &[u8]) -> Tls {
    let cfg = fx.client_config(&[&rustls::version::TLS13], &[alpn]);
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake")
}

/// An HTTP/2 connection to `addr` that has sent its preface and an empty SETTINGS: the frames the server sends
/// are read in the background until it closes, and the write half is the test's.
pub async fn open(fx: &Fixture, addr: SocketAddr) -> (JoinHandle<Seen>, WriteHalf<Tls>) {
    let conn = tls(fx, addr, b"h2").await;
    let (rd, mut wr) = tokio::io::split(conn);
    let reader = tokio::spawn(read_frames(rd));
    wr.write_all(PREFACE).await.unwrap();
    wr.write_all(&frame(SETTINGS, 0, &[])).await.unwrap();
    (reader, wr)
}
