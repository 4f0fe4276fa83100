//! Raft's types in storage's opaque bytes: log entries as WAL [`Record`]s, and a
//! [`Membership`] as the membership blob of a snapshot file.
//!
//! ```text
//! entry payload = version u8 (= 1) | tag u8 | body
//!   tag 0 Noop
//!   tag 1 Normal       the application's bytes, to the end of the record
//!   tag 2 ConfChange   count u32 | steps: kind u8 (1 add voter, 2 add learner, 3 remove) | node u64
//! membership    = version u8 (= 1) | voters | voters_outgoing | learners
//!   each set: count u32 | node ids u64, strictly increasing, none 0
//! ```

use crate::codec::{put_len, put_u64, put_u8, DecodeError, Reader};
use bytes::Bytes;
use chorus_raft::{
    ConfChange, ConfChangeStep, Entry, EntryPayload, LogIndex, Membership, NodeId, Term,
};
use chorus_storage::Record;
use std::collections::BTreeSet;

/// The format version of entry payloads and memberships.
pub const ENTRY_FORMAT_VERSION: u8 = 1;

const TAG_NOOP: u8 = 0;
const TAG_NORMAL: u8 = 1;
const TAG_CONF_CHANGE: u8 = 2;

const STEP_ADD_VOTER: u8 = 1;
const STEP_ADD_LEARNER: u8 = 2;
const STEP_REMOVE: u8 = 3;

/// The payload bytes of a WAL record holding `payload`.
pub fn encode_entry_payload(payload: &EntryPayload) -> Vec<u8> {
    let capacity = match payload {
        EntryPayload::Normal(data) => 2 + data.len(),
        _ => 64,
    };
    let mut out = Vec::with_capacity(capacity);
    out.push(ENTRY_FORMAT_VERSION);
    match payload {
        EntryPayload::Noop => put_u8(&mut out, TAG_NOOP),
        EntryPayload::Normal(data) => {
            put_u8(&mut out, TAG_NORMAL);
            out.extend_from_slice(data);
        }
        EntryPayload::ConfChange(change) => {
            put_u8(&mut out, TAG_CONF_CHANGE);
            put_len(&mut out, change.steps.len());
            for step in &change.steps {
                let (kind, node) = match step {
                    ConfChangeStep::AddVoter(node) => (STEP_ADD_VOTER, node),
                    ConfChangeStep::AddLearner(node) => (STEP_ADD_LEARNER, node),
                    ConfChangeStep::Remove(node) => (STEP_REMOVE, node),
                };
                put_u8(&mut out, kind);
                put_u64(&mut out, node.0);
            }
        }
    }
    out
}

/// Decodes what [`encode_entry_payload`] wrote. Never panics.
pub fn decode_entry_payload(bytes: &[u8]) -> Result<EntryPayload, DecodeError> {
    let mut reader = Reader::new(bytes);
    let version = reader.u8()?;
    if version != ENTRY_FORMAT_VERSION {
        return Err(DecodeError::UnsupportedVersion {
            what: "entry",
            version,
        });
    }
    let payload = match reader.u8()? {
        TAG_NOOP => EntryPayload::Noop,
        TAG_NORMAL => EntryPayload::Normal(Bytes::copy_from_slice(reader.rest())),
        TAG_CONF_CHANGE => {
            let count = reader.count("conf change step", 9)?;
            let mut steps = Vec::with_capacity(count);
            for _ in 0..count {
                let kind = reader.u8()?;
                let node = NodeId(reader.u64()?);
                steps.push(match kind {
                    STEP_ADD_VOTER => ConfChangeStep::AddVoter(node),
                    STEP_ADD_LEARNER => ConfChangeStep::AddLearner(node),
                    STEP_REMOVE => ConfChangeStep::Remove(node),
                    tag => {
                        return Err(DecodeError::UnknownTag {
                            what: "conf change step",
                            tag,
                        })
                    }
                });
            }
            EntryPayload::ConfChange(ConfChange { steps })
        }
        tag => return Err(DecodeError::UnknownTag { what: "entry", tag }),
    };
    reader.finish()?;
    Ok(payload)
}

/// The WAL record of `entry`.
pub fn entry_to_record(entry: &Entry) -> Record {
    Record::new(
        entry.index.0,
        entry.term.0,
        encode_entry_payload(&entry.payload),
    )
}

/// The entry a WAL record holds.
pub fn record_to_entry(record: &Record) -> Result<Entry, DecodeError> {
    Ok(Entry {
        term: Term(record.term),
        index: LogIndex(record.index),
        payload: decode_entry_payload(&record.payload)?,
    })
}

/// The membership blob of a snapshot file.
pub fn encode_membership(membership: &Membership) -> Vec<u8> {
    let mut out = vec![ENTRY_FORMAT_VERSION];
    for set in [
        &membership.voters,
        &membership.voters_outgoing,
        &membership.learners,
    ] {
        put_len(&mut out, set.len());
        for node in set {
            put_u64(&mut out, node.0);
        }
    }
    out
}

/// Decodes what [`encode_membership`] wrote, and checks the membership's invariants (some
/// voter; no learner that votes; no node 0; ids in increasing order, so the encoding is
/// canonical). Never panics.
pub fn decode_membership(bytes: &[u8]) -> Result<Membership, DecodeError> {
    let mut reader = Reader::new(bytes);
    let version = reader.u8()?;
    if version != ENTRY_FORMAT_VERSION {
        return Err(DecodeError::UnsupportedVersion {
            what: "membership",
            version,
        });
    }
    let voters = decode_node_set(&mut reader)?;
    let voters_outgoing = decode_node_set(&mut reader)?;
    let learners = decode_node_set(&mut reader)?;
    reader.finish()?;
    if voters.is_empty() {
        return Err(DecodeError::InvalidMembership {
            reason: "no voters",
        });
    }
    if learners
        .iter()
        .any(|learner| voters.contains(learner) || voters_outgoing.contains(learner))
    {
        return Err(DecodeError::InvalidMembership {
            reason: "a learner is also a voter",
        });
    }
    Ok(Membership {
        voters,
        voters_outgoing,
        learners,
    })
}

fn decode_node_set(reader: &mut Reader<'_>) -> Result<BTreeSet<NodeId>, DecodeError> {
    let count = reader.count("node", 8)?;
    let mut set = BTreeSet::new();
    let mut previous = 0;
    for _ in 0..count {
        let node = reader.u64()?;
        if node <= previous {
            return Err(DecodeError::InvalidMembership {
                reason: "node ids not increasing, or node 0",
            });
        }
        previous = node;
        set.insert(NodeId(node));
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_through_records() {
        let payloads = [
            EntryPayload::Noop,
            EntryPayload::Normal(Bytes::from_static(b"data")),
            EntryPayload::Normal(Bytes::new()),
            EntryPayload::ConfChange(ConfChange {
                steps: vec![
                    ConfChangeStep::AddVoter(NodeId(4)),
                    ConfChangeStep::AddLearner(NodeId(5)),
                    ConfChangeStep::Remove(NodeId(1)),
                ],
            }),
            EntryPayload::ConfChange(ConfChange::leave_joint()),
        ];
        for (offset, payload) in payloads.into_iter().enumerate() {
            let entry = Entry {
                term: Term(3),
                index: LogIndex(10 + offset as u64),
                payload,
            };
            let record = entry_to_record(&entry);
            assert_eq!(record_to_entry(&record), Ok(entry));
        }
    }

    #[test]
    fn membership_round_trips_and_bad_ones_are_refused() {
        let mut membership = Membership::new([NodeId(1), NodeId(2), NodeId(3)]);
        membership.voters_outgoing = [NodeId(1), NodeId(4)].into_iter().collect();
        membership.learners = [NodeId(9)].into_iter().collect();
        let bytes = encode_membership(&membership);
        assert_eq!(decode_membership(&bytes), Ok(membership));

        let mut empty = Membership::new([NodeId(1)]);
        empty.voters.clear();
        assert!(decode_membership(&encode_membership(&empty)).is_err());
        let mut learner_votes = Membership::new([NodeId(1)]);
        learner_votes.learners.insert(NodeId(1));
        assert!(decode_membership(&encode_membership(&learner_votes)).is_err());
    }
}
