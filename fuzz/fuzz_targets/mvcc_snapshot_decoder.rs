//! Fuzzes the MVCC store's snapshot decoder: snapshots arrive from the leader over the network and
//! from disk. It must never panic nor allocate beyond its input, whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let _ = chorus_mvcc::decode_snapshot(bytes);
});
