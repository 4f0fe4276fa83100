//! Fuzzes the replica's decoders of replicated bytes: the command (every raft entry's payload,
//! alarms and session commands included), the state snapshot (leases, alarms, sessions), a
//! session's stored answer and the tables in the backend's side table (the input cut into
//! entries: key length u8 | key | value length u8 | value, ...). They must never panic, and what
//! they accept must re-encode to the same bytes.
#![no_main]

use chorus_replica::response::{decode_response, encode_response};
use chorus_replica::snapshot::{decode_state_snapshot, encode_state_snapshot_with_sessions};
use chorus_replica::tables::{decode_side_tables, encode_side_tables};
use chorus_replica::{decode_command, decode_forward_tag, encode_command, encode_forwarded};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(command) = decode_command(bytes) {
        // A forwarded command decodes to the command it carries; its tag comes apart.
        let encoded = match decode_forward_tag(bytes) {
            Some(tag) => encode_forwarded(tag, &command),
            None => encode_command(&command),
        };
        assert_eq!(encoded, bytes, "command does not re-encode");
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
            assert_eq!(encoded, bytes, "state snapshot does not re-encode");
        }
    }
    if let Ok(result) = decode_response(bytes) {
        assert_eq!(encode_response(&result), bytes, "stored answer does not re-encode");
    }
    let mut entries = Vec::new();
    let mut rest = bytes;
    while let Some((&key_len, after)) = rest.split_first() {
        let Some((key, after)) = after.split_at_checked(usize::from(key_len)) else { break };
        let Some((&value_len, after)) = after.split_first() else { break };
        let Some((value, after)) = after.split_at_checked(usize::from(value_len)) else { break };
        entries.push((key.to_vec(), value.to_vec()));
        rest = after;
    }
    entries.sort();
    entries.dedup_by(|a, b| a.0 == b.0);
    if let Ok(tables) = decode_side_tables(&entries) {
        // The encoding always carries the format entry.
        if !tables.has_format {
            entries.push((b"v".to_vec(), vec![1]));
            entries.sort();
        }
        assert_eq!(encode_side_tables(&tables), entries, "side tables do not re-encode");
    }
});
