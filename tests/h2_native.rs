//! The native HTTP/2 server (src/server/h2native.rs) at the frame level, against RFC 9113, with
//! a raw client written here: real rustls (ALPN `h2`), frames built with
//! `portcullis::http2::frame`, header blocks with `portcullis::http2::hpack`. Covered: the
//! preface and the SETTINGS/PING exchange; connection errors answered with GOAWAY and the exact
//! code (bad preface, bad SETTINGS values, oversized frames, even stream ids, broken HPACK,
//! interrupted and endless header blocks, rapid resets, flow-control and WINDOW_UPDATE
//! violations); malformed requests answered with RST_STREAM(PROTOCOL_ERROR) on a connection that
//! keeps working; the stream limit (REFUSED_STREAM); flow control of request and response
//! bodies; the header list limit (431); the client's GOAWAY; floods of frames that carry no
//! request; and a seeded run of random frames that never kills the proxy.

mod common;

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use portcullis::config::{Config, Http2Server};
use portcullis::http2::frame::{self, flag, kind, setting, ErrorCode, Head};
use portcullis::http2::hpack;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;

/// The longest any one wait for the proxy may take: every test ends by itself.
const WAIT: Duration = Duration::from_secs(5);
/// The frame size both sides start with (and the proxy never raises).
const MAX_FRAME: usize = frame::DEFAULT_MAX_FRAME as usize;
/// The proxy's stream and connection receive windows (its SETTINGS and first WINDOW_UPDATE).
const PROXY_WINDOW: u32 = 1024 * 1024;

const ALL_CODES: [ErrorCode; 14] = [
    ErrorCode::NoError,
    ErrorCode::Protocol,
    ErrorCode::Internal,
    ErrorCode::FlowControl,
    ErrorCode::SettingsTimeout,
    ErrorCode::StreamClosed,
    ErrorCode::FrameSize,
    ErrorCode::RefusedStream,
    ErrorCode::Cancel,
    ErrorCode::Compression,
    ErrorCode::Connect,
    ErrorCode::EnhanceYourCalm,
    ErrorCode::InadequateSecurity,
    ErrorCode::Http11Required,
];

/// An error code's RFC name, or its number when it is not one.
fn code_name(code: u32) -> String {
    ALL_CODES.iter().find(|c| **c as u32 == code).map_or_else(
        || format!("unknown code {code:#x}"),
        |c| c.name().to_string(),
    )
}

fn be32(p: &[u8], at: usize) -> u32 {
    let b: [u8; 4] = p[at..at + 4].try_into().expect("4 bytes");
    u32::from_be_bytes(b)
}

/// A frame in one line, for assertion messages.
fn describe(h: &Head, p: &[u8]) -> String {
    let names = [
        "DATA",
        "HEADERS",
        "PRIORITY",
        "RST_STREAM",
        "SETTINGS",
        "PUSH_PROMISE",
        "PING",
        "GOAWAY",
        "WINDOW_UPDATE",
        "CONTINUATION",
    ];
    let name = names.get(usize::from(h.kind)).copied().unwrap_or("UNKNOWN");
    let extra = match h.kind {
        kind::RST_STREAM if p.len() == 4 => format!(", {}", code_name(be32(p, 0))),
        kind::GOAWAY if p.len() >= 8 => format!(
            ", last stream {}, {}",
            be32(p, 0) & frame::MAX_WINDOW,
            code_name(be32(p, 4))
        ),
        kind::WINDOW_UPDATE if p.len() == 4 => format!(", +{}", be32(p, 0)),
        _ => String::new(),
    };
    format!(
        "{name}(stream {}, {} bytes, flags {:#x}{extra})",
        h.stream, h.len, h.flags
    )
}

/// The pseudo-headers of a GET for `path`.
fn get(path: &str) -> Vec<(&'static str, String)> {
    vec![
        (":method", "GET".into()),
        (":scheme", "https".into()),
        (":authority", "localhost".into()),
        (":path", path.into()),
    ]
}

/// The header fields of a POST for `path` with a content-length.
fn post(path: &str, length: usize) -> Vec<(&'static str, String)> {
    let mut f = get(path);
    f[0].1 = "POST".into();
    f.push(("content-length", length.to_string()));
    f
}

type Frame = (Head, Vec<u8>);

/// A raw HTTP/2 client: writes whatever bytes a test builds, reads whole frames.
struct Client {
    io: TlsStream<TcpStream>,
    rbuf: Vec<u8>,
    /// Frames read while waiting for another, in arrival order.
    backlog: VecDeque<Frame>,
    enc: hpack::Encoder,
    dec: hpack::Decoder,
    /// Every setting the proxy has sent, in order.
    peer_settings: Vec<(u16, u32)>,
    /// Flow control of what this side sends: the connection window, the proxy's initial
    /// stream window, and per stream the WINDOW_UPDATEs received minus the bytes sent.
    conn_window: i64,
    initial_window: i64,
    stream_credit: HashMap<u32, i64>,
}

impl Client {
    /// TLS with ALPN `h2`; nothing sent yet.
    async fn tls(addr: SocketAddr) -> Client {
        let io = tls_connect(addr, client_tls(&[b"h2"]))
            .await
            .expect("TLS to the proxy");
        assert_eq!(io.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        Client {
            io,
            rbuf: Vec::with_capacity(32 * 1024),
            backlog: VecDeque::new(),
            enc: hpack::Encoder::new(),
            dec: hpack::Decoder::new(4096),
            peer_settings: Vec::new(),
            conn_window: i64::from(frame::DEFAULT_WINDOW),
            initial_window: i64::from(frame::DEFAULT_WINDOW),
            stream_credit: HashMap::new(),
        }
    }

    /// TLS, the preface with a SETTINGS frame of `settings`, the proxy's SETTINGS read and
    /// acknowledged.
    async fn open(addr: SocketAddr, settings: &[(u16, u32)]) -> Client {
        let mut c = Client::tls(addr).await;
        let mut out = frame::PREFACE.to_vec();
        frame::put_settings(&mut out, settings);
        c.send(&out).await;
        c.wait("the proxy's SETTINGS", |h, _| {
            h.kind == kind::SETTINGS && !h.has(flag::ACK)
        })
        .await;
        let mut ack = Vec::new();
        frame::put_settings_ack(&mut ack);
        // Not checked: after bad SETTINGS the proxy may already be closing the connection.
        let _ = c.try_send(&ack).await;
        c
    }

    async fn try_send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.io.write_all(bytes).await?;
        self.io.flush().await
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.try_send(bytes).await.expect("write to the proxy");
    }

    /// The next frame from the connection (not from the backlog): `Ok(None)` when the proxy
    /// has closed it, `Err(())` when nothing whole came within `wait`.
    async fn read_frame(&mut self, wait: Duration) -> Result<Option<Frame>, ()> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(h) = Head::parse(&self.rbuf) {
                let total = frame::HEADER_LEN + h.len as usize;
                if self.rbuf.len() >= total {
                    let payload = self.rbuf[frame::HEADER_LEN..total].to_vec();
                    self.rbuf.drain(..total);
                    self.track(&h, &payload);
                    return Ok(Some((h, payload)));
                }
            }
            self.rbuf.reserve(16 * 1024);
            match tokio::time::timeout_at(deadline, self.io.read_buf(&mut self.rbuf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return Ok(None),
                Ok(Ok(_)) => {}
                Err(_) => return Err(()),
            }
        }
    }

    /// The next frame from the connection; `None` once it is closed. Panics after [`WAIT`].
    async fn next_frame(&mut self) -> Option<Frame> {
        match self.read_frame(WAIT).await {
            Ok(f) => f,
            Err(()) => panic!("no frame within {WAIT:?}; {}", self.seen()),
        }
    }

    /// Keeps the send windows: the proxy's SETTINGS_INITIAL_WINDOW_SIZE and WINDOW_UPDATEs.
    fn track(&mut self, h: &Head, p: &[u8]) {
        match h.kind {
            kind::SETTINGS if !h.has(flag::ACK) => {
                for s in p.chunks_exact(6) {
                    let id = u16::from_be_bytes([s[0], s[1]]);
                    let v = be32(s, 2);
                    self.peer_settings.push((id, v));
                    if id == setting::INITIAL_WINDOW_SIZE {
                        self.initial_window = i64::from(v);
                    }
                }
            }
            kind::WINDOW_UPDATE if p.len() == 4 => {
                let inc = i64::from(be32(p, 0) & frame::MAX_WINDOW);
                if h.stream == 0 {
                    self.conn_window += inc;
                } else {
                    *self.stream_credit.entry(h.stream).or_default() += inc;
                }
            }
            _ => {}
        }
    }

    /// The frames read but not yet taken, for failure messages.
    fn seen(&self) -> String {
        let list: Vec<String> = self.backlog.iter().map(|(h, p)| describe(h, p)).collect();
        format!("frames read and not taken: [{}]", list.join(", "))
    }

    /// The first frame, from the backlog and then the connection, that `want` accepts; the
    /// others stay in the backlog. Panics on a GOAWAY that `want` does not accept, at the end of
    /// the connection, and when nothing matching comes within [`WAIT`].
    async fn wait(&mut self, what: &str, want: impl Fn(&Head, &[u8]) -> bool) -> Frame {
        if let Some(i) = self.backlog.iter().position(|(h, p)| want(h, p)) {
            return self.backlog.remove(i).expect("backlog entry");
        }
        loop {
            match self.read_frame(WAIT).await {
                Err(()) => panic!("no {what} within {WAIT:?}; {}", self.seen()),
                Ok(None) => panic!("connection closed before {what}; {}", self.seen()),
                Ok(Some((h, p))) if want(&h, &p) => return (h, p),
                Ok(Some((h, p))) if h.kind == kind::GOAWAY => {
                    panic!(
                        "{} while waiting for {what}; {}",
                        describe(&h, &p),
                        self.seen()
                    )
                }
                Ok(Some(f)) => self.backlog.push_back(f),
            }
        }
    }

    /// Reads to the end of the connection; panics if any frame comes or it stays open.
    async fn expect_closed(&mut self) {
        match self.read_frame(WAIT).await {
            Err(()) => panic!("the proxy did not close the connection; {}", self.seen()),
            Ok(None) => {}
            Ok(Some((h, p))) => panic!("{} after the GOAWAY; {}", describe(&h, &p), self.seen()),
        }
    }

    /// Waits for a GOAWAY with `code`, then for the connection to close (nothing after the
    /// GOAWAY); returns the GOAWAY's last stream id.
    async fn expect_goaway(&mut self, code: ErrorCode) -> u32 {
        let (h, p) = self.wait("GOAWAY", |h, _| h.kind == kind::GOAWAY).await;
        assert_eq!(h.stream, 0, "GOAWAY on stream 0");
        assert!(p.len() >= 8, "{}", describe(&h, &p));
        assert_eq!(
            code_name(be32(&p, 4)),
            code.name(),
            "the GOAWAY's code ({})",
            describe(&h, &p)
        );
        self.expect_closed().await;
        be32(&p, 0) & frame::MAX_WINDOW
    }

    /// Waits for RST_STREAM on `stream` and checks its code.
    async fn expect_rst(&mut self, stream: u32, code: ErrorCode) {
        let what = format!("RST_STREAM on stream {stream}");
        let (h, p) = self
            .wait(&what, |h, _| {
                h.stream == stream && matches!(h.kind, kind::RST_STREAM | kind::HEADERS)
            })
            .await;
        assert_eq!(h.kind, kind::RST_STREAM, "expected {what}, got a response");
        assert_eq!(p.len(), 4, "{}", describe(&h, &p));
        assert_eq!(code_name(be32(&p, 0)), code.name(), "the code of {what}");
    }

    /// A header block of `fields`, encoded by this connection's encoder.
    fn block(&mut self, fields: &[(&str, String)]) -> Vec<u8> {
        let mut b = Vec::new();
        self.enc.begin_block(&mut b);
        for (n, v) in fields {
            self.enc.field(n.as_bytes(), v.as_bytes(), &mut b);
        }
        b
    }

    /// Sends `fields` as HEADERS (and CONTINUATIONs past 16 KiB) on `stream`.
    async fn headers(&mut self, stream: u32, fields: &[(&str, String)], end_stream: bool) {
        let block = self.block(fields);
        let mut out = Vec::new();
        frame::put_headers(&mut out, stream, &block, end_stream, MAX_FRAME);
        self.send(&out).await;
    }

    /// Sends a GET for `path` on `stream`.
    async fn request(&mut self, stream: u32, path: &str, end_stream: bool) {
        self.headers(stream, &get(path), end_stream).await;
    }

    /// The response head on `stream`: its :status, and whether HEADERS ended the stream.
    /// Panics if the stream is reset instead.
    async fn response_head(&mut self, stream: u32) -> (u16, bool) {
        let what = format!("the response HEADERS on stream {stream}");
        let (h, p) = self
            .wait(&what, |h, _| {
                h.stream == stream && matches!(h.kind, kind::HEADERS | kind::RST_STREAM)
            })
            .await;
        assert_eq!(h.kind, kind::HEADERS, "{what}: {}", describe(&h, &p));
        let mut block = p;
        let mut end_headers = h.has(flag::END_HEADERS);
        while !end_headers {
            let (c, q) = self
                .wait("a CONTINUATION of the response", |c, _| {
                    c.kind == kind::CONTINUATION && c.stream == stream
                })
                .await;
            block.extend_from_slice(&q);
            end_headers = c.has(flag::END_HEADERS);
        }
        let mut status = None;
        self.dec
            .decode(&block, |n, v| {
                if n == b":status" {
                    status = std::str::from_utf8(v).ok().and_then(|s| s.parse().ok());
                }
            })
            .expect("the proxy's header block decodes");
        (status.expect(":status"), h.has(flag::END_STREAM))
    }

    /// The :status of the response on `stream`.
    async fn response_status(&mut self, stream: u32) -> u16 {
        self.response_head(stream).await.0
    }

    /// A whole response: status and body (DATA up to END_STREAM), giving the window back as
    /// the data arrives. Panics if the stream is reset.
    async fn response(&mut self, stream: u32) -> (u16, Vec<u8>) {
        let (status, mut ended) = self.response_head(stream).await;
        let mut body = Vec::new();
        while !ended {
            let what = format!("the response body on stream {stream}");
            let (h, p) = self
                .wait(&what, |h, _| {
                    h.stream == stream
                        && matches!(h.kind, kind::DATA | kind::HEADERS | kind::RST_STREAM)
                })
                .await;
            assert_ne!(h.kind, kind::RST_STREAM, "{what}: {}", describe(&h, &p));
            ended = h.has(flag::END_STREAM);
            if h.kind == kind::DATA {
                body.extend_from_slice(&p);
                if !p.is_empty() {
                    let n = p.len() as u32;
                    let mut out = Vec::new();
                    frame::put_window_update(&mut out, 0, n);
                    frame::put_window_update(&mut out, stream, n);
                    self.send(&out).await;
                }
            }
        }
        (status, body)
    }

    /// The DATA that arrives on `stream` within `quiet` (other frames are kept), and whether
    /// one had END_STREAM.
    async fn data_within(&mut self, stream: u32, quiet: Duration) -> (Vec<u8>, bool) {
        let deadline = Instant::now() + quiet;
        let mut body = Vec::new();
        let mut ended = false;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.read_frame(left).await {
                Err(()) => break,
                Ok(None) => panic!("the connection closed; {}", self.seen()),
                Ok(Some((h, p))) if h.kind == kind::DATA && h.stream == stream => {
                    body.extend_from_slice(&p);
                    ended |= h.has(flag::END_STREAM);
                }
                Ok(Some(f)) => self.backlog.push_back(f),
            }
        }
        (body, ended)
    }

    /// What `stream` may still send: the smaller of its window and the connection's.
    fn room(&self, stream: u32) -> i64 {
        let credit = self.stream_credit.get(&stream).copied().unwrap_or(0);
        self.conn_window.min(self.initial_window + credit)
    }

    /// Sends `body` as DATA on `stream` the way a client must: never more than both windows
    /// allow, waiting for WINDOW_UPDATEs when they are used up. With `pad`, every frame carries
    /// that many bytes of padding (which count against the windows, RFC 9113 §6.9.1).
    async fn upload(&mut self, stream: u32, body: &[u8], chunk: usize, pad: Option<u8>) {
        let overhead = pad.map_or(0, |p| 1 + usize::from(p));
        let mut sent = 0;
        while sent < body.len() {
            let mut out = Vec::new();
            while sent < body.len() && self.room(stream) > overhead as i64 {
                let room = self.room(stream) as usize - overhead;
                let n = room.min(chunk).min(body.len() - sent);
                let data = &body[sent..sent + n];
                let end = sent + n == body.len();
                let end_flag = if end { flag::END_STREAM } else { 0 };
                match pad {
                    None => frame::put_data(&mut out, stream, data, end),
                    Some(p) => {
                        let len = n + overhead;
                        frame::put_head(&mut out, len, kind::DATA, flag::PADDED | end_flag, stream);
                        out.push(p);
                        out.extend_from_slice(data);
                        out.extend(std::iter::repeat(0u8).take(usize::from(p)));
                    }
                }
                self.conn_window -= (n + overhead) as i64;
                *self.stream_credit.entry(stream).or_default() -= (n + overhead) as i64;
                sent += n;
            }
            if !out.is_empty() {
                self.send(&out).await;
            }
            if sent < body.len() {
                // Both windows are (nearly) used up: only a WINDOW_UPDATE lets this go on.
                let what = format!("WINDOW_UPDATE after {sent} bytes sent on stream {stream}");
                self.wait(&what, |h, _| h.kind == kind::WINDOW_UPDATE).await;
            }
        }
    }
}

/// Bytes of `GET /big` from the test upstream.
const BIG: usize = 20_000;

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

type UpBody = BoxBody<Bytes, Infallible>;

/// The test upstream's answers: `GET /big` is BIG bytes (with content-length); `POST /count`
/// reads the whole body and answers its length; `GET /drip` sends 100 bytes, then ends the
/// (chunked) body 300 ms later; `/hang` never answers; any other path answers `ok`.
async fn answer(req: http::Request<Incoming>) -> http::Response<UpBody> {
    let body = match req.uri().path() {
        "/big" => pattern(BIG),
        "/count" => match req.into_body().collect().await {
            Ok(b) => b.to_bytes().len().to_string().into_bytes(),
            Err(e) => format!("body error: {e}").into_bytes(),
        },
        "/drip" => {
            let (mut tx, body) = http_body_util::channel::Channel::<Bytes, Infallible>::new(1);
            tokio::spawn(async move {
                let _ = tx.send_data(Bytes::from(pattern(100))).await;
                tokio::time::sleep(Duration::from_millis(300)).await;
            });
            return http::Response::new(body.boxed());
        }
        "/hang" => std::future::pending().await,
        _ => b"ok".to_vec(),
    };
    http::Response::new(Full::new(Bytes::from(body)).boxed())
}

/// The test upstream (HTTP/1.1, hyper) on 127.0.0.1:0, and the number of requests it received.
async fn upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let requests = Arc::new(AtomicUsize::new(0));
    let count = requests.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    count.fetch_add(1, Ordering::SeqCst);
                    async move { Ok::<_, Infallible>(answer(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    (addr, requests)
}

/// The test config with the native HTTP/2 server (the default, named so that a change of
/// default does not silently move these tests to the other server).
fn native(upstream: SocketAddr) -> Config {
    let mut cfg = test_config(upstream);
    cfg.server.http2 = Http2Server::Native;
    cfg
}

/// A proxy in front of the test upstream, and that upstream's request count.
async fn proxy_with_upstream() -> (TestProxy, Arc<AtomicUsize>) {
    let (up, requests) = upstream().await;
    (start_proxy(native(up)).await, requests)
}

fn ping(payload: &[u8; 8], ack: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let flags = if ack { flag::ACK } else { 0 };
    frame::put_head(&mut out, 8, kind::PING, flags, 0);
    out.extend_from_slice(payload);
    out
}

// ---------------------------------------------------------------------------------------------
// The preface, SETTINGS and PING.

#[tokio::test]
async fn a_bad_preface_gets_goaway_protocol_error_and_the_connection_closes() {
    let (proxy, _) = proxy_with_upstream().await;
    // The right length, one word wrong.
    let mut c = Client::tls(proxy.addr).await;
    c.send(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n").await;
    assert_eq!(c.expect_goaway(ErrorCode::Protocol).await, 0);
    // An HTTP/1.1 request on a connection that negotiated h2: wrong from its first byte.
    let mut c = Client::tls(proxy.addr).await;
    c.send(b"GET / HTTP/1.1\r\n").await;
    assert_eq!(c.expect_goaway(ErrorCode::Protocol).await, 0);
    proxy.stop().await;
}

#[tokio::test]
async fn a_first_frame_that_is_not_settings_gets_goaway_protocol_error() {
    let (proxy, _) = proxy_with_upstream().await;
    let mut c = Client::tls(proxy.addr).await;
    let mut out = frame::PREFACE.to_vec();
    out.extend_from_slice(&ping(b"12345678", false));
    c.send(&out).await;
    c.expect_goaway(ErrorCode::Protocol).await;
    // A HEADERS frame first is no better.
    let mut c = Client::tls(proxy.addr).await;
    let mut out = frame::PREFACE.to_vec();
    let block = c.block(&get("/"));
    frame::put_headers(&mut out, 1, &block, true, MAX_FRAME);
    c.send(&out).await;
    c.expect_goaway(ErrorCode::Protocol).await;
    proxy.stop().await;
}

#[tokio::test]
async fn settings_are_acknowledged_and_ping_is_echoed_with_its_payload() {
    let (proxy, _) = proxy_with_upstream().await;
    let mut c = Client::open(proxy.addr, &[(setting::INITIAL_WINDOW_SIZE, 1 << 20)]).await;
    // The proxy's own SETTINGS and its connection window.
    for s in [
        (setting::MAX_CONCURRENT_STREAMS, 256),
        (setting::INITIAL_WINDOW_SIZE, PROXY_WINDOW),
        (setting::MAX_HEADER_LIST_SIZE, 64 * 1024),
    ] {
        assert!(
            c.peer_settings.contains(&s),
            "{s:?} in {:?}",
            c.peer_settings
        );
    }
    let (_, p) = c
        .wait("the connection WINDOW_UPDATE", |h, _| {
            h.kind == kind::WINDOW_UPDATE && h.stream == 0
        })
        .await;
    assert_eq!(be32(&p, 0), PROXY_WINDOW - frame::DEFAULT_WINDOW);
    // Our SETTINGS is acknowledged, with an empty payload.
    let (h, _) = c
        .wait("SETTINGS ACK", |h, _| {
            h.kind == kind::SETTINGS && h.has(flag::ACK)
        })
        .await;
    assert_eq!((h.len, h.stream), (0, 0));
    // A later SETTINGS too.
    let mut out = Vec::new();
    frame::put_settings(&mut out, &[(setting::HEADER_TABLE_SIZE, 0)]);
    c.send(&out).await;
    c.wait("the second SETTINGS ACK", |h, _| {
        h.kind == kind::SETTINGS && h.has(flag::ACK)
    })
    .await;
    // A PING ACK from the client is not answered; a PING is, with the same 8 bytes.
    let mut out = ping(b"not-this", true);
    out.extend_from_slice(&ping(b"\x01\x02\x03\x04\xfd\xfe\xff\x00", false));
    c.send(&out).await;
    let (h, p) = c.wait("PING", |h, _| h.kind == kind::PING).await;
    assert!(h.has(flag::ACK), "{}", describe(&h, &p));
    assert_eq!(h.stream, 0);
    assert_eq!(p, b"\x01\x02\x03\x04\xfd\xfe\xff\x00");
    // And the connection still serves requests.
    c.request(1, "/", true).await;
    assert_eq!(c.response(1).await, (200, b"ok".to_vec()));
    proxy.stop().await;
}

#[tokio::test]
async fn invalid_settings_values_get_goaway_with_the_rfc_error_code() {
    let (proxy, _) = proxy_with_upstream().await;
    let cases = [
        // RFC 9113 §6.5.2: ENABLE_PUSH other than 0 or 1 is a PROTOCOL_ERROR,
        ((setting::ENABLE_PUSH, 2), ErrorCode::Protocol),
        // INITIAL_WINDOW_SIZE above 2^31-1 a FLOW_CONTROL_ERROR,
        (
            (setting::INITIAL_WINDOW_SIZE, 1 << 31),
            ErrorCode::FlowControl,
        ),
        // MAX_FRAME_SIZE below 16384 (or above 2^24-1) a PROTOCOL_ERROR.
        ((setting::MAX_FRAME_SIZE, 100), ErrorCode::Protocol),
        ((setting::MAX_FRAME_SIZE, 1 << 24), ErrorCode::Protocol),
    ];
    for (s, code) in cases {
        let mut c = Client::open(proxy.addr, &[s]).await;
        assert_eq!(c.expect_goaway(code).await, 0, "{s:?}");
    }
    // The largest legal values are accepted.
    let mut c = Client::open(
        proxy.addr,
        &[
            (setting::ENABLE_PUSH, 1),
            (setting::INITIAL_WINDOW_SIZE, frame::MAX_WINDOW),
            (setting::MAX_FRAME_SIZE, frame::MAX_MAX_FRAME),
        ],
    )
    .await;
    c.request(1, "/", true).await;
    assert_eq!(c.response(1).await, (200, b"ok".to_vec()));
    proxy.stop().await;
}

/// RFC 9113 §6.5.3: the ACK says the values were applied; a frame that is a connection error
/// was not.
#[tokio::test]
async fn a_rejected_settings_frame_is_not_acknowledged() {
    let (proxy, _) = proxy_with_upstream().await;
    let mut c = Client::open(proxy.addr, &[(setting::ENABLE_PUSH, 2)]).await;
    c.expect_goaway(ErrorCode::Protocol).await;
    assert!(
        !c.backlog
            .iter()
            .any(|(h, _)| h.kind == kind::SETTINGS && h.has(flag::ACK)),
        "the rejected SETTINGS was acknowledged; {}",
        c.seen()
    );
    proxy.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Connection errors.

#[tokio::test]
async fn a_frame_longer_than_16384_bytes_gets_goaway_frame_size_error() {
    let (proxy, _) = proxy_with_upstream().await;
    let mut c = Client::open(proxy.addr, &[]).await;
    // Exactly 16384 bytes (of an unknown type, ignored) is allowed.
    let mut out = Vec::new();
    frame::put_head(&mut out, MAX_FRAME, 0x20, 0, 0);
    out.resize(out.len() + MAX_FRAME, 7);
    out.extend_from_slice(&ping(b"fits....", false));
    c.send(&out).await;
    c.wait("PING ACK", |h, p| h.kind == kind::PING && p == b"fits....")
        .await;
    // One byte more is not (here a DATA frame on an open stream).
    c.request(1, "/hang", false).await;
    let mut out = Vec::new();
    frame::put_data(&mut out, 1, &vec![1u8; MAX_FRAME + 1], false);
    c.send(&out).await;
    assert_eq!(c.expect_goaway(ErrorCode::FrameSize).await, 1);
}

#[tokio::test]
async fn headers_on_an_even_stream_id_get_goaway_protocol_error() {
    let (proxy, requests) = proxy_with_upstream().await;
    let mut c = Client::open(proxy.addr, &[]).await;
    c.request(2, "/", true).await;
    assert_eq!(c.expect_goaway(ErrorCode::Protocol).await, 0);
    assert_eq!(requests.load(Ordering::SeqCst), 0);
    proxy.stop().await;
}

#[tokio::test]
async fn garbage_hpack_gets_goaway_compression_error() {
    let (proxy, requests) = proxy_with_upstream().await;
    let mut c = Client::open(proxy.addr, &[]).await;
    // An indexed field with index 0 (RFC 7541 §6.1: a decoding error).
    let mut out = Vec::new();
    frame::put_headers(&mut out, 1, &[0x80], true, MAX_FRAME);
    c.send(&out).await;
    c.expect_goaway(ErrorCode::Compression).await;
    assert_eq!(requests.load(Ordering::SeqCst), 0);
    proxy.stop().await;
}

#[tokio::test]
async fn a_header_block_interrupted_by_another_frame_gets_goaway_protocol_error() {
    let (proxy, requests) = proxy_with_upstream().await;
    // HEADERS without END_HEADERS, then a PING before the CONTINUATION.
    let mut c = Client::open(proxy.addr, &[]).await;
    let block = c.block(&get("/"));
    let (first, rest) = block.split_at(block.len() / 2);
    let mut out = Vec::new();
    frame::put_head(&mut out, first.len(), kind::HEADERS, flag::END_STREAM, 1);
    out.extend_from_slice(first);
    out.extend_from_slice(&ping(b"between.", false));
    frame::put_head(
        &mut out,
        rest.len(),
        kind::CONTINUATION,
        flag::END_HEADERS,
        1,
    );
    out.extend_from_slice(rest);
    c.send(&out).await;
    c.expect_goaway(ErrorCode::Protocol).await;
    assert!(
        !c.backlog.iter().any(|(h, _)| h.kind == kind::PING),
        "the PING inside the header block was answered; {}",
        c.seen()
    );
    // The CONTINUATION on another stream.
    let mut c = Client::open(proxy.addr, &[]).await;
    let block = c.block(&get("/"));
    let (first, rest) = block.split_at(block.len() / 2);
    let mut out = Vec::new();
    frame::put_head(&mut out, first.len(), kind::HEADERS, flag::END_STREAM, 1);
    out.extend_from_slice(first);
    frame::put_head(
        &mut out,
        rest.len(),
        kind::CONTINUATION,
        flag::END_HEADERS,
        3,
    );
    out.extend_from_slice(rest);
    c.send(&out).await;
    c.expect_goaway(ErrorCode::Protocol).await;
    // A CONTINUATION with no HEADERS before it.
    let mut c = Client::open(proxy.addr, &[]).await;
    let block = c.block(&get("/"));
    let mut out = Vec::new();
    frame::put_head(
        &mut out,
        block.len(),
        kind::CONTINUATION,
        flag::END_HEADERS,
        1,
    );
    out.extend_from_slice(&block);
    c.send(&out).await;
    c.expect_goaway(ErrorCode::Protocol).await;
    assert_eq!(requests.load(Ordering::SeqCst), 0);
    proxy.stop().await;
}

/// RFC 9113 §6.10: only CONTINUATION frames of the same stream may follow a HEADERS frame
/// without END_HEADERS; here a DATA frame of another (open) stream comes between.
#[tokio::test]
async fn data_inside_a_header_block_gets_goaway_protocol_error() {
    let (proxy, _) = proxy_with_upstream().await;
    let mut c = Client::open(proxy.addr, &[]).await;
    c.headers(1, &post("/hang", 10), false).await;
    let block = c.block(&get("/"));
    let (first, rest) = block.split_at(block.len() / 2);
    let mut out = Vec::new();
    frame::put_head(&mut out, first.len(), kind::HEADERS, flag::END_STREAM, 3);
    out.extend_from_slice(first);
    frame::put_data(&mut out, 1, b"inside", false);
    frame::put_head(
        &mut out,
        rest.len(),
        kind::CONTINUATION,
        flag::END_HEADERS,
        3,
    );
    out.extend_from_slice(rest);
    c.send(&out).await;
    c.expect_goaway(ErrorCode::Protocol).await;
}

/// RFC 9113 §5.1.1: a new stream's id must be greater than every id the client has used; an
/// unexpected one is a connection error of type PROTOCOL_ERROR.
#[tokio::test]
async fn headers_on_a_lower_unused_stream_id_get_goaway_protocol_error() {
    let (proxy, _) = proxy_with_upstream().await;
    let mut c = Client::open(proxy.addr, &[]).await;
    c.request(3, "/", true).await;
    assert_eq!(c.response(3).await.0, 200);
    // Stream 1 was never opened: it cannot be opened now.
    c.request(1, "/", true).await;
    c.expect_goaway(ErrorCode::Protocol).await;
}

#[tokio::test]
async fn an_endless_continuation_stream_gets_goaway_enhance_your_calm() {
    let (proxy, requests) = proxy_with_upstream().await;
    let mut c = Client::open(proxy.addr, &[]).await;
    // HEADERS then CONTINUATIONs of 16 KiB, never END_HEADERS: 12 frames are 192 KiB (under
    // 200 KB), past the 128 KiB bound (max(2 * 64 KiB, 32 KiB)) on compressed header bytes.
    let chunk = vec![0u8; MAX_FRAME];
    let mut sent = 0;
    for i in 0..12 {
        let mut out = Vec::new();
        let k = if i == 0 {
            kind::HEADERS
        } else {
            kind::CONTINUATION
        };
        frame::put_head(&mut out, chunk.len(), k, 0, 1);
        out.extend_from_slice(&chunk);
        if c.try_send(&out).await.is_err() {
            break; // the proxy has closed the connection already
        }
        sent += out.len();
    }
    assert!(sent > 128 * 1024, "only {sent} bytes could be sent");
    assert_eq!(c.expect_goaway(ErrorCode::EnhanceYourCalm).await, 0);
    assert_eq!(requests.load(Ordering::SeqCst), 0);
    proxy.stop().await;
}

#[tokio::test]
async fn a_flood_of_frames_that_carry_no_request_gets_goaway_enhance_your_calm() {
    // PRIORITY frames (and empty DATA, SETTINGS, PING, unknown types) make work and carry
    // nothing: 10,000 of them per connection, plus 8 per stream opened, are allowed.
    let (proxy, requests) = proxy_with_upstream().await;
    let mut c = Client::open(proxy.addr, &[]).await;
    let mut out = Vec::new();
    for i in 0..1000u32 {
        frame::put_head(&mut out, 5, kind::PRIORITY, 0, 2 * i + 1);
        out.extend_from_slice(&[0, 0, 0, 0, 15]);
    }
    for _ in 0..11 {
        if c.try_send(&out).await.is_err() {
            break; // closed already
        }
    }
    c.expect_goaway(ErrorCode::EnhanceYourCalm).await;
    assert_eq!(requests.load(Ordering::SeqCst), 0);
    proxy.stop().await;
}

#[tokio::test]
async fn rapid_reset_gets_goaway_enhance_your_calm_before_the_upstream_sees_many_requests() {
    let (proxy, requests) = proxy_with_upstream().await;
    let mut c = Client::open(proxy.addr, &[]).await;
    // 1000 streams, each opened and cancelled at once, 50 to a write.
    let mut written = 0;
    'send: for batch in 0..20u32 {
        let mut out = Vec::new();
        for i in 0..50u32 {
            let stream = 2 * (batch * 50 + i) + 1;
            let block = c.block(&get("/"));
            frame::put_headers(&mut out, stream, &block, true, MAX_FRAME);
            frame::put_rst(&mut out, stream, ErrorCode::Cancel);
        }
        if c.try_send(&out).await.is_err() {
            break 'send; // closed by the proxy
        }
        written += 50;
    }
    let last = c.expect_goaway(ErrorCode::EnhanceYourCalm).await;
    assert!(
        last < 2 * 500,
        "the GOAWAY came after {} of the {written} streams written",
        last.div_ceil(2)
    );
    // Whatever did start upstream has had time to arrive.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let n = requests.load(Ordering::SeqCst);
    assert!(n < 50, "the upstream saw {n} requests");
    // The proxy itself goes on.
    let mut c = Client::open(proxy.addr, &[]).await;
    c.request(1, "/", true).await;
    assert_eq!(c.response(1).await.0, 200);
    proxy.stop().await;
}

#[tokio::test]
async fn window_update_of_zero_or_past_the_maximum_is_an_error() {
    let (proxy, _) = proxy_with_upstream().await;
    // On the connection: increment 0 is a PROTOCOL_ERROR (RFC 9113 §6.9)...
    let mut c = Client::open(proxy.addr, &[]).await;
    let mut out = Vec::new();
    frame::put_window_update(&mut out, 0, 0);
    c.send(&out).await;
    c.expect_goaway(ErrorCode::Protocol).await;
    // ... and a window past 2^31-1 a FLOW_CONTROL_ERROR (§6.9.1).
    let mut c = Client::open(proxy.addr, &[]).await;
    let mut out = Vec::new();
    frame::put_window_update(&mut out, 0, frame::MAX_WINDOW);
    c.send(&out).await;
    c.expect_goaway(ErrorCode::FlowControl).await;
    // On a stream, the same are stream errors: RST_STREAM, and the connection goes on.
    let mut c = Client::open(proxy.addr, &[]).await;
    c.request(1, "/hang", true).await;
    c.request(3, "/hang", true).await;
    let mut out = Vec::new();
    frame::put_window_update(&mut out, 1, 0);
    frame::put_window_update(&mut out, 3, frame::MAX_WINDOW);
    c.send(&out).await;
    c.expect_rst(1, ErrorCode::Protocol).await;
    c.expect_rst(3, ErrorCode::FlowControl).await;
    c.request(5, "/", true).await;
    assert_eq!(c.response(5).await, (200, b"ok".to_vec()));
}

// ---------------------------------------------------------------------------------------------
// Streams.

#[tokio::test]
async fn malformed_requests_get_rst_stream_protocol_error_and_the_connection_keeps_working() {
    let up = start_mock().await;
    let proxy = start_proxy(native(up)).await;
    let mut c = Client::open(proxy.addr, &[]).await;
    let echo = get("/v1/echo");
    let with = |extra: (&'static str, &str)| {
        let mut f = echo.clone();
        f.push((extra.0, extra.1.to_string()));
        f
    };
    let mut pseudo_last = echo.clone();
    let path = pseudo_last.remove(3);
    pseudo_last.push(("x-before", "1".into()));
    pseudo_last.push(path);
    let cases: Vec<(&str, Vec<(&str, String)>)> = vec![
        ("an uppercase header name", with(("X-Upper", "1"))),
        ("no :path", echo[..3].to_vec()),
        ("a connection header", with(("connection", "keep-alive"))),
        ("a pseudo-header after a regular one", pseudo_last),
        ("te other than trailers", with(("te", "gzip"))),
        // RFC 9113 §8.2.1: what could split the request when it goes on as HTTP/1.1.
        ("a line feed in a value", with(("x-a", "1\r\nx-b: 2"))),
        ("a NUL in a value", with(("x-a", "1\u{0}2"))),
        ("a colon in a field name", with(("x:a", "1"))),
        (
            "content-length 5 on a request that ends with its HEADERS",
            post("/v1/echo", 5),
        ),
    ];
    let mut stream = 1;
    for (what, fields) in &cases {
        c.headers(stream, fields, true).await;
        // Each case is answered before the next is sent, so a failure names its case.
        let (h, p) = c
            .wait(what, |h, _| {
                h.stream == stream && matches!(h.kind, kind::RST_STREAM | kind::HEADERS)
            })
            .await;
        assert_eq!(
            (h.kind, code_name(be32(&p, 0))),
            (kind::RST_STREAM, ErrorCode::Protocol.name().to_string()),
            "{what}: {}",
            describe(&h, &p)
        );
        stream += 2;
    }
    // DATA past the content-length.
    c.headers(stream, &post("/v1/echo", 5), false).await;
    let mut out = Vec::new();
    frame::put_data(&mut out, stream, b"0123456789", true);
    c.send(&out).await;
    c.expect_rst(stream, ErrorCode::Protocol).await;
    // The same connection still serves a valid request (te: trailers is allowed).
    stream += 2;
    let mut fields = get("/v1/echo");
    fields.push(("te", "trailers".into()));
    c.headers(stream, &fields, true).await;
    let (status, body) = c.response(stream).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    proxy.stop().await;
}

/// RFC 9113 §8.2.3: cookie crumbs sent as several fields reach an HTTP/1.1 upstream as one
/// `cookie` field joined with "; ".
#[tokio::test]
async fn cookie_fields_are_joined_for_the_http1_upstream() {
    let up = start_mock().await;
    let proxy = start_proxy(native(up)).await;
    let mut c = Client::open(proxy.addr, &[]).await;
    let mut fields = get("/v1/echo");
    fields.push(("cookie", "a=1".into()));
    fields.push(("x-between", "x".into()));
    fields.push(("cookie", "b=2".into()));
    c.headers(1, &fields, true).await;
    let (status, body) = c.response(1).await;
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 200, "{body}");
    assert_eq!(echo_headers(&body)["cookie"], "a=1; b=2", "{body}");
    proxy.stop().await;
}

/// RFC 9113 §8.2.1: "A field value MUST NOT start or end with an ASCII whitespace character"
/// and such a request "MUST be treated as malformed".
#[tokio::test]
async fn a_field_value_with_surrounding_whitespace_is_malformed() {
    let (proxy, requests) = proxy_with_upstream().await;
    let mut c = Client::open(proxy.addr, &[]).await;
    for (stream, value) in [(1, " leading"), (3, "trailing\t")] {
        let mut fields = get("/");
        fields.push(("x-a", value.into()));
        c.headers(stream, &fields, true).await;
        c.expect_rst(stream, ErrorCode::Protocol).await;
    }
    assert_eq!(requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn the_257th_concurrent_stream_is_refused_and_the_others_are_not() {
    let (proxy, _) = proxy_with_upstream().await;
    let mut c = Client::open(proxy.addr, &[]).await;
    // 257 requests the upstream never answers.
    let mut out = Vec::new();
    for i in 0..257u32 {
        let block = c.block(&get("/hang"));
        frame::put_headers(&mut out, 2 * i + 1, &block, true, MAX_FRAME);
    }
    c.send(&out).await;
    c.expect_rst(513, ErrorCode::RefusedStream).await;
    // Everything about the first 256 would have been written before this PING's ACK.
    c.send(&ping(b"counted!", false)).await;
    c.wait("PING ACK", |h, p| h.kind == kind::PING && p == b"counted!")
        .await;
    assert!(
        !c.backlog.iter().any(|(h, _)| h.kind == kind::RST_STREAM),
        "{}",
        c.seen()
    );
    // A stream closed by the client makes room for one more.
    let mut out = Vec::new();
    frame::put_rst(&mut out, 1, ErrorCode::Cancel);
    c.send(&out).await;
    c.request(515, "/hang", true).await;
    c.send(&ping(b"room.515", false)).await;
    c.wait("PING ACK", |h, p| h.kind == kind::PING && p == b"room.515")
        .await;
    assert!(
        !c.backlog.iter().any(|(h, _)| h.kind == kind::RST_STREAM),
        "stream 515 was refused with 255 streams open; {}",
        c.seen()
    );
}

// ---------------------------------------------------------------------------------------------
// Flow control.

/// Holds every `POST /held` 10 s before forwarding it: its body is not read meanwhile.
const HOLD_POLICY: &str = r#"
[policy]
[[policy.rules]]
name = "hold"
key = ["ip"]
limit = "match"
action = "tarpit"
tarpit = "10s"
[policy.rules.when]
routes = ["POST /held"]
"#;

#[tokio::test]
async fn data_past_the_one_mib_windows_gets_goaway_flow_control_error() {
    let (up, _) = upstream().await;
    let proxy = start_proxy(with_policy(native(up), HOLD_POLICY)).await;
    let mut c = Client::open(proxy.addr, &[]).await;
    c.headers(1, &post("/held", 2 * 1024 * 1024), false).await;
    // 1 MiB fills both the stream's window and the connection's; nothing of it is read (the
    // request is held), so no WINDOW_UPDATE may come. One byte more breaks both windows: the
    // connection's is checked first, so this is a connection error.
    let mut out = Vec::new();
    let chunk = vec![5u8; MAX_FRAME];
    for _ in 0..PROXY_WINDOW as usize / MAX_FRAME {
        frame::put_data(&mut out, 1, &chunk, false);
    }
    c.send(&out).await;
    c.send(&ping(b"in.order", false)).await;
    c.wait("PING ACK", |h, p| h.kind == kind::PING && p == b"in.order")
        .await;
    assert!(
        !c.backlog.iter().any(|(h, _)| {
            (h.kind == kind::WINDOW_UPDATE && h.stream == 1) || h.kind == kind::RST_STREAM
        }),
        "{}",
        c.seen()
    );
    let mut out = Vec::new();
    frame::put_data(&mut out, 1, b"!", false);
    c.send(&out).await;
    assert_eq!(c.expect_goaway(ErrorCode::FlowControl).await, 1);
}

#[tokio::test]
async fn a_three_mib_upload_that_respects_the_windows_reaches_the_upstream_whole() {
    const SIZE: usize = 3 * 1024 * 1024;
    let (proxy, requests) = proxy_with_upstream().await;
    let mut c = Client::open(proxy.addr, &[]).await;
    c.headers(1, &post("/count", SIZE), false).await;
    let body = pattern(SIZE);
    tokio::time::timeout(Duration::from_secs(20), c.upload(1, &body, MAX_FRAME, None))
        .await
        .expect("the upload finished");
    let (status, answer) = c.response(1).await;
    assert_eq!(status, 200);
    assert_eq!(String::from_utf8_lossy(&answer), SIZE.to_string());
    assert_eq!(requests.load(Ordering::SeqCst), 1);
    proxy.stop().await;
}

/// Padding counts against both windows (RFC 9113 §6.1, §6.9.1), so a receiver must credit it
/// back on both: otherwise a padded upload uses up its stream window and stalls.
#[tokio::test]
async fn a_padded_upload_is_given_its_stream_window_back() {
    const SIZE: usize = 400_000;
    let (proxy, _) = proxy_with_upstream().await;
    let mut c = Client::open(proxy.addr, &[]).await;
    c.headers(1, &post("/count", SIZE), false).await;
    // 100 bytes of data and 255 of padding a frame: the 1 MiB stream window is used up after
    // ~295 KB of data, before the 512 KiB the proxy waits for to send a stream WINDOW_UPDATE.
    let body = pattern(SIZE);
    c.upload(1, &body, 100, Some(255)).await;
    let (status, answer) = c.response(1).await;
    assert_eq!(status, 200);
    assert_eq!(String::from_utf8_lossy(&answer), SIZE.to_string());
    proxy.stop().await;
}

#[tokio::test]
async fn a_response_waits_for_the_clients_stream_window() {
    let (proxy, _) = proxy_with_upstream().await;
    let mut c = Client::open(proxy.addr, &[(setting::INITIAL_WINDOW_SIZE, 100)]).await;
    c.request(1, "/big", true).await;
    let (status, ended) = c.response_head(1).await;
    assert_eq!((status, ended), (200, false));
    // The upstream has sent all 20000 bytes long before this; the proxy holds all but 100.
    let (first, ended) = c.data_within(1, Duration::from_millis(500)).await;
    assert_eq!(first.len(), 100, "DATA sent within a 100-byte window");
    assert!(!ended);
    // Exactly the rest as window (the connection's 65535 is enough).
    let mut out = Vec::new();
    frame::put_window_update(&mut out, 1, (BIG - 100) as u32);
    c.send(&out).await;
    let mut body = first;
    loop {
        let (h, p) = c
            .wait("DATA on stream 1", |h, _| {
                h.stream == 1 && matches!(h.kind, kind::DATA | kind::RST_STREAM)
            })
            .await;
        assert_eq!(h.kind, kind::DATA, "{}", describe(&h, &p));
        body.extend_from_slice(&p);
        assert!(body.len() <= BIG, "more DATA than the window allowed");
        if h.has(flag::END_STREAM) {
            break;
        }
    }
    assert_eq!(body.len(), BIG);
    assert!(body == pattern(BIG), "the body arrived intact");
    proxy.stop().await;
}

/// An empty DATA frame with END_STREAM needs no window (RFC 9113 §6.9.1 allows it with none
/// left): a response that has used exactly the client's window can still end.
#[tokio::test]
async fn a_response_that_fills_the_window_exactly_still_ends() {
    let (proxy, _) = proxy_with_upstream().await;
    let mut c = Client::open(proxy.addr, &[(setting::INITIAL_WINDOW_SIZE, 100)]).await;
    // 100 bytes, then (300 ms later) the end of a chunked body.
    c.request(1, "/drip", true).await;
    assert_eq!(c.response_status(1).await, 200);
    let (body, ended) = c.data_within(1, Duration::from_secs(2)).await;
    assert_eq!(body.len(), 100);
    assert!(ended, "no END_STREAM without more window; {}", c.seen());
    proxy.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Limits and shutdown.

#[tokio::test]
async fn a_header_list_over_max_header_bytes_gets_431() {
    let (proxy, requests) = proxy_with_upstream().await;
    let mut c = Client::open(proxy.addr, &[]).await;
    // 10 fields of 7000 bytes: ~70 KB of header list (over 64 KiB), ~70 KB compressed (under
    // the 128 KiB block bound), in HEADERS + 4 CONTINUATIONs of at most 16 KiB.
    let mut fields = get("/");
    let value = "v".repeat(7000);
    let names = [
        "x-big-0", "x-big-1", "x-big-2", "x-big-3", "x-big-4", "x-big-5", "x-big-6", "x-big-7",
        "x-big-8", "x-big-9",
    ];
    for n in names {
        fields.push((n, value.clone()));
    }
    let block = c.block(&fields);
    assert!(block.len() > 64 * 1024 && block.len() < 128 * 1024);
    let mut out = Vec::new();
    frame::put_headers(&mut out, 1, &block, true, MAX_FRAME);
    let mut sizes = Vec::new();
    let mut at = 0;
    while let Some(h) = Head::parse(&out[at..]) {
        sizes.push((h.kind, h.len));
        at += frame::HEADER_LEN + h.len as usize;
    }
    assert_eq!(sizes.len(), 5, "{sizes:?}");
    assert!(sizes.iter().all(|&(_, n)| n as usize <= MAX_FRAME));
    c.send(&out).await;
    let (status, _) = c.response(1).await;
    assert_eq!(status, 431);
    // Not forwarded, and the connection goes on.
    c.request(3, "/", true).await;
    assert_eq!(c.response(3).await, (200, b"ok".to_vec()));
    assert_eq!(requests.load(Ordering::SeqCst), 1);
    proxy.stop().await;
}

#[tokio::test]
async fn after_the_clients_goaway_a_stream_in_flight_finishes_then_the_proxy_closes() {
    let up = start_mock().await;
    let proxy = start_proxy(native(up)).await;
    let mut c = Client::open(proxy.addr, &[]).await;
    // Five events 100 ms apart.
    c.request(1, "/v1/stream?n=5&delay_ms=100", true).await;
    let (status, ended) = c.response_head(1).await;
    assert_eq!((status, ended), (200, false));
    let mut out = Vec::new();
    frame::put_goaway(&mut out, 0, ErrorCode::NoError);
    c.send(&out).await;
    let mut body = Vec::new();
    loop {
        let (h, p) = c
            .wait("the rest of the stream", |h, _| {
                h.stream == 1 && matches!(h.kind, kind::DATA | kind::RST_STREAM)
            })
            .await;
        assert_eq!(h.kind, kind::DATA, "{}", describe(&h, &p));
        body.extend_from_slice(&p);
        if h.has(flag::END_STREAM) {
            break;
        }
    }
    let text = String::from_utf8_lossy(&body);
    assert_eq!(text.matches("data: {").count(), 5, "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    // Then the proxy says goodbye too, naming stream 1 as processed, and closes.
    assert_eq!(c.expect_goaway(ErrorCode::NoError).await, 1);
    proxy.stop().await;
}

/// RFC 9113 §6.8: "Endpoints MUST NOT increase the value they send in the last stream
/// identifier". A stream opened after the proxy's graceful GOAWAY is ignored, so a later GOAWAY
/// must not name it.
#[tokio::test]
async fn a_second_goaway_never_raises_the_last_stream_id() {
    let up = start_mock().await;
    let mut proxy = start_proxy(native(up)).await;
    let mut c = Client::open(proxy.addr, &[]).await;
    c.request(1, "/v1/slow?ms=2000", true).await;
    c.send(&ping(b"arrived.", false)).await;
    c.wait("PING ACK", |h, p| h.kind == kind::PING && p == b"arrived.")
        .await;
    proxy.trigger_stop();
    let (h, p) = c.wait("GOAWAY", |h, _| h.kind == kind::GOAWAY).await;
    assert_eq!(
        (be32(&p, 0), code_name(be32(&p, 4))),
        (1, "NO_ERROR".to_string()),
        "{}",
        describe(&h, &p)
    );
    // A new stream (ignored: after the GOAWAY), then a connection error (PING on a stream).
    c.request(3, "/v1/echo", true).await;
    let mut out = Vec::new();
    frame::put_head(&mut out, 8, kind::PING, 0, 1);
    out.extend_from_slice(b"badping!");
    c.send(&out).await;
    let last = c.expect_goaway(ErrorCode::Protocol).await;
    assert!(last <= 1, "the second GOAWAY names stream {last}");
}

// ---------------------------------------------------------------------------------------------
// Robustness.

/// SplitMix64: a small seeded generator, so that a failing case can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[tokio::test]
async fn random_frame_sequences_end_in_goaway_or_leave_the_connection_open() {
    const SEED: u64 = 0x5EED_2026;
    const CASES: usize = 200;
    let up = start_mock().await;
    let proxy = start_proxy(native(up)).await;
    let mut rng = Rng(SEED);
    let (mut open, mut closed) = (0, 0);
    let started = std::time::Instant::now();
    for case in 0..CASES {
        let mut c = Client::open(proxy.addr, &[]).await;
        let mut out = Vec::new();
        let mut frames = Vec::new();
        let mut next_id: u32 = 1;
        for _ in 0..1 + rng.below(6) {
            let t = rng.below(13) as u8;
            let mut flags = rng.next() as u8;
            // Three frames in four are plausible (the stream and length their type wants, HEADERS a
            // real request) so that the sequences get past the first checks; the rest are noise.
            let (stream, payload) = if rng.below(4) != 0 {
                let stream = match t {
                    kind::SETTINGS | kind::PING | kind::GOAWAY => 0,
                    kind::HEADERS => {
                        next_id += 2;
                        next_id - 2
                    }
                    _ => next_id.saturating_sub(2).max(1),
                };
                let len = match t {
                    kind::PRIORITY => 5,
                    kind::RST_STREAM | kind::WINDOW_UPDATE => 4,
                    kind::PING | kind::GOAWAY => 8,
                    kind::SETTINGS => 6 * rng.below(4),
                    _ => rng.below(65),
                };
                let payload = if t == kind::HEADERS {
                    flags |= flag::END_HEADERS;
                    c.block(&get("/v1/echo"))
                } else {
                    (0..len).map(|_| rng.next() as u8).collect()
                };
                (stream, payload)
            } else {
                let stream = match rng.below(4) {
                    0 => 0,
                    1 => 1,
                    2 => rng.below(8) as u32,
                    _ => rng.next() as u32 & frame::MAX_WINDOW,
                };
                (
                    stream,
                    (0..rng.below(65)).map(|_| rng.next() as u8).collect(),
                )
            };
            frame::put_head(&mut out, payload.len(), t, flags, stream);
            out.extend_from_slice(&payload);
            frames.push(format!(
                "type {t} flags {flags:#x} stream {stream} len {}",
                payload.len()
            ));
        }
        // Then a PING: answered if the connection is still good.
        out.extend_from_slice(&ping(b"alive?!!", false));
        let _ = c.try_send(&out).await;
        loop {
            match c.read_frame(WAIT).await {
                Err(()) => panic!(
                    "case {case} ({frames:?}): neither GOAWAY nor PING ACK; {}",
                    c.seen()
                ),
                Ok(None) => panic!("case {case} ({frames:?}): closed without GOAWAY"),
                Ok(Some((h, p))) if h.kind == kind::GOAWAY => {
                    assert!(p.len() >= 8, "case {case}: {}", describe(&h, &p));
                    // Whatever the code, the connection then closes (or this panics).
                    while c.next_frame().await.is_some() {}
                    closed += 1;
                    break;
                }
                Ok(Some((h, p))) if h.kind == kind::PING && p == b"alive?!!" => {
                    assert!(h.has(flag::ACK));
                    open += 1;
                    break;
                }
                Ok(Some(f)) => c.backlog.push_back(f),
            }
        }
    }
    assert_eq!(open + closed, CASES);
    assert!(
        open > 0 && closed > 0,
        "both outcomes occur: {open} open, {closed} closed"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    // The proxy lives on: a new connection is served.
    let mut c = Client::open(proxy.addr, &[]).await;
    c.request(1, "/v1/echo", true).await;
    assert_eq!(c.response(1).await.0, 200);
    proxy.stop().await;
}
