//! Known-answer tests for the HTTP-layer fingerprints: the HTTP/2 (Akamai) fingerprint read by
//! `H2Tap` and the portcullis header fingerprint, on the first bytes real clients sent
//! (`tests/fixtures/http/`, captured by `scripts/capture-http.sh`; README there).
//!
//! Where the expected values come from:
//! - Akamai strings: read by hand from the frames and cross-checked with
//!   `scripts/capture-http.py --decode`, a Python implementation independent of the Rust one.
//!   One decoded by hand, `curl-h2-1.bin` (curl 7.88.1, nghttp2 1.52.0), after the 24-byte
//!   preface:
//!   ```text
//!   00 00 12 04 00 00 00 00 00   SETTINGS, 18 bytes = 3 pairs, stream 0
//!     00 03 00 00 00 64          id 3 MAX_CONCURRENT_STREAMS  = 100
//!     00 04 02 00 00 00          id 4 INITIAL_WINDOW_SIZE     = 33554432 (32 MiB)
//!     00 02 00 00 00 00          id 2 ENABLE_PUSH             = 0
//!   00 00 04 08 00 00 00 00 00   WINDOW_UPDATE, stream 0
//!     01 ff 00 01                increment 33488897 (32 MiB - 65535)
//!   00 00 1f 01 05 00 00 00 01   HEADERS, 31 bytes, END_STREAM|END_HEADERS, stream 1
//!     82                         indexed 2  :method GET   → m
//!     84                         indexed 4  :path /       → p
//!     87                         indexed 7  :scheme https → s
//!     41 8b ...                  literal, indexed name 1 :authority (Huffman value) → a
//!     7a 88 ...                  literal, indexed name 58 user-agent: regular, stop
//!   → 3:100;4:33554432;2:0|33488897|0|m,p,s,a
//!   ```
//! - Header fingerprints: the raw forms were compared with the decoded header lists by hand;
//!   the ids are `printf '<raw>' | sha256sum` (first 12 hex digits), recomputed here with sha2.
//!   The header maps come from hyper itself (the server the proxy runs), fed the captured bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use portcullis::fingerprint::h2::PREFACE;
use portcullis::fingerprint::{
    header_fingerprint, H2State, H2Tap, HeaderFp, HttpVersionTag, H2_TAP_LIMIT,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/http");
const DEV_CERT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/certs/dev-cert.pem");
const DEV_KEY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/certs/dev-key.pem");

/// One client (`expected.json`): both of its captures, `<client>-1.bin` and `<client>-2.bin`
/// (separate processes), must give these values. `akamai` is null for HTTP/1.1 captures.
#[derive(serde::Deserialize)]
struct Known {
    akamai: Option<String>,
    header_raw: String,
    header_id: String,
}

fn known() -> BTreeMap<String, Known> {
    let text = std::fs::read_to_string(format!("{FIXTURES}/expected.json")).expect("expected.json");
    let known: BTreeMap<String, Known> = serde_json::from_str(&text).expect("expected.json");
    // Every capture on disk is listed, and every listed client has both captures.
    let mut on_disk = BTreeSet::new();
    for entry in std::fs::read_dir(FIXTURES).expect("fixture dir") {
        let name = entry
            .expect("dir entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        if let Some(stem) = name.strip_suffix(".bin") {
            on_disk.insert(stem.to_owned());
        }
    }
    let listed: BTreeSet<String> = known
        .keys()
        .flat_map(|c| [format!("{c}-1"), format!("{c}-2")])
        .collect();
    assert_eq!(on_disk, listed, "captures on disk vs expected.json");
    known
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}.bin")).unwrap_or_else(|e| panic!("{name}.bin: {e}"))
}

fn sha12(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn done(state: H2State, what: &str) -> portcullis::fingerprint::H2Fingerprint {
    match state {
        H2State::Done(fp) => fp,
        other => panic!("{what}: expected Done, got {other:?}"),
    }
}

#[test]
fn akamai_fingerprints_of_captured_clients() {
    for (client, k) in known() {
        let Some(want) = k.akamai else { continue };
        for n in 1..=2 {
            let name = format!("{client}-{n}");
            let bytes = fixture(&name);
            let fp = done(H2Tap::new().feed(&bytes), &name);
            assert_eq!(fp.akamai, want, "{name}");
            assert_eq!(fp.hash, sha12(&want), "{name}: hash");
        }
    }
}

#[test]
fn h2_captures_give_one_answer_however_they_arrive() {
    for (client, _) in known().iter().filter(|(_, k)| k.akamai.is_some()) {
        let name = format!("{client}-1");
        let bytes = fixture(&name);
        let whole = H2Tap::new().feed(&bytes);
        // Each capture ends with the frame that completes the first header block.
        for cut in 0..bytes.len() {
            let mut tap = H2Tap::new();
            assert_eq!(
                tap.feed(&bytes[..cut]),
                H2State::NeedMore,
                "{name}: prefix {cut}"
            );
            assert_eq!(tap.feed(&bytes[cut..]), whole, "{name}: split at {cut}");
        }
        let mut tap = H2Tap::new();
        let mut last = H2State::NeedMore;
        for b in &bytes {
            last = tap.feed(std::slice::from_ref(b));
        }
        assert_eq!(last, whole, "{name}: byte by byte");
        // Bytes after the header block (the request body, more requests) change nothing.
        let mut more = bytes.clone();
        more.extend(std::iter::repeat(0xab).take(H2_TAP_LIMIT));
        assert_eq!(H2Tap::new().feed(&more), whole, "{name}: trailing bytes");
    }
}

/// A deterministic mutation run over the HTTP/2 captures (the property of
/// `fuzz/fuzz_targets/h2_tap.rs`): no panic, and the same state whole or in pieces.
#[test]
fn mutated_captures_give_one_answer_however_they_arrive() {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    for (client, _) in known().iter().filter(|(_, k)| k.akamai.is_some()) {
        let bytes = fixture(&format!("{client}-1"));
        for _ in 0..1500 {
            let mut m = bytes.clone();
            for _ in 0..=next() % 4 {
                let at = (next() as usize) % m.len().max(1);
                match next() % 4 {
                    _ if m.is_empty() => m.push(next() as u8),
                    0 => m[at] = next() as u8,
                    1 => m[at] ^= 1 << (next() % 8),
                    2 => m.truncate(at),
                    _ => m.insert(at, next() as u8),
                }
            }
            let whole = H2Tap::new().feed(&m);
            let mut tap = H2Tap::new();
            let mut state = H2State::NeedMore;
            for piece in m.chunks((next() % 17 + 1) as usize) {
                state = tap.feed(piece);
            }
            assert_eq!(state, whole, "{:02x?}", m);
            let label = match &whole {
                H2State::Done(_) => "done".to_owned(),
                other => format!("{other:?}"),
            };
            *outcomes.entry(label).or_default() += 1;
        }
    }
    // The run reaches both fingerprints and the error paths.
    assert!(outcomes.len() >= 6, "{outcomes:?}");
}

/// Feeds `bytes` (a captured first request) to a hyper server connection, HTTP/2 if they
/// start with the preface, and returns the header fingerprint of the request hyper decoded.
async fn via_hyper(bytes: &[u8]) -> HeaderFp {
    let h2 = bytes.starts_with(PREFACE);
    let version = if h2 {
        HttpVersionTag::H2
    } else {
        HttpVersionTag::H1
    };
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let svc = service_fn(move |req: Request<Incoming>| {
        let fp = header_fingerprint(
            version,
            req.headers()
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_bytes())),
        );
        let _ = tx.send(fp);
        async { Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new())) }
    });
    let io = TokioIo::new(server);
    let conn = tokio::spawn(async move {
        if h2 {
            let b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
            let _ = b.serve_connection(io, svc).await;
        } else {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, svc)
                .await;
        }
    });
    client.write_all(bytes).await.expect("write to duplex");
    let drain = tokio::spawn(async move {
        let mut sink = [0u8; 4096];
        while matches!(client.read(&mut sink).await, Ok(n) if n > 0) {}
    });
    let fp = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("hyper delivered the request in time")
        .expect("service ran");
    conn.abort();
    drain.abort();
    fp
}

#[tokio::test]
async fn header_fingerprints_of_captured_clients_through_hyper() {
    let known = known();
    for (client, k) in &known {
        for n in 1..=2 {
            let name = format!("{client}-{n}");
            let fp = via_hyper(&fixture(&name)).await;
            assert_eq!(fp.raw, k.header_raw, "{name}: raw");
            assert_eq!(fp.id[3..], sha12(&fp.raw), "{name}: id hash");
            assert_eq!(fp.id, k.header_id, "{name}: id");
        }
    }
    // Different clients, different ids (both captures of each matched above).
    let ids: BTreeSet<&str> = known.values().map(|k| k.header_id.as_str()).collect();
    assert_eq!(
        ids.len(),
        known.len(),
        "two clients share a header fingerprint"
    );
}

/// A request with a known header order, repeated names and mixed case, sent as raw
/// HTTP/1.1 bytes to hyper: the fingerprint of the `HeaderMap` hyper builds equals the one of
/// the wire list, because only first occurrences count and the map keeps insertion order.
#[tokio::test]
async fn hyper_header_map_keeps_the_wire_order() {
    let raw = "POST /v1/messages HTTP/1.1\r\nHost: api.example\r\nX-Stainless-Lang: python\r\n\
               Accept: application/json\r\nX-Api-Key: sk-test\r\nAccept-Encoding: gzip\r\n\
               x-stainless-lang: again\r\nAnthropic-Version: 2023-06-01\r\n\
               Content-Type: application/json\r\nUser-Agent: Anthropic/Python 0.40.0\r\n\
               Accept: text/plain\r\nX-Forwarded-For: 10.1.2.3\r\nConnection: keep-alive\r\n\
               Content-Length: 2\r\n\r\n{}";
    let head = raw.split("\r\n\r\n").next().unwrap_or_default();
    let wire: Vec<(&str, &[u8])> = head
        .split("\r\n")
        .skip(1)
        .filter_map(|l| l.split_once(": "))
        .map(|(n, v)| (n, v.as_bytes()))
        .collect();
    let from_wire = header_fingerprint(HttpVersionTag::H1, wire.into_iter());
    let from_hyper = via_hyper(raw.as_bytes()).await;
    assert_eq!(from_hyper, from_wire);
    assert_eq!(
        from_wire.raw,
        "h1|host,x-stainless-lang,accept,x-api-key,accept-encoding,anthropic-version,\
         user-agent,connection|application/json|gzip||anthropic"
    );
    // The same names in another order are another client.
    let swapped = raw.replace(
        "Accept-Encoding: gzip\r\nx-stainless-lang",
        "x-stainless-lang: again\r\nAccept-Encoding: gzip\r\nx-stainless-x",
    );
    assert_ne!(via_hyper(swapped.as_bytes()).await.id, from_wire.id);
}

/// The end of the first header block in a captured HTTP/2 stream (preface, frames up to
/// END_HEADERS), as `scripts/capture-http.py` cuts its captures.
fn h2_end(buf: &[u8]) -> Option<usize> {
    let mut pos = PREFACE.len();
    let mut in_block = false;
    while buf.len() >= pos + 9 {
        let len = usize::from(buf[pos]) << 16
            | usize::from(buf[pos + 1]) << 8
            | usize::from(buf[pos + 2]);
        let (ftype, flags) = (buf[pos + 3], buf[pos + 4]);
        if buf.len() < pos + 9 + len {
            return None;
        }
        pos += 9 + len;
        if ftype == 1 || (ftype == 9 && in_block) {
            in_block = true;
            if flags & 0x4 != 0 {
                return Some(pos);
            }
        }
    }
    None
}

/// One request from hyper's HTTP/2 client over tokio-rustls to an in-process TLS server, which
/// returns the decrypted client bytes up to the end of the first header block.
async fn capture_hyper_h2() -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(DEV_CERT)
        .expect("dev cert")
        .collect::<Result<_, _>>()
        .expect("dev cert pem");
    let key = PrivateKeyDer::from_pem_file(DEV_KEY).expect("dev key");
    let mut sc = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("tls versions")
        .with_no_client_auth()
        .with_single_cert(certs.clone(), key)
        .expect("server config");
    sc.alpn_protocols = vec![b"h2".to_vec()];
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(sc));
        let mut tls = acceptor.accept(tcp).await.expect("tls accept");
        // The server preface: an empty SETTINGS frame (RFC 9113 §3.4).
        tls.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0])
            .await
            .expect("settings");
        tls.flush().await.expect("flush");
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = h2_end(&buf) {
                buf.truncate(end);
                return buf;
            }
            let n = tls.read(&mut chunk).await.expect("read");
            assert!(n > 0, "client closed after {} bytes", buf.len());
            buf.extend_from_slice(&chunk[..n]);
        }
    });

    let mut roots = rustls::RootCertStore::empty();
    for c in certs {
        roots.add(c).expect("root");
    }
    let mut cc = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("tls versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    cc.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("server name");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cc))
        .connect(name, tcp)
        .await
        .expect("tls connect");
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .expect("h2 handshake");
    let driver = tokio::spawn(conn);
    let req = Request::get("https://localhost/v1/models")
        .header("user-agent", "portcullis-test/1.0")
        .header("accept", "application/json")
        .body(Empty::<Bytes>::new())
        .expect("request");
    let pending = tokio::spawn(async move { send.send_request(req).await });
    let bytes = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("capture in time")
        .expect("server task");
    pending.abort();
    driver.abort();
    bytes
}

/// The Rust h2 client live: hyper over tokio-rustls gives the fingerprints of the stored
/// `hyper-h2` captures (a changed hyper/h2 default shows up here first).
#[tokio::test]
async fn rust_hyper_h2_client_live() {
    let bytes = capture_hyper_h2().await;
    let stored = fixture("hyper-h2-1");
    let live = done(H2Tap::new().feed(&bytes), "live hyper");
    assert_eq!(live, done(H2Tap::new().feed(&stored), "hyper-h2-1"));
    assert_eq!(via_hyper(&bytes).await, via_hyper(&stored).await);
}

/// Writes `hyper-h2-1.bin` and `hyper-h2-2.bin` (two connections) into `$HTTP_FIXTURE_OUT`.
/// Run by `scripts/capture-http.sh`.
#[tokio::test]
#[ignore = "fixture generator"]
async fn generate_hyper_fixtures() {
    let dir = std::env::var("HTTP_FIXTURE_OUT").unwrap_or_else(|_| FIXTURES.to_owned());
    for n in 1..=2 {
        let bytes = capture_hyper_h2().await;
        std::fs::write(format!("{dir}/hyper-h2-{n}.bin"), bytes).expect("write fixture");
    }
}

/// Hand-built frame sequences for the cases no client sends: padding, CONTINUATION, PRIORITY
/// frames with the exclusive bit, HPACK literal and dynamic-table names, and every malformed
/// outcome. Frame layout: RFC 9113 §4.1; HPACK: RFC 7541 §6 and Appendix A.
mod frames {
    use portcullis::fingerprint::h2::PREFACE;
    use portcullis::fingerprint::{H2State, H2Tap, H2_TAP_LIMIT};

    const DATA: u8 = 0x0;
    const HEADERS: u8 = 0x1;
    const PRIORITY: u8 = 0x2;
    const SETTINGS: u8 = 0x4;
    const WINDOW_UPDATE: u8 = 0x8;
    const CONTINUATION: u8 = 0x9;
    const FLAG_ACK: u8 = 0x1;
    const FLAG_END_HEADERS: u8 = 0x4;
    const FLAG_PADDED: u8 = 0x8;
    const FLAG_PRIORITY: u8 = 0x20;

    /// A frame: 9-byte header (RFC 9113 §4.1) and payload.
    fn frame(ftype: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = u32::try_from(payload.len()).expect("test frame length");
        let mut f = len.to_be_bytes()[1..].to_vec();
        f.extend([ftype, flags]);
        f.extend(stream.to_be_bytes());
        f.extend(payload);
        f
    }

    fn settings(pairs: &[(u16, u32)]) -> Vec<u8> {
        let p: Vec<u8> = pairs
            .iter()
            .flat_map(|(k, v)| k.to_be_bytes().into_iter().chain(v.to_be_bytes()))
            .collect();
        frame(SETTINGS, 0, 0, &p)
    }

    /// Preface, SETTINGS 3:100;4:65535, WINDOW_UPDATE 1000 and then `rest`.
    fn conn(rest: &[Vec<u8>]) -> Vec<u8> {
        let mut b = PREFACE.to_vec();
        b.extend(settings(&[(3, 100), (4, 65535)]));
        b.extend(frame(WINDOW_UPDATE, 0, 0, &1000u32.to_be_bytes()));
        for f in rest {
            b.extend(f);
        }
        b
    }

    fn run(bytes: &[u8]) -> H2State {
        H2Tap::new().feed(bytes)
    }

    fn akamai(state: H2State) -> String {
        match state {
            H2State::Done(fp) => fp.akamai,
            other => panic!("expected Done, got {other:?}"),
        }
    }

    // HPACK (RFC 7541 Appendix A): 0x82 :method GET, 0x84 :path /, 0x87 :scheme https,
    // 0x41 0x03 "a.b" :authority (literal, incremental indexing), 0x7a... user-agent (regular).
    const MPSA_UA: &[u8] = b"\x82\x84\x87\x41\x03a.b\x7a\x01x";

    #[test]
    fn hand_built_connection() {
        let b = conn(&[frame(HEADERS, 0x5, 1, MPSA_UA)]);
        let state = run(&b);
        assert_eq!(akamai(state.clone()), "3:100;4:65535|1000|0|m,p,s,a");
        let H2State::Done(fp) = state else {
            unreachable!()
        };
        // printf '3:100;4:65535|1000|0|m,p,s,a' | sha256sum
        assert_eq!(fp.hash, "bac26c0fcc76");
        // Every strict prefix needs more; every split point gives the same answer.
        for cut in 0..b.len() {
            let mut tap = H2Tap::new();
            assert_eq!(tap.feed(&b[..cut]), H2State::NeedMore, "prefix {cut}");
            assert_eq!(tap.feed(&b[cut..]), run(&b), "split at {cut}");
        }
    }

    #[test]
    fn priority_frames_padding_and_continuation() {
        let prio = |s: u32, dep: u32, w: u8| {
            let mut p = dep.to_be_bytes().to_vec();
            p.push(w);
            frame(PRIORITY, 0, s, &p)
        };
        // HEADERS padded (2 bytes) with priority fields, block split over a CONTINUATION.
        let mut h = vec![2u8, 0x80, 0, 0, 3, 255];
        h.extend(&MPSA_UA[..2]);
        h.extend([0, 0]);
        let b = conn(&[
            prio(3, 0, 200),
            prio(5, 0x8000_0003, 0),
            frame(HEADERS, FLAG_PADDED | FLAG_PRIORITY, 7, &h),
            frame(CONTINUATION, FLAG_END_HEADERS, 7, &MPSA_UA[2..]),
        ]);
        assert_eq!(
            akamai(run(&b)),
            "3:100;4:65535|1000|3:0:0:201,5:1:3:1|m,p,s,a"
        );
    }

    #[test]
    fn hpack_names_from_literals_and_the_dynamic_table() {
        // Literal :method (never indexed, new name), then :authority inserted and referenced
        // again as index 62, an unknown pseudo-header, then a Huffman-coded new name.
        let block = b"\x10\x07:method\x03GET\x41\x01x\xbe\x00\x09:protocol\x01w\x40\x81\x8f\x01v";
        let b = conn(&[frame(HEADERS, 0x4, 1, block)]);
        assert_eq!(akamai(run(&b)), "3:100;4:65535|1000|0|m,a,a");
        // A size update to 0 empties the table, so index 62 no longer exists.
        let b = conn(&[frame(HEADERS, 0x4, 1, b"\x41\x01x\x20\xbe")]);
        assert_eq!(run(&b), H2State::Malformed("HPACK index out of range"));
        let b = conn(&[frame(HEADERS, 0x4, 1, b"\x80")]);
        assert_eq!(run(&b), H2State::Malformed("HPACK index 0"));
        let b = conn(&[frame(HEADERS, 0x4, 1, b"\xff\xff\xff\xff\xff\x7f")]);
        assert_eq!(run(&b), H2State::Malformed("HPACK integer too large"));
        let b = conn(&[frame(HEADERS, 0x4, 1, b"\x82\x41\x05ab")]);
        assert_eq!(run(&b), H2State::Malformed("truncated header block"));
        // No pseudo-headers at all is still a fingerprint.
        let b = conn(&[frame(HEADERS, 0x4, 1, b"\x7a\x01x")]);
        assert_eq!(akamai(run(&b)), "3:100;4:65535|1000|0|");
    }

    #[test]
    fn not_h2_and_malformed() {
        assert_eq!(run(b"GET / HTTP/1.1\r\n"), H2State::NotH2);
        assert_eq!(run(b"PRI * HTTP/1.1"), H2State::NotH2);
        assert_eq!(run(b"PRI * HT"), H2State::NeedMore);
        let mut b = PREFACE.to_vec();
        b.extend(frame(WINDOW_UPDATE, 0, 0, &[0, 0, 0, 1]));
        assert_eq!(run(&b), H2State::Malformed("first frame is not SETTINGS"));
        let mut interrupted = frame(HEADERS, 0, 1, b"\x82");
        interrupted.extend(frame(PRIORITY, 0, 3, &[0, 0, 0, 0, 1]));
        let priorities: Vec<u8> = (0..33)
            .flat_map(|_| frame(PRIORITY, 0, 3, &[0; 5]))
            .collect();
        for (f, why) in [
            (frame(DATA, 0, 1, b"x"), "DATA before HEADERS"),
            (
                frame(CONTINUATION, 4, 1, b""),
                "CONTINUATION without HEADERS",
            ),
            (interrupted, "header block interrupted"),
            (frame(PRIORITY, 0, 1, b"1234"), "PRIORITY length is not 5"),
            (frame(PRIORITY, 0, 0, &[0; 5]), "PRIORITY on stream 0"),
            (priorities, "too many PRIORITY frames"),
            (
                frame(WINDOW_UPDATE, 0, 0, b"123"),
                "WINDOW_UPDATE length is not 4",
            ),
            (frame(SETTINGS, 0, 1, b""), "SETTINGS on a stream"),
            (frame(HEADERS, 4, 0, b"\x82"), "HEADERS on stream 0"),
            (
                frame(HEADERS, FLAG_PADDED | 4, 1, b"\x09\x82"),
                "HEADERS too short for its flags",
            ),
            (
                frame(HEADERS, FLAG_PRIORITY | 4, 1, b"\x00\x00"),
                "HEADERS too short for its flags",
            ),
        ] {
            assert_eq!(run(&conn(&[f])), H2State::Malformed(why));
        }
        let many: Vec<(u16, u32)> = (0..33).map(|i| (i, 0)).collect();
        let mut b = PREFACE.to_vec();
        b.extend(settings(&many));
        assert_eq!(run(&b), H2State::Malformed("too many SETTINGS"));
    }

    #[test]
    fn ignored_frames_and_final_states_repeat() {
        let b = conn(&[
            frame(SETTINGS, FLAG_ACK, 0, b""),
            settings(&[(1, 1)]),
            frame(6, 0, 0, &[0; 8]),   // PING
            frame(0xfa, 0, 0, b"ext"), // unknown type
            frame(WINDOW_UPDATE, 0, 1, &5u32.to_be_bytes()),
            frame(HEADERS, 0x5, 1, MPSA_UA),
        ]);
        let mut tap = H2Tap::new();
        let done = tap.feed(&b);
        assert_eq!(akamai(done.clone()), "3:100;4:65535|1000|0|m,p,s,a");
        assert_eq!(tap.feed(b"anything"), done);
        let mut tap = H2Tap::new();
        assert_eq!(tap.feed(b"GET"), H2State::NotH2);
        assert_eq!(tap.feed(PREFACE), H2State::NotH2);
    }

    #[test]
    fn byte_limit() {
        // Pseudo-headers first, then more regular fields than the limit: readable at the limit.
        let mut block = MPSA_UA.to_vec();
        block.resize(H2_TAP_LIMIT, 0x7a);
        let b = conn(&[frame(HEADERS, 0x4, 1, &block)]);
        assert_eq!(akamai(run(&b)), "3:100;4:65535|1000|0|m,p,s,a");
        // A :path value longer than the limit: no fingerprint.
        let mut block = b"\x82\x04\x7f\x81\x80\x01".to_vec();
        block.resize(H2_TAP_LIMIT + 100, b'a');
        let b = conn(&[frame(HEADERS, 0x4, 1, &block)]);
        assert_eq!(
            run(&b),
            H2State::Malformed("header block exceeds the byte limit")
        );
        // Only ignorable frames up to the limit.
        let pings: Vec<Vec<u8>> = (0..1000).map(|_| frame(6, 0, 0, &[0; 8])).collect();
        assert_eq!(
            run(&conn(&pings)),
            H2State::Malformed("no request within the byte limit")
        );
    }
}
