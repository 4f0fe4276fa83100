//! Little-endian fields and checksums, shared by every on-disk format.
//!
//! [`FieldReader`] reads from untrusted bytes: every read checks the length first and returns
//! [`DecodeError::Truncated`] instead of panicking.

use crate::error::DecodeError;

/// CRC-32C (Castagnoli) of `bytes`.
pub(crate) fn checksum(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
}

/// Continues a CRC-32C over more bytes: `checksum_append(checksum(a), b) == checksum(a ++ b)`.
pub(crate) fn checksum_append(crc: u32, bytes: &[u8]) -> u32 {
    crc32c::crc32c_append(crc, bytes)
}

pub(crate) fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

pub(crate) fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

/// A cursor over untrusted bytes.
pub(crate) struct FieldReader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> FieldReader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        FieldReader { bytes, position: 0 }
    }

    pub(crate) fn position(&self) -> usize {
        self.position
    }

    /// The next `len` bytes, or `Truncated` when fewer remain.
    pub(crate) fn take(&mut self, len: usize) -> Result<&'a [u8], DecodeError> {
        let available = self.bytes.len() - self.position;
        if len > available {
            return Err(DecodeError::Truncated {
                needed_bytes: (self.position as u64).saturating_add(len as u64),
                available_bytes: self.bytes.len() as u64,
            });
        }
        let field = &self.bytes[self.position..self.position + len];
        self.position += len;
        Ok(field)
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        let mut field = [0u8; 4];
        field.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(field))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        let mut field = [0u8; 8];
        field.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(field))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn field_reader_reports_truncation_instead_of_panicking() {
        let mut reader = FieldReader::new(&[1, 0, 0, 0, 9]);
        assert_eq!(reader.u32(), Ok(1));
        assert_eq!(
            reader.u64(),
            Err(DecodeError::Truncated {
                needed_bytes: 12,
                available_bytes: 5
            })
        );
        assert_eq!(reader.take(1), Ok(&[9u8][..]));
    }

    #[test]
    fn checksum_append_continues_a_checksum() {
        assert_eq!(
            checksum_append(checksum(b"hello "), b"world"),
            checksum(b"hello world")
        );
    }
}
