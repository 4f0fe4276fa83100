//! The replica's snapshot of its state machine: the mvcc store's snapshot bytes plus the lease
//! table, in one versioned blob (raft's and the snapshot store's opaque `data`).
//!
//! ```text
//! snapshot = magic "chorusrs" | version u8 (1 or 2) | mvcc len u64 | mvcc bytes
//!            | lease count u32 | leases: id i64 | ttl_seconds i64
//!            | version 2 only: alarm count u32 (at least 1) | alarms: member_id u64 | alarm u8
//! ```
//!
//! Version 2 adds the alarm table ([`crate::alarm`]); a snapshot with no alarm raised is written
//! as version 1, so that every blob has one encoding. Alarms are strictly increasing by
//! (member id, alarm type), at most [`ALARMS_MAX`].
//!
//! Integers are little-endian. Lease ids are non-zero and strictly increasing; TTLs are in
//! `1..=LEASE_TTL_SECONDS_MAX`. The keys attached to each lease are not stored: they are the keys
//! of the mvcc snapshot whose `lease` names it. The mvcc bytes carry their own checksum; the
//! snapshot store checksums the whole file.
//!
//! A blob that starts with the mvcc snapshot's own magic (`"chorusmv"`, the format before leases)
//! is read as an mvcc snapshot with no leases.

use crate::alarm::{read_alarm_type, AlarmMember, ALARMS_MAX};
use crate::codec::{put_i64, put_len, put_u64, put_u8, DecodeError, Reader};
use crate::lease::LEASE_TTL_SECONDS_MAX;

/// The first bytes of a replica snapshot.
pub const STATE_SNAPSHOT_MAGIC: &[u8; 8] = b"chorusrs";
/// The format version written by [`encode_state_snapshot`] (and when no alarm is raised).
pub const STATE_SNAPSHOT_FORMAT_VERSION: u8 = 1;
/// The format version written when an alarm is raised: version 1 and the alarm table.
pub const STATE_SNAPSHOT_FORMAT_VERSION_ALARMS: u8 = 2;
/// The first bytes of an mvcc snapshot, read as a replica snapshot without leases.
const MVCC_SNAPSHOT_MAGIC: &[u8; 8] = b"chorusmv";
/// One lease record: id and TTL.
const LEASE_RECORD_BYTES: usize = 16;
/// One alarm record: member id and alarm type.
const ALARM_RECORD_BYTES: usize = 9;

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
    /// The raised alarms, increasing (empty in a version 1 snapshot).
    pub alarms: Vec<AlarmMember>,
}

/// Encodes a replica snapshot. Panics on leases the decoder would refuse (ids not strictly
/// increasing or zero, a TTL out of range): the lease table never holds such.
pub fn encode_state_snapshot(mvcc: &[u8], leases: &[LeaseRecord]) -> Vec<u8> {
    encode_state_snapshot_with_alarms(mvcc, leases, &[])
}

/// Encodes a replica snapshot with its alarm table (version 1 if `alarms` is empty, else 2).
/// Panics on leases or alarms the decoder would refuse (alarms not strictly increasing, more
/// than [`ALARMS_MAX`]): the tables never hold such.
pub fn encode_state_snapshot_with_alarms(
    mvcc: &[u8],
    leases: &[LeaseRecord],
    alarms: &[AlarmMember],
) -> Vec<u8> {
    if let Err(error) = check_leases(leases) {
        panic!("lease table not encodable: {error}");
    }
    if let Err(error) = check_alarms(alarms) {
        panic!("alarm table not encodable: {error}");
    }
    let mut out = Vec::with_capacity(
        8 + 1
            + 8
            + mvcc.len()
            + 4
            + leases.len() * LEASE_RECORD_BYTES
            + 4
            + alarms.len() * ALARM_RECORD_BYTES,
    );
    out.extend_from_slice(STATE_SNAPSHOT_MAGIC);
    let version = if alarms.is_empty() {
        STATE_SNAPSHOT_FORMAT_VERSION
    } else {
        STATE_SNAPSHOT_FORMAT_VERSION_ALARMS
    };
    put_u8(&mut out, version);
    put_u64(&mut out, mvcc.len() as u64);
    out.extend_from_slice(mvcc);
    put_len(&mut out, leases.len());
    for lease in leases {
        put_i64(&mut out, lease.id);
        put_i64(&mut out, lease.ttl_seconds);
    }
    if !alarms.is_empty() {
        put_len(&mut out, alarms.len());
        for alarm in alarms {
            put_u64(&mut out, alarm.member_id);
            put_u8(&mut out, alarm.alarm.code());
        }
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
            alarms: Vec::new(),
        });
    }
    if magic != STATE_SNAPSHOT_MAGIC {
        return Err(DecodeError::InvalidSnapshot {
            reason: "bad magic",
        });
    }
    let version = reader.u8()?;
    if version != STATE_SNAPSHOT_FORMAT_VERSION && version != STATE_SNAPSHOT_FORMAT_VERSION_ALARMS {
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
    let mut alarms = Vec::new();
    if version == STATE_SNAPSHOT_FORMAT_VERSION_ALARMS {
        let count = reader.count("alarm", ALARM_RECORD_BYTES)?;
        if count == 0 {
            return Err(DecodeError::InvalidSnapshot {
                reason: "no alarm in a version 2 snapshot",
            });
        }
        if count > ALARMS_MAX {
            return Err(DecodeError::InvalidSnapshot {
                reason: "more alarms than the limit",
            });
        }
        alarms.reserve(count);
        for _ in 0..count {
            let member_id = reader.u64()?;
            let alarm = read_alarm_type(&mut reader)?;
            alarms.push(AlarmMember { member_id, alarm });
        }
    }
    reader.finish()?;
    check_leases(&leases)?;
    check_alarms(&alarms)?;
    Ok(StateSnapshot {
        mvcc,
        leases,
        alarms,
    })
}

/// The length of the replica snapshot at the start of `bytes` (which may go on with padding):
/// the encoding is self-delimiting. Checks only the framing; decode the prefix to check the
/// rest. Never panics.
pub fn state_snapshot_len(bytes: &[u8]) -> Result<usize, DecodeError> {
    let mut reader = Reader::new(bytes);
    let magic = reader.take(8)?;
    if magic != STATE_SNAPSHOT_MAGIC {
        return Err(DecodeError::InvalidSnapshot {
            reason: "bad magic",
        });
    }
    let version = reader.u8()?;
    if version != STATE_SNAPSHOT_FORMAT_VERSION && version != STATE_SNAPSHOT_FORMAT_VERSION_ALARMS {
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
    reader.take(mvcc_len)?;
    let leases = reader.count("lease", LEASE_RECORD_BYTES)?;
    reader.take(leases * LEASE_RECORD_BYTES)?;
    if version == STATE_SNAPSHOT_FORMAT_VERSION_ALARMS {
        let alarms = reader.count("alarm", ALARM_RECORD_BYTES)?;
        reader.take(alarms * ALARM_RECORD_BYTES)?;
    }
    Ok(bytes.len() - reader.remaining())
}

fn check_alarms(alarms: &[AlarmMember]) -> Result<(), DecodeError> {
    if alarms.len() > ALARMS_MAX {
        return Err(DecodeError::InvalidSnapshot {
            reason: "more alarms than the limit",
        });
    }
    if alarms.windows(2).any(|pair| pair[0] >= pair[1]) {
        return Err(DecodeError::InvalidSnapshot {
            reason: "alarms not strictly increasing",
        });
    }
    Ok(())
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
#[allow(clippy::unwrap_used, clippy::expect_used)]
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
                alarms: Vec::new(),
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
    fn alarms_round_trip_in_version_2_and_none_writes_version_1() {
        use crate::alarm::AlarmType;
        let alarms = [
            AlarmMember {
                member_id: 7,
                alarm: AlarmType::NoSpace,
            },
            AlarmMember {
                member_id: 7,
                alarm: AlarmType::Corrupt,
            },
        ];
        let bytes = encode_state_snapshot_with_alarms(b"m", &[], &alarms);
        assert_eq!(bytes[8], STATE_SNAPSHOT_FORMAT_VERSION_ALARMS);
        let decoded = decode_state_snapshot(&bytes).expect("decode");
        assert_eq!(decoded.alarms, alarms);
        assert_eq!(
            encode_state_snapshot_with_alarms(b"m", &[], &[]),
            encode_state_snapshot(b"m", &[])
        );
        assert_eq!(
            encode_state_snapshot(b"m", &[])[8],
            STATE_SNAPSHOT_FORMAT_VERSION
        );
        // Out of order, and an empty version 2 table, are refused.
        let mut swapped = bytes.clone();
        let last = swapped.len() - 1;
        swapped.swap(last, last - 9);
        assert!(decode_state_snapshot(&swapped).is_err());
        let mut empty = encode_state_snapshot(b"m", &[]);
        empty[8] = STATE_SNAPSHOT_FORMAT_VERSION_ALARMS;
        empty.extend_from_slice(&0u32.to_le_bytes());
        assert_eq!(
            decode_state_snapshot(&empty),
            Err(DecodeError::InvalidSnapshot {
                reason: "no alarm in a version 2 snapshot"
            })
        );
    }

    #[test]
    fn the_length_of_a_padded_snapshot_is_found() {
        use crate::alarm::AlarmType;
        let alarms = [AlarmMember {
            member_id: 3,
            alarm: AlarmType::NoSpace,
        }];
        let leases = [LeaseRecord {
            id: 9,
            ttl_seconds: 60,
        }];
        for bytes in [
            encode_state_snapshot_with_alarms(b"mvcc", &leases, &alarms),
            encode_state_snapshot(b"mvcc", &leases),
        ] {
            let mut padded = bytes.clone();
            padded.resize(512, 0);
            assert_eq!(state_snapshot_len(&padded), Ok(bytes.len()));
            assert!(state_snapshot_len(&bytes[..bytes.len() - 1]).is_err());
        }
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
}
