//! The cluster calls both recipes are made of: reading the owner or a predecessor, writing a
//! contender's key, deleting it only if it is still the same key, and waiting until every
//! earlier contender is gone.
//!
//! Every write here is idempotent (a compare on the key's create revision guards it), so one
//! whose outcome is unknown (a member died mid-call) is simply sent again.

use super::error::ConcurrencyError;
use super::keys;
use super::session::{session_error, SessionHandle};
use crate::backoff::Backoff;
use crate::error::CallKind;
use crate::{Client, Compare, CompareOp, Delete, Error, Get, Put, Txn, TxnOp, Watch};
use chorus_proto::etcdserverpb as pb;
use chorus_proto::mvccpb;
use pb::response_op::Response;
use std::future::Future;

/// How many times an idempotent write is sent when its outcome stays unknown.
const IDEMPOTENT_WRITE_ATTEMPTS_MAX: u32 = 8;

/// A range request built by [`keys`] (sorted, filtered), run as a read.
async fn range(client: &Client, request: pb::RangeRequest) -> Result<pb::RangeResponse, Error> {
    client
        .call(CallKind::Read, |channel| {
            let mut kv = client.kv_client(channel);
            let request = request.clone();
            async move { kv.range(request).await }
        })
        .await
}

/// The contender under `prefix` with the lowest create revision, and the revision read at.
pub(crate) async fn first_created(
    client: &Client,
    prefix: &[u8],
) -> Result<(Option<mvccpb::KeyValue>, i64), Error> {
    let response = range(client, keys::first_created_request(prefix)).await?;
    let revision = header_revision(response.header.as_ref());
    Ok((keys::pick_first_created(&response.kvs).cloned(), revision))
}

/// The contender created last before `create_revision`, and the revision read at.
async fn predecessor(
    client: &Client,
    prefix: &[u8],
    create_revision: i64,
) -> Result<(Option<mvccpb::KeyValue>, i64), Error> {
    let request = keys::predecessor_request(prefix, create_revision);
    let response = range(client, request).await?;
    let revision = header_revision(response.header.as_ref());
    Ok((
        keys::pick_predecessor(&response.kvs, create_revision).cloned(),
        revision,
    ))
}

/// Whether a contender created before `create_revision` is still there.
pub(crate) async fn has_predecessor(
    client: &Client,
    prefix: &[u8],
    create_revision: i64,
) -> Result<bool, Error> {
    Ok(predecessor(client, prefix, create_revision)
        .await?
        .0
        .is_some())
}

/// The create revision of `key`, or `None` if it does not exist.
pub(crate) async fn create_revision_of(client: &Client, key: &[u8]) -> Result<Option<i64>, Error> {
    let response = client.get(Get::key(key)).await?;
    Ok(response.kvs.first().map(|kv| kv.create_revision))
}

fn header_revision(header: Option<&pb::ResponseHeader>) -> i64 {
    header.map_or(0, |header| header.revision)
}

/// Runs a transaction that is safe to repeat, sending it again while its outcome is unknown.
async fn idempotent_txn(client: &Client, txn: Txn) -> Result<pb::TxnResponse, Error> {
    repeat_while_unknown(client.backoff(), || client.txn(txn.clone())).await
}

/// Runs `attempt` until it gives anything but [`Error::OutcomeUnknown`], at most
/// [`IDEMPOTENT_WRITE_ATTEMPTS_MAX`] times, pausing by `backoff` in between; the last result.
async fn repeat_while_unknown<T, F, Fut>(mut backoff: Backoff, mut attempt: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let mut attempts = 1;
    loop {
        match attempt().await {
            Err(Error::OutcomeUnknown { .. }) if attempts < IDEMPOTENT_WRITE_ATTEMPTS_MAX => {
                attempts += 1;
                tokio::time::sleep(backoff.next_delay()).await;
            }
            result => return result,
        }
    }
}

/// The contender's key as it is after [`create_key`].
pub(crate) struct Created {
    pub(crate) create_revision: i64,
    /// The value the key has now (the given one when created; else the one found).
    pub(crate) value: Vec<u8>,
}

/// Writes `key` = `value` with the session's lease unless it exists (etcd's `tryAcquire` and
/// `Campaign` first step); an existing key (this session's from before) keeps its place.
pub(crate) async fn create_key(
    session: &SessionHandle,
    key: &[u8],
    value: &[u8],
) -> Result<Created, ConcurrencyError> {
    let txn = Txn::new()
        .when([Compare::create_revision(key, CompareOp::Equal, 0)])
        .and_then([TxnOp::Put(Put::new(key, value).lease(session.lease_id))])
        .or_else([TxnOp::Get(Get::key(key))]);
    let response = idempotent_txn(&session.client, txn)
        .await
        .map_err(|error| session_error(session.lease_id, error))?;
    if response.succeeded {
        return Ok(Created {
            create_revision: header_revision(response.header.as_ref()),
            value: value.to_vec(),
        });
    }
    let existing = response
        .responses
        .first()
        .and_then(|op| match &op.response {
            Some(Response::ResponseRange(range)) => range.kvs.first(),
            _ => None,
        })
        .ok_or_else(|| {
            ConcurrencyError::Client(Error::InvalidArgument(
                "the server answered a failed create without the existing key".to_string(),
            ))
        })?;
    Ok(Created {
        create_revision: existing.create_revision,
        value: existing.value.to_vec(),
    })
}

/// Writes `value` to `key` if it is still the key created at `create_revision`; whether it
/// was.
pub(crate) async fn put_if_created_at(
    session: &SessionHandle,
    key: &[u8],
    create_revision: i64,
    value: &[u8],
) -> Result<bool, ConcurrencyError> {
    let txn = Txn::new()
        .when([Compare::create_revision(
            key,
            CompareOp::Equal,
            create_revision,
        )])
        .and_then([TxnOp::Put(Put::new(key, value).lease(session.lease_id))]);
    let response = idempotent_txn(&session.client, txn)
        .await
        .map_err(|error| session_error(session.lease_id, error))?;
    Ok(response.succeeded)
}

/// Deletes `key` if it is still the key created at `create_revision` (so a later contender
/// of the same session is never deleted by a stale cleanup); whether it was.
pub(crate) async fn delete_if_created_at(
    client: &Client,
    key: &[u8],
    create_revision: i64,
) -> Result<bool, Error> {
    let txn = Txn::new()
        .when([Compare::create_revision(
            key,
            CompareOp::Equal,
            create_revision,
        )])
        .and_then([TxnOp::Delete(Delete::key(key))]);
    Ok(idempotent_txn(client, txn).await?.succeeded)
}

/// Returns once no key under `prefix` was created before `create_revision` (etcd's
/// `waitDeletes`): reads the latest-created predecessor, watches it from the revision read at
/// until it is deleted, and reads again. Keys are never created with an older revision, so
/// each round leaves fewer predecessors; the watch starts right after the read, so no delete
/// is missed, and it resumes on another member if its own dies.
pub(crate) async fn wait_for_predecessors(
    client: &Client,
    prefix: &[u8],
    create_revision: i64,
) -> Result<(), Error> {
    loop {
        let (Some(predecessor), read_revision) =
            predecessor(client, prefix, create_revision).await?
        else {
            return Ok(());
        };
        let watch = Watch::key(predecessor.key.to_vec()).start_revision(read_revision + 1);
        let mut watcher = client.watch(watch).await?;
        loop {
            match watcher.next().await {
                Ok(batch) => {
                    if batch.events.iter().any(is_delete) {
                        break;
                    }
                }
                // The history to watch from is gone: read again instead.
                Err(Error::WatchCanceled {
                    compact_revision, ..
                }) if compact_revision != 0 => break,
                Err(error) => return Err(error),
            }
        }
    }
}

pub(crate) fn is_delete(event: &mvccpb::Event) -> bool {
    event.r#type == mvccpb::event::EventType::Delete as i32
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::time::Duration;

    fn unknown() -> Error {
        Error::OutcomeUnknown {
            code: tonic::Code::Unavailable,
            message: "connection reset".to_string(),
        }
    }

    /// Runs `repeat_while_unknown` on answers that are unknown `unknown_count` times, then
    /// `Ok`; the result and the number of attempts made.
    async fn run(unknown_count: u32) -> (Result<u32, Error>, u32) {
        let attempts = Cell::new(0);
        let result = repeat_while_unknown(Backoff::new(Duration::ZERO, Duration::ZERO), || {
            attempts.set(attempts.get() + 1);
            let answer = if attempts.get() <= unknown_count {
                Err(unknown())
            } else {
                Ok(attempts.get())
            };
            async move { answer }
        })
        .await;
        (result, attempts.get())
    }

    #[tokio::test]
    async fn an_unknown_outcome_is_sent_again_up_to_the_limit() {
        assert_eq!(run(0).await, (Ok(1), 1));
        let at_limit = IDEMPOTENT_WRITE_ATTEMPTS_MAX - 1;
        assert_eq!(
            run(at_limit).await,
            (
                Ok(IDEMPOTENT_WRITE_ATTEMPTS_MAX),
                IDEMPOTENT_WRITE_ATTEMPTS_MAX
            )
        );
        let past_limit = IDEMPOTENT_WRITE_ATTEMPTS_MAX;
        assert_eq!(
            run(past_limit).await,
            (Err(unknown()), IDEMPOTENT_WRITE_ATTEMPTS_MAX)
        );
    }

    #[tokio::test]
    async fn other_failures_are_not_repeated() {
        let attempts = Cell::new(0);
        let result: Result<(), Error> =
            repeat_while_unknown(Backoff::new(Duration::ZERO, Duration::ZERO), || {
                attempts.set(attempts.get() + 1);
                async { Err(Error::NoEndpoints) }
            })
            .await;
        assert_eq!((result, attempts.get()), (Err(Error::NoEndpoints), 1));
    }
}
