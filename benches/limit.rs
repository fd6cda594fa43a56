//! Decision-path cost of the embedded counter store: one request's ops evaluated in one
//! atomic step on warm keys (target: < 2 µs for 10 layers).
//!
//! - `10_ops`: 6 rate + 2 distinct (one exact set, one HyperLogLog with 10,000 members) +
//!   2 concurrency (lease taken and released each iteration);
//! - `1_op`: one rate op.
//!
//! Run: `cargo bench --bench limit -- --warm-up-time 1 --measurement-time 3`

use std::sync::Arc;
use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use portcullis::limit::local::{LocalBounds, LocalStore};
use portcullis::limit::{Op, OpSpec, Rate, SystemClock};

/// Generous enough that warm keys are always allowed while the bench runs.
const RATE: Rate = Rate {
    emission: Duration::from_micros(1),
    burst: 1_000_000_000,
};

fn rate(key: &str) -> OpSpec {
    OpSpec {
        op: Op::Rate {
            key: key.into(),
            rate: RATE,
            cost: 1,
        },
        enforce: true,
    }
}

fn distinct(key: &str, member: u64) -> OpSpec {
    OpSpec {
        op: Op::Distinct {
            key: key.into(),
            member,
            max: 1_000_000,
            window: Duration::from_secs(3_600),
        },
        enforce: true,
    }
}

fn conc(key: &str) -> OpSpec {
    OpSpec {
        op: Op::Concurrency {
            key: key.into(),
            max: 1_000_000,
        },
        enforce: true,
    }
}

fn benches(c: &mut Criterion) {
    let store = LocalStore::with_seed(Arc::new(SystemClock::default()), LocalBounds::default(), 1);
    // Warm: the HLL key holds 10,000 members, the exact set 32.
    for m in 0..10_000u64 {
        store.evaluate_now(&[distinct(
            "distinct:ja4:t13d1516h2_8daaf6152771_e5627efa2ab1",
            m,
        )]);
    }
    for m in 0..32u64 {
        store.evaluate_now(&[distinct("distinct:subnet:203.0.113.0/24", m)]);
    }
    let mut ten = vec![
        rate("rate:acct:4f1c2a9be07d3311"),
        rate("rate:ja4:t13d1516h2_8daaf6152771_e5627efa2ab1"),
        rate("rate:ja3:cd08e31494f9531f560d64c695473da9"),
        rate("rate:h2:1:65536;2:0;4:6291456;6:262144|15663105|0|m,a,s,p"),
        rate("rate:subnet:203.0.113.0/24"),
        rate("rate:acct+ja4:4f1c2a9be07d3311:t13d1516h2_8daaf6152771_e5627efa2ab1"),
        distinct("distinct:ja4:t13d1516h2_8daaf6152771_e5627efa2ab1", 0),
        distinct("distinct:subnet:203.0.113.0/24", 0),
        conc("conc:acct:4f1c2a9be07d3311"),
        conc("conc:subnet:203.0.113.0/24"),
    ];
    let one = [rate("rate:acct:4f1c2a9be07d3311")];
    store.evaluate_now(&ten);

    let mut g = c.benchmark_group("limit_local");
    let mut i = 0u64;
    g.bench_function("10_ops", |b| {
        b.iter(|| {
            // Members already counted (the common case: an account seen before).
            i = i.wrapping_add(1);
            if let Op::Distinct { member, .. } = &mut ten[6].op {
                *member = i % 10_000;
            }
            if let Op::Distinct { member, .. } = &mut ten[7].op {
                *member = i % 32;
            }
            let e = store.evaluate_now(black_box(&ten));
            assert!(!e.blocked);
            e
        })
    });
    g.bench_function("1_op", |b| b.iter(|| store.evaluate_now(black_box(&one))));
    g.finish();
}

criterion_group!(limit, benches);
criterion_main!(limit);
