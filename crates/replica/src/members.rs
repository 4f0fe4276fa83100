//! The replicated member table: who is in the cluster as etcd's `Cluster` service shows it
//! (id, name, peer URLs, client URLs, learner or voter), changed only by [`Command`]s applied
//! from the log, so every replica agrees and it survives restarts and snapshots.
//!
//! The table is the *desired* membership; raft's own membership follows it: the leader proposes
//! the conf changes that bring raft's voters and learners to the table's (chorus-server does
//! this). A command that the table refuses (an id that exists, a peer URL in use, a member that
//! is not there) is refused the same way on every replica, and its answer says why.
//!
//! ```text
//! table   = version u8 (= 1) | cluster_id u64 | count u32 | members
//! member  = id u64 | flags u8 (1 learner) | name string | peer_urls strings | client_urls strings
//! strings = count u32 | each: bytes
//! bytes   = len u32 | len bytes (UTF-8)
//! ```
//!
//! Integers are little-endian; ids are non-zero and strictly increasing. Bounds: at most
//! [`MEMBERS_MAX`] members, [`MEMBER_URLS_MAX`] URLs of each kind per member, each string at
//! most [`MEMBER_STRING_BYTES_MAX`] bytes; the decoder refuses more before allocating.
//!
//! [`Command`]: crate::Command

use crate::codec::{put_len, put_u64, put_u8, DecodeError, Reader};
use std::collections::BTreeMap;

/// The format version written by [`encode_member_table`].
pub const MEMBER_TABLE_FORMAT_VERSION: u8 = 1;
/// The most members a table holds (a membership change past it is refused).
pub const MEMBERS_MAX: usize = 64;
/// The most peer URLs, and the most client URLs, of one member.
pub const MEMBER_URLS_MAX: usize = 16;
/// The longest name or URL, in bytes.
pub const MEMBER_STRING_BYTES_MAX: usize = 1024;

const MEMBER_LEARNER: u8 = 1;
/// The smallest encoded member: id, flags, an empty name and two empty lists.
const MEMBER_BYTES_MIN: usize = 8 + 1 + 4 + 4 + 4;

/// One member as the table keeps it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberRecord {
    /// Raft's node id; never 0.
    pub id: u64,
    /// Empty until the member has started and announced itself (as etcd shows a member added
    /// but not started yet).
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

/// Why the table refused a member command: etcd's answers.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MemberError {
    #[error("etcdserver: member ID already exist")]
    IdExists,
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExists,
    #[error("etcdserver: member not found")]
    NotFound,
    #[error("etcdserver: can only promote a learner member")]
    NotLearner,
    /// The change would leave no voter, or the table would pass [`MEMBERS_MAX`], or a field
    /// passes its bound.
    #[error("etcdserver: re-configuration failed: {reason}")]
    Invalid { reason: &'static str },
}

/// The member table and the cluster id it belongs to.
///
/// # Invariants
/// - Every key is its record's id, non-zero; no two members share a peer URL.
/// - At least one voter once the table is not empty; at most [`MEMBERS_MAX`] members; every
///   record within the string and URL bounds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberTable {
    /// The cluster's id (etcd's `cluster_id` in every response header); 0 while unknown (a
    /// member that joins learns it with the table, from the leader's snapshot).
    pub cluster_id: u64,
    pub members: BTreeMap<u64, MemberRecord>,
}

impl MemberTable {
    /// A table of `members` (the initial cluster).
    pub fn new(cluster_id: u64, members: impl IntoIterator<Item = MemberRecord>) -> MemberTable {
        let table = MemberTable {
            cluster_id,
            members: members
                .into_iter()
                .map(|member| (member.id, member))
                .collect(),
        };
        if let Err(error) = table.check() {
            panic!("initial member table refused: {error}");
        }
        table
    }

    pub fn get(&self, id: u64) -> Option<&MemberRecord> {
        self.members.get(&id)
    }

    /// The member that has `url` among its peer URLs.
    pub fn by_peer_url(&self, url: &str) -> Option<&MemberRecord> {
        self.members
            .values()
            .find(|member| member.peer_urls.iter().any(|own| own == url))
    }

    /// Whether any member but `except` uses one of `urls`.
    fn peer_url_taken(&self, urls: &[String], except: u64) -> bool {
        self.members
            .values()
            .filter(|member| member.id != except)
            .any(|member| member.peer_urls.iter().any(|own| urls.contains(own)))
    }

    /// Adds a member (a voter or a learner).
    pub fn add(&mut self, member: MemberRecord) -> Result<(), MemberError> {
        check_record(&member)?;
        if self.peer_url_taken(&member.peer_urls, 0) {
            return Err(MemberError::PeerUrlExists);
        }
        if self.members.contains_key(&member.id) {
            return Err(MemberError::IdExists);
        }
        if self.members.len() >= MEMBERS_MAX {
            return Err(MemberError::Invalid {
                reason: "too many members",
            });
        }
        self.members.insert(member.id, member);
        Ok(())
    }

    /// Removes a member; the last voter cannot be removed.
    pub fn remove(&mut self, id: u64) -> Result<(), MemberError> {
        let member = self.members.get(&id).ok_or(MemberError::NotFound)?;
        let voters = self.members.values().filter(|m| !m.is_learner).count();
        if !member.is_learner && voters <= 1 {
            return Err(MemberError::Invalid {
                reason: "the last voter cannot be removed",
            });
        }
        self.members.remove(&id);
        Ok(())
    }

    /// Replaces a member's peer URLs.
    pub fn update(&mut self, id: u64, peer_urls: Vec<String>) -> Result<(), MemberError> {
        if !self.members.contains_key(&id) {
            return Err(MemberError::NotFound);
        }
        if self.peer_url_taken(&peer_urls, id) {
            return Err(MemberError::PeerUrlExists);
        }
        let mut updated = self.members[&id].clone();
        updated.peer_urls = peer_urls;
        check_record(&updated)?;
        self.members.insert(id, updated);
        Ok(())
    }

    /// Makes a learner a voter.
    pub fn promote(&mut self, id: u64) -> Result<(), MemberError> {
        let member = self.members.get_mut(&id).ok_or(MemberError::NotFound)?;
        if !member.is_learner {
            return Err(MemberError::NotLearner);
        }
        member.is_learner = false;
        Ok(())
    }

    /// Records the name and client URLs a member announced (etcd's "publish").
    pub fn publish(
        &mut self,
        id: u64,
        name: String,
        client_urls: Vec<String>,
    ) -> Result<(), MemberError> {
        let mut updated = self.members.get(&id).ok_or(MemberError::NotFound)?.clone();
        updated.name = name;
        updated.client_urls = client_urls;
        check_record(&updated)?;
        self.members.insert(id, updated);
        Ok(())
    }

    /// Checks the invariants (see the type's doc).
    pub fn check(&self) -> Result<(), DecodeError> {
        let invalid = |reason| Err(DecodeError::InvalidMembers { reason });
        if self.members.len() > MEMBERS_MAX {
            return invalid("too many members");
        }
        let mut urls = std::collections::BTreeSet::new();
        for (id, member) in &self.members {
            if *id == 0 || *id != member.id {
                return invalid("member id 0, or not its key");
            }
            if check_record(member).is_err() {
                return invalid("a member field passes its bound");
            }
            for url in &member.peer_urls {
                if !urls.insert(url.as_str()) {
                    return invalid("two members share a peer URL");
                }
            }
        }
        if !self.members.is_empty() && self.members.values().all(|member| member.is_learner) {
            return invalid("no voter");
        }
        Ok(())
    }
}

fn check_record(member: &MemberRecord) -> Result<(), MemberError> {
    let too_long = |text: &String| text.len() > MEMBER_STRING_BYTES_MAX;
    if member.id == 0 {
        return Err(MemberError::Invalid {
            reason: "member id 0",
        });
    }
    if member.peer_urls.len() > MEMBER_URLS_MAX
        || member.client_urls.len() > MEMBER_URLS_MAX
        || too_long(&member.name)
        || member.peer_urls.iter().any(too_long)
        || member.client_urls.iter().any(too_long)
    {
        return Err(MemberError::Invalid {
            reason: "a name or URL list is too long",
        });
    }
    Ok(())
}

/// Encodes a member record (also the body of the member commands).
pub(crate) fn encode_member(member: &MemberRecord, out: &mut Vec<u8>) {
    put_u64(out, member.id);
    put_u8(out, if member.is_learner { MEMBER_LEARNER } else { 0 });
    put_string(out, &member.name);
    put_strings(out, &member.peer_urls);
    put_strings(out, &member.client_urls);
}

/// Decodes what [`encode_member`] wrote, within the bounds. Never panics.
pub(crate) fn decode_member(reader: &mut Reader<'_>) -> Result<MemberRecord, DecodeError> {
    let id = reader.u64()?;
    let is_learner = match reader.u8()? {
        0 => false,
        MEMBER_LEARNER => true,
        flags => {
            return Err(DecodeError::UnknownFlags {
                what: "member",
                flags,
            })
        }
    };
    let member = MemberRecord {
        id,
        name: read_string(reader)?,
        peer_urls: read_strings(reader)?,
        client_urls: read_strings(reader)?,
        is_learner,
    };
    if check_record(&member).is_err() {
        return Err(DecodeError::InvalidMembers {
            reason: "a member field passes its bound",
        });
    }
    Ok(member)
}

pub(crate) fn put_string(out: &mut Vec<u8>, text: &str) {
    put_len(out, text.len());
    out.extend_from_slice(text.as_bytes());
}

pub(crate) fn put_strings(out: &mut Vec<u8>, texts: &[String]) {
    put_len(out, texts.len());
    for text in texts {
        put_string(out, text);
    }
}

pub(crate) fn read_string(reader: &mut Reader<'_>) -> Result<String, DecodeError> {
    let len = reader.u32()? as usize;
    if len > MEMBER_STRING_BYTES_MAX {
        return Err(DecodeError::InvalidMembers {
            reason: "a string longer than its bound",
        });
    }
    String::from_utf8(reader.take(len)?.to_vec()).map_err(|_| DecodeError::InvalidMembers {
        reason: "a string that is not UTF-8",
    })
}

pub(crate) fn read_strings(reader: &mut Reader<'_>) -> Result<Vec<String>, DecodeError> {
    let count = reader.count("string", 4)?;
    if count > MEMBER_URLS_MAX {
        return Err(DecodeError::InvalidMembers {
            reason: "more URLs than the bound",
        });
    }
    (0..count).map(|_| read_string(reader)).collect()
}

/// Encodes the table (see the module doc).
pub fn encode_member_table(table: &MemberTable) -> Vec<u8> {
    let mut out = vec![MEMBER_TABLE_FORMAT_VERSION];
    put_u64(&mut out, table.cluster_id);
    put_len(&mut out, table.members.len());
    for member in table.members.values() {
        encode_member(member, &mut out);
    }
    out
}

/// Decodes what [`encode_member_table`] wrote and checks the table's invariants. Never
/// panics; allocates only within the bounds of the module doc.
pub fn decode_member_table(bytes: &[u8]) -> Result<MemberTable, DecodeError> {
    let mut reader = Reader::new(bytes);
    let table = read_member_table(&mut reader)?;
    reader.finish()?;
    Ok(table)
}

pub(crate) fn read_member_table(reader: &mut Reader<'_>) -> Result<MemberTable, DecodeError> {
    let version = reader.u8()?;
    if version != MEMBER_TABLE_FORMAT_VERSION {
        return Err(DecodeError::UnsupportedVersion {
            what: "member table",
            version,
        });
    }
    let cluster_id = reader.u64()?;
    let count = reader.count("member", MEMBER_BYTES_MIN)?;
    if count > MEMBERS_MAX {
        return Err(DecodeError::InvalidMembers {
            reason: "too many members",
        });
    }
    let mut table = MemberTable {
        cluster_id,
        members: BTreeMap::new(),
    };
    let mut previous = 0;
    for _ in 0..count {
        let member = decode_member(reader)?;
        if member.id <= previous {
            return Err(DecodeError::InvalidMembers {
                reason: "member ids not increasing, or id 0",
            });
        }
        previous = member.id;
        table.members.insert(member.id, member);
    }
    table.check()?;
    Ok(table)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn member(id: u64, url: &str, is_learner: bool) -> MemberRecord {
        MemberRecord {
            id,
            name: format!("n{id}"),
            peer_urls: vec![url.to_string()],
            client_urls: vec![format!("{url}/client")],
            is_learner,
        }
    }

    fn table() -> MemberTable {
        MemberTable::new(
            7,
            [
                member(1, "http://a:1", false),
                member(2, "http://a:2", false),
            ],
        )
    }

    #[test]
    fn the_table_round_trips_and_every_truncation_is_refused() {
        let mut table = table();
        table.add(member(9, "http://a:9", true)).unwrap();
        let bytes = encode_member_table(&table);
        assert_eq!(decode_member_table(&bytes), Ok(table));
        for len in 0..bytes.len() {
            assert!(decode_member_table(&bytes[..len]).is_err(), "prefix {len}");
        }
        assert_eq!(
            decode_member_table(&encode_member_table(&MemberTable::default())),
            Ok(MemberTable::default())
        );
    }

    #[test]
    fn forged_counts_and_lengths_are_refused_before_allocating() {
        let mut bytes = vec![MEMBER_TABLE_FORMAT_VERSION];
        bytes.extend_from_slice(&7u64.to_le_bytes());
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode_member_table(&bytes),
            Err(DecodeError::CountTooLarge { .. })
        ));
        let mut long_name = table();
        long_name.members.get_mut(&1).unwrap().name = "x".repeat(MEMBER_STRING_BYTES_MAX + 1);
        assert!(decode_member_table(&encode_member_table(&long_name)).is_err());
        let mut shared = table();
        shared.members.get_mut(&2).unwrap().peer_urls = vec!["http://a:1".to_string()];
        assert!(decode_member_table(&encode_member_table(&shared)).is_err());
        let mut no_voter = table();
        for member in no_voter.members.values_mut() {
            member.is_learner = true;
        }
        assert!(decode_member_table(&encode_member_table(&no_voter)).is_err());
    }

    #[test]
    fn changes_are_refused_with_etcds_answers() {
        let mut table = table();
        assert_eq!(
            table.add(member(1, "http://b:1", false)),
            Err(MemberError::IdExists)
        );
        assert_eq!(
            table.add(member(1, "http://a:2", false)),
            Err(MemberError::PeerUrlExists)
        );
        assert_eq!(
            table.add(member(3, "http://a:2", false)),
            Err(MemberError::PeerUrlExists)
        );
        assert_eq!(table.remove(3), Err(MemberError::NotFound));
        assert_eq!(table.promote(1), Err(MemberError::NotLearner));
        assert_eq!(
            table.update(2, vec!["http://a:1".to_string()]),
            Err(MemberError::PeerUrlExists)
        );
        table.add(member(3, "http://a:3", true)).unwrap();
        table.promote(3).unwrap();
        assert!(!table.get(3).unwrap().is_learner);
        table.update(3, vec!["http://a:33".to_string()]).unwrap();
        assert_eq!(table.by_peer_url("http://a:33").map(|m| m.id), Some(3));
        table.remove(1).unwrap();
        table.remove(2).unwrap();
        assert!(matches!(table.remove(3), Err(MemberError::Invalid { .. })));
    }
}
