//! Fuzzes the replica's decoders of replicated bytes: the command (every raft entry's payload,
//! alarms included) and the state snapshot (leases and alarms). They must never panic, and what
//! they accept must re-encode to the same bytes.
#![no_main]

use chorus_replica::snapshot::{decode_state_snapshot, encode_state_snapshot};
use chorus_replica::{decode_command, encode_command};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(command) = decode_command(bytes) {
        assert_eq!(encode_command(&command), bytes, "command does not re-encode");
    }
    if let Ok(snapshot) = decode_state_snapshot(bytes) {
        if !bytes.starts_with(b"chorusmv") {
            let encoded =
                encode_state_snapshot(
                    snapshot.mvcc,
                    &snapshot.leases,
                    snapshot.members.as_ref(),
                    &snapshot.alarms,
                );
            assert_eq!(encoded, bytes, "state snapshot does not re-encode");
        }
    }
});
