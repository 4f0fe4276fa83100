//! Rebuilding the alarm table on open: the snapshot holds the table as of its index; the store
//! may have applied entries past it before the restart, and those entries are not applied again
//! (the store skips them), so the alarm commands among them are replayed here.

use crate::alarm::Alarms;
use crate::command::{decode_command, Command};
use crate::error::ReplicaError;
use chorus_raft::{Entry, EntryPayload};

/// Applies to `alarms` the alarm commands of the entries in `(after, up_to]`.
pub(crate) fn replay_alarm_commands(
    alarms: &mut Alarms,
    entries: &[Entry],
    after: u64,
    up_to: u64,
) -> Result<(), ReplicaError> {
    for entry in entries {
        let index = entry.index.0;
        if index <= after || index > up_to {
            continue;
        }
        let EntryPayload::Normal(data) = &entry.payload else {
            continue;
        };
        let command = decode_command(data).map_err(|error| ReplicaError::Corrupt {
            reason: format!("committed entry {index}: {error}"),
        })?;
        if let Command::Alarm { action, alarm } = command {
            alarms.apply(action, alarm);
        }
    }
    Ok(())
}
