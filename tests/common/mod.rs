//! Shared test harness: a real proxy on 127.0.0.1:0 in this process, a real upstream (the
//! bundled mock model API, or a test's own server), and real TLS clients (rustls, curl, openssl).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use portcullis::config::Config;
use portcullis::server::Proxy;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_rustls::TlsConnector;

pub const DEV_CERT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/certs/dev-cert.pem");

/// A running proxy; dropping it (or calling `stop`) shuts it down.
pub struct TestProxy {
    pub addr: SocketAddr,
    pub plain: Option<SocketAddr>,
    pub admin: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    pub done: Option<tokio::task::JoinHandle<()>>,
}

impl TestProxy {
    /// Signals graceful shutdown and waits for `run` to return.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(d) = self.done.take() {
            let _ = d.await;
        }
    }
    pub fn trigger_stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
    /// Fetches /metrics from the admin listener.
    pub async fn metrics(&self) -> String {
        http_get_plain(self.admin, "/metrics").await.1
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// A config for tests: everything on 127.0.0.1:0, given upstream, and no policy (every
/// request allowed) unless the test sets one with [`with_policy`].
pub fn test_config(upstream: SocketAddr) -> Config {
    let mut cfg = default_policy_config(upstream);
    cfg.policy = None;
    cfg.source_text = String::new();
    cfg
}

/// Replaces the policy with `policy_toml` (a document with a `[policy]` table).
pub fn with_policy(mut cfg: Config, policy_toml: &str) -> Config {
    cfg.source_text = policy_toml.to_string();
    cfg
}

/// A test config that keeps the embedded default's policy (config.toml's example policy).
pub fn default_policy_config(upstream: SocketAddr) -> Config {
    let mut cfg = Config::embedded_default().expect("embedded config");
    // Tests that want evidence set a temporary path themselves.
    cfg.evidence.path = None;
    cfg.server.listen = "127.0.0.1:0".parse().expect("addr");
    cfg.admin.listen = Some("127.0.0.1:0".parse().expect("addr"));
    cfg.upstream.url = format!("http://{upstream}");
    cfg.server.shutdown_grace = Duration::from_secs(5);
    cfg
}

pub async fn start_proxy(cfg: Config) -> TestProxy {
    let proxy = Proxy::bind(cfg).await.expect("proxy binds");
    let addr = proxy.local_addr();
    let plain = proxy.plain_addr();
    let admin = proxy.admin_addr().expect("admin listener");
    let (tx, rx) = oneshot::channel::<()>();
    let done = tokio::spawn(proxy.run(async move {
        let _ = rx.await;
    }));
    TestProxy {
        addr,
        plain,
        admin,
        stop: Some(tx),
        done: Some(done),
    }
}

/// The bundled mock model API on 127.0.0.1:0.
pub async fn start_mock() -> SocketAddr {
    portcullis::mock::spawn("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("mock upstream")
}

/// Mock upstream + proxy with the default test config.
pub async fn proxy_with_mock() -> (TestProxy, SocketAddr) {
    let up = start_mock().await;
    (start_proxy(test_config(up)).await, up)
}

/// rustls client config trusting the bundled dev certificate, with the given ALPN.
pub fn client_tls(alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(DEV_CERT).expect("dev cert") {
        roots.add(c.expect("pem")).expect("root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

pub async fn tls_connect(
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    TlsConnector::from(cfg)
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
}

/// An HTTP/2 client over a new rustls connection (ALPN `h2`), optionally with its windows set.
pub async fn h2_client_and_conn(
    addr: SocketAddr,
    stream_window: Option<u32>,
) -> (
    hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    tokio::task::JoinHandle<()>,
) {
    let tls = tls_connect(addr, client_tls(&[b"h2"])).await.expect("tls");
    let mut b = hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
    if let Some(w) = stream_window {
        b.initial_stream_window_size(w)
            .initial_connection_window_size(w);
    }
    let (send, conn) = b.handshake(TokioIo::new(tls)).await.expect("h2 handshake");
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    (send, conn)
}

/// One HTTP/1.1 GET over a new rustls connection; returns status, headers and body.
pub async fn https_get(
    addr: SocketAddr,
    path: &str,
    extra: &[(&str, &str)],
) -> (u16, http::HeaderMap, String) {
    let tls = tls_connect(addr, client_tls(&[b"http/1.1"]))
        .await
        .expect("tls");
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("h1 handshake");
    tokio::spawn(conn);
    let mut b = http::Request::get(path).header("host", "localhost");
    for (k, v) in extra {
        b = b.header(*k, *v);
    }
    let resp = send
        .send_request(b.body(Empty::<Bytes>::new()).expect("req"))
        .await
        .expect("response");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

/// One plain HTTP/1.1 GET (admin listener, plain listener).
pub async fn http_get_plain(addr: SocketAddr, path: &str) -> (u16, String) {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("h1 handshake");
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .expect("req");
    let resp = send.send_request(req).await.expect("response");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Reads a counter or gauge value (sum over label sets matching `labels`) from Prometheus text.
pub fn metric(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && (labels.is_empty() || l.contains(labels)))
        .filter(|l| {
            let rest = &l[name.len()..];
            rest.starts_with(' ') || rest.starts_with('{')
        })
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

/// Polls `f` until it returns true, at most `limit`; returns whether it did.
pub async fn eventually<F, Fut>(limit: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < end {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// The records of an evidence file (`dir/evidence.jsonl`), and its text for failure messages.
pub fn read_evidence(dir: &std::path::Path) -> (Vec<portcullis::evidence::Record>, String) {
    let text = std::fs::read_to_string(dir.join("evidence.jsonl")).expect("evidence file");
    let recs = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("evidence record"))
        .collect();
    (recs, text)
}

/// Parses the mock upstream's /v1/echo JSON body.
pub fn echo_headers(body: &str) -> serde_json::Map<String, serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(body).expect("echo json");
    v["headers"].as_object().cloned().expect("headers object")
}

/// The `error.type` of a model-API error body (`{"type":"error","error":{"type":…}}`).
pub fn api_error_type(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).expect("json error body");
    assert_eq!(v["type"], "error", "{body}");
    v["error"]["type"].as_str().expect("error.type").to_string()
}
