//! GCRA (the Generic Cell Rate Algorithm, ATM Forum TM 4.0 "virtual scheduling"; the same
//! algorithm governor and redis-cell use). The state of a key is one number, the theoretical
//! arrival time (TAT): when the key would be back to "fresh" if nothing else arrived.
//!
//! With emission interval `T` and burst `b`, a request of cost `c` at `now` is admitted iff
//! `max(TAT, now) + c·T − now ≤ b·T` (that is τ + T with the delay tolerance τ = (b − 1)·T),
//! and then `TAT ← max(TAT, now) + c·T`. From a fresh key that admits exactly `b` unit
//! requests at one instant, then one per `T`.

use std::time::Duration;

use crate::limit::{Outcome, Rate};

/// The decision for one rate op: the outcome and, if admitted with a cost, the new TAT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Decision {
    pub outcome: Outcome,
    pub new_tat: Option<u64>,
}

fn dur(n: u128) -> Duration {
    Duration::from_nanos(u64::try_from(n).unwrap_or(u64::MAX))
}

/// Decide `cost` units on a key whose TAT is `tat` (`None`: fresh) at `now` (nanoseconds).
/// Pure: the caller stores `new_tat` when it commits.
///
/// Conventions: `burst` 0 is treated as 1; `emission` 0 means unlimited (always admitted,
/// nothing stored, `remaining` = `u64::MAX`); `cost` 0 is always admitted and changes nothing;
/// a cost above the burst can never pass, and its `retry_after` is the time until the key is
/// fresh.
pub(super) fn decide(tat: Option<u64>, now: u64, rate: Rate, cost: u32) -> Decision {
    let t = rate.emission.as_nanos();
    if t == 0 {
        return Decision {
            outcome: Outcome::Allowed {
                remaining: u64::MAX,
                reset: Duration::ZERO,
            },
            new_tat: None,
        };
    }
    let burst = u128::from(rate.burst.max(1));
    let limit = burst * t; // τ + T
    let now = u128::from(now);
    let base = tat.map_or(now, |x| u128::from(x).max(now));
    let backlog = base - now; // ≤ limit for any state this module produced
    if cost == 0 {
        return Decision {
            outcome: Outcome::Allowed {
                remaining: clamp(limit.saturating_sub(backlog) / t),
                reset: dur(backlog),
            },
            new_tat: None,
        };
    }
    let charge = u128::from(cost) * t;
    let after = backlog + charge;
    if after <= limit {
        let new_tat = now + after;
        Decision {
            outcome: Outcome::Allowed {
                remaining: clamp((limit - after) / t),
                reset: dur(after),
            },
            // A TAT past u64::MAX nanoseconds (584 years) saturates, which only over-limits.
            new_tat: Some(clamp(new_tat)),
        }
    } else {
        let retry_after = if charge <= limit {
            after - limit
        } else {
            backlog
        };
        Decision {
            outcome: Outcome::Denied {
                current: clamp(backlog.div_ceil(t).min(burst)),
                limit: clamp(burst),
                retry_after: dur(retry_after),
            },
            new_tat: None,
        }
    }
}

fn clamp(n: u128) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn rate(ms: u64, burst: u32) -> Rate {
        Rate {
            emission: Duration::from_millis(ms),
            burst,
        }
    }

    #[test]
    fn fresh_key_admits_burst_then_one_per_interval() {
        let r = rate(100, 3);
        let mut tat = None;
        let now = 1_000 * MS;
        for expected_remaining in [2, 1, 0] {
            let d = decide(tat, now, r, 1);
            assert_eq!(
                d.outcome,
                Outcome::Allowed {
                    remaining: expected_remaining,
                    reset: Duration::from_millis(100 * (3 - expected_remaining))
                }
            );
            tat = d.new_tat;
        }
        let d = decide(tat, now, r, 1);
        assert_eq!(
            d.outcome,
            Outcome::Denied {
                current: 3,
                limit: 3,
                retry_after: Duration::from_millis(100)
            }
        );
        // One nanosecond early is still denied; on time is admitted.
        assert!(decide(tat, now + 100 * MS - 1, r, 1).outcome.is_denied());
        assert!(!decide(tat, now + 100 * MS, r, 1).outcome.is_denied());
    }

    #[test]
    fn cost_zero_and_oversized_cost() {
        let r = rate(10, 2);
        let d = decide(None, 0, r, 0);
        assert_eq!(d.new_tat, None);
        assert_eq!(
            d.outcome,
            Outcome::Allowed {
                remaining: 2,
                reset: Duration::ZERO
            }
        );
        let d = decide(None, 0, r, 3);
        assert!(d.outcome.is_denied());
        assert_eq!(d.new_tat, None);
        let d = decide(None, 0, rate(0, 1), 1_000);
        assert!(!d.outcome.is_denied());
        assert_eq!(d.new_tat, None);
    }

    #[test]
    fn multi_unit_retry_after_is_exact() {
        let r = rate(10, 5);
        let tat = decide(None, 0, r, 4).new_tat;
        assert_eq!(tat, Some(40 * MS));
        // 1 left now; a cost of 3 needs 2 more intervals.
        let d = decide(tat, 0, r, 3);
        assert_eq!(
            d.outcome,
            Outcome::Denied {
                current: 4,
                limit: 5,
                retry_after: Duration::from_millis(20)
            }
        );
        assert!(!decide(tat, 20 * MS, r, 3).outcome.is_denied());
    }
}
