//! The replica's snapshot of its state machine: the mvcc store's snapshot bytes plus the lease
//! table, in one versioned blob (raft's and the snapshot store's opaque `data`).
//!
//! ```text
//! snapshot = magic "chorusrs" | version u8 (= 1) | mvcc len u64 | mvcc bytes
//!            | lease count u32 | leases: id i64 | ttl_seconds i64
//!            | (version 2 only) member table (`members`: version u8 | cluster_id u64 | members)
//! ```
//!
//! Version 2 adds the replicated member table; a version 1 snapshot has none (the replica
//! then keeps the table it was configured with).
//!
//! Integers are little-endian. Lease ids are non-zero and strictly increasing; TTLs are in
//! `1..=LEASE_TTL_SECONDS_MAX`. The keys attached to each lease are not stored: they are the keys
//! of the mvcc snapshot whose `lease` names it. The mvcc bytes carry their own checksum; the
//! snapshot store checksums the whole file.
//!
//! A blob that starts with the mvcc snapshot's own magic (`"chorusmv"`, the format before leases)
//! is read as an mvcc snapshot with no leases.

use crate::codec::{put_i64, put_len, put_u64, put_u8, DecodeError, Reader};
use crate::lease::LEASE_TTL_SECONDS_MAX;
use crate::members::{encode_member_table, read_member_table, MemberTable};

/// The first bytes of a replica snapshot.
pub const STATE_SNAPSHOT_MAGIC: &[u8; 8] = b"chorusrs";
/// The format version written by [`encode_state_snapshot`] without a member table.
pub const STATE_SNAPSHOT_FORMAT_VERSION: u8 = 1;
/// The format version written by [`encode_state_snapshot`] with a member table.
pub const STATE_SNAPSHOT_WITH_MEMBERS_FORMAT_VERSION: u8 = 2;
/// The first bytes of an mvcc snapshot, read as a replica snapshot without leases.
const MVCC_SNAPSHOT_MAGIC: &[u8; 8] = b"chorusmv";
/// One lease record: id and TTL.
const LEASE_RECORD_BYTES: usize = 16;

/// A lease as the snapshot keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseRecord {
    pub id: i64,
    pub ttl_seconds: i64,
}

/// A decoded replica snapshot; `mvcc` borrows from the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateSnapshot<'a> {
    /// The mvcc store's snapshot bytes (`chorus_mvcc::Store::snapshot_bytes`).
    pub mvcc: &'a [u8],
    /// The lease table, by increasing id.
    pub leases: Vec<LeaseRecord>,
    /// The replicated member table (version 2), if the snapshot has one.
    pub members: Option<MemberTable>,
}

/// Encodes a replica snapshot. Panics on leases the decoder would refuse (ids not strictly
/// increasing or zero, a TTL out of range): the lease table never holds such.
pub fn encode_state_snapshot(
    mvcc: &[u8],
    leases: &[LeaseRecord],
    members: Option<&MemberTable>,
) -> Vec<u8> {
    if let Err(error) = check_leases(leases) {
        panic!("lease table not encodable: {error}");
    }
    let mut out = Vec::with_capacity(8 + 1 + 8 + mvcc.len() + 4 + leases.len() * 16);
    out.extend_from_slice(STATE_SNAPSHOT_MAGIC);
    put_u8(
        &mut out,
        match members {
            None => STATE_SNAPSHOT_FORMAT_VERSION,
            Some(_) => STATE_SNAPSHOT_WITH_MEMBERS_FORMAT_VERSION,
        },
    );
    put_u64(&mut out, mvcc.len() as u64);
    out.extend_from_slice(mvcc);
    put_len(&mut out, leases.len());
    for lease in leases {
        put_i64(&mut out, lease.id);
        put_i64(&mut out, lease.ttl_seconds);
    }
    if let Some(members) = members {
        out.extend_from_slice(&encode_member_table(members));
    }
    out
}

/// Decodes a replica snapshot (or a bare mvcc snapshot, with no leases). Never panics; allocates
/// only in proportion to `bytes`. The mvcc part is not decoded here (the store checks it when it
/// restores it).
pub fn decode_state_snapshot(bytes: &[u8]) -> Result<StateSnapshot<'_>, DecodeError> {
    let mut reader = Reader::new(bytes);
    let magic = reader.take(8)?;
    if magic == MVCC_SNAPSHOT_MAGIC {
        return Ok(StateSnapshot {
            mvcc: bytes,
            leases: Vec::new(),
            members: None,
        });
    }
    if magic != STATE_SNAPSHOT_MAGIC {
        return Err(DecodeError::InvalidSnapshot {
            reason: "bad magic",
        });
    }
    let version = reader.u8()?;
    if version != STATE_SNAPSHOT_FORMAT_VERSION
        && version != STATE_SNAPSHOT_WITH_MEMBERS_FORMAT_VERSION
    {
        return Err(DecodeError::UnsupportedVersion {
            what: "replica snapshot",
            version,
        });
    }
    let mvcc_len = reader.u64()?;
    let mvcc_len = match usize::try_from(mvcc_len) {
        Ok(len) if len <= reader.remaining() => len,
        _ => {
            return Err(DecodeError::Truncated {
                needed_bytes: mvcc_len,
                available_bytes: reader.remaining() as u64,
            })
        }
    };
    let mvcc = reader.take(mvcc_len)?;
    let count = reader.count("lease", LEASE_RECORD_BYTES)?;
    let mut leases = Vec::with_capacity(count);
    for _ in 0..count {
        leases.push(LeaseRecord {
            id: reader.i64()?,
            ttl_seconds: reader.i64()?,
        });
    }
    let members = if version == STATE_SNAPSHOT_WITH_MEMBERS_FORMAT_VERSION {
        Some(read_member_table(&mut reader)?)
    } else {
        None
    };
    reader.finish()?;
    check_leases(&leases)?;
    Ok(StateSnapshot {
        mvcc,
        leases,
        members,
    })
}

fn check_leases(leases: &[LeaseRecord]) -> Result<(), DecodeError> {
    if leases.iter().any(|lease| lease.id == 0) {
        return Err(DecodeError::InvalidSnapshot {
            reason: "lease id 0",
        });
    }
    if leases.windows(2).any(|pair| pair[0].id >= pair[1].id) {
        return Err(DecodeError::InvalidSnapshot {
            reason: "lease ids not strictly increasing",
        });
    }
    if leases
        .iter()
        .any(|lease| !(1..=LEASE_TTL_SECONDS_MAX).contains(&lease.ttl_seconds))
    {
        return Err(DecodeError::InvalidSnapshot {
            reason: "lease TTL out of range",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_mvcc_snapshot_reads_as_one_without_leases() {
        let bytes = b"chorusmv and the rest";
        let snapshot = decode_state_snapshot(bytes);
        assert_eq!(
            snapshot,
            Ok(StateSnapshot {
                mvcc: bytes,
                leases: Vec::new(),
                members: None,
            })
        );
    }

    #[test]
    fn a_forged_mvcc_length_is_refused_before_allocating() {
        let mut bytes = STATE_SNAPSHOT_MAGIC.to_vec();
        bytes.push(STATE_SNAPSHOT_FORMAT_VERSION);
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            decode_state_snapshot(&bytes),
            Err(DecodeError::Truncated { .. })
        ));
    }

    #[test]
    fn leases_out_of_order_are_refused() {
        let mut bytes = encode_state_snapshot(
            b"m",
            &[
                LeaseRecord {
                    id: 1,
                    ttl_seconds: 5,
                },
                LeaseRecord {
                    id: 2,
                    ttl_seconds: 5,
                },
            ],
            None,
        );
        let second_id = bytes.len() - 16;
        bytes[second_id] = 1;
        assert_eq!(
            decode_state_snapshot(&bytes),
            Err(DecodeError::InvalidSnapshot {
                reason: "lease ids not strictly increasing"
            })
        );
    }

    #[test]
    fn the_member_table_round_trips_in_a_version_2_snapshot() {
        use crate::members::MemberRecord;
        let members = MemberTable::new(
            5,
            [MemberRecord {
                id: 3,
                name: "n3".to_string(),
                peer_urls: vec!["http://h:3".to_string()],
                client_urls: Vec::new(),
                is_learner: false,
            }],
        );
        let leases = [LeaseRecord {
            id: 1,
            ttl_seconds: 5,
        }];
        let bytes = encode_state_snapshot(b"m", &leases, Some(&members));
        assert_eq!(
            decode_state_snapshot(&bytes),
            Ok(StateSnapshot {
                mvcc: b"m",
                leases: leases.to_vec(),
                members: Some(members),
            })
        );
        for len in 0..bytes.len() {
            assert!(decode_state_snapshot(&bytes[..len]).is_err());
        }
    }
}
