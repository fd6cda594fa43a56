//! HTTP/2 connections, served with the `h2` crate directly.
//!
//! Why not hyper's HTTP/2 server: it spawns a task for every stream and pipes each response
//! through its own glue, so a request cost a spawn, a task, and wakeups between the stream's
//! task and the connection's. Here every stream of a connection is a future in one
//! `FuturesUnordered` inside the connection's task: a stream's progress wakes that task, which
//! polls the ready streams first and then the connection, so the frames of every response that
//! became ready together leave in one write (and one TLS record).
//!
//! What it keeps from hyper's server: its window and buffer sizes, the stream limit and the
//! header-list limit; a reset from the client cancels the request (and so the upstream
//! exchange); response data waits for flow-control capacity before it is handed to `h2`, so a
//! slow reader holds the upstream back instead of filling memory (all but the last frame: the
//! upstream has finished, its bytes are held either way); connection-specific headers
//! never go out (RFC 9113 §8.2.2); a response made here gets a `Date`.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use h2::server::SendResponse;
use h2::{Reason, RecvStream};
use http::header::{CONTENT_LENGTH, DATE};
use http::{HeaderValue, Request, Response};
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tracing::{debug, trace};

use super::conn::{drain_signal, InFlight, LastHeaderFp};
use super::info::ConnInfo;
use super::io::Activity;
use super::Shared;
use crate::config::Config;
use crate::forward::body::{BoxError, ProxyBody};
use crate::forward::headers::strip_hop_by_hop;

/// hyper's HTTP/2 server defaults, kept so that clients see the same settings as before.
const STREAM_WINDOW: u32 = 1024 * 1024;
const CONNECTION_WINDOW: u32 = 1024 * 1024;
const MAX_SEND_BUFFER: usize = 400 * 1024;
/// Streams a client may reset before the server accepts them (the "rapid reset" bound).
const MAX_PENDING_ACCEPT_RESETS: usize = 20;
const MAX_LOCAL_ERROR_RESETS: usize = 1024;

fn builder(cfg: &Config) -> h2::server::Builder {
    let mut b = h2::server::Builder::new();
    b.initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_send_buffer_size(MAX_SEND_BUFFER)
        .max_concurrent_streams(256)
        .max_header_list_size(u32::try_from(cfg.server.max_header_bytes).unwrap_or(u32::MAX))
        .max_pending_accept_reset_streams(MAX_PENDING_ACCEPT_RESETS)
        .max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESETS));
    b
}

/// Serves one HTTP/2 connection (after TLS and ALPN `h2`) to its end.
pub(super) async fn serve<I>(
    shared: Arc<Shared>,
    io: I,
    info: Arc<ConnInfo>,
    activity: Activity,
    shutdown: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let idle = shared.cfg.timeouts.idle;
    // The client preface and SETTINGS: a client that sends nothing is idle.
    let handshake = builder(&shared.cfg).handshake::<_, Bytes>(io);
    let mut conn = match tokio::time::timeout(idle, handshake).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            debug!(peer = %info.peer, error = %e, "HTTP/2 handshake failed");
            return;
        }
        Err(_) => {
            debug!(peer = %info.peer, "no HTTP/2 preface before the idle timeout");
            return;
        }
    };
    let in_flight = Arc::new(AtomicUsize::new(0));
    let last_fp = LastHeaderFp::default();
    let mut streams = FuturesUnordered::new();
    let mut drain = drain_signal(idle, activity, in_flight.clone(), shutdown);
    let mut draining = false;
    loop {
        tokio::select! {
            // Streams first: what they hand to `h2` goes out when the connection is polled next.
            biased;
            Some(()) = streams.next(), if !streams.is_empty() => {}
            accepted = conn.accept() => match accepted {
                Some(Ok((req, respond))) => {
                    let guard = InFlight::enter(&in_flight);
                    // Boxed where it is made: the set's task node then takes a pointer, not a
                    // move of the whole future (~2 KB, copied twice on the way in).
                    streams.push(Box::pin(stream(&shared, req, respond, &info, &last_fp, guard)));
                }
                Some(Err(e)) => {
                    trace!(error = %e, "HTTP/2 connection ended with error");
                    break;
                }
                // Closed: after a GOAWAY, once every stream has finished.
                None => break,
            },
            () = &mut drain, if !draining => {
                conn.graceful_shutdown();
                draining = true;
            }
        }
    }
    // Streams still here can no longer reach the client; dropping them drops their upstream
    // exchanges and in-flight guards.
    drop(streams);
}

/// One stream: the request through the gate and upstream, the response back.
///
/// A plain function returning an `async move` block, not an `async fn`: the future is moved
/// whole into the connection's set, and an `async fn` keeps its arguments twice (as passed and
/// as bound), the request (264 bytes) among them.
fn stream<'a>(
    shared: &'a Shared,
    req: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    info: &'a ConnInfo,
    last_fp: &'a LastHeaderFp,
    guard: InFlight,
) -> impl Future<Output = ()> + 'a {
    let length = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let mut req = req.map(|recv| H2Body::new(recv, length));
    async move {
        let resp = tokio::select! {
            biased;
            resp = shared.handle(&mut req, info, last_fp, guard) => resp,
            reset = poll_fn(|cx| respond.poll_reset(cx)) => {
                trace!(?reset, "stream reset by the client before the response");
                return;
            }
        };
        // The request, and with it the stream's receiving half, is not kept while the response
        // is sent: a body the gate refused unread no longer holds window and buffered data.
        drop(req);
        send(respond, resp).await;
    }
}

/// Sends the response head, then its body as flow control allows.
async fn send(mut respond: SendResponse<Bytes>, resp: Response<ProxyBody>) {
    let (mut parts, mut body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    if !parts.headers.contains_key(DATE) {
        let now = httpdate::fmt_http_date(std::time::SystemTime::now());
        if let Ok(v) = HeaderValue::try_from(now) {
            parts.headers.insert(DATE, v);
        }
    }
    let end = body.is_end_stream();
    let mut tx = match respond.send_response(Response::from_parts(parts, ()), end) {
        Ok(tx) => tx,
        Err(e) => {
            trace!(error = %e, "response head not sent");
            return;
        }
    };
    if end {
        return;
    }
    loop {
        // The next body frame, unless the client resets the stream first. The body is asked
        // first: a frame that is ready goes on without a look at the stream's state (each call
        // into `h2` takes its connection lock), and `send_data` fails on a reset stream.
        let next = poll_fn(
            |cx: &mut Context<'_>| match Pin::new(&mut body).poll_frame(cx) {
                Poll::Ready(frame) => Poll::Ready(Some(frame)),
                Poll::Pending if tx.poll_reset(cx).is_ready() => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
        )
        .await;
        let frame = match next {
            None => return,
            Some(None) => {
                let _ = tx.send_data(Bytes::new(), true);
                return;
            }
            Some(Some(Err(e))) => {
                debug!(error = %e, "response body failed; resetting the stream");
                tx.send_reset(Reason::INTERNAL_ERROR);
                return;
            }
            Some(Some(Ok(f))) => f,
        };
        let data = match frame.into_data() {
            Ok(d) => d,
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    let _ = tx.send_trailers(trailers);
                }
                return;
            }
        };
        let end = body.is_end_stream();
        if !data.is_empty() && !end {
            // Hand data to h2 only with some window: it would buffer the rest without limit.
            // The last frame goes at once: its bytes are held until the client's window takes
            // them either way, here or in `h2`, and the upstream exchange is already over.
            tx.reserve_capacity(data.len());
            while tx.capacity() == 0 {
                match poll_fn(|cx| tx.poll_capacity(cx)).await {
                    Some(Ok(_)) => {}
                    _ => return,
                }
            }
        } else if data.is_empty() && !end {
            continue;
        }
        if tx.send_data(data, end).is_err() || end {
            return;
        }
    }
}

/// A request body from an HTTP/2 stream, with its flow-control window given back as it is
/// read.
pub struct H2Body {
    recv: RecvStream,
    length: Option<u64>,
    data_done: bool,
}

impl H2Body {
    /// `length`: the request's `Content-Length`, if any (`h2` itself checks that the DATA
    /// frames add up to it).
    fn new(recv: RecvStream, length: Option<u64>) -> Self {
        Self {
            recv,
            length,
            data_done: false,
        }
    }
}

impl Body for H2Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if !this.data_done {
            match this.recv.poll_data(cx) {
                Poll::Ready(Some(Ok(data))) => {
                    let _ = this.recv.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
                Poll::Ready(None) => this.data_done = true,
                Poll::Pending => return Poll::Pending,
            }
        }
        match this.recv.poll_trailers(cx) {
            Poll::Ready(Ok(Some(t))) => Poll::Ready(Some(Ok(Frame::trailers(t)))),
            Poll::Ready(Ok(None)) => Poll::Ready(None),
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e.into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match self.length {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}
