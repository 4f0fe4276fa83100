//! The key of the in-memory index: a short key is stored inline, so the common key costs no
//! allocation of its own.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;

/// The longest key stored inline.
const INLINE_BYTES_MAX: usize = 14;

/// A key's bytes in 16 bytes: up to [`INLINE_BYTES_MAX`] inline, a longer key behind a pointer.
/// It compares, and borrows, as its bytes, so the index looks keys up by `&[u8]`.
///
/// # Invariants
///
/// `Inline`'s `length <= INLINE_BYTES_MAX`, and its bytes past `length` are zero; `Heap` holds a
/// key longer than `INLINE_BYTES_MAX`.
#[derive(Clone)]
pub(crate) enum IndexKey {
    Inline {
        length: u8,
        bytes: [u8; INLINE_BYTES_MAX],
    },
    /// Boxed twice: the outer box is a thin pointer (a `Box<[u8]>` is two words), which keeps the
    /// enum at 16 bytes.
    Heap(Box<Box<[u8]>>),
}

const _: () = assert!(std::mem::size_of::<IndexKey>() == 16);

impl IndexKey {
    pub(crate) fn new(key: &[u8]) -> IndexKey {
        match u8::try_from(key.len()) {
            Ok(length) if key.len() <= INLINE_BYTES_MAX => {
                let mut bytes = [0; INLINE_BYTES_MAX];
                bytes[..key.len()].copy_from_slice(key);
                IndexKey::Inline { length, bytes }
            }
            _ => IndexKey::Heap(Box::new(key.into())),
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            IndexKey::Inline { length, bytes } => &bytes[..usize::from(*length)],
            IndexKey::Heap(bytes) => bytes,
        }
    }
}

impl Borrow<[u8]> for IndexKey {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl PartialEq for IndexKey {
    fn eq(&self, other: &IndexKey) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for IndexKey {}

impl PartialOrd for IndexKey {
    fn partial_cmp(&self, other: &IndexKey) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for IndexKey {
    fn cmp(&self, other: &IndexKey) -> Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl fmt::Debug for IndexKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_up_to_the_inline_bound_are_inline_and_all_keep_their_bytes() {
        for length in [0, 1, INLINE_BYTES_MAX, INLINE_BYTES_MAX + 1, 300] {
            let bytes: Vec<u8> = (0..length).map(|i| (i * 7) as u8).collect();
            let key = IndexKey::new(&bytes);
            assert_eq!(key.as_bytes(), bytes.as_slice());
            let inline = matches!(key, IndexKey::Inline { .. });
            assert_eq!(inline, length <= INLINE_BYTES_MAX, "length {length}");
        }
    }

    #[test]
    fn keys_order_as_their_bytes_across_representations() {
        let long = [b'a'; INLINE_BYTES_MAX + 1];
        let keys: Vec<&[u8]> = vec![b"", b"a", b"a\0", &long, b"ab", b"b"];
        for a in &keys {
            for b in &keys {
                assert_eq!(IndexKey::new(a).cmp(&IndexKey::new(b)), a.cmp(b));
            }
        }
    }
}
