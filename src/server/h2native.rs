//! HTTP/2 connections served by portcullis' own frame layer ([`crate::http2`]).
//!
//! Why not the `h2` crate (still available: `[server] http2 = "h2"`, see `super::h2`): it
//! keeps every stream's state behind one connection-wide `Mutex` that each request and
//! response call takes, moves frames by value through several queues, and hashes every
//! response header into a dynamic HPACK table. callgrind counted ~15k of the ~36k
//! instructions and ~55 of the ~154 atomic operations of a proxied HTTP/2 request inside it
//! (docs/benchmarks.md). Here one task owns the whole connection: frames are parsed in place
//! from the read buffer, request header blocks are decoded straight into the request, and
//! responses are encoded (static-table indices and raw literals, no dynamic table) into one
//! output buffer that goes out in one write per round.
//!
//! What a server must do and this one does (RFC 9113): the preface and SETTINGS exchange;
//! stream states and identifiers (new streams odd and increasing, a lower unused id a
//! PROTOCOL_ERROR; frames on streams this side reset, or sent after its GOAWAY, ignored;
//! PUSH_PROMISE refused); flow control both ways (request bodies are given window back only as
//! the upstream reads them, padding at once, so a connection buffers at most 1 MiB; response
//! data is pulled from the upstream only while the client's window has room, one chunk held,
//! and a response's end needs no window); SETTINGS, PING,
//! WINDOW_UPDATE, RST_STREAM, GOAWAY and PRIORITY (read and ignored); header blocks split over
//! CONTINUATION frames, bounded; request validation (pseudo-headers, lowercase names, no
//! connection-specific fields, `content-length` against the DATA received); a stream limit
//! (REFUSED_STREAM beyond 256); bounds on client resets, on errors a client provokes and on
//! frames that carry no request (GOAWAY ENHANCE_YOUR_CALM); cookie fields joined for HTTP/1.1;
//! at most 32 rounds per poll before the task yields; graceful shutdown with GOAWAY; the idle
//! timeout of
//! `super::conn::drain_signal`. Reading stops while more than 256 KiB wait to be written, so a
//! client that does not read cannot make the connection queue answers (PING, SETTINGS) without
//! bound.

use std::collections::{HashMap, VecDeque};
use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, COOKIE, DATE, TE};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tracing::{debug, trace};

use super::conn::{drain_signal, InFlight, LastHeaderFp};
use super::info::ConnInfo;
use super::io::Activity;
use super::Shared;
use crate::forward::body::{BoxError, ProxyBody};
use crate::forward::error::error_response;
use crate::forward::headers::strip_hop_by_hop;
use crate::http2::frame::{self, flag, kind, setting, ErrorCode, Head};
use crate::http2::hpack;
use crate::idhash::IdBuild;

/// Each stream's receive window, as hyper's server sets it.
const STREAM_WINDOW: u32 = 1024 * 1024;
/// The connection's receive window: all request bodies of a connection buffer at most this.
const CONNECTION_WINDOW: u32 = 1024 * 1024;
/// Streams a client may have open at once.
const MAX_CONCURRENT: u32 = 256;
/// The largest frame this side accepts (the protocol's default; not raised).
const MAX_FRAME: u32 = frame::DEFAULT_MAX_FRAME;
/// Above this many bytes waiting to be written, no frames are read and no bodies pulled.
const WRITE_HIGH: usize = 256 * 1024;
/// Client resets of unanswered streams tolerated beyond half of the streams opened.
const MAX_CLIENT_RESETS: u32 = 200;
/// Streams this side resets for the client's errors before it closes the connection.
const MAX_LOCAL_RESETS: u32 = 1024;
/// Frames that carry no request (PING, SETTINGS, PRIORITY, empty DATA, unknown types) allowed
/// per connection, beyond 8 per stream opened.
const IDLE_FRAMES: u32 = 10_000;
/// Rounds (read, streams, write) in one poll of the connection before it yields.
const MAX_ROUNDS: usize = 32;
/// HPACK dynamic table size this side's decoder allows (the protocol's default).
const HEADER_TABLE_SIZE: usize = 4096;

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
    let in_flight = Arc::new(AtomicUsize::new(0));
    let last_fp = LastHeaderFp::default();
    let max_header_list = shared.cfg.server.max_header_bytes;
    let mut conn = Conn::new(io, &shared, &info, &last_fp, &in_flight, max_header_list);
    let mut drain = drain_signal(idle, activity, in_flight.clone(), shutdown);
    poll_fn(|cx| {
        if !conn.going_away && Pin::new(&mut drain).poll(cx).is_ready() {
            conn.go_away(ErrorCode::NoError);
        }
        conn.poll(cx)
    })
    .await;
}

/// Streams by id (`crate::idhash` spreads the small odd ids).
type IdMap<V> = HashMap<u32, V, IdBuild>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

// ---------------------------------------------------------------------------------------------
// The streams' futures, polled by the connection's task.

type StreamFut<'a> = Pin<Box<dyn Future<Output = Response<ProxyBody>> + Send + 'a>>;

/// What a slot runs: the request through the gate and upstream, then the response body.
enum Task<'a> {
    Handle(StreamFut<'a>),
    Body(ProxyBody),
}

/// Slot indices whose futures were woken, and the connection task to wake.
#[derive(Default)]
struct ReadyInner {
    list: Vec<usize>,
    task: Option<Waker>,
}

struct SlotWake {
    idx: usize,
    queued: AtomicBool,
    ready: Arc<Mutex<ReadyInner>>,
}

impl Wake for SlotWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            let mut r = lock(&self.ready);
            r.list.push(self.idx);
            if let Some(t) = &r.task {
                t.wake_by_ref();
            }
        }
    }
}

/// The futures of a connection's streams, each in a slot with a waker of its own (made once
/// per slot and reused), so a wake names the slot to poll and a stream can be dropped by id.
struct StreamSet<'a> {
    slots: Vec<Option<(u32, Task<'a>)>>,
    wakes: Vec<(Arc<SlotWake>, Waker)>,
    free: Vec<usize>,
    ready: Arc<Mutex<ReadyInner>>,
    /// Slots to poll: new ones, ones whose wake arrived, ones given window again.
    todo: Vec<usize>,
}

impl<'a> StreamSet<'a> {
    fn new() -> Self {
        Self {
            slots: Vec::new(),
            wakes: Vec::new(),
            free: Vec::new(),
            ready: Arc::default(),
            todo: Vec::new(),
        }
    }
    fn insert(&mut self, id: u32, task: Task<'a>) -> usize {
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                let i = self.slots.len();
                self.slots.push(None);
                let w = Arc::new(SlotWake {
                    idx: i,
                    queued: AtomicBool::new(false),
                    ready: self.ready.clone(),
                });
                self.wakes.push((w.clone(), Waker::from(w)));
                i
            }
        };
        if let Some(s) = self.slots.get_mut(idx) {
            *s = Some((id, task));
        }
        self.todo.push(idx);
        idx
    }
    fn remove(&mut self, idx: usize) -> Option<Task<'a>> {
        let (_, task) = self.slots.get_mut(idx)?.take()?;
        self.free.push(idx);
        Some(task)
    }
    /// Moves the woken slots to `todo` and (re)registers the connection task's waker.
    fn collect_woken(&mut self, cx: &Context<'_>) {
        let mut r = lock(&self.ready);
        if !r.task.as_ref().is_some_and(|t| t.will_wake(cx.waker())) {
            r.task = Some(cx.waker().clone());
        }
        self.todo.append(&mut r.list);
    }
}

// ---------------------------------------------------------------------------------------------
// Request bodies.

/// A request body's state, shared by the connection and the body.
type RecvShared = Arc<Mutex<RecvInner>>;

#[derive(Default)]
struct RecvInner {
    chunks: VecDeque<Bytes>,
    /// Bytes in `chunks`.
    buffered: usize,
    /// Bytes read by the body since the connection last looked.
    released: usize,
    end: bool,
    trailers: Option<HeaderMap>,
    reset: bool,
    /// The body was dropped: what arrives for it is discarded.
    dropped: bool,
    waker: Option<Waker>,
}

/// A request body fed by the connection from the stream's DATA frames.
pub struct NativeBody {
    shared: Option<RecvShared>,
    length: Option<u64>,
}

impl NativeBody {
    fn empty() -> Self {
        Self {
            shared: None,
            length: Some(0),
        }
    }
}

impl Body for NativeBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let Some(shared) = &self.shared else {
            return Poll::Ready(None);
        };
        let mut r = lock(shared);
        if let Some(data) = r.chunks.pop_front() {
            r.buffered -= data.len();
            r.released += data.len();
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        if r.reset {
            return Poll::Ready(Some(Err("the client reset the stream".into())));
        }
        if r.end {
            return Poll::Ready(r.trailers.take().map(|t| Ok(Frame::trailers(t))));
        }
        if !r.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            r.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        match &self.shared {
            None => true,
            Some(s) => {
                let r = lock(s);
                r.end && r.chunks.is_empty() && r.trailers.is_none()
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self.length {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

impl Drop for NativeBody {
    fn drop(&mut self) {
        if let Some(s) = &self.shared {
            let mut r = lock(s);
            r.dropped = true;
            r.released += r.buffered;
            r.buffered = 0;
            r.chunks.clear();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The connection.

/// One stream's state, as the connection sees it.
struct Stream {
    slot: Option<usize>,
    /// The client may still send DATA or trailers.
    recv_open: bool,
    body: Option<RecvShared>,
    /// What the client may still send on this stream.
    recv_window: i64,
    /// Read by the upstream, not yet given back to the client.
    recv_release: u32,
    expect_len: Option<u64>,
    received: u64,
    send_window: i64,
    /// Response data waiting for window, and whether it ends the stream.
    pending: Option<(Bytes, bool)>,
    /// The response has not ended.
    send_open: bool,
}

/// A header block still being received (HEADERS without END_HEADERS, then CONTINUATION).
struct Block {
    stream: u32,
    end_stream: bool,
    buf: Vec<u8>,
}

struct Conn<'a, I> {
    io: I,
    shared: &'a Shared,
    info: &'a ConnInfo,
    last_fp: &'a LastHeaderFp,
    in_flight: &'a Arc<AtomicUsize>,
    rbuf: BytesMut,
    wbuf: Vec<u8>,
    wpos: usize,
    /// Bytes were handed to the IO since its last flush.
    unflushed: bool,
    dec: hpack::Decoder,
    enc: hpack::Encoder,
    /// Scratch for encoding a header block.
    hblock: Vec<u8>,
    streams: IdMap<Stream>,
    set: StreamSet<'a>,
    preface: bool,
    settings_seen: bool,
    peer_max_frame: usize,
    peer_initial_window: i64,
    send_window: i64,
    recv_window: i64,
    recv_release: u32,
    /// The highest stream this side took on (named in GOAWAY; never raised after one).
    last_stream: u32,
    /// The highest stream id the client has used: lower unused ids are closed, higher idle.
    max_seen: u32,
    /// Streams this side reset lately: frames the client sent before it saw the reset are
    /// ignored (RFC 9113 §5.1, "closed").
    recent_resets: VecDeque<u32>,
    /// Frames that cost work and carry nothing (empty DATA, PRIORITY, SETTINGS, ...).
    idle_frames: u32,
    max_header_list: usize,
    block: Option<Block>,
    paused: VecDeque<u32>,
    going_away: bool,
    peer_gone: bool,
    read_closed: bool,
    opened: u32,
    client_resets: u32,
    local_resets: u32,
    error: Option<ErrorCode>,
}

/// Why a request could not be made from a header block.
enum Reject {
    /// Malformed (RFC 9113 §8.1.1): reset the stream with PROTOCOL_ERROR.
    Malformed,
    /// Over the header list limit: answer 431.
    TooLarge,
}

impl<'a, I: AsyncRead + AsyncWrite + Unpin> Conn<'a, I> {
    fn new(
        io: I,
        shared: &'a Shared,
        info: &'a ConnInfo,
        last_fp: &'a LastHeaderFp,
        in_flight: &'a Arc<AtomicUsize>,
        max_header_list: usize,
    ) -> Self {
        let mut wbuf = Vec::with_capacity(4096);
        frame::put_settings(
            &mut wbuf,
            &[
                (setting::MAX_CONCURRENT_STREAMS, MAX_CONCURRENT),
                (setting::INITIAL_WINDOW_SIZE, STREAM_WINDOW),
                (
                    setting::MAX_HEADER_LIST_SIZE,
                    u32::try_from(max_header_list).unwrap_or(u32::MAX),
                ),
            ],
        );
        frame::put_window_update(&mut wbuf, 0, CONNECTION_WINDOW - frame::DEFAULT_WINDOW);
        Self {
            io,
            shared,
            info,
            last_fp,
            in_flight,
            rbuf: BytesMut::with_capacity(16 * 1024),
            wbuf,
            wpos: 0,
            unflushed: false,
            dec: hpack::Decoder::new(HEADER_TABLE_SIZE),
            enc: hpack::Encoder::new(),
            hblock: Vec::with_capacity(512),
            streams: IdMap::default(),
            set: StreamSet::new(),
            preface: false,
            settings_seen: false,
            peer_max_frame: frame::DEFAULT_MAX_FRAME as usize,
            peer_initial_window: i64::from(frame::DEFAULT_WINDOW),
            send_window: i64::from(frame::DEFAULT_WINDOW),
            recv_window: i64::from(CONNECTION_WINDOW),
            recv_release: 0,
            last_stream: 0,
            max_seen: 0,
            recent_resets: VecDeque::new(),
            idle_frames: 0,
            max_header_list,
            block: None,
            paused: VecDeque::new(),
            going_away: false,
            peer_gone: false,
            read_closed: false,
            opened: 0,
            client_resets: 0,
            local_resets: 0,
            error: None,
        }
    }

    /// Drives the connection; `Ready` when it is over.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        for _ in 0..MAX_ROUNDS {
            let mut progress = false;
            if self.error.is_none() && !self.read_closed && self.backlog() < WRITE_HIGH {
                match self.poll_read(cx) {
                    Poll::Ready(Ok(true)) => progress = true,
                    Poll::Ready(Ok(false)) => {
                        // The client closed its side: nothing it asked for can reach it.
                        trace!(peer = %self.info.peer, "HTTP/2 client closed the connection");
                        return Poll::Ready(());
                    }
                    Poll::Ready(Err(e)) => {
                        trace!(error = %e, "HTTP/2 connection read failed");
                        return Poll::Ready(());
                    }
                    Poll::Pending => {}
                }
            }
            if self.error.is_none() {
                progress |= self.poll_streams(cx);
            }
            if let Some(code) = self.error {
                return self.poll_close(cx, code);
            }
            let queued = self.backlog();
            match self.poll_write(cx) {
                Poll::Ready(Err(e)) => {
                    trace!(error = %e, "HTTP/2 connection write failed");
                    return Poll::Ready(());
                }
                Poll::Ready(Ok(())) | Poll::Pending => {}
            }
            // Output that left may let reading and streams held back by it go on.
            progress |= queued >= WRITE_HIGH && self.backlog() < queued;
            let idle_end = (self.going_away || self.peer_gone) && self.streams.is_empty();
            if idle_end && self.backlog() == 0 {
                return self.poll_close(cx, ErrorCode::NoError);
            }
            if !progress {
                return Poll::Pending;
            }
        }
        // Still busy: let the runtime's other tasks (and its IO and timers) run first.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn backlog(&self) -> usize {
        self.wbuf.len() - self.wpos
    }

    /// Sends the final GOAWAY (once), writes what is queued and closes the TLS session.
    fn poll_close(&mut self, cx: &mut Context<'_>, code: ErrorCode) -> Poll<()> {
        if !self.going_away || code != ErrorCode::NoError {
            if code != ErrorCode::NoError {
                debug!(peer = %self.info.peer, code = code.name(), "HTTP/2 connection error");
                metrics::counter!("portcullis_http2_errors_total", "scope" => "connection", "code" => code.name())
                    .increment(1);
            }
            frame::put_goaway(&mut self.wbuf, self.last_stream, code);
            self.going_away = true;
            // Once only: the next round finds `error` taken and the streams gone.
            self.error = None;
            self.streams.clear();
            for i in 0..self.set.slots.len() {
                self.set.remove(i);
            }
            self.read_closed = true;
        }
        match self.poll_write(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(_)) => return Poll::Ready(()),
            Poll::Pending => return Poll::Pending,
        }
        match Pin::new(&mut self.io).poll_shutdown(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(_) => Poll::Ready(()),
        }
    }

    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.wpos < self.wbuf.len() {
            match Pin::new(&mut self.io).poll_write(cx, &self.wbuf[self.wpos..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    self.wpos += n;
                    self.unflushed = true;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        self.wbuf.clear();
        self.wpos = 0;
        if self.unflushed {
            std::task::ready!(Pin::new(&mut self.io).poll_flush(cx))?;
            self.unflushed = false;
        }
        Poll::Ready(Ok(()))
    }

    /// Reads and handles frames until the socket has no more; `Ok(false)` at the end of input.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        let mut got = false;
        loop {
            self.handle_buffered();
            if self.error.is_some() || self.backlog() >= WRITE_HIGH {
                return Poll::Ready(Ok(true));
            }
            if self.rbuf.capacity() - self.rbuf.len() < 4096 {
                self.rbuf.reserve(16 * 1024);
            }
            match tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.rbuf) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Ok(false)),
                Poll::Ready(Ok(_)) => got = true,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending if got => return Poll::Ready(Ok(true)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Handles every whole frame in the read buffer.
    fn handle_buffered(&mut self) {
        if !self.preface {
            if self.rbuf.len() < frame::PREFACE.len() {
                if !frame::PREFACE.starts_with(&self.rbuf) {
                    self.error = Some(ErrorCode::Protocol);
                }
                return;
            }
            if &self.rbuf[..frame::PREFACE.len()] != frame::PREFACE {
                self.error = Some(ErrorCode::Protocol);
                return;
            }
            self.rbuf.advance(frame::PREFACE.len());
            self.preface = true;
        }
        while self.error.is_none() && self.backlog() < WRITE_HIGH {
            let Some(head) = Head::parse(&self.rbuf) else {
                return;
            };
            if head.len > MAX_FRAME {
                self.error = Some(ErrorCode::FrameSize);
                return;
            }
            let total = frame::HEADER_LEN + head.len as usize;
            if self.rbuf.len() < total {
                self.rbuf.reserve(total - self.rbuf.len());
                return;
            }
            if self.block.is_some() && head.kind != kind::CONTINUATION {
                // Nothing may come between a HEADERS frame and its CONTINUATIONs.
                self.error = Some(ErrorCode::Protocol);
                return;
            }
            if !self.settings_seen && (head.kind != kind::SETTINGS || head.has(flag::ACK)) {
                // The client preface ends with a SETTINGS frame (RFC 9113 §3.4).
                self.error = Some(ErrorCode::Protocol);
                return;
            }
            if head.kind == kind::DATA {
                let mut data = self.rbuf.split_to(total);
                data.advance(frame::HEADER_LEN);
                self.on_data(head, data.freeze());
            } else {
                let buf = std::mem::take(&mut self.rbuf);
                self.on_frame(head, &buf[frame::HEADER_LEN..total]);
                self.rbuf = buf;
                self.rbuf.advance(total);
            }
        }
    }

    fn on_frame(&mut self, head: Head, payload: &[u8]) {
        match head.kind {
            kind::HEADERS => self.on_headers(head, payload),
            kind::CONTINUATION => self.on_continuation(head, payload),
            kind::PRIORITY => {
                self.count_idle_frame();
                if head.stream == 0 {
                    self.error = Some(ErrorCode::Protocol);
                } else if head.len != 5 {
                    self.reset_stream(head.stream, ErrorCode::FrameSize);
                }
            }
            kind::RST_STREAM => self.on_rst(head, payload),
            kind::SETTINGS => self.on_settings(head, payload),
            kind::PUSH_PROMISE => self.error = Some(ErrorCode::Protocol),
            kind::PING => {
                if head.stream != 0 {
                    self.error = Some(ErrorCode::Protocol);
                } else if let Ok(p) = <&[u8; 8]>::try_from(payload) {
                    if !head.has(flag::ACK) {
                        self.count_idle_frame();
                        frame::put_ping_ack(&mut self.wbuf, p);
                    }
                } else {
                    self.error = Some(ErrorCode::FrameSize);
                }
            }
            kind::GOAWAY => {
                if head.stream != 0 {
                    self.error = Some(ErrorCode::Protocol);
                } else if payload.len() < 8 {
                    self.error = Some(ErrorCode::FrameSize);
                } else {
                    self.peer_gone = true;
                }
            }
            kind::WINDOW_UPDATE => self.on_window_update(head, payload),
            // Unknown frame types are ignored (RFC 9113 §4.1), but not without bound.
            _ => self.count_idle_frame(),
        }
    }

    fn on_settings(&mut self, head: Head, payload: &[u8]) {
        if head.stream != 0 {
            self.error = Some(ErrorCode::Protocol);
            return;
        }
        if head.has(flag::ACK) {
            if !payload.is_empty() {
                self.error = Some(ErrorCode::FrameSize);
            }
            return;
        }
        if payload.len() % 6 != 0 {
            self.error = Some(ErrorCode::FrameSize);
            return;
        }
        self.settings_seen = true;
        self.count_idle_frame();
        for s in payload.chunks_exact(6) {
            let id = u16::from_be_bytes([s[0], s[1]]);
            let v = u32::from_be_bytes([s[2], s[3], s[4], s[5]]);
            match id {
                setting::ENABLE_PUSH if v > 1 => {
                    self.error = Some(ErrorCode::Protocol);
                    return;
                }
                setting::INITIAL_WINDOW_SIZE => {
                    if v > frame::MAX_WINDOW {
                        self.error = Some(ErrorCode::FlowControl);
                        return;
                    }
                    let delta = i64::from(v) - self.peer_initial_window;
                    self.peer_initial_window = i64::from(v);
                    for st in self.streams.values_mut() {
                        st.send_window += delta;
                        if st.send_window > i64::from(frame::MAX_WINDOW) {
                            self.error = Some(ErrorCode::FlowControl);
                            return;
                        }
                    }
                    if delta > 0 {
                        self.resume_all();
                    }
                }
                setting::MAX_FRAME_SIZE => {
                    if !(frame::DEFAULT_MAX_FRAME..=frame::MAX_MAX_FRAME).contains(&v) {
                        self.error = Some(ErrorCode::Protocol);
                        return;
                    }
                    self.peer_max_frame = v as usize;
                }
                // The encoder never uses the dynamic table, so the peer's table size does
                // not matter; the rest are advisory for a server or unknown (ignored).
                _ => {}
            }
        }
        frame::put_settings_ack(&mut self.wbuf);
    }

    fn on_window_update(&mut self, head: Head, payload: &[u8]) {
        let Ok(b) = <[u8; 4]>::try_from(payload) else {
            self.error = Some(ErrorCode::FrameSize);
            return;
        };
        let inc = i64::from(u32::from_be_bytes(b) & frame::MAX_WINDOW);
        if head.stream == 0 {
            if inc == 0 {
                self.error = Some(ErrorCode::Protocol);
                return;
            }
            self.send_window += inc;
            if self.send_window > i64::from(frame::MAX_WINDOW) {
                self.error = Some(ErrorCode::FlowControl);
                return;
            }
            self.resume_all();
            return;
        }
        if head.stream > self.max_seen {
            self.error = Some(ErrorCode::Protocol);
            return;
        }
        let Some(st) = self.streams.get_mut(&head.stream) else {
            return; // closed: ignored
        };
        if inc == 0 {
            self.reset_stream(head.stream, ErrorCode::Protocol);
            return;
        }
        st.send_window += inc;
        if st.send_window > i64::from(frame::MAX_WINDOW) {
            self.reset_stream(head.stream, ErrorCode::FlowControl);
            return;
        }
        if st.pending.is_some() {
            self.resume(head.stream);
        }
    }

    fn on_rst(&mut self, head: Head, payload: &[u8]) {
        if head.stream == 0 {
            self.error = Some(ErrorCode::Protocol);
            return;
        }
        if payload.len() != 4 {
            self.error = Some(ErrorCode::FrameSize);
            return;
        }
        if head.stream > self.max_seen {
            self.error = Some(ErrorCode::Protocol);
            return;
        }
        let Some(st) = self.streams.get(&head.stream) else {
            return;
        };
        if matches!(st.slot, Some(i) if matches!(self.set.slots.get(i), Some(Some((_, Task::Handle(_))))))
        {
            // Reset before the answer: the "rapid reset" pattern when it is most of them.
            self.client_resets += 1;
            if self.client_resets > MAX_CLIENT_RESETS && self.client_resets * 2 > self.opened {
                self.error = Some(ErrorCode::EnhanceYourCalm);
            }
        }
        trace!(stream = head.stream, "stream reset by the client");
        self.close_stream(head.stream);
    }

    fn on_data(&mut self, head: Head, payload: Bytes) {
        let len = i64::from(head.len);
        if head.stream == 0 {
            self.error = Some(ErrorCode::Protocol);
            return;
        }
        // The whole frame, padding included, counts against both windows (RFC 9113 §6.9.1).
        self.recv_window -= len;
        if self.recv_window < 0 {
            self.error = Some(ErrorCode::FlowControl);
            return;
        }
        let data = if head.has(flag::PADDED) {
            match frame::unpad(&payload) {
                Some(d) => payload.slice_ref(d),
                None => {
                    self.error = Some(ErrorCode::Protocol);
                    return;
                }
            }
        } else {
            payload
        };
        if head.stream > self.max_seen {
            self.error = Some(ErrorCode::Protocol);
            return;
        }
        let Some(st) = self.streams.get_mut(&head.stream) else {
            // A stream already closed here (reset, or answered): discarded.
            self.release_connection(head.len);
            return;
        };
        if !st.recv_open {
            self.release_connection(head.len);
            self.reset_stream(head.stream, ErrorCode::StreamClosed);
            return;
        }
        st.recv_window -= len;
        if st.recv_window < 0 {
            self.release_connection(head.len);
            self.reset_stream(head.stream, ErrorCode::FlowControl);
            return;
        }
        // Padding is given back at once, to the stream and the connection; the data when the
        // upstream has read it.
        let pad = head.len - data.len() as u32;
        self.release_stream(head.stream, pad);
        if data.is_empty() && !head.has(flag::END_STREAM) {
            self.count_idle_frame();
        }
        let Some(st) = self.streams.get_mut(&head.stream) else {
            return;
        };
        st.received += data.len() as u64;
        let end = head.has(flag::END_STREAM);
        if st
            .expect_len
            .is_some_and(|n| st.received > n || (end && st.received != n))
        {
            self.release_connection(data.len() as u32);
            self.reset_stream(head.stream, ErrorCode::Protocol);
            return;
        }
        let discarded = match &st.body {
            Some(b) => {
                let mut r = lock(b);
                let n = data.len();
                if r.dropped {
                    Some(n)
                } else {
                    if n > 0 {
                        r.buffered += n;
                        r.chunks.push_back(data);
                    }
                    r.end |= end;
                    if let Some(w) = r.waker.take() {
                        w.wake();
                    }
                    None
                }
            }
            None => Some(data.len()),
        };
        if let Some(n) = discarded {
            self.release_stream(head.stream, n as u32);
        }
        if end {
            self.end_recv(head.stream);
        }
    }

    fn on_headers(&mut self, head: Head, payload: &[u8]) {
        if head.stream == 0 || head.stream % 2 == 0 {
            self.error = Some(ErrorCode::Protocol);
            return;
        }
        let mut p = payload;
        if head.has(flag::PADDED) {
            match frame::unpad(p) {
                Some(q) => p = q,
                None => {
                    self.error = Some(ErrorCode::Protocol);
                    return;
                }
            }
        }
        if head.has(flag::PRIORITY) {
            match p.get(5..) {
                Some(q) => p = q,
                None => {
                    self.error = Some(ErrorCode::FrameSize);
                    return;
                }
            }
        }
        let end_stream = head.has(flag::END_STREAM);
        if head.has(flag::END_HEADERS) {
            self.on_block(head.stream, end_stream, p);
        } else {
            if p.len() > self.block_limit() {
                self.error = Some(ErrorCode::EnhanceYourCalm);
                return;
            }
            self.block = Some(Block {
                stream: head.stream,
                end_stream,
                buf: p.to_vec(),
            });
        }
    }

    /// The most header block bytes (compressed) gathered from CONTINUATION frames.
    fn block_limit(&self) -> usize {
        self.max_header_list.saturating_mul(2).max(32 * 1024)
    }

    fn on_continuation(&mut self, head: Head, payload: &[u8]) {
        let limit = self.block_limit();
        let Some(b) = self.block.as_mut().filter(|b| b.stream == head.stream) else {
            self.error = Some(ErrorCode::Protocol);
            return;
        };
        if b.buf.len() + payload.len() > limit {
            // An endless header block (the "CONTINUATION flood").
            self.error = Some(ErrorCode::EnhanceYourCalm);
            return;
        }
        b.buf.extend_from_slice(payload);
        if head.has(flag::END_HEADERS) {
            if let Some(b) = self.block.take() {
                self.on_block(b.stream, b.end_stream, &b.buf);
            }
        }
    }

    /// A complete header block: a new request, or trailers of one.
    fn on_block(&mut self, id: u32, end_stream: bool, block: &[u8]) {
        if id <= self.max_seen {
            if self.streams.contains_key(&id) {
                self.on_trailers(id, end_stream, block);
            } else if self.recent_resets.contains(&id) || (self.going_away && id > self.last_stream)
            {
                // Sent before the client saw our reset or GOAWAY: ignored, decoded all the same.
                self.discard_block(block);
            } else {
                // A stream that was used and closed, or skipped (§5.1.1): not a new one.
                self.error = Some(ErrorCode::Protocol);
            }
            return;
        }
        self.max_seen = id;
        let ignored = self.going_away || self.peer_gone;
        if ignored || self.streams.len() >= MAX_CONCURRENT as usize {
            // Decoded all the same: the HPACK table must stay in step with the client's.
            if !self.discard_block(block) || ignored {
                // After GOAWAY a new stream is not processed (the client may retry it
                // elsewhere), and `last_stream` stays as the GOAWAY named it.
                return;
            }
            self.last_stream = id;
            self.local_error_reset(id, ErrorCode::RefusedStream);
            return;
        }
        self.last_stream = id;
        let decoded = self.decode_request(block, end_stream);
        if self.error.is_some() {
            return;
        }
        self.opened += 1;
        let (req, body) = match decoded {
            Ok(r) => r,
            Err(Reject::Malformed) => {
                self.local_error_reset(id, ErrorCode::Protocol);
                return;
            }
            Err(Reject::TooLarge) => {
                let resp = error_response(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "invalid_request_error",
                    "The request's headers are too large.",
                );
                self.open_stream(
                    id,
                    !end_stream,
                    None,
                    None,
                    Task::Handle(Box::pin(std::future::ready(resp))),
                );
                return;
            }
        };
        let expect_len = req.body().length.filter(|_| !end_stream);
        let guard = InFlight::enter(self.in_flight);
        let fut = stream_future(self.shared, req, self.info, self.last_fp, guard);
        self.open_stream(id, !end_stream, body, expect_len, Task::Handle(fut));
    }

    /// Counts a frame that makes work without carrying a request (PING, SETTINGS, PRIORITY,
    /// empty DATA, unknown types): past [`IDLE_FRAMES`] plus a few per stream opened, the
    /// client is flooding (CVE-2019-9512, -9515, -9518) and the connection ends.
    fn count_idle_frame(&mut self) {
        self.idle_frames += 1;
        if self.idle_frames > IDLE_FRAMES.saturating_add(self.opened.saturating_mul(8)) {
            self.error = Some(ErrorCode::EnhanceYourCalm);
        }
    }

    /// Decodes a header block whose fields are not wanted; `false` (and COMPRESSION_ERROR)
    /// when it does not decode.
    fn discard_block(&mut self, block: &[u8]) -> bool {
        if self.dec.decode(block, |_, _| {}).is_err() {
            self.error = Some(ErrorCode::Compression);
            return false;
        }
        true
    }

    fn open_stream(
        &mut self,
        id: u32,
        recv_open: bool,
        body: Option<RecvShared>,
        expect_len: Option<u64>,
        task: Task<'a>,
    ) {
        let slot = self.set.insert(id, task);
        self.streams.insert(
            id,
            Stream {
                slot: Some(slot),
                recv_open,
                body,
                recv_window: i64::from(STREAM_WINDOW),
                recv_release: 0,
                expect_len,
                received: 0,
                send_window: self.peer_initial_window,
                pending: None,
                send_open: true,
            },
        );
    }

    fn on_trailers(&mut self, id: u32, end_stream: bool, block: &[u8]) {
        let mut trailers = HeaderMap::new();
        let mut bad = false;
        let mut size = 0usize;
        let limit = self.max_header_list;
        let res = self.dec.decode(block, |n, v| {
            size += n.len() + v.len() + 32;
            if bad || size > limit {
                bad = true;
                return;
            }
            match (HeaderName::from_lowercase(n), HeaderValue::from_bytes(v)) {
                (Ok(n), Ok(v)) if !n.as_str().starts_with(':') => {
                    trailers.append(n, v);
                }
                _ => bad = true,
            }
        });
        if res.is_err() {
            self.error = Some(ErrorCode::Compression);
            return;
        }
        let Some(st) = self.streams.get_mut(&id) else {
            return;
        };
        if !st.recv_open {
            self.reset_stream(id, ErrorCode::StreamClosed);
            return;
        }
        if !end_stream || bad || st.expect_len.is_some_and(|n| n != st.received) {
            self.local_error_reset(id, ErrorCode::Protocol);
            return;
        }
        if let Some(b) = &st.body {
            let mut r = lock(b);
            r.trailers = Some(trailers);
            r.end = true;
            if let Some(w) = r.waker.take() {
                w.wake();
            }
        }
        self.end_recv(id);
    }

    /// Decodes a request's header block. An HPACK failure sets the connection error.
    fn decode_request(
        &mut self,
        block: &[u8],
        end_stream: bool,
    ) -> Result<(Request<NativeBody>, Option<RecvShared>), Reject> {
        let mut method: Option<Method> = None;
        let mut scheme: Option<Scheme> = None;
        let mut authority: Option<Authority> = None;
        let mut path: Option<PathAndQuery> = None;
        let mut headers = HeaderMap::with_capacity(16);
        let mut regular = false;
        let mut bad = false;
        let mut cookies = 0usize;
        let mut size = 0usize;
        let limit = self.max_header_list;
        let res = self.dec.decode(block, |n, v| {
            size += n.len() + v.len() + 32;
            if bad || size > limit {
                return;
            }
            if let Some(pseudo) = n.strip_prefix(b":") {
                if regular {
                    bad = true;
                    return;
                }
                let dup = match pseudo {
                    b"method" => method
                        .replace(Method::from_bytes(v).unwrap_or_else(|_| {
                            bad = true;
                            Method::GET
                        }))
                        .is_some(),
                    b"scheme" => scheme
                        .replace(Scheme::try_from(v).unwrap_or_else(|_| {
                            bad = true;
                            Scheme::HTTPS
                        }))
                        .is_some(),
                    b"authority" => match Authority::try_from(v) {
                        Ok(a) => authority.replace(a).is_some(),
                        Err(_) => true,
                    },
                    b"path" => match PathAndQuery::try_from(v) {
                        Ok(p) if !v.is_empty() => path.replace(p).is_some(),
                        _ => true,
                    },
                    _ => true,
                };
                bad |= dup;
                return;
            }
            regular = true;
            let Ok(name) = HeaderName::from_lowercase(n) else {
                bad = true;
                return;
            };
            if is_connection_specific(&name) || (name == TE && v != b"trailers") {
                bad = true;
                return;
            }
            if v.first().is_some_and(|&b| b == b' ' || b == b'\t')
                || v.last().is_some_and(|&b| b == b' ' || b == b'\t')
            {
                bad = true; // RFC 9113 §8.2.1: no whitespace around a value
                return;
            }
            cookies += usize::from(name == COOKIE);
            match HeaderValue::from_bytes(v) {
                Ok(v) => {
                    headers.append(name, v);
                }
                Err(_) => bad = true,
            }
        });
        if let Err(e) = res {
            debug!(peer = %self.info.peer, error = %e, "HPACK decoding failed");
            self.error = Some(ErrorCode::Compression);
            return Err(Reject::Malformed);
        }
        if size > limit {
            return Err(Reject::TooLarge);
        }
        let Some(method) = method else {
            return Err(Reject::Malformed);
        };
        if bad || method == Method::CONNECT {
            // CONNECT (RFC 9113 §8.5) is not proxied: tunnels have no place in front of an API.
            return Err(Reject::Malformed);
        }
        let (Some(scheme), Some(path)) = (scheme, path) else {
            return Err(Reject::Malformed);
        };
        // Without :authority (a client may send Host instead) the URI is the path alone, as
        // the `http` crate wants no scheme without an authority.
        let mut uri = Uri::builder().path_and_query(path);
        if let Some(a) = authority {
            uri = uri.scheme(scheme).authority(a);
        }
        let Ok(uri) = uri.build() else {
            return Err(Reject::Malformed);
        };
        if cookies > 1 {
            // Split into several fields for compression; one for HTTP/1.1 (RFC 9113 §8.2.3).
            let joined = headers
                .get_all(COOKIE)
                .iter()
                .map(HeaderValue::as_bytes)
                .collect::<Vec<_>>()
                .join(&b"; "[..]);
            match HeaderValue::from_bytes(&joined) {
                Ok(v) => {
                    headers.insert(COOKIE, v);
                }
                Err(_) => return Err(Reject::Malformed),
            }
        }
        let length = match headers.get(CONTENT_LENGTH) {
            None => None,
            Some(v) => match std::str::from_utf8(v.as_bytes())
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
            {
                Some(n) => Some(n),
                None => return Err(Reject::Malformed),
            },
        };
        if end_stream && length.is_some_and(|n| n != 0) {
            return Err(Reject::Malformed);
        }
        let (body, shared) = if end_stream {
            (NativeBody::empty(), None)
        } else {
            let s = Arc::new(Mutex::new(RecvInner::default()));
            (
                NativeBody {
                    shared: Some(s.clone()),
                    length,
                },
                Some(s),
            )
        };
        let mut req = Request::new(body);
        *req.method_mut() = method;
        *req.uri_mut() = uri;
        *req.version_mut() = http::Version::HTTP_2;
        *req.headers_mut() = headers;
        Ok((req, shared))
    }

    /// The client has sent all of a request.
    fn end_recv(&mut self, id: u32) {
        if let Some(st) = self.streams.get_mut(&id) {
            st.recv_open = false;
            if !st.send_open {
                self.close_stream(id);
            }
        }
    }

    /// Resets a stream because of something the client did; too many close the connection.
    fn local_error_reset(&mut self, id: u32, code: ErrorCode) {
        self.local_resets += 1;
        if self.local_resets > MAX_LOCAL_RESETS {
            self.error = Some(ErrorCode::EnhanceYourCalm);
            return;
        }
        self.reset_stream(id, code);
    }

    /// Sends RST_STREAM and forgets the stream (its future and body are dropped).
    fn reset_stream(&mut self, id: u32, code: ErrorCode) {
        metrics::counter!("portcullis_http2_errors_total", "scope" => "stream", "code" => code.name())
            .increment(1);
        frame::put_rst(&mut self.wbuf, id, code);
        self.remember_reset(id);
        self.close_stream(id);
    }

    fn remember_reset(&mut self, id: u32) {
        if self.recent_resets.len() >= 256 {
            self.recent_resets.pop_front();
        }
        self.recent_resets.push_back(id);
    }

    /// Forgets a stream: drops its future (and with it the upstream exchange), tells its
    /// request body, and gives back the window its unread data held.
    fn close_stream(&mut self, id: u32) {
        let Some(st) = self.streams.remove(&id) else {
            return;
        };
        if let Some(i) = st.slot {
            drop(self.set.remove(i));
        }
        if let Some(b) = &st.body {
            let mut r = lock(b);
            r.reset = r.reset || st.recv_open;
            let n = r.buffered + r.released;
            r.buffered = 0;
            r.released = 0;
            r.chunks.clear();
            r.dropped = true;
            if let Some(w) = r.waker.take() {
                w.wake();
            }
            drop(r);
            self.release_connection(n as u32);
        }
    }

    fn release_connection(&mut self, n: u32) {
        if n == 0 {
            return;
        }
        self.recv_release = self.recv_release.saturating_add(n);
        if self.recv_release >= CONNECTION_WINDOW / 2 {
            frame::put_window_update(&mut self.wbuf, 0, self.recv_release);
            self.recv_window += i64::from(self.recv_release);
            self.recv_release = 0;
        }
    }

    /// Gives back the window of what a stream's upstream has read.
    fn collect_released(&mut self, id: u32) {
        let Some(st) = self.streams.get_mut(&id) else {
            return;
        };
        let Some(b) = &st.body else {
            return;
        };
        let n = std::mem::take(&mut lock(b).released) as u32;
        self.release_stream(id, n);
    }

    /// Gives `n` bytes of a stream's window back: to the stream while the client still sends
    /// on it, and to the connection.
    fn release_stream(&mut self, id: u32, n: u32) {
        if n == 0 {
            return;
        }
        if let Some(st) = self.streams.get_mut(&id).filter(|s| s.recv_open) {
            st.recv_release += n;
            if st.recv_release >= STREAM_WINDOW / 2 {
                frame::put_window_update(&mut self.wbuf, id, st.recv_release);
                st.recv_window += i64::from(st.recv_release);
                st.recv_release = 0;
            }
        }
        self.release_connection(n);
    }

    // -----------------------------------------------------------------------------------------
    // Responses.

    /// Polls the slots that can move; `true` when any did.
    fn poll_streams(&mut self, cx: &mut Context<'_>) -> bool {
        self.set.collect_woken(cx);
        if self.set.todo.is_empty() {
            return false;
        }
        let mut todo = std::mem::take(&mut self.set.todo);
        let mut progress = false;
        let mut i = 0;
        while i < todo.len() {
            if self.backlog() >= WRITE_HIGH {
                break; // the rest wait until the output has drained
            }
            let idx = todo[i];
            i += 1;
            if let Some((w, _)) = self.set.wakes.get(idx) {
                w.queued.store(false, Ordering::Release);
            }
            progress |= self.poll_slot(idx);
        }
        // Not reached this round: kept, with whatever was added meanwhile.
        todo.drain(..i);
        todo.append(&mut self.set.todo);
        self.set.todo = todo;
        progress
    }

    /// Polls one slot: its request future, then its response body while the window allows.
    fn poll_slot(&mut self, idx: usize) -> bool {
        // Out of the set while the slot is polled (nothing on this path adds slots), so the
        // slot's waker is lent to its future without a clone.
        let wakes = std::mem::take(&mut self.set.wakes);
        let progress = match wakes.get(idx) {
            Some((_, waker)) => self.poll_slot_with(idx, &mut Context::from_waker(waker)),
            None => false,
        };
        self.set.wakes = wakes;
        progress
    }

    fn poll_slot_with(&mut self, idx: usize, cx: &mut Context<'_>) -> bool {
        let Some(Some((id, task))) = self.set.slots.get_mut(idx) else {
            return false;
        };
        let id = *id;
        let mut wrote_head = false;
        if let Task::Handle(fut) = task {
            let Poll::Ready(resp) = fut.as_mut().poll(cx) else {
                self.collect_released(id);
                return false;
            };
            self.collect_released(id);
            let (mut parts, body) = resp.into_parts();
            let end = body.is_end_stream();
            self.write_head(id, &mut parts, end);
            wrote_head = true;
            if end {
                self.finish_send(id);
                return true;
            }
            if let Some(Some((_, t))) = self.set.slots.get_mut(idx) {
                *t = Task::Body(body);
            }
        }
        // A head written is progress; a body only when it moved (a body that wakes itself,
        // as tokio's cooperative budget does, must not keep the connection's loop going).
        self.pump_body(idx, id, cx) || wrote_head
    }

    /// Moves response data from the body to the output while the client's windows have room.
    /// `true` when it moved anything (a frame out, the stream's end, a reset).
    fn pump_body(&mut self, idx: usize, id: u32, cx: &mut Context<'_>) -> bool {
        let mut moved = false;
        loop {
            let Some(st) = self.streams.get(&id) else {
                return moved;
            };
            // A chunk waiting for window holds the body back; without one the body is asked
            // even with no window left: its end (or trailers) needs none, and data that comes
            // waits as the one chunk held.
            if st.pending.is_some() {
                return moved;
            }
            if self.backlog() >= WRITE_HIGH {
                self.set.todo.push(idx);
                return moved;
            }
            let Some(Some((_, Task::Body(body)))) = self.set.slots.get_mut(idx) else {
                return moved;
            };
            let polled = Pin::new(&mut *body).poll_frame(cx);
            let end = body.is_end_stream();
            match polled {
                Poll::Pending => return moved,
                Poll::Ready(None) => {
                    frame::put_data(&mut self.wbuf, id, &[], true);
                    self.finish_send(id);
                    return true;
                }
                Poll::Ready(Some(Err(e))) => {
                    debug!(error = %e, "response body failed; resetting the stream");
                    self.reset_stream(id, ErrorCode::Internal);
                    return true;
                }
                Poll::Ready(Some(Ok(f))) => match f.into_data() {
                    Ok(data) => {
                        if data.is_empty() && !end {
                            continue;
                        }
                        moved = true;
                        if self.send_data(id, data, end) {
                            return true;
                        }
                    }
                    Err(f) => {
                        let trailers = f.into_trailers().unwrap_or_default();
                        self.write_trailers(id, &trailers);
                        self.finish_send(id);
                        return true;
                    }
                },
            }
        }
    }

    /// Frames as much of `data` as the windows allow; the rest waits in the stream. `true`
    /// when the stream's sending is over or paused.
    fn send_data(&mut self, id: u32, mut data: Bytes, end: bool) -> bool {
        let Some(st) = self.streams.get_mut(&id) else {
            return true;
        };
        let room = st.send_window.min(self.send_window).max(0) as usize;
        let n = data.len().min(room);
        let rest = data.split_off(n);
        st.send_window -= n as i64;
        self.send_window -= n as i64;
        let done = rest.is_empty();
        let mut chunks = data.chunks(self.peer_max_frame).peekable();
        if chunks.peek().is_none() && done {
            frame::put_data(&mut self.wbuf, id, &[], end);
        }
        while let Some(c) = chunks.next() {
            let last = chunks.peek().is_none();
            frame::put_data(&mut self.wbuf, id, c, end && done && last);
        }
        if !done {
            if let Some(st) = self.streams.get_mut(&id) {
                st.pending = Some((rest, end));
            }
            self.paused.push_back(id);
            return true;
        }
        if end {
            self.finish_send(id);
            return true;
        }
        false
    }

    /// New window: streams waiting for it send what they hold, then pull their bodies again.
    fn resume_all(&mut self) {
        let n = self.paused.len();
        for _ in 0..n {
            let Some(id) = self.paused.pop_front() else {
                break;
            };
            if self.send_window <= 0 {
                self.paused.push_back(id);
                continue;
            }
            self.resume(id);
        }
    }

    fn resume(&mut self, id: u32) {
        let Some(st) = self.streams.get_mut(&id) else {
            return;
        };
        let Some((data, end)) = st.pending.take() else {
            return;
        };
        if st.send_window <= 0 || self.send_window <= 0 {
            st.pending = Some((data, end));
            if !self.paused.contains(&id) {
                self.paused.push_back(id);
            }
            return;
        }
        self.paused.retain(|&p| p != id);
        if self.send_data(id, data, end) {
            return;
        }
        if let Some(i) = self.streams.get(&id).and_then(|s| s.slot) {
            self.set.todo.push(i);
        }
    }

    /// The response has ended: its slot goes; the stream too once the request has ended
    /// (otherwise the rest of the request is not wanted, RFC 9113 §8.1).
    fn finish_send(&mut self, id: u32) {
        let Some(st) = self.streams.get_mut(&id) else {
            return;
        };
        st.send_open = false;
        if let Some(i) = st.slot.take() {
            drop(self.set.remove(i));
        }
        if st.recv_open {
            frame::put_rst(&mut self.wbuf, id, ErrorCode::NoError);
            self.remember_reset(id);
        }
        self.close_stream(id);
    }

    fn write_head(&mut self, id: u32, parts: &mut http::response::Parts, end: bool) {
        strip_hop_by_hop(&mut parts.headers);
        if !parts.headers.contains_key(DATE) {
            let now = httpdate::fmt_http_date(std::time::SystemTime::now());
            if let Ok(v) = HeaderValue::try_from(now) {
                parts.headers.insert(DATE, v);
            }
        }
        let mut block = std::mem::take(&mut self.hblock);
        block.clear();
        self.enc.begin_block(&mut block);
        self.enc.status(parts.status.as_u16(), &mut block);
        for (name, value) in &parts.headers {
            self.enc
                .field(name.as_str().as_bytes(), value.as_bytes(), &mut block);
        }
        frame::put_headers(&mut self.wbuf, id, &block, end, self.peer_max_frame);
        self.hblock = block;
    }

    fn write_trailers(&mut self, id: u32, trailers: &HeaderMap) {
        let mut block = std::mem::take(&mut self.hblock);
        block.clear();
        self.enc.begin_block(&mut block);
        for (name, value) in trailers {
            if !is_connection_specific(name) {
                self.enc
                    .field(name.as_str().as_bytes(), value.as_bytes(), &mut block);
            }
        }
        frame::put_headers(&mut self.wbuf, id, &block, true, self.peer_max_frame);
        self.hblock = block;
    }

    /// Starts a graceful shutdown: GOAWAY naming the last stream taken; those finish.
    fn go_away(&mut self, code: ErrorCode) {
        if !self.going_away {
            frame::put_goaway(&mut self.wbuf, self.last_stream, code);
            self.going_away = true;
        }
    }
}

/// Fields that are specific to one HTTP/1.1 connection and malformed in HTTP/2
/// (RFC 9113 §8.2.2).
fn is_connection_specific(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection" | "keep-alive" | "proxy-connection" | "transfer-encoding" | "upgrade"
    )
}

/// One stream's work: the request through the gate and upstream, to the response.
fn stream_future<'a>(
    shared: &'a Shared,
    req: Request<NativeBody>,
    info: &'a ConnInfo,
    last_fp: &'a LastHeaderFp,
    guard: InFlight,
) -> StreamFut<'a> {
    Box::pin(async move {
        let mut req = req;
        let resp = shared.handle(&mut req, info, last_fp, guard).await;
        // The request, and with it the body's buffered data, is not kept while the response
        // is sent.
        drop(req);
        resp
    })
}
