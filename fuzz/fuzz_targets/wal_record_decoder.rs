//! Fuzzes the WAL's decoders: a framed record and a segment header, from arbitrary bytes.
//! They must never panic, never allocate more than the input, and a record they accept must
//! re-encode to the bytes it came from.
#![no_main]

use chorus_storage::{decode_record, decode_segment_header, encode_record};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok((record, used)) = decode_record(bytes) {
        assert!(used <= bytes.len());
        let mut encoded = Vec::with_capacity(used);
        encode_record(&record, &mut encoded);
        assert_eq!(
            encoded,
            bytes[..used],
            "decoded record does not re-encode to its bytes"
        );
    }
    let _ = decode_segment_header(bytes);
});
