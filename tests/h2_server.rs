//! The HTTP/2 side, every test against both servers (`[server] http2`: the native one,
//! src/server/h2native.rs, and the `h2` crate's, src/server/h2.rs): a reset stream
//! cancels its upstream exchange, flow control holds a large response to the client's window,
//! a response made by the proxy gets a `Date`, many streams share a connection, and a graceful
//! shutdown lets a stream in flight finish. Real rustls + hyper HTTP/2 clients, real upstreams.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Empty, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use portcullis::config::Http2Server;

const BOTH: [Http2Server; 2] = [Http2Server::Native, Http2Server::H2];

fn with_h2(mut cfg: portcullis::config::Config, imp: Http2Server) -> portcullis::config::Config {
    cfg.server.http2 = imp;
    cfg
}

async fn proxy_with_mock_h2(imp: Http2Server) -> (TestProxy, SocketAddr) {
    let up = start_mock().await;
    (start_proxy(with_h2(test_config(up), imp)).await, up)
}

async fn h2_client(addr: SocketAddr, stream_window: Option<u32>) -> SendRequest<Empty<Bytes>> {
    h2_client_and_conn(addr, stream_window).await.0
}

fn get(path: &str) -> http::Request<Empty<Bytes>> {
    http::Request::get(format!("https://localhost{path}"))
        .body(Empty::new())
        .expect("req")
}

#[tokio::test]
async fn a_reset_stream_cancels_its_upstream_exchange() {
    for imp in BOTH {
        a_reset_stream_cancels_its_upstream_exchange_with(imp).await;
    }
}

async fn a_reset_stream_cancels_its_upstream_exchange_with(imp: Http2Server) {
    // An upstream that reads the request, never answers, and reports when the proxy hangs up.
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let up = l.local_addr().expect("addr");
    let (closed_tx, closed_rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.expect("accept");
        let mut buf = [0u8; 4096];
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
        let _ = closed_tx.send(());
    });
    let proxy = start_proxy(with_h2(test_config(up), imp)).await;
    let mut send = h2_client(proxy.addr, None).await;
    let pending = tokio::spawn(async move { send.send_request(get("/v1/hang")).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Dropping the response future makes the client send RST_STREAM(CANCEL).
    pending.abort();
    tokio::time::timeout(Duration::from_secs(5), closed_rx)
        .await
        .expect("the upstream connection was closed after the client reset the stream")
        .expect("upstream task");
    proxy.stop().await;
}

/// An upstream answering every request with `size` bytes (content-length).
async fn big_upstream(size: usize) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let body = Bytes::from((0..size).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req| {
                    let body = body.clone();
                    async move { Ok::<_, Infallible>(http::Response::new(Full::new(body))) }
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
async fn a_large_response_follows_a_small_client_window() {
    for imp in BOTH {
        a_large_response_follows_a_small_client_window_with(imp).await;
    }
}

async fn a_large_response_follows_a_small_client_window_with(imp: Http2Server) {
    const SIZE: usize = 3 * 1024 * 1024;
    let up = big_upstream(SIZE).await;
    let proxy = start_proxy(with_h2(test_config(up), imp)).await;
    // A 64 KiB window: the proxy may send only that much before the client reads.
    let mut send = h2_client(proxy.addr, Some(65_535)).await;
    let resp = send.send_request(get("/v1/big")).await.expect("response");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-length"], SIZE.to_string().as_str());
    let mut body = resp.into_body();
    let mut got = Vec::with_capacity(SIZE);
    while let Some(frame) = body.frame().await {
        let frame = frame.expect("frame");
        if let Some(d) = frame.data_ref() {
            got.extend_from_slice(d);
            // A slow reader: the window refills only as fast as this.
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
    assert_eq!(got.len(), SIZE);
    assert!(got.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8));
    proxy.stop().await;
}

#[tokio::test]
async fn many_streams_on_one_connection_and_a_dated_502() {
    for imp in BOTH {
        many_streams_on_one_connection_and_a_dated_502_with(imp).await;
    }
}

async fn many_streams_on_one_connection_and_a_dated_502_with(imp: Http2Server) {
    let (proxy, _) = proxy_with_mock_h2(imp).await;
    let send = h2_client(proxy.addr, None).await;
    let mut tasks = Vec::new();
    for i in 0..50 {
        let mut send = send.clone();
        tasks.push(tokio::spawn(async move {
            let resp = send
                .send_request(get(&format!("/v1/echo?i={i}")))
                .await
                .expect("resp");
            assert_eq!(resp.status(), 200);
            let body = resp.into_body().collect().await.expect("body").to_bytes();
            String::from_utf8_lossy(&body).into_owned()
        }));
    }
    for t in tasks {
        let body = t.await.expect("join");
        assert_eq!(
            echo_headers(&body)["x-portcullis-h2"]
                .as_str()
                .map(|s| !s.is_empty()),
            Some(true),
            "{body}"
        );
    }
    proxy.stop().await;

    // Nothing listens on port 1: the proxy's own 502, with a Date as every response has.
    let proxy = start_proxy(with_h2(
        test_config("127.0.0.1:1".parse().expect("addr")),
        imp,
    ))
    .await;
    let mut send = h2_client(proxy.addr, None).await;
    let resp = send.send_request(get("/v1/x")).await.expect("resp");
    assert_eq!(resp.status(), 502);
    let date = resp.headers()["date"].to_str().expect("date").to_owned();
    assert!(httpdate::parse_http_date(&date).is_ok(), "{date}");
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(api_error_type(&String::from_utf8_lossy(&body)), "api_error");
    proxy.stop().await;
}

#[tokio::test]
async fn graceful_shutdown_finishes_an_http2_stream_in_flight() {
    for imp in BOTH {
        graceful_shutdown_finishes_an_http2_stream_in_flight_with(imp).await;
    }
}

async fn graceful_shutdown_finishes_an_http2_stream_in_flight_with(imp: Http2Server) {
    let (mut proxy, _) = proxy_with_mock_h2(imp).await;
    let mut send = h2_client(proxy.addr, None).await;
    let resp = send
        .send_request(get("/v1/stream?n=10&delay_ms=50"))
        .await
        .expect("resp");
    let reader =
        tokio::spawn(async move { resp.into_body().collect().await.map(|c| c.to_bytes()) });
    proxy.trigger_stop();
    let body = tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .expect("stream finished")
        .expect("join")
        .expect("body");
    let text = String::from_utf8_lossy(&body);
    assert_eq!(text.matches("data: {").count(), 10, "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"));
    proxy.stop().await;
}

/// The idle timeout closes an HTTP/2 connection with nothing in flight, but never one whose
/// stream is only quiet (here, gaps between events longer than the idle timeout).
#[tokio::test]
async fn an_idle_http2_connection_is_closed_but_not_during_a_quiet_stream() {
    for imp in BOTH {
        an_idle_http2_connection_is_closed_but_not_during_a_quiet_stream_with(imp).await;
    }
}

async fn an_idle_http2_connection_is_closed_but_not_during_a_quiet_stream_with(imp: Http2Server) {
    let up = start_mock().await;
    let mut cfg = test_config(up);
    cfg.timeouts.idle = Duration::from_millis(300);
    let proxy = start_proxy(with_h2(cfg, imp)).await;
    let (mut send, conn) = h2_client_and_conn(proxy.addr, None).await;
    let resp = send
        .send_request(get("/v1/stream?n=3&delay_ms=700"))
        .await
        .expect("resp");
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let text = String::from_utf8_lossy(&body);
    assert_eq!(text.matches("data: {").count(), 3, "{text}");
    // No GOAWAY came during the stream: the connection still takes a new one.
    let again = send
        .send_request(get("/v1/echo"))
        .await
        .expect("second request");
    assert_eq!(again.status(), 200);
    again.into_body().collect().await.expect("body");
    // Now idle: the proxy sends GOAWAY and closes, well within 10 s.
    tokio::time::timeout(Duration::from_secs(10), conn)
        .await
        .expect("idle HTTP/2 connection closed by the proxy")
        .expect("client connection task");
    proxy.stop().await;
}
