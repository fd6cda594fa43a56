//! The upstream connection pool: HTTP/1.1 connections to the one upstream, the most recently
//! used first, each driven by its own task.
//!
//! Why not hyper-util's pooled `Client`: it serves any number of hosts, so on every request it
//! hashes the (scheme, authority) key twice (SipHash, a byte at a time), clones and rewrites the
//! URI and looks the host up in a map. With one upstream that bookkeeping is a `Vec` behind a
//! mutex; callgrind counted the `Client` path at about 7,700 instructions per request of the
//! ~56,000 the proxy spends on a small keep-alive request.
//!
//! What it keeps from hyper-util's client, so that the upstream sees the same traffic:
//! - `Host` is set last, from the upstream URL (its port only when not the scheme's default),
//!   and the request target is in origin form (RFC 9112 §3.2.1).
//! - A connection goes back to the pool only once its response body has been read to the end;
//!   a body dropped early (the client went away) closes it, since the rest of that response is
//!   still on the wire. At most `pool_max_idle` idle connections are kept (a connection coming
//!   back to a full pool is closed), and an idle one is closed after `pool_idle_timeout`.
//! - A request that a reused connection refused before any of it was written (the upstream had
//!   closed the idle connection) is sent again on another one.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::HOST;
use http::uri::Scheme;
use http::{HeaderValue, Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use tower_service::Service;
use tracing::{debug, trace};

use super::body::BoxError;
use super::error::ProxyError;

type Sender = SendRequest<Incoming>;
type Connector = HttpsConnector<HttpConnector>;

/// A pooled HTTP/1.1 client for one upstream. Cloning shares the pool.
#[derive(Clone)]
pub struct Upstream {
    inner: Arc<Inner>,
}

struct Inner {
    connector: Connector,
    /// `scheme://authority`: what the connector dials.
    target: Uri,
    /// The `Host` header sent upstream.
    host: HeaderValue,
    idle: Mutex<Vec<Idle>>,
    max_idle: usize,
    idle_timeout: Duration,
    reaper_started: AtomicBool,
}

struct Idle {
    tx: Sender,
    since: Instant,
}

/// The `Host` value for `target`: its host, and `:port` unless the port is the scheme's default.
fn host_header(target: &Uri) -> Option<HeaderValue> {
    let host = target.host()?;
    let default_port = match target.scheme() {
        Some(s) if *s == Scheme::HTTPS => 443,
        _ => 80,
    };
    let value = match target.port_u16() {
        Some(p) if p != default_port => HeaderValue::try_from(format!("{host}:{p}")),
        _ => HeaderValue::try_from(host),
    };
    value.ok()
}

impl Upstream {
    /// `target` is `scheme://authority`; `None` if it has no host usable in a `Host` header.
    pub fn new(
        connector: Connector,
        target: Uri,
        max_idle: usize,
        idle_timeout: Duration,
    ) -> Option<Self> {
        let host = host_header(&target)?;
        Some(Self {
            inner: Arc::new(Inner {
                connector,
                target,
                host,
                idle: Mutex::new(Vec::new()),
                max_idle,
                idle_timeout,
                reaper_started: AtomicBool::new(false),
            }),
        })
    }

    /// Sends `req` (its URI already in origin form) and returns the response as it arrives;
    /// the connection returns to the pool when the body has been read to its end.
    pub async fn send(
        &self,
        mut req: Request<Incoming>,
    ) -> Result<Response<PooledBody>, ProxyError> {
        req.headers_mut().insert(HOST, self.inner.host.clone());
        loop {
            let (mut tx, reused) = match self.inner.checkout() {
                Some(tx) => (tx, true),
                // Boxed: connecting is rare, and its state would make every request's
                // future (moved and copied several times) larger.
                None => (Box::pin(self.connect()).await?, false),
            };
            if tx.ready().await.is_err() {
                if reused {
                    continue;
                }
                return Err(ProxyError::UpstreamUnavailable);
            }
            match tx.try_send_request(req).await {
                Ok(resp) => {
                    let inner = self.inner.clone();
                    return Ok(resp.map(|body| PooledBody {
                        body,
                        conn: Some((tx, inner)),
                        done: false,
                    }));
                }
                Err(mut e) => match e.take_message() {
                    // Not written at all: the idle connection had been closed under us.
                    Some(r) if reused => {
                        trace!(error = %e.error(), "reused upstream connection refused the request; retrying");
                        req = r;
                    }
                    _ => {
                        debug!(error = %e.error(), "upstream request failed");
                        return Err(ProxyError::UpstreamProtocol);
                    }
                },
            }
        }
    }

    async fn connect(&self) -> Result<Sender, ProxyError> {
        let mut connector = self.inner.connector.clone();
        let io = async {
            std::future::poll_fn(|cx| connector.poll_ready(cx)).await?;
            connector.call(self.inner.target.clone()).await
        }
        .await
        .map_err(|e| {
            debug!(error = %e, "upstream connect failed");
            ProxyError::UpstreamUnavailable
        })?;
        let (tx, conn) = http1::handshake(io).await.map_err(|e| {
            debug!(error = %e, "upstream handshake failed");
            ProxyError::UpstreamUnavailable
        })?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                trace!(error = %e, "upstream connection ended with error");
            }
        });
        Ok(tx)
    }
}

fn lock(idle: &Mutex<Vec<Idle>>) -> MutexGuard<'_, Vec<Idle>> {
    // A panic while holding the lock leaves a plain Vec, still consistent.
    idle.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Inner {
    /// The most recently returned idle connection that is still open and not too old.
    fn checkout(&self) -> Option<Sender> {
        let mut idle = lock(&self.idle);
        while let Some(c) = idle.pop() {
            if c.since.elapsed() >= self.idle_timeout {
                // The rest were returned earlier still.
                idle.clear();
                return None;
            }
            if !c.tx.is_closed() {
                return Some(c.tx);
            }
        }
        None
    }

    fn put(self: &Arc<Self>, tx: Sender) {
        if tx.is_closed() {
            return;
        }
        {
            let mut idle = lock(&self.idle);
            if idle.len() >= self.max_idle {
                return;
            }
            idle.push(Idle {
                tx,
                since: Instant::now(),
            });
        }
        if !self.reaper_started.load(Ordering::Relaxed) {
            // A body dropped outside the runtime (at exit) must not panic in `spawn`.
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                if !self.reaper_started.swap(true, Ordering::Relaxed) {
                    rt.spawn(reap(Arc::downgrade(self), self.idle_timeout));
                }
            }
        }
    }
}

/// Closes idle connections older than `timeout`, checking every `timeout` (at most every
/// second); ends with the pool.
async fn reap(pool: Weak<Inner>, timeout: Duration) {
    let mut tick = tokio::time::interval(timeout.max(Duration::from_secs(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(pool) = pool.upgrade() else { return };
        lock(&pool.idle).retain(|c| c.since.elapsed() < timeout && !c.tx.is_closed());
    }
}

/// An upstream response body that gives its connection back to the pool once it has been read
/// to the end.
pub struct PooledBody {
    body: Incoming,
    conn: Option<(Sender, Arc<Inner>)>,
    /// The body returned its end.
    done: bool,
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(None) => {
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                // The exchange broke; the connection is not reusable.
                this.conn = None;
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(frame))),
            Poll::Pending => Poll::Pending,
        }
    }
    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // A content-length body read to its length may be dropped without being polled for
        // its end; `is_end_stream` says it is complete all the same.
        if self.done || self.body.is_end_stream() {
            if let Some((tx, pool)) = self.conn.take() {
                pool.put(tx);
            }
        }
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
