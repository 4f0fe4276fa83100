//! The WAL record and its frame: pure encoding and decoding.
//!
//! ```text
//! offset  size  field
//!      0     4  body_bytes   u32 LE: length of the body (16 + payload length)
//!      4     4  body_crc     u32 LE: CRC-32C of the body
//!      8     4  header_crc   u32 LE: CRC-32C of bytes 0..8
//!     12     8  index        u64 LE  ┐
//!     20     8  term         u64 LE  │ body
//!     28     n  payload              ┘
//! ```
//!
//! The header has its own checksum so that a damaged length is recognised as damage before it
//! is used, instead of being taken for a record that runs past the end of the file.

use crate::codec::{checksum, put_u32, put_u64, FieldReader};
use crate::error::DecodeError;
use bytes::Bytes;

/// Bytes of a frame header: body length, body checksum, header checksum.
pub const FRAME_HEADER_BYTES: u64 = 12;
/// Bytes of a body before the payload: index and term.
pub const BODY_FIXED_BYTES: u64 = 16;
/// The largest encoded record (frame header + body) the format allows, and the bound
/// [`decode_record`] applies. A WAL's own `record_bytes_max` may only be smaller.
pub const FORMAT_RECORD_BYTES_MAX: u64 = 256 * 1024 * 1024;

/// One log entry as the WAL stores it: an index, a term and opaque bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    pub index: u64,
    pub term: u64,
    pub payload: Bytes,
}

impl Record {
    pub fn new(index: u64, term: u64, payload: impl Into<Bytes>) -> Self {
        Record {
            index,
            term,
            payload: payload.into(),
        }
    }

    /// Bytes this record takes in the log, frame included.
    pub fn encoded_bytes(&self) -> u64 {
        FRAME_HEADER_BYTES + BODY_FIXED_BYTES + self.payload.len() as u64
    }
}

/// A decoded, checksum-verified frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub body_bytes: u32,
    pub body_crc: u32,
}

impl FrameHeader {
    /// Bytes of the whole frame: header and body.
    pub fn frame_bytes(&self) -> u64 {
        FRAME_HEADER_BYTES + u64::from(self.body_bytes)
    }
}

/// Appends the framed record to `out`.
///
/// Panics if the record does not fit the format (the WAL checks `record_bytes_max` first).
pub fn encode_record(record: &Record, out: &mut Vec<u8>) {
    let body_bytes = BODY_FIXED_BYTES + record.payload.len() as u64;
    assert!(
        FRAME_HEADER_BYTES + body_bytes <= FORMAT_RECORD_BYTES_MAX,
        "record {} is larger than the format allows",
        record.index
    );
    let frame_start = out.len();
    let body_start = frame_start + FRAME_HEADER_BYTES as usize;
    // Body first, behind room for the header, so its checksum is computed in place.
    out.resize(body_start, 0);
    put_u64(out, record.index);
    put_u64(out, record.term);
    out.extend_from_slice(&record.payload);
    let body_crc = checksum(&out[body_start..]);
    let mut header = Vec::with_capacity(FRAME_HEADER_BYTES as usize);
    put_u32(&mut header, body_bytes as u32);
    put_u32(&mut header, body_crc);
    let header_crc = checksum(&header);
    put_u32(&mut header, header_crc);
    out[frame_start..body_start].copy_from_slice(&header);
}

/// Decodes and verifies a frame header from the first [`FRAME_HEADER_BYTES`] of `bytes`.
/// Does not check the body length against any limit.
pub fn decode_frame_header(bytes: &[u8]) -> Result<FrameHeader, DecodeError> {
    let mut reader = FieldReader::new(bytes);
    let body_bytes = reader.u32()?;
    let body_crc = reader.u32()?;
    let header_crc = reader.u32()?;
    if checksum(&bytes[..8]) != header_crc {
        return Err(DecodeError::HeaderChecksum);
    }
    Ok(FrameHeader {
        body_bytes,
        body_crc,
    })
}

/// Checks a verified header's length against the format and `record_bytes_max`.
pub(crate) fn check_frame_length(
    header: &FrameHeader,
    record_bytes_max: u64,
) -> Result<(), DecodeError> {
    if u64::from(header.body_bytes) < BODY_FIXED_BYTES {
        return Err(DecodeError::TooSmall {
            what: "record body",
            bytes: header.body_bytes.into(),
            bytes_min: BODY_FIXED_BYTES,
        });
    }
    if header.frame_bytes() > record_bytes_max {
        return Err(DecodeError::TooLarge {
            what: "record",
            bytes: header.frame_bytes(),
            bytes_max: record_bytes_max,
        });
    }
    Ok(())
}

/// Verifies `body` against its header and decodes it.
pub(crate) fn decode_body(header: &FrameHeader, body: &[u8]) -> Result<Record, DecodeError> {
    assert_eq!(body.len() as u64, u64::from(header.body_bytes));
    if checksum(body) != header.body_crc {
        return Err(DecodeError::BodyChecksum);
    }
    let mut reader = FieldReader::new(body);
    let index = reader.u64()?;
    let term = reader.u64()?;
    let payload = Bytes::copy_from_slice(&body[reader.position()..]);
    Ok(Record {
        index,
        term,
        payload,
    })
}

/// Decodes one framed record from the start of `bytes`, with the format's size limit.
/// Returns the record and the number of bytes its frame took. Never panics; never allocates
/// more than `bytes.len()`.
pub fn decode_record(bytes: &[u8]) -> Result<(Record, usize), DecodeError> {
    decode_record_limited(bytes, FORMAT_RECORD_BYTES_MAX)
}

/// [`decode_record`] with a smaller limit on the encoded record.
pub fn decode_record_limited(
    bytes: &[u8],
    record_bytes_max: u64,
) -> Result<(Record, usize), DecodeError> {
    let header = decode_frame_header(bytes)?;
    check_frame_length(&header, record_bytes_max.min(FORMAT_RECORD_BYTES_MAX))?;
    let mut reader = FieldReader::new(bytes);
    reader.take(FRAME_HEADER_BYTES as usize)?;
    let body = reader.take(header.body_bytes as usize)?;
    let record = decode_body(&header, body)?;
    Ok((record, reader.position()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn encoded(record: &Record) -> Vec<u8> {
        let mut bytes = Vec::new();
        encode_record(record, &mut bytes);
        bytes
    }

    #[test]
    fn record_round_trips_through_its_frame() {
        let record = Record::new(7, 3, &b"payload"[..]);
        let bytes = encoded(&record);
        assert_eq!(bytes.len() as u64, record.encoded_bytes());
        assert_eq!(decode_record(&bytes), Ok((record, bytes.len())));
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let bytes = encoded(&Record::new(1, 1, &b"abc"[..]));
        for position in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[position / 8] ^= 1 << (position % 8);
            assert!(
                decode_record(&damaged).is_err(),
                "flip at bit {position} undetected"
            );
        }
    }

    #[test]
    fn huge_length_prefix_is_refused_without_allocating_it() {
        let mut header = Vec::new();
        put_u32(&mut header, u32::MAX);
        put_u32(&mut header, 0);
        let header_crc = checksum(&header);
        put_u32(&mut header, header_crc);
        assert!(matches!(
            decode_record(&header),
            Err(DecodeError::TooLarge { .. })
        ));
        assert!(matches!(
            decode_record_limited(&header, u64::MAX),
            Err(DecodeError::TooLarge { .. })
        ));
    }

    #[test]
    fn record_at_limit_decodes_and_one_past_is_refused() {
        let record = Record::new(1, 1, vec![7u8; 100]);
        let bytes = encoded(&record);
        let limit = record.encoded_bytes();
        assert!(decode_record_limited(&bytes, limit).is_ok());
        assert!(matches!(
            decode_record_limited(&bytes, limit - 1),
            Err(DecodeError::TooLarge { .. })
        ));
    }

    #[test]
    fn short_input_is_truncated_not_a_panic() {
        let bytes = encoded(&Record::new(1, 1, &b"abc"[..]));
        for len in 0..bytes.len() {
            assert!(matches!(
                decode_record(&bytes[..len]),
                Err(DecodeError::Truncated { .. })
            ));
        }
    }

    #[test]
    fn zeroed_header_is_a_checksum_failure() {
        assert_eq!(decode_record(&[0u8; 40]), Err(DecodeError::HeaderChecksum));
    }
}
