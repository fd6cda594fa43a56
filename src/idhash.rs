//! A hasher for integer ids that need no hashing of their own: the local store's keyed 64-bit
//! hashes (passed through: already uniformly random to anyone without the key) and HTTP/2
//! stream ids (small odd numbers: multiplied so that the high bits, from which `hashbrown`
//! takes its control bytes, differ too).

use std::hash::{BuildHasherDefault, Hasher};

/// See the module docs.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` and `write_u32` are used for ids; fold anything else so the hasher
        // stays total.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// `BuildHasher` for [`IdHasher`].
pub(crate) type IdBuild = BuildHasherDefault<IdHasher>;
