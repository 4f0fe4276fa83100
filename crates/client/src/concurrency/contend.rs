//! Queueing for a lock or a leadership: write the contender's key, then wait until every
//! earlier contender is gone. Shared by [`Mutex`](super::Mutex) and
//! [`Election`](super::Election).
//!
//! A waiter that gives up (cancelled, timed out, or its future dropped) deletes its key, so it
//! never blocks the contenders behind it. A dropped future cannot wait for that delete: it
//! spawns it and leaves its handle in the recipe's cleanup slot, which the next call awaits
//! before writing the key again (else the late delete could remove the new key).

use super::error::ConcurrencyError;
use super::ops;
use super::session::SessionHandle;
use crate::Client;
use std::future::Future;
use tokio::task::JoinHandle;

/// A contender's key and the revision that created it: its place in the queue, and the
/// fencing token while it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Position {
    pub(crate) key: Vec<u8>,
    pub(crate) create_revision: i64,
}

/// The spawned delete of an abandoned key, if any.
pub(crate) type CleanupSlot = Option<JoinHandle<()>>;

/// Writes the contender's key with `value` (or finds it from an earlier call of this session,
/// keeping its place; its value is made `value`).
pub(crate) async fn enqueue(
    session: &SessionHandle,
    key: &[u8],
    value: &[u8],
    cleanup: &mut CleanupSlot,
) -> Result<Position, ConcurrencyError> {
    if let Some(pending) = cleanup.take() {
        let _ = pending.await;
    }
    session.check_alive()?;
    let created = ops::create_key(session, key, value).await?;
    let position = Position {
        key: key.to_vec(),
        create_revision: created.create_revision,
    };
    if created.value != value {
        // A candidacy of this session from before, with another value: take the new one.
        match ops::put_if_created_at(session, key, position.create_revision, value).await {
            Ok(true) => {}
            Ok(false) => return Err(session.expired(super::SessionEnd::Expired)),
            Err(error) => {
                let _ =
                    ops::delete_if_created_at(&session.client, key, position.create_revision).await;
                return Err(error);
            }
        }
    }
    Ok(position)
}

/// Waits until `position` is first under `prefix`, or the session ends, or `give_up` fires
/// (then the key is deleted and its error returned).
pub(crate) async fn wait_turn<G>(
    session: &SessionHandle,
    prefix: &[u8],
    position: &Position,
    cleanup: &mut CleanupSlot,
    give_up: G,
) -> Result<(), ConcurrencyError>
where
    G: Future<Output = ConcurrencyError>,
{
    let mut guard = Abandon::arm(&session.client, position, cleanup);
    let client = &session.client;
    let waited = tokio::select! {
        result = ops::wait_for_predecessors(client, prefix, position.create_revision) => {
            result.map_err(ConcurrencyError::from)
        }
        end = session.done() => Err(session.expired(end)),
        error = give_up => Err(error),
    };
    if let Err(error) = waited {
        guard.delete_now().await;
        return Err(error);
    }
    // Every earlier contender is gone; make sure this one still is there (its lease may have
    // expired while it waited).
    let still_there = ops::create_revision_of(client, &position.key).await?;
    guard.disarm();
    if still_there != Some(position.create_revision) {
        return Err(session.expired(super::SessionEnd::Expired));
    }
    Ok(())
}

/// Whether `position` is first under `prefix` now; if not, its key is deleted.
pub(crate) async fn try_turn(
    session: &SessionHandle,
    prefix: &[u8],
    position: &Position,
    cleanup: &mut CleanupSlot,
) -> Result<bool, ConcurrencyError> {
    let mut guard = Abandon::arm(&session.client, position, cleanup);
    let behind = ops::has_predecessor(&session.client, prefix, position.create_revision).await?;
    if behind {
        guard.delete_now().await;
        return Ok(false);
    }
    guard.disarm();
    Ok(true)
}

/// Deletes a queued contender's key unless disarmed: at once with
/// [`delete_now`](Abandon::delete_now), else in a spawned task when dropped.
struct Abandon<'a> {
    client: &'a Client,
    position: Option<Position>,
    cleanup: &'a mut CleanupSlot,
}

impl<'a> Abandon<'a> {
    fn arm(client: &'a Client, position: &Position, cleanup: &'a mut CleanupSlot) -> Abandon<'a> {
        Abandon {
            client,
            position: Some(position.clone()),
            cleanup,
        }
    }

    fn disarm(&mut self) {
        self.position = None;
    }

    /// Deletes the key (if it still is this contender's). A failure leaves it to the lease.
    async fn delete_now(&mut self) {
        if let Some(position) = self.position.take() {
            let _ = ops::delete_if_created_at(self.client, &position.key, position.create_revision)
                .await;
        }
    }
}

impl Drop for Abandon<'_> {
    fn drop(&mut self) {
        let Some(position) = self.position.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let client = self.client.clone();
        *self.cleanup = Some(runtime.spawn(async move {
            let _ =
                ops::delete_if_created_at(&client, &position.key, position.create_revision).await;
        }));
    }
}
