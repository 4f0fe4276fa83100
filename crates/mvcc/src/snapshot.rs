//! Snapshots: the whole store as bytes, and back.
//!
//! Format (version 1), integers little-endian:
//!
//! ```text
//! magic           8 bytes  "chorusmv"
//! format version  u32      1
//! meta            25 bytes applied index u64, current revision i64, compacted u8, compact revision i64
//! record count    u64
//! records         record count times: revision (16 bytes, main and sub big-endian), record
//! checksum        u32      CRC-32C of every byte before it
//! ```
//!
//! A record is a tag byte (1 put, 2 tombstone), the key (u32 length, bytes), and for a put the
//! create revision, mod revision, version and lease (i64 each) and the value (u32 length, bytes).

use crate::backend::codec::{decode_meta, decode_record, encode_meta, Reader, META_BYTES};
use crate::backend::{Backend, EncodedVisitor, Meta, Record, RecordsView, SideEntry};
use crate::error::{BackendError, Error, SnapshotError};
use crate::index::KeyIndex;
use crate::store::{IndexBuilder, SideChanges, Store};
use crate::types::Revision;
use std::io::{Read, Write};

const MAGIC: &[u8; 8] = b"chorusmv";
const FORMAT_VERSION: u32 = 1;
const CHECKSUM_BYTES: usize = 4;
/// The smallest encoded record: a revision, a tag, an empty key's length.
const RECORD_BYTES_MIN: usize = 16 + 1 + 4;
const HEADER_BYTES: usize = MAGIC.len() + 4 + META_BYTES + 8;

/// A decoded snapshot: the meta and every record, in revision order. Decoding checked that it
/// makes a store whose invariants hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub meta: Meta,
    pub records: Vec<(Revision, Record)>,
}

/// Decodes snapshot bytes written by [`Store::write_snapshot`], checking the checksum, the
/// encoding and the store's invariants. Never panics, and allocates no more than a small multiple
/// of `bytes.len()`, whatever the input.
pub fn decode_snapshot(bytes: &[u8]) -> Result<Snapshot, SnapshotError> {
    decode_with_index(bytes).map(|(snapshot, _)| snapshot)
}

fn invalid(reason: impl Into<String>) -> SnapshotError {
    SnapshotError::Invalid(reason.into())
}

fn decode_with_index(bytes: &[u8]) -> Result<(Snapshot, KeyIndex), SnapshotError> {
    if bytes.len() < HEADER_BYTES + CHECKSUM_BYTES {
        return Err(invalid(format!(
            "{} bytes is too short for a snapshot",
            bytes.len()
        )));
    }
    let (body, checksum) = bytes.split_at(bytes.len() - CHECKSUM_BYTES);
    let mut reader = Reader::new(body);
    if reader.take(MAGIC.len()).map_err(invalid)? != MAGIC {
        return Err(invalid("not a chorus mvcc snapshot (bad magic)"));
    }
    let version = reader.u32().map_err(invalid)?;
    if version != FORMAT_VERSION {
        return Err(invalid(format!(
            "unsupported snapshot format version {version}"
        )));
    }
    let mut checksum_reader = Reader::new(checksum);
    let expected = checksum_reader.u32().map_err(invalid)?;
    let actual = crc32c::crc32c(body);
    if actual != expected {
        return Err(invalid(format!(
            "checksum {actual:#010x}, expected {expected:#010x}"
        )));
    }
    let meta = decode_meta(&mut reader).map_err(invalid)?;
    let count = reader.u64().map_err(invalid)?;
    if count > (reader.remaining() / RECORD_BYTES_MIN) as u64 {
        return Err(invalid(format!(
            "{count} records cannot fit in {} bytes",
            reader.remaining()
        )));
    }
    let mut builder = IndexBuilder::new(meta);
    let mut records = Vec::new();
    for _ in 0..count {
        let revision_bytes = reader.take(16).map_err(invalid)?;
        let Some(revision) = Revision::from_key_bytes(revision_bytes) else {
            return Err(invalid("negative revision"));
        };
        let record = decode_record(&mut reader).map_err(invalid)?;
        builder.add(revision, &record).map_err(invalid)?;
        records.push((revision, record));
    }
    reader.finish().map_err(invalid)?;
    let index = builder.finish().map_err(invalid)?;
    Ok((Snapshot { meta, records }, index))
}

/// Passes bytes on to a writer while computing their checksum.
struct ChecksumWriter<'a, W: Write> {
    inner: &'a mut W,
    checksum: u32,
}

impl<W: Write> ChecksumWriter<'_, W> {
    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.checksum = crc32c::crc32c_append(self.checksum, bytes);
        self.inner.write_all(bytes)
    }
}

/// Everything a store snapshot holds, taken at one moment ([`Store::snapshot_source`]) and
/// written out later, on any thread, while the store goes on applying: the meta, the record
/// count and a [`RecordsView`] of the backend.
pub struct SnapshotSource {
    meta: Meta,
    revision_count: usize,
    records: Box<dyn RecordsView>,
}

impl SnapshotSource {
    /// The meta the snapshot carries (its applied index is the snapshot's).
    pub fn meta(&self) -> Meta {
        self.meta
    }

    /// The length of what [`SnapshotSource::write_to`] writes, from the view's own count of
    /// the records' bytes ([`RecordsView::encoded_bytes`]). `write_to` checks the number of
    /// records against the index.
    pub fn encoded_bytes(&self) -> Result<u64, SnapshotError> {
        let records = self.records.encoded_bytes().map_err(Error::Fatal)?;
        Ok((HEADER_BYTES + CHECKSUM_BYTES) as u64 + records)
    }

    /// Writes the snapshot to `writer`, record by record, ending with a checksum: the format
    /// in the module doc.
    pub fn write_to<W: Write>(&self, writer: &mut W) -> Result<(), SnapshotError> {
        write_records(self.meta, self.revision_count, writer, &mut |visit| {
            self.records.for_each_encoded(visit)
        })
    }
}

/// Writes a snapshot of `revision_count` records that `for_each` visits, with `meta`.
fn write_records<W: Write>(
    meta: Meta,
    revision_count: usize,
    writer: &mut W,
    for_each: &mut dyn FnMut(&mut EncodedVisitor<'_>) -> Result<(), BackendError>,
) -> Result<(), SnapshotError> {
    let mut out = ChecksumWriter {
        inner: writer,
        checksum: 0,
    };
    let mut header = Vec::with_capacity(HEADER_BYTES);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    encode_meta(&meta, &mut header);
    header.extend_from_slice(&(revision_count as u64).to_le_bytes());
    out.write_all(&header)?;
    let mut write_error = None;
    let mut written = 0usize;
    let mut encoded = Vec::new();
    let scanned = for_each(&mut |revision, record| {
        encoded.clear();
        encoded.extend_from_slice(revision);
        encoded.extend_from_slice(record);
        written += 1;
        out.write_all(&encoded).map_err(|error| {
            let message = error.to_string();
            write_error = Some(error);
            BackendError::Io(message)
        })
    });
    if let Some(error) = write_error {
        return Err(SnapshotError::Io(error));
    }
    scanned.map_err(Error::Fatal)?;
    if written != revision_count {
        return Err(SnapshotError::Invalid(format!(
            "the backend holds {written} records, the index {revision_count}"
        )));
    }
    let checksum = out.checksum;
    out.inner.write_all(&checksum.to_le_bytes())?;
    Ok(())
}

impl<B: Backend> Store<B> {
    /// Writes the whole state (every revision held, the compaction point, the applied index) to
    /// `writer`, record by record, ending with a checksum.
    pub fn write_snapshot<W: Write>(&self, writer: &mut W) -> Result<(), SnapshotError> {
        self.check_running()?;
        write_records(
            self.meta(),
            self.index.revision_count(),
            writer,
            &mut |visit| self.backend.for_each_encoded(visit),
        )
    }

    /// The state as of now, to be written later on any thread ([`SnapshotSource`]): pending
    /// writes are committed to the backend first (not durably).
    pub fn snapshot_source(&mut self) -> Result<SnapshotSource, SnapshotError> {
        self.check_running()?;
        assert!(!self.deferring, "snapshot_source while a write is deferred");
        let view = self.backend.records_view();
        let records = self.stop_on_failure(view)?;
        Ok(SnapshotSource {
            meta: self.meta(),
            revision_count: self.index.revision_count(),
            records,
        })
    }

    /// The snapshot as bytes; see [`Store::write_snapshot`].
    pub fn snapshot_bytes(&self) -> Result<Vec<u8>, SnapshotError> {
        let mut bytes = Vec::new();
        self.write_snapshot(&mut bytes)?;
        Ok(bytes)
    }

    /// Replaces the whole state with the snapshot in `bytes`, durably; nothing changes if the
    /// snapshot is invalid. The applied index becomes the snapshot's; the side table is emptied.
    pub fn restore_snapshot(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        self.restore_snapshot_with_side(bytes, Vec::new())
    }

    /// [`Store::restore_snapshot`], with the side table replaced by `side` in the same atomic
    /// write (the caller's own state as of the snapshot). Staged side changes are dropped.
    pub fn restore_snapshot_with_side(
        &mut self,
        bytes: &[u8],
        side: Vec<SideEntry>,
    ) -> Result<(), SnapshotError> {
        self.check_running()?;
        assert!(
            !self.deferring,
            "restore_snapshot while a write is deferred"
        );
        let (snapshot, index) = decode_with_index(bytes)?;
        let meta = snapshot.meta;
        self.side_staged = SideChanges::default();
        let replaced = self.backend.replace_all(snapshot.records, side, meta);
        self.stop_on_failure(replaced)?;
        self.index = index;
        self.current_revision = meta.current_revision;
        self.compact_revision = meta.compact_revision;
        self.applied_index = meta.applied_index;
        self.durable_applied_index = meta.applied_index;
        self.written_meta = meta;
        Ok(())
    }

    /// Reads a snapshot of at most `size_bytes_max` bytes from `reader` and restores it; see
    /// [`Store::restore_snapshot`].
    pub fn restore_snapshot_from_reader<R: Read>(
        &mut self,
        reader: &mut R,
        size_bytes_max: u64,
    ) -> Result<(), SnapshotError> {
        let mut bytes = Vec::new();
        reader
            .take(size_bytes_max.saturating_add(1))
            .read_to_end(&mut bytes)?;
        if bytes.len() as u64 > size_bytes_max {
            return Err(SnapshotError::TooLarge { size_bytes_max });
        }
        self.restore_snapshot(&bytes)
    }
}
