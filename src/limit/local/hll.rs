//! A small HyperLogLog split into time slots, for the distinct-count layers.
//!
//! Registers are `u8`, precision [`P`] = 11 (m = 2048 registers, standard error
//! 1.04/√m ≈ 2.3 %). Each of the [`SLOTS`] time slots of a key has its own registers; the
//! sliding-window view is the register-wise max over the live slots (HLL sketches merge by
//! max), cached with its estimator sum so that adding a member is O(1) and the O(SLOTS·m)
//! merge runs at most once per slot width per key.
//!
//! Estimator: the bias-corrected raw estimate α_m·m²/Σ2^-M[j] with linear counting
//! m·ln(m/V) when that estimate is ≤ 2.5·m and some register V is zero (Flajolet, Fusy,
//! Gandouet, Meunier 2007, "HyperLogLog: the analysis of a near-optimal cardinality estimation
//! algorithm"). With a 64-bit hash the large-range correction is dropped (Heule, Nunkesser,
//! Hall 2013, "HyperLogLog in Practice"). Heule's empirical bias tables are not used: they
//! are ~200 numbers per precision and fix a bias of a few percent only between ~2.5·m and 5·m.
//!
//! why written here: HLL crates (`hyperloglog`, `hyperloglogplus`) offer insert,
//! merge and count, but not "would adding this member change the merged registers" (the
//! present-member rule), nor time slots merged incrementally; wrapping one would cost a full
//! merge per request.

use super::distinct::SLOTS;

/// Precision: the register index takes the top `P` bits of the member hash.
pub(super) const P: u32 = 11;
/// Registers per slot.
pub(super) const M: usize = 1 << P;
/// Hash bits below the index that feed ρ: the low 3 bits carry the slot tag in the
/// exact-set representation (see `distinct`), so they are left out here.
const RHO_BITS: u32 = 64 - P - 3;

/// The registers of every slot plus the cached merge of the live ones.
pub(super) struct Hll {
    /// `SLOTS * M` registers, slot-major.
    regs: Box<[u8]>,
    /// Register-wise max over the live slots, valid for `merged_lo`.
    merged: Box<[u8]>,
    /// The oldest live epoch `merged` was computed for (`u64::MAX`: not computed yet).
    merged_lo: u64,
    /// Σ 2^(64 - merged[j]) in fixed point (exact; fits: 2^11 terms of at most 2^64).
    z: u128,
    /// Registers of `merged` still at zero (for linear counting).
    zeros: u32,
}

/// Register index and ρ (position of the first 1 bit, 1-based) of a member hash.
fn locate(h: u64) -> (usize, u8) {
    // `h >> (64 - P)` < 2^P = M, so the index is in range.
    let j = (h >> (64 - P)) as usize;
    let x = (h >> 3) & ((1u64 << RHO_BITS) - 1);
    // x == 0 gives 64 leading zeros, so ρ = RHO_BITS + 1, the usual saturation.
    let rho = x.leading_zeros() - (64 - RHO_BITS) + 1;
    (j, rho as u8)
}

fn term(r: u8) -> u128 {
    1u128 << (64 - u32::from(r))
}

impl Hll {
    pub(super) fn new() -> Self {
        Self {
            regs: vec![0u8; SLOTS * M].into_boxed_slice(),
            merged: vec![0u8; M].into_boxed_slice(),
            merged_lo: u64::MAX,
            z: term(0) * M as u128,
            zeros: M as u32,
        }
    }

    /// Zero one slot's registers (it is being reused for a new epoch; it was not live).
    pub(super) fn clear_slot(&mut self, slot: usize) {
        self.regs[slot * M..(slot + 1) * M].fill(0);
    }

    /// Recompute the merged view if the window's oldest live epoch moved. `live` is a bit
    /// mask of the live slots. The merge only changes when slots expire (lo moves): a slot
    /// that becomes live starts empty, and additions update the merge directly.
    pub(super) fn refresh(&mut self, live: u8, lo: u64) {
        if self.merged_lo == lo {
            return;
        }
        self.merged.fill(0);
        for s in 0..SLOTS {
            if live & (1 << s) != 0 {
                let regs = &self.regs[s * M..(s + 1) * M];
                for (m, &r) in self.merged.iter_mut().zip(regs) {
                    *m = (*m).max(r);
                }
            }
        }
        self.z = self.merged.iter().map(|&r| term(r)).sum();
        self.zeros = self.merged.iter().filter(|&&r| r == 0).count() as u32;
        self.merged_lo = lo;
    }

    /// Whether adding `h` would leave every merged register unchanged (the HLL meaning of
    /// "already counted"). Call after [`Hll::refresh`].
    pub(super) fn contains(&self, h: u64) -> bool {
        let (j, rho) = locate(h);
        self.merged[j] >= rho
    }

    /// Add `h` to `slot` (which must be live) and to the merged view. Call after
    /// [`Hll::refresh`].
    pub(super) fn insert(&mut self, slot: usize, h: u64) {
        let (j, rho) = locate(h);
        let reg = &mut self.regs[slot * M + j];
        if rho > *reg {
            *reg = rho;
        }
        let merged = &mut self.merged[j];
        if rho > *merged {
            self.z = self.z - term(*merged) + term(rho);
            if *merged == 0 {
                self.zeros -= 1;
            }
            *merged = rho;
        }
    }

    /// The cardinality estimate of the merged view.
    pub(super) fn estimate(&self) -> f64 {
        let m = M as f64;
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        let z = self.z as f64 / 18_446_744_073_709_551_616.0; // 2^64
        let raw = alpha * m * m / z;
        if raw <= 2.5 * m && self.zeros > 0 {
            m * (m / f64::from(self.zeros)).ln()
        } else {
            raw
        }
    }

    /// The slot registers, for snapshots.
    pub(super) fn registers(&self) -> &[u8] {
        &self.regs
    }

    /// Heap bytes held.
    pub(super) const HEAP_BYTES: usize = (SLOTS + 1) * M;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rho_and_index() {
        assert_eq!(locate(0), (0, (RHO_BITS + 1) as u8));
        assert_eq!(locate(u64::MAX), (M - 1, 1));
        // Top bit of the ρ field set → ρ = 1; next bit → 2.
        let top = 1u64 << (63 - P);
        assert_eq!(locate(top).1, 1);
        assert_eq!(locate(top >> 1).1, 2);
    }

    #[test]
    fn empty_estimates_zero() {
        let mut h = Hll::new();
        h.refresh(0, 0);
        assert_eq!(h.estimate(), 0.0);
    }
}
