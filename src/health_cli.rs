//! `tollgate health --url http://HOST:PORT/PATH`: one plain HTTP/1.1 GET against the admin listener, for a
//! container `HEALTHCHECK` in an image that has no curl. Exit 0 on `200`, 1 on anything else (another status,
//! no answer within the timeout, a refused connection). Reads at most [`MAX_RESPONSE_BYTES`].

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::Context;

/// The most response bytes read: probe answers are a few hundred bytes.
const MAX_RESPONSE_BYTES: u64 = 64 * 1024;

/// GETs `url` with `timeout` for connect, write and each read; `Ok(status line)` on `200`.
pub fn probe(url: &str, timeout: Duration) -> anyhow::Result<String> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("--url {url:?} is not http://host:port/path"))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let addr = authority
        .to_socket_addrs()
        .with_context(|| format!("--url {url:?}: host:port"))?
        .next()
        .with_context(|| format!("--url {url:?}: no address"))?;
    let mut s = TcpStream::connect_timeout(&addr, timeout).with_context(|| format!("{addr}"))?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: tollgate-health\r\nConnection: close\r\n\r\n"
    )?;
    let mut head = Vec::new();
    s.take(MAX_RESPONSE_BYTES)
        .read_to_end(&mut head)
        .with_context(|| format!("{url}: reading the answer"))?;
    let text = String::from_utf8_lossy(&head);
    let status_line = text.lines().next().unwrap_or_default().to_owned();
    let status = status_line.split(' ').nth(1).unwrap_or_default();
    anyhow::ensure!(status == "200", "{url}: {status_line:?}");
    Ok(status_line)
}
