//! One info log line for each change of cluster state an operator follows: a member added,
//! removed, promoted, moved (peer URLs) or published (name, client URLs) as the replicated
//! member table applies it; raft's membership as it changes (the conf changes the leader
//! proposes are logged where it proposes them, in `group_members`); an alarm raised or cleared.
//!
//! Every member logs what it applies, by comparing the state after a pass with what it saw
//! before, so the lines appear on each member and after the fact (a restart logs nothing for
//! the state it recovered: the first look only records it).

use crate::group::GroupTask;
use chorus_raft::{ConfChangeStep, Membership, NodeId};
use chorus_replica::alarm::{AlarmMember, AlarmType};
use chorus_replica::MemberTable;
use std::collections::BTreeSet;

/// What the group task saw last of the state it logs changes of (`None`: not looked yet).
#[derive(Debug, Default)]
pub struct ClusterEvents {
    table: Option<(u64, MemberTable)>,
    membership: Option<Membership>,
    alarms: Option<Vec<AlarmMember>>,
}

impl GroupTask {
    /// After every pass: logs the member table's and raft membership's changes since the last
    /// pass (cheap when nothing changed: a version and a set comparison).
    pub(crate) fn log_cluster_events(&mut self) {
        let version = self.replica.members_version();
        let events = &mut self.events;
        if events.table.as_ref().map(|(seen, _)| *seen) != Some(version) {
            let table = self.replica.members().clone();
            // An empty table is a joining member's before the leader's snapshot: what the
            // snapshot brings is the cluster as it is, not a change.
            if let Some((_, old)) = events
                .table
                .as_ref()
                .filter(|(_, old)| !old.members.is_empty())
            {
                for line in member_table_changes(old, &table) {
                    tracing::info!("{line}");
                }
            }
            events.table = Some((version, table));
        }
        let membership = self.replica.raft().membership();
        if events.membership.as_ref() != Some(membership) {
            if events
                .membership
                .as_ref()
                .is_some_and(|old| !old.voters.is_empty())
            {
                tracing::info!(
                    "raft membership applied: {}",
                    describe_membership(membership)
                );
            }
            events.membership = Some(membership.clone());
        }
    }

    /// Once a tick: logs the alarms raised and cleared since the last tick.
    pub(crate) fn log_alarm_events(&mut self) {
        let alarms = self.replica.alarms();
        if self.events.alarms.as_ref() == Some(&alarms) {
            return;
        }
        if let Some(old) = &self.events.alarms {
            for line in alarm_changes(old, &alarms) {
                tracing::info!("{line}");
            }
        }
        self.events.alarms = Some(alarms);
    }
}

/// The log lines of the differences between two member tables.
pub fn member_table_changes(old: &MemberTable, new: &MemberTable) -> Vec<String> {
    let mut lines = Vec::new();
    for (id, member) in &new.members {
        let name = display_name(&member.name);
        let Some(before) = old.members.get(id) else {
            let kind = if member.is_learner {
                "a learner"
            } else {
                "a voter"
            };
            lines.push(format!(
                "member {id:x} added as {kind}, peer URLs [{}]",
                member.peer_urls.join(", ")
            ));
            continue;
        };
        if before.is_learner && !member.is_learner {
            lines.push(format!("member {id:x} ({name}) promoted to a voter"));
        }
        if before.peer_urls != member.peer_urls {
            lines.push(format!(
                "member {id:x} ({name}) updated: peer URLs [{}] (were [{}])",
                member.peer_urls.join(", "),
                before.peer_urls.join(", ")
            ));
        }
        if before.name != member.name || before.client_urls != member.client_urls {
            lines.push(format!(
                "member {id:x} published: name {name}, client URLs [{}]",
                member.client_urls.join(", ")
            ));
        }
    }
    for (id, member) in &old.members {
        if !new.members.contains_key(id) {
            lines.push(format!(
                "member {id:x} ({}) removed",
                display_name(&member.name)
            ));
        }
    }
    lines
}

/// The log lines of the alarms raised and cleared between two alarm lists.
pub fn alarm_changes(old: &[AlarmMember], new: &[AlarmMember]) -> Vec<String> {
    let old_set: BTreeSet<&AlarmMember> = old.iter().collect();
    let new_set: BTreeSet<&AlarmMember> = new.iter().collect();
    let raised = new_set.difference(&old_set).map(|alarm| (alarm, "raised"));
    let cleared = old_set.difference(&new_set).map(|alarm| (alarm, "cleared"));
    raised
        .chain(cleared)
        .map(|(alarm, what)| {
            format!(
                "alarm {} {what} (member {:x})",
                alarm_name(alarm.alarm),
                alarm.member_id
            )
        })
        .collect()
}

/// Raft's membership in one line, ids in hex as `member list` prints them.
pub fn describe_membership(membership: &Membership) -> String {
    let mut text = format!(
        "voters [{}], learners [{}]",
        ids(&membership.voters),
        ids(&membership.learners)
    );
    if !membership.voters_outgoing.is_empty() {
        text.push_str(&format!(
            " (joint: outgoing voters [{}])",
            ids(&membership.voters_outgoing)
        ));
    }
    text
}

/// A conf change's steps in one line.
pub fn describe_steps(steps: &[ConfChangeStep]) -> String {
    steps
        .iter()
        .map(|step| match step {
            ConfChangeStep::AddVoter(id) => format!("add voter {:x}", id.0),
            ConfChangeStep::AddLearner(id) => format!("add learner {:x}", id.0),
            ConfChangeStep::Remove(id) => format!("remove {:x}", id.0),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn ids(ids: &BTreeSet<NodeId>) -> String {
    ids.iter()
        .map(|id| format!("{:x}", id.0))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A member's name, or etcd's placeholder for one that has not started yet.
fn display_name(name: &str) -> &str {
    if name.is_empty() {
        "unstarted"
    } else {
        name
    }
}

/// etcd's name of an alarm.
fn alarm_name(alarm: AlarmType) -> &'static str {
    match alarm {
        AlarmType::NoSpace => "NOSPACE",
        AlarmType::Corrupt => "CORRUPT",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chorus_replica::MemberRecord;

    fn record(id: u64, name: &str, learner: bool) -> MemberRecord {
        MemberRecord {
            id,
            name: name.to_string(),
            peer_urls: vec![format!("http://127.0.0.1:{id}")],
            client_urls: Vec::new(),
            is_learner: learner,
        }
    }

    fn table(records: &[MemberRecord]) -> MemberTable {
        MemberTable {
            cluster_id: 1,
            members: records.iter().map(|r| (r.id, r.clone())).collect(),
        }
    }

    #[test]
    fn member_changes_name_each_member_and_what_changed() {
        let old = table(&[record(0xa, "one", false), record(0xb, "two", true)]);
        let mut moved = record(0xa, "one", false);
        moved.peer_urls = vec!["http://10.0.0.1:2380".to_string()];
        let new = table(&[moved, record(0xb, "two", false), record(0xc, "", true)]);
        assert_eq!(
            member_table_changes(&old, &new),
            vec![
                "member a (one) updated: peer URLs [http://10.0.0.1:2380] (were [http://127.0.0.1:10])",
                "member b (two) promoted to a voter",
                "member c added as a learner, peer URLs [http://127.0.0.1:12]",
            ]
        );
        let published = table(&[record(0xa, "one", false), record(0xb, "two", true)]);
        let mut renamed = record(0xb, "two", true);
        renamed.name = "zwei".to_string();
        let after = table(&[renamed]);
        assert_eq!(
            member_table_changes(&published, &after),
            vec![
                "member b published: name zwei, client URLs []",
                "member a (one) removed",
            ]
        );
        assert!(member_table_changes(&old, &old).is_empty());
    }

    #[test]
    fn alarms_raised_and_cleared_are_told_apart() {
        let nospace = AlarmMember {
            member_id: 0xa,
            alarm: AlarmType::NoSpace,
        };
        let corrupt = AlarmMember {
            member_id: 0xb,
            alarm: AlarmType::Corrupt,
        };
        assert_eq!(
            alarm_changes(&[corrupt], &[nospace]),
            vec![
                "alarm NOSPACE raised (member a)",
                "alarm CORRUPT cleared (member b)"
            ]
        );
    }

    #[test]
    fn memberships_and_steps_print_hex_ids() {
        let mut membership = Membership::new([NodeId(10), NodeId(11)]);
        membership.learners.insert(NodeId(12));
        assert_eq!(
            describe_membership(&membership),
            "voters [a, b], learners [c]"
        );
        membership.voters_outgoing.insert(NodeId(10));
        assert!(describe_membership(&membership).ends_with("(joint: outgoing voters [a])"));
        assert_eq!(
            describe_steps(&[
                ConfChangeStep::AddVoter(NodeId(12)),
                ConfChangeStep::Remove(NodeId(11))
            ]),
            "add voter c, remove b"
        );
    }
}
