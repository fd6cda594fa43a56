//! The relay signal end to end: a relay on loopback that holds every chunk for 50 ms in each
//! direction stands between curl and the proxy. The proxy's TCP peer is then the relay (a
//! loopback round trip, microseconds) while the TLS handshake's round trip spans the relay's
//! delays, so a `when.relay = true` rule flags it. The same curl, direct, is not.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use serde_json::{Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

const DELAY: Duration = Duration::from_millis(50);

/// The rule docs/policy.md ("Relay signal") gives for flagging relayed traffic.
const RELAY_POLICY: &str = r#"
[policy]
version = "relay-1"
[[policy.rules]]
name = "relayed"
key = ["subnet/48"]
limit = "match"
action = "flag"
[policy.rules.when]
relay = true
"#;

/// Copies `r` to `w`, holding each chunk for `delay` first; closes `w` at end of stream.
async fn pump(mut r: OwnedReadHalf, mut w: OwnedWriteHalf, delay: Duration) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        tokio::time::sleep(delay).await;
        if w.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = w.shutdown().await;
}

/// A TCP relay to `target` on its own thread and runtime (so its timers do not share the
/// test's), adding `delay` per chunk and direction. Returns its address.
fn spawn_relay(target: SocketAddr, delay: Duration) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind relay");
    let addr = listener.local_addr().expect("addr");
    listener.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("relay runtime");
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(listener).expect("listener");
            while let Ok((client, _)) = l.accept().await {
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = server.set_nodelay(true);
                    let _ = client.set_nodelay(true);
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::join!(pump(cr, sw, delay), pump(sr, cw, delay));
                });
            }
        });
    });
    addr
}

/// curl (a native TLS client, so its own handshake work is well under a millisecond) to
/// `/v1/echo` on `port`; the headers the upstream received.
async fn curl_echo(port: u16, extra: &[&str]) -> Map<String, Value> {
    let mut cmd = tokio::process::Command::new("curl");
    cmd.args([
        "-sS",
        "--http1.1",
        "--cacert",
        DEV_CERT,
        "-H",
        "x-api-key: sk-relay",
    ]);
    for h in extra {
        cmd.args(["-H", h]);
    }
    let out = cmd
        .arg(format!("https://localhost:{port}/v1/echo"))
        .output()
        .await
        .expect("run curl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    echo_headers(&String::from_utf8_lossy(&out.stdout))
}

fn micros(h: &Map<String, Value>, name: &str) -> u64 {
    h.get(name)
        .and_then(Value::as_str)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing in {h:#?}"))
}

#[tokio::test]
async fn a_relay_adding_50ms_is_detected_and_a_direct_client_is_not() {
    let up = start_mock().await;
    let dir = tempfile::tempdir().expect("tmp");
    let mut cfg = with_policy(test_config(up), RELAY_POLICY);
    cfg.evidence.path = Some(dir.path().join("evidence.jsonl"));
    let proxy = start_proxy(cfg).await;
    let relay = spawn_relay(proxy.addr, DELAY);

    let direct = curl_echo(proxy.addr.port(), &[]).await;
    let relayed = curl_echo(relay.port(), &[]).await;

    // Direct: both round trips are loopback-sized; no flag.
    assert_eq!(
        direct.get("x-portcullis-relay"),
        Some(&"direct".into()),
        "{direct:#?}"
    );
    assert!(micros(&direct, "x-portcullis-tls-rtt-us") < 30_000);
    assert!(!direct.contains_key("x-portcullis-flags"));

    // Relayed: TCP still sees loopback (the relay), TLS sees both 50 ms holds.
    let (tcp, tls) = (
        micros(&relayed, "x-portcullis-tcp-rtt-us"),
        micros(&relayed, "x-portcullis-tls-rtt-us"),
    );
    assert!(tcp < 10_000, "tcp {tcp} us");
    // Both holds, less the kernel timestamp's jiffy resolution (at most 10 ms).
    assert!(tls >= 2 * 50_000 - 10_000, "tls {tls} us");
    assert_eq!(relayed.get("x-portcullis-relay"), Some(&"relay".into()));
    assert_eq!(relayed.get("x-portcullis-flags"), Some(&"relayed".into()));

    // A client cannot claim a round trip: its own copies are replaced.
    let forged = ["x-portcullis-relay: direct", "x-portcullis-tls-rtt-us: 1"];
    let h = curl_echo(relay.port(), &forged).await;
    assert_eq!(h.get("x-portcullis-relay"), Some(&"relay".into()));
    assert!(micros(&h, "x-portcullis-tls-rtt-us") >= 2 * 50_000 - 10_000);
    // Three connections measured; the two relayed gaps are above 50 ms.
    let m = proxy.metrics().await;
    assert_eq!(
        metric(&m, "portcullis_relay_gap_seconds_count", ""),
        3.0,
        "{m}"
    );
    let under_50ms = metric(&m, "portcullis_relay_gap_seconds_bucket", "le=\"0.05\"");
    assert_eq!(under_50ms, 1.0, "{m}");
    proxy.stop().await;

    // Evidence: the two relayed requests, with both round trips.
    let (recs, text) = read_evidence(dir.path());
    assert_eq!(recs.len(), 2, "{text}");
    let r = &recs[0];
    assert_eq!(r.relay, Some(true));
    assert_eq!((r.tcp_rtt_us, r.tls_rtt_us), (Some(tcp), Some(tls)));
    assert_eq!(r.hits[0].rule, "relayed");
    assert_eq!(r.hits[0].layer_key, "relayed|subnet/48=127.0.0.0/24");
}
