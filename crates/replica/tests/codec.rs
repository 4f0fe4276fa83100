//! Properties of the encodings: every command, entry and membership round-trips, and the
//! decoders never panic on random or mutated bytes.

use bytes::Bytes;
use chorus_mvcc::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp,
    SortOrder, SortTarget, TxnRequest,
};
use chorus_raft::{ConfChange, ConfChangeStep, Entry, EntryPayload, LogIndex, NodeId, Term};
use chorus_replica::alarm::{AlarmAction, AlarmMember, AlarmType};
use chorus_replica::entry::{
    decode_entry_payload, decode_membership, encode_membership, entry_to_record, record_to_entry,
};
use chorus_replica::members::{decode_member_table, encode_member_table};
use chorus_replica::snapshot::{
    decode_state_snapshot, encode_state_snapshot, encode_state_snapshot_with_sessions, LeaseRecord,
    StateSnapshot,
};
use chorus_replica::{
    decode_command, decode_forward_tag, encode_command, encode_forwarded, is_forwardable, Command,
    ForwardTag, MemberRecord, MemberTable, LEASE_TTL_SECONDS_MAX,
};
use proptest::prelude::*;

fn bytes_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..12)
}

fn put_strategy() -> impl Strategy<Value = PutRequest> {
    (
        bytes_strategy(),
        bytes_strategy(),
        any::<i64>(),
        any::<(bool, bool, bool)>(),
    )
        .prop_map(
            |(key, value, lease, (prev_kv, ignore_value, ignore_lease))| PutRequest {
                key,
                value,
                lease,
                prev_kv,
                ignore_value,
                ignore_lease,
            },
        )
}

fn delete_strategy() -> impl Strategy<Value = DeleteRangeRequest> {
    (bytes_strategy(), bytes_strategy(), any::<bool>()).prop_map(|(key, range_end, prev_kv)| {
        DeleteRangeRequest {
            key,
            range_end,
            prev_kv,
        }
    })
}

fn range_strategy() -> impl Strategy<Value = RangeRequest> {
    (
        (
            bytes_strategy(),
            bytes_strategy(),
            any::<i64>(),
            any::<i64>(),
        ),
        (
            prop_oneof![
                Just(SortOrder::None),
                Just(SortOrder::Ascend),
                Just(SortOrder::Descend)
            ],
            prop_oneof![
                Just(SortTarget::Key),
                Just(SortTarget::Version),
                Just(SortTarget::Create),
                Just(SortTarget::Mod),
                Just(SortTarget::Value)
            ],
            any::<(bool, bool)>(),
        ),
        any::<(i64, i64, i64, i64)>(),
    )
        .prop_map(
            |(
                (key, range_end, limit, revision),
                (sort_order, sort_target, (keys_only, count_only)),
                (min_mod, max_mod, min_create, max_create),
            )| RangeRequest {
                key,
                range_end,
                limit,
                revision,
                sort_order,
                sort_target,
                keys_only,
                count_only,
                min_mod_revision: min_mod,
                max_mod_revision: max_mod,
                min_create_revision: min_create,
                max_create_revision: max_create,
            },
        )
}

fn compare_strategy() -> impl Strategy<Value = Compare> {
    (
        bytes_strategy(),
        bytes_strategy(),
        prop_oneof![
            Just(CompareResult::Equal),
            Just(CompareResult::Greater),
            Just(CompareResult::Less),
            Just(CompareResult::NotEqual)
        ],
        prop_oneof![
            any::<i64>().prop_map(CompareTarget::Version),
            any::<i64>().prop_map(CompareTarget::CreateRevision),
            any::<i64>().prop_map(CompareTarget::ModRevision),
            bytes_strategy().prop_map(CompareTarget::Value),
            any::<i64>().prop_map(CompareTarget::Lease),
        ],
    )
        .prop_map(|(key, range_end, result, target)| Compare {
            key,
            range_end,
            result,
            target,
        })
}

fn txn_strategy() -> impl Strategy<Value = TxnRequest> {
    let leaf = prop_oneof![
        range_strategy().prop_map(RequestOp::Range),
        put_strategy().prop_map(RequestOp::Put),
        delete_strategy().prop_map(RequestOp::DeleteRange),
    ];
    let ops = leaf.prop_recursive(4, 32, 4, |inner| {
        (
            prop::collection::vec(compare_strategy(), 0..3),
            prop::collection::vec(inner.clone(), 0..4),
            prop::collection::vec(inner, 0..4),
        )
            .prop_map(|(compare, success, failure)| {
                RequestOp::Txn(TxnRequest {
                    compare,
                    success,
                    failure,
                })
            })
    });
    (
        prop::collection::vec(compare_strategy(), 0..4),
        prop::collection::vec(ops.clone(), 0..5),
        prop::collection::vec(ops, 0..5),
    )
        .prop_map(|(compare, success, failure)| TxnRequest {
            compare,
            success,
            failure,
        })
}

/// The commands a session may carry.
fn sessionable_strategy() -> impl Strategy<Value = Command> {
    prop_oneof![
        put_strategy().prop_map(Command::Put),
        delete_strategy().prop_map(Command::DeleteRange),
        txn_strategy().prop_map(Command::Txn),
        any::<i64>().prop_map(|revision| Command::Compact { revision }),
        any::<(i64, i64)>().prop_map(|(id, ttl_seconds)| Command::LeaseGrant { id, ttl_seconds }),
        any::<i64>().prop_map(|id| Command::LeaseRevoke { id }),
    ]
}

fn command_strategy() -> impl Strategy<Value = Command> {
    prop_oneof![
        any::<(i64, u32)>().prop_map(|(ttl_seconds, sessions_max)| Command::SessionOpen {
            ttl_seconds,
            sessions_max
        }),
        any::<u64>().prop_map(|id| Command::SessionClose { id }),
        any::<u64>().prop_map(|id| Command::SessionExpire { id }),
        (any::<(u64, u64, u64)>(), sessionable_strategy()).prop_map(
            |((session, sequence, acknowledged), command)| Command::Sessioned {
                session,
                sequence,
                acknowledged,
                command: Box::new(command),
            }
        ),
        put_strategy().prop_map(Command::Put),
        delete_strategy().prop_map(Command::DeleteRange),
        txn_strategy().prop_map(Command::Txn),
        any::<i64>().prop_map(|revision| Command::Compact { revision }),
        any::<(i64, i64)>().prop_map(|(id, ttl_seconds)| Command::LeaseGrant { id, ttl_seconds }),
        any::<i64>().prop_map(|id| Command::LeaseRevoke { id }),
        (any::<bool>(), alarm_strategy()).prop_map(|(activate, alarm)| Command::Alarm {
            action: if activate {
                AlarmAction::Activate
            } else {
                AlarmAction::Deactivate
            },
            alarm,
        }),
        member_strategy(1..u64::MAX).prop_map(Command::MemberAdd),
        any::<u64>().prop_map(|id| Command::MemberRemove { id }),
        (any::<u64>(), urls_strategy())
            .prop_map(|(id, peer_urls)| Command::MemberUpdate { id, peer_urls }),
        any::<u64>().prop_map(|id| Command::MemberPromote { id }),
        (any::<u64>(), "[a-z0-9]{0,8}", urls_strategy()).prop_map(|(id, name, client_urls)| {
            Command::MemberPublish {
                id,
                name,
                client_urls,
            }
        }),
    ]
}

fn alarm_strategy() -> impl Strategy<Value = AlarmMember> {
    (any::<u64>(), any::<bool>()).prop_map(|(member_id, nospace)| AlarmMember {
        member_id,
        alarm: if nospace {
            AlarmType::NoSpace
        } else {
            AlarmType::Corrupt
        },
    })
}

/// An alarm table as the replica keeps it: distinct, increasing.
fn alarms_strategy() -> impl Strategy<Value = Vec<AlarmMember>> {
    prop::collection::btree_set(alarm_strategy(), 0..4).prop_map(|set| set.into_iter().collect())
}

fn urls_strategy() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec("http://[a-z]{1,6}:[0-9]{1,5}", 0..3)
}

fn member_strategy(ids: std::ops::Range<u64>) -> impl Strategy<Value = MemberRecord> {
    (
        ids,
        "[a-z0-9]{0,8}",
        urls_strategy(),
        urls_strategy(),
        any::<bool>(),
    )
        .prop_map(
            |(id, name, peer_urls, client_urls, is_learner)| MemberRecord {
                id,
                name,
                peer_urls,
                client_urls,
                is_learner,
            },
        )
}

/// A member table as the replica keeps it: distinct peer URLs (one each, by id), a voter.
fn member_table_strategy() -> impl Strategy<Value = MemberTable> {
    (
        any::<u64>(),
        prop::collection::btree_map(1..u64::MAX, member_strategy(1..2), 0..6),
    )
        .prop_map(|(cluster_id, members)| {
            let count = members.len();
            let members = members
                .into_iter()
                .enumerate()
                .map(|(index, (id, mut member))| {
                    member.id = id;
                    member.peer_urls = vec![format!("http://h:{id}")];
                    member.is_learner = member.is_learner && index + 1 < count;
                    (id, member)
                })
                .collect();
            MemberTable {
                cluster_id,
                members,
            }
        })
}

fn payload_strategy() -> impl Strategy<Value = EntryPayload> {
    let step = prop_oneof![
        any::<u64>().prop_map(|id| ConfChangeStep::AddVoter(NodeId(id))),
        any::<u64>().prop_map(|id| ConfChangeStep::AddLearner(NodeId(id))),
        any::<u64>().prop_map(|id| ConfChangeStep::Remove(NodeId(id))),
    ];
    prop_oneof![
        Just(EntryPayload::Noop),
        bytes_strategy().prop_map(|data| EntryPayload::Normal(Bytes::from(data))),
        prop::collection::vec(step, 0..5)
            .prop_map(|steps| EntryPayload::ConfChange(ConfChange { steps })),
    ]
}

/// A lease table as the replica keeps it: distinct non-zero ids, increasing, TTLs in range.
fn leases_strategy() -> impl Strategy<Value = Vec<LeaseRecord>> {
    prop::collection::btree_map(
        any::<i64>().prop_filter("lease id 0", |id| *id != 0),
        1..=LEASE_TTL_SECONDS_MAX,
        0..6,
    )
    .prop_map(|leases| {
        leases
            .into_iter()
            .map(|(id, ttl_seconds)| LeaseRecord { id, ttl_seconds })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_member_table_round_trips_alone_and_in_a_snapshot(
        table in member_table_strategy(),
        leases in leases_strategy(),
    ) {
        let bytes = encode_member_table(&table);
        prop_assert_eq!(decode_member_table(&bytes), Ok(table.clone()));
        let snapshot = encode_state_snapshot(b"mvcc", &leases, Some(&table), &[]);
        let decoded = decode_state_snapshot(&snapshot).map(|decoded| decoded.members);
        prop_assert_eq!(decoded, Ok(Some(table)));
    }

    #[test]
    fn random_and_mutated_bytes_never_panic_the_member_table_decoder(
        table in member_table_strategy(),
        tail in prop::collection::vec(any::<u8>(), 0..96),
        position in any::<prop::sample::Index>(),
        value in any::<u8>(),
    ) {
        if let Ok(decoded) = decode_member_table(&tail) {
            prop_assert_eq!(encode_member_table(&decoded), tail);
        }
        let mut bytes = encode_member_table(&table);
        let at = position.index(bytes.len());
        bytes[at] = value;
        if let Ok(decoded) = decode_member_table(&bytes) {
            prop_assert_eq!(encode_member_table(&decoded), bytes);
        }
    }

    #[test]
    fn every_state_snapshot_round_trips(
        mvcc in prop::collection::vec(any::<u8>(), 0..64),
        leases in leases_strategy(),
        members in prop::option::of(member_table_strategy()),
        alarms in alarms_strategy(),
    ) {
        let bytes = encode_state_snapshot(&mvcc, &leases, members.as_ref(), &alarms);
        prop_assert_eq!(
            decode_state_snapshot(&bytes),
            Ok(StateSnapshot { mvcc: &mvcc, leases: leases.clone(), members: members.clone(), alarms: alarms.clone(), sessions: Vec::new() })
        );
    }

    #[test]
    fn random_bytes_never_panic_the_state_snapshot_decoder(
        tail in prop::collection::vec(any::<u8>(), 0..128),
        header in 0u8..4,
    ) {
        // Most inputs start with the magic and a version, to get past them.
        let mut bytes = match header {
            0 => Vec::new(),
            1 => b"chorusrs\x01".to_vec(),
            2 => b"chorusrs\x02".to_vec(),
            _ => b"chorusrs\x03".to_vec(),
        };
        bytes.extend_from_slice(&tail);
        if let Ok(snapshot) = decode_state_snapshot(&bytes) {
            if !bytes.starts_with(b"chorusmv") {
                // What decodes is canonical.
                prop_assert_eq!(
                    encode_state_snapshot_with_sessions(
                        snapshot.mvcc,
                        &snapshot.leases,
                        snapshot.members.as_ref(),
                        &snapshot.alarms,
                        &snapshot.sessions,
                    ),
                    bytes
                );
            }
        }
    }

    #[test]
    fn mutated_state_snapshots_never_panic_the_decoder(
        mvcc in prop::collection::vec(any::<u8>(), 0..32),
        leases in leases_strategy(),
        members in prop::option::of(member_table_strategy()),
        alarms in alarms_strategy(),
        position in any::<prop::sample::Index>(),
        value in any::<u8>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = encode_state_snapshot(&mvcc, &leases, members.as_ref(), &alarms);
        let at = position.index(bytes.len());
        bytes[at] = value;
        let _ = decode_state_snapshot(&bytes);
        let len = cut.index(bytes.len());
        let _ = decode_state_snapshot(&bytes[..len]);
    }

    #[test]
    fn every_command_round_trips(command in command_strategy()) {
        let bytes = encode_command(&command);
        prop_assert_eq!(decode_command(&bytes), Ok(command.clone()));
        if is_forwardable(&command) {
            let tag = ForwardTag { origin: 7, id: 1 << 40 };
            let forwarded = encode_forwarded(tag, &command);
            prop_assert_eq!(decode_command(&forwarded), Ok(command));
            prop_assert_eq!(decode_forward_tag(&forwarded), Some(tag));
        }
    }

    #[test]
    fn random_bytes_never_panic_the_command_decoder(
        bytes in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        if let Ok(command) = decode_command(&bytes) {
            // Whatever decodes is canonical: it encodes back to the same bytes (a forwarded
            // command with its tag).
            let encoded = match decode_forward_tag(&bytes) {
                Some(tag) => encode_forwarded(tag, &command),
                None => encode_command(&command),
            };
            prop_assert_eq!(encoded, bytes);
        }
    }

    #[test]
    fn mutated_commands_never_panic_the_decoder(
        command in command_strategy(),
        position in any::<prop::sample::Index>(),
        value in any::<u8>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = encode_command(&command);
        let at = position.index(bytes.len());
        bytes[at] = value;
        let _ = decode_command(&bytes);
        let len = cut.index(bytes.len());
        let _ = decode_command(&bytes[..len]);
    }

    #[test]
    fn every_entry_round_trips_through_a_record(
        payload in payload_strategy(),
        index in 1u64..1_000_000,
        term in 0u64..1_000,
    ) {
        let entry = Entry { term: Term(term), index: LogIndex(index), payload };
        prop_assert_eq!(record_to_entry(&entry_to_record(&entry)), Ok(entry));
    }

    #[test]
    fn random_bytes_never_panic_the_entry_and_membership_decoders(
        bytes in prop::collection::vec(any::<u8>(), 0..128),
    ) {
        let _ = decode_entry_payload(&bytes);
        if let Ok(membership) = decode_membership(&bytes) {
            membership.check_invariants();
            prop_assert_eq!(encode_membership(&membership), bytes);
        }
    }

    #[test]
    fn random_and_mutated_bytes_never_panic_the_stored_answer_decoder(
        tail in prop::collection::vec(any::<u8>(), 0..128),
        tag in prop::sample::select(vec![1u8, 2, 3, 4, 5, 6, 100]),
    ) {
        let mut bytes = vec![1, tag];
        bytes.extend_from_slice(&tail);
        if let Ok(result) = chorus_replica::response::decode_response(&bytes) {
            prop_assert_eq!(chorus_replica::response::encode_response(&result), bytes);
        }
    }
}
