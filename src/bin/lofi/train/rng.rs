//! The training tool's own random numbers (pixel positions, object order, augmentation): a
//! SplitMix64 stream whose whole state is one `u64`, so that a checkpoint records it exactly.
//!
//! Every random decision of a step is drawn from a stream derived from (seed, purpose, counter),
//! never from a stream carried across steps: a run resumed at step t draws exactly what the
//! uninterrupted run drew at step t.

/// Purposes, so that streams of different uses never coincide.
pub const STREAM_PIXELS: u64 = 0x5049_5845_4c53; // "PIXELS"
pub const STREAM_ORDER: u64 = 0x004f_5244_4552; // "ORDER"
pub const STREAM_NOISE: u64 = 0x004e_4f49_5345; // "NOISE"
pub const STREAM_AUGMENT: u64 = 0x4155_474d; // "AUGM"
pub const STREAM_EVAL: u64 = 0x4556_414c; // "EVAL"
pub const STREAM_DATA: u64 = 0x4441_5441; // "DATA"

/// SplitMix64 (Steele, Lea and Flood 2014).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rng {
    pub state: u64,
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng { state: mix(seed ^ 0x9e37_79b9_7f4a_7c15) }
    }

    /// The stream for `purpose` number `counter` of a run seeded with `seed`.
    pub fn derive(seed: u64, purpose: u64, counter: u64) -> Rng {
        Rng::new(mix(mix(seed).wrapping_add(purpose)).wrapping_add(mix(counter.wrapping_add(1))))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.state)
    }

    /// Uniform in [0, n) (multiply-shift; the bias is below 2^-40 for the sizes used here).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// A seed for libtorch's generator (non-negative i64).
    pub fn torch_seed(&mut self) -> i64 {
        (self.next_u64() >> 1) as i64
    }

    /// A uniformly random permutation of 0..n (Fisher-Yates).
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut p: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = self.below(i as u64 + 1) as usize;
            p.swap(i, j);
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a: Vec<u64> = (0..4).map(|_| Rng::derive(1, STREAM_PIXELS, 7).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(Rng::derive(1, STREAM_PIXELS, 7).next_u64(), Rng::derive(1, STREAM_PIXELS, 8).next_u64());
        assert_ne!(Rng::derive(1, STREAM_PIXELS, 7).next_u64(), Rng::derive(1, STREAM_NOISE, 7).next_u64());
        let mut r = Rng::new(3);
        let mut p = r.permutation(10);
        p.sort();
        assert_eq!(p, (0..10).collect::<Vec<_>>());
        assert!((0..1000).all(|_| r.below(5) < 5));
    }
}
