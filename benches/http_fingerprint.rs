//! Hot-path cost of the HTTP-layer fingerprints: the header fingerprint of one request (run for
//! every request) and the HTTP/2 tap on a captured Chromium connection start (once per
//! connection).
//!
//! Run: `cargo bench --bench http_fingerprint -- --warm-up-time 1 --measurement-time 3`

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use portcullis::fingerprint::{header_fingerprint, H2State, H2Tap, HttpVersionTag};

/// Chromium 156 headless: preface, SETTINGS, WINDOW_UPDATE, HEADERS (516 bytes).
const CHROME_H2: &[u8] = include_bytes!("../tests/fixtures/http/chromium-h2-1.bin");

/// A 12-field SDK-style API request, as hyper's `HeaderMap` would yield it.
const REQUEST: [(&str, &str); 12] = [
    ("host", "api.example.com"),
    ("accept", "application/json"),
    ("accept-encoding", "gzip, deflate"),
    ("anthropic-version", "2023-06-01"),
    ("content-type", "application/json"),
    ("user-agent", "Anthropic/Python 0.40.0"),
    ("x-api-key", "sk-ant-api03-0123456789abcdef0123456789abcdef"),
    ("x-stainless-arch", "x64"),
    ("x-stainless-lang", "python"),
    ("x-stainless-os", "Linux"),
    ("x-stainless-retry-count", "0"),
    ("content-length", "1234"),
];

fn benches(c: &mut Criterion) {
    c.benchmark_group("header_fingerprint")
        .bench_function("12_headers", |b| {
            b.iter(|| {
                header_fingerprint(
                    HttpVersionTag::H1,
                    black_box(&REQUEST).iter().map(|(n, v)| (*n, v.as_bytes())),
                )
            })
        });
    c.benchmark_group("h2_tap").bench_function("chrome", |b| {
        b.iter(|| {
            let state = H2Tap::new().feed(black_box(CHROME_H2));
            assert!(matches!(state, H2State::Done(_)));
            state
        })
    });
}

criterion_group!(http_fingerprint, benches);
criterion_main!(http_fingerprint);
