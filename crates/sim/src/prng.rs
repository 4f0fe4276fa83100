//! The simulator's only source of randomness: xoshiro256** seeded through splitmix64.
//!
//! Our own generator, so a seed means the same run on every machine and with every version of
//! every dependency. Each concern (network, disk, workload, faults) gets its own stream, forked
//! from the seed with a label, so changing how one of them draws numbers does not reshuffle the
//! others.

/// splitmix64: turns any u64 (a seed, a counter) into a well-mixed u64.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A deterministic pseudo-random number generator (xoshiro256**).
#[derive(Clone, Debug)]
pub struct Prng {
    state: [u64; 4],
}

impl Prng {
    pub fn new(seed: u64) -> Prng {
        let mut mix = seed;
        let state = [
            splitmix64(&mut mix),
            splitmix64(&mut mix),
            splitmix64(&mut mix),
            splitmix64(&mut mix),
        ];
        // splitmix64 never yields four zeros in a row, the one state xoshiro cannot leave.
        assert!(
            state.iter().any(|word| *word != 0),
            "xoshiro state must not be all zero"
        );
        Prng { state }
    }

    /// An independent stream for one concern, derived from `seed` and a fixed `label`.
    pub fn stream(seed: u64, label: &str) -> Prng {
        let mut mixed = seed;
        for byte in label.bytes() {
            mixed = (mixed ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01B3);
        }
        Prng::new(splitmix64(&mut mixed))
    }

    pub fn next_u64(&mut self) -> u64 {
        let result = self.state[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let shifted = self.state[1] << 17;
        self.state[2] ^= self.state[0];
        self.state[3] ^= self.state[1];
        self.state[1] ^= self.state[2];
        self.state[0] ^= self.state[3];
        self.state[2] ^= shifted;
        self.state[3] = self.state[3].rotate_left(45);
        result
    }

    /// Uniform in `[0, bound)`; `bound` must be positive. (Lemire's multiply-shift; the bias is
    /// below 2^-32 for the small bounds the simulator uses.)
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0, "Prng::below needs a positive bound");
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }

    /// Uniform in `[low, high]`.
    pub fn range_inclusive(&mut self, low: u64, high: u64) -> u64 {
        assert!(low <= high, "empty range {low}..={high}");
        if high - low == u64::MAX {
            return self.next_u64();
        }
        low + self.below(high - low + 1)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// True with probability `parts_per_million / 1_000_000`.
    pub fn chance_ppm(&mut self, parts_per_million: u32) -> bool {
        self.below(1_000_000) < u64::from(parts_per_million)
    }

    /// True with probability `percent / 100`.
    pub fn chance_percent(&mut self, percent: u32) -> bool {
        self.below(100) < u64::from(percent)
    }

    /// A uniformly chosen element; `items` must not be empty.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        assert!(!items.is_empty(), "Prng::pick from an empty slice");
        &items[self.below(items.len() as u64) as usize]
    }

    /// Shuffles `items` in place (Fisher–Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for last in (1..items.len()).rev() {
            let other = self.below(last as u64 + 1) as usize;
            items.swap(last, other);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence() {
        let mut a = Prng::new(42);
        let mut b = Prng::new(42);
        for _ in 0..1000 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
    }

    #[test]
    fn streams_differ_by_label() {
        let mut a = Prng::stream(7, "network");
        let mut b = Prng::stream(7, "disk");
        let same = (0..64).filter(|_| a.next_u64() == b.next_u64()).count();
        assert!(same < 2);
    }

    #[test]
    fn below_stays_in_bounds_and_covers_them() {
        let mut prng = Prng::new(1);
        let mut seen = [0u32; 7];
        for _ in 0..7000 {
            let value = prng.below(7);
            assert!(value < 7);
            seen[value as usize] += 1;
        }
        assert!(seen.iter().all(|count| *count > 800), "{seen:?}");
    }

    #[test]
    fn range_inclusive_hits_both_ends() {
        let mut prng = Prng::new(3);
        let values: Vec<u64> = (0..1000).map(|_| prng.range_inclusive(5, 8)).collect();
        assert!(values.iter().all(|v| (5..=8).contains(v)));
        assert!(values.contains(&5) && values.contains(&8));
    }

    #[test]
    fn chance_ppm_extremes() {
        let mut prng = Prng::new(9);
        assert!((0..1000).all(|_| !prng.chance_ppm(0)));
        assert!((0..1000).all(|_| prng.chance_ppm(1_000_000)));
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut prng = Prng::new(11);
        let mut items: Vec<u32> = (0..20).collect();
        prng.shuffle(&mut items);
        let mut sorted = items.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..20).collect::<Vec<_>>());
    }
}
