//! The hard state file: raft's term, vote and commit index, replaced atomically.
//!
//! Stored as `<dir>/hard_state` through [`write_file_atomically`], body:
//!
//! ```text
//! offset  size  field
//!      0     8  term    u64 LE
//!      8     8  vote    u64 LE, 0 = none
//!     16     8  commit  u64 LE
//! ```

use crate::atomic_file::{read_file_checked, write_file_atomically, ENVELOPE_BYTES};
use crate::codec::{put_u64, FieldReader};
use crate::error::{DecodeError, StorageError};
use crate::fs::Fs;
use std::path::Path;

/// The file name of the hard state in its directory.
pub const HARD_STATE_FILE_NAME: &str = "hard_state";
const BODY_BYTES: usize = 24;

/// Raft's hard state as storage sees it: three opaque numbers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HardStateRecord {
    pub term: u64,
    /// The node voted for in `term`; 0 means none.
    pub vote: u64,
    pub commit: u64,
}

pub fn encode_hard_state(state: &HardStateRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(BODY_BYTES);
    put_u64(&mut out, state.term);
    put_u64(&mut out, state.vote);
    put_u64(&mut out, state.commit);
    out
}

/// Decodes a hard state body (the envelope already verified). Never panics.
pub fn decode_hard_state(bytes: &[u8]) -> Result<HardStateRecord, DecodeError> {
    let mut reader = FieldReader::new(bytes);
    let state = HardStateRecord {
        term: reader.u64()?,
        vote: reader.u64()?,
        commit: reader.u64()?,
    };
    if reader.position() != bytes.len() {
        return Err(DecodeError::TrailingBytes {
            bytes: (bytes.len() - reader.position()) as u64,
        });
    }
    Ok(state)
}

/// Saves the hard state in `dir`. Durable when it returns Ok; a crash before leaves the
/// previous hard state, whole. Errors as [`write_file_atomically`].
pub fn save_hard_state<F: Fs>(
    fs: &F,
    dir: &Path,
    state: &HardStateRecord,
) -> Result<(), StorageError> {
    write_file_atomically(fs, dir, HARD_STATE_FILE_NAME, &encode_hard_state(state))
}

/// Loads the hard state from `dir`: `Ok(None)` if none was ever saved,
/// [`StorageError::Corrupt`] if the file fails verification.
pub fn load_hard_state<F: Fs>(fs: &F, dir: &Path) -> Result<Option<HardStateRecord>, StorageError> {
    let bytes_max = BODY_BYTES as u64 + ENVELOPE_BYTES;
    let Some(body) = read_file_checked(fs, dir, HARD_STATE_FILE_NAME, bytes_max)? else {
        return Ok(None);
    };
    decode_hard_state(&body)
        .map(Some)
        .map_err(|error| StorageError::Corrupt {
            path: dir.join(HARD_STATE_FILE_NAME),
            offset: 0,
            error,
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::fs::SimFs;

    #[test]
    fn hard_state_round_trips_through_a_crash() {
        let fs = SimFs::new();
        let dir = Path::new("/node");
        fs.create_dir_all(dir).unwrap();
        assert_eq!(load_hard_state(&fs, dir).unwrap(), None);
        let state = HardStateRecord {
            term: 3,
            vote: 2,
            commit: 17,
        };
        save_hard_state(&fs, dir, &state).unwrap();
        fs.crash(|_| 0);
        assert_eq!(load_hard_state(&fs, dir).unwrap(), Some(state));
    }

    #[test]
    fn corrupt_hard_state_is_an_error() {
        let fs = SimFs::new();
        let dir = Path::new("/node");
        fs.create_dir_all(dir).unwrap();
        save_hard_state(&fs, dir, &HardStateRecord::default()).unwrap();
        fs.flip_bit(&dir.join(HARD_STATE_FILE_NAME), 20, 0).unwrap();
        assert!(matches!(
            load_hard_state(&fs, dir),
            Err(StorageError::Corrupt { .. })
        ));
    }

    #[test]
    fn hard_state_body_of_wrong_length_is_refused() {
        assert!(decode_hard_state(&[0u8; 23]).is_err());
        assert!(decode_hard_state(&[0u8; 25]).is_err());
        assert_eq!(
            decode_hard_state(&[0u8; 24]),
            Ok(HardStateRecord::default())
        );
    }
}
