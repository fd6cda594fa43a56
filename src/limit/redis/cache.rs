//! The over-limit cache: ops known to be denied until some instant, answered here without
//! asking Redis (a hot rejected key costs no round trip).
//!
//! Filled only from enforcing denials Redis returned, each held for a time in which Redis
//! would deny it again:
//! - **rate** (key, emission, burst): until `retry_after` (at most [`MAX_HOLD`]), for costs at
//!   least the denied one. A TAT only moves forward (other proxies add to it), so the key cannot
//!   admit that cost earlier — except after a Cluster refund (see the store docs), which this
//!   cache may ignore for up to `retry_after`;
//! - **distinct** (key, window, max, member): a new member on a full key; the count falls only
//!   when the oldest bucket leaves the window, which is `retry_after`; held at most
//!   [`DISTINCT_HOLD`];
//! - **concurrency** (key, max): slots free whenever responses end, so only [`CONCURRENCY_HOLD`]:
//!   a slot freed meanwhile is used by this proxy up to that much later.
//!
//! Entries are keyed by a 64-bit keyed SipHash of the op's kind, key and parameters (so a
//! policy reload that changes a limit never hits an old entry). Bounded: at most `cap`
//! entries; a full cache drops expired entries from the front, then (at most once per `cap/8`
//! insertions) sweeps all expired ones, then evicts the oldest insertion.
//! Expiry uses this process's monotonic clock, starting from when the request was sent, so an
//! entry never outlives the denial Redis reported.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use hashlink::LinkedHashMap;
use siphasher::sip::SipHasher13;

use crate::limit::{Op, OpSpec, Outcome};

/// Longest hold of a rate denial.
pub(super) const MAX_HOLD: Duration = Duration::from_secs(60);
/// Longest hold of a distinct denial.
pub(super) const DISTINCT_HOLD: Duration = Duration::from_secs(1);
/// Hold of a concurrency denial.
pub(super) const CONCURRENCY_HOLD: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy)]
struct Entry {
    until: Instant,
    /// Rate ops: the smallest cost known denied (0 for other kinds).
    cost: u32,
    current: u64,
    limit: u64,
}

struct State {
    map: LinkedHashMap<u64, Entry>,
    since_sweep: usize,
}

pub(super) struct OverLimitCache {
    state: Mutex<State>,
    /// Entries, read without the lock so an empty cache costs one atomic load.
    len: AtomicUsize,
    cap: usize,
    k0: u64,
    k1: u64,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl OverLimitCache {
    /// A cache of at most `cap` entries (0: disabled) with a random hash key.
    pub(super) fn new(cap: usize) -> Self {
        let rs = std::collections::hash_map::RandomState::new();
        let k0 = rs.hash_one(0x6f76_6572_6c69_6d69_u64);
        Self {
            state: Mutex::new(State {
                map: LinkedHashMap::new(),
                since_sweep: 0,
            }),
            len: AtomicUsize::new(0),
            cap,
            k0,
            k1: rs.hash_one(k0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic under this lock cannot leave the map invalid; a lost entry only costs a
        // Redis call.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    fn id(&self, op: &Op) -> u64 {
        let mut h = SipHasher13::new_with_keys(self.k0, self.k1);
        // The key is followed by fixed-width parameters only, so the encoding is unambiguous.
        match op {
            Op::Rate { key, rate, .. } => {
                h.write_u8(0);
                h.write(key.as_bytes());
                h.write_u64(nanos(rate.emission));
                h.write_u32(rate.burst);
            }
            Op::Concurrency { key, max } => {
                h.write_u8(1);
                h.write(key.as_bytes());
                h.write_u32(*max);
            }
            Op::Distinct {
                key,
                member,
                max,
                window,
            } => {
                h.write_u8(2);
                h.write(key.as_bytes());
                h.write_u64(nanos(*window));
                h.write_u32(*max);
                h.write_u64(*member);
            }
        }
        h.finish()
    }

    /// The cached denial of each op at `now` (`None`: not cached), or `None` when no
    /// enforcing op is cached (then the request must go to Redis).
    pub(super) fn lookup(&self, ops: &[OpSpec], now: Instant) -> Option<Vec<Option<Outcome>>> {
        if self.len() == 0 {
            return None;
        }
        let mut st = self.lock();
        let mut out = Vec::with_capacity(ops.len());
        let mut blocks = false;
        for spec in ops {
            let id = self.id(&spec.op);
            let hit = match st.map.get(&id).copied() {
                Some(e) if e.until <= now => {
                    st.map.remove(&id);
                    None
                }
                Some(e) => match spec.op {
                    Op::Rate { cost, .. } if cost < e.cost || cost == 0 => None,
                    _ => Some(Outcome::Denied {
                        current: e.current,
                        limit: e.limit,
                        retry_after: e.until - now,
                    }),
                },
                None => None,
            };
            blocks |= spec.enforce && hit.is_some();
            out.push(hit);
        }
        self.len.store(st.map.len(), Ordering::Relaxed);
        blocks.then_some(out)
    }

    /// Remember an enforcing op's denial, seen on a request sent at `sent`.
    pub(super) fn insert(&self, op: &Op, outcome: &Outcome, sent: Instant) {
        let Outcome::Denied {
            current,
            limit,
            retry_after,
        } = *outcome
        else {
            return;
        };
        if self.cap == 0 {
            return;
        }
        let (hold, cost) = match op {
            Op::Rate { cost, .. } => (retry_after.min(MAX_HOLD), *cost),
            Op::Distinct { .. } => (retry_after.min(DISTINCT_HOLD), 0),
            Op::Concurrency { .. } => (retry_after.min(CONCURRENCY_HOLD), 0),
        };
        if hold.is_zero() {
            return;
        }
        let Some(until) = sent.checked_add(hold) else {
            return;
        };
        let id = self.id(op);
        let mut st = self.lock();
        let now = Instant::now();
        if !st.map.contains_key(&id) {
            self.make_room(&mut st, now);
        }
        // A rate entry keeps the smallest cost known denied.
        let cost = match st.map.get(&id) {
            Some(old) if old.until > now => cost.min(old.cost),
            _ => cost,
        };
        st.map.insert(
            id,
            Entry {
                until,
                cost,
                current,
                limit,
            },
        );
        self.len.store(st.map.len(), Ordering::Relaxed);
    }

    fn make_room(&self, st: &mut State, now: Instant) {
        st.since_sweep += 1;
        while st.map.len() >= self.cap {
            match st.map.front() {
                Some((_, e)) if e.until <= now => {
                    st.map.pop_front();
                }
                _ => break,
            }
        }
        if st.map.len() >= self.cap && st.since_sweep >= (self.cap / 8).max(1) {
            st.since_sweep = 0;
            st.map.retain(|_, e| e.until > now);
        }
        while st.map.len() >= self.cap {
            if st.map.pop_front().is_none() {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limit::Rate;

    fn rate(key: &str, cost: u32) -> OpSpec {
        OpSpec {
            op: Op::Rate {
                key: key.into(),
                rate: Rate {
                    emission: Duration::from_millis(10),
                    burst: 2,
                },
                cost,
            },
            enforce: true,
        }
    }

    fn denied(retry_ms: u64) -> Outcome {
        Outcome::Denied {
            current: 2,
            limit: 2,
            retry_after: Duration::from_millis(retry_ms),
        }
    }

    #[test]
    fn hits_until_retry_after_and_only_for_costs_at_least_denied() {
        let c = OverLimitCache::new(10);
        let t0 = Instant::now();
        assert!(c.lookup(&[rate("a", 1)], t0).is_none());
        c.insert(&rate("a", 2).op, &denied(500), t0);
        assert!(
            c.lookup(&[rate("a", 1)], t0).is_none(),
            "smaller cost may pass"
        );
        let hit = c.lookup(
            &[rate("b", 1), rate("a", 3)],
            t0 + Duration::from_millis(100),
        );
        let hit = hit.expect("cached");
        assert_eq!(hit[0], None);
        assert_eq!(hit[1], Some(denied(400)));
        // A shadow op on a cached key is reported but does not block.
        let mut shadow = rate("a", 2);
        shadow.enforce = false;
        assert!(c.lookup(&[shadow], t0).is_none());
        assert!(c
            .lookup(&[rate("a", 2)], t0 + Duration::from_millis(500))
            .is_none());
        assert_eq!(c.len(), 0, "expired entries are dropped on lookup");
    }

    #[test]
    fn stays_bounded_and_evicts_oldest() {
        let c = OverLimitCache::new(100);
        let t0 = Instant::now();
        for i in 0..1_000 {
            c.insert(&rate(&format!("k{i}"), 1).op, &denied(60_000), t0);
            assert!(c.len() <= 100);
        }
        assert!(c.lookup(&[rate("k999", 1)], t0).is_some());
        assert!(c.lookup(&[rate("k0", 1)], t0).is_none());
        let off = OverLimitCache::new(0);
        off.insert(&rate("a", 1).op, &denied(1_000), t0);
        assert_eq!(off.len(), 0);
    }
}
