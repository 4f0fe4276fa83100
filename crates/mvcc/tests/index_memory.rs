//! What the in-memory key index costs per key, counted by a global allocator that tracks the live
//! heap bytes: 200,000 keys of 8 bytes (`00000000`, `00000001`, ...), one put each, the load of
//! docs/performance.md's memory measurement. Allocation sizes are deterministic, so this is a
//! bound, not a timing. The bytes are what was asked for; the allocator's size classes (mimalloc
//! in the server) add a little on top.
// A `GlobalAlloc` implementation is unsafe by definition; it only forwards to `System`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let pointer = System.alloc(layout);
        if !pointer.is_null() {
            LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        System.dealloc(pointer, layout);
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let pointer = System.alloc_zeroed(layout);
        if !pointer.is_null() {
            LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        }
        pointer
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let moved = System.realloc(pointer, layout, new_size);
        if !moved.is_null() {
            LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
            LIVE_BYTES.fetch_add(new_size, Ordering::Relaxed);
        }
        moved
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const KEY_COUNT: usize = 200_000;
/// The most heap bytes a key of this load may cost in the index. A key is one 32-byte entry of a
/// `BTreeMap` (a 16-byte key, a 16-byte history) whose nodes are about half full when keys come in
/// order, 70% full in random order (measured before the compact layout: 372.9 bytes in order).
const INDEX_BYTES_PER_KEY_MAX: f64 = 70.0;

/// The index's live heap bytes per key, the keys put in the order given.
fn index_bytes_per_key(keys: &[Vec<u8>]) -> f64 {
    let before = LIVE_BYTES.load(Ordering::Relaxed);
    let index = chorus_mvcc::key_index_for_measurement(keys);
    let after = LIVE_BYTES.load(Ordering::Relaxed);
    drop(index);
    (after - before) as f64 / keys.len() as f64
}

#[test]
fn index_of_single_put_keys_stays_under_its_bytes_per_key_bound() {
    let mut keys: Vec<Vec<u8>> = (0..KEY_COUNT)
        .map(|i| format!("{i:08}").into_bytes())
        .collect();
    let in_order = index_bytes_per_key(&keys);
    // A fixed shuffle (Fisher-Yates over a linear congruential generator).
    let mut state: u64 = 1;
    for i in (1..keys.len()).rev() {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        keys.swap(i, (state >> 33) as usize % (i + 1));
    }
    let shuffled = index_bytes_per_key(&keys);
    println!(
        "index: {KEY_COUNT} keys of 8 bytes, one put each: {in_order:.1} bytes per key put in \
         order, {shuffled:.1} shuffled"
    );
    for bytes_per_key in [in_order, shuffled] {
        assert!(
            bytes_per_key <= INDEX_BYTES_PER_KEY_MAX,
            "{bytes_per_key:.1} bytes per key, bound {INDEX_BYTES_PER_KEY_MAX}"
        );
    }
}
