//! SplitMix64: a small, fast, seedable generator. The engine samples with it, the trainer orders
//! data, draws dropout masks and initialises LoRA with it; the same seed gives the same draws.

use serde::{Deserialize, Serialize};

/// A small, fast, seedable generator (SplitMix64): data order, dropout masks and LoRA init.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// The increment of the state per draw.
    pub const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(Self::GAMMA);
        Self::mix(self.0)
    }

    /// The output function: the bits drawn when the state is `z`. A generator started from `s`
    /// draws `mix(s + k·GAMMA)` k-th (from 1), so any draw can be computed without the ones
    /// before it.
    pub fn mix(mut z: u64) -> u64 {
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A seeded permutation of 0..n (Fisher–Yates).
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut v: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
        v
    }
}
