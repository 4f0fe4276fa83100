//! chorus-sim: the deterministic simulator. Many replicas in one thread, with a simulated
//! network, disks and clocks, seeded fault schedules, and one checker per property.
//!
//! Seed in, verdict out, exact replay: everything a run does is drawn from one `u64` seed
//! through our own PRNG ([`prng`]); there is no wall clock, no threads, and no hash-map
//! iteration anywhere output depends on. Running a seed twice gives the same trace, bit for bit.
//!
//! What it is not: a model checker (it samples schedules, it does not enumerate them), or a
//! benchmark of raft (simulated time says nothing about real throughput).
//!
//! Map: [`scenario`] derives a run from its seed; [`cluster`] wires replicas ([`node`]: the
//! server's `chorus_replica::Replica` — raft, the real WAL, hard state and snapshot files of
//! `chorus-storage` on a `SimFs`, the real MVCC store — and the requests waiting on it), the
//! [`network`], clients ([`workload`], their operations in [`kv`]) and faults ([`faults`]) over
//! one event queue ([`time`]); [`checkers`] watch every property, following each replica's
//! durable state in [`durable_log`]; [`trace`] keeps the last events; [`runner`] runs one seed
//! to a [`runner::Report`]. The client history ([`history`]) is checked by [`linearizability`]
//! and written by [`history_json`].

pub mod history;
pub mod history_json;
pub mod linearizability;

pub mod checkers;
pub mod cluster;
pub mod durable_log;
pub mod faults;
pub mod kv;
pub mod network;
pub mod node;
pub mod prng;
pub mod runner;
pub mod scenario;
pub mod time;
pub mod trace;
pub mod workload;
