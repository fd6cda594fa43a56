use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use super::distinct::{Geometry, View};
use super::{LocalBounds, LocalStore};
use crate::limit::{CounterStore, ManualClock, Op, OpSpec, Outcome, Rate};

const SEED: u64 = 0x1234_5678;

fn store(max_keys: usize) -> (LocalStore, ManualClock) {
    let clock = ManualClock::default();
    // Start away from zero so "fresh" and "expired" are not the same instant by accident.
    clock.advance(Duration::from_secs(1_000));
    let s = LocalStore::with_seed(Arc::new(clock.clone()), LocalBounds { max_keys }, SEED);
    (s, clock)
}

fn rate(key: &str, emission_ms: u64, burst: u32, cost: u32) -> OpSpec {
    OpSpec {
        op: Op::Rate {
            key: key.into(),
            rate: Rate {
                emission: Duration::from_millis(emission_ms),
                burst,
            },
            cost,
        },
        enforce: true,
    }
}

fn conc(key: &str, max: u32) -> OpSpec {
    OpSpec {
        op: Op::Concurrency {
            key: key.into(),
            max,
        },
        enforce: true,
    }
}

fn distinct(key: &str, member: u64, max: u32, window_s: u64) -> OpSpec {
    OpSpec {
        op: Op::Distinct {
            key: key.into(),
            member,
            max,
            window: Duration::from_secs(window_s),
        },
        enforce: true,
    }
}

fn shadow(mut spec: OpSpec) -> OpSpec {
    spec.enforce = false;
    spec
}

/// An op that is always denied and enforcing: a cost above the burst never passes.
fn blocker() -> OpSpec {
    rate("blocker", 1, 1, 2)
}

fn one(s: &LocalStore, op: OpSpec) -> Outcome {
    s.evaluate_now(&[op]).outcomes[0]
}

/// The outcomes `ops` would get now, charging nothing (a blocker makes the call a no-op).
fn probe(s: &LocalStore, ops: &[OpSpec]) -> Vec<Outcome> {
    let mut v = ops.to_vec();
    v.push(blocker());
    let mut out = s.evaluate_now(&v).outcomes;
    out.pop();
    out
}

fn allowed(remaining: u64, reset: Duration) -> Outcome {
    Outcome::Allowed { remaining, reset }
}

#[test]
fn gcra_fresh_key_admits_burst_then_one_per_emission() {
    let (s, clock) = store(1_000);
    let op = rate("acct:1", 100, 5, 1);
    for i in 0..5 {
        let o = one(&s, op.clone());
        assert_eq!(o, allowed(4 - i, Duration::from_millis(100 * (i + 1))));
    }
    assert_eq!(
        one(&s, op.clone()),
        Outcome::Denied {
            current: 5,
            limit: 5,
            retry_after: Duration::from_millis(100)
        }
    );
    for _ in 0..10 {
        clock.advance(Duration::from_millis(99));
        assert!(one(&s, op.clone()).is_denied());
        clock.advance(Duration::from_millis(1));
        assert_eq!(one(&s, op.clone()), allowed(0, Duration::from_millis(500)));
    }
    // Idle for the whole burst: fresh again.
    clock.advance(Duration::from_millis(500));
    assert_eq!(one(&s, op.clone()), allowed(4, Duration::from_millis(100)));
}

#[test]
fn gcra_retry_after_is_exact() {
    let (s, clock) = store(1_000);
    let op = rate("fp:x", 250, 2, 1);
    one(&s, op.clone());
    one(&s, op.clone());
    clock.advance(Duration::from_millis(100));
    let Outcome::Denied { retry_after, .. } = one(&s, op.clone()) else {
        panic!("expected a denial");
    };
    assert_eq!(retry_after, Duration::from_millis(150));
    clock.advance(retry_after - Duration::from_nanos(1));
    assert!(one(&s, op.clone()).is_denied());
    clock.advance(Duration::from_nanos(1));
    assert!(!one(&s, op).is_denied());
}

#[test]
fn two_rates_on_one_key_both_apply() {
    let (s, clock) = store(1_000);
    let fast = rate("acct:1", 100, 10, 1); // 10 per second
    let slow = rate("acct:1", 60_000, 3, 1); // 3 per 3 minutes, burst 3
    for _ in 0..3 {
        let e = s.evaluate_now(&[fast.clone(), slow.clone()]);
        assert!(!e.blocked);
    }
    let e = s.evaluate_now(&[fast.clone(), slow.clone()]);
    assert!(e.blocked);
    assert!(!e.outcomes[0].is_denied());
    assert!(e.outcomes[1].is_denied());
    // The fast window was not charged by the blocked request: 7 of 10 left.
    assert_eq!(
        probe(&s, std::slice::from_ref(&fast))[0],
        allowed(6, Duration::from_millis(400))
    );
    // The fast limit alone binds too.
    clock.advance(Duration::from_secs(600));
    let burst: Vec<_> = (0..11)
        .map(|_| s.evaluate_now(&[fast.clone(), slow.clone()]).blocked)
        .collect();
    assert_eq!(burst.iter().filter(|b| !**b).count(), 3);
}

#[test]
fn blocked_request_charges_nothing() {
    let (s, _clock) = store(1_000);
    // Some prior state on every kind.
    let _ = s.evaluate_now(&[rate("r", 10, 5, 2), distinct("d", 1, 5, 60)]);
    let lease = s.evaluate_now(&[conc("c", 3)]).lease;
    let before = s.snapshot();
    let ops = [
        rate("r", 10, 5, 1),
        rate("r-new", 10, 5, 1),
        distinct("d", 2, 5, 60),
        distinct("d-new", 1, 5, 60),
        conc("c", 3),
        conc("c-new", 3),
        blocker(),
    ];
    let want = probe(&s, &ops[..6]);
    let e = s.evaluate_now(&ops);
    assert!(e.blocked);
    assert_eq!(&e.outcomes[..6], &want[..]);
    assert!(e.outcomes[..6].iter().all(|o| !o.is_denied()));
    assert_eq!(s.snapshot(), before);
    drop(e);
    assert_eq!(s.snapshot(), before, "a blocked lease holds no slot");
    drop(lease);
}

#[test]
fn denied_shadow_op_does_not_block() {
    let (s, _clock) = store(1_000);
    let tight = rate("tight", 1_000, 1, 1);
    one(&s, tight.clone());
    let tight_before = probe(&s, std::slice::from_ref(&tight));
    let e = s.evaluate_now(&[shadow(tight.clone()), rate("other", 1_000, 3, 1)]);
    assert!(!e.blocked);
    assert!(e.outcomes[0].is_denied());
    assert_eq!(e.outcomes[1], allowed(2, Duration::from_secs(1)));
    // The denied op's own state did not move; the other op was charged.
    assert_eq!(probe(&s, &[tight])[0], tight_before[0]);
    assert_eq!(
        probe(&s, &[rate("other", 1_000, 3, 1)])[0],
        allowed(1, Duration::from_secs(2))
    );
}

#[test]
fn concurrency_lease_releases_and_max_holds() {
    let (s, _clock) = store(1_000);
    let a = s.evaluate_now(&[conc("c", 2)]);
    assert_eq!(a.outcomes[0], allowed(1, Duration::ZERO));
    let b = s.evaluate_now(&[conc("c", 2)]);
    assert_eq!(b.outcomes[0], allowed(0, Duration::ZERO));
    let c = s.evaluate_now(&[conc("c", 2)]);
    assert!(c.blocked);
    assert_eq!(
        c.outcomes[0],
        Outcome::Denied {
            current: 2,
            limit: 2,
            retry_after: Duration::from_secs(1)
        }
    );
    drop(c);
    drop(a);
    let d = s.evaluate_now(&[conc("c", 2)]);
    assert!(!d.blocked);
    drop((b, d));
    assert_eq!(s.resident_keys(), 0, "entries go at zero");
}

#[test]
fn concurrency_repeated_in_one_request_counts_twice() {
    let (s, _clock) = store(1_000);
    let e = s.evaluate_now(&[conc("c", 1), conc("c", 1)]);
    assert!(e.blocked);
    let e = s.evaluate_now(&[conc("c", 2), conc("c", 2)]);
    assert!(!e.blocked);
    assert!(s.evaluate_now(&[conc("c", 2)]).blocked);
    drop(e);
    assert_eq!(s.resident_keys(), 0);
}

#[test]
fn lease_outlives_store() {
    let (s, _clock) = store(1_000);
    let e = s.evaluate_now(&[conc("c", 2)]);
    drop(s);
    drop(e);
}

#[test]
fn full_concurrency_map_refuses_new_keys() {
    let (s, _clock) = store(16); // 16 shards of one entry each
    let mut leases = Vec::new();
    let mut refused = 0;
    for i in 0..200 {
        let e = s.evaluate_now(&[conc(&format!("c{i}"), 5)]);
        if e.blocked {
            refused += 1;
            assert!(matches!(e.outcomes[0], Outcome::Denied { current: 0, .. }));
        }
        leases.push(e);
    }
    assert_eq!(s.resident_keys(), 16);
    assert_eq!(refused, 200 - 16);
    leases.clear();
    assert_eq!(s.resident_keys(), 0);
}

#[test]
fn distinct_exact_counts_and_present_member_at_limit() {
    let (s, _clock) = store(1_000);
    for m in 1..=3u64 {
        assert_eq!(
            one(&s, distinct("fp", m, 3, 60)),
            allowed(3 - m, Duration::from_secs(70))
        );
    }
    // Epoch width 10 s; at t = 1000 s the current epoch ends at 1010 s.
    let denied = one(&s, distinct("fp", 4, 3, 60));
    assert_eq!(
        denied,
        Outcome::Denied {
            current: 3,
            limit: 3,
            retry_after: Duration::from_secs(70)
        }
    );
    // Present members pass at the limit and do not count twice.
    assert_eq!(
        one(&s, distinct("fp", 2, 3, 60)),
        allowed(0, Duration::from_secs(70))
    );
    // A denied shadow op still records (the request went through).
    let e = s.evaluate_now(&[shadow(distinct("fp", 9, 3, 60))]);
    assert!(!e.blocked && e.outcomes[0].is_denied());
    assert_eq!(
        probe(&s, &[distinct("fp", 9, 10, 60)])[0],
        allowed(6, Duration::from_secs(70))
    );
}

#[test]
fn distinct_sliding_window_forgets() {
    // Window 60 s in 6 buckets of 10 s; t starts at 1000 s (epoch 100).
    let (s, clock) = store(1_000);
    let at = |m| distinct("sub", m, 2, 60);
    one(&s, at(1));
    clock.advance(Duration::from_secs(30)); // t = 1030, epoch 103
    one(&s, at(2));
    assert!(one(&s, at(3)).is_denied());
    // Member 1 (epoch 100 = [1000, 1010)) overlaps the window until 1070 = 1010 + 60.
    clock.advance(Duration::from_secs(40) - Duration::from_nanos(1));
    assert!(probe(&s, &[at(3)])[0].is_denied());
    clock.advance(Duration::from_nanos(1)); // t = 1070: member 1 forgotten, member 2 not
    assert_eq!(probe(&s, &[at(3)])[0], allowed(0, Duration::from_secs(70)));
    clock.advance(Duration::from_secs(30)); // t = 1100: member 2 forgotten too
    assert_eq!(probe(&s, &[at(3)])[0], allowed(1, Duration::from_secs(70)));
}

fn mix(mut x: u64) -> u64 {
    // splitmix64: distinct inputs give distinct, well-spread members.
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn count_of(o: Outcome, max: u64) -> u64 {
    match o {
        Outcome::Allowed { remaining, .. } => max - remaining - 1,
        Outcome::Denied { current, .. } => current,
    }
}

/// The store's view of a distinct op's key and member, read without charging.
fn view(s: &LocalStore, spec: &OpSpec) -> View {
    let Op::Distinct { window, .. } = &spec.op else {
        panic!("not a distinct op");
    };
    let step = s.inner.step(&spec.op);
    let g = Geometry::new(*window, super::nanos(s.clock.now()));
    let mut shard = super::lock(&s.inner.shards[step.shard]);
    shard.distinct.get_mut(&step.id).map_or(
        View {
            present: false,
            count: 0,
            oldest: None,
        },
        |d| d.view(step.member, &g),
    )
}

#[test]
fn distinct_hll_estimate_within_five_percent() {
    let (s, clock) = store(1_000);
    let max = 1_000_000u32;
    let op = |i: u64| distinct("ja4:t13d", mix(i), max, 3_600);
    for i in 0..10_000u64 {
        assert!(!one(&s, op(i)).is_denied());
        if i % 1_000 == 0 {
            clock.advance(Duration::from_secs(60)); // spread over buckets
        }
    }
    let est = view(&s, &op(u64::MAX)).count as f64;
    assert!((est / 10_000.0 - 1.0).abs() < 0.05, "estimate {est}");
    // Every recorded member is "present" (adding it would change no register).
    for i in 0..10_000u64 {
        assert!(view(&s, &op(i)).present, "member {i}");
    }
    // After the window (+ one bucket) everything is forgotten.
    clock.advance(Duration::from_secs(3_600 + 600));
    assert_eq!(view(&s, &op(0)).count, 0);
    assert!(matches!(
        one(&s, op(0)),
        Outcome::Allowed { remaining, .. } if remaining == u64::from(max) - 1
    ));
}

#[test]
fn distinct_switches_to_hll_with_small_error() {
    let (s, _clock) = store(1_000);
    for n in [64u64, 65, 100, 500] {
        let key = format!("k{n}");
        for i in 0..n {
            one(&s, distinct(&key, mix(i + n * 1_000), 10_000, 60));
        }
        let est = count_of(probe(&s, &[distinct(&key, 7, 10_000, 60)])[0], 10_000);
        if n <= 64 {
            assert_eq!(est, n);
        } else {
            // Linear counting over 2048 registers is near exact at these sizes.
            assert!(est.abs_diff(n) <= n / 20 + 1, "n {n} estimate {est}");
        }
    }
}

#[test]
fn hll_budget_bounds_value_memory() {
    let (s, _clock) = store(64); // 16 shards × 4 keys, 1 HLL per shard
    for k in 0..100u64 {
        let key = format!("k{k}");
        for i in 0..70 {
            one(&s, distinct(&key, mix(k * 100 + i), 1_000, 60));
        }
    }
    assert!(s.resident_keys() <= 64);
    let bound = 16 * (super::hll::Hll::HEAP_BYTES + 256) + 64 * 64 * 8;
    assert!(
        s.value_heap_bytes() <= bound,
        "{} > {bound}",
        s.value_heap_bytes()
    );
}

#[test]
fn eviction_drops_fresh_entries_before_lru() {
    let (s, clock) = store(1_600); // 16 shards × 100
    let long = |i: usize| rate(&format!("long{i}"), 3_600_000, 1, 1);
    for i in 0..600 {
        one(&s, long(i));
    }
    for i in 0..600 {
        one(&s, rate(&format!("short{i}"), 1, 1, 1));
    }
    clock.advance(Duration::from_secs(1)); // the short keys are now fresh
    for i in 0..300 {
        one(&s, rate(&format!("new{i}"), 3_600_000, 1, 1));
    }
    assert!(s.resident_keys() <= 1_600);
    // Pure LRU would have evicted the (older) long keys; fresh-first kept every one.
    for i in 0..600 {
        assert!(probe(&s, &[long(i)])[0].is_denied(), "long{i} was evicted");
    }
}

#[test]
fn lru_keeps_a_key_in_use_through_a_flood() {
    let (s, _clock) = store(160); // 16 shards × 10
    let victim = rate("victim", 3_600_000, 1, 1);
    one(&s, victim.clone());
    let mut op = rate("", 3_600_000, 1, 1);
    for i in 0..20_000 {
        if let Op::Rate { key, .. } = &mut op.op {
            key.clear();
            let _ = write!(key, "flood{i}");
        }
        one(&s, op.clone());
        if i % 4 == 0 {
            assert!(
                one(&s, victim.clone()).is_denied(),
                "victim forgotten at {i}"
            );
        }
    }
    assert!(s.resident_keys() <= 160);
    assert!(!probe(&s, &[rate("flood0", 3_600_000, 1, 1)])[0].is_denied());
}

fn rss_bytes() -> Option<usize> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: usize = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

const RSS_CHILD: &str = "PORTCULLIS_LIMIT_RSS_CHILD";

/// A million new rate keys against `max_keys = 10_000`: the maps stay at the bound and the
/// process does not grow. RSS is per process and parallel tests allocate too, so the test
/// re-runs itself alone in a child process and the child measures.
#[test]
fn a_million_keys_stay_bounded() {
    if std::env::var_os(RSS_CHILD).is_none() {
        if let Ok(exe) = std::env::current_exe() {
            let out = std::process::Command::new(exe)
                .args([
                    "--exact",
                    "limit::local::tests::a_million_keys_stay_bounded",
                    "--test-threads=1",
                    "--nocapture",
                ])
                .env(RSS_CHILD, "1")
                .output();
            if let Ok(out) = out {
                let text = String::from_utf8_lossy(&out.stdout);
                assert!(out.status.success(), "child failed:\n{text}");
                assert!(text.contains("1 passed"), "child ran no test:\n{text}");
                return;
            }
        }
        // No child possible here: measure in this process without the RSS bound.
    }
    let (s, _clock) = store(10_000);
    let mut ops = [rate("", 3_600_000, 10, 1)];
    let warm_up = 50_000;
    let mut rss_after_warm_up = None;
    for i in 0..1_000_000u32 {
        if i == warm_up {
            rss_after_warm_up = rss_bytes();
        }
        if let Op::Rate { key, .. } = &mut ops[0].op {
            key.clear();
            let _ = write!(key, "fp:{i:08x}");
        }
        let e = s.evaluate_now(&ops);
        assert!(!e.blocked);
    }
    assert_eq!(s.resident_keys(), 10_000);
    // The maps are full after ~10,000 keys and their nodes are recycled from then on, so
    // 950,000 more keys must not grow the process. Unbounded, they would add ≥ 60 MB
    // (≥ 64 B per key); the 4 MiB allowance is allocator and test-harness noise.
    if std::env::var_os(RSS_CHILD).is_some() {
        if let (Some(a), Some(b)) = (rss_after_warm_up, rss_bytes()) {
            println!("RSS {a} -> {b}");
            assert!(b.saturating_sub(a) < 4 << 20, "RSS grew {} bytes", b - a);
        }
    }
}

#[test]
fn a_memo_gives_the_same_counters_and_belongs_to_one_store() {
    let ops = [
        rate("r", 1_000, 1, 1),
        conc("c", 8),
        distinct("d", 42, 100, 3_600),
    ];
    let memo = crate::limit::OpsMemo::default();
    let (a, _) = store(1_000);
    let (plain, _) = store(1_000);
    // Filled on the first call, used on the second: the same outcomes and the same keys as
    // a store that hashes every time.
    for round in 0..2 {
        let with = a.evaluate_memo_now(&ops, Some(&memo));
        let without = plain.evaluate_now(&ops);
        assert_eq!(with.outcomes, without.outcomes, "round {round}");
        assert_eq!(a.snapshot(), plain.snapshot(), "round {round}");
    }
    // Another store (another hash key) never takes `a`'s ids from the memo.
    let clock = ManualClock::default();
    let b = LocalStore::with_seed(Arc::new(clock.clone()), LocalBounds { max_keys: 1_000 }, 7);
    let b_plain = LocalStore::with_seed(Arc::new(clock), LocalBounds { max_keys: 1_000 }, 7);
    let _ = b.evaluate_memo_now(&ops, Some(&memo));
    let _ = b_plain.evaluate_now(&ops);
    assert_eq!(b.snapshot(), b_plain.snapshot());
    assert_ne!(b.snapshot(), a.snapshot(), "the two stores key differently");
}
