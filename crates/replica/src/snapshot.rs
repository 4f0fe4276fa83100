//! The replica's snapshot of its state machine: the mvcc store's snapshot bytes plus the lease
//! table, the member table and the alarm table, in one versioned blob (raft's and the snapshot
//! store's opaque `data`).
//!
//! ```text
//! snapshot = magic "chorusrs" | version u8 (1, 2 or 3) | mvcc len u64 | mvcc bytes
//!            | lease count u32 | leases: id i64 | ttl_seconds i64
//!            | version 2 and 3: has members u8 (0 or 1) | [member table (`members`:
//!              version u8 | cluster_id u64 | members)]
//!              | alarm count u32 | alarms: member_id u64 | alarm u8
//!            | version 3 only: session entry count u32 | entries: key bytes | value bytes
//! ```
//!
//! Integers are little-endian. Lease ids are non-zero and strictly increasing; TTLs are in
//! `1..=LEASE_TTL_SECONDS_MAX`. The keys attached to each lease are not stored: they are the keys
//! of the mvcc snapshot whose `lease` names it. The mvcc bytes carry their own checksum; the
//! snapshot store checksums the whole file.
//!
//! Version 2 adds the replicated member table (a version 1 snapshot has none: the replica then
//! keeps the table it was configured with) and the alarm table ([`crate::alarm`]; strictly
//! increasing by (member id, alarm type), at most [`ALARMS_MAX`]). A snapshot with neither is
//! written as version 1, so that every blob has one encoding.
//!
//! Version 3 adds the client session table ([`crate::session`]): exactly the entries of the mvcc
//! backend's side table, in strictly increasing key order; written only when a session is open
//! (so version 3 never has an empty session section).
//!
//! A blob that starts with the mvcc snapshot's own magic (`"chorusmv"`, the format before leases)
//! is read as an mvcc snapshot with no leases.

use crate::alarm::{read_alarm_type, AlarmMember, ALARMS_MAX};
use crate::codec::put_bytes;
use crate::codec::{put_i64, put_len, put_u64, put_u8, DecodeError, Reader};
use crate::lease::LEASE_TTL_SECONDS_MAX;
use crate::members::{encode_member_table, read_member_table, MemberTable};
use crate::session::check_entries;
use chorus_mvcc::SideEntry;

/// The first bytes of a replica snapshot.
pub const STATE_SNAPSHOT_MAGIC: &[u8; 8] = b"chorusrs";
/// The first bytes of an mvcc snapshot, read as a replica snapshot without leases.
const MVCC_SNAPSHOT_MAGIC: &[u8; 8] = b"chorusmv";
/// One lease record: id and TTL.
const LEASE_RECORD_BYTES: usize = 16;
/// One alarm record: member id and alarm type.
const ALARM_RECORD_BYTES: usize = 9;

/// The format version written without a member table and with no alarm raised.
pub const STATE_SNAPSHOT_FORMAT_VERSION: u8 = 1;
/// The format version written with a member table or an alarm: version 1 and both tables.
pub const STATE_SNAPSHOT_WITH_TABLES_FORMAT_VERSION: u8 = 2;
/// The format version written with an open client session: version 2 and the session table.
pub const STATE_SNAPSHOT_WITH_SESSIONS_FORMAT_VERSION: u8 = 3;
/// One session entry at least: its key and value lengths.
const SESSION_ENTRY_BYTES_MIN: usize = 8;

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
    /// The raised alarms, increasing (empty in a version 1 snapshot).
    pub alarms: Vec<AlarmMember>,
    /// The client session table as side-table entries (version 3; empty before).
    pub sessions: Vec<SideEntry>,
}

/// Encodes a replica snapshot (version 1 if there is no member table and no alarm, else 2).
/// Panics on leases or alarms the decoder would refuse (lease ids not strictly increasing or
/// zero, a TTL out of range, alarms not strictly increasing or more than [`ALARMS_MAX`]): the
/// tables never hold such.
pub fn encode_state_snapshot(
    mvcc: &[u8],
    leases: &[LeaseRecord],
    members: Option<&MemberTable>,
    alarms: &[AlarmMember],
) -> Vec<u8> {
    encode_state_snapshot_with_sessions(mvcc, leases, members, alarms, &[])
}

/// [`encode_state_snapshot`] with the client session table (`sessions`, the side-table entries;
/// version 3 if there are any). Panics on entries the decoder would refuse.
pub fn encode_state_snapshot_with_sessions(
    mvcc: &[u8],
    leases: &[LeaseRecord],
    members: Option<&MemberTable>,
    alarms: &[AlarmMember],
    sessions: &[SideEntry],
) -> Vec<u8> {
    let tail = encode_state_snapshot_tail(leases, members, alarms, sessions);
    let mut out = tail.head(mvcc.len() as u64);
    out.reserve(mvcc.len() + tail.bytes.len());
    out.extend_from_slice(mvcc);
    out.extend_from_slice(&tail.bytes);
    out
}

/// A replica snapshot but for its mvcc part: the format version and the bytes after the mvcc
/// snapshot (the tables). A snapshot written in pieces ([`crate::SnapshotJob`]) is
/// `tail.head(mvcc length) | mvcc bytes | tail.bytes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateSnapshotTail {
    version: u8,
    /// The tables: leases, then (version 2 and 3) members and alarms, then (3) sessions.
    pub bytes: Vec<u8>,
}

impl StateSnapshotTail {
    /// The bytes before the mvcc snapshot of `mvcc_bytes` bytes: magic, version, length.
    pub fn head(&self, mvcc_bytes: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(STATE_SNAPSHOT_MAGIC.len() + 1 + 8);
        out.extend_from_slice(STATE_SNAPSHOT_MAGIC);
        put_u8(&mut out, self.version);
        put_u64(&mut out, mvcc_bytes);
        out
    }
}

/// Encodes the tables of a replica snapshot; panics as [`encode_state_snapshot_with_sessions`].
pub fn encode_state_snapshot_tail(
    leases: &[LeaseRecord],
    members: Option<&MemberTable>,
    alarms: &[AlarmMember],
    sessions: &[SideEntry],
) -> StateSnapshotTail {
    if let Err(error) = check_entries(sessions) {
        panic!("session table not encodable: {error}");
    }
    if let Err(error) = check_leases(leases) {
        panic!("lease table not encodable: {error}");
    }
    if let Err(error) = check_alarms(alarms) {
        panic!("alarm table not encodable: {error}");
    }
    let mut out = Vec::with_capacity(
        4 + leases.len() * LEASE_RECORD_BYTES + 1 + 4 + alarms.len() * ALARM_RECORD_BYTES,
    );
    let tables = members.is_some() || !alarms.is_empty() || !sessions.is_empty();
    let version = if !sessions.is_empty() {
        STATE_SNAPSHOT_WITH_SESSIONS_FORMAT_VERSION
    } else if tables {
        STATE_SNAPSHOT_WITH_TABLES_FORMAT_VERSION
    } else {
        STATE_SNAPSHOT_FORMAT_VERSION
    };
    put_len(&mut out, leases.len());
    for lease in leases {
        put_i64(&mut out, lease.id);
        put_i64(&mut out, lease.ttl_seconds);
    }
    if tables {
        match members {
            Some(members) => {
                put_u8(&mut out, 1);
                out.extend_from_slice(&encode_member_table(members));
            }
            None => put_u8(&mut out, 0),
        }
        put_len(&mut out, alarms.len());
        for alarm in alarms {
            put_u64(&mut out, alarm.member_id);
            put_u8(&mut out, alarm.alarm.code());
        }
    }
    if !sessions.is_empty() {
        put_len(&mut out, sessions.len());
        for (key, value) in sessions {
            put_bytes(&mut out, key);
            put_bytes(&mut out, value);
        }
    }
    StateSnapshotTail {
        version,
        bytes: out,
    }
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
            alarms: Vec::new(),
            sessions: Vec::new(),
        });
    }
    let (mvcc, leases, members, alarms, sessions) = read_sections(&mut reader, magic)?;
    reader.finish()?;
    check_leases(&leases)?;
    check_alarms(&alarms)?;
    check_entries(&sessions)?;
    Ok(StateSnapshot {
        mvcc,
        leases,
        members,
        alarms,
        sessions,
    })
}

/// The length of the replica snapshot at the start of `bytes` (which may go on with padding):
/// the encoding is self-delimiting. Never panics.
pub fn state_snapshot_len(bytes: &[u8]) -> Result<usize, DecodeError> {
    let mut reader = Reader::new(bytes);
    let magic = reader.take(8)?;
    read_sections(&mut reader, magic)?;
    Ok(bytes.len() - reader.remaining())
}

type Sections<'a> = (
    &'a [u8],
    Vec<LeaseRecord>,
    Option<MemberTable>,
    Vec<AlarmMember>,
    Vec<SideEntry>,
);

/// Reads everything after the magic of a replica snapshot.
fn read_sections<'a>(reader: &mut Reader<'a>, magic: &[u8]) -> Result<Sections<'a>, DecodeError> {
    if magic != STATE_SNAPSHOT_MAGIC {
        return Err(DecodeError::InvalidSnapshot {
            reason: "bad magic",
        });
    }
    let version = reader.u8()?;
    if version != STATE_SNAPSHOT_FORMAT_VERSION
        && version != STATE_SNAPSHOT_WITH_TABLES_FORMAT_VERSION
        && version != STATE_SNAPSHOT_WITH_SESSIONS_FORMAT_VERSION
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
    let mut members = None;
    let mut alarms = Vec::new();
    let mut sessions = Vec::new();
    if version >= STATE_SNAPSHOT_WITH_TABLES_FORMAT_VERSION {
        members = match reader.u8()? {
            0 => None,
            1 => Some(read_member_table(reader)?),
            _ => {
                return Err(DecodeError::InvalidSnapshot {
                    reason: "member table flag is neither 0 nor 1",
                })
            }
        };
        let count = reader.count("alarm", ALARM_RECORD_BYTES)?;
        if count > ALARMS_MAX {
            return Err(DecodeError::InvalidSnapshot {
                reason: "more alarms than the limit",
            });
        }
        alarms.reserve(count);
        for _ in 0..count {
            let member_id = reader.u64()?;
            let alarm = read_alarm_type(reader)?;
            alarms.push(AlarmMember { member_id, alarm });
        }
        if version == STATE_SNAPSHOT_WITH_TABLES_FORMAT_VERSION
            && members.is_none()
            && alarms.is_empty()
        {
            return Err(DecodeError::InvalidSnapshot {
                reason: "a version 2 snapshot with neither members nor alarms",
            });
        }
    }
    if version == STATE_SNAPSHOT_WITH_SESSIONS_FORMAT_VERSION {
        let count = reader.count("session entry", SESSION_ENTRY_BYTES_MIN)?;
        if count == 0 {
            return Err(DecodeError::InvalidSnapshot {
                reason: "a version 3 snapshot with no session",
            });
        }
        sessions.reserve(count);
        for _ in 0..count {
            let key = reader.bytes()?;
            let value = reader.bytes()?;
            sessions.push((key, value));
        }
    }
    Ok((mvcc, leases, members, alarms, sessions))
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

pub(crate) fn check_leases(leases: &[LeaseRecord]) -> Result<(), DecodeError> {
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
                members: None,
                alarms: Vec::new(),
                sessions: Vec::new(),
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
        let bytes = encode_state_snapshot(b"m", &[], None, &alarms);
        assert_eq!(bytes[8], STATE_SNAPSHOT_WITH_TABLES_FORMAT_VERSION);
        let decoded = decode_state_snapshot(&bytes).expect("decode");
        assert_eq!(decoded.alarms, alarms);
        assert_eq!(
            encode_state_snapshot(b"m", &[], None, &[])[8],
            STATE_SNAPSHOT_FORMAT_VERSION
        );
        // Out of order, and an empty version 2 table, are refused.
        let mut swapped = bytes.clone();
        let last = swapped.len() - 1;
        swapped.swap(last, last - 9);
        assert!(decode_state_snapshot(&swapped).is_err());
        let mut empty = encode_state_snapshot(b"m", &[], None, &[]);
        empty[8] = STATE_SNAPSHOT_WITH_TABLES_FORMAT_VERSION;
        empty.push(0);
        empty.extend_from_slice(&0u32.to_le_bytes());
        assert_eq!(
            decode_state_snapshot(&empty),
            Err(DecodeError::InvalidSnapshot {
                reason: "a version 2 snapshot with neither members nor alarms"
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
            encode_state_snapshot(b"mvcc", &leases, None, &alarms),
            encode_state_snapshot(b"mvcc", &leases, None, &[]),
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
            None,
            &[],
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
        let bytes = encode_state_snapshot(b"m", &leases, Some(&members), &[]);
        assert_eq!(
            decode_state_snapshot(&bytes),
            Ok(StateSnapshot {
                mvcc: b"m",
                leases: leases.to_vec(),
                members: Some(members),
                alarms: Vec::new(),
                sessions: Vec::new(),
            })
        );
        for len in 0..bytes.len() {
            assert!(decode_state_snapshot(&bytes[..len]).is_err());
        }
    }

    fn one_session_entries() -> Vec<SideEntry> {
        use crate::session::Sessions;
        let mut sessions = Sessions::new(10);
        let mut side = chorus_mvcc::SideChanges::default();
        let (id, _) = sessions.open(9, 30, 10, &mut side).unwrap();
        sessions.begin(id, 1, 0, &mut side);
        sessions.record(id, 1, &Err(chorus_mvcc::Error::KeyNotFound), &mut side);
        sessions.entries()
    }

    #[test]
    fn sessions_round_trip_in_version_3_and_versions_1_and_2_still_decode() {
        let sessions = one_session_entries();
        let leases = [LeaseRecord {
            id: 1,
            ttl_seconds: 5,
        }];
        let bytes = encode_state_snapshot_with_sessions(b"m", &leases, None, &[], &sessions);
        assert_eq!(bytes[8], STATE_SNAPSHOT_WITH_SESSIONS_FORMAT_VERSION);
        let decoded = decode_state_snapshot(&bytes).unwrap();
        assert_eq!(decoded.sessions, sessions);
        assert_eq!(decoded.leases, leases);
        assert_eq!(state_snapshot_len(&bytes), Ok(bytes.len()));
        for len in 0..bytes.len() {
            assert!(
                decode_state_snapshot(&bytes[..len]).is_err(),
                "prefix {len}"
            );
        }
        // Without sessions the older versions are written, and decode with no sessions.
        let v1 = encode_state_snapshot_with_sessions(b"m", &leases, None, &[], &[]);
        assert_eq!(v1[8], STATE_SNAPSHOT_FORMAT_VERSION);
        assert!(decode_state_snapshot(&v1).unwrap().sessions.is_empty());
        let alarms = [AlarmMember {
            member_id: 1,
            alarm: crate::alarm::AlarmType::NoSpace,
        }];
        let v2 = encode_state_snapshot(b"m", &leases, None, &alarms);
        assert_eq!(v2[8], STATE_SNAPSHOT_WITH_TABLES_FORMAT_VERSION);
        assert!(decode_state_snapshot(&v2).unwrap().sessions.is_empty());
        // A version 3 blob with an empty session section is refused (not canonical).
        let mut empty = v1.clone();
        empty[8] = STATE_SNAPSHOT_WITH_SESSIONS_FORMAT_VERSION;
        empty.push(0);
        empty.extend_from_slice(&0u32.to_le_bytes());
        empty.extend_from_slice(&0u32.to_le_bytes());
        assert_eq!(
            decode_state_snapshot(&empty),
            Err(DecodeError::InvalidSnapshot {
                reason: "a version 3 snapshot with no session"
            })
        );
        // Garbage in a session entry is refused.
        let mut garbled = bytes.clone();
        let last = garbled.len() - 1;
        garbled[last] ^= 0xff;
        assert!(decode_state_snapshot(&garbled).is_err());
    }
}
