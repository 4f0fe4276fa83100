//! The decoders of untrusted bytes, on stable Rust: thousands of random and mutated inputs must
//! never panic, and valid encodings must round-trip. The same decoders are fuzzed for longer by
//! `fuzz/` (`cargo +nightly fuzz run wal_record_decoder`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use chorus_storage::{
    decode_checked_file, decode_hard_state, decode_record, decode_segment_header,
    decode_snapshot_header, encode_checked_file, encode_record, encode_snapshot_header, Record,
    SnapshotMeta,
};
use proptest::prelude::*;

fn encoded_record(index: u64, term: u64, payload: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    encode_record(
        &Record::new(index, term, Bytes::copy_from_slice(payload)),
        &mut bytes,
    );
    bytes
}

/// Random edits of a valid encoding: they reach further into a decoder than random bytes.
fn mutate(mut bytes: Vec<u8>, edits: &[(usize, u8)], cut: Option<usize>) -> Vec<u8> {
    for &(position, value) in edits {
        if !bytes.is_empty() {
            let position = position % bytes.len();
            bytes[position] = value;
        }
    }
    if let Some(cut) = cut {
        bytes.truncate(cut % (bytes.len() + 1));
    }
    bytes
}

fn edits() -> impl Strategy<Value = Vec<(usize, u8)>> {
    prop::collection::vec((any::<usize>(), any::<u8>()), 0..4)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    #[test]
    fn decoders_never_panic_on_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = decode_record(&bytes);
        let _ = decode_snapshot_header(&bytes);
        let _ = decode_segment_header(&bytes);
        let _ = decode_checked_file(&bytes);
        let _ = decode_hard_state(&bytes);
    }

    #[test]
    fn record_decoder_never_panics_on_mutated_records(
        index in any::<u64>(),
        term in any::<u64>(),
        payload in prop::collection::vec(any::<u8>(), 0..100),
        edits in edits(),
        cut in any::<Option<usize>>(),
    ) {
        let bytes = mutate(encoded_record(index, term, &payload), &edits, cut);
        if let Ok((record, used)) = decode_record(&bytes) {
            prop_assert!(used <= bytes.len());
            prop_assert_eq!(record.encoded_bytes(), used as u64);
        }
    }

    #[test]
    fn snapshot_header_decoder_never_panics_on_mutated_headers(
        last_index in any::<u64>(),
        data_bytes in any::<u64>(),
        membership in prop::collection::vec(any::<u8>(), 0..64),
        edits in edits(),
        cut in any::<Option<usize>>(),
    ) {
        let meta = SnapshotMeta { last_index, last_term: 1, membership: Bytes::from(membership) };
        let bytes = mutate(encode_snapshot_header(&meta, data_bytes), &edits, cut);
        if let Ok(header) = decode_snapshot_header(&bytes) {
            prop_assert!(header.data_offset <= bytes.len() as u64);
        }
    }

    #[test]
    fn records_round_trip(
        index in any::<u64>(),
        term in any::<u64>(),
        payload in prop::collection::vec(any::<u8>(), 0..300),
        trailing in prop::collection::vec(any::<u8>(), 0..20),
    ) {
        let mut bytes = encoded_record(index, term, &payload);
        let frame_bytes = bytes.len();
        bytes.extend_from_slice(&trailing);
        let (record, used) = decode_record(&bytes).unwrap();
        prop_assert_eq!(used, frame_bytes);
        prop_assert_eq!(record, Record::new(index, term, Bytes::from(payload)));
    }

    #[test]
    fn checked_files_round_trip(body in prop::collection::vec(any::<u8>(), 0..300)) {
        let encoded = encode_checked_file(&body);
        prop_assert_eq!(decode_checked_file(&encoded).unwrap(), &body[..]);
    }
}
