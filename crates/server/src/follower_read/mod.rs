//! Version-stamped follower reads: a serializable read that carries the gRPC metadata
//! `chorus-min-revision: S` (the highest revision its client has seen) is served from this
//! member's applied state only once that state is at revision S or later, and only while the
//! member is not lagging.
//!
//! - **Stamp.** If the applied revision R is below S, the read waits for entries to apply, at
//!   most [`FollowerReadConfig::wait`]; it then fails with UNAVAILABLE `chorus: replica at
//!   revision R, behind the requested revision S` and metadata `chorus-revision: R`, so the
//!   client tries another member. Waiting happens in the gRPC handler, on the
//!   [`ReadProgress`] the group task publishes after every pass: the group task never blocks.
//!   At most [`FOLLOWER_READ_WAITERS_MAX`] reads wait at once; more are refused with
//!   `etcdserver: too many requests`.
//! - **Lag.** A member with more than [`FollowerReadConfig::lag_entries_max`] entries
//!   committed but not applied, or that has not heard from a leader for
//!   [`FollowerReadConfig::staleness_max`] (a leader is never stale), refuses stamped reads
//!   with UNAVAILABLE `chorus: replica lagging: ...`.
//! - **Answers.** Every Range answer carries `chorus-revision` (the applied revision it was
//!   served at) and `chorus-lag` (entries committed but not applied), so clients learn how far
//!   behind each member is.
//!
//! A serializable read without the stamp keeps etcd's behaviour: always served, as it is. A
//! read-only Txn whose ops are all serializable Ranges, stamped, is admitted the same way and
//! evaluated on the applied state (`txn.rs`); other read-only txns stay linearizable.

mod progress;
mod txn;

pub use progress::{ProgressPublisher, ReadProgress};
pub use txn::is_serializable_txn;

use crate::error::ServerError;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::Status;

/// The request metadata that asks for a version-stamped read: the lowest revision the answer
/// may be served at.
pub const MIN_REVISION_METADATA_KEY: &str = "chorus-min-revision";
/// The response metadata with the applied revision of the member that answered (or refused).
pub const REVISION_METADATA_KEY: &str = "chorus-revision";
/// The response metadata with the member's entries committed but not applied.
pub const LAG_METADATA_KEY: &str = "chorus-lag";

/// Stamped reads waiting for their revision at once, per member; more are refused.
pub const FOLLOWER_READ_WAITERS_MAX: usize = 4096;
/// The default of `--follower-read-wait`.
pub const FOLLOWER_READ_WAIT_DEFAULT: Duration = Duration::from_millis(200);
/// The default of `--follower-read-max-lag-entries`.
pub const FOLLOWER_READ_LAG_ENTRIES_MAX_DEFAULT: u64 = 1000;
/// At most this many characters of a bad metadata value are quoted back in the error.
const QUOTED_CHARS_MAX: usize = 32;

/// The bounds of stamped reads (`chorus server --follower-read-*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FollowerReadConfig {
    /// How long a stamped read waits for this member to reach its revision.
    pub wait: Duration,
    /// Past this many entries committed but not applied, stamped reads are refused.
    pub lag_entries_max: u64,
    /// Past this long without a message from a leader, a follower refuses stamped reads.
    pub staleness_max: Duration,
}

impl FollowerReadConfig {
    /// The defaults: wait 200 ms, 1000 entries, staleness up to the election timeout.
    pub fn new(election_timeout: Duration) -> FollowerReadConfig {
        FollowerReadConfig {
            wait: FOLLOWER_READ_WAIT_DEFAULT,
            lag_entries_max: FOLLOWER_READ_LAG_ENTRIES_MAX_DEFAULT,
            staleness_max: election_timeout,
        }
    }
}

/// Why a stamped read is refused here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The applied revision did not reach the requested one in time.
    Behind { revision: i64, requested: i64 },
    /// Too many entries committed but not applied.
    LagEntries { lag_entries: u64, max: u64 },
    /// No message from a leader for too long (`None`: none at all since it started or the
    /// leader was lost).
    NoLeaderContact {
        since: Option<Duration>,
        max: Duration,
    },
}

impl Refusal {
    pub fn message(&self) -> String {
        match self {
            Refusal::Behind {
                revision,
                requested,
            } => format!(
                "chorus: replica at revision {revision}, behind the requested revision {requested}"
            ),
            Refusal::LagEntries { lag_entries, max } => format!(
                "chorus: replica lagging: {lag_entries} entries committed but not applied \
                 (at most {max})"
            ),
            Refusal::NoLeaderContact {
                since: Some(since),
                max,
            } => format!(
                "chorus: replica lagging: no word from a leader for {} ms (at most {} ms)",
                since.as_millis(),
                max.as_millis()
            ),
            Refusal::NoLeaderContact { since: None, max } => format!(
                "chorus: replica lagging: no leader known (a follower serves stamped reads \
                 only within {} ms of hearing from one)",
                max.as_millis()
            ),
        }
    }
}

/// Whether a member with `progress` may serve a stamped read at `now` (its revision aside).
pub fn check_lag(
    progress: &ReadProgress,
    config: &FollowerReadConfig,
    now: Instant,
) -> Result<(), Refusal> {
    let lag_entries = progress.lag_entries();
    if lag_entries > config.lag_entries_max {
        return Err(Refusal::LagEntries {
            lag_entries,
            max: config.lag_entries_max,
        });
    }
    if progress.is_leader {
        return Ok(());
    }
    let since = progress
        .leader_contact
        .map(|contact| now.saturating_duration_since(contact));
    match since {
        Some(since) if since <= config.staleness_max => Ok(()),
        since => Err(Refusal::NoLeaderContact {
            since,
            max: config.staleness_max,
        }),
    }
}

/// A `chorus-min-revision` that is not a revision; answered INVALID_ARGUMENT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadStamp(String);

impl From<BadStamp> for Status {
    fn from(bad: BadStamp) -> Status {
        Status::invalid_argument(bad.0)
    }
}

/// The stamp of a request: `None` without `chorus-min-revision`; a value that is not a
/// non-negative decimal revision is refused.
pub fn min_revision(metadata: &MetadataMap) -> Result<Option<i64>, BadStamp> {
    let Some(value) = metadata.get(MIN_REVISION_METADATA_KEY) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or("");
    match text.parse::<i64>() {
        Ok(revision) if revision >= 0 && text.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(Some(revision))
        }
        _ => {
            let quoted: String = String::from_utf8_lossy(value.as_bytes())
                .chars()
                .take(QUOTED_CHARS_MAX)
                .collect();
            Err(BadStamp(format!(
                "chorus: {MIN_REVISION_METADATA_KEY} must be a revision (a non-negative \
                 integer), not {quoted:?}"
            )))
        }
    }
}

/// The member's side of stamped reads: the bounds and the progress the group task publishes.
/// Cheap to clone.
#[derive(Clone, Debug)]
pub struct FollowerReads {
    config: FollowerReadConfig,
    progress: watch::Receiver<ReadProgress>,
    waiting: Arc<AtomicUsize>,
}

/// One waiting read's place, given back when dropped.
struct WaitingPlace(Arc<AtomicUsize>);

impl Drop for WaitingPlace {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl FollowerReads {
    pub fn new(config: FollowerReadConfig, progress: watch::Receiver<ReadProgress>) -> Self {
        FollowerReads {
            config,
            progress,
            waiting: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Without a group task publishing progress (tests of other parts): every stamped read
    /// beyond revision 0 is refused as behind, after the wait.
    pub fn detached(config: FollowerReadConfig) -> Self {
        let (_, progress) = watch::channel(ReadProgress::default());
        FollowerReads::new(config, progress)
    }

    /// The latest published progress.
    pub fn progress(&self) -> ReadProgress {
        *self.progress.borrow()
    }

    /// Admits a read stamped with `requested`: at once when this member is not lagging and
    /// has applied that revision, after waiting (at most the configured wait) when it has not
    /// yet, or refused.
    pub async fn admit(&self, requested: i64) -> Result<(), Status> {
        let admitted = self.admission(requested).await;
        let metrics = crate::metrics::metrics();
        match &admitted {
            Ok(()) => metrics.follower_reads_admitted.add(1),
            Err(_) => metrics.follower_reads_refused.add(1),
        }
        admitted
    }

    /// [`FollowerReads::admit`] without the metrics.
    async fn admission(&self, requested: i64) -> Result<(), Status> {
        let progress = self.progress();
        check_lag(&progress, &self.config, Instant::now())
            .map_err(|refusal| refused(&refusal, &progress))?;
        if progress.revision >= requested {
            return Ok(());
        }
        if self.waiting.fetch_add(1, Ordering::Relaxed) >= FOLLOWER_READ_WAITERS_MAX {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            return Err(ServerError::TooManyRequests.into());
        }
        let _place = WaitingPlace(self.waiting.clone());
        let mut receiver = self.progress.clone();
        let deadline = tokio::time::Instant::now() + self.config.wait;
        let reached = tokio::time::timeout_at(
            deadline,
            receiver.wait_for(|progress| progress.revision >= requested),
        )
        .await;
        match reached {
            Ok(Ok(_)) => Ok(()),
            // Timed out, or the group task stopped (nothing will apply any more).
            Ok(Err(_)) | Err(_) => {
                let progress = self.progress();
                let refusal = Refusal::Behind {
                    revision: progress.revision,
                    requested,
                };
                Err(refused(&refusal, &progress))
            }
        }
    }

    /// Adds `chorus-revision` (`revision`: the applied revision the answer was served at) and
    /// `chorus-lag` to a read's response.
    pub fn stamp(&self, metadata: &mut MetadataMap, revision: i64) {
        insert_progress(metadata, revision, self.progress().lag_entries());
    }
}

fn insert_progress(metadata: &mut MetadataMap, revision: i64, lag_entries: u64) {
    metadata.insert(REVISION_METADATA_KEY, MetadataValue::from(revision));
    metadata.insert(LAG_METADATA_KEY, MetadataValue::from(lag_entries));
}

/// The UNAVAILABLE status of a refused stamped read, with this member's revision and lag.
fn refused(refusal: &Refusal, progress: &ReadProgress) -> Status {
    let mut status = Status::unavailable(refusal.message());
    insert_progress(
        status.metadata_mut(),
        progress.revision,
        progress.lag_entries(),
    );
    status
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests;
