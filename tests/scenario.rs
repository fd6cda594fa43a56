//! The THREAT-MODEL.md scenario through the real proxy, with the example policy of config.toml.
//!
//! Client source addresses spread over 127.x.y.z make the subnets; rustls clients offering
//! different cipher-suite sets make distinct JA4s. A distillation campaign (3,000 accounts,
//! each far below every per-account limit, on one custom TLS stack, behind 3 relay /24s) is
//! mixed with legitimate traffic: 600 official-SDK users sharing one JA4 from their own
//! subnets, an enterprise NAT with 300 accounts behind one /24, and 200 individual
//! developers on assorted stacks. The test prints the share of campaign requests rejected or
//! flagged and of legitimate requests rejected, and asserts bounds justified below.
//!
//! Time is compressed: the whole "day" runs in seconds, so per-minute budgets fire where
//! real traffic at 26 requests per account per day would not. The asserted bounds rest only
//! on the distinct-count layers, which do not depend on speed.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::crypto::ring::cipher_suite as cs;
use rustls_pki_types::ServerName;
use tokio::net::TcpSocket;
use tokio::sync::Semaphore;

/// A client TLS stack: which cipher suites it offers (changes JA4 parts a and b).
fn stack(variant: usize) -> Arc<rustls::ClientConfig> {
    let tls12 = [
        cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ];
    let mut suites = vec![
        cs::TLS13_AES_256_GCM_SHA384,
        cs::TLS13_AES_128_GCM_SHA256,
        cs::TLS13_CHACHA20_POLY1305_SHA256,
    ];
    // Variant 0 offers everything (the "official SDK"); others drop TLS 1.2 suites by bits.
    for (bit, s) in tls12.iter().enumerate() {
        if variant & (1 << bit) == 0 {
            suites.push(*s);
        }
    }
    let provider = rustls::crypto::CryptoProvider {
        cipher_suites: suites,
        ..rustls::crypto::ring::default_provider()
    };
    let base = client_tls(&[b"http/1.1"]);
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(base_roots())
        .with_no_client_auth();
    cfg.alpn_protocols = base.alpn_protocols.clone();
    Arc::new(cfg)
}

fn base_roots() -> rustls::RootCertStore {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_file_iter(DEV_CERT).expect("cert") {
        roots.add(c.expect("pem")).expect("root");
    }
    roots
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Segment {
    Campaign,
    Sdk,
    Enterprise,
    Developer,
}

/// One client connection: a source address, a TLS stack, and the API keys it sends requests
/// for (a relay or a NAT multiplexes many accounts on one connection).
struct Conn {
    segment: Segment,
    source: Ipv4Addr,
    variant: usize,
    requests: Vec<String>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    total: u64,
    rejected: u64,
    flagged: u64,
}

async fn run_conn(proxy: SocketAddr, c: Conn) -> (Segment, Tally) {
    let sock = TcpSocket::new_v4().expect("socket");
    sock.bind(SocketAddr::from((c.source, 0)))
        .expect("bind source address");
    let tcp = sock.connect(proxy).await.expect("connect");
    let tls = tokio_rustls::TlsConnector::from(stack(c.variant))
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("tls");
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("h1");
    tokio::spawn(conn);
    let mut t = Tally::default();
    for key in &c.requests {
        let req = http::Request::get("/v1/echo")
            .header("host", "localhost")
            .header("x-api-key", key.as_str())
            .header("user-agent", "sdk/1.0")
            .body(Empty::<Bytes>::new())
            .expect("req");
        let resp = send.send_request(req).await.expect("response");
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        t.total += 1;
        match status {
            200 => {
                let h = echo_headers(&String::from_utf8_lossy(&body));
                if h.contains_key("x-portcullis-flags") {
                    t.flagged += 1;
                }
            }
            429 | 403 => t.rejected += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    (c.segment, t)
}

fn ip(a: u8, b: u8, c: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, a, b, c)
}

/// Builds the population. Requests per account are few (3): every account stays far below
/// every per-account limit, as in the campaign.
fn population() -> Vec<Conn> {
    const PER_ACCOUNT: usize = 3;
    let mut conns = Vec::new();
    // Campaign: 3,000 accounts, one custom TLS stack (variant 45), three relay /24s, each relay
    // multiplexing its accounts over 10 connections, accounts interleaved.
    for subnet in 0..3u8 {
        for c in 0..10usize {
            let mut requests = Vec::new();
            for round in 0..PER_ACCOUNT {
                for a in (c..1000).step_by(10) {
                    let _ = round;
                    requests.push(format!("sk-campaign-{subnet}-{a}"));
                }
            }
            conns.push(Conn {
                segment: Segment::Campaign,
                source: ip(90, subnet, 1 + c as u8),
                variant: 45,
                requests,
            });
        }
    }
    // Official SDK users: 600 accounts, one shared JA4 (variant 0), each from its own /24.
    for a in 0..600usize {
        conns.push(Conn {
            segment: Segment::Sdk,
            source: ip(10 + (a / 200) as u8, (a % 200) as u8, 1),
            variant: 0,
            requests: vec![format!("sk-sdk-{a}"); PER_ACCOUNT],
        });
    }
    // Enterprise NAT: 300 accounts behind one /24 on the org's one stack (variant 3), over 10
    // connections from the gateway.
    for c in 0..10usize {
        let mut requests = Vec::new();
        for _ in 0..PER_ACCOUNT {
            for a in (c..300).step_by(10) {
                requests.push(format!("sk-ent-{a}"));
            }
        }
        conns.push(Conn {
            segment: Segment::Enterprise,
            source: ip(50, 0, 1 + c as u8),
            variant: 3,
            requests,
        });
    }
    // Individual developers: 200 accounts on 12 assorted stacks, each from its own /24.
    for a in 0..200usize {
        conns.push(Conn {
            segment: Segment::Developer,
            source: ip(60 + (a / 100) as u8, (a % 100) as u8, 1),
            variant: 1 + (a % 12),
            requests: vec![format!("sk-dev-{a}"); PER_ACCOUNT],
        });
    }
    conns
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_is_caught_and_legitimate_traffic_passes() {
    let up = start_mock().await;
    let proxy = start_proxy(default_policy_config(up)).await;
    let limit = Arc::new(Semaphore::new(48));
    let mut tasks = tokio::task::JoinSet::new();
    // Interleave segments so the campaign and the legitimate users share the same minutes.
    let mut conns = population();
    conns.sort_by_key(|c| {
        (
            c.source.octets()[2],
            c.source.octets()[3],
            c.source.octets()[1],
        )
    });
    for c in conns {
        let permit = limit.clone().acquire_owned().await.expect("permit");
        let addr = proxy.addr;
        tasks.spawn(async move {
            let r = run_conn(addr, c).await;
            drop(permit);
            r
        });
    }
    let mut tallies = std::collections::HashMap::<&'static str, Tally>::new();
    while let Some(r) = tasks.join_next().await {
        let (seg, t) = r.expect("task");
        let name = match seg {
            Segment::Campaign => "campaign",
            Segment::Sdk => "sdk",
            Segment::Enterprise => "enterprise",
            Segment::Developer => "developer",
        };
        let e = tallies.entry(name).or_default();
        e.total += t.total;
        e.rejected += t.rejected;
        e.flagged += t.flagged;
    }
    println!("segment      requests  rejected  flagged   rejected-or-flagged");
    for name in ["campaign", "sdk", "enterprise", "developer"] {
        let t = tallies[name];
        let share = |n: u64| 100.0 * n as f64 / t.total.max(1) as f64;
        println!(
            "{name:<12} {:>8}  {:>6.1}%  {:>6.1}%  {:>6.1}%",
            t.total,
            share(t.rejected),
            share(t.flagged),
            share(t.rejected + t.flagged)
        );
    }
    let camp = tallies["campaign"];
    let legit: Tally =
        ["sdk", "enterprise", "developer"]
            .iter()
            .fold(Tally::default(), |mut acc, n| {
                let t = tallies[n];
                acc.total += t.total;
                acc.rejected += t.rejected;
                acc.flagged += t.flagged;
                acc
            });
    // Campaign: each relay /24 carries 1,000 accounts; `subnet-accounts` (flag above 200
    // distinct accounts per /24 per day) marks every request on the /24 once its 201st
    // account has been seen. Accounts arrive interleaved, so that happens within the first
    // fifth of each relay's requests: at least 80% flagged whatever the speed (the per-minute
    // budgets only add rejections), less a few percent of HyperLogLog error at the threshold.
    let caught = (camp.rejected + camp.flagged) as f64 / camp.total as f64;
    assert!(
        caught >= 0.75,
        "campaign rejected-or-flagged share {caught:.3} < 0.75"
    );
    // Legitimate traffic: no layer of the example policy rejects an SDK user (one account per
    // /24, 600 accounts on the SDK JA4, far below its 2,500 flag threshold), a developer, or
    // the enterprise NAT (300 accounts: flagged above 200, never rejected below 10,000).
    assert_eq!(legit.rejected, 0, "legitimate requests rejected: {legit:?}");
    // The SDK users and developers are not even flagged; the NAT's /24 is, once it passes 200
    // accounts (flag = forwarded, marked for the upstream, recorded as evidence).
    assert_eq!(tallies["sdk"].flagged + tallies["developer"].flagged, 0);
    proxy.stop().await;
}
