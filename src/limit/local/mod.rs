//! The embedded counter store: all limit state in this process's memory, bounded.
//!
//! It sits behind [`CounterStore`] like the Redis store: the policy hands it every op of one
//! request, and [`LocalStore::evaluate_now`] answers them in one atomic step. All or nothing:
//! the shards holding the request's keys are locked in ascending index order (so two requests
//! can never deadlock), every op's [`Outcome`] is computed without changing anything, and
//! only if no enforcing op is denied is anything charged — rate ops that were allowed advance
//! their TAT, distinct ops record their member (also when a non-enforcing one was denied: the
//! request proceeds, so the observation is real), concurrency ops take a slot that the
//! returned [`Lease`] gives back when dropped. Ops that repeat a key within one request see
//! the earlier ops' charges.
//!
//! # Kinds
//! - **Rate**: GCRA, one TAT per (key, rate) — see `local/gcra.rs`. Two rates on one key
//!   (say 10/minute and 1,000/day) are two independent states.
//! - **Concurrency**: requests in flight per key; allowed while `in_flight < max`.
//! - **Distinct**: distinct members per (key, window) over a sliding window of 6 buckets —
//!   an exact set up to 64 members, then a slotted HyperLogLog (precision 11, ≈ 2.3 %
//!   standard error) — see `local/distinct.rs` and `local/hll.rs`. A member already counted
//!   is always allowed; with the HLL, "already counted" means adding it would change no
//!   register of the merged live buckets. That rule leaks at the limit: a genuinely new
//!   member changes no register with probability ≈ 1 − 0.72·m/n for counts n well above
//!   m = 2,048 (≈ 70 % at n = 5,000, ≈ 85 % at n = 10,000), and those pass even when the key
//!   is at its limit. The estimate never passes `max` (a member that would raise it is
//!   denied), but the true count can. Limits up to 64 are exact.
//!
//! # Why not a crate
//! - governor (GCRA) was considered and rejected: its keyed limiters check *and* charge in
//!   one call (a check-only API is requested in boinkor-net/governor#15 and unmerged in #211),
//!   so the ten limiters of one request cannot all be checked first and then charged all or
//!   nothing; and each quota is its own limiter with its own map and bound. GCRA itself is a
//!   dozen lines, so it is written here.
//! - HLL crates (`hyperloglog`, `hyperloglogplus`): insert, count and merge only — no "would
//!   adding this member change the merged registers" (the present-member rule) and no time
//!   slots merged incrementally, so each request would pay a full merge. The HLL here is
//!   ~100 lines.
//!
//! # Keys
//! Keys are never stored: each op's key (with its kind and parameters) becomes a 64-bit
//! SipHash-1-3 id under a per-process random key, and members are re-hashed the same way. An
//! attacker cannot choose keys that collide, land in one shard, or skew the HLL; two keys
//! merge only by a 64-bit collision (~n/2^64 per new key, n resident ids). The shard is
//! picked from bits 32.. of the id; the maps hash ids with a pass-through hasher.
//!
//! # Bounded memory (copy for docs/policy.md)
//! Each of the three maps (rate, concurrency, distinct) holds at most
//! [`LocalBounds::max_keys`] entries, split evenly over min(16, max_keys) shards. When a shard's map is
//! full and a new key arrives:
//! 1. entries equivalent to a fresh key are dropped first — rate keys whose TAT ≤ now,
//!    distinct keys whose buckets have all expired — by a sweep of the shard, run at most once
//!    per `cap/8` insertions so a key flood costs O(1) amortized per key;
//! 2. otherwise (or between sweeps) the least recently used entry is evicted (an LRU index,
//!    hashlink's `LruCache`). Reads and charges both count as use, so a key an attacker is
//!    hammering stays resident; to evict a victim's key an attacker must bring in a whole
//!    shard's worth of new keys between two of the victim's requests;
//! 3. concurrency entries exist only while slots are held and are never evicted: a new
//!    concurrency key on a full map is Denied (`current: 0`, `retry_after: 1s`), never grown.
//!
//! Evicting forgets: an evicted rate or distinct key starts fresh (which favours the client),
//! which is why eviction is LRU-last-resort. At most 1/32 of each shard's distinct keys may be
//! HyperLogLogs at once; a key switching over beyond that evicts the least recently used other
//! HLL key (a fresh one first). Growing a key to an HLL takes 65 distinct members, so flushing
//! HLL keys costs an attacker about as many requests as flushing the whole map.
//!
//! Bytes per entry (64-bit, glibc; hash tables at 50–87 % load):
//! - rate key: 32 B node (48 B allocated) + ≤ 21 B table ≈ **≤ 70 B**;
//! - concurrency key: 16 B slot + ctrl byte, ≤ **40 B**;
//! - distinct key, exact: 112 B node (128 B allocated) + ≤ 21 B table + ≤ 64 × 8 B members
//!   (528 B allocated) ≈ **≤ 680 B**;
//! - distinct key, HLL: + 7 × 2,048 B slot registers + 2,048 B merged view + 64 B ≈
//!   **+ 16.5 KiB** (its member list is freed).
//!
//! Worst case for `max_keys = N`: 70·N + 40·N + 680·N + (N/32)·16.5 KiB ≈ **1.3 KB × N**,
//! about 130 MB at the default N = 100,000, reached only when every distinct key holds 64
//! members in its window and 1/32 of them hold more. A flood of new rate keys alone stops at
//! ≈ 7 MB. Memory is allocated as keys arrive, not up front, and freed nodes are reused.
//!
//! # Locks
//! Each shard is a `std::sync::Mutex`. A poisoned lock (a panic while it was held; nothing
//! here panics by design) is recovered with `PoisonError::into_inner`: the maps stay
//! structurally valid, the worst outcome is one request half charged, and refusing every later
//! request on that shard would turn one bug into an outage of the limiter.

mod distinct;
mod gcra;
mod hll;
mod shard;
#[cfg(test)]
mod tests;

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use siphasher::sip::SipHasher13;
use smallvec::SmallVec;

use super::{
    BoxFuture, Clock, CounterStore, Evaluation, Lease, Op, OpSpec, OpsMemo, Outcome, StoreError,
};
use distinct::{Geometry, View};
use shard::Shard;

/// Shards at most (a `u32` lock mask and a fixed guard array).
const MAX_SHARDS: usize = 16;
/// At most `cap / DENSE_SHARE` distinct keys per shard are HyperLogLogs.
const DENSE_SHARE: usize = 32;
/// Ops per request handled without a heap scratch buffer.
const INLINE_OPS: usize = 16;
/// The retry hint for concurrency denials (slots free when responses end, unknown when).
const CONCURRENCY_RETRY: Duration = Duration::from_secs(1);

/// Limits on the store's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalBounds {
    /// Entries per map kind (rate, concurrency, distinct); 0 is treated as 1.
    pub max_keys: usize,
}

impl Default for LocalBounds {
    fn default() -> Self {
        Self { max_keys: 100_000 }
    }
}

/// The in-memory [`CounterStore`] (see the module docs).
pub struct LocalStore {
    clock: Arc<dyn Clock>,
    inner: Arc<Inner>,
}

struct Inner {
    /// This store among every store of the process, for [`OpsMemo`].
    instance: u64,
    shards: Box<[Mutex<Shard>]>,
    /// SipHash key for ids and members.
    k0: u64,
    k1: u64,
}

#[derive(Debug, Clone, Copy)]
enum Plan {
    Nothing,
    SetTat(u64),
    TakeSlot,
    Record { new: bool },
}

#[derive(Debug, Clone, Copy)]
struct Step {
    id: u64,
    /// Keyed member hash (distinct ops only).
    member: u64,
    shard: usize,
    plan: Plan,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn lock(m: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    // Poisoning is recovered on purpose: see "Locks" in the module docs.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Inner {
    fn shard_of(&self, id: u64) -> usize {
        ((id >> 32) % self.shards.len() as u64) as usize
    }

    fn step(&self, op: &Op) -> Step {
        let mut h = SipHasher13::new_with_keys(self.k0, self.k1);
        let mut member = 0;
        // The key is followed by fixed-width parameters only, so (key, params) is unambiguous.
        match op {
            Op::Rate { key, rate, .. } => {
                h.write_u8(0);
                h.write(key.as_bytes());
                h.write_u64(nanos(rate.emission));
                h.write_u32(rate.burst);
            }
            Op::Concurrency { key, .. } => {
                h.write_u8(1);
                h.write(key.as_bytes());
            }
            Op::Distinct {
                key,
                member: m,
                window,
                ..
            } => {
                h.write_u8(2);
                h.write(key.as_bytes());
                h.write_u64(nanos(*window));
                let mut mh = SipHasher13::new_with_keys(self.k0, self.k1);
                mh.write_u8(3);
                mh.write_u64(*m);
                member = mh.finish();
            }
        }
        self.step_of(h.finish(), member)
    }

    fn step_of(&self, id: u64, member: u64) -> Step {
        Step {
            id,
            member,
            shard: self.shard_of(id),
            plan: Plan::Nothing,
        }
    }
}

impl LocalStore {
    /// A store with a random per-process hash key.
    pub fn new(clock: Arc<dyn Clock>, bounds: LocalBounds) -> Self {
        // std's RandomState is seeded from the OS; two of its outputs make a SipHash key.
        let rs = std::collections::hash_map::RandomState::new();
        let seed = rs.hash_one(0x706f_7274_6375_6c6c_u64);
        let seed2 = rs.hash_one(seed);
        Self::with_keys(clock, bounds, seed, seed2)
    }

    /// A store with a fixed hash key, for reproducible tests and benches. Never use it in
    /// production: a known key lets clients pick colliding keys and skew the HLL.
    #[doc(hidden)]
    pub fn with_seed(clock: Arc<dyn Clock>, bounds: LocalBounds, seed: u64) -> Self {
        Self::with_keys(clock, bounds, seed, seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    fn with_keys(clock: Arc<dyn Clock>, bounds: LocalBounds, k0: u64, k1: u64) -> Self {
        let max_keys = bounds.max_keys.max(1);
        let n = max_keys.min(MAX_SHARDS);
        // Split max_keys exactly: the first `max_keys % n` shards take one more. Each gets ≥ 1.
        let shards = (0..n)
            .map(|i| Mutex::new(Shard::new(max_keys / n + usize::from(i < max_keys % n))))
            .collect();
        static INSTANCES: AtomicU64 = AtomicU64::new(0);
        Self {
            clock,
            inner: Arc::new(Inner {
                instance: INSTANCES.fetch_add(1, Ordering::Relaxed),
                shards,
                k0,
                k1,
            }),
        }
    }

    /// Evaluate one request's ops at the clock's current time (see the module docs).
    pub fn evaluate_now(&self, ops: &[OpSpec]) -> Evaluation {
        self.evaluate_memo_now(ops, None)
    }

    /// [`evaluate_now`](Self::evaluate_now), taking each op's id and member from `memo` when
    /// this store filled it, and filling it otherwise.
    pub fn evaluate_memo_now(&self, ops: &[OpSpec], memo: Option<&OpsMemo>) -> Evaluation {
        let inner = &*self.inner;
        let remembered = memo
            .and_then(|m| m.get(inner.instance))
            .filter(|ids| ids.len() == ops.len());
        let mut steps: SmallVec<[Step; INLINE_OPS]> = match remembered {
            Some(ids) => ids.iter().map(|&(id, m)| inner.step_of(id, m)).collect(),
            None => {
                let steps: SmallVec<[Step; INLINE_OPS]> =
                    ops.iter().map(|spec| inner.step(&spec.op)).collect();
                if let Some(m) = memo {
                    m.fill(
                        inner.instance,
                        steps.iter().map(|s| (s.id, s.member)).collect(),
                    );
                }
                steps
            }
        };

        let mut mask = 0u32;
        for s in &steps {
            mask |= 1 << s.shard;
        }
        let mut guards: [Option<MutexGuard<'_, Shard>>; MAX_SHARDS] = Default::default();
        for (i, shard) in inner.shards.iter().enumerate() {
            if mask & (1 << i) != 0 {
                guards[i] = Some(lock(shard));
            }
        }
        // Read the clock under the locks, so each shard sees time move forward only.
        let now = nanos(self.clock.now());

        // Check: outcomes only, nothing charged.
        let mut outcomes = Vec::with_capacity(ops.len());
        let mut blocked = false;
        let mut new_conc = [0usize; MAX_SHARDS];
        for (i, spec) in ops.iter().enumerate() {
            let (earlier, rest) = steps.split_at_mut(i);
            let Some(step) = rest.first_mut() else {
                break; // unreachable: one step per op
            };
            let outcome = match guards[step.shard].as_deref_mut() {
                Some(shard) => check(shard, spec, step, earlier, &mut new_conc, now),
                // unreachable: every shard in `mask` was locked above. Fail closed.
                None => Outcome::Denied {
                    current: 0,
                    limit: 0,
                    retry_after: CONCURRENCY_RETRY,
                },
            };
            blocked |= spec.enforce && outcome.is_denied();
            outcomes.push(outcome);
        }
        if blocked {
            return Evaluation {
                outcomes,
                blocked,
                lease: Lease::none(),
            };
        }

        // Charge.
        let mut held: SmallVec<[u64; 4]> = SmallVec::new();
        for (step, spec) in steps.iter().zip(ops) {
            let Some(shard) = guards[step.shard].as_deref_mut() else {
                continue;
            };
            match (step.plan, &spec.op) {
                (Plan::SetTat(tat), _) => shard.set_tat(step.id, tat, now),
                (Plan::TakeSlot, _) => {
                    let n = shard.conc.entry(step.id).or_insert(0);
                    *n = n.saturating_add(1);
                    held.push(step.id);
                }
                (Plan::Record { .. }, Op::Distinct { window, .. }) => {
                    let g = Geometry::new(*window, now);
                    let change = shard.distinct_entry(step.id, now).record(step.member, &g);
                    shard.note_change(step.id, change, now);
                }
                _ => {}
            }
        }
        drop(guards);

        let lease = if held.is_empty() {
            Lease::none()
        } else {
            let weak: Weak<Inner> = Arc::downgrade(&self.inner);
            Lease::new(move || {
                if let Some(inner) = weak.upgrade() {
                    for &id in &held {
                        lock(&inner.shards[inner.shard_of(id)]).release(id);
                    }
                }
            })
        };
        Evaluation {
            outcomes,
            blocked,
            lease,
        }
    }

    /// Every resident entry as `(kind, id, state digest)`, sorted (kind 0 rate, 1 concurrency,
    /// 2 distinct). For tests that check a call changed nothing.
    #[doc(hidden)]
    pub fn snapshot(&self) -> Vec<(u8, u64, u64)> {
        let mut out = Vec::new();
        for shard in self.inner.shards.iter() {
            let shard = lock(shard);
            out.extend(shard.rate.iter().map(|(&id, &tat)| (0, id, tat)));
            out.extend(shard.conc.iter().map(|(&id, &n)| (1, id, u64::from(n))));
            out.extend(shard.distinct.iter().map(|(&id, s)| (2, id, s.digest())));
        }
        out.sort_unstable();
        out
    }

    /// Heap bytes held by per-key values beyond the map nodes (member lists and HLLs).
    #[doc(hidden)]
    pub fn value_heap_bytes(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|s| {
                lock(s)
                    .distinct
                    .iter()
                    .map(|(_, d)| d.heap_bytes())
                    .sum::<usize>()
            })
            .sum()
    }
}

/// Decide one op against the locked shard and the earlier ops of the same request; record
/// in `step.plan` what to charge if the request goes ahead.
fn check(
    shard: &mut Shard,
    spec: &OpSpec,
    step: &mut Step,
    earlier: &[Step],
    new_conc: &mut [usize; MAX_SHARDS],
    now: u64,
) -> Outcome {
    let same = |e: &&Step| e.id == step.id;
    match &spec.op {
        Op::Rate { rate, cost, .. } => {
            let pending = earlier
                .iter()
                .filter(same)
                .rev()
                .find_map(|e| match e.plan {
                    Plan::SetTat(t) => Some(t),
                    _ => None,
                });
            let tat = pending.or_else(|| shard.rate.get(&step.id).copied());
            let d = gcra::decide(tat, now, *rate, *cost);
            if let Some(t) = d.new_tat {
                step.plan = Plan::SetTat(t);
            }
            d.outcome
        }
        Op::Concurrency { max, .. } => {
            let max = u64::from(*max);
            let pending = earlier
                .iter()
                .filter(same)
                .filter(|e| matches!(e.plan, Plan::TakeSlot))
                .count() as u64;
            let held = shard.conc.get(&step.id).copied();
            if held.is_none() && pending == 0 {
                if shard.conc.len() + new_conc[step.shard] >= shard.cap {
                    // Full of held slots: refuse the new key rather than grow.
                    return Outcome::Denied {
                        current: 0,
                        limit: max,
                        retry_after: CONCURRENCY_RETRY,
                    };
                }
                new_conc[step.shard] += 1;
            }
            step.plan = Plan::TakeSlot;
            let in_flight = u64::from(held.unwrap_or(0)) + pending;
            if in_flight < max {
                Outcome::Allowed {
                    remaining: max - in_flight - 1,
                    reset: Duration::ZERO,
                }
            } else {
                Outcome::Denied {
                    current: in_flight,
                    limit: max,
                    retry_after: CONCURRENCY_RETRY,
                }
            }
        }
        Op::Distinct { max, window, .. } => {
            let g = Geometry::new(*window, now);
            let mut view = match shard.distinct.get_mut(&step.id) {
                Some(set) => set.view(step.member, &g),
                None => View {
                    present: false,
                    count: 0,
                    oldest: None,
                },
            };
            for e in earlier.iter().filter(same) {
                if let Plan::Record { new: true } = e.plan {
                    view.count += 1;
                    view.present |= e.member & !7 == step.member & !7;
                }
            }
            let max = u64::from(*max);
            step.plan = Plan::Record { new: !view.present };
            let after = view.count + u64::from(!view.present);
            if !spec.enforce {
                // Flag and shadow layers record every observation (the request goes ahead)
                // and mark every request while the key is over its limit: "this fingerprint
                // has 3,000 accounts today" holds for all of them, and it does not depend on
                // the HyperLogLog telling members apart (see the module docs).
                return if after > max {
                    Outcome::Denied {
                        current: after,
                        limit: max,
                        retry_after: view.oldest.map_or(g.reset(), |e| g.until_expired(e)),
                    }
                } else {
                    Outcome::Allowed {
                        remaining: max - after,
                        reset: g.reset(),
                    }
                };
            }
            if view.present {
                Outcome::Allowed {
                    remaining: max.saturating_sub(view.count),
                    reset: g.reset(),
                }
            } else if view.count < max {
                Outcome::Allowed {
                    remaining: max - view.count - 1,
                    reset: g.reset(),
                }
            } else {
                Outcome::Denied {
                    current: view.count,
                    limit: max,
                    retry_after: view.oldest.map_or(g.reset(), |e| g.until_expired(e)),
                }
            }
        }
    }
}

impl CounterStore for LocalStore {
    fn evaluate<'a>(&'a self, ops: &'a [OpSpec]) -> BoxFuture<'a, Result<Evaluation, StoreError>> {
        Box::pin(std::future::ready(Ok(self.evaluate_now(ops))))
    }

    fn evaluate_ready(&self, ops: &[OpSpec], memo: &OpsMemo) -> Option<Evaluation> {
        Some(self.evaluate_memo_now(ops, Some(memo)))
    }

    fn resident_keys(&self) -> usize {
        self.inner.shards.iter().map(|s| lock(s).len()).sum()
    }
}

impl std::fmt::Debug for LocalStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalStore")
            .field("shards", &self.inner.shards.len())
            .finish_non_exhaustive()
    }
}
