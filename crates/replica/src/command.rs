//! The replicated command: what a raft entry's payload asks the state machine to do, and its
//! binary encoding.
//!
//! ```text
//! command  = version u8 (= 1) | tag u8 | body
//!   tag 1 Put          key bytes | value bytes | lease i64 | flags u8 (1 prev_kv, 2 ignore_value, 4 ignore_lease)
//!   tag 2 DeleteRange  key bytes | range_end bytes | flags u8 (1 prev_kv)
//!   tag 3 Txn          txn
//!   tag 4 Compact      revision i64
//!   tag 5 LeaseGrant   id i64 (0: the replica picks one) | ttl_seconds i64
//!   tag 6 LeaseRevoke  id i64
//!   tag 20 MemberAdd     member (see `members`: id u64 | flags u8 | name | peer_urls | client_urls)
//!   tag 21 MemberRemove  id u64
//!   tag 22 MemberUpdate  id u64 | peer_urls strings
//!   tag 23 MemberPromote id u64
//!   tag 24 MemberPublish id u64 | name string | client_urls strings
//!   tag 30 Alarm       action u8 (1 activate, 2 deactivate) | member_id u64 | alarm u8 (1 NOSPACE, 2 CORRUPT)
//!   tag 40 SessionOpen    ttl_seconds i64 | sessions_max u32
//!   tag 41 SessionClose   id u64
//!   tag 42 SessionExpire  id u64
//!   tag 43 Sessioned      session u64 | sequence u64 | acknowledged u64 | tag u8 | body
//!                         (the inner command: tags 1-6 only, without a version byte)
//!   tag 44 Forwarded      origin u64 | id u64 | tag u8 | body
//!                         (proposed through the follower `origin`, request `id` there; the
//!                         inner command: tags 1-3, or 43 around one of them. Every replica
//!                         applies the inner command; `decode_command` gives it, and
//!                         `decode_forward_tag` the origin and id)
//! txn      = count u32, compares | count u32, ops (success) | count u32, ops (failure)
//! compare  = key bytes | range_end bytes | result u8 (0 =, 1 >, 2 <, 3 !=) | target u8 | operand
//!            target 0 version, 1 create, 2 mod, 4 lease: operand i64; 3 value: operand bytes
//! op       = tag u8 (1 range, 2 put, 3 delete, 4 txn) | the body as above
//! range    = key bytes | range_end bytes | limit i64 | revision i64 | sort_order u8 | sort_target u8
//!            | flags u8 (1 keys_only, 2 count_only) | min_mod, max_mod, min_create, max_create i64
//! bytes    = len u32 | len bytes
//! ```
//!
//! Integers are little-endian. The version byte comes first so a later format can be told apart;
//! a decoder refuses a version it does not know (a replica must stop rather than skip an entry
//! its peers apply). Nested transactions are limited to [`TXN_DEPTH_MAX`] levels, checked both
//! when proposing ([`check_encodable`]) and when decoding.

use crate::alarm::{read_alarm_type, AlarmAction, AlarmMember};
use crate::codec::{
    put_bytes, put_i64, put_len, put_u32, put_u64, put_u8, read_bool, DecodeError, Reader,
};
use crate::members::{
    decode_member, encode_member, put_string, put_strings, read_string, read_strings, MemberRecord,
};
use chorus_mvcc::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp,
    SortOrder, SortTarget, TxnRequest,
};

/// The format version written by [`encode_command`].
pub const COMMAND_FORMAT_VERSION: u8 = 1;

/// The deepest nesting of transactions a command may have (the top transaction is depth 1).
/// etcd bounds nesting only through `--max-txn-ops`; this bound keeps the recursive decoder's
/// stack small whatever the input.
pub const TXN_DEPTH_MAX: usize = 64;

const TAG_PUT: u8 = 1;
const TAG_DELETE_RANGE: u8 = 2;
const TAG_TXN: u8 = 3;
const TAG_COMPACT: u8 = 4;
const TAG_LEASE_GRANT: u8 = 5;
const TAG_LEASE_REVOKE: u8 = 6;
const TAG_MEMBER_ADD: u8 = 20;
const TAG_MEMBER_REMOVE: u8 = 21;
const TAG_MEMBER_UPDATE: u8 = 22;
const TAG_MEMBER_PROMOTE: u8 = 23;
const TAG_MEMBER_PUBLISH: u8 = 24;

/// Tags from 30 up belong to the maintenance commands.
const TAG_ALARM: u8 = 30;

/// Tags from 40 up belong to client sessions.
const TAG_SESSION_OPEN: u8 = 40;
const TAG_SESSION_CLOSE: u8 = 41;
const TAG_SESSION_EXPIRE: u8 = 42;
const TAG_SESSIONED: u8 = 43;
const TAG_FORWARDED: u8 = 44;

const ALARM_ACTIVATE: u8 = 1;
const ALARM_DEACTIVATE: u8 = 2;

const OP_RANGE: u8 = 1;
const OP_PUT: u8 = 2;
const OP_DELETE_RANGE: u8 = 3;
const OP_TXN: u8 = 4;

const PUT_PREV_KV: u8 = 1;
const PUT_IGNORE_VALUE: u8 = 2;
const PUT_IGNORE_LEASE: u8 = 4;
const RANGE_KEYS_ONLY: u8 = 1;
const RANGE_COUNT_ONLY: u8 = 2;

/// The smallest encoded compare and op, to check counts against the bytes left.
const COMPARE_BYTES_MIN: usize = 4 + 4 + 1 + 1 + 4;
const OP_BYTES_MIN: usize = 1 + 4 + 4 + 1;

/// A write to the state machine, replicated through the raft log. The requests are the mvcc
/// store's, which mirror etcd's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    Txn(TxnRequest),
    /// etcd's `Compact`: drop the history below `revision`.
    Compact {
        revision: i64,
    },
    /// etcd's `LeaseGrant`: a lease of `ttl_seconds` with id `id`, or, with id 0, one the
    /// replica picks at apply time from the replicated state (the same on every replica).
    LeaseGrant {
        id: i64,
        ttl_seconds: i64,
    },
    /// etcd's `LeaseRevoke`: ends the lease and deletes every key attached to it, in one
    /// revision. The leader also proposes it when a lease expires.
    LeaseRevoke {
        id: i64,
    },
    /// etcd's `Alarm` ACTIVATE or DEACTIVATE: raises or clears `alarm` in the replicated alarm
    /// table ([`crate::alarm`]). The leader also proposes it when its database passes the quota.
    Alarm {
        action: AlarmAction,
        alarm: AlarmMember,
    },
    /// etcd's `MemberAdd`: a new member of the replicated member table (raft's membership
    /// follows the table, see `members`).
    MemberAdd(MemberRecord),
    /// etcd's `MemberRemove`.
    MemberRemove {
        id: u64,
    },
    /// etcd's `MemberUpdate`: new peer URLs.
    MemberUpdate {
        id: u64,
        peer_urls: Vec<String>,
    },
    /// etcd's `MemberPromote`: a learner becomes a voter.
    MemberPromote {
        id: u64,
    },
    /// A member's name and client URLs, as it announced them (etcd's "publish").
    MemberPublish {
        id: u64,
        name: String,
        client_urls: Vec<String>,
    },
    /// Opens a client session of `ttl_seconds`; its id is the entry's log index. The leader puts
    /// its configured limit of open sessions in the command, so every replica refuses alike.
    SessionOpen {
        ttl_seconds: i64,
        sessions_max: u32,
    },
    /// The client closes its session: its stored answers go.
    SessionClose {
        id: u64,
    },
    /// The leader expires a session whose deadline passed (proposed by its tick).
    SessionExpire {
        id: u64,
    },
    /// `command` (a put, delete, txn, compact, lease grant or revoke) within a session: applied
    /// at most once per (`session`, `sequence`); a retry gets the stored answer. Every answer up
    /// to `acknowledged` reached the client and is dropped.
    Sessioned {
        session: u64,
        sequence: u64,
        acknowledged: u64,
        command: Box<Command>,
    },
}

/// Who proposed a forwarded command: the follower's member id and its request id there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ForwardTag {
    pub origin: u64,
    pub id: u64,
}

/// Whether a follower may hand `command` to the leader through raft (its client then gets
/// the answer the follower's own apply gives): the key-value writes, plain or in a session.
pub fn is_forwardable(command: &Command) -> bool {
    match command {
        Command::Put(_) | Command::DeleteRange(_) | Command::Txn(_) => true,
        Command::Sessioned { command, .. } => matches!(
            **command,
            Command::Put(_) | Command::DeleteRange(_) | Command::Txn(_)
        ),
        _ => false,
    }
}

/// Encodes `command` as proposed through a follower (tag 44). Panics on a command that is not
/// [`is_forwardable`] or that [`check_encodable`] refuses.
pub fn encode_forwarded(tag: ForwardTag, command: &Command) -> Vec<u8> {
    assert!(
        is_forwardable(command),
        "command not forwardable: {command:?}"
    );
    if let Err(refusal) = check_encodable(command) {
        panic!("command not encodable: {refusal:?} (transactions nest at most {TXN_DEPTH_MAX})");
    }
    let mut out = Vec::new();
    put_u8(&mut out, COMMAND_FORMAT_VERSION);
    put_u8(&mut out, TAG_FORWARDED);
    put_u64(&mut out, tag.origin);
    put_u64(&mut out, tag.id);
    encode_body(command, &mut out);
    out
}

/// The origin and id of a forwarded command's bytes (read from its header only; `None` for
/// any other command). [`decode_command`] checks the rest.
pub fn decode_forward_tag(bytes: &[u8]) -> Option<ForwardTag> {
    let mut reader = Reader::new(bytes);
    if reader.u8().ok()? != COMMAND_FORMAT_VERSION || reader.u8().ok()? != TAG_FORWARDED {
        return None;
    }
    Some(ForwardTag {
        origin: reader.u64().ok()?,
        id: reader.u64().ok()?,
    })
}

/// Why [`check_encodable`] refused a command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotEncodable {
    /// Transactions nested this deep, past [`TXN_DEPTH_MAX`].
    TooDeep { depth: usize },
    /// A sessioned command around one a session may not carry (only put, delete, txn, compact,
    /// lease grant and revoke; no nesting).
    NotSessionable,
}

/// Whether a session may carry `command`: the writes whose answer the session table stores.
pub fn is_sessionable(command: &Command) -> bool {
    matches!(
        command,
        Command::Put(_)
            | Command::DeleteRange(_)
            | Command::Txn(_)
            | Command::Compact { .. }
            | Command::LeaseGrant { .. }
            | Command::LeaseRevoke { .. }
    )
}

/// Refuses a command that [`decode_command`] would not accept back: transactions nested deeper
/// than [`TXN_DEPTH_MAX`] (returns the depth), or a sessioned command around one a session may
/// not carry.
pub fn check_encodable(command: &Command) -> Result<(), NotEncodable> {
    let command = match command {
        Command::Sessioned { command, .. } if !is_sessionable(command) => {
            return Err(NotEncodable::NotSessionable)
        }
        Command::Sessioned { command, .. } => command,
        command => command,
    };
    let depth = match command {
        Command::Txn(txn) => txn_depth(txn),
        _ => 0,
    };
    if depth > TXN_DEPTH_MAX {
        return Err(NotEncodable::TooDeep { depth });
    }
    Ok(())
}

fn txn_depth(txn: &TxnRequest) -> usize {
    1 + txn
        .success
        .iter()
        .chain(&txn.failure)
        .map(|op| match op {
            RequestOp::Txn(nested) => txn_depth(nested),
            _ => 0,
        })
        .max()
        .unwrap_or(0)
}

/// Encodes `command` (see the module doc). Panics on a command [`check_encodable`] refuses.
pub fn encode_command(command: &Command) -> Vec<u8> {
    if let Err(refusal) = check_encodable(command) {
        panic!("command not encodable: {refusal:?} (transactions nest at most {TXN_DEPTH_MAX})");
    }
    let mut out = Vec::new();
    put_u8(&mut out, COMMAND_FORMAT_VERSION);
    encode_body(command, &mut out);
    out
}

/// The tag and body of `command`.
fn encode_body(command: &Command, out: &mut Vec<u8>) {
    match command {
        Command::Put(put) => {
            put_u8(out, TAG_PUT);
            encode_put(put, out);
        }
        Command::DeleteRange(delete) => {
            put_u8(out, TAG_DELETE_RANGE);
            encode_delete(delete, out);
        }
        Command::Txn(txn) => {
            put_u8(out, TAG_TXN);
            encode_txn(txn, out);
        }
        Command::Compact { revision } => {
            put_u8(out, TAG_COMPACT);
            put_i64(out, *revision);
        }
        Command::LeaseGrant { id, ttl_seconds } => {
            put_u8(out, TAG_LEASE_GRANT);
            put_i64(out, *id);
            put_i64(out, *ttl_seconds);
        }
        Command::LeaseRevoke { id } => {
            put_u8(out, TAG_LEASE_REVOKE);
            put_i64(out, *id);
        }
        Command::Alarm { action, alarm } => {
            put_u8(out, TAG_ALARM);
            put_u8(
                out,
                match action {
                    AlarmAction::Activate => ALARM_ACTIVATE,
                    AlarmAction::Deactivate => ALARM_DEACTIVATE,
                },
            );
            put_u64(out, alarm.member_id);
            put_u8(out, alarm.alarm.code());
        }
        Command::MemberAdd(member) => {
            put_u8(out, TAG_MEMBER_ADD);
            encode_member(member, out);
        }
        Command::MemberRemove { id } => {
            put_u8(out, TAG_MEMBER_REMOVE);
            put_u64(out, *id);
        }
        Command::MemberUpdate { id, peer_urls } => {
            put_u8(out, TAG_MEMBER_UPDATE);
            put_u64(out, *id);
            put_strings(out, peer_urls);
        }
        Command::MemberPromote { id } => {
            put_u8(out, TAG_MEMBER_PROMOTE);
            put_u64(out, *id);
        }
        Command::MemberPublish {
            id,
            name,
            client_urls,
        } => {
            put_u8(out, TAG_MEMBER_PUBLISH);
            put_u64(out, *id);
            put_string(out, name);
            put_strings(out, client_urls);
        }
        Command::SessionOpen {
            ttl_seconds,
            sessions_max,
        } => {
            put_u8(out, TAG_SESSION_OPEN);
            put_i64(out, *ttl_seconds);
            put_u32(out, *sessions_max);
        }
        Command::SessionClose { id } => {
            put_u8(out, TAG_SESSION_CLOSE);
            put_u64(out, *id);
        }
        Command::SessionExpire { id } => {
            put_u8(out, TAG_SESSION_EXPIRE);
            put_u64(out, *id);
        }
        Command::Sessioned {
            session,
            sequence,
            acknowledged,
            command,
        } => {
            put_u8(out, TAG_SESSIONED);
            put_u64(out, *session);
            put_u64(out, *sequence);
            put_u64(out, *acknowledged);
            encode_body(command, out);
        }
    }
}

/// Decodes a command written by [`encode_command`]. Never panics; allocates only in proportion
/// to `bytes` (every length and count is checked against the bytes left first).
pub fn decode_command(bytes: &[u8]) -> Result<Command, DecodeError> {
    let mut reader = Reader::new(bytes);
    let version = reader.u8()?;
    if version != COMMAND_FORMAT_VERSION {
        return Err(DecodeError::UnsupportedVersion {
            what: "command",
            version,
        });
    }
    let command = if reader.peek_u8() == Some(TAG_FORWARDED) {
        reader.u8()?;
        reader.u64()?;
        reader.u64()?;
        let command = decode_body(&mut reader, true)?;
        if !is_forwardable(&command) {
            return Err(DecodeError::UnknownTag {
                what: "forwarded command",
                tag: TAG_FORWARDED,
            });
        }
        command
    } else {
        decode_body(&mut reader, true)?
    };
    reader.finish()?;
    Ok(command)
}

/// The tag and body of a command; a sessioned command only at the top (`outer`), around a
/// sessionable one.
fn decode_body(reader: &mut Reader<'_>, outer: bool) -> Result<Command, DecodeError> {
    let tag = reader.u8()?;
    if !outer && !matches!(tag, TAG_PUT..=TAG_LEASE_REVOKE) {
        return Err(DecodeError::UnknownTag {
            what: "sessioned command",
            tag,
        });
    }
    let command = match tag {
        TAG_PUT => Command::Put(decode_put(reader)?),
        TAG_DELETE_RANGE => Command::DeleteRange(decode_delete(reader)?),
        TAG_TXN => Command::Txn(decode_txn(reader, 1)?),
        TAG_COMPACT => Command::Compact {
            revision: reader.i64()?,
        },
        TAG_LEASE_GRANT => Command::LeaseGrant {
            id: reader.i64()?,
            ttl_seconds: reader.i64()?,
        },
        TAG_LEASE_REVOKE => Command::LeaseRevoke { id: reader.i64()? },
        TAG_ALARM => decode_alarm(reader)?,
        TAG_MEMBER_ADD => Command::MemberAdd(decode_member(reader)?),
        TAG_MEMBER_REMOVE => Command::MemberRemove { id: reader.u64()? },
        TAG_MEMBER_UPDATE => Command::MemberUpdate {
            id: reader.u64()?,
            peer_urls: read_strings(reader)?,
        },
        TAG_MEMBER_PROMOTE => Command::MemberPromote { id: reader.u64()? },
        TAG_MEMBER_PUBLISH => Command::MemberPublish {
            id: reader.u64()?,
            name: read_string(reader)?,
            client_urls: read_strings(reader)?,
        },
        TAG_SESSION_OPEN => Command::SessionOpen {
            ttl_seconds: reader.i64()?,
            sessions_max: reader.u32()?,
        },
        TAG_SESSION_CLOSE => Command::SessionClose { id: reader.u64()? },
        TAG_SESSION_EXPIRE => Command::SessionExpire { id: reader.u64()? },
        TAG_SESSIONED => Command::Sessioned {
            session: reader.u64()?,
            sequence: reader.u64()?,
            acknowledged: reader.u64()?,
            command: Box::new(decode_body(reader, false)?),
        },
        tag => {
            return Err(DecodeError::UnknownTag {
                what: "command",
                tag,
            })
        }
    };
    Ok(command)
}

fn decode_alarm(reader: &mut Reader<'_>) -> Result<Command, DecodeError> {
    let action = match reader.u8()? {
        ALARM_ACTIVATE => AlarmAction::Activate,
        ALARM_DEACTIVATE => AlarmAction::Deactivate,
        tag => {
            return Err(DecodeError::UnknownTag {
                what: "alarm action",
                tag,
            })
        }
    };
    let member_id = reader.u64()?;
    let alarm = read_alarm_type(reader)?;
    Ok(Command::Alarm {
        action,
        alarm: AlarmMember { member_id, alarm },
    })
}

fn encode_put(put: &PutRequest, out: &mut Vec<u8>) {
    put_bytes(out, &put.key);
    put_bytes(out, &put.value);
    put_i64(out, put.lease);
    let mut flags = 0;
    if put.prev_kv {
        flags |= PUT_PREV_KV;
    }
    if put.ignore_value {
        flags |= PUT_IGNORE_VALUE;
    }
    if put.ignore_lease {
        flags |= PUT_IGNORE_LEASE;
    }
    put_u8(out, flags);
}

fn decode_put(reader: &mut Reader<'_>) -> Result<PutRequest, DecodeError> {
    let key = reader.bytes()?;
    let value = reader.bytes()?;
    let lease = reader.i64()?;
    let flags = read_flags(
        reader,
        "put",
        PUT_PREV_KV | PUT_IGNORE_VALUE | PUT_IGNORE_LEASE,
    )?;
    Ok(PutRequest {
        key,
        value,
        lease,
        prev_kv: flags & PUT_PREV_KV != 0,
        ignore_value: flags & PUT_IGNORE_VALUE != 0,
        ignore_lease: flags & PUT_IGNORE_LEASE != 0,
    })
}

fn encode_delete(delete: &DeleteRangeRequest, out: &mut Vec<u8>) {
    put_bytes(out, &delete.key);
    put_bytes(out, &delete.range_end);
    put_u8(out, u8::from(delete.prev_kv));
}

fn decode_delete(reader: &mut Reader<'_>) -> Result<DeleteRangeRequest, DecodeError> {
    Ok(DeleteRangeRequest {
        key: reader.bytes()?,
        range_end: reader.bytes()?,
        prev_kv: read_bool(reader, "delete")?,
    })
}

fn encode_range(range: &RangeRequest, out: &mut Vec<u8>) {
    put_bytes(out, &range.key);
    put_bytes(out, &range.range_end);
    put_i64(out, range.limit);
    put_i64(out, range.revision);
    put_u8(
        out,
        match range.sort_order {
            SortOrder::None => 0,
            SortOrder::Ascend => 1,
            SortOrder::Descend => 2,
        },
    );
    put_u8(
        out,
        match range.sort_target {
            SortTarget::Key => 0,
            SortTarget::Version => 1,
            SortTarget::Create => 2,
            SortTarget::Mod => 3,
            SortTarget::Value => 4,
        },
    );
    let mut flags = 0;
    if range.keys_only {
        flags |= RANGE_KEYS_ONLY;
    }
    if range.count_only {
        flags |= RANGE_COUNT_ONLY;
    }
    put_u8(out, flags);
    put_i64(out, range.min_mod_revision);
    put_i64(out, range.max_mod_revision);
    put_i64(out, range.min_create_revision);
    put_i64(out, range.max_create_revision);
}

fn decode_range(reader: &mut Reader<'_>) -> Result<RangeRequest, DecodeError> {
    let key = reader.bytes()?;
    let range_end = reader.bytes()?;
    let limit = reader.i64()?;
    let revision = reader.i64()?;
    let sort_order = match reader.u8()? {
        0 => SortOrder::None,
        1 => SortOrder::Ascend,
        2 => SortOrder::Descend,
        tag => {
            return Err(DecodeError::UnknownTag {
                what: "sort order",
                tag,
            })
        }
    };
    let sort_target = match reader.u8()? {
        0 => SortTarget::Key,
        1 => SortTarget::Version,
        2 => SortTarget::Create,
        3 => SortTarget::Mod,
        4 => SortTarget::Value,
        tag => {
            return Err(DecodeError::UnknownTag {
                what: "sort target",
                tag,
            })
        }
    };
    let flags = read_flags(reader, "range", RANGE_KEYS_ONLY | RANGE_COUNT_ONLY)?;
    Ok(RangeRequest {
        key,
        range_end,
        limit,
        revision,
        sort_order,
        sort_target,
        keys_only: flags & RANGE_KEYS_ONLY != 0,
        count_only: flags & RANGE_COUNT_ONLY != 0,
        min_mod_revision: reader.i64()?,
        max_mod_revision: reader.i64()?,
        min_create_revision: reader.i64()?,
        max_create_revision: reader.i64()?,
    })
}

fn encode_txn(txn: &TxnRequest, out: &mut Vec<u8>) {
    put_len(out, txn.compare.len());
    for compare in &txn.compare {
        encode_compare(compare, out);
    }
    for branch in [&txn.success, &txn.failure] {
        put_len(out, branch.len());
        for op in branch {
            encode_op(op, out);
        }
    }
}

fn decode_txn(reader: &mut Reader<'_>, depth: usize) -> Result<TxnRequest, DecodeError> {
    if depth > TXN_DEPTH_MAX {
        return Err(DecodeError::TooDeep {
            depth_max: TXN_DEPTH_MAX,
        });
    }
    let compares = reader.count("compare", COMPARE_BYTES_MIN)?;
    let mut compare = Vec::new();
    for _ in 0..compares {
        compare.push(decode_compare(reader)?);
    }
    let success = decode_ops(reader, depth)?;
    let failure = decode_ops(reader, depth)?;
    Ok(TxnRequest {
        compare,
        success,
        failure,
    })
}

fn decode_ops(reader: &mut Reader<'_>, depth: usize) -> Result<Vec<RequestOp>, DecodeError> {
    let count = reader.count("op", OP_BYTES_MIN)?;
    let mut ops = Vec::new();
    for _ in 0..count {
        ops.push(decode_op(reader, depth)?);
    }
    Ok(ops)
}

fn encode_compare(compare: &Compare, out: &mut Vec<u8>) {
    put_bytes(out, &compare.key);
    put_bytes(out, &compare.range_end);
    put_u8(
        out,
        match compare.result {
            CompareResult::Equal => 0,
            CompareResult::Greater => 1,
            CompareResult::Less => 2,
            CompareResult::NotEqual => 3,
        },
    );
    match &compare.target {
        CompareTarget::Version(version) => {
            put_u8(out, 0);
            put_i64(out, *version);
        }
        CompareTarget::CreateRevision(revision) => {
            put_u8(out, 1);
            put_i64(out, *revision);
        }
        CompareTarget::ModRevision(revision) => {
            put_u8(out, 2);
            put_i64(out, *revision);
        }
        CompareTarget::Value(value) => {
            put_u8(out, 3);
            put_bytes(out, value);
        }
        CompareTarget::Lease(lease) => {
            put_u8(out, 4);
            put_i64(out, *lease);
        }
    }
}

fn decode_compare(reader: &mut Reader<'_>) -> Result<Compare, DecodeError> {
    let key = reader.bytes()?;
    let range_end = reader.bytes()?;
    let result = match reader.u8()? {
        0 => CompareResult::Equal,
        1 => CompareResult::Greater,
        2 => CompareResult::Less,
        3 => CompareResult::NotEqual,
        tag => {
            return Err(DecodeError::UnknownTag {
                what: "compare result",
                tag,
            })
        }
    };
    let target = match reader.u8()? {
        0 => CompareTarget::Version(reader.i64()?),
        1 => CompareTarget::CreateRevision(reader.i64()?),
        2 => CompareTarget::ModRevision(reader.i64()?),
        3 => CompareTarget::Value(reader.bytes()?),
        4 => CompareTarget::Lease(reader.i64()?),
        tag => {
            return Err(DecodeError::UnknownTag {
                what: "compare target",
                tag,
            })
        }
    };
    Ok(Compare {
        key,
        range_end,
        result,
        target,
    })
}

fn encode_op(op: &RequestOp, out: &mut Vec<u8>) {
    match op {
        RequestOp::Range(range) => {
            put_u8(out, OP_RANGE);
            encode_range(range, out);
        }
        RequestOp::Put(put) => {
            put_u8(out, OP_PUT);
            encode_put(put, out);
        }
        RequestOp::DeleteRange(delete) => {
            put_u8(out, OP_DELETE_RANGE);
            encode_delete(delete, out);
        }
        RequestOp::Txn(txn) => {
            put_u8(out, OP_TXN);
            encode_txn(txn, out);
        }
    }
}

fn decode_op(reader: &mut Reader<'_>, depth: usize) -> Result<RequestOp, DecodeError> {
    Ok(match reader.u8()? {
        OP_RANGE => RequestOp::Range(decode_range(reader)?),
        OP_PUT => RequestOp::Put(decode_put(reader)?),
        OP_DELETE_RANGE => RequestOp::DeleteRange(decode_delete(reader)?),
        OP_TXN => RequestOp::Txn(decode_txn(reader, depth + 1)?),
        tag => return Err(DecodeError::UnknownTag { what: "op", tag }),
    })
}

fn read_flags(reader: &mut Reader<'_>, what: &'static str, known: u8) -> Result<u8, DecodeError> {
    let flags = reader.u8()?;
    if flags & !known != 0 {
        return Err(DecodeError::UnknownFlags { what, flags });
    }
    Ok(flags)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_put_round_trips_in_a_few_bytes() {
        let command = Command::Put(PutRequest::new("k", "v"));
        let bytes = encode_command(&command);
        assert_eq!(bytes.len(), 2 + 5 + 5 + 8 + 1);
        assert_eq!(decode_command(&bytes), Ok(command));
    }

    #[test]
    fn an_alarm_round_trips_and_a_bad_action_or_type_is_refused() {
        use crate::alarm::AlarmType;
        let command = Command::Alarm {
            action: AlarmAction::Deactivate,
            alarm: AlarmMember {
                member_id: u64::MAX,
                alarm: AlarmType::NoSpace,
            },
        };
        let bytes = encode_command(&command);
        assert_eq!(bytes.len(), 2 + 1 + 8 + 1);
        assert_eq!(decode_command(&bytes), Ok(command));
        let mut bad_action = bytes.clone();
        bad_action[2] = 3;
        assert_eq!(
            decode_command(&bad_action),
            Err(DecodeError::UnknownTag {
                what: "alarm action",
                tag: 3
            })
        );
        let mut none_alarm = bytes.clone();
        none_alarm[11] = 0;
        assert_eq!(
            decode_command(&none_alarm),
            Err(DecodeError::UnknownTag {
                what: "alarm",
                tag: 0
            })
        );
        assert!(decode_command(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn an_unknown_version_is_refused() {
        let mut bytes = encode_command(&Command::Compact { revision: 3 });
        bytes[0] = 2;
        assert_eq!(
            decode_command(&bytes),
            Err(DecodeError::UnsupportedVersion {
                what: "command",
                version: 2
            })
        );
    }

    #[test]
    fn a_forged_count_is_refused_before_allocating() {
        let mut bytes = vec![COMMAND_FORMAT_VERSION, TAG_TXN];
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode_command(&bytes),
            Err(DecodeError::CountTooLarge { .. })
        ));
    }

    fn nested(depth: usize) -> TxnRequest {
        let mut txn = TxnRequest::default();
        for _ in 1..depth {
            txn = TxnRequest {
                success: vec![RequestOp::Txn(txn)],
                ..TxnRequest::default()
            };
        }
        txn
    }

    #[test]
    fn nesting_is_accepted_at_the_limit_and_refused_past_it() {
        let at_limit = Command::Txn(nested(TXN_DEPTH_MAX));
        assert_eq!(check_encodable(&at_limit), Ok(()));
        assert_eq!(
            decode_command(&encode_command(&at_limit)),
            Ok(at_limit.clone())
        );
        let past = Command::Txn(nested(TXN_DEPTH_MAX + 1));
        assert_eq!(
            check_encodable(&past),
            Err(NotEncodable::TooDeep {
                depth: TXN_DEPTH_MAX + 1
            })
        );
        // Forge the bytes of a deeper transaction by hand: the decoder refuses them.
        let mut bytes = vec![COMMAND_FORMAT_VERSION, TAG_TXN];
        for _ in 0..TXN_DEPTH_MAX {
            bytes.extend_from_slice(&0u32.to_le_bytes());
            bytes.extend_from_slice(&1u32.to_le_bytes());
            bytes.push(OP_TXN);
        }
        for _ in 0..3 * (TXN_DEPTH_MAX + 1) {
            bytes.extend_from_slice(&0u32.to_le_bytes());
        }
        assert_eq!(
            decode_command(&bytes),
            Err(DecodeError::TooDeep {
                depth_max: TXN_DEPTH_MAX
            })
        );
    }
}
