//! One client connection, from accept to close:
//! PROXY header (trusted peers only) → ClientHello capture and fingerprint → rustls handshake
//! on the replayed bytes → hyper (HTTP/1.1 or HTTP/2 by ALPN) → forward each request.
//!
//! Every stage is bounded in bytes and time; a failure ends this one connection, is counted by
//! reason, and never reaches other connections (each runs in its own task).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tracing::{debug, trace};

use super::info::{ConnInfo, TlsInfo};
use super::io::{Activity, ConnIo, TapIo};
use super::proxy_protocol::{self, ProxyHeader};
use super::Shared;
use crate::admin::hot::{self, Hist};
use crate::config::Http2Server;
use crate::fingerprint::{header_fingerprint_raw, HeaderFp, HttpVersionTag};
use crate::fingerprint::{parse_client_hello, ClientHello, HelloError, Parsed, MAX_HELLO_BYTES};
use crate::forward::body::{Guarded, ProxyBody};
use crate::gate::{Pass, RequestFingerprints};
use http::{HeaderName, HeaderValue};

/// Why a connection ended before HTTP was served; the metric label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EarlyClose {
    Hello(HelloError),
    HelloTimeout,
    /// The client closed before sending a whole ClientHello.
    HelloEof,
    ProxyHeaderInvalid,
    Io,
    HandshakeTimeout,
    Handshake,
}

impl EarlyClose {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Hello(e) => e.reason(),
            Self::HelloTimeout => "hello_timeout",
            Self::HelloEof => "hello_eof",
            Self::ProxyHeaderInvalid => "proxy_header_invalid",
            Self::Io => "io",
            Self::HandshakeTimeout => "handshake_timeout",
            Self::Handshake => "handshake",
        }
    }
}

fn count_early(reason: &EarlyClose) {
    metrics::counter!("portcullis_tls_failures_total", "reason" => reason.reason()).increment(1);
}

/// Reads a PROXY header if the TCP peer is trusted; returns the client address and the bytes
/// read past the header (the start of the ClientHello).
async fn read_proxy_header(
    stream: &mut TcpStream,
    tcp_peer: SocketAddr,
    buf: &mut Vec<u8>,
) -> Result<SocketAddr, EarlyClose> {
    loop {
        match proxy_protocol::parse(buf) {
            Ok(ProxyHeader::Complete { len, source }) => {
                buf.drain(..len);
                return Ok(source.unwrap_or(tcp_peer));
            }
            Ok(ProxyHeader::Incomplete) => {}
            Err(_) => return Err(EarlyClose::ProxyHeaderInvalid),
        }
        buf.reserve(512);
        match stream.read_buf(buf).await {
            Ok(0) => return Err(EarlyClose::HelloEof),
            Ok(_) => {}
            Err(_) => return Err(EarlyClose::Io),
        }
    }
}

/// Reads until `buf` holds a whole ClientHello (any number of records and TCP reads).
async fn read_client_hello(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> Result<ClientHello, EarlyClose> {
    loop {
        if !buf.is_empty() {
            match parse_client_hello(buf) {
                Ok(Parsed::Complete { hello, .. }) => return Ok(hello),
                Ok(Parsed::Incomplete) => {}
                Err(e) => return Err(EarlyClose::Hello(e)),
            }
        }
        if buf.len() >= MAX_HELLO_BYTES {
            return Err(EarlyClose::Hello(HelloError::TooLarge));
        }
        buf.reserve(4096);
        match stream.read_buf(buf).await {
            Ok(0) => return Err(EarlyClose::HelloEof),
            Ok(_) => {}
            Err(_) => return Err(EarlyClose::Io),
        }
    }
}

/// Answers plaintext HTTP sent to the TLS port with a plain 400, as nginx does, so a
/// misconfigured client learns why; bounded by a short write timeout.
async fn answer_plain_http(stream: &mut TcpStream) {
    const BODY: &str = r#"{"type":"error","error":{"type":"invalid_request_error","message":"This port speaks HTTPS; the request was sent as plain HTTP."}}"#;
    let msg = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(msg.as_bytes())).await;
}

/// Counts requests in flight on one connection; the idle check closes only connections with none.
#[derive(Debug)]
pub(super) struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    pub(super) fn enter(counter: &Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self(counter.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The relay signal's round trips, right after the handshake (docs/fingerprints.md).
///
/// The TLS round trip is timed in user space by [`ConnIo`], so a busy proxy that reads the
/// client's answer late would inflate it. The kernel stamped that answer's arrival: the last
/// data segment came `since_last_recv` ago (the client's Finished, or bytes right behind it),
/// so the round trip is also `now - since_last_recv - first_write`. The smaller of the two is
/// kept; the kernel's figure has jiffy resolution (1-10 ms).
fn measure_rtt(io: &ConnIo<TcpStream>) -> Option<super::info::Rtt> {
    let now = std::time::Instant::now();
    let times = super::tcp_info::tcp_times(io.get_ref())?;
    let user = io.handshake_rtt()?;
    let first_write = io.first_write()?;
    let tls = now
        .checked_sub(times.since_last_recv)
        .map_or(user, |arrived| {
            user.min(arrived.saturating_duration_since(first_write))
        });
    Some(super::info::Rtt::new(times.rtt, tls))
}

/// The last header fingerprint seen on a connection. A client sends the same header layout
/// request after request, so the raw form is compared and the SHA-256 of the id is skipped
/// when it is unchanged (about 2,600 of the ~46,000 instructions of a small request).
#[derive(Default)]
pub(super) struct LastHeaderFp {
    last: Mutex<Option<Arc<HeaderFp>>>,
}

impl LastHeaderFp {
    fn get(&self, version: HttpVersionTag, raw: String) -> Arc<HeaderFp> {
        // A panic while holding the lock leaves an `Option`, still consistent.
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        match last.as_ref() {
            Some(fp) if fp.raw == raw => fp.clone(),
            _ => {
                let fp = Arc::new(HeaderFp::from_raw(version, raw));
                *last = Some(fp.clone());
                fp
            }
        }
    }
}

/// JA4H of the request, with the FoxIO-licensed `ja4h` feature; `None` without it.
#[cfg(feature = "ja4h")]
fn ja4h_of<B>(req: &hyper::Request<B>) -> Option<String> {
    let headers = req
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_bytes()));
    Some(crate::fingerprint::ja4h(req.method().as_str(), req.version(), headers).ja4h)
}

#[cfg(not(feature = "ja4h"))]
fn ja4h_of<B>(_req: &hyper::Request<B>) -> Option<String> {
    None
}

/// Serves one TLS connection to its end.
pub async fn serve_tls(
    shared: Arc<Shared>,
    mut stream: TcpStream,
    tcp_peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
) {
    let local = stream.local_addr().unwrap_or(tcp_peer);
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::with_capacity(2048);
    let timeouts = &shared.cfg.timeouts;

    let early = async {
        let peer = if shared.is_trusted_proxy(tcp_peer) {
            read_proxy_header(&mut stream, tcp_peer, &mut buf).await?
        } else {
            tcp_peer
        };
        let hello = read_client_hello(&mut stream, &mut buf).await?;
        Ok::<_, EarlyClose>((peer, hello))
    };
    let (peer, hello) = match tokio::time::timeout(timeouts.client_hello, early).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            if e == EarlyClose::Hello(HelloError::PlainHttp) {
                answer_plain_http(&mut stream).await;
            }
            debug!(peer = %tcp_peer, reason = e.reason(), "connection closed before TLS");
            count_early(&e);
            return;
        }
        Err(_) => {
            debug!(peer = %tcp_peer, "ClientHello timeout");
            count_early(&EarlyClose::HelloTimeout);
            return;
        }
    };

    let mut tls_info = TlsInfo::from_hello(&hello);
    drop(hello);
    let activity = Activity::default();
    let io = ConnIo::new(buf, stream, activity.clone());
    let tls = match tokio::time::timeout(timeouts.handshake, shared.acceptor.accept(io)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            debug!(%peer, error = %e, "TLS handshake failed");
            count_early(&EarlyClose::Handshake);
            return;
        }
        Err(_) => {
            count_early(&EarlyClose::HandshakeTimeout);
            return;
        }
    };
    {
        let sess = tls.get_ref().1;
        tls_info.alpn = sess
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned());
        tls_info.version = match sess.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
            _ => "unknown",
        };
        // The relay signal needs the client's own TCP connection: behind a PROXY-protocol
        // balancer the TCP peer is the balancer, so nothing is measured.
        if !shared.is_trusted_proxy(tcp_peer) {
            tls_info.rtt = measure_rtt(tls.get_ref().0);
            if let Some(r) = &tls_info.rtt {
                shared.stats.relay_gap_seconds.record(r.gap());
            }
        }
    }
    let h2 = tls_info.alpn.as_deref() == Some("h2");
    trace!(%peer, ja4 = ?tls_info.ja4, h2, "handshake done");
    let info = Arc::new(ConnInfo::new(peer, tcp_peer, local, Some(tls_info)));
    if h2 {
        let io = TapIo::new(tls, info.h2.clone());
        match shared.cfg.server.http2 {
            Http2Server::Native => {
                super::h2native::serve(shared, io, info, activity, shutdown).await
            }
            Http2Server::H2 => super::h2::serve(shared, io, info, activity, shutdown).await,
        }
    } else {
        serve_http(
            shared,
            TokioIo::new(tls),
            info,
            activity,
            Protocol::H1,
            shutdown,
        )
        .await;
    }
}

/// Serves one plaintext connection (the optional listener behind a TLS-terminating balancer).
pub async fn serve_plain(
    shared: Arc<Shared>,
    mut stream: TcpStream,
    tcp_peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
) {
    let local = stream.local_addr().unwrap_or(tcp_peer);
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::new();
    let peer = if shared.is_trusted_proxy(tcp_peer) {
        match tokio::time::timeout(
            shared.cfg.timeouts.client_hello,
            read_proxy_header(&mut stream, tcp_peer, &mut buf),
        )
        .await
        {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => return count_early(&e),
            Err(_) => return count_early(&EarlyClose::HelloTimeout),
        }
    } else {
        tcp_peer
    };
    let activity = Activity::default();
    let io = ConnIo::new(buf, stream, activity.clone());
    let info = Arc::new(ConnInfo::new(peer, tcp_peer, local, None));
    serve_http(
        shared,
        TokioIo::new(io),
        info,
        activity,
        Protocol::Auto,
        shutdown,
    )
    .await;
}

#[derive(Debug, Clone, Copy)]
enum Protocol {
    H1,
    /// HTTP/1.1 or HTTP/2 with prior knowledge (the plain listener).
    Auto,
}

async fn serve_http<I>(
    shared: Arc<Shared>,
    io: I,
    info: Arc<ConnInfo>,
    activity: Activity,
    protocol: Protocol,
    shutdown: watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let in_flight = Arc::new(AtomicUsize::new(0));
    let last_fp = Arc::new(LastHeaderFp::default());
    let svc = {
        let shared = shared.clone();
        let in_flight = in_flight.clone();
        service_fn(move |mut req: hyper::Request<Incoming>| {
            let shared = shared.clone();
            let info = info.clone();
            let last_fp = last_fp.clone();
            let guard = InFlight::enter(&in_flight);
            // Boxed: hyper moves the request future into its dispatcher (and, on the plain
            // listener, into its HTTP/2 stream task); these moves copied the large future.
            Box::pin(async move {
                Ok::<_, Infallible>(shared.handle(&mut req, &info, &last_fp, guard).await)
            })
        })
    };
    let builder = match protocol {
        Protocol::H1 => &shared.http_h1,
        Protocol::Auto => &shared.http_auto,
    };
    let conn = builder.serve_connection(io, svc);
    tokio::pin!(conn);
    let mut drain = drain_signal(shared.cfg.timeouts.idle, activity, in_flight, shutdown);
    let mut draining = false;
    loop {
        tokio::select! {
            biased;
            res = conn.as_mut() => {
                if let Err(e) = res {
                    trace!(error = %e, "connection ended with error");
                }
                return;
            }
            () = &mut drain, if !draining => {
                conn.as_mut().graceful_shutdown();
                draining = true;
            }
        }
    }
}

/// Resolves when a connection should stop taking requests and close once the ones in flight
/// are done: it has been idle (no bytes either way) for `idle` with no request in flight, or
/// the server is shutting down. One future for the connection's whole life, so a connection
/// loop that wakes per request does not make a timer each time; polled only after its own
/// wakes ([`Drain`]).
pub(super) fn drain_signal(
    idle: Duration,
    activity: Activity,
    in_flight: Arc<AtomicUsize>,
    mut shutdown: watch::Receiver<bool>,
) -> Drain<impl Future<Output = ()>> {
    Drain::new(async move {
        loop {
            let wait = idle
                .saturating_sub(activity.idle_for())
                .max(Duration::from_millis(50));
            tokio::select! {
                () = tokio::time::sleep(wait) => {
                    if activity.idle_for() >= idle && in_flight.load(Ordering::Relaxed) == 0 {
                        debug!("closing idle connection");
                        return;
                    }
                }
                // Sender gone or shutdown signalled: both mean stop taking new requests.
                _ = shutdown.changed() => return,
            }
        }
    })
}

/// A connection's drain future, polled only when one of the things it waits on has fired.
///
/// The connection's task wakes for every read, write and upstream answer; polling the drain
/// future each time re-registered its timer's and shutdown watch's wakers (~12 atomic
/// operations and ~0.9k instructions a request at HTTP/1.1). It gets a waker of its own
/// instead: that waker marks it and wakes the task, and the task polls it only when marked.
pub(super) struct Drain<F> {
    fut: Pin<Box<F>>,
    wake: Arc<DrainWake>,
    waker: std::task::Waker,
    /// The task waker last handed to `wake`: a new one (the first poll) polls at once.
    task: Option<std::task::Waker>,
}

struct DrainWake {
    fired: std::sync::atomic::AtomicBool,
    task: futures_util::task::AtomicWaker,
}

impl std::task::Wake for DrainWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.fired.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl<F: Future<Output = ()>> Drain<F> {
    fn new(fut: F) -> Self {
        let wake = Arc::new(DrainWake {
            fired: std::sync::atomic::AtomicBool::new(false),
            task: futures_util::task::AtomicWaker::new(),
        });
        Self {
            fut: Box::pin(fut),
            waker: std::task::Waker::from(wake.clone()),
            wake,
            task: None,
        }
    }
}

impl<F: Future<Output = ()>> Future for Drain<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let same_task = this.task.as_ref().is_some_and(|t| t.will_wake(cx.waker()));
        if same_task && !this.wake.fired.load(Ordering::Acquire) {
            return Poll::Pending;
        }
        // (Re)armed on every poll that happens: a wake takes the registered waker.
        this.wake.task.register(cx.waker());
        if !same_task {
            this.task = Some(cx.waker().clone());
        }
        // Cleared before the poll: whatever fires from here on marks it again, and what fired
        // before is seen by this poll.
        this.wake.fired.store(false, Ordering::Release);
        this.fut
            .as_mut()
            .poll(&mut Context::from_waker(&this.waker))
    }
}

impl Shared {
    /// One request, whatever its body type (hyper's for HTTP/1.1, the `h2` stream's for
    /// HTTP/2): gate, then forward or answer.
    pub(super) async fn handle<B>(
        &self,
        req: &mut hyper::Request<B>,
        info: &ConnInfo,
        last_fp: &LastHeaderFp,
        guard: InFlight,
    ) -> hyper::Response<ProxyBody>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + Sync + Unpin,
        B::Error: std::fmt::Display,
    {
        hot::count_request();
        let started = std::time::Instant::now();
        // Before any header is removed: HeaderMap keeps wire order until then.
        let tag = if req.version() == http::Version::HTTP_2 {
            HttpVersionTag::H2
        } else {
            HttpVersionTag::H1
        };
        let raw = header_fingerprint_raw(
            tag,
            req.headers()
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_bytes())),
        );
        let header_fp = last_fp.get(tag, raw);
        let fps = RequestFingerprints {
            header: &header_fp,
            h2: info.h2.get(),
            ja4h: ja4h_of(req),
        };
        let pass = self.gate.check(req, info, &fps).await;
        hot::record(Hist::Gate, started.elapsed());
        let (lease, upstream_headers, response_headers, delay) = match pass {
            Pass::Respond(resp) => {
                let (parts, body) = resp.into_parts();
                return hyper::Response::from_parts(parts, Guarded::wrap(body, guard));
            }
            Pass::Forward {
                lease,
                upstream_headers,
                response_headers,
                delay,
            } => (lease, upstream_headers, response_headers, delay),
        };
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        let mut upstream_headers = upstream_headers;
        if let Some(v) = fps
            .ja4h
            .as_deref()
            .and_then(|j| HeaderValue::try_from(j).ok())
        {
            upstream_headers.push((HeaderName::from_static(crate::gate::JA4H_HEADER), v));
        }
        let sent = std::time::Instant::now();
        let forwarded = self
            .forwarder
            .forward(req, info, &header_fp.id, upstream_headers)
            .await;
        hot::record(Hist::Upstream, sent.elapsed());
        let mut resp = match forwarded {
            Ok(r) => r,
            Err(e) => {
                metrics::counter!("portcullis_upstream_errors_total", "kind" => e.label())
                    .increment(1);
                debug!(peer = %info.peer, kind = e.label(), "forward failed");
                e.response()
            }
        };
        for (k, v) in response_headers {
            resp.headers_mut().insert(k, v);
        }
        let (parts, body) = resp.into_parts();
        // The lease (concurrency slots) and the in-flight guard end with the body.
        hyper::Response::from_parts(parts, Guarded::wrap(body, (guard, lease)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    /// Counts the wakes of the "connection task".
    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn drain_is_polled_first_then_only_after_its_own_wakes() {
        let polls = AtomicUsize::new(0);
        // Like the idle check: woken once and still waiting, ready on the second event.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let mut events = 0;
        let drain = std::future::poll_fn(|cx| {
            polls.fetch_add(1, Ordering::SeqCst);
            while let Poll::Ready(Some(())) = rx.poll_recv(cx) {
                events += 1;
            }
            if events >= 2 {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        });
        let mut drain = Drain::new(drain);
        let task = Arc::new(Count(AtomicUsize::new(0)));
        let waker = std::task::Waker::from(task.clone());
        let mut cx = Context::from_waker(&waker);

        assert!(Pin::new(&mut drain).poll(&mut cx).is_pending());
        assert_eq!(polls.load(Ordering::SeqCst), 1, "the first poll arms it");
        // The task wakes for other reasons: the drain future is left alone.
        for _ in 0..5 {
            assert!(Pin::new(&mut drain).poll(&mut cx).is_pending());
        }
        assert_eq!(polls.load(Ordering::SeqCst), 1);
        // What it waits on fires: the task is woken and the next poll sees it.
        tx.send(()).expect("send");
        assert_eq!(task.0.load(Ordering::SeqCst), 1);
        assert!(Pin::new(&mut drain).poll(&mut cx).is_pending());
        assert_eq!(polls.load(Ordering::SeqCst), 2);
        assert!(Pin::new(&mut drain).poll(&mut cx).is_pending());
        assert_eq!(polls.load(Ordering::SeqCst), 2);
        // And again: every wake of its own reaches the task, not only the first.
        tx.send(()).expect("send");
        assert_eq!(task.0.load(Ordering::SeqCst), 2);
        assert!(Pin::new(&mut drain).poll(&mut cx).is_ready());
        assert_eq!(polls.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn a_new_task_waker_polls_again() {
        let polls = AtomicUsize::new(0);
        let drain = std::future::poll_fn(|_| {
            polls.fetch_add(1, Ordering::SeqCst);
            Poll::<()>::Pending
        });
        let mut drain = Drain::new(drain);
        for _ in 0..2 {
            let waker = std::task::Waker::from(Arc::new(Count(AtomicUsize::new(0))));
            let mut cx = Context::from_waker(&waker);
            assert!(Pin::new(&mut drain).poll(&mut cx).is_pending());
            assert!(Pin::new(&mut drain).poll(&mut cx).is_pending());
        }
        assert_eq!(polls.load(Ordering::SeqCst), 2, "once per new waker");
    }
}
