//! One shard of the store: the three bounded maps and their eviction rule.
//!
//! Keys are 64-bit keyed hashes (see the store's module docs), so the maps hash them with a
//! pass-through hasher (`crate::idhash`): the ids are already uniformly random to anyone without the key.

use std::collections::HashMap;

use hashlink::linked_hash_map::Entry;
use hashlink::LruCache;

use super::distinct::{Change, DistinctSet};
use crate::idhash::IdBuild;

// why: hashlink's LruCache is a hash map threaded with a recency list — O(1) get, insert and
// pop-LRU, plus `retain` for the fresh-first sweep (the `lru` crate has no retain) — and it
// reuses freed nodes, so a full shard under a key flood stops allocating. Well kept (djc,
// a rustls maintainer; used by rusqlite). A hand-rolled index would be ~150 lines of slab
// and links to get the same.
pub(super) struct Shard {
    /// Rate key id → TAT (nanoseconds on the store's clock).
    pub rate: LruCache<u64, u64, IdBuild>,
    pub distinct: LruCache<u64, DistinctSet, IdBuild>,
    /// Concurrency key id → requests in flight (entries exist only while > 0).
    pub conc: HashMap<u64, u32, IdBuild>,
    /// Entries per map.
    pub cap: usize,
    /// Distinct keys allowed in the HLL representation at once, and how many are.
    dense_cap: usize,
    dense: usize,
    /// Insertions since the last fresh-first sweep of each LRU map.
    rate_since_sweep: usize,
    distinct_since_sweep: usize,
}

impl Shard {
    pub(super) fn new(cap: usize) -> Self {
        let cap = cap.max(1);
        Self {
            rate: LruCache::with_hasher(cap, IdBuild::default()),
            distinct: LruCache::with_hasher(cap, IdBuild::default()),
            conc: HashMap::default(),
            cap,
            dense_cap: (cap / super::DENSE_SHARE).max(1),
            dense: 0,
            rate_since_sweep: usize::MAX,
            distinct_since_sweep: usize::MAX,
        }
    }

    /// A full shard sweeps out fresh entries at most once per `sweep_every` insertions, so a
    /// flood of new keys costs O(1) amortized per key; between sweeps the LRU entry goes.
    fn sweep_every(&self) -> usize {
        (self.cap / 8).max(1)
    }

    /// Store a rate key's TAT, evicting if the map is full.
    pub(super) fn set_tat(&mut self, id: u64, tat: u64, now: u64) {
        if let Some(slot) = self.rate.get_mut(&id) {
            *slot = tat;
            return;
        }
        if self.rate.len() >= self.cap {
            if self.rate_since_sweep >= self.sweep_every() {
                self.rate.retain(|_, t| *t > now);
                self.rate_since_sweep = 0;
            }
            if self.rate.len() >= self.cap {
                self.rate.remove_lru();
            }
        }
        self.rate_since_sweep = self.rate_since_sweep.saturating_add(1);
        self.rate.insert(id, tat);
    }

    /// The distinct set of `id`, created (with eviction if full) if absent.
    pub(super) fn distinct_entry(&mut self, id: u64, now: u64) -> &mut DistinctSet {
        if !self.distinct.contains_key(&id) && self.distinct.len() >= self.cap {
            if self.distinct_since_sweep >= self.sweep_every() {
                let mut dense_dropped = 0;
                self.distinct.retain(|_, set| {
                    let keep = !set.is_fresh(now);
                    if !keep && set.is_dense() {
                        dense_dropped += 1;
                    }
                    keep
                });
                self.dense = self.dense.saturating_sub(dense_dropped);
                self.distinct_since_sweep = 0;
            }
            if self.distinct.len() >= self.cap {
                if let Some((_, set)) = self.distinct.remove_lru() {
                    if set.is_dense() {
                        self.dense = self.dense.saturating_sub(1);
                    }
                }
            }
            self.distinct_since_sweep = self.distinct_since_sweep.saturating_add(1);
        }
        match self.distinct.entry(id) {
            Entry::Occupied(mut o) => {
                o.to_back();
                o.into_mut()
            }
            Entry::Vacant(v) => v.insert(DistinctSet::new()),
        }
    }

    /// Account for a key that changed representation; if too many keys are HLLs, drop the
    /// least recently used other one (a fresh one first).
    pub(super) fn note_change(&mut self, id: u64, change: Change, now: u64) {
        match change {
            Change::None => {}
            Change::LeftDense => self.dense = self.dense.saturating_sub(1),
            Change::BecameDense => {
                self.dense += 1;
                if self.dense > self.dense_cap {
                    let dense_other = |k: &u64, s: &DistinctSet| *k != id && s.is_dense();
                    let victim = self
                        .distinct
                        .iter()
                        .find(|(k, s)| dense_other(k, s) && s.is_fresh(now))
                        .or_else(|| self.distinct.iter().find(|(k, s)| dense_other(k, s)))
                        .map(|(k, _)| *k);
                    if let Some(k) = victim {
                        self.distinct.remove(&k);
                        self.dense = self.dense.saturating_sub(1);
                    }
                }
            }
        }
    }

    /// Release one concurrency slot.
    pub(super) fn release(&mut self, id: u64) {
        if let Some(n) = self.conc.get_mut(&id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.conc.remove(&id);
            }
        }
    }

    pub(super) fn len(&self) -> usize {
        self.rate.len() + self.distinct.len() + self.conc.len()
    }
}
