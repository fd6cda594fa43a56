//! Hostile and broken first bytes against a real proxy on 127.0.0.1:0: every bad ClientHello
//! gets a bounded, clean close counted under its reason, and never disturbs other clients.
//! Also connection-level behaviour around the hello: max_connections, PROXY protocol from
//! trusted and untrusted peers, stripping of client-sent fingerprint headers, idle keep-alive.
//!
//! The metrics recorder is process-wide and tests run in parallel, so every case that asserts a
//! counter delta lives in `bad_first_bytes_are_counted_and_closed`, run one after the other
//! against one proxy; the other tests assert no counters.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{
    client_tls, echo_headers, eventually, https_get, metric, start_mock, start_proxy, test_config,
    tls_connect, TestProxy,
};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Generous upper bound for "the server closed the connection": several times the configured
/// timeouts of the shared proxy (1 s), never a tight timing.
const CLOSE_BOUND: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

/// A real rustls ClientHello (one TLS record) from a fresh connection of `cfg`.
fn client_hello_record(cfg: Arc<rustls::ClientConfig>) -> (rustls::ClientConnection, Vec<u8>) {
    let name = ServerName::try_from("localhost").expect("server name");
    let mut conn = rustls::ClientConnection::new(cfg, name).expect("client connection");
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).expect("write_tls into a Vec");
    }
    assert_eq!(
        out.first(),
        Some(&0x16),
        "rustls first flight is a handshake record"
    );
    (conn, out)
}

/// Just the bytes of a real ClientHello record.
fn real_hello() -> Vec<u8> {
    client_hello_record(client_tls(&[b"http/1.1"])).1
}

/// Re-frames one handshake record into records of at most `ceil(len / parts)` payload bytes each
/// (RFC 8446 §5.1: a handshake message may be fragmented over several records).
fn refragment(record: &[u8], parts: usize) -> Vec<u8> {
    assert!(record.len() > 5, "record too short");
    let len = usize::from(u16::from_be_bytes([record[3], record[4]]));
    assert_eq!(record.len(), 5 + len, "expected exactly one record");
    let msg = &record[5..];
    let size = len.div_ceil(parts);
    let mut out = Vec::new();
    for piece in msg.chunks(size) {
        let n = u16::try_from(piece.len()).expect("fragment fits u16");
        out.extend_from_slice(&[0x16, record[1], record[2]]);
        out.extend_from_slice(&n.to_be_bytes());
        out.extend_from_slice(piece);
    }
    out
}

/// Reads until EOF or an error (both mean the server closed), within `bound`; returns what was
/// read. Panics, naming `what`, if the connection is still open after `bound`.
async fn read_until_closed<R: AsyncRead + Unpin>(
    r: &mut R,
    bound: Duration,
    what: &str,
) -> Vec<u8> {
    let mut out = Vec::new();
    let closed = tokio::time::timeout(bound, async {
        let mut chunk = [0u8; 4096];
        loop {
            match r.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "{what}: server did not close the connection within {bound:?}"
    );
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A whole HTTP/1.1 response at the start of `buf`: (status, lower-cased head, decoded body).
/// `None` while more bytes are needed. Handles content-length and chunked bodies.
fn parse_response(buf: &[u8]) -> Option<(u16, String, Vec<u8>)> {
    let head_end = find(buf, b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status: u16 = head.get(9..12)?.parse().ok()?;
    let body = &buf[head_end..];
    if head.contains("transfer-encoding: chunked") {
        let mut out = Vec::new();
        let mut rest = body;
        loop {
            let line_end = find(rest, b"\r\n")?;
            let size_text = std::str::from_utf8(&rest[..line_end]).ok()?;
            let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
            rest = &rest[line_end + 2..];
            if size == 0 {
                // No trailers: an empty line ends the body; with trailers, a blank line after them.
                if rest.starts_with(b"\r\n") || find(rest, b"\r\n\r\n").is_some() {
                    return Some((status, head, out));
                }
                return None;
            }
            if rest.len() < size + 2 {
                return None;
            }
            out.extend_from_slice(&rest[..size]);
            rest = &rest[size + 2..];
        }
    }
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    match length {
        Some(n) if body.len() >= n => Some((status, head, body[..n].to_vec())),
        Some(_) => None,
        None => Some((status, head, body.to_vec())),
    }
}

/// TLS (dev cert, ALPN http/1.1) and one HTTP/1.1 GET over an already connected stream;
/// returns status and body, or what failed.
async fn get_over<S>(stream: S, path: &str, extra: &[(&str, &str)]) -> Result<(u16, String), String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    let tls = TlsConnector::from(client_tls(&[b"http/1.1"]))
        .connect(name, stream)
        .await
        .map_err(|e| format!("tls: {e}"))?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| format!("h1 handshake: {e}"))?;
    tokio::spawn(conn);
    let mut b = http::Request::get(path).header("host", "localhost");
    for (k, v) in extra {
        b = b.header(*k, *v);
    }
    let req = b.body(Empty::<Bytes>::new()).map_err(|e| e.to_string())?;
    let resp = send
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// A new TCP + TLS connection and one GET; `Err` instead of a panic when anything fails.
async fn try_get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    get_over(tcp, path, &[]).await
}

async fn failures(p: &TestProxy, reason: &str) -> f64 {
    metric(
        &p.metrics().await,
        "portcullis_tls_failures_total",
        &format!("reason=\"{reason}\""),
    )
}

/// Waits (bounded) for `portcullis_tls_failures_total{reason}` to exceed `before`, asserts it
/// did, then checks the proxy still serves a normal client.
async fn expect_counted(p: &TestProxy, reason: &str, before: f64) {
    let counted = eventually(Duration::from_secs(5), || async move {
        failures(p, reason).await >= before + 1.0
    })
    .await;
    let now = failures(p, reason).await;
    assert!(
        counted,
        "reason {reason}: counter went from {before} to {now}, expected +1 or more"
    );
    let (status, _, _) = https_get(p.addr, "/v1/echo", &[]).await;
    assert_eq!(
        status, 200,
        "proxy still serves after a {reason} connection"
    );
}

/// A deterministic xorshift byte stream (no `rand` dependency).
fn pseudo_random_bytes(n: usize, mut seed: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed.to_le_bytes()[3]
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// every bad first flight, sequentially, with counter deltas
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_first_bytes_are_counted_and_closed() {
    let up = start_mock().await;
    let mut cfg = test_config(up);
    cfg.timeouts.client_hello = Duration::from_secs(1);
    cfg.timeouts.handshake = Duration::from_secs(1);
    let p = start_proxy(cfg).await;
    let (status, _, _) = https_get(p.addr, "/v1/echo", &[]).await;
    assert_eq!(status, 200, "proxy serves before the bad inputs");

    // Garbage: not a handshake record, not SSLv2 (high bit clear), not an HTTP method start.
    {
        let before = failures(&p, "not_tls").await;
        let mut garbage = pseudo_random_bytes(64, 0x9e37_79b9_7f4a_7c15);
        garbage[0] &= 0x7f;
        if garbage[0] == 0x16 || b"GPHDOCT".contains(&garbage[0]) {
            garbage[0] = 0x00;
        }
        let mut s = TcpStream::connect(p.addr).await.expect("connect");
        s.write_all(&garbage).await.expect("write garbage");
        read_until_closed(&mut s, CLOSE_BOUND, "garbage").await;
        expect_counted(&p, "not_tls", before).await;
    }

    // Plaintext HTTP on the TLS port: a plain 400 that says to use HTTPS, then close.
    {
        let before = failures(&p, "plain_http").await;
        let mut s = TcpStream::connect(p.addr).await.expect("connect");
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write request");
        let got = read_until_closed(&mut s, CLOSE_BOUND, "plain http").await;
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.starts_with("HTTP/1.1 400"),
            "plain HTTP answer: {text:?}"
        );
        assert!(
            text.contains("HTTPS"),
            "the 400 says the port speaks HTTPS: {text:?}"
        );
        expect_counted(&p, "plain_http", before).await;
    }

    // SSLv2-style CLIENT-HELLO: 2-byte header with the high bit set, msg type 1, version 3.1,
    // cipher-spec length 21, session-id length 0, challenge length 16.
    {
        let before = failures(&p, "sslv2").await;
        let mut v2 = vec![
            0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10,
        ];
        for spec in 0u8..7 {
            v2.extend_from_slice(&[0x00, 0x00, 0x2f + spec]);
        }
        v2.extend_from_slice(&[0xab; 16]);
        assert_eq!(v2.len(), 2 + 0x2e, "SSLv2 record length matches its header");
        let mut s = TcpStream::connect(p.addr).await.expect("connect");
        s.write_all(&v2).await.expect("write sslv2 hello");
        read_until_closed(&mut s, CLOSE_BOUND, "sslv2").await;
        expect_counted(&p, "sslv2", before).await;
    }

    // Truncated ClientHello: the first half of a real one, then the client's write side closes.
    {
        let before = failures(&p, "hello_eof").await;
        let hello = real_hello();
        let mut s = TcpStream::connect(p.addr).await.expect("connect");
        s.write_all(&hello[..hello.len() / 2])
            .await
            .expect("write half hello");
        s.shutdown().await.expect("shutdown write side");
        read_until_closed(&mut s, CLOSE_BOUND, "truncated hello").await;
        expect_counted(&p, "hello_eof", before).await;
    }

    // Oversize: a 16 KiB record starting a handshake message of 64 KiB + 4 bytes. Rejected from
    // the length fields alone: only ~1 KiB is ever sent, and the close comes as too_large, not
    // as hello_timeout.
    {
        let before = failures(&p, "too_large").await;
        let mut big = vec![0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x01, 0x00, 0x00];
        big.extend_from_slice(&[0x03, 0x03]);
        big.extend_from_slice(&[0x5a; 1024]);
        let mut s = TcpStream::connect(p.addr).await.expect("connect");
        // The server may close (and reset) before reading all of it; that is fine.
        let _ = s.write_all(&big).await;
        read_until_closed(&mut s, CLOSE_BOUND, "oversize hello").await;
        expect_counted(&p, "too_large", before).await;
    }

    // Slow loris: one byte per second of a real ClientHello against a 1 s hello timeout. A normal
    // client served meanwhile is not delayed by it.
    {
        let before = failures(&p, "hello_timeout").await;
        let hello = real_hello();
        let s = TcpStream::connect(p.addr).await.expect("connect");
        let (mut rd, mut wr) = s.into_split();
        let writer = tokio::spawn(async move {
            for b in hello {
                if wr.write_all(&[b]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        let closed = Arc::new(AtomicBool::new(false));
        let reader = {
            let closed = closed.clone();
            tokio::spawn(async move {
                read_until_closed(&mut rd, CLOSE_BOUND, "slow hello").await;
                closed.store(true, Ordering::SeqCst);
            })
        };
        let (status, _, _) = https_get(p.addr, "/v1/echo", &[]).await;
        assert_eq!(
            status, 200,
            "normal client served while a slow hello is pending"
        );
        assert!(
            !closed.load(Ordering::SeqCst),
            "the normal request should finish while the slow client is still connected"
        );
        reader.await.expect("slow-hello reader task");
        writer.abort();
        expect_counted(&p, "hello_timeout", before).await;
    }

    // A whole valid ClientHello, then silence: the handshake timeout (1 s) closes it.
    {
        let before = failures(&p, "handshake_timeout").await;
        let hello = real_hello();
        let mut s = TcpStream::connect(p.addr).await.expect("connect");
        s.write_all(&hello).await.expect("write hello");
        let got = read_until_closed(&mut s, CLOSE_BOUND, "silent after hello").await;
        assert_eq!(
            got.first(),
            Some(&0x16),
            "the server answered the hello before timing out"
        );
        expect_counted(&p, "handshake_timeout", before).await;
    }

    // A handshake record whose message is not a ClientHello (type 2, ServerHello).
    {
        let before = failures(&p, "not_client_hello").await;
        let mut rec = vec![
            0x16, 0x03, 0x03, 0x00, 0x2a, 0x02, 0x00, 0x00, 0x26, 0x03, 0x03,
        ];
        rec.extend_from_slice(&[0x11; 32]);
        rec.extend_from_slice(&[0x00, 0x13, 0x01, 0x00]);
        assert_eq!(rec.len(), 5 + 0x2a, "record length matches its header");
        let mut s = TcpStream::connect(p.addr).await.expect("connect");
        s.write_all(&rec).await.expect("write server hello");
        read_until_closed(&mut s, CLOSE_BOUND, "not a client hello").await;
        expect_counted(&p, "not_client_hello", before).await;
    }

    p.stop().await;
}

// ---------------------------------------------------------------------------------------------
// fragmented hello
// ---------------------------------------------------------------------------------------------

/// A real rustls ClientHello re-split into 3 records and sent in 7-byte TCP segments: the proxy
/// reassembles it, rustls completes the handshake on the replayed bytes, and the JA4 equals the
/// one of an unfragmented connection from the same client configuration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragmented_client_hello_is_reassembled() {
    let up = start_mock().await;
    let p = start_proxy(test_config(up)).await;
    let addr = p.addr;

    // Reference: an ordinary connection (fresh config, so no resumption state in either hello).
    let (status, _, body) = https_get(addr, "/v1/echo", &[]).await;
    assert_eq!(status, 200);
    let reference = echo_headers(&body)
        .get("x-portcullis-ja4")
        .and_then(|v| v.as_str())
        .expect("upstream got a JA4 header")
        .to_owned();

    let (status, head, body) = tokio::task::spawn_blocking(move || {
        let (mut conn, record) = client_hello_record(client_tls(&[b"http/1.1"]));
        let fragmented = refragment(&record, 3);
        assert_eq!(fragmented.len(), record.len() + 2 * 5, "three records");

        let mut tcp = std::net::TcpStream::connect(addr).expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        tcp.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("read timeout");
        tcp.set_write_timeout(Some(Duration::from_secs(10)))
            .expect("write timeout");
        for piece in fragmented.chunks(7) {
            tcp.write_all(piece).expect("write hello piece");
            std::thread::sleep(Duration::from_millis(2));
        }

        let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
        tls.write_all(b"GET /v1/echo HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .expect("handshake and request over the fragmented hello");
        let mut got = Vec::new();
        if let Err(e) = tls.read_to_end(&mut got) {
            // A close without close_notify still leaves the whole response in `got`.
            assert_eq!(
                e.kind(),
                std::io::ErrorKind::UnexpectedEof,
                "read response: {e}"
            );
        }
        parse_response(&got)
            .unwrap_or_else(|| panic!("incomplete response: {:?}", String::from_utf8_lossy(&got)))
    })
    .await
    .expect("blocking client task");

    assert_eq!(status, 200, "response head: {head}");
    let body = String::from_utf8_lossy(&body).into_owned();
    let ja4 = echo_headers(&body)
        .get("x-portcullis-ja4")
        .and_then(|v| v.as_str())
        .expect("upstream got a JA4 header for the fragmented hello")
        .to_owned();
    assert_eq!(ja4, reference, "fragmentation must not change the JA4");
    p.stop().await;
}

// ---------------------------------------------------------------------------------------------
// connection-level behaviour (no counter asserts)
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_closes_extra_connections() {
    let up = start_mock().await;
    let mut cfg = test_config(up);
    cfg.server.max_connections = 1;
    let p = start_proxy(cfg).await;

    let held = tls_connect(p.addr, client_tls(&[b"http/1.1"]))
        .await
        .expect("first connection completes its handshake");

    let second = tokio::time::timeout(
        Duration::from_secs(10),
        tls_connect(p.addr, client_tls(&[b"http/1.1"])),
    )
    .await
    .expect("second connection is closed promptly, not left hanging");
    assert!(
        second.is_err(),
        "a connection over max_connections must not get a TLS handshake"
    );

    drop(held);
    let addr = p.addr;
    let served = eventually(Duration::from_secs(10), || async move {
        matches!(try_get(addr, "/v1/echo").await, Ok((200, _)))
    })
    .await;
    assert!(
        served,
        "a new connection is served once the first one is gone"
    );
    p.stop().await;
}

fn proxy_v2_tcp4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    // haproxy proxy-protocol.txt §2.2: 12-byte signature, version 2 | command PROXY (0x21),
    // AF_INET | STREAM (0x11), uint16 address length (12), then src, dst, sport, dport.
    let mut b = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    b.extend_from_slice(&[0x21, 0x11, 0x00, 0x0c]);
    b.extend_from_slice(&src);
    b.extend_from_slice(&dst);
    b.extend_from_slice(&sport.to_be_bytes());
    b.extend_from_slice(&dport.to_be_bytes());
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_from_trusted_peer_sets_client_address() {
    let up = start_mock().await;
    let mut cfg = test_config(up);
    cfg.server.trusted_proxies = vec!["127.0.0.0/8".parse().expect("cidr")];
    let p = start_proxy(cfg).await;

    let headers: [(&str, Vec<u8>); 2] = [
        (
            "v1",
            b"PROXY TCP4 203.0.113.9 127.0.0.1 5555 443\r\n".to_vec(),
        ),
        (
            "v2",
            proxy_v2_tcp4([203, 0, 113, 9], [127, 0, 0, 1], 5555, 443),
        ),
    ];
    for (version, header) in headers {
        let mut tcp = TcpStream::connect(p.addr).await.expect("connect");
        tcp.write_all(&header).await.expect("write PROXY header");
        let (status, body) =
            tokio::time::timeout(Duration::from_secs(10), get_over(tcp, "/v1/echo", &[]))
                .await
                .unwrap_or_else(|_| panic!("PROXY {version}: request timed out"))
                .unwrap_or_else(|e| panic!("PROXY {version}: {e}"));
        assert_eq!(status, 200, "PROXY {version}");
        let h = echo_headers(&body);
        assert_eq!(
            h.get("x-forwarded-for").and_then(|v| v.as_str()),
            Some("203.0.113.9"),
            "PROXY {version}: upstream sees the client named by the header; got {h:?}"
        );
    }
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_from_untrusted_peer_is_not_honoured() {
    let up = start_mock().await;
    let mut cfg = test_config(up);
    cfg.server.trusted_proxies = vec!["10.0.0.0/8".parse().expect("cidr")];
    let p = start_proxy(cfg).await;

    let mut tcp = TcpStream::connect(p.addr).await.expect("connect");
    tcp.write_all(b"PROXY TCP4 203.0.113.9 127.0.0.1 5555 443\r\n")
        .await
        .expect("write PROXY header");
    let res = tokio::time::timeout(Duration::from_secs(10), get_over(tcp, "/v1/echo", &[]))
        .await
        .expect("the untrusted connection is closed, not left hanging");
    assert!(
        res.is_err(),
        "a PROXY header from an untrusted peer is not TLS; got {res:?}"
    );

    // Without a PROXY header the same peer is served normally, under its own address.
    let (status, _, body) = https_get(p.addr, "/v1/echo", &[]).await;
    assert_eq!(status, 200);
    let h = echo_headers(&body);
    assert_eq!(
        h.get("x-forwarded-for").and_then(|v| v.as_str()),
        Some("127.0.0.1")
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_sent_fingerprint_headers_are_replaced() {
    let up = start_mock().await;
    let p = start_proxy(test_config(up)).await;
    let (status, _, body) = https_get(
        p.addr,
        "/v1/echo",
        &[
            ("x-portcullis-ja4", "forged"),
            ("x-portcullis-ja3", "forged"),
            ("x-portcullis-ja4-r", "forged"),
            ("x-portcullis-other", "forged"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    let h = echo_headers(&body);
    let ja4 = h
        .get("x-portcullis-ja4")
        .and_then(|v| v.as_str())
        .expect("JA4 header upstream");
    assert!(
        ja4.starts_with("t13"),
        "the real JA4 of a TLS 1.3 client, got {ja4:?}"
    );
    for (k, v) in &h {
        assert!(
            !(k.starts_with("x-portcullis-") && v.as_str().is_some_and(|v| v.contains("forged"))),
            "client copy of {k} reached the upstream: {v}"
        );
    }
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connection_is_closed() {
    let up = start_mock().await;
    let mut cfg = test_config(up);
    cfg.timeouts.idle = Duration::from_millis(300);
    let p = start_proxy(cfg).await;

    let mut tls = tls_connect(p.addr, client_tls(&[b"http/1.1"]))
        .await
        .expect("tls");
    tls.write_all(b"GET /v1/echo HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("write request");
    let mut got = Vec::new();
    let response = tokio::time::timeout(Duration::from_secs(10), async {
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(r) = parse_response(&got) {
                return r;
            }
            let n = tls.read(&mut chunk).await.expect("read response");
            assert!(
                n > 0,
                "closed before the response was complete: {:?}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .expect("response within 10 s");
    assert_eq!(response.0, 200, "head: {}", response.1);
    assert!(
        !response.1.contains("connection: close"),
        "the response keeps the connection alive"
    );

    // Now idle: the server must close it (read returns 0 or an error), well within 10 s.
    let mut chunk = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut chunk))
        .await
        .expect("idle keep-alive connection closed by the server within 10 s");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "expected EOF or an error on the idle connection, got {read:?}"
    );
    p.stop().await;
}
