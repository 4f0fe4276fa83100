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
