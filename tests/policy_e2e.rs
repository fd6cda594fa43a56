//! The policy through the real proxy: every action (reject, flag, tarpit, shadow), the
//! concurrency lease, deny lists, RateLimit headers, and reload while requests flow.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

const RATE_POLICY: &str = r#"
[policy]
version = "rate-1"
[[policy.rules]]
name = "per-account"
key = ["account"]
limit = "rate"
rate = "3/1h"
"#;

#[tokio::test]
async fn rate_rule_rejects_with_model_api_error_and_headers() {
    let up = start_mock().await;
    let proxy = start_proxy(with_policy(test_config(up), RATE_POLICY)).await;
    for i in 0..3 {
        let (status, headers, _) =
            https_get(proxy.addr, "/v1/echo", &[("x-api-key", "sk-a")]).await;
        assert_eq!(status, 200, "request {i} is within the limit");
        let rl = headers
            .get("ratelimit")
            .expect("RateLimit header")
            .to_str()
            .expect("ascii");
        assert!(rl.contains("\"per-account\""), "{rl}");
        assert!(headers.contains_key("ratelimit-policy"));
    }
    let (status, headers, body) = https_get(proxy.addr, "/v1/echo", &[("x-api-key", "sk-a")]).await;
    assert_eq!(status, 429);
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "rate_limit_error");
    let retry: u64 = headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!(
        (1..=1200).contains(&retry),
        "one unit refills in 20 minutes: {retry}"
    );
    // Another account is its own layer key.
    let (status, _, _) = https_get(proxy.addr, "/v1/echo", &[("x-api-key", "sk-b")]).await;
    assert_eq!(status, 200);
    // The Bearer form names the same account as x-api-key.
    let (status, _, _) =
        https_get(proxy.addr, "/v1/echo", &[("authorization", "Bearer sk-a")]).await;
    assert_eq!(status, 429);
    proxy.stop().await;
}

#[tokio::test]
async fn flag_tarpit_and_shadow_forward_with_flags() {
    let up = start_mock().await;
    let policy = r#"
[policy]
[[policy.rules]]
name = "flag-me"
key = ["account"]
limit = "rate"
rate = "1/1h"
action = "flag"
[[policy.rules]]
name = "slow-me"
key = ["account"]
limit = "rate"
rate = "1/1h"
action = "tarpit"
tarpit = "300ms"
[policy.rules.when]
routes = ["GET /v1/echo"]
[[policy.rules]]
name = "shadow-me"
key = ["account"]
limit = "rate"
rate = "1/1h"
shadow = true
"#;
    let proxy = start_proxy(with_policy(test_config(up), policy)).await;
    let (status, _, body) = https_get(proxy.addr, "/v1/echo", &[("x-api-key", "sk-f")]).await;
    assert_eq!(status, 200);
    assert!(!echo_headers(&body).contains_key("x-portcullis-flags"));
    let start = Instant::now();
    let (status, _, body) = https_get(proxy.addr, "/v1/echo", &[("x-api-key", "sk-f")]).await;
    assert_eq!(status, 200, "flag, tarpit and shadow all forward");
    assert!(
        start.elapsed() >= Duration::from_millis(300),
        "tarpit delays before forwarding"
    );
    let flags = echo_headers(&body)["x-portcullis-flags"]
        .as_str()
        .expect("flags")
        .to_string();
    for rule in ["flag-me", "slow-me", "shadow-me"] {
        assert!(flags.contains(rule), "{flags}");
    }
    // A client cannot forge the flags header.
    let (_, _, body) = https_get(
        proxy.addr,
        "/v1/echo",
        &[("x-api-key", "sk-g"), ("x-portcullis-flags", "forged")],
    )
    .await;
    assert!(!echo_headers(&body).contains_key("x-portcullis-flags"));
    proxy.stop().await;
}

#[tokio::test]
async fn global_shadow_never_blocks() {
    let up = start_mock().await;
    let policy = RATE_POLICY.replace(
        "version = \"rate-1\"",
        "version = \"rate-1\"\nshadow = true",
    );
    let proxy = start_proxy(with_policy(test_config(up), &policy)).await;
    for _ in 0..6 {
        let (status, _, _) = https_get(proxy.addr, "/v1/echo", &[("x-api-key", "sk-s")]).await;
        assert_eq!(status, 200);
    }
    let (_, _, body) = https_get(proxy.addr, "/v1/echo", &[("x-api-key", "sk-s")]).await;
    assert!(echo_headers(&body)["x-portcullis-flags"]
        .as_str()
        .expect("flag")
        .contains("per-account"));
    proxy.stop().await;
}

#[tokio::test]
async fn deny_list_by_cidr_is_403() {
    let up = start_mock().await;
    let policy = "[policy]\n[policy.lists]\ndeny_cidrs = [\"127.0.0.0/8\"]\n";
    let proxy = start_proxy(with_policy(test_config(up), policy)).await;
    let (status, _, body) = https_get(proxy.addr, "/v1/echo", &[]).await;
    assert_eq!(status, 403);
    assert_eq!(api_error_type(&body), "permission_error");
    proxy.stop().await;
}

#[tokio::test]
async fn concurrency_lease_is_held_until_the_stream_ends() {
    let up = start_mock().await;
    let policy = r#"
[policy]
[[policy.rules]]
name = "one-at-a-time"
key = ["account"]
limit = "concurrency"
max = 1
"#;
    let proxy = start_proxy(with_policy(test_config(up), policy)).await;
    let tls = tls_connect(proxy.addr, client_tls(&[b"http/1.1"]))
        .await
        .expect("tls");
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("h1");
    tokio::spawn(conn);
    let req = http::Request::get("/v1/stream?n=5&delay_ms=100")
        .header("host", "localhost")
        .header("x-api-key", "sk-c")
        .body(Empty::<Bytes>::new())
        .expect("req");
    let resp = send.send_request(req).await.expect("resp");
    assert_eq!(resp.status(), 200);
    // While the stream is open, a second request on the same account is over the limit.
    let (status, _, _) = https_get(proxy.addr, "/v1/echo", &[("x-api-key", "sk-c")]).await;
    assert_eq!(status, 429);
    resp.into_body().collect().await.expect("stream");
    // The body has ended: the lease is released.
    let free = eventually(Duration::from_secs(5), || async {
        https_get(proxy.addr, "/v1/echo", &[("x-api-key", "sk-c")])
            .await
            .0
            == 200
    })
    .await;
    assert!(free, "slot released when the response body ended");
    proxy.stop().await;
}

/// Reload while requests flow: a valid new file swaps in, an invalid one keeps the old
/// policy, and no request fails because of either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_while_requests_flow() {
    let up = start_mock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config.toml");
    let head = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[upstream]\nurl = \"http://{up}\"\n"
    );
    let policy = |v: &str| {
        format!("{head}[policy]\nversion = \"{v}\"\n[[policy.rules]]\nname = \"roomy\"\nkey = [\"account\"]\nlimit = \"rate\"\nrate = \"100000/1m\"\n")
    };
    std::fs::write(&path, policy("v1")).expect("write");
    let cfg = portcullis::config::Config::load(&path).expect("config");
    let proxy_inner = portcullis::server::Proxy::bind(cfg).await.expect("bind");
    let gate = proxy_inner.gate();
    let addr = proxy_inner.local_addr();
    let admin = proxy_inner.admin_addr().expect("admin");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(proxy_inner.run(async move {
        let _ = stop_rx.await;
    }));
    assert_eq!(gate.policy_version(), "v1");

    // Requests flow from before the first reload until after the failed one.
    let flowing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let load = tokio::spawn({
        let flowing = flowing.clone();
        async move {
            let mut statuses = Vec::new();
            let mut i = 0;
            while flowing.load(std::sync::atomic::Ordering::Relaxed) {
                let key = format!("sk-{}", i % 7);
                statuses.push(
                    https_get(addr, "/v1/echo", &[("x-api-key", key.as_str())])
                        .await
                        .0,
                );
                i += 1;
            }
            statuses
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    std::fs::write(&path, policy("v2")).expect("write");
    let swapped = eventually(Duration::from_secs(10), || {
        let gate = gate.clone();
        async move { gate.policy_version() == "v2" }
    })
    .await;
    assert!(swapped, "file change reloaded the policy");

    let errors_before = metric(
        &http_get_plain(admin, "/metrics").await.1,
        "portcullis_policy_reloads_total",
        "error",
    );
    std::fs::write(
        &path,
        format!("{head}[policy]\nversion = \"v3\"\nbogus = 1\n"),
    )
    .expect("write");
    let failed = eventually(Duration::from_secs(10), || async move {
        metric(
            &http_get_plain(admin, "/metrics").await.1,
            "portcullis_policy_reloads_total",
            "error",
        ) > errors_before
    })
    .await;
    assert!(
        failed,
        "the invalid file was read and counted as a failed reload"
    );
    assert_eq!(
        gate.policy_version(),
        "v2",
        "an invalid file keeps the running policy"
    );

    flowing.store(false, std::sync::atomic::Ordering::Relaxed);
    let statuses = load.await.expect("load");
    assert!(
        statuses.len() >= 10,
        "requests flowed across both reloads: {}",
        statuses.len()
    );
    assert!(
        statuses.iter().all(|s| *s == 200),
        "no request failed during reloads: {statuses:?}"
    );
    let _ = stop_tx.send(());
    let _ = run.await;
}

/// The header fingerprint is a layer key like any other: a client stack that sends the same
/// header names and values shares one budget, whatever account or address it uses.
#[tokio::test]
async fn header_fingerprint_is_a_layer_key() {
    let up = start_mock().await;
    let policy = r#"
[policy]
[[policy.rules]]
name = "per-header-stack"
key = ["header_fp"]
limit = "rate"
rate = "2/1h"
"#;
    let proxy = start_proxy(with_policy(test_config(up), policy)).await;
    // One stack, three accounts: the third request is over the stack's budget.
    for (i, key) in ["sk-1", "sk-2", "sk-3"].iter().enumerate() {
        let (status, _, _) = https_get(proxy.addr, "/v1/echo", &[("x-api-key", key)]).await;
        assert_eq!(status, if i < 2 { 200 } else { 429 }, "request {i}");
    }
    // Another stack (an accept-language value changes the fingerprint) has its own budget.
    let other = [("x-api-key", "sk-1"), ("accept-language", "fr-FR")];
    let (status, _, body) = https_get(proxy.addr, "/v1/echo", &other).await;
    assert_eq!(status, 200);
    assert!(echo_headers(&body)["x-portcullis-header-fp"]
        .as_str()
        .expect("fp")
        .starts_with("h1_"));
    proxy.stop().await;
}

/// The gate reuses a connection's last plan while the facts and the policy stay the same
/// (`gate::PlanCache`): on one HTTP/2 connection, another account gets its own layer, and a
/// reloaded policy applies from the next request on, not from the next connection.
#[tokio::test]
async fn one_connection_follows_its_facts_and_a_reload() {
    let up = start_mock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config.toml");
    let head = format!("[server]\nlisten = \"127.0.0.1:0\"\n[upstream]\nurl = \"http://{up}\"\n");
    let policy = |v: &str, rate: &str| {
        format!("{head}[policy]\nversion = \"{v}\"\n[[policy.rules]]\nname = \"{v}\"\nkey = [\"account\"]\nlimit = \"rate\"\nrate = \"{rate}\"\n")
    };
    std::fs::write(&path, policy("v1", "1/1h")).expect("write");
    let cfg = portcullis::config::Config::load(&path).expect("config");
    let proxy = portcullis::server::Proxy::bind(cfg).await.expect("bind");
    let gate = proxy.gate();
    let addr = proxy.local_addr();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(proxy.run(async move {
        let _ = stop_rx.await;
    }));

    let (mut send, _conn) = h2_client_and_conn(addr, None).await;
    let mut get = |key: &'static str| {
        let req = http::Request::get("https://localhost/v1/echo")
            .header("x-api-key", key)
            .body(Empty::<Bytes>::new())
            .expect("req");
        let sent = send.send_request(req);
        async move {
            let resp = sent.await.expect("resp");
            let status = resp.status().as_u16();
            let _ = resp.into_body().collect().await;
            status
        }
    };
    assert_eq!(get("sk-a").await, 200);
    assert_eq!(get("sk-a").await, 429, "the second request of sk-a");
    assert_eq!(get("sk-b").await, 200, "another account, another layer");
    assert_eq!(get("sk-a").await, 429);

    std::fs::write(&path, policy("v2", "1000/1h")).expect("write");
    let swapped = eventually(Duration::from_secs(10), || {
        let gate = gate.clone();
        async move { gate.policy_version() == "v2" }
    })
    .await;
    assert!(swapped, "file change reloaded the policy");
    for i in 0..3 {
        assert_eq!(
            get("sk-a").await,
            200,
            "request {i} under the reloaded policy"
        );
    }
    let _ = stop_tx.send(());
    let _ = run.await;
}
