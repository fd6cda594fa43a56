//! The connection's byte stream as rustls and hyper see it.
//!
//! [`ConnIo`] replays the bytes already read while capturing the ClientHello (rustls must see
//! the handshake from its first byte) and then reads the socket directly. It also stamps the
//! time of the last byte moved, so the connection task can close idle keep-alive connections
//! for HTTP/1.1 and HTTP/2 alike without a timer per read.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::fingerprint::{H2Fingerprint, H2State, H2Tap};

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Milliseconds since the process epoch; cheap monotonic stamps for activity tracking.
pub fn now_ms() -> u64 {
    u64::try_from(epoch().elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Last time bytes moved on a connection, shared between its IO and its task.
#[derive(Debug, Clone)]
pub struct Activity(Arc<AtomicU64>);

impl Default for Activity {
    fn default() -> Self {
        Self(Arc::new(AtomicU64::new(now_ms())))
    }
}

impl Activity {
    fn touch(&self) {
        self.0.store(now_ms(), Ordering::Relaxed);
    }
    /// How long since bytes last moved.
    pub fn idle_for(&self) -> Duration {
        Duration::from_millis(now_ms().saturating_sub(self.0.load(Ordering::Relaxed)))
    }
}

/// A stream with a prefix of already-read bytes replayed first.
///
/// It also times the handshake's round trip: from the first bytes written (the server's
/// first flight, which rustls writes only after the whole ClientHello) to the first bytes then
/// read from the socket (the client's answer to that flight). See [`ConnIo::handshake_rtt`].
#[derive(Debug)]
pub struct ConnIo<T> {
    prefix: Vec<u8>,
    pos: usize,
    inner: T,
    activity: Activity,
    first_write: Option<Instant>,
    handshake_rtt: Option<Duration>,
}

impl<T> ConnIo<T> {
    pub fn new(prefix: Vec<u8>, inner: T, activity: Activity) -> Self {
        Self {
            prefix,
            pos: 0,
            inner,
            activity,
            first_write: None,
            handshake_rtt: None,
        }
    }
    pub fn get_ref(&self) -> &T {
        &self.inner
    }
    /// First write → next socket read with data; `None` until both happened.
    pub fn handshake_rtt(&self) -> Option<Duration> {
        self.handshake_rtt
    }
    /// When the first bytes were written.
    pub fn first_write(&self) -> Option<Instant> {
        self.first_write
    }
    fn wrote(&mut self) {
        self.activity.touch();
        if self.first_write.is_none() {
            self.first_write = Some(Instant::now());
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ConnIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos < this.prefix.len() {
            let rest = &this.prefix[this.pos..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.pos += n;
            if this.pos == this.prefix.len() {
                // Replayed in full: give the memory back.
                this.prefix = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let res = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(res, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.touch();
            if this.handshake_rtt.is_none() {
                this.handshake_rtt = this.first_write.map(|t| t.elapsed());
            }
        }
        res
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ConnIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.inner).poll_write(cx, data);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            this.wrote();
        }
        res
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            this.wrote();
        }
        res
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

/// Copies the first bytes an HTTP/2 client sends into an [`H2Tap`] on their way to hyper, and
/// publishes the fingerprint once the tap has seen the first header block. hyper cannot
/// dispatch the first request before those bytes have passed through here, so the fingerprint
/// is always set before the first request is handled (unless the client's frames were not a
/// fingerprintable HTTP/2 start, which is counted).
pub struct TapIo<T> {
    inner: T,
    tap: Option<H2Tap>,
    out: Arc<OnceLock<H2Fingerprint>>,
}

impl<T> TapIo<T> {
    pub fn new(inner: T, out: Arc<OnceLock<H2Fingerprint>>) -> Self {
        Self {
            inner,
            tap: Some(H2Tap::new()),
            out,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for TapIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let res = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let (Poll::Ready(Ok(())), Some(tap)) = (&res, this.tap.as_mut()) {
            let new = &buf.filled()[before..];
            if !new.is_empty() {
                match tap.feed(new) {
                    H2State::NeedMore => {}
                    H2State::Done(fp) => {
                        let _ = this.out.set(fp);
                        this.tap = None;
                    }
                    H2State::NotH2 => {
                        metrics::counter!("portcullis_h2_fingerprint_failures_total", "reason" => "not_h2")
                            .increment(1);
                        this.tap = None;
                    }
                    H2State::Malformed(reason) => {
                        metrics::counter!("portcullis_h2_fingerprint_failures_total", "reason" => reason)
                            .increment(1);
                        this.tap = None;
                    }
                }
            }
        }
        res
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TapIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
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
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn prefix_is_replayed_before_the_stream() {
        let (mut a, b) = tokio::io::duplex(64);
        a.write_all(b"world").await.expect("write");
        drop(a);
        let mut io = ConnIo::new(b"hello ".to_vec(), b, Activity::default());
        let mut out = String::new();
        io.read_to_string(&mut out).await.expect("read");
        assert_eq!(out, "hello world");
    }
}
