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
                        let (values, deleted) = follow(batch.events);
                        self.pending.extend(values);
                        if deleted {
                            self.state = State::Seeking;
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

/// What a batch of events on the followed leader's key says: the values it proclaimed, in
/// order, and whether the key was deleted (the leader gone: the next one is sought, so events
/// after the delete are not the followed leader's).
fn follow(events: Vec<mvccpb::Event>) -> (Vec<mvccpb::KeyValue>, bool) {
    let mut values = Vec::new();
    for event in events {
        if ops::is_delete(&event) {
            return (values, true);
        }
        values.extend(event.kv);
    }
    (values, false)
}

/// A leader found, and the revision it was seen at.
struct Seen {
    kv: mvccpb::KeyValue,
    revision: i64,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use mvccpb::event::EventType;

    fn event(kind: EventType, value: &str, revision: i64) -> mvccpb::Event {
        mvccpb::Event {
            r#type: kind as i32,
            kv: Some(mvccpb::KeyValue {
                key: Bytes::from_static(b"office/1a"),
                value: Bytes::from(value.to_string()),
                mod_revision: revision,
                ..mvccpb::KeyValue::default()
            }),
            prev_kv: None,
        }
    }

    fn values(kvs: &[mvccpb::KeyValue]) -> Vec<&[u8]> {
        kvs.iter().map(|kv| &kv.value[..]).collect()
    }

    #[test]
    fn each_proclaimed_value_is_handed_out_in_order() {
        let (kvs, deleted) = follow(vec![
            event(EventType::Put, "a", 5),
            event(EventType::Put, "b", 6),
        ]);
        assert_eq!(values(&kvs), [&b"a"[..], b"b"]);
        assert!(!deleted);
    }

    #[test]
    fn the_leaders_deletion_ends_what_is_followed() {
        let (kvs, deleted) = follow(vec![
            event(EventType::Put, "a", 5),
            event(EventType::Delete, "", 6),
            event(EventType::Put, "again", 7),
        ]);
        assert_eq!(values(&kvs), [&b"a"[..]]);
        assert!(deleted);
        let (kvs, deleted) = follow(vec![event(EventType::Delete, "", 6)]);
        assert!(kvs.is_empty() && deleted);
    }
}
