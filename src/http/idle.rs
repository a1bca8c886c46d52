//! An I/O wrapper that fails reads and writes once no byte has moved in either direction for `timeout`.
//! It bounds the phases where the peer goes quiet: a stalled TLS handshake or record, a body that stopped
//! arriving, a connection nobody writes to. Any byte resets it, so a peer that keeps talking (HTTP/2 PINGs)
//! without asking for anything is [`super::activity`]'s to close, not this one's.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The timer is lazy: a byte moved only records when (`last`); the sleep is re-armed only when it fires
/// before `last + timeout`. Re-arming a tokio timer takes the timer wheel's lock, so doing it on every read
/// and write of every connection showed in profiles; an `Instant::now()` does not.
pub struct IdleTimeout<T> {
    inner: T,
    timeout: Duration,
    last: Instant,
    sleep: Pin<Box<Sleep>>,
}

impl<T> IdleTimeout<T> {
    pub fn new(inner: T, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            last: Instant::now(),
            sleep: Box::pin(tokio::time::sleep(timeout)),
        }
    }

    fn touch(&mut self) {
        self.last = Instant::now();
    }

    /// Whether the connection has been quiet for `timeout`; otherwise the sleep is armed (re-armed to
    /// `last + timeout` if it fired early) with `cx`'s waker.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            if self.sleep.as_mut().poll(cx).is_pending() {
                return false;
            }
            let due = self.last + self.timeout;
            if due <= Instant::now() {
                return true;
            }
            self.sleep.as_mut().reset(due);
        }
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "connection idle")
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleTimeout<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                this.touch();
                Poll::Ready(r)
            }
            Poll::Pending if this.expired(cx) => Poll::Ready(Err(timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleTimeout<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(r) => {
                this.touch();
                Poll::Ready(r)
            }
            Poll::Pending if this.expired(cx) => Poll::Ready(Err(timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(r) => {
                this.touch();
                Poll::Ready(r)
            }
            Poll::Pending if this.expired(cx) => Poll::Ready(Err(timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test(start_paused = true)]
    async fn silent_peer_times_out_and_busy_peer_does_not() {
        let (client, server) = tokio::io::duplex(64);
        let mut io = IdleTimeout::new(server, Duration::from_secs(5));
        let mut client = client;
        let mut buf = [0u8; 4];
        // bytes keep arriving every 4s: never idle for 5s
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_secs(4)).await;
                client.write_all(b"x").await.unwrap();
            }
            client // keep it open, then fall silent
        });
        for _ in 0..3 {
            assert_eq!(io.read(&mut buf).await.unwrap(), 1);
        }
        let _client = writer.await.unwrap();
        let err = io.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }
}
