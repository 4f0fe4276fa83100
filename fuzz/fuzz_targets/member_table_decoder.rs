//! Fuzzes the replicated member table's decoder (alone and inside a replica snapshot) and the
//! command decoder (which reads the member commands) from arbitrary bytes. They must never
//! panic, and what they accept must re-encode to the same bytes.
#![no_main]

use chorus_replica::members::{decode_member_table, encode_member_table};
use chorus_replica::snapshot::{decode_state_snapshot, encode_state_snapshot_with_sessions};
use chorus_replica::{decode_command, encode_command};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(table) = decode_member_table(bytes) {
        assert_eq!(encode_member_table(&table), bytes, "table not canonical");
    }
    if let Ok(snapshot) = decode_state_snapshot(bytes) {
        if !bytes.starts_with(b"chorusmv") {
            let encoded = encode_state_snapshot_with_sessions(
                snapshot.mvcc,
                &snapshot.leases,
                snapshot.members.as_ref(),
                &snapshot.alarms,
                &snapshot.sessions,
            );
            assert_eq!(encoded, bytes, "snapshot not canonical");
        }
    }
    if let Ok(command) = decode_command(bytes) {
        // Re-decoding what was encoded gives the same command (an encoding may normalize).
        assert_eq!(decode_command(&encode_command(&command)), Ok(command));
    }
});
