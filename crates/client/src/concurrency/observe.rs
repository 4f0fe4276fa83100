//! [`Observer`]: the leader values of an election as they change, over watches that resume on
//! another member (so a value is neither missed nor repeated when a member dies).

use super::error::ConcurrencyError;
use super::keys;
use super::ops;
use crate::{Client, Error, Watch, Watcher};
use chorus_proto::mvccpb;
use std::collections::VecDeque;

/// Follows an election (etcd's `Observe`): [`next`](Observer::next) gives the leader's key and
/// value first, then each new value the leader proclaims, then the next leader's once the
/// leader resigns or its session ends. It waits (without bound) while nobody stands.
pub struct Observer {
    client: Client,
    prefix: Vec<u8>,
    state: State,
    /// Values of the followed leader received but not handed out yet (from one watch batch).
    pending: VecDeque<mvccpb::KeyValue>,
}

enum State {
    /// Looking for the current leader.
    Seeking,
    /// Watching the leader's key for new values and its deletion.
    Following(Box<Watcher>),
}

impl Observer {
    pub(crate) fn new(client: &Client, name: &[u8]) -> Observer {
        Observer {
            client: client.clone(),
            prefix: keys::contender_prefix(name),
            state: State::Seeking,
            pending: VecDeque::new(),
        }
    }

    /// The next leader value (the leader's key-value pair: its key names the leader's lease).
    pub async fn next(&mut self) -> Result<mvccpb::KeyValue, ConcurrencyError> {
        loop {
            if let Some(kv) = self.pending.pop_front() {
                return Ok(kv);
            }
            match &mut self.state {
                State::Seeking => {
                    let leader = seek(&self.client, &self.prefix).await?;
                    let watch =
                        Watch::key(leader.kv.key.to_vec()).start_revision(leader.revision + 1);
                    self.state = State::Following(Box::new(self.client.watch(watch).await?));
                    return Ok(leader.kv);
                }
                State::Following(watcher) => match watcher.next().await {
                    Ok(batch) => {
                        for event in batch.events {
                            if ops::is_delete(&event) {
                                self.state = State::Seeking;
                                break;
                            }
                            self.pending.extend(event.kv);
                        }
                    }
                    Err(Error::WatchCanceled {
                        compact_revision, ..
                    }) if compact_revision != 0 => self.state = State::Seeking,
                    Err(error) => return Err(error.into()),
                },
            }
        }
    }
}

/// The current leader, waiting for the first candidate when there is none; with the revision
/// from which its later changes are to be watched. (A free function: a borrowed `Observer`
/// held across an await would make `next`'s future not `Send`, as a `Watcher` is not `Sync`.)
async fn seek(client: &Client, prefix: &[u8]) -> Result<Seen, ConcurrencyError> {
    let (leader, read_revision) = ops::first_created(client, prefix).await?;
    if let Some(kv) = leader {
        return Ok(Seen {
            kv,
            revision: read_revision,
        });
    }
    // Nobody stands: the first key written under the prefix after the read is the leader.
    let watch = Watch::key(prefix.to_vec())
        .prefix()
        .start_revision(read_revision + 1);
    let mut watcher = client.watch(watch).await?;
    loop {
        let batch = watcher.next().await?;
        let put = batch
            .events
            .into_iter()
            .find(|event| !ops::is_delete(event))
            .and_then(|event| event.kv);
        if let Some(kv) = put {
            let revision = kv.mod_revision;
            return Ok(Seen { kv, revision });
        }
    }
}

/// A leader found, and the revision it was seen at.
struct Seen {
    kv: mvccpb::KeyValue,
    revision: i64,
}
