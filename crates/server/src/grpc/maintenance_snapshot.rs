//! Maintenance.Snapshot: streams this member's applied state, taken at one point of the group
//! task (so it is consistent), as the replica's state snapshot encoding
//! (`chorus_replica::snapshot`: the mvcc store's records, the lease table, the alarm table) —
//! the same blob raft ships to a lagging follower, not the redb file. It goes out in chunks of
//! [`SNAPSHOT_CHUNK_BYTES`], each with the bytes still to come (`remaining_bytes`), and, as etcd
//! does, a last chunk holding the SHA-256 of everything before it (32 bytes, `remaining_bytes`
//! 0). etcd's data is a bbolt file, a whole number of pages, and `etcdctl snapshot save` checks
//! that the size it received is a multiple of 512 plus the 32 checksum bytes; so the blob is
//! padded with zeros to a multiple of [`SNAPSHOT_PADDING_BYTES`] first (the state snapshot
//! encoding is self-delimiting: a reader stops at its end and ignores the padding), and the
//! SHA-256 covers the padded data. The saved file is thus: the blob, zeros, the SHA-256.
//! `etcdctl snapshot restore` and `snapshot status` expect a bbolt file and do not read it.

use super::ServerState;
use chorus_proto::etcdserverpb as pb;
use sha2::{Digest, Sha256};
use tonic::{Request, Response, Status};

/// Bytes of state per message (etcd sends 32 KiB; this halves the message count).
pub const SNAPSHOT_CHUNK_BYTES: usize = 64 * 1024;
/// The data before the checksum is a multiple of this many bytes, as etcdctl expects.
pub const SNAPSHOT_PADDING_BYTES: usize = 512;
/// Messages buffered towards a slow client before the sender waits.
const SNAPSHOT_CHUNKS_BUFFERED_MAX: usize = 16;

pub type SnapshotStream = std::pin::Pin<
    Box<dyn tokio_stream::Stream<Item = Result<pb::SnapshotResponse, Status>> + Send + 'static>,
>;

pub async fn snapshot(
    state: &ServerState,
    _request: Request<pb::SnapshotRequest>,
) -> Result<Response<SnapshotStream>, Status> {
    let (mut blob, header) = state.group.state_snapshot().await?;
    pad(&mut blob);
    let header = state.header(header);
    let (sender, receiver) = tokio::sync::mpsc::channel(SNAPSHOT_CHUNKS_BUFFERED_MAX);
    tokio::spawn(async move {
        for response in snapshot_responses(&blob, &header) {
            if sender.send(Ok(response)).await.is_err() {
                return;
            }
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(receiver);
    Ok(Response::new(Box::pin(stream)))
}

/// Zeros up to the next multiple of [`SNAPSHOT_PADDING_BYTES`].
pub fn pad(blob: &mut Vec<u8>) {
    let padded = blob.len().div_ceil(SNAPSHOT_PADDING_BYTES) * SNAPSHOT_PADDING_BYTES;
    blob.resize(padded, 0);
}

/// The messages of one snapshot: the blob in chunks, then its SHA-256. The first message
/// carries the header and etcd's API version.
pub fn snapshot_responses<'a>(
    blob: &'a [u8],
    header: &'a pb::ResponseHeader,
) -> impl Iterator<Item = pb::SnapshotResponse> + 'a {
    let checksum = Sha256::digest(blob).to_vec();
    let total = (blob.len() + checksum.len()) as u64;
    let mut sent = 0u64;
    let mut first = true;
    blob.chunks(SNAPSHOT_CHUNK_BYTES)
        .map(<[u8]>::to_vec)
        .chain(std::iter::once(checksum))
        .map(move |chunk| {
            sent += chunk.len() as u64;
            let response = pb::SnapshotResponse {
                header: first.then_some(*header),
                remaining_bytes: total - sent,
                blob: chunk.into(),
                version: if first {
                    super::maintenance_status::ETCD_API_VERSION.to_string()
                } else {
                    String::new()
                },
            };
            first = false;
            response
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn chunks_count_down_and_end_with_the_sha256_of_the_blob() {
        let blob: Vec<u8> = (0..SNAPSHOT_CHUNK_BYTES * 2 + 10)
            .map(|i| i as u8)
            .collect();
        let header = pb::ResponseHeader::default();
        let responses: Vec<_> = snapshot_responses(&blob, &header).collect();
        assert_eq!(responses.len(), 4);
        assert!(responses[0].header.is_some() && responses[1].header.is_none());
        assert_eq!(
            responses[0].remaining_bytes,
            (SNAPSHOT_CHUNK_BYTES + 10 + 32) as u64
        );
        assert_eq!(responses[2].blob.len(), 10);
        assert_eq!(responses[3].remaining_bytes, 0);
        let mut file: Vec<u8> = responses.iter().flat_map(|r| r.blob.to_vec()).collect();
        let checksum = file.split_off(blob.len());
        assert_eq!(file, blob);
        assert_eq!(checksum, Sha256::digest(&blob).to_vec());
    }

    #[test]
    fn padding_reaches_a_multiple_of_512_and_keeps_one() {
        let mut blob = vec![1u8; 513];
        pad(&mut blob);
        assert_eq!(blob.len(), 1024);
        assert_eq!(&blob[512..514], &[1, 0]);
        pad(&mut blob);
        assert_eq!(blob.len(), 1024);
    }

    #[test]
    fn an_empty_blob_is_one_checksum_message() {
        let header = pb::ResponseHeader::default();
        let responses: Vec<_> = snapshot_responses(&[], &header).collect();
        assert_eq!(responses.len(), 1);
        assert_eq!(responses[0].blob.len(), 32);
        assert_eq!(responses[0].remaining_bytes, 0);
    }
}
