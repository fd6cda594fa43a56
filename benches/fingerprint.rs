//! Hot-path cost of fingerprinting one connection: ClientHello parse, JA3, JA4, and all three,
//! on a captured Chrome hello (GREASE, 16 extensions, 517 bytes).
//!
//! Run: `cargo bench --bench fingerprint -- --warm-up-time 1 --measurement-time 3`

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use portcullis::fingerprint::{parse_client_hello, ClientHello, Parsed};

/// Chrome (tls-handshake.pcapng stream 0): `t13d1516h2_8daaf6152771_e5627efa2ab1`.
const CHROME: &[u8] = include_bytes!("../tests/fixtures/clienthello/tls-handshake-0.bin");

fn parse(buf: &[u8]) -> ClientHello {
    match parse_client_hello(buf) {
        Ok(Parsed::Complete { hello, .. }) => hello,
        other => panic!("fixture does not parse: {other:?}"),
    }
}

fn benches(c: &mut Criterion) {
    let hello = parse(CHROME);

    c.benchmark_group("parse").bench_function("chrome", |b| {
        b.iter(|| parse_client_hello(black_box(CHROME)))
    });
    c.benchmark_group("ja3")
        .bench_function("chrome", |b| b.iter(|| black_box(&hello).ja3()));
    c.benchmark_group("ja4")
        .bench_function("chrome", |b| b.iter(|| black_box(&hello).ja4()));
    c.benchmark_group("parse_ja3_ja4")
        .bench_function("chrome", |b| {
            b.iter(|| {
                let hello = parse(black_box(CHROME));
                (hello.ja3(), hello.ja4())
            })
        });
}

criterion_group!(fingerprint, benches);
criterion_main!(fingerprint);
