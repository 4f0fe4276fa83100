//! [`Mutex`]: a distributed lock on a name, compatible with etcd's `concurrency.Mutex` and
//! `etcdctl lock`.

use super::contend::{self, CleanupSlot, Position};
use super::error::ConcurrencyError;
use super::keys;
use super::ops;
use super::session::{LeaseSession, SessionHandle};
use crate::{Compare, CompareOp};
use std::future::Future;
use std::time::Duration;

/// A create revision no key has (revisions start at 1; an absent key has 0).
const NEVER_CREATED: i64 = -1;

/// A lock named `NAME`: the holder is the session whose key `NAME/<lease id hex>` has the
/// lowest create revision; the others wait, each for the key created just before its own.
/// `etcdctl lock NAME` uses the same keys, so the two exclude each other.
///
/// One `Mutex` per session and name: two of them on one session share one key (and so would
/// both "hold" the lock), as in etcd.
///
/// # Fencing
///
/// Holding the lock is a belief, not a guarantee: a holder paused for longer than its lease's
/// time-to-live (a long GC pause, a frozen VM) still thinks it holds the lock after the lease
/// expired and someone else took it. [`revision`](Mutex::revision), the create revision of
/// the held key, guards against that:
///
/// - writes to chorus itself can carry [`is_owner`](Mutex::is_owner), a compare that only
///   holds while this very key exists, so a stale holder's transaction fails instead of
///   overwriting the new holder's work;
/// - any other service can take the revision as a fencing token: each later holder's revision
///   is strictly higher (revisions only grow), so the service rejects requests carrying a
///   lower token than the highest it has seen.
///
/// ```no_run
/// # async fn example(client: chorus_client::Client) -> Result<(), chorus_client::concurrency::ConcurrencyError> {
/// use chorus_client::concurrency::{LeaseSession, Mutex};
/// use chorus_client::{Put, Txn, TxnOp};
/// let session = LeaseSession::new(&client, 10).await?;
/// let mut mutex = Mutex::new(&session, "jobs/lock");
/// let token = mutex.lock().await?;
/// // Write only while the lock is still ours.
/// let txn = Txn::new()
///     .when([mutex.is_owner()])
///     .and_then([TxnOp::Put(Put::new("jobs/last", format!("run by token {token}")))]);
/// assert!(client.txn(txn).await?.succeeded);
/// mutex.unlock().await?;
/// session.close().await?;
/// # Ok(()) }
/// ```
pub struct Mutex {
    session: SessionHandle,
    prefix: Vec<u8>,
    key: Vec<u8>,
    held: Option<Position>,
    cleanup: CleanupSlot,
}

impl Mutex {
    /// The lock `name` for `session` (nothing is written until [`lock`](Mutex::lock)).
    pub fn new(session: &LeaseSession, name: impl AsRef<[u8]>) -> Mutex {
        let prefix = keys::contender_prefix(name.as_ref());
        let key = keys::contender_key(&prefix, session.lease_id());
        Mutex {
            session: session.handle(),
            prefix,
            key,
            held: None,
            cleanup: None,
        }
    }

    /// This session's key for the lock: `NAME/<lease id hex>`.
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// Waits until the lock is held; returns its [`revision`](Mutex::revision). Fails with
    /// `SessionExpired` if the session ends first. If this future is dropped while waiting,
    /// its key is deleted in the background.
    pub async fn lock(&mut self) -> Result<i64, ConcurrencyError> {
        self.acquire(std::future::pending()).await
    }

    /// As [`lock`](Mutex::lock), giving up after `timeout` with `TimedOut` (the key deleted).
    pub async fn lock_timeout(&mut self, timeout: Duration) -> Result<i64, ConcurrencyError> {
        self.acquire(async move {
            tokio::time::sleep(timeout).await;
            ConcurrencyError::TimedOut { after: timeout }
        })
        .await
    }

    /// As [`lock`](Mutex::lock), giving up with `Cancelled` (the key deleted) when `cancel`
    /// completes first.
    pub async fn lock_until(
        &mut self,
        cancel: impl Future<Output = ()>,
    ) -> Result<i64, ConcurrencyError> {
        self.acquire(async move {
            cancel.await;
            ConcurrencyError::Cancelled
        })
        .await
    }

    /// Takes the lock if nobody holds it or waits for it before this session; else fails with
    /// `Locked` (the key deleted) without waiting.
    pub async fn try_lock(&mut self) -> Result<i64, ConcurrencyError> {
        let Mutex {
            session,
            prefix,
            key,
            held,
            cleanup,
        } = self;
        let position = contend::enqueue(session, key, b"", cleanup).await?;
        if !contend::try_turn(session, prefix, &position, cleanup).await? {
            *held = None;
            return Err(ConcurrencyError::Locked);
        }
        let revision = position.create_revision;
        *held = Some(position);
        Ok(revision)
    }

    /// Releases the lock (deletes the key). Nothing to do if it is not held.
    pub async fn unlock(&mut self) -> Result<(), ConcurrencyError> {
        let Some(position) = self.held.take() else {
            return Ok(());
        };
        ops::delete_if_created_at(
            &self.session.client,
            &position.key,
            position.create_revision,
        )
        .await?;
        Ok(())
    }

    /// The fencing token: the create revision of the held key, `None` when not held. See
    /// [Fencing](Mutex#fencing).
    pub fn revision(&self) -> Option<i64> {
        self.held.as_ref().map(|position| position.create_revision)
    }

    /// A compare that holds only while this session's key still is the one that took the
    /// lock (etcd's `IsOwner`). When the lock is not held it never holds (it asks for a
    /// create revision of -1), so a transaction guarded by it cannot write by mistake.
    pub fn is_owner(&self) -> Compare {
        let revision = self.revision().unwrap_or(NEVER_CREATED);
        Compare::create_revision(self.key.clone(), CompareOp::Equal, revision)
    }

    async fn acquire<G>(&mut self, give_up: G) -> Result<i64, ConcurrencyError>
    where
        G: Future<Output = ConcurrencyError>,
    {
        let Mutex {
            session,
            prefix,
            key,
            held,
            cleanup,
        } = self;
        *held = None;
        let position = contend::enqueue(session, key, b"", cleanup).await?;
        contend::wait_turn(session, prefix, &position, cleanup, give_up).await?;
        let revision = position.create_revision;
        *held = Some(position);
        Ok(revision)
    }
}
