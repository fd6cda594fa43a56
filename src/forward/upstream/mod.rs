//! The upstream client: HTTP/1.1 connections to the one upstream, pooled most recently used
//! first, each written and read by the task of the request it carries.
//!
//! Why not hyper's client: with hyper, every upstream connection is a task of its own, and a
//! request reaches it through a channel and comes back through a oneshot. Per request that is
//! two more task wakeups, two channel handoffs, a second HTTP/1.1 state machine and a request
//! `HeaderMap` re-encoded header by header: about 18,000 of the ~45,000 instructions the proxy
//! spent on a small keep-alive request (docs/benchmarks.md, section 5). Here the request's own
//! task writes the head (one buffer, one write), reads and parses the response head
//! (httparse), and the response body reads the socket directly when hyper's server side polls
//! it, so a burst of server-sent events that arrived together goes out as one frame.
//!
//! What it keeps from hyper's client, so that the upstream sees the same traffic:
//! - `Host` is set from the upstream URL (its port only when not the scheme's default), and the
//!   request target is in origin form (RFC 9112 §3.2.1).
//! - A connection goes back to the pool only once its response body has been read to the end
//!   and nothing else followed it; a body dropped early (the client went away) closes it. At
//!   most `pool_max_idle` idle connections are kept, and an idle one is closed after
//!   `pool_idle_timeout`. An idle connection the upstream closed is noticed when it is taken.
//! - A request that a reused connection failed before anything came back is sent again on a
//!   new connection when that is safe: always if the head could not be written, and when the
//!   connection closed with no answer only for an idempotent method without a body.
//!
//! The wire format is in [`codec`] (pure and tested on its own); the response body in [`body`].

pub mod body;
pub mod codec;
mod stream;

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::uri::Scheme;
use http::{HeaderValue, Method, Request, Response, Uri};
use http_body::Body;
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;
use tracing::{debug, trace};

use super::error::ProxyError;
pub use body::UpstreamBody;
pub use codec::HeadEdits;
use codec::{Parsed, RequestFraming, ResponseFraming};
use stream::Stream;

/// Bytes asked of the socket per read: a whole burst of events fits in one.
const READ_CHUNK: usize = 16 * 1024;

/// TLS to an HTTPS upstream.
pub struct UpstreamTls {
    pub connector: tokio_rustls::TlsConnector,
    pub name: rustls_pki_types::ServerName<'static>,
}

/// Where and how to reach the upstream, and how long to keep idle connections.
pub struct UpstreamSettings {
    /// `scheme://authority`.
    pub target: Uri,
    /// `None` for `http://`.
    pub tls: Option<UpstreamTls>,
    pub connect_timeout: Duration,
    /// From the start of [`Upstream::send`] to the response head, connecting included.
    pub response_timeout: Duration,
    pub max_idle: usize,
    pub idle_timeout: Duration,
}

/// A pooled HTTP/1.1 client for one upstream. Cloning shares the pool.
#[derive(Clone)]
pub struct Upstream {
    inner: Arc<Inner>,
}

struct Inner {
    /// Host to dial (IPv6 without brackets) and port.
    dial_host: String,
    port: u16,
    tls: Option<UpstreamTls>,
    connect_timeout: Duration,
    response_timeout: Duration,
    /// The `Host` header sent upstream.
    host: HeaderValue,
    idle: Mutex<Vec<Idle>>,
    max_idle: usize,
    idle_timeout: Duration,
    reaper_started: AtomicBool,
}

struct Idle {
    conn: Box<Conn>,
    since: Instant,
}

/// One upstream connection and its buffers.
struct Conn {
    io: Stream,
    /// Bytes read and not yet consumed: the response head, then the body.
    rbuf: BytesMut,
    /// The request head being written.
    wbuf: Vec<u8>,
    /// The response timeout's timer, kept from request to request: moving a registered timer
    /// to a later deadline is one atomic operation, while a new timer per request is
    /// registered and then removed under the timer wheel's lock (~9 atomic operations).
    timer: Option<Pin<Box<Sleep>>>,
}

/// The `Host` value for `target`: its host, and `:port` unless the port is the scheme's default.
fn host_header(target: &Uri) -> Option<HeaderValue> {
    let host = target.host()?;
    let default_port = default_port(target);
    let value = match target.port_u16() {
        Some(p) if p != default_port => HeaderValue::try_from(format!("{host}:{p}")),
        _ => HeaderValue::try_from(host),
    };
    value.ok()
}

fn default_port(target: &Uri) -> u16 {
    match target.scheme() {
        Some(s) if *s == Scheme::HTTPS => 443,
        _ => 80,
    }
}

/// Why one attempt failed: whether sending again on a new connection is safe.
enum Attempt {
    /// Nothing reached the upstream intact (the head could not be written).
    NotSent,
    /// Sent, and the connection closed before any byte of an answer.
    NoAnswer,
    Failed(ProxyError),
}

impl Upstream {
    /// `None` if the target has no host usable in a `Host` header.
    pub fn new(s: UpstreamSettings) -> Option<Self> {
        let host = host_header(&s.target)?;
        let dial_host = s
            .target
            .host()?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = s
            .target
            .port_u16()
            .unwrap_or_else(|| default_port(&s.target));
        Some(Self {
            inner: Arc::new(Inner {
                dial_host,
                port,
                tls: s.tls,
                connect_timeout: s.connect_timeout,
                response_timeout: s.response_timeout,
                host,
                idle: Mutex::new(Vec::new()),
                max_idle: s.max_idle,
                idle_timeout: s.idle_timeout,
                reaper_started: AtomicBool::new(false),
            }),
        })
    }

    /// Sends `req` with `edits` applied to its headers (`Host` is set here) and
    /// returns the response as soon as its head has arrived; the body streams from the socket.
    /// [`ProxyError::UpstreamTimeout`] if the head is not in within the response timeout.
    pub async fn send<B>(
        &self,
        req: &mut Request<B>,
        edits: &HeadEdits<'_>,
    ) -> Result<Response<UpstreamBody>, ProxyError>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: std::fmt::Display,
    {
        let framing = if req.body().is_end_stream() {
            RequestFraming::None
        } else {
            match req.body().size_hint().exact() {
                Some(n) => RequestFraming::Length(n),
                None => RequestFraming::Chunked,
            }
        };
        let head_request = req.method() == Method::HEAD;
        let resend_unanswered = framing == RequestFraming::None && req.method().is_idempotent();
        let deadline = tokio::time::Instant::now() + self.inner.response_timeout;
        loop {
            let (mut conn, reused) = match self.inner.checkout() {
                Some(c) => (c, true),
                // Boxed: connecting is rare, and its state would make every request's
                // future (moved several times) larger.
                None => match tokio::time::timeout_at(deadline, Box::pin(self.connect())).await {
                    Ok(c) => (c?, false),
                    Err(_) => return Err(ProxyError::UpstreamTimeout),
                },
            };
            conn.wbuf.clear();
            let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
            codec::encode_head(
                &mut conn.wbuf,
                req.method(),
                target,
                &self.inner.host,
                req.headers(),
                edits,
                framing,
            );
            let mut timer = match conn.timer.take() {
                Some(mut t) => {
                    t.as_mut().reset(deadline);
                    t
                }
                None => Box::pin(tokio::time::sleep_until(deadline)),
            };
            let exchanged = tokio::select! {
                biased;
                r = conn.exchange(req.body_mut(), framing, head_request) => Some(r),
                () = timer.as_mut() => None,
            };
            conn.timer = Some(timer);
            let Some(exchanged) = exchanged else {
                return Err(ProxyError::UpstreamTimeout);
            };
            match exchanged {
                Ok(mut head) => {
                    if matches!(
                        head.framing,
                        ResponseFraming::Chunked | ResponseFraming::Close
                    ) {
                        // The body's length is not known; a length beside chunked was wrong.
                        head.headers.remove(http::header::CONTENT_LENGTH);
                    }
                    let body = UpstreamBody::new(conn, head.framing, head.reusable, &self.inner);
                    let mut resp = Response::new(body);
                    *resp.status_mut() = head.status;
                    *resp.headers_mut() = head.headers;
                    return Ok(resp);
                }
                Err(Attempt::NotSent) if reused => {
                    trace!("reused upstream connection was closed; sending on a new one");
                }
                Err(Attempt::NoAnswer) if reused && resend_unanswered => {
                    trace!("reused upstream connection closed without an answer; sending again");
                }
                Err(Attempt::NotSent | Attempt::NoAnswer) => {
                    return Err(ProxyError::UpstreamProtocol)
                }
                Err(Attempt::Failed(e)) => return Err(e),
            }
        }
    }

    async fn connect(&self) -> Result<Box<Conn>, ProxyError> {
        let inner = &*self.inner;
        let dial = TcpStream::connect((inner.dial_host.as_str(), inner.port));
        let tcp = match tokio::time::timeout(inner.connect_timeout, dial).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                debug!(error = %e, "upstream connect failed");
                return Err(ProxyError::UpstreamUnavailable);
            }
            Err(_) => {
                debug!("upstream connect timed out");
                return Err(ProxyError::UpstreamUnavailable);
            }
        };
        let _ = tcp.set_nodelay(true);
        let io = match &inner.tls {
            None => Stream::Plain(tcp),
            Some(tls) => {
                let handshake = tls.connector.connect(tls.name.clone(), tcp);
                match tokio::time::timeout(inner.connect_timeout, handshake).await {
                    Ok(Ok(s)) => Stream::Tls(Box::new(s)),
                    Ok(Err(e)) => {
                        debug!(error = %e, "upstream TLS handshake failed");
                        return Err(ProxyError::UpstreamUnavailable);
                    }
                    Err(_) => {
                        debug!("upstream TLS handshake timed out");
                        return Err(ProxyError::UpstreamUnavailable);
                    }
                }
            }
        };
        Ok(Box::new(Conn {
            io,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            wbuf: Vec::with_capacity(1024),
            timer: None,
        }))
    }
}

impl Conn {
    /// Writes the head in `wbuf`, then the body, then reads up to the final response head.
    async fn exchange<B>(
        &mut self,
        body: &mut B,
        framing: RequestFraming,
        head_request: bool,
    ) -> Result<codec::ResponseHead, Attempt>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: std::fmt::Display,
    {
        if let Err(e) = self.io.write_all(&self.wbuf).await {
            trace!(error = %e, "upstream write failed");
            return Err(Attempt::NotSent);
        }
        if framing != RequestFraming::None {
            self.send_body(body, framing).await?;
        }
        if self.io.flush().await.is_err() {
            return Err(Attempt::Failed(ProxyError::UpstreamProtocol));
        }
        let mut answered = false;
        loop {
            if !self.rbuf.is_empty() {
                match codec::parse_response(&mut self.rbuf, head_request) {
                    Ok(Parsed::Partial) => {}
                    Ok(Parsed::Interim(_)) => continue,
                    Ok(Parsed::Head { head, .. }) => return Ok(head),
                    Err(e) => {
                        debug!(error = %e, "invalid upstream response");
                        return Err(Attempt::Failed(ProxyError::UpstreamProtocol));
                    }
                }
            }
            self.rbuf.reserve(READ_CHUNK);
            match self.io.read_buf(&mut self.rbuf).await {
                Ok(0) | Err(_) if !answered => return Err(Attempt::NoAnswer),
                Ok(0) | Err(_) => return Err(Attempt::Failed(ProxyError::UpstreamProtocol)),
                Ok(_) => answered = true,
            }
        }
    }

    /// Streams the request body upstream as it arrives from the client.
    async fn send_body<B>(&mut self, body: &mut B, framing: RequestFraming) -> Result<(), Attempt>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: std::fmt::Display,
    {
        let chunked = framing == RequestFraming::Chunked;
        while let Some(frame) = body.frame().await {
            let frame = match frame {
                Ok(f) => f,
                Err(e) => {
                    debug!(error = %e, "client request body failed");
                    return Err(Attempt::Failed(ProxyError::BadRequest));
                }
            };
            // Trailers from the client are not forwarded.
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if data.is_empty() {
                continue;
            }
            let written = if chunked {
                self.wbuf.clear();
                codec::chunk_start(&mut self.wbuf, data.len());
                let head = self.io.write_all(&self.wbuf).await;
                let data = head.and(self.io.write_all(&data).await);
                data.and(self.io.write_all(b"\r\n").await)
            } else {
                self.io.write_all(&data).await
            };
            if written.is_err() {
                return Err(Attempt::Failed(ProxyError::UpstreamProtocol));
            }
        }
        if chunked && self.io.write_all(codec::CHUNKED_END).await.is_err() {
            return Err(Attempt::Failed(ProxyError::UpstreamProtocol));
        }
        Ok(())
    }

    /// An idle connection is usable if the upstream has sent nothing on it: no close, no
    /// stray bytes. Polled once with a no-op waker, so it never waits.
    fn is_usable(&mut self) -> bool {
        if !self.rbuf.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        let mut probe = [0u8; 1];
        let mut probe = ReadBuf::new(&mut probe);
        matches!(
            Pin::new(&mut self.io).poll_read(&mut cx, &mut probe),
            Poll::Pending
        )
    }
}

fn lock(idle: &Mutex<Vec<Idle>>) -> MutexGuard<'_, Vec<Idle>> {
    // A panic while holding the lock leaves a plain Vec, still consistent.
    idle.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Inner {
    /// The most recently returned idle connection that is still open and not too old.
    fn checkout(&self) -> Option<Box<Conn>> {
        let mut idle = lock(&self.idle);
        while let Some(mut c) = idle.pop() {
            if c.since.elapsed() >= self.idle_timeout {
                // The rest were returned earlier still.
                idle.clear();
                return None;
            }
            if c.conn.is_usable() {
                return Some(c.conn);
            }
        }
        None
    }

    fn put(self: &Arc<Self>, conn: Box<Conn>) {
        {
            let mut idle = lock(&self.idle);
            if idle.len() >= self.max_idle {
                return;
            }
            idle.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
        if !self.reaper_started.load(Ordering::Relaxed) {
            // A body finished outside the runtime (at exit) must not panic in `spawn`.
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                if !self.reaper_started.swap(true, Ordering::Relaxed) {
                    rt.spawn(reap(Arc::downgrade(self), self.idle_timeout));
                }
            }
        }
    }
}

/// Closes idle connections older than `timeout` or closed by the upstream, checking every
/// `timeout` (at most every second); ends with the pool.
async fn reap(pool: Weak<Inner>, timeout: Duration) {
    let mut tick = tokio::time::interval(timeout.max(Duration::from_secs(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(pool) = pool.upgrade() else { return };
        lock(&pool.idle).retain_mut(|c| c.since.elapsed() < timeout && c.conn.is_usable());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_header_leaves_out_the_default_port() {
        for (url, want) in [
            ("http://127.0.0.1:8080", "127.0.0.1:8080"),
            ("http://api.example:80", "api.example"),
            ("https://api.example:443", "api.example"),
            ("https://api.example:80", "api.example:80"),
            ("http://[::1]:9000", "[::1]:9000"),
        ] {
            let got = host_header(&url.parse().expect("uri"));
            assert_eq!(got, Some(HeaderValue::from_static(want)), "{url}");
        }
    }
}
