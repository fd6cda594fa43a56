//! Claimed client against observed fingerprints, with the real SDK: the official Anthropic
//! Python SDK (pinned in tests/clients/requirements.txt, run from target/sdk-venv, which
//! scripts/sdk-venv.sh builds) goes through the example policy unflagged, while clients that
//! copy its headers onto another TLS stack are flagged by `client-mismatch`.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value};

type Headers = Map<String, Value>;

fn sdk_python() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/sdk-venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run scripts/sdk-venv.sh (scripts/test.sh runs it)",
        p.display()
    );
    p
}

/// Runs the SDK `n` times against the proxy; the headers the upstream saw, per request.
async fn run_sdk(proxy: SocketAddr, n: usize) -> Vec<Headers> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/anthropic_sdk.py"
    );
    let base = format!("https://localhost:{}", proxy.port());
    let out = tokio::process::Command::new(sdk_python())
        .args([script, &base, DEV_CERT, &n.to_string()])
        .output()
        .await
        .expect("run the SDK");
    assert!(
        out.status.success(),
        "SDK failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Headers> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per request"))
        .collect();
    assert_eq!(lines.len(), n);
    lines
}

/// The SDK's request headers in its wire order (anthropic 2.12.0, as sent on 2026-11-23),
/// with the values it sends; `Host` and `Content-Length` are filled in per request.
const SDK_HEADERS: &[(&str, &str)] = &[
    ("accept-encoding", "gzip, deflate"),
    ("connection", "keep-alive"),
    ("x-stainless-timeout", "NOT_GIVEN"),
    ("x-stainless-retry-count", "0"),
    ("x-stainless-read-timeout", "600"),
    ("accept", "application/json"),
    ("content-type", "application/json"),
    ("user-agent", "Anthropic/Python 2.12.0"),
    ("x-stainless-lang", "python"),
    ("x-stainless-package-version", "2.12.0"),
    ("x-stainless-os", "Linux"),
    ("x-stainless-arch", "x64"),
    ("x-stainless-runtime", "CPython"),
    ("x-stainless-runtime-version", "3.11.7"),
    ("authorization", "Bearer sk-copycat"),
    ("x-stainless-async", "false"),
    ("anthropic-version", "2026-10-21"),
];

const BODY: &str = r#"{"model":"test-model","max_tokens":8,"messages":[]}"#;

/// The SDK's headers, in its order, on rustls (the Rust TLS stack) through hyper.
async fn rustls_copycat(proxy: SocketAddr) -> Headers {
    let tls = tls_connect(proxy, client_tls(&[b"http/1.1"]))
        .await
        .expect("tls");
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("h1 handshake");
    tokio::spawn(conn);
    let mut b =
        http::Request::post("/v1/echo").header("host", format!("localhost:{}", proxy.port()));
    for (k, v) in SDK_HEADERS {
        b = b.header(*k, *v);
    }
    let req = b
        .header("content-length", BODY.len())
        .body(Full::new(Bytes::from_static(BODY.as_bytes())))
        .expect("request");
    let resp = send.send_request(req).await.expect("response");
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    echo_headers(&String::from_utf8_lossy(&body))
}

/// `headers` given to curl (OpenSSL; curl sends `-H` headers in the order given, after Host).
async fn curl_copycat(proxy: SocketAddr, headers: &[(&str, &str)]) -> Headers {
    let url = format!("https://localhost:{}/v1/echo", proxy.port());
    let mut cmd = tokio::process::Command::new("curl");
    cmd.args(["-sS", "--http1.1", "--cacert", DEV_CERT, "--data", BODY]);
    for (k, v) in headers {
        cmd.args(["-H", &format!("{k}: {v}")]);
    }
    let out = cmd.arg(&url).output().await.expect("run curl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    echo_headers(&String::from_utf8_lossy(&out.stdout))
}

fn get<'a>(h: &'a Headers, name: &str) -> Option<&'a str> {
    h.get(name).and_then(Value::as_str)
}

#[tokio::test]
async fn the_sdk_passes_and_header_copies_on_other_tls_stacks_are_flagged() {
    let up = start_mock().await;
    let dir = tempfile::tempdir().expect("tmp");
    let mut cfg = default_policy_config(up);
    cfg.evidence.path = Some(dir.path().join("evidence.jsonl"));
    let proxy = start_proxy(cfg).await;

    // The SDK itself: claims anthropic-python, matches its known fingerprints, not flagged.
    let sdk = run_sdk(proxy.addr, 3).await;
    for h in &sdk {
        assert_eq!(
            get(h, "x-portcullis-claim"),
            Some("anthropic-python"),
            "{h:#?}"
        );
        assert_eq!(get(h, "x-portcullis-claim-mismatch"), None, "{h:#?}");
        assert_eq!(get(h, "x-portcullis-flags"), None, "{h:#?}");
    }
    let sdk_ja4 = get(&sdk[0], "x-portcullis-ja4").expect("ja4").to_string();
    let sdk_fp = get(&sdk[0], "x-portcullis-header-fp")
        .expect("fp")
        .to_string();

    // Its headers, byte for byte in its order, on rustls: the header fingerprint is the SDK's,
    // the JA4 is not.
    let rust = rustls_copycat(proxy.addr).await;
    assert_eq!(get(&rust, "x-portcullis-header-fp"), Some(sdk_fp.as_str()));
    assert_ne!(get(&rust, "x-portcullis-ja4"), Some(sdk_ja4.as_str()));
    assert_eq!(get(&rust, "x-portcullis-claim"), Some("anthropic-python"));
    assert_eq!(get(&rust, "x-portcullis-claim-mismatch"), Some("ja4"));
    assert_eq!(get(&rust, "x-portcullis-flags"), Some("client-mismatch"));

    // curl with every header in the same order: the same header fingerprint again, on
    // OpenSSL with curl's settings.
    let curl = curl_copycat(proxy.addr, SDK_HEADERS).await;
    assert_eq!(get(&curl, "x-portcullis-header-fp"), Some(sdk_fp.as_str()));
    assert_eq!(get(&curl, "x-portcullis-claim-mismatch"), Some("ja4"));
    assert_eq!(get(&curl, "x-portcullis-flags"), Some("client-mismatch"));

    // A sloppier copy: only the User-Agent and the headers that claim the SDK.
    let claim_only = [
        ("user-agent", "Anthropic/Python 2.12.0"),
        ("x-stainless-lang", "python"),
        ("x-stainless-package-version", "2.12.0"),
        ("authorization", "Bearer sk-copycat"),
    ];
    let sloppy = curl_copycat(proxy.addr, &claim_only).await;
    assert_eq!(
        get(&sloppy, "x-portcullis-claim-mismatch"),
        Some("ja4,header_fp")
    );
    assert_eq!(get(&sloppy, "x-portcullis-flags"), Some("client-mismatch"));

    // The SDK again, after the copies: still clean (a match rule keeps no state).
    let again = run_sdk(proxy.addr, 1).await;
    assert_eq!(get(&again[0], "x-portcullis-flags"), None);
    let m = proxy.metrics().await;
    let claims = |result: &str| {
        metric(
            &m,
            "portcullis_claims_total",
            &format!("client=\"anthropic-python\",result=\"{result}\""),
        )
    };
    assert_eq!((claims("match"), claims("mismatch")), (4.0, 3.0), "{m}");
    proxy.stop().await;

    // Evidence: the three copies, with the claim and the contradicting layers; the SDK never.
    let (recs, text) = read_evidence(dir.path());
    assert_eq!(recs.len(), 3, "{text}");
    let mismatches: Vec<Vec<String>> = recs.iter().map(|r| r.claim_mismatch.clone()).collect();
    assert_eq!(
        mismatches,
        [vec!["ja4"], vec!["ja4"], vec!["ja4", "header_fp"]]
    );
    for r in &recs {
        assert_eq!(r.claim.as_deref(), Some("anthropic-python"));
        assert_ne!(r.ja4.as_deref(), Some(sdk_ja4.as_str()));
        assert_eq!(r.hits.len(), 1);
        assert_eq!(r.hits[0].rule, "client-mismatch");
        assert!(
            r.hits[0]
                .layer_key
                .starts_with("client-mismatch|claim=anthropic-python|ja4="),
            "{}",
            r.hits[0].layer_key
        );
    }
}
