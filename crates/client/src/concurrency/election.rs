//! [`Election`]: leader election on a name, compatible with etcd's `concurrency.Election` and
//! `etcdctl elect`.

use super::contend::{self, CleanupSlot, Position};
use super::error::ConcurrencyError;
use super::keys;
use super::observe::Observer;
use super::ops;
use super::session::{LeaseSession, SessionHandle};
use chorus_proto::mvccpb;
use std::future::Future;
use std::time::Duration;

/// An election named `NAME`: each candidate writes `NAME/<lease id hex>` = its value; the
/// leader is the candidate whose key has the lowest create revision, and the leader's value
/// is that key's value. `etcdctl elect NAME VALUE` uses the same keys.
///
/// ```no_run
/// # async fn example(client: chorus_client::Client) -> Result<(), chorus_client::concurrency::ConcurrencyError> {
/// use chorus_client::concurrency::{Election, LeaseSession};
/// let session = LeaseSession::new(&client, 10).await?;
/// let mut election = Election::new(&session, "scheduler");
/// election.campaign("node-a:7000").await?;             // waits until elected
/// election.proclaim("node-a:7001").await?;             // a new value, only while leader
/// let leader = election.leader().await?;
/// assert_eq!(&leader.value[..], b"node-a:7001");
/// election.resign().await?;
///
/// // Anyone can follow the leader's value.
/// let mut observer = Election::observe(&client, "scheduler");
/// let next = observer.next().await?;
/// println!("leader is now {}", String::from_utf8_lossy(&next.value));
/// # Ok(()) }
/// ```
pub struct Election {
    session: SessionHandle,
    name: Vec<u8>,
    prefix: Vec<u8>,
    key: Vec<u8>,
    leading: Option<Position>,
    cleanup: CleanupSlot,
}

impl Election {
    /// The election `name` for `session` (nothing is written until
    /// [`campaign`](Election::campaign)).
    pub fn new(session: &LeaseSession, name: impl AsRef<[u8]>) -> Election {
        let prefix = keys::contender_prefix(name.as_ref());
        let key = keys::contender_key(&prefix, session.lease_id());
        Election {
            session: session.handle(),
            name: name.as_ref().to_vec(),
            prefix,
            key,
            leading: None,
            cleanup: None,
        }
    }

    /// This session's candidate key: `NAME/<lease id hex>`.
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// Stands with `value` and waits until elected; returns the revision of the candidate key
    /// (a fencing token, as [`Mutex::revision`](super::Mutex::revision)). Fails with
    /// `SessionExpired` if the session ends first; if this future is dropped while waiting,
    /// the candidacy is withdrawn in the background.
    pub async fn campaign(&mut self, value: impl AsRef<[u8]>) -> Result<i64, ConcurrencyError> {
        self.stand(value.as_ref(), std::future::pending()).await
    }

    /// As [`campaign`](Election::campaign), withdrawing after `timeout` with `TimedOut`.
    pub async fn campaign_timeout(
        &mut self,
        value: impl AsRef<[u8]>,
        timeout: Duration,
    ) -> Result<i64, ConcurrencyError> {
        self.stand(value.as_ref(), async move {
            tokio::time::sleep(timeout).await;
            ConcurrencyError::TimedOut { after: timeout }
        })
        .await
    }

    /// As [`campaign`](Election::campaign), withdrawing with `Cancelled` when `cancel`
    /// completes first.
    pub async fn campaign_until(
        &mut self,
        value: impl AsRef<[u8]>,
        cancel: impl Future<Output = ()>,
    ) -> Result<i64, ConcurrencyError> {
        self.stand(value.as_ref(), async move {
            cancel.await;
            ConcurrencyError::Cancelled
        })
        .await
    }

    /// Sets the leader's value, only if this candidate still leads (a transaction on the
    /// key's create revision); `NotLeader` otherwise.
    pub async fn proclaim(&mut self, value: impl AsRef<[u8]>) -> Result<(), ConcurrencyError> {
        let Some(position) = &self.leading else {
            return Err(ConcurrencyError::NotLeader);
        };
        let updated = ops::put_if_created_at(
            &self.session,
            &position.key,
            position.create_revision,
            value.as_ref(),
        )
        .await?;
        if !updated {
            self.leading = None;
            return Err(ConcurrencyError::NotLeader);
        }
        Ok(())
    }

    /// Steps down (deletes the key if it still is the one elected), handing the leadership to
    /// the next candidate. Nothing to do when not leading.
    pub async fn resign(&mut self) -> Result<(), ConcurrencyError> {
        let Some(position) = self.leading.take() else {
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

    /// The create revision of this candidate's key while it leads.
    pub fn revision(&self) -> Option<i64> {
        self.leading
            .as_ref()
            .map(|position| position.create_revision)
    }

    /// The current leader's key and value (the candidate key with the lowest create
    /// revision); `NoLeader` when nobody stands.
    pub async fn leader(&self) -> Result<mvccpb::KeyValue, ConcurrencyError> {
        let (leader, _) = ops::first_created(&self.session.client, &self.prefix).await?;
        leader.ok_or(ConcurrencyError::NoLeader)
    }

    /// The leader's values as they change ([`Observer`]), for this election.
    pub fn observer(&self) -> Observer {
        Observer::new(&self.session.client, &self.name)
    }

    /// The leader's values of election `name` as they change, without standing in it.
    pub fn observe(client: &crate::Client, name: impl AsRef<[u8]>) -> Observer {
        Observer::new(client, name.as_ref())
    }

    async fn stand<G>(&mut self, value: &[u8], give_up: G) -> Result<i64, ConcurrencyError>
    where
        G: Future<Output = ConcurrencyError>,
    {
        let Election {
            session,
            prefix,
            key,
            leading,
            cleanup,
            ..
        } = self;
        *leading = None;
        let position = contend::enqueue(session, key, value, cleanup).await?;
        contend::wait_turn(session, prefix, &position, cleanup, give_up).await?;
        let revision = position.create_revision;
        *leading = Some(position);
        Ok(revision)
    }
}
