//! The run's trace: readable events, the last few kept in a bounded ring, all of them hashed.
//!
//! Events are small values, formatted only when shown, so tracing costs little on the hot path.
//! The hash covers every event of the run, not only those kept: two runs with the same seed must
//! produce the same hash, which is how determinism is tested.

use crate::network::DropReason;
use crate::node::CrashLoss;
use crate::time::{Nanos, Time};
use chorus_raft::{Message, MessageBody, Role};
use std::collections::VecDeque;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::io::Write;

/// A message reduced to what a reader of the trace needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MessageSummary {
    pub term: u64,
    pub body: BodySummary,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BodySummary {
    Vote {
        pre_vote: bool,
        last_index: u64,
        last_term: u64,
    },
    VoteResp {
        pre_vote: bool,
        granted: bool,
    },
    Append {
        prev_index: u64,
        prev_term: u64,
        entries: u32,
        commit: u64,
    },
    AppendResp {
        index: u64,
        rejected: bool,
        hint_index: u64,
        hint_term: u64,
    },
    Heartbeat {
        commit: u64,
        sequence: u64,
    },
    HeartbeatResp {
        sequence: u64,
        last_index: u64,
    },
    Snapshot {
        last_index: u64,
        last_term: u64,
        offset: u64,
        bytes: u32,
        total: u64,
    },
    SnapshotResp {
        last_index: u64,
        received: u64,
        rejected: bool,
    },
    TimeoutNow,
    ReadIndex {
        id: u64,
    },
    ReadIndexResp {
        id: u64,
        index: Option<u64>,
    },
    Propose {
        entries: u32,
    },
}

impl MessageSummary {
    pub fn of(message: &Message) -> MessageSummary {
        let body = match &message.body {
            MessageBody::RequestVote(v) => BodySummary::Vote {
                pre_vote: v.pre_vote,
                last_index: v.last_log_index.0,
                last_term: v.last_log_term.0,
            },
            MessageBody::RequestVoteResponse(v) => BodySummary::VoteResp {
                pre_vote: v.pre_vote,
                granted: v.granted,
            },
            MessageBody::AppendEntries(a) => BodySummary::Append {
                prev_index: a.prev_log_index.0,
                prev_term: a.prev_log_term.0,
                entries: a.entries.len() as u32,
                commit: a.leader_commit.0,
            },
            MessageBody::AppendEntriesResponse(a) => BodySummary::AppendResp {
                index: a.index.0,
                rejected: a.rejected,
                hint_index: a.hint_index.0,
                hint_term: a.hint_term.0,
            },
            MessageBody::Heartbeat(h) => BodySummary::Heartbeat {
                commit: h.commit.0,
                sequence: h.sequence,
            },
            MessageBody::HeartbeatResponse(h) => BodySummary::HeartbeatResp {
                sequence: h.sequence,
                last_index: h.last_index.0,
            },
            MessageBody::InstallSnapshot(s) => BodySummary::Snapshot {
                last_index: s.meta.last_index.0,
                last_term: s.meta.last_term.0,
                offset: s.offset,
                bytes: s.data.len() as u32,
                total: s.total_bytes,
            },
            MessageBody::InstallSnapshotResponse(s) => BodySummary::SnapshotResp {
                last_index: s.last_index.0,
                received: s.received_bytes,
                rejected: s.rejected,
            },
            MessageBody::TimeoutNow => BodySummary::TimeoutNow,
            MessageBody::ReadIndexRequest(r) => BodySummary::ReadIndex { id: r.id },
            MessageBody::ReadIndexResponse(r) => BodySummary::ReadIndexResp {
                id: r.id,
                index: r.index.map(|i| i.0),
            },
            MessageBody::Propose(p) => BodySummary::Propose {
                entries: p.entries.len() as u32,
            },
        };
        MessageSummary {
            term: message.term.0,
            body,
        }
    }

    /// True for a granted real (not pre-) vote.
    pub fn is_vote_granted(&self) -> bool {
        matches!(
            self.body,
            BodySummary::VoteResp {
                pre_vote: false,
                granted: true
            }
        )
    }
}

impl fmt::Display for MessageSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let term = self.term;
        match self.body {
            BodySummary::Vote { pre_vote, last_index, last_term } => write!(
                f,
                "{}(t{term}, last=i{last_index}/t{last_term})",
                if pre_vote { "PreVote" } else { "RequestVote" }
            ),
            BodySummary::VoteResp { pre_vote, granted } => write!(
                f,
                "{}(t{term}, {})",
                if pre_vote { "PreVoteResp" } else { "RequestVoteResp" },
                if granted { "granted" } else { "rejected" }
            ),
            BodySummary::Append { prev_index, prev_term, entries, commit } => write!(
                f,
                "Append(t{term}, prev=i{prev_index}/t{prev_term}, {entries} entries, commit=i{commit})"
            ),
            BodySummary::AppendResp { index, rejected: false, .. } => {
                write!(f, "AppendResp(t{term}, ok i{index})")
            }
            BodySummary::AppendResp { index, rejected: true, hint_index, hint_term } => write!(
                f,
                "AppendResp(t{term}, rejected i{index}, hint=i{hint_index}/t{hint_term})"
            ),
            BodySummary::Heartbeat { commit, sequence } => {
                write!(f, "Heartbeat(t{term}, commit=i{commit}, seq={sequence})")
            }
            BodySummary::HeartbeatResp { sequence, last_index } => {
                write!(f, "HeartbeatResp(t{term}, seq={sequence}, last=i{last_index})")
            }
            BodySummary::Snapshot { last_index, last_term, offset, bytes, total } => write!(
                f,
                "Snapshot(t{term}, i{last_index}/t{last_term}, bytes {offset}+{bytes} of {total})"
            ),
            BodySummary::SnapshotResp { last_index, received, rejected } => write!(
                f,
                "SnapshotResp(t{term}, i{last_index}, received {received}{})",
                if rejected { ", rejected" } else { "" }
            ),
            BodySummary::TimeoutNow => write!(f, "TimeoutNow(t{term})"),
            BodySummary::ReadIndex { id } => write!(f, "ReadIndex(t{term}, id={id})"),
            BodySummary::ReadIndexResp { id, index: Some(index) } => {
                write!(f, "ReadIndexResp(t{term}, id={id}, i{index})")
            }
            BodySummary::ReadIndexResp { id, index: None } => {
                write!(f, "ReadIndexResp(t{term}, id={id}, failed)")
            }
            BodySummary::Propose { entries } => write!(f, "Propose(t{term}, {entries} entries)"),
        }
    }
}

/// One thing that happened, at a simulated time.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TraceEvent {
    Deliver {
        from: u64,
        to: u64,
        message: MessageSummary,
    },
    Drop {
        from: u64,
        to: u64,
        message: MessageSummary,
        reason: DropReason,
    },
    Role {
        node: u64,
        role: RoleName,
        term: u64,
        leader: Option<u64>,
    },
    Fsync {
        node: u64,
        entries: Option<(u64, u64)>,
        hard_state: Option<(u64, Option<u64>, u64)>,
        snapshot: Option<u64>,
    },
    Apply {
        node: u64,
        first: u64,
        last: u64,
    },
    SnapshotRestored {
        node: u64,
        index: u64,
    },
    Compact {
        node: u64,
        index: u64,
    },
    Crash {
        node: u64,
        loss: CrashLoss,
    },
    Restart {
        node: u64,
        term: u64,
        commit: u64,
        last_index: u64,
    },
    /// A fault began or ended; `what` is its readable description.
    Fault {
        what: String,
    },
    ClientCall {
        client: u64,
        node: u64,
        request: u64,
        what: String,
    },
    ClientReturn {
        client: u64,
        node: u64,
        request: u64,
        what: String,
    },
    ClientTimeout {
        client: u64,
        request: u64,
    },
    Note {
        what: String,
    },
}

/// `Role` with `Hash` and a short display.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RoleName {
    Follower,
    PreCandidate,
    Candidate,
    Leader,
}

impl From<Role> for RoleName {
    fn from(role: Role) -> RoleName {
        match role {
            Role::Follower => RoleName::Follower,
            Role::PreCandidate => RoleName::PreCandidate,
            Role::Candidate => RoleName::Candidate,
            Role::Leader => RoleName::Leader,
        }
    }
}

impl fmt::Display for TraceEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceEvent::Deliver { from, to, message } => write!(f, "n{from} → n{to} {message}"),
            TraceEvent::Drop {
                from,
                to,
                message,
                reason,
            } => {
                let why = match reason {
                    DropReason::Partition => "partition",
                    DropReason::Loss => "loss",
                    DropReason::Down => "receiver down",
                };
                write!(f, "n{from} ↛ n{to} {message} dropped ({why})")
            }
            TraceEvent::Role {
                node,
                role,
                term,
                leader,
            } => match leader {
                Some(leader) if *role != RoleName::Leader => {
                    write!(f, "n{node} became {role:?} t{term} (leader n{leader})")
                }
                _ => write!(f, "n{node} became {role:?} t{term}"),
            },
            TraceEvent::Fsync {
                node,
                entries,
                hard_state,
                snapshot,
            } => {
                write!(f, "n{node} fsync")?;
                if let Some(index) = snapshot {
                    write!(f, " snapshot=i{index}")?;
                }
                if let Some((first, last)) = entries {
                    write!(f, " entries i{first}..=i{last}")?;
                }
                if let Some((term, vote, commit)) = hard_state {
                    match vote {
                        Some(vote) => write!(f, " hs(t{term}, vote n{vote}, commit i{commit})")?,
                        None => write!(f, " hs(t{term}, no vote, commit i{commit})")?,
                    }
                }
                Ok(())
            }
            TraceEvent::Apply { node, first, last } => {
                write!(f, "n{node} applied i{first}..=i{last}")
            }
            TraceEvent::SnapshotRestored { node, index } => {
                write!(f, "n{node} restored state machine from snapshot i{index}")
            }
            TraceEvent::Compact { node, index } => write!(f, "n{node} compacted log to i{index}"),
            TraceEvent::Crash { node, loss } => match (loss.in_flight, loss.cut_after_operations) {
                (false, _) => write!(f, "crash n{node} (disk idle)"),
                (true, None) => write!(f, "crash n{node} (the Ready in flight is lost)"),
                (true, Some(operations)) => write!(
                    f,
                    "crash n{node} (power cut after {operations} disk operations of the persist)"
                ),
            },
            TraceEvent::Restart {
                node,
                term,
                commit,
                last_index,
            } => write!(
                f,
                "restart n{node} from disk (t{term}, commit i{commit}, last i{last_index})"
            ),
            TraceEvent::Fault { what } => write!(f, "{what}"),
            TraceEvent::ClientCall {
                client,
                node,
                request,
                what,
            } => {
                write!(f, "c{client} → n{node} #{request} {what}")
            }
            TraceEvent::ClientReturn {
                client,
                node,
                request,
                what,
            } => {
                write!(f, "c{client} ← n{node} #{request} {what}")
            }
            TraceEvent::ClientTimeout { client, request } => {
                write!(f, "c{client} #{request} timed out")
            }
            TraceEvent::Note { what } => write!(f, "{what}"),
        }
    }
}

/// FNV-style 64-bit hasher with a stronger finalizer: deterministic across runs and platforms
/// of one endianness, and fast on the small words events are made of.
#[derive(Clone, Copy, Debug)]
pub struct TraceHasher {
    state: u64,
}

impl Default for TraceHasher {
    fn default() -> TraceHasher {
        TraceHasher {
            state: 0xCBF2_9CE4_8422_2325,
        }
    }
}

impl Hasher for TraceHasher {
    fn finish(&self) -> u64 {
        let mut z = self.state;
        z = (z ^ (z >> 33)).wrapping_mul(0xFF51_AFD7_ED55_8CCD);
        z ^ (z >> 33)
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.state = (self.state ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01B3);
        }
    }

    fn write_u64(&mut self, word: u64) {
        self.state = (self.state ^ word)
            .wrapping_mul(0x0000_0100_0000_01B3)
            .rotate_left(29);
    }

    fn write_u32(&mut self, word: u32) {
        self.write_u64(u64::from(word));
    }

    fn write_u8(&mut self, byte: u8) {
        self.write_u64(u64::from(byte));
    }

    fn write_usize(&mut self, word: usize) {
        self.write_u64(word as u64);
    }

    fn write_isize(&mut self, word: isize) {
        self.write_u64(word as u64);
    }
}

/// The trace of one run.
///
/// # Invariants
/// - `ring.len() <= events_kept_max`.
pub struct Trace {
    ring: VecDeque<(Nanos, TraceEvent)>,
    events_kept_max: usize,
    hasher: TraceHasher,
    events_total: u64,
    /// Print every event as it happens (`--trace`).
    stream: bool,
}

impl Trace {
    pub fn new(events_kept_max: usize, stream: bool) -> Trace {
        assert!(events_kept_max >= 1, "a trace keeps at least one event");
        Trace {
            ring: VecDeque::with_capacity(events_kept_max),
            events_kept_max,
            hasher: TraceHasher::default(),
            events_total: 0,
            stream,
        }
    }

    pub fn record(&mut self, now: Nanos, event: TraceEvent) {
        now.hash(&mut self.hasher);
        event.hash(&mut self.hasher);
        self.events_total += 1;
        if self.stream {
            // A closed pipe (`| head`) ends the stream, not the run.
            let mut out = std::io::stdout().lock();
            if writeln!(out, "{} {}", Time(now), event).is_err() {
                self.stream = false;
            }
        }
        if self.ring.len() == self.events_kept_max {
            self.ring.pop_front();
        }
        self.ring.push_back((now, event));
    }

    /// Whether events are printed as they happen; callers skip building costly events otherwise.
    pub fn is_streaming(&self) -> bool {
        self.stream
    }

    /// A hash of every event recorded so far.
    pub fn hash(&self) -> u64 {
        self.hasher.finish()
    }

    pub fn events_total(&self) -> u64 {
        self.events_total
    }

    /// The last `count` events, oldest first.
    pub fn last(&self, count: usize) -> impl Iterator<Item = &(Nanos, TraceEvent)> {
        self.ring.iter().skip(self.ring.len().saturating_sub(count))
    }

    /// The last `count` events, one per line.
    pub fn render_last(&self, count: usize) -> String {
        let mut out = String::new();
        for (at, event) in self.last(count) {
            out.push_str(&format!("{} {}\n", Time(*at), event));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(what: &str) -> TraceEvent {
        TraceEvent::Note {
            what: what.to_string(),
        }
    }

    #[test]
    fn ring_keeps_the_last_events_and_hashes_all() {
        let mut trace = Trace::new(3, false);
        for i in 0..10 {
            trace.record(i, note(&format!("e{i}")));
        }
        assert_eq!(trace.events_total(), 10);
        let kept: Vec<String> = trace.last(100).map(|(_, e)| e.to_string()).collect();
        assert_eq!(kept, vec!["e7", "e8", "e9"]);
        assert_eq!(trace.render_last(1), "0.000ms e9\n");
    }

    #[test]
    fn same_events_same_hash_different_events_different_hash() {
        let run = |last: &str| {
            let mut trace = Trace::new(2, false);
            trace.record(1, note("a"));
            trace.record(2, note(last));
            trace.hash()
        };
        assert_eq!(run("b"), run("b"));
        assert_ne!(run("b"), run("c"));
    }

    #[test]
    fn message_display() {
        let summary = MessageSummary {
            term: 3,
            body: BodySummary::Append {
                prev_index: 4,
                prev_term: 2,
                entries: 3,
                commit: 5,
            },
        };
        let event = TraceEvent::Deliver {
            from: 2,
            to: 3,
            message: summary,
        };
        assert_eq!(
            event.to_string(),
            "n2 → n3 Append(t3, prev=i4/t2, 3 entries, commit=i5)"
        );
        let role = TraceEvent::Role {
            node: 1,
            role: RoleName::Leader,
            term: 3,
            leader: Some(1),
        };
        assert_eq!(role.to_string(), "n1 became Leader t3");
    }
}
