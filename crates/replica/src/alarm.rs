//! etcd's alarms: conditions a member raises (NOSPACE: its database passed the backend quota)
//! that change what the whole cluster accepts. The alarm table is replicated state: alarms are
//! raised and cleared by [`crate::Command::Alarm`] entries, kept in the state snapshot, and every
//! replica applies the same refusals while one is raised: with NOSPACE, a put, a transaction
//! that puts, and a lease grant are refused with "etcdserver: mvcc: database space exceeded"
//! (etcd's capped applier); deletes, compaction and reads go on.

use crate::codec::{DecodeError, Reader};
use std::collections::BTreeSet;

/// The most alarms the table holds; activating one more is a no-op (answered with no alarm).
/// etcd does not bound it; a member id is any 64-bit number a client may send.
pub const ALARMS_MAX: usize = 1024;

/// etcd's `AlarmType` (its protobuf numbers): NONE (0) is not an alarm and never stored.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AlarmType {
    /// The member's database passed the backend quota.
    NoSpace,
    /// The member found its data corrupt (chorus never raises it itself; a client may).
    Corrupt,
}

impl AlarmType {
    /// etcd's protobuf number.
    pub fn code(self) -> u8 {
        match self {
            AlarmType::NoSpace => 1,
            AlarmType::Corrupt => 2,
        }
    }

    /// The alarm of etcd's protobuf number; `None` for NONE (0) and unknown numbers.
    pub fn from_code(code: i32) -> Option<AlarmType> {
        match code {
            1 => Some(AlarmType::NoSpace),
            2 => Some(AlarmType::Corrupt),
            _ => None,
        }
    }
}

/// One raised alarm: which member raised it, and which.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AlarmMember {
    pub member_id: u64,
    pub alarm: AlarmType,
}

/// Whether an [`crate::Command::Alarm`] raises or clears.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum AlarmAction {
    Activate,
    Deactivate,
}

/// The replicated alarm table.
///
/// # Invariants
/// - At most [`ALARMS_MAX`] alarms.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Alarms {
    raised: BTreeSet<AlarmMember>,
}

impl Alarms {
    /// Applies an alarm command; returns the alarm that changed (none if it was already in
    /// that state, or the table is full), as etcd's `Alarm` answer lists it.
    pub fn apply(&mut self, action: AlarmAction, alarm: AlarmMember) -> Vec<AlarmMember> {
        let changed = match action {
            AlarmAction::Activate => self.raised.len() < ALARMS_MAX && self.raised.insert(alarm),
            AlarmAction::Deactivate => self.raised.remove(&alarm),
        };
        if changed {
            vec![alarm]
        } else {
            Vec::new()
        }
    }

    /// Every raised alarm, by member id then type.
    pub fn list(&self) -> Vec<AlarmMember> {
        self.raised.iter().copied().collect()
    }

    /// Whether any member raised `alarm`.
    pub fn is_raised(&self, alarm: AlarmType) -> bool {
        self.raised.iter().any(|raised| raised.alarm == alarm)
    }

    /// Replaces the table (a snapshot's).
    pub fn restore(&mut self, alarms: &[AlarmMember]) {
        self.raised = alarms.iter().copied().collect();
        self.check_invariants();
    }

    pub fn check_invariants(&self) {
        assert!(
            self.raised.len() <= ALARMS_MAX,
            "{} alarms, the limit is {ALARMS_MAX}",
            self.raised.len()
        );
    }
}

/// Reads an alarm type byte; refuses NONE and unknown numbers.
pub(crate) fn read_alarm_type(reader: &mut Reader<'_>) -> Result<AlarmType, DecodeError> {
    let tag = reader.u8()?;
    AlarmType::from_code(i32::from(tag)).ok_or(DecodeError::UnknownTag { what: "alarm", tag })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const NOSPACE_1: AlarmMember = AlarmMember {
        member_id: 1,
        alarm: AlarmType::NoSpace,
    };

    #[test]
    fn activating_twice_changes_once_and_deactivating_clears() {
        let mut alarms = Alarms::default();
        assert_eq!(
            alarms.apply(AlarmAction::Activate, NOSPACE_1),
            vec![NOSPACE_1]
        );
        assert_eq!(alarms.apply(AlarmAction::Activate, NOSPACE_1), vec![]);
        assert!(alarms.is_raised(AlarmType::NoSpace));
        assert!(!alarms.is_raised(AlarmType::Corrupt));
        assert_eq!(
            alarms.apply(AlarmAction::Deactivate, NOSPACE_1),
            vec![NOSPACE_1]
        );
        assert_eq!(alarms.apply(AlarmAction::Deactivate, NOSPACE_1), vec![]);
        assert!(alarms.list().is_empty());
    }

    #[test]
    fn the_table_holds_at_most_the_limit() {
        let mut alarms = Alarms::default();
        for member_id in 0..ALARMS_MAX as u64 {
            let alarm = AlarmMember {
                member_id,
                alarm: AlarmType::Corrupt,
            };
            assert_eq!(alarms.apply(AlarmAction::Activate, alarm), vec![alarm]);
        }
        let one_more = AlarmMember {
            member_id: u64::MAX,
            alarm: AlarmType::NoSpace,
        };
        assert_eq!(alarms.apply(AlarmAction::Activate, one_more), vec![]);
        assert_eq!(alarms.list().len(), ALARMS_MAX);
        alarms.check_invariants();
    }
}
