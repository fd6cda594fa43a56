//! Cost of the evidence log on the request path: `EvidenceLog::record` (a `try_send` on a bounded
//! queue; must stay far below a microsecond) and the writer's per-record serialization.
//!
//! Run: `cargo bench --bench evidence -- --warm-up-time 1 --measurement-time 3`

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use portcullis::evidence::{
    timestamp, DecisionIds, EvidenceConfig, EvidenceLog, HitRecord, Record, SCHEMA_VERSION,
};

fn record(ids: &DecisionIds) -> Record {
    Record {
        v: SCHEMA_VERSION,
        ts: timestamp(std::time::SystemTime::now()),
        decision_id: ids.next_id(),
        policy_version: "bench-1".into(),
        verdict: "reject".into(),
        peer: "203.0.113.7".into(),
        subnet: "203.0.113.0/24".into(),
        account: Some("0123456789abcdef0123456789abcdef".into()),
        sni: Some("api.example.com".into()),
        alpn: Some("h2".into()),
        ja3: Some("771,4865-4866-4867-49195-49199,0-23-65281-10-11-35-16-5-13,29-23-24,0".into()),
        ja3_hash: Some("773906b0efdefa24a7f2b8eb6985bf37".into()),
        ja4: Some("t13d1516h2_8daaf6152771_e5627efa2ab1".into()),
        ja4_r: None,
        header_fp: None,
        h2_fp: None,
        ja4h: None,
        user_agent: Some("anthropic-sdk-python/0.40.0 (CPython 3.12)".into()),
        claim: None,
        claim_mismatch: Vec::new(),
        tcp_rtt_us: None,
        tls_rtt_us: None,
        relay: None,
        method: "POST".into(),
        path: "/v1/messages".into(),
        status: 429,
        hits: vec![HitRecord {
            rule: "subnet-distinct-accounts".into(),
            layer_key: "subnet:203.0.113.0/24".into(),
            current: 31,
            limit: 20,
            action: "reject".into(),
            shadow: false,
            retry_after_ms: 30_000,
        }],
    }
}

fn bench(c: &mut Criterion) {
    let ids = DecisionIds::new();
    let r = record(&ids);
    c.bench_function("evidence/serialize_line", |b| {
        let mut buf = Vec::with_capacity(2048);
        b.iter(|| {
            buf.clear();
            serde_json::to_writer(&mut buf, black_box(&r)).ok();
            buf.push(b'\n');
            black_box(buf.len())
        })
    });
    c.bench_function("evidence/decision_id", |b| {
        b.iter(|| black_box(ids.next_id()))
    });

    // `record` with the writer running on a current-thread runtime in another thread, so the
    // queue drains as it would in the proxy. Cloning the record is part of the measured cost
    // (the gate builds a fresh one per decision).
    let dir = tempfile::tempdir().ok();
    let path = dir
        .as_ref()
        .map_or_else(std::env::temp_dir, |d| d.path().to_path_buf())
        .join("evidence.jsonl");
    // Bounded disk use however long criterion runs: small files, one kept, no gzip.
    let cfg = EvidenceConfig {
        max_bytes: 64 << 20,
        keep: 1,
        compress: false,
        ..EvidenceConfig::new(path)
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build();
    let (Ok(rt), Ok((log, writer))) = (rt, EvidenceLog::start(cfg)) else {
        eprintln!("evidence bench: cannot start the writer");
        return;
    };
    let task = rt.spawn(writer.run());
    c.bench_function("evidence/record", |b| {
        b.iter(|| log.record(black_box(r.clone())))
    });
    rt.block_on(async {
        log.shutdown().await;
        let _ = task.await;
    });
    eprintln!(
        "evidence/record: {} written, {} dropped (queue full)",
        log.written(),
        log.dropped()
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
