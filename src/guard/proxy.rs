//! proxy: the PROXY protocol v2 header a load balancer puts in front of a connection, read before TLS on
//! listeners that enable it. Guarantees: exactly the header's bytes are consumed (nothing of the TLS
//! ClientHello), at most [`MAX_HEADER_BYTES`] are read, and anything but a well-formed v2 header — another
//! signature, version 1 text, an unknown command, family or transport, a length that does not fit the
//! addresses, TLVs that do not tile the rest — is an error, so the caller closes the connection. `LOCAL`
//! (a balancer's health check) yields `None`: the TCP peer is the client. Parsing is pure ([`parse_prefix`],
//! [`parse_body`]); [`read`] only moves bytes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt};

/// `\r\n\r\n\0\r\nQUIT\n`: the first 12 bytes of every v2 header.
pub const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The fixed part: signature, version/command, family/transport, length.
pub const PREFIX_BYTES: usize = 16;
/// The most bytes a header may take, TLVs included (UNIX addresses need 216; balancers add a few TLVs).
pub const MAX_HEADER_BYTES: usize = 1024;

/// Why a PROXY header was not accepted; each closes the connection, counted as `proxy_header`.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("reading the header: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a PROXY v2 signature")]
    Signature,
    #[error("version {0} is not 2")]
    Version(u8),
    #[error("command {0} is neither LOCAL nor PROXY")]
    Command(u8),
    #[error("family/transport {0:#04x} carries no TCP address")]
    Family(u8),
    #[error("length {0} does not fit the addresses or the bound")]
    Length(usize),
    #[error("TLVs do not fill the header")]
    Tlv,
}

/// What the fixed part announced: the command, the family byte and how many bytes follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    local: bool,
    family: u8,
    pub len: usize,
}

/// Checks the fixed 16 bytes.
pub fn parse_prefix(b: &[u8; PREFIX_BYTES]) -> Result<Prefix, ProxyError> {
    if b[..12] != SIGNATURE {
        return Err(ProxyError::Signature);
    }
    let (version, command) = (b[12] >> 4, b[12] & 0x0f);
    if version != 2 {
        return Err(ProxyError::Version(version));
    }
    let local = match command {
        0 => true,
        1 => false,
        other => return Err(ProxyError::Command(other)),
    };
    let len = usize::from(u16::from_be_bytes([b[14], b[15]]));
    if PREFIX_BYTES + len > MAX_HEADER_BYTES {
        return Err(ProxyError::Length(len));
    }
    Ok(Prefix {
        local,
        family: b[13],
        len,
    })
}

/// Reads the addresses (and checks the TLVs) after the prefix: `None` for `LOCAL`, else the source.
pub fn parse_body(p: Prefix, body: &[u8]) -> Result<Option<SocketAddr>, ProxyError> {
    if p.local {
        // LOCAL: the addresses, if any, are the balancer's own; the TCP peer is the client.
        return Ok(None);
    }
    let (ip, port, addr_len) = match p.family {
        // TCP over IPv4: src, dst, src port, dst port.
        0x11 if body.len() >= 12 => {
            let ip = Ipv4Addr::from(<[u8; 4]>::try_from(&body[..4]).expect("4 bytes"));
            (IpAddr::V4(ip), [body[8], body[9]], 12)
        }
        0x21 if body.len() >= 36 => {
            let ip = Ipv6Addr::from(<[u8; 16]>::try_from(&body[..16]).expect("16 bytes"));
            (IpAddr::V6(ip), [body[32], body[33]], 36)
        }
        0x11 | 0x21 => return Err(ProxyError::Length(body.len())),
        other => return Err(ProxyError::Family(other)),
    };
    tlvs_fill(&body[addr_len..])?;
    Ok(Some(SocketAddr::new(
        ip.to_canonical(),
        u16::from_be_bytes(port),
    )))
}

/// TLVs (type, 2-byte length, value) must tile the rest exactly.
fn tlvs_fill(mut rest: &[u8]) -> Result<(), ProxyError> {
    while !rest.is_empty() {
        if rest.len() < 3 {
            return Err(ProxyError::Tlv);
        }
        let n = 3 + usize::from(u16::from_be_bytes([rest[1], rest[2]]));
        rest = rest.get(n..).ok_or(ProxyError::Tlv)?;
    }
    Ok(())
}

/// Reads one header from `io`, consuming exactly its bytes. The caller bounds the time.
pub async fn read<R: AsyncRead + Unpin>(io: &mut R) -> Result<Option<SocketAddr>, ProxyError> {
    let mut prefix = [0u8; PREFIX_BYTES];
    io.read_exact(&mut prefix).await?;
    let p = parse_prefix(&prefix)?;
    let mut body = [0u8; MAX_HEADER_BYTES - PREFIX_BYTES];
    let body = &mut body[..p.len];
    io.read_exact(body).await?;
    parse_body(p, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(cmd: u8, family: u8, addrs: &[u8]) -> Vec<u8> {
        let mut h = SIGNATURE.to_vec();
        h.extend([0x20 | cmd, family]);
        h.extend((addrs.len() as u16).to_be_bytes());
        h.extend(addrs);
        h
    }

    fn v4(src: [u8; 4], port: u16) -> Vec<u8> {
        let mut a = src.to_vec();
        a.extend([192, 0, 2, 1]);
        a.extend(port.to_be_bytes());
        a.extend(443u16.to_be_bytes());
        a
    }

    async fn read_all(bytes: &[u8]) -> Result<Option<SocketAddr>, ProxyError> {
        read(&mut &bytes[..]).await
    }

    #[tokio::test]
    async fn tcp4_and_tcp6_sources_and_local() {
        let got = read_all(&header(1, 0x11, &v4([203, 0, 113, 9], 5555))).await;
        assert_eq!(got.unwrap(), Some("203.0.113.9:5555".parse().unwrap()));
        let mut a6 = "::ffff:203.0.113.9"
            .parse::<Ipv6Addr>()
            .unwrap()
            .octets()
            .to_vec();
        a6.extend(Ipv6Addr::LOCALHOST.octets());
        a6.extend([0, 80, 1, 187]);
        let got = read_all(&header(1, 0x21, &a6)).await.unwrap().unwrap();
        assert_eq!(
            got.ip(),
            "203.0.113.9".parse::<IpAddr>().unwrap(),
            "mapped → v4"
        );
        assert_eq!(read_all(&header(0, 0x00, &[])).await.unwrap(), None);
    }

    #[tokio::test]
    async fn exactly_the_header_is_consumed_tlvs_included() {
        let mut addrs = v4([198, 51, 100, 1], 1);
        addrs.extend([0x04, 0, 2, 7, 7]); // one TLV
        let mut bytes = header(1, 0x11, &addrs);
        bytes.extend(b"\x16\x03\x01 clienthello");
        let mut rest = &bytes[..];
        assert!(read(&mut rest).await.unwrap().is_some());
        assert_eq!(rest, b"\x16\x03\x01 clienthello");
    }

    #[tokio::test]
    async fn malformed_headers_are_errors() {
        let good = header(1, 0x11, &v4([203, 0, 113, 9], 1));
        let mut wrong_sig = good.clone();
        wrong_sig[4] = b'x';
        let mut v1 = b"PROXY TCP4 203.0.113.9 192.0.2.1 1 443\r\n".to_vec();
        v1.resize(40, 0);
        let mut bad_tlv = v4([203, 0, 113, 9], 1);
        bad_tlv.extend([0x04, 0, 9, 1]);
        let mut longer = good.clone();
        longer[14..16].copy_from_slice(&20u16.to_be_bytes());
        let mut too_long = good.clone();
        too_long[14..16].copy_from_slice(&2000u16.to_be_bytes());
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("truncated prefix", good[..10].to_vec()),
            ("truncated addresses", good[..20].to_vec()),
            ("length larger than sent", longer),
            ("wrong signature", wrong_sig),
            ("version 1 text", v1),
            ("version 3", {
                let mut h = good.clone();
                h[12] = 0x31;
                h
            }),
            ("command 2", header(2, 0x11, &v4([1, 2, 3, 4], 1))),
            ("unix family", header(1, 0x31, &[0; 216])),
            ("udp", header(1, 0x12, &v4([1, 2, 3, 4], 1))),
            ("unspec with PROXY", header(1, 0x00, &[])),
            ("short v4 addresses", header(1, 0x11, &[1, 2, 3, 4])),
            ("bad tlv", header(1, 0x11, &bad_tlv)),
            ("over the bound", too_long),
            ("nothing", vec![]),
        ];
        for (name, bytes) in cases {
            assert!(read_all(&bytes).await.is_err(), "{name} accepted");
        }
    }
}
