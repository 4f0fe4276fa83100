//! Keys, values and the clients' random choices.

use bytes::Bytes;

/// A key of `size` bytes: the letter `prefix`, then `index` zero-padded in decimal.
pub fn key(prefix: u8, index: u64, size: usize) -> Bytes {
    let digits = size.saturating_sub(1);
    let mut key = Vec::with_capacity(size);
    key.push(prefix);
    key.extend_from_slice(format!("{index:0digits$}").as_bytes());
    Bytes::from(key)
}

/// The end of the range of every key starting with `prefix` (etcd's prefix range end).
pub fn prefix_end(prefix: u8) -> Bytes {
    Bytes::from(vec![prefix.wrapping_add(1)])
}

/// A value of `size` bytes whose first eight carry `stamp` (big-endian).
pub fn value(stamp: u64, size: usize) -> Bytes {
    let mut value = vec![b'v'; size.max(8)];
    value[..8].copy_from_slice(&stamp.to_be_bytes());
    Bytes::from(value)
}

/// The stamp [`value`] put in.
pub fn stamp(value: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(value.get(..8)?.try_into().ok()?))
}

/// SplitMix64: a small, seeded, good-enough generator for key choices.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator for one client: the run's seed mixed with the client's index.
    pub fn for_client(seed: u64, client: usize) -> Rng {
        Rng(seed ^ (client as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (`bound` > 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_the_asked_size_and_sort_by_index() {
        assert_eq!(&key(b'k', 42, 8)[..], b"k0000042");
        assert!(key(b'k', 9, 8) < key(b'k', 10, 8));
        assert_eq!(&prefix_end(b'k')[..], b"l");
    }

    #[test]
    fn values_carry_their_stamp() {
        let value = value(123_456, 256);
        assert_eq!(value.len(), 256);
        assert_eq!(stamp(&value), Some(123_456));
        assert_eq!(stamp(b"short"), None);
    }
}
