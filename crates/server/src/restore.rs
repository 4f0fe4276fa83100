//! `chorus snapshot restore`: a new member's data directory from a file `etcdctl snapshot save`
//! (or any client of Maintenance `Snapshot`) wrote from a chorus member. The file is the
//! replica's state snapshot, zeros up to a multiple of 512 bytes, then the SHA-256 of the
//! padded data (grpc/maintenance_snapshot.rs). The checksum, the padding and the whole
//! snapshot are checked before anything is written; the raft state is then seeded
//! (`chorus_replica::seed`) for the cluster of the configuration's `initial_cluster`, and the
//! member's `chorus server` restores its key-value database from it when it starts. Every
//! member of the new cluster is restored from the same file, as with etcd.

use crate::config::ServerConfig;
use crate::members::Members;
use chorus_replica::seed::{seed_from_state_snapshot, Seeded};
use chorus_replica::snapshot::state_snapshot_len;
use chorus_replica::DurableConfig;
use chorus_storage::RealFs;
use sha2::{Digest, Sha256};
use std::path::Path;

/// The SHA-256 that ends a saved snapshot.
const CHECKSUM_BYTES: usize = 32;

/// Why a restore failed.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("reading {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("{0} exists and is not empty: restore into a new data directory")]
    DataDirNotEmpty(String),
    #[error("the snapshot file is damaged: {0}")]
    Damaged(String),
    #[error(transparent)]
    Replica(#[from] chorus_replica::ReplicaError),
}

/// Restores the snapshot file at `path` into `config.data_dir` for the member `config.name` of
/// `config.initial_cluster`.
pub fn restore_snapshot_file(path: &Path, config: &ServerConfig) -> Result<Seeded, RestoreError> {
    let bytes = std::fs::read(path).map_err(|error| RestoreError::Read {
        path: path.display().to_string(),
        error,
    })?;
    let blob = snapshot_blob(&bytes)?;
    let not_empty = std::fs::read_dir(&config.data_dir)
        .map(|mut entries| entries.next().is_some())
        .unwrap_or(false);
    if not_empty {
        return Err(RestoreError::DataDirNotEmpty(
            config.data_dir.display().to_string(),
        ));
    }
    let members = Members::new(config);
    let voters = members.list().into_iter().map(|member| member.id);
    let seeded = seed_from_state_snapshot(
        RealFs,
        &config.data_dir.join("raft"),
        &DurableConfig::default(),
        blob,
        voters,
    )?;
    Ok(seeded)
}

/// The state snapshot inside a saved file: the checksum must match, and only zeros may follow
/// the snapshot.
pub fn snapshot_blob(bytes: &[u8]) -> Result<&[u8], RestoreError> {
    if bytes.len() < CHECKSUM_BYTES {
        return Err(RestoreError::Damaged(format!("{} bytes", bytes.len())));
    }
    let (data, checksum) = bytes.split_at(bytes.len() - CHECKSUM_BYTES);
    if Sha256::digest(data).as_slice() != checksum {
        return Err(RestoreError::Damaged("SHA-256 mismatch".to_string()));
    }
    let len = state_snapshot_len(data)
        .map_err(|error| RestoreError::Damaged(format!("not a chorus snapshot: {error}")))?;
    if data[len..].iter().any(|byte| *byte != 0) {
        return Err(RestoreError::Damaged(
            "bytes other than padding after the snapshot".to_string(),
        ));
    }
    Ok(&data[..len])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chorus_replica::snapshot::encode_state_snapshot;

    fn saved(blob: &[u8]) -> Vec<u8> {
        let mut file = blob.to_vec();
        file.resize(512, 0);
        let checksum = Sha256::digest(&file);
        file.extend_from_slice(&checksum);
        file
    }

    #[test]
    fn the_blob_comes_out_of_a_saved_file_and_damage_is_refused() {
        let blob = encode_state_snapshot(b"mvcc", &[], None, &[]);
        let file = saved(&blob);
        assert_eq!(snapshot_blob(&file).unwrap(), blob.as_slice());
        let mut flipped = file.clone();
        flipped[3] ^= 1;
        assert!(matches!(
            snapshot_blob(&flipped),
            Err(RestoreError::Damaged(_))
        ));
        let mut junk = blob.clone();
        junk.resize(512, 0);
        junk[500] = 1;
        let checksum = Sha256::digest(&junk);
        junk.extend_from_slice(&checksum);
        assert!(matches!(
            snapshot_blob(&junk),
            Err(RestoreError::Damaged(_))
        ));
        assert!(snapshot_blob(&[0; 5]).is_err());
    }
}
