//! The upstream hop byte by byte: a scripted raw TCP upstream records exactly what the proxy
//! writes (head and body framing) and answers with exactly the bytes a test gives it, including
//! the odd and the broken. Clients are real: curl and a rustls client over HTTP/1.1 and HTTP/2.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request as the upstream received it.
#[derive(Debug, Clone)]
struct Seen {
    head: String,
    /// The body after undoing the framing the head announced.
    body: Vec<u8>,
    chunked: bool,
}

impl Seen {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

/// What the upstream answers to a request: raw bytes, and whether to close afterwards.
type Script = Arc<dyn Fn(&Seen) -> (Vec<u8>, bool) + Send + Sync>;

struct Upstream {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    accepted: Arc<AtomicUsize>,
}

async fn read_more(s: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 8192];
    match s.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

/// Reads one request (head, then a content-length or chunked body) off `buf`/`s`.
async fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Seen> {
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if !read_more(s, buf).await {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    buf.drain(..end + 4);
    let mut seen = Seen {
        head,
        body: Vec::new(),
        chunked: false,
    };
    if seen
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        seen.chunked = true;
        loop {
            let line_end = loop {
                if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                if !read_more(s, buf).await {
                    return None;
                }
            };
            let size =
                usize::from_str_radix(std::str::from_utf8(&buf[..line_end]).ok()?, 16).ok()?;
            buf.drain(..line_end + 2);
            while buf.len() < size + 2 {
                if !read_more(s, buf).await {
                    return None;
                }
            }
            seen.body.extend_from_slice(&buf[..size]);
            assert_eq!(&buf[size..size + 2], b"\r\n", "chunk data ends with CRLF");
            buf.drain(..size + 2);
            if size == 0 {
                break;
            }
        }
    } else if let Some(n) = seen.header("content-length") {
        let n: usize = n.parse().expect("content-length");
        while buf.len() < n {
            if !read_more(s, buf).await {
                return None;
            }
        }
        seen.body = buf.drain(..n).collect();
    }
    Some(seen)
}

async fn scripted_upstream(script: Script) -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let accepted = Arc::new(AtomicUsize::new(0));
    let (seen2, accepted2) = (seen.clone(), accepted.clone());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            accepted2.fetch_add(1, Ordering::SeqCst);
            let (seen, script) = (seen2.clone(), script.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while let Some(req) = read_request(&mut s, &mut buf).await {
                    seen.lock().expect("lock").push(req.clone());
                    let (answer, close) = script(&req);
                    if s.write_all(&answer).await.is_err() || close {
                        return;
                    }
                }
            });
        }
    });
    Upstream {
        addr,
        seen,
        accepted,
    }
}

fn ok_json(seen: &Seen) -> (Vec<u8>, bool) {
    let body = format!("{{\"len\":{}}}", seen.body.len());
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    ([head.into_bytes(), body.into_bytes()].concat(), false)
}

async fn curl(args: &[&str]) -> (String, String) {
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--cacert", DEV_CERT, "--max-time", "10"])
        .args(args)
        .output()
        .await
        .expect("curl runs");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn url(proxy: &TestProxy, path: &str) -> String {
    format!("https://localhost:{}{path}", proxy.addr.port())
}

#[tokio::test]
async fn request_bodies_keep_their_length_or_go_chunked() {
    let up = scripted_upstream(Arc::new(ok_json)).await;
    let proxy = start_proxy(test_config(up.addr)).await;
    let payload: String = (0..50_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let file = tempfile::NamedTempFile::new().expect("tmp");
    std::fs::write(file.path(), &payload).expect("write");
    let data = format!("@{}", file.path().display());

    // HTTP/1.1 with a length: passed on with that length.
    let (out, err) = curl(&["--http1.1", "--data-binary", &data, &url(&proxy, "/v1/a")]).await;
    assert_eq!(out, "{\"len\":50000}", "{err}");
    // HTTP/1.1 chunked from the client: chunked upstream, the same bytes.
    let (out, err) = curl(&[
        "--http1.1",
        "-H",
        "transfer-encoding: chunked",
        "--data-binary",
        &data,
        &url(&proxy, "/v1/b"),
    ])
    .await;
    assert_eq!(out, "{\"len\":50000}", "{err}");
    // HTTP/2 with a length.
    let (out, err) = curl(&["--http2", "--data-binary", &data, &url(&proxy, "/v1/c")]).await;
    assert_eq!(out, "{\"len\":50000}", "{err}");

    let seen = up.seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 3);
    for s in &seen {
        assert_eq!(s.body, payload.as_bytes(), "{}", s.head);
        assert!(s.head.starts_with("POST /v1/"), "{}", s.head);
        assert_eq!(s.header("host"), Some(up.addr.to_string()), "{}", s.head);
        assert!(s.head.contains("\r\nx-portcullis-ja4: t13d"), "{}", s.head);
    }
    assert_eq!(seen[0].header("content-length").as_deref(), Some("50000"));
    assert!(!seen[0].chunked);
    assert!(seen[1].chunked, "{}", seen[1].head);
    assert_eq!(seen[1].header("content-length"), None);
    assert_eq!(seen[2].header("content-length").as_deref(), Some("50000"));
    proxy.stop().await;
}

#[tokio::test]
async fn an_http2_body_without_a_length_goes_chunked() {
    let up = scripted_upstream(Arc::new(ok_json)).await;
    let proxy = start_proxy(test_config(up.addr)).await;
    let tls = tls_connect(proxy.addr, client_tls(&[b"h2"]))
        .await
        .expect("tls");
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    // Three DATA frames, no content-length: the proxy cannot know the length in advance.
    let frames = ["first,", "second,", "third"]
        .map(|s| Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(Bytes::from(s))));
    let body = StreamBody::new(futures_util::stream::iter(frames));
    let req = http::Request::post("https://localhost/v1/stream-up")
        .body(body)
        .expect("req");
    let resp = send.send_request(req).await.expect("response");
    assert_eq!(resp.status(), 200);
    let got = resp.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(&got[..], b"{\"len\":18}");
    let seen = up.seen.lock().expect("lock").clone();
    assert!(seen[0].chunked, "{}", seen[0].head);
    assert_eq!(seen[0].body, b"first,second,third");
    proxy.stop().await;
}

/// Raw response bytes for a path; `close` after answering.
fn answer_by_path(seen: &Seen) -> (Vec<u8>, bool) {
    let path = seen.head.split(' ').nth(1).unwrap_or("");
    let raw: &[u8] = match path {
        "/chunked" => b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nx-trailer: t\r\n\r\n",
        "/interim" => b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfinal",
        "/close-delimited" => b"HTTP/1.1 200 OK\r\n\r\nuntil the end",
        "/garbage" => b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
        "/two-lengths" => b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\nabcd",
        "/bad-chunk" => b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        "/truncated" => b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten b",
        "/nothing" => b"",
        "/head" => b"HTTP/1.1 200 OK\r\ncontent-length: 1234\r\n\r\n",
        _ => return ok_json(seen),
    };
    let close = matches!(
        path,
        "/close-delimited" | "/garbage" | "/truncated" | "/nothing" | "/bad-chunk"
    );
    (raw.to_vec(), close)
}

#[tokio::test]
async fn response_framings_reach_the_client_intact() {
    let up = scripted_upstream(Arc::new(answer_by_path)).await;
    let proxy = start_proxy(test_config(up.addr)).await;
    for (path, want) in [
        ("/chunked", "hello, world"),
        ("/interim", "final"),
        ("/close-delimited", "until the end"),
    ] {
        for version in ["--http1.1", "--http2"] {
            let (out, err) = curl(&[version, &url(&proxy, path)]).await;
            assert_eq!(out, want, "{path} {version}: {err}");
        }
    }
    // HEAD: the length is the one a GET would have; no body is read, the connection is reused.
    let before = up.accepted.load(Ordering::SeqCst);
    for _ in 0..2 {
        let (out, err) = curl(&["--http1.1", "-I", &url(&proxy, "/head")]).await;
        assert!(
            out.to_ascii_lowercase().contains("content-length: 1234"),
            "{out}{err}"
        );
    }
    let (out, _) = curl(&["--http1.1", &url(&proxy, "/after-head")]).await;
    assert_eq!(out, "{\"len\":0}");
    assert!(
        up.accepted.load(Ordering::SeqCst) <= before + 1,
        "one connection at most for all three"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn a_broken_upstream_gets_a_502_or_a_cut_body_and_the_next_request_works() {
    let up = scripted_upstream(Arc::new(answer_by_path)).await;
    let proxy = start_proxy(test_config(up.addr)).await;
    for path in ["/garbage", "/two-lengths", "/nothing"] {
        let (status, _, body) = https_get(proxy.addr, path, &[]).await;
        assert_eq!(status, 502, "{path}: {body}");
        assert_eq!(api_error_type(&body), "api_error", "{path}");
    }
    // The head was fine and the body broke: the status is already sent, so the client sees
    // the body end early (curl reports it), never a made-up ending.
    for path in ["/truncated", "/bad-chunk"] {
        let out = tokio::process::Command::new("curl")
            .args(["-sS", "--http1.1", "--cacert", DEV_CERT, "--max-time", "10"])
            .arg(url(&proxy, path))
            .output()
            .await
            .expect("curl");
        assert!(!out.status.success(), "{path}: curl accepted a cut body");
    }
    let (status, _, body) = https_get(proxy.addr, "/fine", &[]).await;
    assert_eq!((status, body.as_str()), (200, "{\"len\":0}"));
    proxy.stop().await;
}

#[tokio::test]
async fn expect_continue_is_answered_by_the_proxy_not_passed_on() {
    let up = scripted_upstream(Arc::new(ok_json)).await;
    let proxy = start_proxy(test_config(up.addr)).await;
    let tls = tls_connect(proxy.addr, client_tls(&[b"http/1.1"]))
        .await
        .expect("tls");
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let req = http::Request::post("/v1/e")
        .header("host", "localhost")
        .header("expect", "100-continue")
        .body(Full::new(Bytes::from_static(b"0123456789")))
        .expect("req");
    let resp = send.send_request(req).await.expect("response");
    assert_eq!(resp.status(), 200);
    let seen = up.seen.lock().expect("lock").clone();
    assert_eq!(seen[0].header("expect"), None, "{}", seen[0].head);
    assert_eq!(seen[0].body, b"0123456789");
    proxy.stop().await;
}
