//! End to end: real TLS clients (rustls, curl, openssl s_client) through the real proxy to a
//! real upstream (the bundled mock model API, or a test server of our own).

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::channel::Channel;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Notify};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn assert_ja4_shape(v: &str, alpn: &str) {
    let parts: Vec<&str> = v.split('_').collect();
    assert_eq!(parts.len(), 3, "JA4 has three parts: {v}");
    assert!(parts[0].starts_with("t13d"), "TLS 1.3 with SNI: {v}");
    assert!(parts[0].ends_with(alpn), "ALPN chars {alpn}: {v}");
    assert_eq!(parts[1].len(), 12);
    assert_eq!(parts[2].len(), 12);
}

#[tokio::test]
async fn rustls_http1_upstream_receives_fingerprints() {
    let (proxy, _) = proxy_with_mock().await;
    let (status, _, body) =
        https_get(proxy.addr, "/v1/echo", &[("x-portcullis-ja3", "forged")]).await;
    assert_eq!(status, 200);
    let h = echo_headers(&body);
    assert_ja4_shape(h["x-portcullis-ja4"].as_str().expect("ja4"), "h1");
    let ja3 = h["x-portcullis-ja3"].as_str().expect("ja3");
    assert!(
        ja3.starts_with("771,"),
        "JA3 starts with the legacy version: {ja3}"
    );
    assert_ne!(ja3, "forged");
    assert_eq!(h["x-portcullis-ja3-hash"].as_str().expect("hash").len(), 32);
    assert!(h["x-portcullis-ja4-r"]
        .as_str()
        .expect("ja4_r")
        .starts_with("t13d"));
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "https");
    proxy.stop().await;
}

#[tokio::test]
async fn fingerprint_headers_can_be_renamed_or_left_out() {
    let up = start_mock().await;
    let mut cfg = test_config(up);
    cfg.headers.ja4 = "x-edge-ja4".into();
    for off in [
        &mut cfg.headers.ja3,
        &mut cfg.headers.ja3_hash,
        &mut cfg.headers.ja4_r,
        &mut cfg.headers.header_fp,
        &mut cfg.headers.tcp_rtt,
        &mut cfg.headers.tls_rtt,
    ] {
        off.clear();
    }
    assert!(cfg.problems().is_empty(), "{:?}", cfg.problems());
    let proxy = start_proxy(cfg).await;
    let forged = [
        ("x-portcullis-ja3", "forged"),
        ("x-portcullis-ja4", "forged"),
        ("x-edge-ja4", "forged"),
    ];
    let (status, _, body) = https_get(proxy.addr, "/v1/echo", &forged).await;
    assert_eq!(status, 200);
    let h = echo_headers(&body);
    assert_ja4_shape(h["x-edge-ja4"].as_str().expect("renamed ja4"), "h1");
    let ours: Vec<&String> = h
        .keys()
        .filter(|k| k.starts_with("x-portcullis-"))
        .collect();
    assert!(
        ours.is_empty(),
        "left out, forged copies stripped: {ours:?}"
    );
    assert_eq!(h["x-forwarded-proto"], "https");
    proxy.stop().await;
}

#[tokio::test]
async fn rustls_http2_upstream_receives_fingerprints() {
    let (proxy, _) = proxy_with_mock().await;
    let tls = tls_connect(proxy.addr, client_tls(&[b"h2", b"http/1.1"]))
        .await
        .expect("tls");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    // Several streams on one connection share the connection's fingerprint.
    let mut seen = Vec::new();
    for _ in 0..3 {
        let req = http::Request::get("https://localhost/v1/echo")
            .body(Empty::<Bytes>::new())
            .expect("req");
        let resp = send.send_request(req).await.expect("resp");
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        let h = echo_headers(&String::from_utf8_lossy(&body));
        let ja4 = h["x-portcullis-ja4"].as_str().expect("ja4").to_string();
        assert_ja4_shape(&ja4, "h2");
        seen.push(ja4);
    }
    assert!(seen.windows(2).all(|w| w[0] == w[1]));
    proxy.stop().await;
}

async fn curl(args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new("curl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("curl must be installed (scripts/test.sh installs it)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn curl_http1_and_http2() {
    let (proxy, _) = proxy_with_mock().await;
    let url = format!("https://localhost:{}/v1/echo", proxy.addr.port());
    let resolve = format!("localhost:{}:127.0.0.1", proxy.addr.port());
    for (flag, alpn, version) in [("--http1.1", "h1", "1.1"), ("--http2", "h2", "2")] {
        let (ok, out, err) = curl(&[
            "-sS",
            flag,
            "--cacert",
            DEV_CERT,
            "--resolve",
            &resolve,
            "-w",
            "\n%{http_version}",
            &url,
        ])
        .await;
        assert!(ok, "curl {flag} failed: {err}");
        let (body, got_version) = out.rsplit_once('\n').expect("write-out line");
        assert_eq!(
            got_version, version,
            "curl {flag} negotiated HTTP/{got_version}"
        );
        let h = echo_headers(body);
        assert_ja4_shape(h["x-portcullis-ja4"].as_str().expect("ja4"), alpn);
        assert!(h["user-agent"].as_str().expect("ua").starts_with("curl/"));
        // HTTP-layer fingerprints: the header fingerprint always, the HTTP/2 one on h2.
        let hfp = h["x-portcullis-header-fp"].as_str().expect("header fp");
        assert!(hfp.starts_with(&format!("{alpn}_")), "{hfp}");
        match alpn {
            // curl 7.88 / nghttp2 1.52 SETTINGS (see tests/fixtures/http/README.md).
            "h2" => assert!(
                h["x-portcullis-h2"]
                    .as_str()
                    .expect("h2 fp")
                    .starts_with("3:100;4:"),
                "{h:?}"
            ),
            _ => assert!(!h.contains_key("x-portcullis-h2")),
        }
    }
    proxy.stop().await;
}

#[tokio::test]
async fn openssl_s_client() {
    let (proxy, _) = proxy_with_mock().await;
    let mut child = tokio::process::Command::new("openssl")
        .args([
            "s_client",
            "-quiet",
            "-connect",
            &proxy.addr.to_string(),
            "-servername",
            "localhost",
            "-alpn",
            "http/1.1",
            "-CAfile",
            DEV_CERT,
            "-verify_return_error",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl must be installed (scripts/test.sh installs it)");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(b"GET /v1/echo HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    // Keep stdin open until the server closes: s_client exits at EOF on stdin otherwise.
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("openssl finished")
        .expect("output");
    drop(stdin);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("HTTP/1.1 200"),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let body = &text[text.find("\r\n\r\n").expect("head end") + 4..];
    // The body may be chunked or not; the JSON object is in there either way.
    let start = body.find('{').expect("json start");
    let end = body.rfind('}').expect("json end");
    let h = echo_headers(&body[start..=end]);
    assert_ja4_shape(h["x-portcullis-ja4"].as_str().expect("ja4"), "h1");
    proxy.stop().await;
}

/// An upstream whose SSE stream sends its last event only when the test says so: if the proxy
/// buffered the body, the client would never see the first event and the test would time out.
async fn gated_sse_upstream(gate: std::sync::Arc<Notify>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else {
                continue;
            };
            let gate = gate.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req: http::Request<Incoming>| {
                    let gate = gate.clone();
                    async move {
                        let (mut tx, body) = Channel::<Bytes, BoxError>::new(1);
                        tokio::spawn(async move {
                            let _ = tx.send_data(Bytes::from_static(b"data: first\n\n")).await;
                            gate.notified().await;
                            let _ = tx.send_data(Bytes::from_static(b"data: last\n\n")).await;
                        });
                        let resp = http::Response::builder()
                            .header("content-type", "text/event-stream")
                            .body(body)
                            .expect("resp");
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn sse_first_event_arrives_before_upstream_sends_last() {
    let gate = std::sync::Arc::new(Notify::new());
    let up = gated_sse_upstream(gate.clone()).await;
    let proxy = start_proxy(test_config(up)).await;
    for alpn in [&b"http/1.1"[..], &b"h2"[..]] {
        let tls = tls_connect(proxy.addr, client_tls(&[alpn]))
            .await
            .expect("tls");
        let req = http::Request::get("https://localhost/v1/stream")
            .header("host", "localhost")
            .body(Empty::<Bytes>::new())
            .expect("req");
        let resp = if alpn == b"h2" {
            let (mut send, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                    .await
                    .expect("h2");
            tokio::spawn(conn);
            send.send_request(req).await.expect("resp")
        } else {
            let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .expect("h1");
            tokio::spawn(conn);
            send.send_request(req).await.expect("resp")
        };
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        let first = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("first event reached the client while the upstream still held the last one")
            .expect("frame")
            .expect("ok frame");
        assert_eq!(first.data_ref().expect("data").as_ref(), b"data: first\n\n");
        gate.notify_one();
        let rest = tokio::time::timeout(Duration::from_secs(10), body.collect())
            .await
            .expect("rest")
            .expect("body")
            .to_bytes();
        assert_eq!(rest.as_ref(), b"data: last\n\n");
    }
    proxy.stop().await;
}

#[tokio::test]
async fn messages_stream_has_usage() {
    let (proxy, _) = proxy_with_mock().await;
    let url = format!(
        "https://localhost:{}/v1/messages?delay_ms=1",
        proxy.addr.port()
    );
    let resolve = format!("localhost:{}:127.0.0.1", proxy.addr.port());
    let (ok, out, err) = curl(&[
        "-sSN",
        "--cacert",
        DEV_CERT,
        "--resolve",
        &resolve,
        "-H",
        "content-type: application/json",
        "-d",
        r#"{"model":"m","stream":true,"max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#,
        &url,
    ])
    .await;
    assert!(ok, "{err}");
    assert!(out.starts_with("event: message_start"), "{out}");
    assert_eq!(out.matches("event: content_block_delta").count(), 5);
    assert!(out.contains("\"output_tokens\":5"), "{out}");
    assert!(
        out.trim_end().ends_with(r#"data: {"type":"message_stop"}"#),
        "{out}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn upstream_refused_is_502_json() {
    // A port that was just free: nothing listens there.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let proxy = start_proxy(test_config(dead)).await;
    let (status, headers, body) = https_get(proxy.addr, "/v1/messages", &[]).await;
    assert_eq!(status, 502);
    assert_eq!(headers["content-type"], "application/json");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "api_error");
    proxy.stop().await;
}

#[tokio::test]
async fn upstream_timeout_is_504_json() {
    let up = start_mock().await;
    let mut cfg = test_config(up);
    cfg.timeouts.upstream_response = Duration::from_millis(200);
    let proxy = start_proxy(cfg).await;
    let (status, _, body) = https_get(proxy.addr, "/v1/slow?ms=5000", &[]).await;
    assert_eq!(status, 504);
    assert_eq!(api_error_type(&body), "timeout_error");
    proxy.stop().await;
}

/// The response timeout's timer stays with the pooled upstream connection and is moved to
/// each request's deadline: it must neither fire early for a request that comes after an old
/// deadline has passed, nor be lost for a request that outlasts its own.
#[tokio::test]
async fn upstream_timeout_holds_on_a_reused_connection() {
    let up = start_mock().await;
    let mut cfg = test_config(up);
    cfg.timeouts.upstream_response = Duration::from_millis(300);
    let proxy = start_proxy(cfg).await;
    let (status, _, _) = https_get(proxy.addr, "/v1/slow?ms=0", &[]).await;
    assert_eq!(status, 200);
    // The first request's deadline passes while its connection waits in the pool.
    tokio::time::sleep(Duration::from_millis(450)).await;
    for _ in 0..2 {
        let (status, _, _) = https_get(proxy.addr, "/v1/slow?ms=150", &[]).await;
        assert_eq!(status, 200, "within its own deadline");
    }
    let started = std::time::Instant::now();
    let (status, _, body) = https_get(proxy.addr, "/v1/slow?ms=5000", &[]).await;
    assert_eq!(status, 504);
    assert_eq!(api_error_type(&body), "timeout_error");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    proxy.stop().await;
}

#[tokio::test]
async fn plain_listener_forwards_without_tls_fingerprints() {
    let up = start_mock().await;
    let mut cfg = test_config(up);
    cfg.server.plain_listen = Some("127.0.0.1:0".parse().expect("addr"));
    let proxy = start_proxy(cfg).await;
    let (status, body) = http_get_plain(proxy.plain.expect("plain"), "/v1/echo").await;
    assert_eq!(status, 200);
    let h = echo_headers(&body);
    assert!(!h.contains_key("x-portcullis-ja4"));
    assert_eq!(h["x-forwarded-proto"], "http");
    proxy.stop().await;
}

#[tokio::test]
async fn admin_health_ready_and_metrics() {
    let (proxy, _) = proxy_with_mock().await;
    assert_eq!(http_get_plain(proxy.admin, "/healthz").await.0, 200);
    assert_eq!(http_get_plain(proxy.admin, "/readyz").await.0, 200);
    let _ = https_get(proxy.addr, "/v1/echo", &[]).await;
    let m = proxy.metrics().await;
    assert!(metric(&m, "portcullis_requests_total", "") >= 1.0, "{m}");
    assert!(
        metric(&m, "portcullis_upstream_duration_seconds_count", "") >= 1.0,
        "{m}"
    );
    // Histogram samples are folded by a thread of their own, scraped or not.
    let threads: Vec<String> = std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|c| c.trim().to_string())
        .collect();
    assert!(
        threads
            .iter()
            .any(|c| c == portcullis::admin::UPKEEP_THREAD),
        "{threads:?}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn graceful_shutdown_finishes_streams_in_flight() {
    let (mut proxy, _) = proxy_with_mock().await;
    let addr = proxy.addr;
    let tls = tls_connect(addr, client_tls(&[b"http/1.1"]))
        .await
        .expect("tls");
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("h1");
    tokio::spawn(conn);
    let req = http::Request::get("/v1/stream?n=10&delay_ms=50")
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .expect("req");
    let resp = send.send_request(req).await.expect("resp");
    let (tx, mut rx) = mpsc::channel(1);
    let reader = tokio::spawn(async move {
        let body = resp.into_body().collect().await.map(|c| c.to_bytes());
        let _ = tx.send(()).await;
        body
    });
    proxy.trigger_stop();
    // New connections are refused once the listener is closed...
    assert!(
        eventually(Duration::from_secs(5), || async move {
            tokio::net::TcpStream::connect(addr).await.is_err()
        })
        .await,
        "listener still accepting after shutdown"
    );
    // ...while the stream in flight completes in full.
    let body = reader.await.expect("join").expect("body");
    let text = String::from_utf8_lossy(&body);
    assert_eq!(text.matches("data: {").count(), 10, "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"));
    let _ = rx.recv().await;
    proxy.stop().await;
}

/// An HTTPS upstream whose certificate is trusted only through `upstream.ca`.
#[tokio::test]
async fn https_upstream_with_custom_ca() {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(DEV_CERT)
        .expect("cert")
        .collect::<Result<_, _>>()
        .expect("pem");
    let key =
        PrivateKeyDer::from_pem_file(concat!(env!("CARGO_MANIFEST_DIR"), "/certs/dev-key.pem"))
            .expect("key");
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut sc = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
    sc.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(sc));
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = l.local_addr().expect("addr").port();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(s).await else {
                    return;
                };
                let svc = hyper::service::service_fn(|req: http::Request<Incoming>| async move {
                    let ja4 = req
                        .headers()
                        .get("x-portcullis-ja4")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    Ok::<_, Infallible>(http::Response::new(http_body_util::Full::new(
                        Bytes::from(format!("tls-upstream saw {ja4}")),
                    )))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    let mut cfg = test_config("127.0.0.1:1".parse().expect("addr"));
    cfg.upstream.url = format!("https://localhost:{port}");
    cfg.upstream.ca = Some(DEV_CERT.into());
    let proxy = start_proxy(cfg).await;
    let (status, _, body) = https_get(proxy.addr, "/v1/anything", &[]).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("tls-upstream saw t13d"), "{body}");
    proxy.stop().await;
}

/// A raw HTTP/1.1 upstream that counts the connections it accepts and answers every request
/// with `200 ok`, echoing the `Host` it received in `x-host`. With `close_silently` it closes
/// each connection after one answer without saying so (no `Connection: close`), as an
/// upstream that times out idle keep-alive connections does.
async fn counting_upstream(close_silently: bool) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    buf.drain(..end + 4);
                    let host = head
                        .lines()
                        .find_map(|l| l.strip_prefix("host: "))
                        .unwrap_or("")
                        .to_string();
                    let resp =
                        format!("HTTP/1.1 200 OK\r\nx-host: {host}\r\ncontent-length: 2\r\n\r\nok");
                    if s.write_all(resp.as_bytes()).await.is_err() || close_silently {
                        return;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn upstream_connections_are_reused_with_the_upstream_host() {
    let (up, accepted) = counting_upstream(false).await;
    let proxy = start_proxy(test_config(up)).await;
    for _ in 0..3 {
        let (status, headers, body) = https_get(proxy.addr, "/v1/x", &[]).await;
        assert_eq!((status, body.as_str()), (200, "ok"));
        assert_eq!(headers["x-host"], up.to_string().as_str());
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    proxy.stop().await;
}

#[tokio::test]
async fn an_upstream_closing_idle_connections_costs_no_request() {
    let (up, accepted) = counting_upstream(true).await;
    let proxy = start_proxy(test_config(up)).await;
    for _ in 0..3 {
        let (status, _, body) = https_get(proxy.addr, "/v1/x", &[]).await;
        assert_eq!((status, body.as_str()), (200, "ok"));
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
    proxy.stop().await;
}
