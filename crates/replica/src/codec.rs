//! The byte-level pieces every encoding of this crate is built from: little-endian integers,
//! length-prefixed byte strings, and a bounds-checked reader that never panics.

use thiserror::Error;

/// What is wrong with bytes given to a decoder of this crate. Decoders never panic and check
/// every length or count against the bytes left before they allocate anything.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("truncated: needs {needed_bytes} bytes, has {available_bytes}")]
    Truncated {
        needed_bytes: u64,
        available_bytes: u64,
    },
    #[error("unsupported {what} format version {version}")]
    UnsupportedVersion { what: &'static str, version: u8 },
    #[error("unknown {what} tag {tag}")]
    UnknownTag { what: &'static str, tag: u8 },
    #[error("unknown {what} flags {flags:#x}")]
    UnknownFlags { what: &'static str, flags: u8 },
    #[error("{what} count {count} exceeds the {bytes_left} bytes left")]
    CountTooLarge {
        what: &'static str,
        count: u64,
        bytes_left: u64,
    },
    #[error("transactions nested deeper than {depth_max}")]
    TooDeep { depth_max: usize },
    #[error("{bytes} unexpected bytes after the end")]
    TrailingBytes { bytes: u64 },
    #[error("invalid membership: {reason}")]
    InvalidMembership { reason: &'static str },
    #[error("invalid member table: {reason}")]
    InvalidMembers { reason: &'static str },
    #[error("invalid replica snapshot: {reason}")]
    InvalidSnapshot { reason: &'static str },
    #[error("invalid session table: {reason}")]
    InvalidSessions { reason: &'static str },
}

pub(crate) fn put_u8(out: &mut Vec<u8>, value: u8) {
    out.push(value);
}

pub(crate) fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

pub(crate) fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

pub(crate) fn put_i64(out: &mut Vec<u8>, value: i64) {
    out.extend_from_slice(&value.to_le_bytes());
}

/// A count or a length, as a `u32`. Asserted: nothing this crate encodes comes near 4 GiB, and
/// raft refuses proposals far below that.
pub(crate) fn put_len(out: &mut Vec<u8>, len: usize) {
    let len = u32::try_from(len).unwrap_or_else(|_| panic!("length {len} does not fit a u32"));
    put_u32(out, len);
}

pub(crate) fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

/// Reads fields off a byte slice; every read checks the bytes left first.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, position: 0 }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.position
    }

    pub(crate) fn take(&mut self, count: usize) -> Result<&'a [u8], DecodeError> {
        if count > self.remaining() {
            return Err(DecodeError::Truncated {
                needed_bytes: count as u64,
                available_bytes: self.remaining() as u64,
            });
        }
        let taken = &self.bytes[self.position..self.position + count];
        self.position += count;
        Ok(taken)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut array = [0u8; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }

    /// The next byte, not consumed.
    pub(crate) fn peek_u8(&self) -> Option<u8> {
        self.bytes.get(self.position).copied()
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    pub(crate) fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    /// A length-prefixed byte string; the length is checked before anything is allocated.
    pub(crate) fn bytes(&mut self) -> Result<Vec<u8>, DecodeError> {
        let len = self.u32()? as usize;
        Ok(self.take(len)?.to_vec())
    }

    /// A count of items that take at least `item_bytes_min` bytes each, checked against the
    /// bytes left so that a forged count cannot make the caller loop or allocate past the input.
    pub(crate) fn count(
        &mut self,
        what: &'static str,
        item_bytes_min: usize,
    ) -> Result<usize, DecodeError> {
        let count = self.u32()? as usize;
        let bytes_left = self.remaining();
        if count.saturating_mul(item_bytes_min.max(1)) > bytes_left {
            return Err(DecodeError::CountTooLarge {
                what,
                count: count as u64,
                bytes_left: bytes_left as u64,
            });
        }
        Ok(count)
    }

    /// The rest of the input.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let rest = &self.bytes[self.position..];
        self.position = self.bytes.len();
        rest
    }

    /// Fails unless every byte was read.
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            bytes => Err(DecodeError::TrailingBytes {
                bytes: bytes as u64,
            }),
        }
    }
}

/// Reads a `u8` that must be 0 or 1.
pub(crate) fn read_bool(reader: &mut Reader<'_>, what: &'static str) -> Result<bool, DecodeError> {
    match reader.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        flags => Err(DecodeError::UnknownFlags { what, flags }),
    }
}
