//! The byte encoding of records and meta, shared by the persistent backend and snapshots.
//!
//! Little-endian integers; byte strings as a `u32` length then the bytes. Decoding never panics
//! and allocates no more than the input's length: every length is checked against the bytes left
//! before anything is allocated.

use super::{Meta, Record};
use crate::types::KeyValue;

const TAG_PUT: u8 = 1;
const TAG_TOMBSTONE: u8 = 2;

/// Encoded size of a [`Meta`].
pub const META_BYTES: usize = 8 + 8 + 1 + 8;

/// Why bytes did not decode.
pub type DecodeError = &'static str;

/// Appends the encoding of `record` to `out`.
pub fn encode_record(record: &Record, out: &mut Vec<u8>) {
    match record {
        Record::Put(kv) => {
            out.push(TAG_PUT);
            put_bytes(out, &kv.key);
            out.extend_from_slice(&kv.create_revision.to_le_bytes());
            out.extend_from_slice(&kv.mod_revision.to_le_bytes());
            out.extend_from_slice(&kv.version.to_le_bytes());
            out.extend_from_slice(&kv.lease.to_le_bytes());
            put_bytes(out, &kv.value);
        }
        Record::Tombstone { key } => {
            out.push(TAG_TOMBSTONE);
            put_bytes(out, key);
        }
    }
}

/// Decodes one record from the front of `reader`.
pub fn decode_record(reader: &mut Reader<'_>) -> Result<Record, DecodeError> {
    match reader.u8()? {
        TAG_PUT => {
            let key = reader.bytes()?;
            let create_revision = reader.i64()?;
            let mod_revision = reader.i64()?;
            let version = reader.i64()?;
            let lease = reader.i64()?;
            let value = reader.bytes()?;
            Ok(Record::Put(KeyValue {
                key,
                create_revision,
                mod_revision,
                version,
                value,
                lease,
            }))
        }
        TAG_TOMBSTONE => Ok(Record::Tombstone {
            key: reader.bytes()?,
        }),
        _ => Err("unknown record tag"),
    }
}

/// Decodes `bytes`, which must hold exactly one record.
pub fn decode_record_exact(bytes: &[u8]) -> Result<Record, DecodeError> {
    let mut reader = Reader::new(bytes);
    let record = decode_record(&mut reader)?;
    reader.finish()?;
    Ok(record)
}

pub fn encode_meta(meta: &Meta, out: &mut Vec<u8>) {
    out.extend_from_slice(&meta.applied_index.to_le_bytes());
    out.extend_from_slice(&meta.current_revision.to_le_bytes());
    out.push(u8::from(meta.compact_revision.is_some()));
    out.extend_from_slice(&meta.compact_revision.unwrap_or(0).to_le_bytes());
}

pub fn decode_meta(reader: &mut Reader<'_>) -> Result<Meta, DecodeError> {
    let applied_index = reader.u64()?;
    let current_revision = reader.i64()?;
    let compacted = reader.u8()?;
    let compact_revision = reader.i64()?;
    let compact_revision = match compacted {
        0 => None,
        1 => Some(compact_revision),
        _ => return Err("bad compaction flag"),
    };
    Ok(Meta {
        applied_index,
        current_revision,
        compact_revision,
    })
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    let length = u32::try_from(bytes.len());
    let Ok(length) = length else {
        panic!("{} bytes do not fit a u32 length", bytes.len());
    };
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(bytes);
}

/// A cursor over bytes being decoded.
pub struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes }
    }

    pub fn remaining(&self) -> usize {
        self.bytes.len()
    }

    pub fn take(&mut self, count: usize) -> Result<&'a [u8], DecodeError> {
        if count > self.bytes.len() {
            return Err("truncated");
        }
        let (taken, rest) = self.bytes.split_at(count);
        self.bytes = rest;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut array = [0u8; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    pub fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    /// A `u32` length, then that many bytes.
    pub fn bytes(&mut self) -> Result<Vec<u8>, DecodeError> {
        let length = self.u32()? as usize;
        Ok(self.take(length)?.to_vec())
    }

    /// Fails unless every byte was consumed.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err("trailing bytes")
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn records_and_meta_round_trip() {
        let put = Record::Put(KeyValue {
            key: b"k".to_vec(),
            create_revision: 2,
            mod_revision: 3,
            version: 2,
            value: b"value".to_vec(),
            lease: 7,
        });
        let tombstone = Record::Tombstone {
            key: b"gone".to_vec(),
        };
        for record in [put, tombstone] {
            let mut bytes = Vec::new();
            encode_record(&record, &mut bytes);
            assert_eq!(decode_record_exact(&bytes), Ok(record.clone()));
            for cut in 0..bytes.len() {
                assert!(decode_record_exact(&bytes[..cut]).is_err());
            }
        }
        let meta = Meta {
            applied_index: 9,
            current_revision: 4,
            compact_revision: Some(3),
        };
        let mut bytes = Vec::new();
        encode_meta(&meta, &mut bytes);
        assert_eq!(bytes.len(), META_BYTES);
        assert_eq!(decode_meta(&mut Reader::new(&bytes)), Ok(meta));
    }

    #[test]
    fn a_huge_length_prefix_is_refused_without_allocating() {
        let mut bytes = vec![TAG_TOMBSTONE];
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode_record_exact(&bytes), Err("truncated"));
    }
}
