//! Property tests for the limit stores' invariants (governor's `tests/proptests.rs` style):
//! GCRA never admits more than `burst + elapsed / emission` units over any interval, and a
//! blocked request changes no state anywhere.

use std::sync::Arc;
use std::time::Duration;

use portcullis::limit::local::{LocalBounds, LocalStore};
use portcullis::limit::{ManualClock, Op, OpSpec, Rate};
use proptest::prelude::*;

fn store(max_keys: usize) -> (LocalStore, ManualClock) {
    let clock = ManualClock::default();
    clock.advance(Duration::from_secs(1_000));
    let s = LocalStore::with_seed(Arc::new(clock.clone()), LocalBounds { max_keys }, 7);
    (s, clock)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Over every interval [t_i, t_j] of a run, the admitted cost is at most
    /// burst + ⌊(t_j − t_i) / emission⌋.
    #[test]
    fn gcra_admits_at_most_burst_plus_elapsed(
        emission_ms in 1u64..50,
        burst in 1u32..8,
        steps in prop::collection::vec((0u64..120, 0u32..5), 1..120),
    ) {
        let (s, clock) = store(100);
        let op = OpSpec {
            op: Op::Rate {
                key: "k".into(),
                rate: Rate { emission: Duration::from_millis(emission_ms), burst },
                cost: 0,
            },
            enforce: true,
        };
        let mut admitted: Vec<(u64, u64)> = Vec::new(); // (time ms, cost)
        let mut t = 0u64;
        for (advance, cost) in steps {
            clock.advance(Duration::from_millis(advance));
            t += advance;
            let mut op = op.clone();
            if let Op::Rate { cost: c, .. } = &mut op.op {
                *c = cost;
            }
            let e = s.evaluate_now(&[op]);
            prop_assert_eq!(e.blocked, e.outcomes[0].is_denied());
            if !e.blocked {
                admitted.push((t, u64::from(cost)));
            }
        }
        for i in 0..admitted.len() {
            let mut sum = 0;
            for j in i..admitted.len() {
                sum += admitted[j].1;
                let bound = u64::from(burst) + (admitted[j].0 - admitted[i].0) / emission_ms;
                prop_assert!(sum <= bound, "{} units in [{}, {}] ms > {}", sum, admitted[i].0, admitted[j].0, bound);
            }
        }
    }

    /// For random op lists that include a denied enforcing op, the store's state is
    /// unchanged, the outcomes match a second identical call, and no slot is held.
    #[test]
    fn blocked_request_changes_nothing(
        history in prop::collection::vec(prop::collection::vec(op_strategy(), 1..6), 0..30),
        request in prop::collection::vec(op_strategy(), 0..10),
        blocker_at in 0usize..10,
        advance_ms in 0u64..5_000,
    ) {
        let (s, clock) = store(64);
        let mut leases = Vec::new();
        for ops in &history {
            leases.push(s.evaluate_now(ops).lease);
            clock.advance(Duration::from_millis(advance_ms / 7));
        }
        clock.advance(Duration::from_millis(advance_ms));
        let mut request = request;
        request.insert(blocker_at.min(request.len()), blocker(blocker_at));
        let before = s.snapshot();
        let first = s.evaluate_now(&request);
        prop_assert!(first.blocked);
        prop_assert_eq!(s.snapshot(), before.clone());
        let second = s.evaluate_now(&request);
        prop_assert_eq!(&first.outcomes, &second.outcomes);
        drop((first, second));
        prop_assert_eq!(s.snapshot(), before);
        drop(leases);
    }
}

/// An op that is always denied: a rate cost above its burst, a distinct limit of 0 for a
/// new member, or a concurrency limit of 0.
fn blocker(kind: usize) -> OpSpec {
    let op = match kind % 3 {
        0 => Op::Rate {
            key: "r0".into(),
            rate: Rate {
                emission: Duration::from_millis(10),
                burst: 2,
            },
            cost: 3,
        },
        1 => Op::Distinct {
            key: "d0".into(),
            member: u64::MAX,
            max: 0,
            window: Duration::from_secs(60),
        },
        _ => Op::Concurrency {
            key: "c-blocker".into(),
            max: 0,
        },
    };
    OpSpec { op, enforce: true }
}

/// Ops on a few keys each, so requests repeat keys and states interact.
fn op_strategy() -> impl Strategy<Value = OpSpec> {
    let rate = (0u8..4, 1u64..200, 1u32..4, 0u32..4).prop_map(|(k, ms, burst, cost)| Op::Rate {
        key: format!("r{k}"),
        rate: Rate {
            emission: Duration::from_millis(ms),
            burst,
        },
        cost,
    });
    let conc = (0u8..3, 0u32..3).prop_map(|(k, max)| Op::Concurrency {
        key: format!("c{k}"),
        max,
    });
    let distinct =
        (0u8..3, 0u64..100, 0u32..5, 1u64..5).prop_map(|(k, member, max, w)| Op::Distinct {
            key: format!("d{k}"),
            member,
            max,
            window: Duration::from_secs(w),
        });
    (prop_oneof![rate, conc, distinct], any::<bool>())
        .prop_map(|(op, enforce)| OpSpec { op, enforce })
}
