//! Small files replaced atomically and checked on read.
//!
//! [`write_file_atomically`] wraps the bytes in a checked envelope, writes them to
//! `<name>.tmp`, fdatasyncs it, renames it over `<name>` and fsyncs the directory: after a
//! crash the file is the old version or the new one, never a mix. [`read_file_checked`] rejects
//! a file whose envelope does not verify.
//!
//! ```text
//! offset  size  field
//!      0     8  magic       "CHORUSAF"
//!      8     4  version     u32 LE, 1
//!     12     4  body_bytes  u32 LE
//!     16     n  body
//!   16+n     4  crc         u32 LE: CRC-32C of bytes 0..16+n
//! ```

use crate::codec::{checksum, put_u32, FieldReader};
use crate::error::{DecodeError, StorageError};
use crate::fs::{is_no_space, read_exact_at, Fs, FsFile};
use std::io;
use std::path::Path;

const MAGIC: &[u8; 8] = b"CHORUSAF";
const VERSION: u32 = 1;
/// Bytes the envelope adds around the body.
pub const ENVELOPE_BYTES: u64 = 20;
const TEMP_SUFFIX: &str = ".tmp";

/// Wraps `body` in the checked envelope.
///
/// Panics if `body` is 4 GiB or more (these files are small by design).
pub fn encode_checked_file(body: &[u8]) -> Vec<u8> {
    let body_bytes = u32::try_from(body.len()).unwrap_or(u32::MAX);
    assert!(u64::from(body_bytes) == body.len() as u64 && body_bytes < u32::MAX);
    let mut out = Vec::with_capacity(body.len() + ENVELOPE_BYTES as usize);
    out.extend_from_slice(MAGIC);
    put_u32(&mut out, VERSION);
    put_u32(&mut out, body_bytes);
    out.extend_from_slice(body);
    let crc = checksum(&out);
    put_u32(&mut out, crc);
    out
}

/// Verifies the envelope and returns the body. Never panics.
pub fn decode_checked_file(bytes: &[u8]) -> Result<&[u8], DecodeError> {
    let mut reader = FieldReader::new(bytes);
    let magic = reader.take(8)?;
    if magic != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    let version = reader.u32()?;
    let body_bytes = reader.u32()?;
    let body = reader.take(body_bytes as usize)?;
    let checked = reader.position();
    let crc = reader.u32()?;
    if checksum(&bytes[..checked]) != crc {
        return Err(DecodeError::BodyChecksum);
    }
    if version != VERSION {
        return Err(DecodeError::UnsupportedVersion { version });
    }
    if reader.position() != bytes.len() {
        return Err(DecodeError::TrailingBytes {
            bytes: (bytes.len() - reader.position()) as u64,
        });
    }
    Ok(body)
}

/// Replaces `dir/name` with `body`, atomically and durably: durable when it returns Ok; a
/// crash before that leaves the old file (or none) or the new one, whole.
///
/// Errors: [`StorageError::NoSpace`] (the old file is untouched; the temporary file is removed
/// when possible, or at the next write), [`StorageError::Fatal`] when a write, rename or fsync
/// fails: stop the node.
pub fn write_file_atomically<F: Fs>(
    fs: &F,
    dir: &Path,
    name: &str,
    body: &[u8],
) -> Result<(), StorageError> {
    let path = dir.join(name);
    let temp_path = dir.join(format!("{name}{TEMP_SUFFIX}"));
    let fatal = |action: &str, error: io::Error| StorageError::Fatal {
        reason: format!("{action} {}: {error}", temp_path.display()),
    };
    match fs.remove(&temp_path) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(fatal("remove", error)),
    }
    let mut file = fs.create(&temp_path).map_err(|error| {
        if is_no_space(&error) {
            StorageError::NoSpace {
                path: temp_path.clone(),
            }
        } else {
            fatal("create", error)
        }
    })?;
    if let Err(error) = file.append(&encode_checked_file(body)) {
        if is_no_space(&error) {
            // Best effort: a leftover temporary file is removed by the next write.
            let _ = fs.remove(&temp_path);
            return Err(StorageError::NoSpace { path: temp_path });
        }
        return Err(fatal("append to", error));
    }
    file.sync_data()
        .map_err(|error| fatal("fdatasync", error))?;
    fs.rename(&temp_path, &path)
        .map_err(|error| fatal("rename", error))?;
    fs.sync_dir(dir).map_err(|error| StorageError::Fatal {
        reason: format!("fsync directory {}: {error}", dir.display()),
    })
}

/// Reads `dir/name` and verifies it: `Ok(None)` if there is no such file,
/// [`StorageError::Corrupt`] if it fails verification or is larger than `bytes_max` (then it
/// is not read into memory).
pub fn read_file_checked<F: Fs>(
    fs: &F,
    dir: &Path,
    name: &str,
    bytes_max: u64,
) -> Result<Option<Vec<u8>>, StorageError> {
    let path = dir.join(name);
    let io_error = |source| StorageError::Io {
        path: path.clone(),
        source,
    };
    let file = match fs.open(&path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io_error(error)),
    };
    let file_bytes = file.len_bytes().map_err(io_error)?;
    if file_bytes > bytes_max {
        return Err(StorageError::Corrupt {
            path,
            offset: 0,
            error: DecodeError::TooLarge {
                what: "file",
                bytes: file_bytes,
                bytes_max,
            },
        });
    }
    let mut bytes = vec![0u8; file_bytes as usize];
    let read = read_exact_at(&file, 0, &mut bytes).map_err(io_error)?;
    bytes.truncate(read);
    match decode_checked_file(&bytes) {
        Ok(body) => Ok(Some(body.to_vec())),
        Err(error) => Err(StorageError::Corrupt {
            path,
            offset: 0,
            error,
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::fs::SimFs;

    const DIR: &str = "/data";

    fn fs() -> SimFs {
        let fs = SimFs::new();
        fs.create_dir_all(Path::new(DIR)).unwrap();
        fs
    }

    #[test]
    fn written_file_reads_back() {
        let fs = fs();
        write_file_atomically(&fs, Path::new(DIR), "f", b"one").unwrap();
        write_file_atomically(&fs, Path::new(DIR), "f", b"two").unwrap();
        let read = read_file_checked(&fs, Path::new(DIR), "f", 1024).unwrap();
        assert_eq!(read.as_deref(), Some(&b"two"[..]));
    }

    #[test]
    fn missing_file_reads_as_none() {
        assert_eq!(
            read_file_checked(&fs(), Path::new(DIR), "f", 1024).unwrap(),
            None
        );
    }

    #[test]
    fn written_file_is_durable_when_write_returns() {
        let fs = fs();
        write_file_atomically(&fs, Path::new(DIR), "f", b"one").unwrap();
        fs.crash(|_| 0);
        let read = read_file_checked(&fs, Path::new(DIR), "f", 1024).unwrap();
        assert_eq!(read.as_deref(), Some(&b"one"[..]));
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let bytes = encode_checked_file(b"body");
        for position in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[position / 8] ^= 1 << (position % 8);
            assert!(decode_checked_file(&damaged).is_err());
        }
    }

    #[test]
    fn file_at_size_limit_is_read_and_one_past_is_refused() {
        let fs = fs();
        write_file_atomically(&fs, Path::new(DIR), "f", b"1234").unwrap();
        let limit = 4 + ENVELOPE_BYTES;
        assert!(read_file_checked(&fs, Path::new(DIR), "f", limit).is_ok());
        assert!(matches!(
            read_file_checked(&fs, Path::new(DIR), "f", limit - 1),
            Err(StorageError::Corrupt { .. })
        ));
    }

    #[test]
    fn full_disk_leaves_the_old_file() {
        let fs = fs();
        write_file_atomically(&fs, Path::new(DIR), "f", b"old").unwrap();
        fs.set_space_bytes_left(Some(5));
        let error = write_file_atomically(&fs, Path::new(DIR), "f", b"new").unwrap_err();
        assert!(matches!(error, StorageError::NoSpace { .. }));
        let read = read_file_checked(&fs, Path::new(DIR), "f", 1024).unwrap();
        assert_eq!(read.as_deref(), Some(&b"old"[..]));
        fs.set_space_bytes_left(None);
        write_file_atomically(&fs, Path::new(DIR), "f", b"new").unwrap();
    }
}
