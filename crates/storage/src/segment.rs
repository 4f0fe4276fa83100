//! WAL segment files: names, the header, and the scan that validates records.
//!
//! A segment is `<first index, 20 digits>.log`:
//!
//! ```text
//! offset  size  field
//!      0     8  magic          "CHORUSWL"
//!      8     4  version        u32 LE, 1
//!     12     4  flags          u32 LE, bit 0: STARTS_NEW_LOG
//!     16     8  first_index    u64 LE, equal to the number in the file name
//!     24     4  reserved       zero
//!     28     4  header_crc     u32 LE: CRC-32C of bytes 0..28
//!     32        records (see `record`)
//! ```
//!
//! `STARTS_NEW_LOG` marks a segment written by a `compact_prefix` that dropped the whole log: every
//! segment before it is obsolete, and recovery finishes removing them.

use crate::codec::{checksum, put_u32, put_u64, FieldReader};
use crate::error::DecodeError;
use crate::fs::{read_exact_at, FsFile};
use crate::record::{check_frame_length, decode_body, decode_frame_header, FRAME_HEADER_BYTES};
use std::io;

pub(crate) const SEGMENT_MAGIC: &[u8; 8] = b"CHORUSWL";
pub(crate) const SEGMENT_VERSION: u32 = 1;
/// Bytes of a segment header.
pub const SEGMENT_HEADER_BYTES: u64 = 32;
pub(crate) const FLAG_STARTS_NEW_LOG: u32 = 1;
const FLAGS_KNOWN: u32 = FLAG_STARTS_NEW_LOG;
const SEGMENT_SUFFIX: &str = ".log";
const SEGMENT_NAME_DIGITS: usize = 20;

/// A decoded, verified segment header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    pub first_index: u64,
    /// Every segment with a smaller first index is obsolete.
    pub starts_new_log: bool,
}

pub(crate) fn encode_segment_header(header: &SegmentHeader) -> Vec<u8> {
    let mut out = Vec::with_capacity(SEGMENT_HEADER_BYTES as usize);
    out.extend_from_slice(SEGMENT_MAGIC);
    put_u32(&mut out, SEGMENT_VERSION);
    let flags = if header.starts_new_log {
        FLAG_STARTS_NEW_LOG
    } else {
        0
    };
    put_u32(&mut out, flags);
    put_u64(&mut out, header.first_index);
    put_u32(&mut out, 0);
    let crc = checksum(&out);
    put_u32(&mut out, crc);
    assert_eq!(out.len() as u64, SEGMENT_HEADER_BYTES);
    out
}

/// Decodes and verifies a segment header from the start of `bytes`. Never panics.
pub fn decode_segment_header(bytes: &[u8]) -> Result<SegmentHeader, DecodeError> {
    let mut reader = FieldReader::new(bytes);
    let magic = reader.take(8)?;
    let version = reader.u32()?;
    let flags = reader.u32()?;
    let first_index = reader.u64()?;
    let reserved = reader.u32()?;
    let crc = reader.u32()?;
    if checksum(&bytes[..28]) != crc {
        return Err(DecodeError::HeaderChecksum);
    }
    if magic != SEGMENT_MAGIC {
        return Err(DecodeError::BadMagic);
    }
    if version != SEGMENT_VERSION {
        return Err(DecodeError::UnsupportedVersion { version });
    }
    if flags & !FLAGS_KNOWN != 0 || reserved != 0 {
        return Err(DecodeError::UnknownFlags { flags });
    }
    Ok(SegmentHeader {
        first_index,
        starts_new_log: flags & FLAG_STARTS_NEW_LOG != 0,
    })
}

pub(crate) fn segment_file_name(first_index: u64) -> String {
    format!(
        "{first_index:0width$}{SEGMENT_SUFFIX}",
        width = SEGMENT_NAME_DIGITS
    )
}

/// The first index a segment file name stands for; `None` for any other name.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != SEGMENT_NAME_DIGITS || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Reads a file through a buffer, so a scan does one read per chunk, not per record.
pub(crate) struct ChunkReader<'f, File> {
    file: &'f File,
    file_bytes: u64,
    buffer: Vec<u8>,
    buffer_offset: u64,
    chunk_bytes: usize,
}

impl<'f, File: FsFile> ChunkReader<'f, File> {
    pub(crate) fn new(file: &'f File, file_bytes: u64, chunk_bytes: usize) -> Self {
        assert!(chunk_bytes > 0);
        ChunkReader {
            file,
            file_bytes,
            buffer: Vec::new(),
            buffer_offset: 0,
            chunk_bytes,
        }
    }

    /// Up to `len` bytes at `offset`: fewer only where the file ends. `len` must be bounded by
    /// the caller (it is read into memory).
    pub(crate) fn bytes_at(&mut self, offset: u64, len: usize) -> io::Result<&[u8]> {
        let end = offset.saturating_add(len as u64).min(self.file_bytes);
        let buffer_end = self.buffer_offset + self.buffer.len() as u64;
        if offset < self.buffer_offset || end > buffer_end {
            let want =
                (self.file_bytes.saturating_sub(offset)).min(len.max(self.chunk_bytes) as u64);
            self.buffer.resize(want as usize, 0);
            let read = read_exact_at(self.file, offset, &mut self.buffer)?;
            self.buffer.truncate(read);
            self.buffer_offset = offset;
        }
        let start = (offset - self.buffer_offset) as usize;
        let available = self.buffer.len().saturating_sub(start);
        Ok(&self.buffer[start..start + available.min(len)])
    }

    /// Whether every byte from `offset` to the end of the file is zero.
    pub(crate) fn is_zero_from(&mut self, offset: u64) -> io::Result<bool> {
        let mut at = offset;
        while at < self.file_bytes {
            let chunk = self.bytes_at(at, self.chunk_bytes)?;
            if chunk.is_empty() {
                break;
            }
            if chunk.iter().any(|&byte| byte != 0) {
                return Ok(false);
            }
            at += chunk.len() as u64;
        }
        Ok(true)
    }
}

/// A record's position, kept sparsely in memory so a read seeks close to where it starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    pub index: u64,
    pub offset: u64,
}

/// What scanning a segment found.
#[derive(Debug)]
pub(crate) struct Scan {
    /// One past the last good record.
    pub next_index: u64,
    /// Where the last good record ends.
    pub end_offset: u64,
    /// Term of the last good record; the term before the segment if it has none.
    pub last_term: u64,
    pub checkpoints: Vec<Checkpoint>,
    /// The first bad frame, if any.
    pub failure: Option<ScanFailure>,
}

#[derive(Debug)]
pub(crate) struct ScanFailure {
    pub offset: u64,
    pub error: DecodeError,
    /// Whether it looks like an append that a crash interrupted: the frame runs to the end of
    /// the file, or nothing but zeros follows it. Only a torn tail of the last segment may be
    /// truncated; anything else is corruption.
    pub torn: bool,
    /// Whether the file holds nothing but zeros from `offset` to its end: the zeros a log
    /// writes ahead of its last record, not damage (implies `torn`).
    pub zeros_only: bool,
}

/// Limits of a scan.
pub(crate) struct ScanLimits {
    pub record_bytes_max: u64,
    pub index_stride_bytes: u64,
    pub read_chunk_bytes: usize,
}

/// Walks the records of a segment whose header was verified, checking every frame, that
/// indexes count up from `first_index` and that terms never decrease (starting from
/// `term_before`). Stops at the first bad frame.
pub(crate) fn scan_segment<File: FsFile>(
    file: &File,
    first_index: u64,
    term_before: u64,
    limits: &ScanLimits,
) -> io::Result<Scan> {
    let file_bytes = file.len_bytes()?;
    let mut reader = ChunkReader::new(file, file_bytes, limits.read_chunk_bytes);
    let mut scan = Scan {
        next_index: first_index,
        end_offset: SEGMENT_HEADER_BYTES,
        last_term: term_before,
        checkpoints: Vec::new(),
        failure: None,
    };
    while scan.end_offset < file_bytes {
        let offset = scan.end_offset;
        match next_frame(&mut reader, offset, file_bytes, &scan, limits)? {
            Ok((index, term, frame_bytes)) => {
                let due = match scan.checkpoints.last() {
                    None => true,
                    Some(last) => offset - last.offset >= limits.index_stride_bytes,
                };
                if due {
                    scan.checkpoints.push(Checkpoint { index, offset });
                }
                scan.next_index = index + 1;
                scan.last_term = term;
                scan.end_offset = offset + frame_bytes;
            }
            Err(failure) => {
                scan.failure = Some(failure);
                break;
            }
        }
    }
    Ok(scan)
}

/// Validates the frame at `offset`: `Ok(Ok((index, term, frame_bytes)))` if it is good.
fn next_frame<File: FsFile>(
    reader: &mut ChunkReader<'_, File>,
    offset: u64,
    file_bytes: u64,
    scan: &Scan,
    limits: &ScanLimits,
) -> io::Result<Result<(u64, u64, u64), ScanFailure>> {
    let fail_with = |error, torn, zeros_only| {
        Ok(Err(ScanFailure {
            offset,
            error,
            torn,
            zeros_only,
        }))
    };
    let fail = |error, torn| fail_with(error, torn, false);
    let header_bytes = reader.bytes_at(offset, FRAME_HEADER_BYTES as usize)?;
    let header_zero = header_bytes.iter().all(|&byte| byte == 0);
    let header = match decode_frame_header(header_bytes) {
        Ok(header) => header,
        // The header itself is cut by the end of the file.
        Err(error @ DecodeError::Truncated { .. }) => return fail_with(error, true, header_zero),
        Err(error) => {
            let torn = reader.is_zero_from(offset + FRAME_HEADER_BYTES)?;
            return fail_with(error, torn, torn && header_zero);
        }
    };
    // The header is authentic: a bad length is damage, not a torn write.
    if let Err(error) = check_frame_length(&header, limits.record_bytes_max) {
        return fail(error, false);
    }
    let frame_end = offset + header.frame_bytes();
    if frame_end > file_bytes {
        let error = DecodeError::Truncated {
            needed_bytes: frame_end,
            available_bytes: file_bytes,
        };
        return fail(error, true);
    }
    let body = reader.bytes_at(offset + FRAME_HEADER_BYTES, header.body_bytes as usize)?;
    let record = match decode_body(&header, body) {
        Ok(record) => record,
        Err(error) => {
            let torn = reader.is_zero_from(frame_end)?;
            return fail(error, torn);
        }
    };
    if record.index != scan.next_index {
        let error = DecodeError::UnexpectedIndex {
            expected: scan.next_index,
            found: record.index,
        };
        return fail(error, false);
    }
    if record.term < scan.last_term {
        let error = DecodeError::TermDecreased {
            previous: scan.last_term,
            found: record.term,
        };
        return fail(error, false);
    }
    Ok(Ok((record.index, record.term, header.frame_bytes())))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn segment_header_round_trips() {
        for starts_new_log in [false, true] {
            let header = SegmentHeader {
                first_index: 42,
                starts_new_log,
            };
            assert_eq!(
                decode_segment_header(&encode_segment_header(&header)),
                Ok(header)
            );
        }
    }

    #[test]
    fn segment_header_detects_every_flipped_bit() {
        let bytes = encode_segment_header(&SegmentHeader {
            first_index: 9,
            starts_new_log: false,
        });
        for position in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[position / 8] ^= 1 << (position % 8);
            assert!(decode_segment_header(&damaged).is_err());
        }
    }

    #[test]
    fn segment_names_round_trip_and_others_are_ignored() {
        assert_eq!(segment_file_name(1), "00000000000000000001.log");
        assert_eq!(
            parse_segment_file_name(&segment_file_name(u64::MAX)),
            Some(u64::MAX)
        );
        assert_eq!(parse_segment_file_name("1.log"), None);
        assert_eq!(parse_segment_file_name("0000000000000000000a.log"), None);
        assert_eq!(parse_segment_file_name("00000000000000000001.tmp"), None);
        assert_eq!(parse_segment_file_name("99999999999999999999.log"), None);
    }
}
