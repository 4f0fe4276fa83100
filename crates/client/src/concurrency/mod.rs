//! Locks and leader elections on top of leases and watches, written after etcd's
//! `clientv3/concurrency` package and sharing its key layout, so chorus's recipes and
//! `etcdctl lock` / `etcdctl elect` (or any etcd client's) exclude each other.
//!
//! - [`LeaseSession`]: a lease kept alive in the background; everything a recipe writes is
//!   attached to it, so a crashed holder's lock is released after the lease's time-to-live.
//! - [`Mutex`]: `lock` (waiting, with a timeout or a cancel signal), `try_lock`, `unlock`,
//!   and the held key's create revision as a fencing token.
//! - [`Election`]: `campaign`, `proclaim`, `resign`, `leader`, and an [`Observer`] of the
//!   leader's values.
//!
//! # Key layout
//!
//! A lock or election named `NAME` keeps one key per contender, `NAME/<lease id in lower-case
//! hex>`, written with the contender's lease; its value is empty for a lock and the
//! candidate's value for an election. The contender whose key has the lowest create revision
//! holds the lock (leads). Every other one watches the key created just before its own, from
//! the revision it read it at, so no delete is missed, and checks again once it is gone: a
//! queue in which each waiter is woken once, by its predecessor.
//!
//! These are recipes over a store, not a lock service: a holder keeps the lock only while its
//! lease lives. See [Mutex fencing](Mutex#fencing) for making that safe.
//!
//! ```no_run
//! # async fn example() -> Result<(), chorus_client::concurrency::ConcurrencyError> {
//! use chorus_client::concurrency::{LeaseSession, Mutex};
//! use chorus_client::Client;
//! let client = Client::connect(["127.0.0.1:2379", "127.0.0.1:2381", "127.0.0.1:2383"])?;
//! let session = LeaseSession::new(&client, 10).await?;
//! let mut mutex = Mutex::new(&session, "reports");
//! let fencing_token = mutex.lock_timeout(std::time::Duration::from_secs(5)).await?;
//! println!("holding reports with token {fencing_token}");
//! mutex.unlock().await?;
//! session.close().await?;
//! # Ok(()) }
//! ```

mod contend;
mod election;
mod error;
mod keys;
mod mutex;
mod observe;
mod ops;
mod session;

pub use election::Election;
pub use error::{ConcurrencyError, SessionEnd};
pub use keys::{contender_key, contender_prefix};
pub use mutex::Mutex;
pub use observe::Observer;
pub use session::{LeaseSession, LEASE_SESSION_TTL_DEFAULT_SECONDS};

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    /// Type checks only (never run): every future of the recipes can be spawned on a
    /// multi-threaded runtime.
    #[allow(dead_code)]
    fn the_recipes_futures_are_send(
        session: &LeaseSession,
        mutex: &mut Mutex,
        election: &mut Election,
        observer: &mut Observer,
    ) {
        fn is_send<T: Send>(_: T) {}
        is_send(session.done());
        is_send(mutex.lock());
        is_send(mutex.try_lock());
        is_send(election.campaign("value"));
        is_send(election.leader());
        is_send(observer.next());
    }

    #[test]
    fn errors_say_what_happened() {
        let expired = ConcurrencyError::SessionExpired {
            lease_id: 0x694d,
            reason: SessionEnd::Expired,
        };
        assert_eq!(
            expired.to_string(),
            "lease session 694d ended: the lease expired or was revoked"
        );
        assert_eq!(
            ConcurrencyError::from(crate::Error::NoEndpoints).to_string(),
            "no endpoints given"
        );
    }
}
