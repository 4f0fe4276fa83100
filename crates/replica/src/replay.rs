//! Rebuilding, on open, the replicated tables the store's backend does not hold (leases, alarms,
//! members): the snapshot holds them as of its index; the store may have applied entries past
//! it before the restart, and those entries are not applied again (the store skips them), so
//! their commands are handed to the tables here.

use crate::command::{decode_command, Command};
use crate::error::ReplicaError;
use chorus_raft::{Entry, EntryPayload};

/// Calls `apply` with the index and the command of every normal entry in `(after, up_to]`, in
/// order. An entry that does not decode is `Corrupt` (it was committed and applied once).
pub(crate) fn for_each_command(
    entries: &[Entry],
    after: u64,
    up_to: u64,
    mut apply: impl FnMut(u64, Command),
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
        apply(index, command);
    }
    Ok(())
}

/// Whether a normal entry in `(after, up_to]` is a lease grant or revoke inside a session: the
/// lessor cannot replay those (whether the session table let them through is not in the log).
pub(crate) fn has_sessioned_lease_command(
    entries: &[Entry],
    after: u64,
    up_to: u64,
) -> Result<bool, ReplicaError> {
    let mut found = false;
    for_each_command(entries, after, up_to, |_, command| {
        if let Command::Sessioned { command, .. } = command {
            found |= matches!(
                *command,
                Command::LeaseGrant { .. } | Command::LeaseRevoke { .. }
            );
        }
    })?;
    Ok(found)
}
