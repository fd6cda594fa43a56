//! Distinct members per key over a sliding window: an exact set while small, a slotted
//! HyperLogLog ([`super::hll`]) beyond [`SMALL_MAX`] members.
//!
//! Time is cut into epochs of width `w = ⌈window / BUCKETS⌉`; epoch `e` covers
//! `[e·w, (e+1)·w)`. The count at `now` is over every epoch overlapping `[now - window, now]`,
//! so a member is remembered for at least `window` and at most `window + w`. That is at most
//! `BUCKETS + 1` epochs, kept in a ring of [`SLOTS`] slots indexed by `epoch % SLOTS`.
//!
//! The exact set stores one `u64` per member: the keyed member hash with its low 3 bits
//! replaced by the slot tag (0..7) of the last epoch it was seen in. Dropping 3 bits of a
//! 64-bit keyed hash merges two members with probability ~2^-61 per pair.

use std::hash::{Hash, Hasher};
use std::time::Duration;

use super::hll::Hll;
use super::nanos;

/// Buckets per window.
pub(super) const BUCKETS: u64 = 6;
/// Ring slots: the buckets plus the partly expired oldest one.
pub(super) const SLOTS: usize = BUCKETS as usize + 1;
/// Largest exact set; one more live member switches the key to the HLL.
pub(super) const SMALL_MAX: usize = 64;

const EMPTY: u64 = u64::MAX;
const TAG: u64 = 0b111;

/// The window arithmetic for one op at one instant.
#[derive(Debug, Clone, Copy)]
pub(super) struct Geometry {
    now: u64,
    window: u64,
    /// Epoch width in nanoseconds (≥ 1).
    w: u64,
    /// Current epoch.
    cur: u64,
    /// Oldest epoch overlapping the window.
    lo: u64,
}

impl Geometry {
    pub(super) fn new(window: Duration, now: u64) -> Self {
        let window = nanos(window);
        let w = window.div_ceil(BUCKETS).max(1);
        Self {
            now,
            window,
            w,
            cur: now / w,
            // The smallest e with (e+1)·w > now - window.
            lo: now.saturating_sub(window) / w,
        }
    }

    fn live(&self, epoch: u64) -> bool {
        epoch != EMPTY && epoch >= self.lo && epoch <= self.cur
    }

    /// Time from now until `epoch` stops overlapping the window.
    pub(super) fn until_expired(&self, epoch: u64) -> Duration {
        let end = epoch
            .saturating_add(1)
            .saturating_mul(self.w)
            .saturating_add(self.window);
        Duration::from_nanos(end.saturating_sub(self.now))
    }

    /// Time until a member recorded now is forgotten.
    pub(super) fn reset(&self) -> Duration {
        self.until_expired(self.cur)
    }
}

enum Repr {
    /// Tagged member hashes (see module docs); at most [`SMALL_MAX`], all live after a record.
    Small(Vec<u64>),
    Dense(Box<Hll>),
}

/// What a key's window says about one member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct View {
    pub present: bool,
    pub count: u64,
    /// The oldest live epoch, if any member is live.
    pub oldest: Option<u64>,
}

/// A record moved the key between representations (for the shard's HLL budget).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Change {
    None,
    BecameDense,
    LeftDense,
}

pub(super) struct DistinctSet {
    /// The epoch each slot holds (`EMPTY` if never used).
    epochs: [u64; SLOTS],
    /// When every slot is expired (the state is then equivalent to a fresh key).
    expires_at: u64,
    repr: Repr,
}

impl DistinctSet {
    pub(super) fn new() -> Self {
        Self {
            epochs: [EMPTY; SLOTS],
            expires_at: 0,
            repr: Repr::Small(Vec::new()),
        }
    }

    pub(super) fn is_fresh(&self, now: u64) -> bool {
        now >= self.expires_at
    }

    pub(super) fn is_dense(&self) -> bool {
        matches!(self.repr, Repr::Dense(_))
    }

    fn live_mask(&self, g: &Geometry) -> u8 {
        let mut mask = 0u8;
        for (s, &e) in self.epochs.iter().enumerate() {
            if g.live(e) {
                mask |= 1 << s;
            }
        }
        mask
    }

    fn oldest(&self, g: &Geometry) -> Option<u64> {
        self.epochs.iter().copied().filter(|&e| g.live(e)).min()
    }

    /// Whether `h` (a keyed member hash) is counted in the window, and the window's count.
    /// Takes `&mut` only to refresh the HLL's cached merge; the counted state is unchanged.
    pub(super) fn view(&mut self, h: u64, g: &Geometry) -> View {
        let live = self.live_mask(g);
        let oldest = self.oldest(g);
        match &mut self.repr {
            Repr::Small(v) => {
                let hc = h & !TAG;
                let mut count = 0u64;
                let mut present = false;
                for &e in v.iter() {
                    if live & (1 << (e & TAG)) != 0 {
                        count += 1;
                        present |= e & !TAG == hc;
                    }
                }
                View {
                    present,
                    count,
                    oldest,
                }
            }
            Repr::Dense(hll) => {
                hll.refresh(live, g.lo);
                View {
                    present: hll.contains(h & !TAG),
                    count: hll.estimate().round() as u64,
                    oldest,
                }
            }
        }
    }

    /// Record `h` as seen now.
    pub(super) fn record(&mut self, h: u64, g: &Geometry) -> Change {
        let mut change = Change::None;
        if self.is_fresh(g.now) {
            // Everything expired: start over small (frees an HLL).
            if self.is_dense() {
                change = Change::LeftDense;
            }
            *self = Self::new();
        }
        let slot = (g.cur % SLOTS as u64) as usize;
        if self.epochs[slot] != g.cur {
            // The slot held an epoch ≤ cur - SLOTS, which is expired: reuse it.
            match &mut self.repr {
                Repr::Small(v) => v.retain(|&e| (e & TAG) as usize != slot),
                Repr::Dense(hll) => hll.clear_slot(slot),
            }
            self.epochs[slot] = g.cur;
        }
        let live = self.live_mask(g);
        let hc = h & !TAG;
        let tagged = hc | slot as u64;
        match &mut self.repr {
            Repr::Small(v) => {
                if let Some(e) = v.iter_mut().find(|e| **e & !TAG == hc) {
                    *e = tagged;
                } else {
                    v.retain(|&e| live & (1 << (e & TAG)) != 0);
                    if v.len() < SMALL_MAX {
                        v.push(tagged);
                    } else {
                        let mut hll = Box::new(Hll::new());
                        hll.refresh(live, g.lo);
                        for &e in v.iter() {
                            hll.insert((e & TAG) as usize, e & !TAG);
                        }
                        hll.insert(slot, hc);
                        self.repr = Repr::Dense(hll);
                        change = Change::BecameDense;
                    }
                }
            }
            Repr::Dense(hll) => {
                hll.refresh(live, g.lo);
                hll.insert(slot, hc);
            }
        }
        self.expires_at = self.expires_at.max(
            g.cur
                .saturating_add(1)
                .saturating_mul(g.w)
                .saturating_add(g.window),
        );
        change
    }

    /// A digest of the counted state (not the HLL's cache), for snapshots.
    pub(super) fn digest(&self) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.epochs.hash(&mut h);
        self.expires_at.hash(&mut h);
        match &self.repr {
            Repr::Small(v) => v.hash(&mut h),
            Repr::Dense(hll) => hll.registers().hash(&mut h),
        }
        h.finish()
    }

    /// Heap bytes held beyond the map entry.
    pub(super) fn heap_bytes(&self) -> usize {
        match &self.repr {
            Repr::Small(v) => v.capacity() * 8,
            Repr::Dense(_) => Hll::HEAP_BYTES + std::mem::size_of::<Hll>(),
        }
    }
}
