//! The encoding of a stored answer, `Result<CommandResponse, chorus_mvcc::Error>`: what a client
//! session keeps for a request the client has not acknowledged, in the backend's side table and
//! in the state snapshot.
//!
//! ```text
//! response = version u8 (= 1) | tag u8 | body
//!   tag 1 Put          revision i64 | has prev_kv u8 | [kv]
//!   tag 2 DeleteRange  revision i64 | deleted i64 | count u32, kvs
//!   tag 3 Txn          txn
//!   tag 4 Compact      revision i64
//!   tag 5 LeaseGrant   id i64 | ttl_seconds i64 | revision i64
//!   tag 6 LeaseRevoke  id i64 | revision i64 | deleted i64
//!   tag 100 Error      code u8 (see `ERROR_*`) | compact or current revision i64 for codes 1, 2
//! txn      = revision i64 | succeeded u8 | count u32, ops
//! op       = tag u8 (1 range, 2 put, 3 delete, 4 txn) | body
//!   range    revision i64 | count u32, kvs | more u8 | count i64
//!   put      revision i64 | has prev_kv u8 | [kv];  delete as tag 2;  txn as above
//! kv       = key bytes | create_revision i64 | mod_revision i64 | version i64 | value bytes | lease i64
//! ```
//!
//! Only the answers of the commands a session may carry are encodable (see [`is_storable`]):
//! never `Fatal` (it stops the replica), nor the member, alarm or session answers. Nested
//! transaction answers are bounded by [`TXN_DEPTH_MAX`] like the requests. The decoder never
//! panics, checks every count against the bytes left, and what it accepts encodes back to the
//! same bytes.

use crate::codec::{put_bytes, put_i64, put_len, put_u8, read_bool, DecodeError, Reader};
use crate::command::TXN_DEPTH_MAX;
use crate::replica::CommandResponse;
use chorus_mvcc::{
    DeleteRangeResponse, KeyValue, PutResponse, RangeResponse, ResponseOp, TxnResponse,
};

/// A stored answer: what a command of a session answered.
pub type StoredResult = Result<CommandResponse, chorus_mvcc::Error>;

const RESPONSE_FORMAT_VERSION: u8 = 1;

const TAG_PUT: u8 = 1;
const TAG_DELETE_RANGE: u8 = 2;
const TAG_TXN: u8 = 3;
const TAG_COMPACT: u8 = 4;
const TAG_LEASE_GRANT: u8 = 5;
const TAG_LEASE_REVOKE: u8 = 6;
const TAG_ERROR: u8 = 100;

const OP_RANGE: u8 = 1;
const OP_PUT: u8 = 2;
const OP_DELETE_RANGE: u8 = 3;
const OP_TXN: u8 = 4;

const ERROR_COMPACTED: u8 = 1;
const ERROR_FUTURE_REVISION: u8 = 2;
const ERROR_EMPTY_KEY: u8 = 3;
const ERROR_KEY_NOT_FOUND: u8 = 4;
const ERROR_VALUE_PROVIDED: u8 = 5;
const ERROR_LEASE_PROVIDED: u8 = 6;
const ERROR_TOO_MANY_OPS: u8 = 7;
const ERROR_DUPLICATE_KEY: u8 = 8;
const ERROR_LEASE_NOT_FOUND: u8 = 9;
const ERROR_LEASE_EXISTS: u8 = 10;
const ERROR_LEASE_TTL_TOO_LARGE: u8 = 11;
const ERROR_NO_SPACE: u8 = 12;

/// The smallest encoded key-value and op, to check counts against the bytes left.
const KV_BYTES_MIN: usize = 4 + 8 + 8 + 8 + 4 + 8;
const OP_BYTES_MIN: usize = 1 + 8 + 1;

/// Whether `result` is an answer a session stores (see the module doc).
pub fn is_storable(result: &StoredResult) -> bool {
    match result {
        Ok(CommandResponse::Txn(txn)) => txn_depth(txn) <= TXN_DEPTH_MAX,
        Ok(
            CommandResponse::Put(_)
            | CommandResponse::DeleteRange(_)
            | CommandResponse::Compact { .. }
            | CommandResponse::LeaseGrant { .. }
            | CommandResponse::LeaseRevoke { .. },
        ) => true,
        Ok(_) => false,
        Err(error) => error_code(error).is_some(),
    }
}

fn txn_depth(txn: &TxnResponse) -> usize {
    1 + txn
        .responses
        .iter()
        .map(|op| match op {
            ResponseOp::Txn(nested) => txn_depth(nested),
            _ => 0,
        })
        .max()
        .unwrap_or(0)
}

/// Encodes a stored answer. Panics on one [`is_storable`] refuses: the session table stores
/// only answers of the commands a session may carry.
pub fn encode_response(result: &StoredResult) -> Vec<u8> {
    assert!(is_storable(result), "not a storable answer: {result:?}");
    let mut out = vec![RESPONSE_FORMAT_VERSION];
    match result {
        Ok(CommandResponse::Put(put)) => {
            put_u8(&mut out, TAG_PUT);
            encode_put(put, &mut out);
        }
        Ok(CommandResponse::DeleteRange(delete)) => {
            put_u8(&mut out, TAG_DELETE_RANGE);
            encode_delete(delete, &mut out);
        }
        Ok(CommandResponse::Txn(txn)) => {
            put_u8(&mut out, TAG_TXN);
            encode_txn(txn, &mut out);
        }
        Ok(CommandResponse::Compact { revision }) => {
            put_u8(&mut out, TAG_COMPACT);
            put_i64(&mut out, *revision);
        }
        Ok(CommandResponse::LeaseGrant {
            id,
            ttl_seconds,
            revision,
        }) => {
            put_u8(&mut out, TAG_LEASE_GRANT);
            put_i64(&mut out, *id);
            put_i64(&mut out, *ttl_seconds);
            put_i64(&mut out, *revision);
        }
        Ok(CommandResponse::LeaseRevoke {
            id,
            revision,
            deleted,
        }) => {
            put_u8(&mut out, TAG_LEASE_REVOKE);
            put_i64(&mut out, *id);
            put_i64(&mut out, *revision);
            put_i64(&mut out, *deleted);
        }
        Ok(other) => unreachable!("checked storable: {other:?}"),
        Err(error) => {
            put_u8(&mut out, TAG_ERROR);
            let Some(code) = error_code(error) else {
                unreachable!("checked storable: {error:?}")
            };
            put_u8(&mut out, code);
            match error {
                chorus_mvcc::Error::Compacted { compact_revision } => {
                    put_i64(&mut out, *compact_revision)
                }
                chorus_mvcc::Error::FutureRevision { current_revision } => {
                    put_i64(&mut out, *current_revision)
                }
                _ => {}
            }
        }
    }
    out
}

/// Decodes an answer written by [`encode_response`]. Never panics; allocates only in proportion
/// to `bytes`.
pub fn decode_response(bytes: &[u8]) -> Result<StoredResult, DecodeError> {
    let mut reader = Reader::new(bytes);
    let version = reader.u8()?;
    if version != RESPONSE_FORMAT_VERSION {
        return Err(DecodeError::UnsupportedVersion {
            what: "stored response",
            version,
        });
    }
    let result = match reader.u8()? {
        TAG_PUT => Ok(CommandResponse::Put(decode_put(&mut reader)?)),
        TAG_DELETE_RANGE => Ok(CommandResponse::DeleteRange(decode_delete(&mut reader)?)),
        TAG_TXN => Ok(CommandResponse::Txn(decode_txn(&mut reader, 1)?)),
        TAG_COMPACT => Ok(CommandResponse::Compact {
            revision: reader.i64()?,
        }),
        TAG_LEASE_GRANT => Ok(CommandResponse::LeaseGrant {
            id: reader.i64()?,
            ttl_seconds: reader.i64()?,
            revision: reader.i64()?,
        }),
        TAG_LEASE_REVOKE => Ok(CommandResponse::LeaseRevoke {
            id: reader.i64()?,
            revision: reader.i64()?,
            deleted: reader.i64()?,
        }),
        TAG_ERROR => Err(decode_error(&mut reader)?),
        tag => {
            return Err(DecodeError::UnknownTag {
                what: "stored response",
                tag,
            })
        }
    };
    reader.finish()?;
    Ok(result)
}

fn error_code(error: &chorus_mvcc::Error) -> Option<u8> {
    use chorus_mvcc::Error;
    Some(match error {
        Error::Compacted { .. } => ERROR_COMPACTED,
        Error::FutureRevision { .. } => ERROR_FUTURE_REVISION,
        Error::EmptyKey => ERROR_EMPTY_KEY,
        Error::KeyNotFound => ERROR_KEY_NOT_FOUND,
        Error::ValueProvided => ERROR_VALUE_PROVIDED,
        Error::LeaseProvided => ERROR_LEASE_PROVIDED,
        Error::TooManyOps => ERROR_TOO_MANY_OPS,
        Error::DuplicateKey => ERROR_DUPLICATE_KEY,
        Error::LeaseNotFound => ERROR_LEASE_NOT_FOUND,
        Error::LeaseExists => ERROR_LEASE_EXISTS,
        Error::LeaseTtlTooLarge => ERROR_LEASE_TTL_TOO_LARGE,
        Error::NoSpace => ERROR_NO_SPACE,
        Error::Fatal(_) => return None,
    })
}

fn decode_error(reader: &mut Reader<'_>) -> Result<chorus_mvcc::Error, DecodeError> {
    use chorus_mvcc::Error;
    Ok(match reader.u8()? {
        ERROR_COMPACTED => Error::Compacted {
            compact_revision: reader.i64()?,
        },
        ERROR_FUTURE_REVISION => Error::FutureRevision {
            current_revision: reader.i64()?,
        },
        ERROR_EMPTY_KEY => Error::EmptyKey,
        ERROR_KEY_NOT_FOUND => Error::KeyNotFound,
        ERROR_VALUE_PROVIDED => Error::ValueProvided,
        ERROR_LEASE_PROVIDED => Error::LeaseProvided,
        ERROR_TOO_MANY_OPS => Error::TooManyOps,
        ERROR_DUPLICATE_KEY => Error::DuplicateKey,
        ERROR_LEASE_NOT_FOUND => Error::LeaseNotFound,
        ERROR_LEASE_EXISTS => Error::LeaseExists,
        ERROR_LEASE_TTL_TOO_LARGE => Error::LeaseTtlTooLarge,
        ERROR_NO_SPACE => Error::NoSpace,
        tag => {
            return Err(DecodeError::UnknownTag {
                what: "stored error",
                tag,
            })
        }
    })
}

fn encode_kv(kv: &KeyValue, out: &mut Vec<u8>) {
    put_bytes(out, &kv.key);
    put_i64(out, kv.create_revision);
    put_i64(out, kv.mod_revision);
    put_i64(out, kv.version);
    put_bytes(out, &kv.value);
    put_i64(out, kv.lease);
}

fn decode_kv(reader: &mut Reader<'_>) -> Result<KeyValue, DecodeError> {
    Ok(KeyValue {
        key: reader.bytes()?,
        create_revision: reader.i64()?,
        mod_revision: reader.i64()?,
        version: reader.i64()?,
        value: reader.bytes()?,
        lease: reader.i64()?,
    })
}

fn encode_kvs(kvs: &[KeyValue], out: &mut Vec<u8>) {
    put_len(out, kvs.len());
    for kv in kvs {
        encode_kv(kv, out);
    }
}

fn decode_kvs(reader: &mut Reader<'_>) -> Result<Vec<KeyValue>, DecodeError> {
    let count = reader.count("key-value", KV_BYTES_MIN)?;
    let mut kvs = Vec::with_capacity(count);
    for _ in 0..count {
        kvs.push(decode_kv(reader)?);
    }
    Ok(kvs)
}

fn encode_put(put: &PutResponse, out: &mut Vec<u8>) {
    put_i64(out, put.revision);
    match &put.prev_kv {
        Some(kv) => {
            put_u8(out, 1);
            encode_kv(kv, out);
        }
        None => put_u8(out, 0),
    }
}

fn decode_put(reader: &mut Reader<'_>) -> Result<PutResponse, DecodeError> {
    let revision = reader.i64()?;
    let prev_kv = if read_bool(reader, "put response prev_kv")? {
        Some(decode_kv(reader)?)
    } else {
        None
    };
    Ok(PutResponse { revision, prev_kv })
}

fn encode_delete(delete: &DeleteRangeResponse, out: &mut Vec<u8>) {
    put_i64(out, delete.revision);
    put_i64(out, delete.deleted);
    encode_kvs(&delete.prev_kvs, out);
}

fn decode_delete(reader: &mut Reader<'_>) -> Result<DeleteRangeResponse, DecodeError> {
    Ok(DeleteRangeResponse {
        revision: reader.i64()?,
        deleted: reader.i64()?,
        prev_kvs: decode_kvs(reader)?,
    })
}

fn encode_txn(txn: &TxnResponse, out: &mut Vec<u8>) {
    put_i64(out, txn.revision);
    put_u8(out, u8::from(txn.succeeded));
    put_len(out, txn.responses.len());
    for op in &txn.responses {
        match op {
            ResponseOp::Range(range) => {
                put_u8(out, OP_RANGE);
                put_i64(out, range.revision);
                encode_kvs(&range.kvs, out);
                put_u8(out, u8::from(range.more));
                put_i64(out, range.count);
            }
            ResponseOp::Put(put) => {
                put_u8(out, OP_PUT);
                encode_put(put, out);
            }
            ResponseOp::DeleteRange(delete) => {
                put_u8(out, OP_DELETE_RANGE);
                encode_delete(delete, out);
            }
            ResponseOp::Txn(nested) => {
                put_u8(out, OP_TXN);
                encode_txn(nested, out);
            }
        }
    }
}

fn decode_txn(reader: &mut Reader<'_>, depth: usize) -> Result<TxnResponse, DecodeError> {
    if depth > TXN_DEPTH_MAX {
        return Err(DecodeError::TooDeep {
            depth_max: TXN_DEPTH_MAX,
        });
    }
    let revision = reader.i64()?;
    let succeeded = read_bool(reader, "txn response succeeded")?;
    let count = reader.count("response op", OP_BYTES_MIN)?;
    let mut responses = Vec::with_capacity(count);
    for _ in 0..count {
        responses.push(match reader.u8()? {
            OP_RANGE => ResponseOp::Range(RangeResponse {
                revision: reader.i64()?,
                kvs: decode_kvs(reader)?,
                more: read_bool(reader, "range response more")?,
                count: reader.i64()?,
            }),
            OP_PUT => ResponseOp::Put(decode_put(reader)?),
            OP_DELETE_RANGE => ResponseOp::DeleteRange(decode_delete(reader)?),
            OP_TXN => ResponseOp::Txn(decode_txn(reader, depth + 1)?),
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "response op",
                    tag,
                })
            }
        });
    }
    Ok(TxnResponse {
        revision,
        succeeded,
        responses,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn kv(key: &str) -> KeyValue {
        KeyValue {
            key: key.as_bytes().to_vec(),
            create_revision: 2,
            mod_revision: 3,
            version: 2,
            value: b"value".to_vec(),
            lease: 7,
        }
    }

    fn samples() -> Vec<StoredResult> {
        vec![
            Ok(CommandResponse::Put(PutResponse {
                revision: 4,
                prev_kv: Some(kv("a")),
            })),
            Ok(CommandResponse::Put(PutResponse {
                revision: 4,
                prev_kv: None,
            })),
            Ok(CommandResponse::DeleteRange(DeleteRangeResponse {
                revision: 5,
                deleted: 2,
                prev_kvs: vec![kv("a"), kv("b")],
            })),
            Ok(CommandResponse::Txn(TxnResponse {
                revision: 6,
                succeeded: false,
                responses: vec![
                    ResponseOp::Range(RangeResponse {
                        revision: 6,
                        kvs: vec![kv("c")],
                        more: true,
                        count: 3,
                    }),
                    ResponseOp::Txn(TxnResponse {
                        revision: 6,
                        succeeded: true,
                        responses: vec![ResponseOp::Put(PutResponse {
                            revision: 6,
                            prev_kv: None,
                        })],
                    }),
                ],
            })),
            Ok(CommandResponse::Compact { revision: 9 }),
            Ok(CommandResponse::LeaseGrant {
                id: 1,
                ttl_seconds: 5,
                revision: 2,
            }),
            Ok(CommandResponse::LeaseRevoke {
                id: 1,
                revision: 3,
                deleted: 4,
            }),
            Err(chorus_mvcc::Error::Compacted {
                compact_revision: 8,
            }),
            Err(chorus_mvcc::Error::FutureRevision {
                current_revision: 8,
            }),
            Err(chorus_mvcc::Error::NoSpace),
            Err(chorus_mvcc::Error::LeaseNotFound),
        ]
    }

    #[test]
    fn every_storable_answer_round_trips_and_every_prefix_is_refused() {
        for result in samples() {
            let bytes = encode_response(&result);
            assert_eq!(decode_response(&bytes), Ok(result.clone()));
            for len in 0..bytes.len() {
                assert!(
                    decode_response(&bytes[..len]).is_err(),
                    "{result:?} at {len}"
                );
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(decode_response(&longer).is_err());
        }
    }

    #[test]
    fn fatal_and_non_session_answers_are_not_storable() {
        assert!(!is_storable(&Err(chorus_mvcc::Error::Fatal(
            chorus_mvcc::BackendError::Io("x".into())
        ))));
        assert!(!is_storable(&Ok(CommandResponse::Alarm {
            alarms: Vec::new(),
            revision: 1
        })));
    }

    #[test]
    fn a_forged_count_is_refused_before_allocating() {
        let mut bytes = vec![RESPONSE_FORMAT_VERSION, TAG_DELETE_RANGE];
        bytes.extend_from_slice(&[0; 16]);
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode_response(&bytes),
            Err(DecodeError::CountTooLarge { .. })
        ));
    }
}
