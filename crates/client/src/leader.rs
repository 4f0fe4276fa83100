//! Writes go to the leader first. A chorus follower forwards a write to the leader and hands
//! back the leader's answer, header included, so every write's header names the leader
//! (`member_id`); a member list maps member ids to the client's endpoints. Knowing the leader
//! saves the forwarding hop; not knowing it costs nothing but that hop (any member forwards).
//!
//! Pure bookkeeping, unit-tested; the client asks for the member list in the background, at
//! most once per [`MEMBER_LIST_INTERVAL`].

use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

/// The shortest pause between two member lists asked for to find an unknown leader.
pub const MEMBER_LIST_INTERVAL: Duration = Duration::from_secs(10);

/// The leader as the last write answer named it, and which endpoint is which member.
#[derive(Debug, Default)]
pub(crate) struct LeaderHint {
    leader: Option<u64>,
    endpoint_of_member: BTreeMap<u64, usize>,
    listed_at: Option<Instant>,
}

impl LeaderHint {
    /// The endpoint of the leader, when both are known.
    pub fn leader_endpoint(&self) -> Option<usize> {
        self.endpoint_of_member.get(&self.leader?).copied()
    }

    /// A write was answered by member `id` (0: a server that does not say). Returns whether a
    /// member list should be asked for now (the leader's endpoint is unknown and none was asked
    /// for lately); the caller then calls [`LeaderHint::learn_members`].
    pub fn note_leader(&mut self, id: u64, now: Instant) -> bool {
        if id == 0 {
            return false;
        }
        self.leader = Some(id);
        if self.endpoint_of_member.contains_key(&id) {
            return false;
        }
        let due = self
            .listed_at
            .is_none_or(|at| now.saturating_duration_since(at) >= MEMBER_LIST_INTERVAL);
        if due {
            self.listed_at = Some(now);
        }
        due
    }

    /// The leader's endpoint failed: send the next writes to the current endpoint until a
    /// write answer names the leader again.
    pub fn forget_leader(&mut self) {
        self.leader = None;
    }

    /// Maps each member (id, client URLs) to the endpoint (as `endpoint_uri` gives it) among
    /// `endpoint_uris` that one of its URLs names; members without one are left out.
    pub fn learn_members(&mut self, members: &[(u64, Vec<String>)], endpoint_uris: &[String]) {
        self.endpoint_of_member.clear();
        for (id, urls) in members {
            let found = urls.iter().find_map(|url| {
                let uri = crate::endpoint_uri(url).ok()?;
                endpoint_uris.iter().position(|endpoint| *endpoint == uri)
            });
            if let Some(index) = found {
                self.endpoint_of_member.insert(*id, index);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn endpoints() -> Vec<String> {
        ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]
            .iter()
            .map(|e| crate::endpoint_uri(e).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn the_leader_named_by_a_write_answer_is_found_among_the_endpoints() {
        let now = Instant::now();
        let mut hint = LeaderHint::default();
        assert_eq!(hint.leader_endpoint(), None);
        assert!(
            hint.note_leader(22, now),
            "unknown member: list the members"
        );
        assert!(!hint.note_leader(22, now), "not again right away");
        hint.learn_members(
            &[
                (11, vec!["http://127.0.0.1:1".into()]),
                (22, vec!["http://127.0.0.1:9".into(), "127.0.0.1:2".into()]),
                (33, vec!["http://10.0.0.3:2379".into()]),
            ],
            &endpoints(),
        );
        assert_eq!(hint.leader_endpoint(), Some(1));
        assert!(!hint.note_leader(11, now), "known member: no list");
        assert_eq!(hint.leader_endpoint(), Some(0));
        // A member the client has no endpoint for: writes go to the current endpoint.
        assert!(!hint.note_leader(33, now), "listed lately");
        assert_eq!(hint.leader_endpoint(), None);
        assert!(hint.note_leader(33, now + MEMBER_LIST_INTERVAL));
        hint.note_leader(22, now);
        hint.forget_leader();
        assert_eq!(hint.leader_endpoint(), None);
        assert!(
            !hint.note_leader(0, now),
            "a header without a member id says nothing"
        );
    }
}
