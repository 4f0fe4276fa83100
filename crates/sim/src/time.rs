//! Simulated time and the event queue.
//!
//! Time is a count of simulated nanoseconds since the start of the run; nothing reads a real
//! clock. Events fire in `(time, sequence)` order: two events at the same nanosecond fire in the
//! order they were scheduled, so a run is a pure function of its seed.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;

pub use crate::history::Nanos;

pub const MICROSECOND: Nanos = 1_000;
pub const MILLISECOND: Nanos = 1_000_000;
pub const SECOND: Nanos = 1_000_000_000;

/// Shows a simulated time as milliseconds with microsecond precision: `12345.678ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Time(pub Nanos);

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let micros = self.0 / MICROSECOND;
        write!(f, "{}.{:03}ms", micros / 1000, micros % 1000)
    }
}

/// Events waiting for their time, in `(time, sequence)` order.
///
/// Events live in a slab and the heap orders small `(time, sequence, slot)` keys, so big events
/// (messages with entries) are moved once in and once out, not at every heap swap.
///
/// # Invariants
/// - every key in `heap` names an occupied slot; `free` lists exactly the empty slots;
/// - `len() <= events_pending_max`.
pub struct EventQueue<E> {
    heap: BinaryHeap<Reverse<(Nanos, u64, u32)>>,
    slots: Vec<Option<E>>,
    free: Vec<u32>,
    sequence: u64,
    now: Nanos,
    events_pending_max: usize,
}

impl<E> EventQueue<E> {
    pub fn new(events_pending_max: usize) -> EventQueue<E> {
        EventQueue {
            heap: BinaryHeap::with_capacity(1024),
            slots: Vec::with_capacity(1024),
            free: Vec::with_capacity(1024),
            sequence: 0,
            now: 0,
            events_pending_max,
        }
    }

    /// The time of the event last popped.
    pub fn now(&self) -> Nanos {
        self.now
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Schedules `event` at absolute time `at`, which must not be in the past.
    pub fn schedule_at(&mut self, at: Nanos, event: E) {
        assert!(
            at >= self.now,
            "event scheduled in the past: {at} < {}",
            self.now
        );
        assert!(
            self.heap.len() < self.events_pending_max,
            "more than events_pending_max ({}) events pending",
            self.events_pending_max
        );
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(event);
                slot
            }
            None => {
                self.slots.push(Some(event));
                (self.slots.len() - 1) as u32
            }
        };
        self.heap.push(Reverse((at, self.sequence, slot)));
        self.sequence += 1;
    }

    /// Schedules `event` `delay` nanoseconds from now.
    pub fn schedule_in(&mut self, delay: Nanos, event: E) {
        self.schedule_at(self.now + delay, event);
    }

    /// The time of the next event, if any.
    pub fn peek_time(&self) -> Option<Nanos> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Takes the next event and moves the clock to its time.
    pub fn pop(&mut self) -> Option<(Nanos, E)> {
        let Reverse((at, _, slot)) = self.heap.pop()?;
        let event = self.slots[slot as usize].take();
        self.free.push(slot);
        let Some(event) = event else {
            panic!("event queue slot {slot} was empty");
        };
        self.now = at;
        Some((at, event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_fire_in_time_then_schedule_order() {
        let mut queue = EventQueue::new(16);
        queue.schedule_at(5, "b");
        queue.schedule_at(3, "a");
        queue.schedule_at(5, "c");
        queue.schedule_at(9, "d");
        let order: Vec<_> = std::iter::from_fn(|| queue.pop()).collect();
        assert_eq!(order, vec![(3, "a"), (5, "b"), (5, "c"), (9, "d")]);
        assert_eq!(queue.now(), 9);
    }

    #[test]
    fn slots_are_reused() {
        let mut queue = EventQueue::new(4);
        for round in 0..100u64 {
            queue.schedule_in(1, round);
            queue.schedule_in(2, round + 1000);
            assert_eq!(queue.pop().map(|(_, e)| e), Some(round));
            assert_eq!(queue.pop().map(|(_, e)| e), Some(round + 1000));
        }
        assert!(queue.slots.len() <= 2);
    }

    #[test]
    fn schedule_in_is_relative_to_now() {
        let mut queue = EventQueue::new(4);
        queue.schedule_at(10, 1);
        assert_eq!(queue.pop(), Some((10, 1)));
        queue.schedule_in(5, 2);
        assert_eq!(queue.peek_time(), Some(15));
    }

    #[test]
    #[should_panic(expected = "events_pending_max")]
    fn refuses_past_the_bound() {
        let mut queue = EventQueue::new(2);
        for event in 0..3 {
            queue.schedule_at(1, event);
        }
    }

    #[test]
    #[should_panic(expected = "in the past")]
    fn refuses_the_past() {
        let mut queue = EventQueue::new(4);
        queue.schedule_at(10, 1);
        queue.pop();
        queue.schedule_at(9, 2);
    }

    #[test]
    fn time_display() {
        assert_eq!(Time(12_345_678_901).to_string(), "12345.678ms");
        assert_eq!(Time(5 * MICROSECOND).to_string(), "0.005ms");
    }
}
