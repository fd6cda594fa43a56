//! Hot-path cost of the native HTTP/2 server's pure parts (src/http2), run for every request:
//! decoding a client's first request header block (Huffman-coded literals, captured from real
//! clients in tests/fixtures/http/; later requests on a connection are mostly one-byte
//! indices into the dynamic table, so this is the dear case) and encoding a typical API
//! response head.
//!
//! Run: `cargo bench --bench http2 -- --warm-up-time 1 --measurement-time 3`

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use portcullis::http2::frame::{self, flag, kind, Head};
use portcullis::http2::hpack::{Decoder, Encoder};

const CHROME: &[u8] = include_bytes!("../tests/fixtures/http/chromium-h2-1.bin");
const CURL: &[u8] = include_bytes!("../tests/fixtures/http/curl-h2-1.bin");
const HTTPX: &[u8] = include_bytes!("../tests/fixtures/http/httpx-h2-1.bin");

/// The header block of the first HEADERS frame of a captured client connection start.
fn first_block(capture: &[u8]) -> Vec<u8> {
    let mut at = frame::PREFACE.len();
    while let Some(h) = capture.get(at..).and_then(Head::parse) {
        let start = at + frame::HEADER_LEN;
        let payload = &capture[start..start + h.len as usize];
        at = start + h.len as usize;
        if h.kind != kind::HEADERS {
            continue;
        }
        let mut p = payload;
        if h.has(flag::PADDED) {
            p = frame::unpad(p).expect("padding");
        }
        if h.has(flag::PRIORITY) {
            p = &p[5..];
        }
        return p.to_vec();
    }
    panic!("no HEADERS frame in the capture");
}

/// What the proxy sends back for a JSON answer (the upstream's fields plus a Date).
const RESPONSE: [(&str, &str); 5] = [
    ("content-type", "application/json"),
    ("content-length", "300"),
    ("date", "Sun, 06 Dec 2026 08:00:00 GMT"),
    ("request-id", "req_011CUw5ghbfH9dXbJzSVr7Jt"),
    ("x-portcullis-decision-id", "01JEXAMPLE0000000000000000"),
];

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("hpack_decode_first_request");
    for (name, capture) in [("chrome", CHROME), ("curl", CURL), ("httpx", HTTPX)] {
        let block = first_block(capture);
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut d = Decoder::new(4096);
                let mut n = 0usize;
                d.decode(black_box(&block), |k, v| n += k.len() + v.len())
                    .expect("decodes");
                n
            })
        });
    }
    g.finish();

    c.bench_function("hpack_encode_response/5_fields", |b| {
        let mut e = Encoder::new();
        let mut out = Vec::with_capacity(256);
        b.iter(|| {
            out.clear();
            e.begin_block(&mut out);
            e.status(200, &mut out);
            for (k, v) in black_box(&RESPONSE) {
                e.field(k.as_bytes(), v.as_bytes(), &mut out);
            }
            out.len()
        })
    });
}

criterion_group!(http2, benches);
criterion_main!(http2);
