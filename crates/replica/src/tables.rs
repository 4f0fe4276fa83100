//! The replica's lease, alarm and member tables as entries of the mvcc backend's side table,
//! written in the same batch as the command that changed them (as the session table's are,
//! [`crate::session`]). The backend then holds the whole state machine as of its applied index:
//! a restart reads the tables back instead of replaying the log into them, and the log can be
//! dropped up to what the backend keeps durably without copying the state into a snapshot file
//! (the replica's compaction; a snapshot is written only when a follower needs one).
//!
//! ```text
//! lease:  key 'l' | id i64 big-endian                  value ttl_seconds i64 little-endian
//! alarm:  key 'a' | member id u64 big-endian | type u8  value empty
//! member: key 'm'                                      value the member table (crate::members)
//! format: key 'v'                                      value 1
//! ```
//!
//! The format entry says the tables are in the backend: a backend that has applied entries
//! without it was written by a chorus from before (its tables were rebuilt from the snapshot
//! and the log), and opening it is refused rather than losing its tables.
//!
//! Session keys (`'s'`, `'r'`) are the session table's. A table with no member entry is the one
//! the replica was configured with (as a snapshot without one).

use crate::alarm::{read_alarm_type, AlarmMember, ALARMS_MAX};
use crate::codec::{DecodeError, Reader};
use crate::members::{decode_member_table, encode_member_table, MemberTable};
use crate::session::check_entries;
use crate::snapshot::{check_leases, LeaseRecord};
use chorus_mvcc::{SideChanges, SideEntry};

const KEY_LEASE: u8 = b'l';
const KEY_ALARM: u8 = b'a';
const KEY_MEMBERS: u8 = b'm';
const KEY_SESSION: u8 = b's';
const KEY_RESPONSE: u8 = b'r';
const KEY_FORMAT: u8 = b'v';
/// The side table's format: the tables are in the backend.
const FORMAT: u8 = 1;

/// The whole side table, decoded: every table of the state machine but the mvcc store's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SideTables {
    /// By increasing id.
    pub leases: Vec<LeaseRecord>,
    /// Increasing.
    pub alarms: Vec<AlarmMember>,
    /// None: the configured table.
    pub members: Option<MemberTable>,
    /// The session table's entries, in key order.
    pub sessions: Vec<SideEntry>,
    /// Whether the side table has its format entry (see the module doc).
    pub has_format: bool,
}

/// Decodes a side table (entries in key order, as the backend returns them) and checks every
/// table's invariants. Never panics; allocates only in proportion to the input.
pub fn decode_side_tables(entries: &[SideEntry]) -> Result<SideTables, DecodeError> {
    let mut tables = SideTables::default();
    for (key, value) in entries {
        match key.first() {
            Some(&KEY_LEASE) => {
                let mut reader = Reader::new(&key[1..]);
                let id = i64::from_be_bytes(reader.array()?);
                reader.finish()?;
                let mut reader = Reader::new(value);
                let ttl_seconds = reader.i64()?;
                reader.finish()?;
                tables.leases.push(LeaseRecord { id, ttl_seconds });
            }
            Some(&KEY_ALARM) => {
                let mut reader = Reader::new(&key[1..]);
                let member_id = u64::from_be_bytes(reader.array()?);
                let alarm = read_alarm_type(&mut reader)?;
                reader.finish()?;
                Reader::new(value).finish()?;
                if tables.alarms.len() == ALARMS_MAX {
                    return Err(DecodeError::InvalidSnapshot {
                        reason: "more alarms than the limit",
                    });
                }
                tables.alarms.push(AlarmMember { member_id, alarm });
            }
            Some(&KEY_MEMBERS) if key.len() == 1 => {
                tables.members = Some(decode_member_table(value)?);
            }
            Some(&KEY_SESSION | &KEY_RESPONSE) => {
                tables.sessions.push((key.clone(), value.clone()))
            }
            Some(&KEY_FORMAT) if key.len() == 1 => {
                if value.as_slice() != [FORMAT] {
                    return Err(DecodeError::InvalidSnapshot {
                        reason: "an unknown side-table format",
                    });
                }
                tables.has_format = true;
            }
            _ => {
                return Err(DecodeError::InvalidSnapshot {
                    reason: "a side-table key of no table",
                })
            }
        }
    }
    // Big-endian ids sort negative ones last; the lease table is by id.
    tables.leases.sort_by_key(|lease| lease.id);
    check_leases(&tables.leases)?;
    if tables.alarms.windows(2).any(|pair| pair[0] >= pair[1]) {
        return Err(DecodeError::InvalidSnapshot {
            reason: "alarms not strictly increasing",
        });
    }
    check_entries(&tables.sessions)?;
    Ok(tables)
}

/// The side table that holds `tables`, in key order: what a store restored from a snapshot
/// must hold. The format entry is written whatever `has_format` says.
pub fn encode_side_tables(tables: &SideTables) -> Vec<SideEntry> {
    let mut entries: Vec<SideEntry> = tables
        .leases
        .iter()
        .map(|lease| lease_entry(*lease))
        .chain(std::iter::once(format_entry()))
        .chain(
            tables
                .alarms
                .iter()
                .map(|alarm| (alarm_key(*alarm), Vec::new())),
        )
        .chain(tables.members.iter().map(members_entry))
        .chain(tables.sessions.iter().cloned())
        .collect();
    entries.sort();
    entries
}

/// The format entry (see the module doc): staged with a new backend's first write.
pub(crate) fn format_entry() -> SideEntry {
    (vec![KEY_FORMAT], vec![FORMAT])
}

/// A lease's entry (set by its grant).
pub(crate) fn lease_entry(lease: LeaseRecord) -> SideEntry {
    (
        lease_key(lease.id),
        lease.ttl_seconds.to_le_bytes().to_vec(),
    )
}

/// A lease's key (removed by its revoke).
pub(crate) fn lease_key(id: i64) -> Vec<u8> {
    let mut key = Vec::with_capacity(9);
    key.push(KEY_LEASE);
    key.extend_from_slice(&id.to_be_bytes());
    key
}

/// A raised alarm's key (its value is empty).
fn alarm_key(alarm: AlarmMember) -> Vec<u8> {
    let mut key = Vec::with_capacity(10);
    key.push(KEY_ALARM);
    key.extend_from_slice(&alarm.member_id.to_be_bytes());
    key.push(alarm.alarm.code());
    key
}

/// The member table's entry (set whenever it changes).
pub(crate) fn members_entry(table: &MemberTable) -> SideEntry {
    (vec![KEY_MEMBERS], encode_member_table(table))
}

/// Stages an alarm's change: raised or cleared.
pub(crate) fn stage_alarm(side: &mut SideChanges, alarm: AlarmMember, raised: bool) {
    if raised {
        side.puts.push((alarm_key(alarm), Vec::new()));
    } else {
        side.removes.push(alarm_key(alarm));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::alarm::AlarmType;
    use crate::members::MemberRecord;

    fn tables() -> SideTables {
        SideTables {
            leases: vec![
                LeaseRecord {
                    id: -5,
                    ttl_seconds: 10,
                },
                LeaseRecord {
                    id: 7,
                    ttl_seconds: 60,
                },
            ],
            alarms: vec![
                AlarmMember {
                    member_id: 1,
                    alarm: AlarmType::NoSpace,
                },
                AlarmMember {
                    member_id: 1,
                    alarm: AlarmType::Corrupt,
                },
            ],
            members: Some(MemberTable::new(
                9,
                [MemberRecord {
                    id: 1,
                    name: "a".to_string(),
                    peer_urls: vec!["http://127.0.0.1:1".to_string()],
                    client_urls: Vec::new(),
                    is_learner: false,
                }],
            )),
            sessions: Vec::new(),
            has_format: true,
        }
    }

    #[test]
    fn tables_round_trip_through_the_side_table() {
        let tables = tables();
        let entries = encode_side_tables(&tables);
        assert!(entries.windows(2).all(|pair| pair[0].0 < pair[1].0));
        assert_eq!(decode_side_tables(&entries).unwrap(), tables);
        assert_eq!(
            decode_side_tables(&[]).unwrap(),
            SideTables::default(),
            "an empty side table is empty tables, without the format entry"
        );
    }

    #[test]
    fn forged_entries_are_refused() {
        let good = encode_side_tables(&tables());
        let cases: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (b"x".to_vec(), Vec::new()),
            (lease_key(0), 10i64.to_le_bytes().to_vec()),
            (lease_key(3), 0i64.to_le_bytes().to_vec()),
            (lease_key(3), vec![1, 2]),
            (
                [lease_key(3), vec![0]].concat(),
                10i64.to_le_bytes().to_vec(),
            ),
            (vec![KEY_ALARM, 0, 0, 0, 0, 0, 0, 0, 1, 0], Vec::new()),
            (vec![KEY_MEMBERS], vec![0xff]),
            (vec![KEY_FORMAT], vec![2]),
        ];
        for (key, value) in cases {
            let mut entries = good.clone();
            entries.retain(|entry| entry.0 != key);
            entries.push((key.clone(), value));
            entries.sort();
            assert!(
                decode_side_tables(&entries).is_err(),
                "accepted the forged entry {key:?}"
            );
        }
    }
}
