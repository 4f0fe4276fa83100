//! Fuzzes the snapshot header decoder and the checked-file envelope (hard state) from arbitrary
//! bytes. They must never panic, and a header they accept must re-encode to its bytes.
#![no_main]

use chorus_storage::{
    decode_checked_file, decode_hard_state, decode_snapshot_header, encode_snapshot_header,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(header) = decode_snapshot_header(bytes) {
        let encoded = encode_snapshot_header(&header.meta, header.data_bytes);
        assert_eq!(encoded.len() as u64, header.data_offset);
        assert_eq!(
            encoded,
            bytes[..encoded.len()],
            "decoded header does not re-encode"
        );
    }
    if let Ok(body) = decode_checked_file(bytes) {
        let _ = decode_hard_state(body);
    }
});
