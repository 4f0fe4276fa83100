//! Clients: they pick operations, send them to the replica they think leads, and record every
//! operation, with its invocation and response times, into the history.
//!
//! A client has one operation in flight. Without sessions ([`ClientMode::Plain`]): a refusal
//! (not the leader, no leader known) is recorded as `Failed` — the operation provably never
//! entered the log — and the next operation goes to the hinted leader; a timeout, or an answer
//! saying the entry was replaced, is recorded as `Unknown`, and a retry is a new operation.
//!
//! With sessions ([`ClientMode::Sessions`]), a client first opens a session (retrying until it
//! has one; openings are not operations of the history), then sends every write as
//! (session, sequence, acknowledged): after a refusal, a timeout or an unknown answer it sends
//! the SAME (session, sequence) again, to the next replica, until it gets an answer; the
//! operation is recorded once, from its first call to that answer. Only a session refusal (the
//! session expired meanwhile) leaves it `Unknown`; the client then opens a new session. A
//! fraction of the writes are counter puts ([`Command::Count`]) on the client's own key, whose
//! answers must show every earlier counter put applied exactly once (the `exactly-once`
//! checker, [`Client::take_exactly_once_violation`]).

use crate::history::{Call, History, Operation, Outcome};
use crate::kv::{Command, CommandResult};
use crate::prng::Prng;
use crate::time::{Nanos, MILLISECOND, SECOND};
use std::collections::BTreeMap;

/// What a client asks a replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Write(Command),
    Read {
        key: String,
    },
    /// Open a client session (`Command::SessionOpen`).
    OpenSession,
    /// A write within a session (`Command::Sessioned`).
    SessionWrite {
        session: u64,
        sequence: u64,
        acknowledged: u64,
        command: Command,
    },
}

/// How clients send their writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClientMode {
    /// Each write once; a retry is a new operation (the history may hold `Unknown`s).
    #[default]
    Plain,
    /// Writes in a session, retried with the same sequence until answered (exactly once).
    Sessions,
    /// Deliberately broken: as `Sessions`, but every retry carries a new sequence, so the
    /// replica cannot recognize it — what a receiver without deduplication does. The checkers
    /// must catch the writes it applies twice.
    SessionsBrokenDedup,
}

impl ClientMode {
    pub fn uses_sessions(self) -> bool {
        self != ClientMode::Plain
    }
}

/// The percentage of session-mode writes (of the puts' share) that are counter puts.
const COUNT_PERCENT: u32 = 40;

/// What a replica answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// The write's entry was committed at (index, term) and applied with this result.
    Written {
        result: CommandResult,
        index: u64,
        term: u64,
    },
    Read {
        value: Option<String>,
    },
    /// Refused before proposing; `hint` is the leader the replica knows, if any.
    NotLeader {
        hint: Option<u64>,
    },
    /// The read could not be confirmed (leadership lost, no leader known).
    ReadFailed {
        hint: Option<u64>,
    },
    /// The replica has too many requests waiting; nothing was proposed.
    Busy,
    /// A session was opened with this id.
    SessionOpened {
        id: u64,
    },
    /// The session table refused the command (the session expired or was never opened).
    SessionRefused(chorus_replica::SessionError),
    /// The write was proposed but a different entry took its place in the log (or the replica
    /// lost track of it): it may or may not take effect.
    Unknown,
}

/// The shape of the workload.
#[derive(Clone, Debug)]
pub struct WorkloadConfig {
    pub clients: usize,
    /// Keys are `k0 .. k{keys-1}`: few, so operations conflict.
    pub keys: usize,
    /// After each answer a client waits `0..=think_time_max_ns` before its next operation.
    pub think_time_max_ns: Nanos,
    /// A client gives up on an operation (recording `Unknown`) after this long.
    pub request_timeout_ns: Nanos,
    /// Operation mix, in percent; the rest are deletes.
    pub put_percent: u32,
    pub get_percent: u32,
    pub cas_percent: u32,
    /// Whether writes go through client sessions.
    pub mode: ClientMode,
}

impl WorkloadConfig {
    /// Clients paced so that all of them together issue about `operations` in `duration_ns`.
    pub fn paced(clients: usize, keys: usize, operations: u64, duration_ns: Nanos) -> Self {
        assert!(clients >= 1 && keys >= 1 && operations >= 1);
        let per_client_ns = duration_ns / (operations / clients as u64).max(1);
        WorkloadConfig {
            clients,
            keys,
            think_time_max_ns: 2 * per_client_ns.saturating_sub(5 * MILLISECOND),
            request_timeout_ns: SECOND,
            put_percent: 35,
            get_percent: 35,
            cas_percent: 20,
            mode: ClientMode::Plain,
        }
    }
}

/// The operation a client is waiting on.
#[derive(Clone, Copy, Debug)]
struct Inflight {
    request: u64,
    node: u64,
    /// Position of the operation in the history; `None` for a session's opening.
    operation: Option<usize>,
}

/// A write of a session not answered yet: sent again, as it is, until it is.
#[derive(Clone, Debug)]
struct PendingWrite {
    command: Command,
    sequence: u64,
    operation: usize,
}

/// What a client wants sent.
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub node: u64,
    pub request_id: u64,
    pub request: Request,
}

/// A write acknowledged to a client: which entry carried it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Acknowledged {
    pub index: u64,
    pub term: u64,
}

pub struct Client {
    pub id: u64,
    nodes: u64,
    /// The replica the next operation goes to.
    target: u64,
    inflight: Option<Inflight>,
    next_request: u64,
    next_value: u64,
    /// The last value this client saw per key, for compare-and-swap expectations.
    last_seen: BTreeMap<usize, Option<String>>,
    prng: Prng,
    /// The open session, if any, with its next sequence and the highest sequence answered.
    session: Option<u64>,
    next_sequence: u64,
    acknowledged: u64,
    pending: Option<PendingWrite>,
    /// Counter puts answered, and those left unknown (their session expired): the counter key's
    /// version before the next counter put is in `counted..=counted + counted_maybe`.
    counted: i64,
    counted_maybe: i64,
    exactly_once_violation: Option<String>,
}

impl Client {
    pub fn new(id: u64, nodes: u64, mut prng: Prng) -> Client {
        let target = prng.range_inclusive(1, nodes);
        Client {
            id,
            nodes,
            target,
            inflight: None,
            next_request: 1,
            next_value: 1,
            last_seen: BTreeMap::new(),
            prng,
            session: None,
            next_sequence: 1,
            acknowledged: 0,
            pending: None,
            counted: 0,
            counted_maybe: 0,
            exactly_once_violation: None,
        }
    }

    /// A counter put's answer that contradicts exactly-once application, once.
    pub fn take_exactly_once_violation(&mut self) -> Option<String> {
        self.exactly_once_violation.take()
    }

    /// The client's own counter key: only it writes there.
    fn counter_key(&self) -> String {
        format!("count{}", self.id)
    }

    /// Sends what a session-mode client must send before a new operation: the opening of a
    /// session, or the write still unanswered. `None` when it may start a new operation.
    fn session_step(&mut self, config: &WorkloadConfig) -> Option<Outgoing> {
        if !config.mode.uses_sessions() {
            return None;
        }
        let Some(session) = self.session else {
            return Some(self.send(Request::OpenSession, None));
        };
        let mut pending = self.pending.clone()?;
        if config.mode == ClientMode::SessionsBrokenDedup {
            pending.sequence = self.next_sequence;
            self.next_sequence += 1;
            self.pending = Some(pending.clone());
        }
        let request = Request::SessionWrite {
            session,
            sequence: pending.sequence,
            acknowledged: self.acknowledged,
            command: pending.command,
        };
        Some(self.send(request, Some(pending.operation)))
    }

    fn send(&mut self, request: Request, operation: Option<usize>) -> Outgoing {
        let request_id = self.next_request;
        self.next_request += 1;
        self.inflight = Some(Inflight {
            request: request_id,
            node: self.target,
            operation,
        });
        Outgoing {
            node: self.target,
            request_id,
            request,
        }
    }

    pub fn is_waiting(&self) -> bool {
        self.inflight.is_some()
    }

    pub fn think_time(&mut self, config: &WorkloadConfig) -> Nanos {
        self.prng.range_inclusive(0, config.think_time_max_ns)
    }

    /// Starts a new operation: records its invocation and says what to send where.
    pub fn start(
        &mut self,
        now: Nanos,
        config: &WorkloadConfig,
        history: &mut History,
    ) -> Outgoing {
        assert!(
            self.inflight.is_none(),
            "client c{} already has an operation in flight",
            self.id
        );
        if let Some(outgoing) = self.session_step(config) {
            return outgoing;
        }
        let key_number = self.prng.below(config.keys as u64) as usize;
        let key = format!("k{key_number}");
        let roll = self.prng.below(100) as u32;
        let counter = config.mode.uses_sessions()
            && roll < config.put_percent
            && self.prng.below(100) < u64::from(COUNT_PERCENT);
        let (call, request) = if counter {
            let (key, value) = (self.counter_key(), self.fresh_value());
            let command = Command::Count {
                key: key.clone(),
                value: value.clone(),
            };
            (Call::Put { key, value }, Request::Write(command))
        } else if roll < config.put_percent {
            let value = self.fresh_value();
            let command = Command::Put {
                key: key.clone(),
                value: value.clone(),
            };
            (Call::Put { key, value }, Request::Write(command))
        } else if roll < config.put_percent + config.get_percent {
            (Call::Get { key: key.clone() }, Request::Read { key })
        } else if roll < config.put_percent + config.get_percent + config.cas_percent {
            let value = self.fresh_value();
            let expect = if self.prng.chance_percent(75) {
                self.last_seen.get(&key_number).cloned().flatten()
            } else {
                None
            };
            let command = Command::Cas {
                key: key.clone(),
                expect: expect.clone(),
                value: value.clone(),
            };
            (Call::Cas { key, expect, value }, Request::Write(command))
        } else {
            (
                Call::Delete { key: key.clone() },
                Request::Write(Command::Delete { key }),
            )
        };
        history.operations.push(Operation {
            client: self.id,
            call_time: now,
            return_time: None,
            call,
            outcome: Outcome::Unknown,
        });
        let operation = history.operations.len() - 1;
        let request = match (request, self.session) {
            (Request::Write(command), Some(session)) if config.mode.uses_sessions() => {
                let sequence = self.next_sequence;
                self.next_sequence += 1;
                self.pending = Some(PendingWrite {
                    command: command.clone(),
                    sequence,
                    operation,
                });
                Request::SessionWrite {
                    session,
                    sequence,
                    acknowledged: self.acknowledged,
                    command,
                }
            }
            (request, _) => request,
        };
        self.send(request, Some(operation))
    }

    fn fresh_value(&mut self) -> String {
        let value = format!("c{}-{}", self.id, self.next_value);
        self.next_value += 1;
        value
    }

    /// Handles an answer. Returns `None` when it is for no operation in flight (late or
    /// duplicated), else the acknowledged write if the answer was one.
    pub fn on_response(
        &mut self,
        now: Nanos,
        request_id: u64,
        response: &Response,
        history: &mut History,
    ) -> Option<Option<Acknowledged>> {
        let inflight = self
            .inflight
            .filter(|inflight| inflight.request == request_id)?;
        self.inflight = None;
        let Some(position) = inflight.operation else {
            self.on_session_opened(inflight.node, response);
            return Some(None);
        };
        if self.pending.is_some() {
            match response {
                Response::NotLeader { hint } => {
                    self.retarget(inflight.node, *hint);
                    return Some(None);
                }
                Response::Busy | Response::Unknown => {
                    self.retarget(inflight.node, None);
                    return Some(None);
                }
                Response::SessionRefused(_) => {
                    // The session ended (expired): an earlier attempt may have been applied.
                    if let Some(pending) = self.pending.take() {
                        if matches!(pending.command, Command::Count { .. }) {
                            self.counted_maybe += 1;
                        }
                    }
                    self.session = None;
                    return Some(None);
                }
                Response::Written { .. } => {
                    if let Some(pending) = self.pending.take() {
                        self.acknowledged = pending.sequence;
                    }
                }
                Response::Read { .. }
                | Response::ReadFailed { .. }
                | Response::SessionOpened { .. } => {
                    panic!("answer {response:?} to a session write")
                }
            }
        }
        let operation = &mut history.operations[position];
        let key_number = key_number(operation.call.key());
        let mut acknowledged = None;
        let outcome = match response {
            Response::Written {
                result,
                index,
                term,
            } => {
                acknowledged = Some(Acknowledged {
                    index: *index,
                    term: *term,
                });
                self.target = inflight.node;
                match (result, &operation.call) {
                    (CommandResult::Cas { swapped }, Call::Cas { value, .. }) => {
                        if *swapped {
                            self.last_seen.insert(key_number, Some(value.clone()));
                        }
                        Outcome::Cas(*swapped)
                    }
                    (CommandResult::Done, Call::Put { key, .. })
                    | (CommandResult::Counted { .. }, Call::Put { key, .. })
                        if *key == self.counter_key() =>
                    {
                        let prev_version = match result {
                            CommandResult::Counted { prev_version } => *prev_version,
                            _ => 0,
                        };
                        let (low, high) = (self.counted, self.counted + self.counted_maybe);
                        if !(low..=high).contains(&prev_version) {
                            self.exactly_once_violation = Some(format!(
                                "client c{}: counter put on {} found version {prev_version} before it, but \
                                 {low} counter puts were answered and {} may have been applied: \
                                 expected {low}..={high}",
                                self.id, operation.call.key(), self.counted_maybe
                            ));
                        }
                        // What the unknown ones did is now known: counted again from here.
                        self.counted = prev_version + 1;
                        self.counted_maybe = 0;
                        Outcome::Ok
                    }
                    (CommandResult::Done, Call::Put { value, .. }) => {
                        self.last_seen.insert(key_number, Some(value.clone()));
                        Outcome::Ok
                    }
                    (CommandResult::Done, Call::Delete { .. }) => {
                        self.last_seen.insert(key_number, None);
                        Outcome::Ok
                    }
                    (result, call) => panic!("answer {result:?} does not fit call {call:?}"),
                }
            }
            Response::Read { value } => {
                assert!(
                    matches!(operation.call, Call::Get { .. }),
                    "read answer to a write"
                );
                self.target = inflight.node;
                self.last_seen.insert(key_number, value.clone());
                Outcome::Read(value.clone())
            }
            Response::NotLeader { hint } | Response::ReadFailed { hint } => {
                self.retarget(inflight.node, *hint);
                Outcome::Failed
            }
            Response::Busy => {
                self.retarget(inflight.node, None);
                Outcome::Failed
            }
            Response::Unknown => {
                self.retarget(inflight.node, None);
                Outcome::Unknown
            }
            Response::SessionOpened { .. } | Response::SessionRefused(_) => {
                panic!("session answer {response:?} to an operation outside a session")
            }
        };
        if outcome != Outcome::Unknown {
            operation.return_time = Some(now);
        }
        operation.outcome = outcome;
        Some(acknowledged)
    }

    /// A session's opening was answered: the session to use, or (any refusal) try again.
    fn on_session_opened(&mut self, node: u64, response: &Response) {
        match response {
            Response::SessionOpened { id } => {
                self.target = node;
                self.session = Some(*id);
                self.next_sequence = 1;
                self.acknowledged = 0;
            }
            Response::NotLeader { hint } => self.retarget(node, *hint),
            _ => self.retarget(node, None),
        }
    }

    /// The operation timed out if it is still in flight: its outcome stays unknown (with a
    /// session, the write is sent again on the next start).
    pub fn on_timeout(&mut self, request_id: u64) -> bool {
        match self.inflight {
            Some(inflight) if inflight.request == request_id => {
                self.inflight = None;
                self.retarget(inflight.node, None);
                true
            }
            _ => false,
        }
    }

    /// Chooses the next replica: the hint if there is one (and it is not the one that just
    /// failed), else another replica at random.
    fn retarget(&mut self, failed: u64, hint: Option<u64>) {
        self.target = match hint {
            Some(hint) if hint != failed && (1..=self.nodes).contains(&hint) => hint,
            _ if self.nodes > 1 => {
                let other = self.prng.range_inclusive(1, self.nodes - 1);
                if other >= failed {
                    other + 1
                } else {
                    other
                }
            }
            _ => failed,
        };
    }
}

fn key_number(key: &str) -> usize {
    key.strip_prefix('k')
        .and_then(|n| n.parse().ok())
        .unwrap_or(usize::MAX)
}

/// A short readable form of a request, for the trace.
pub fn describe_request(request: &Request) -> String {
    match request {
        Request::Write(Command::Put { key, value }) => format!("put {key}={value}"),
        Request::Write(Command::Delete { key }) => format!("delete {key}"),
        Request::Write(Command::Cas {
            key,
            expect: Some(expect),
            value,
        }) => {
            format!("cas {key} {expect}→{value}")
        }
        Request::Write(Command::Cas {
            key,
            expect: None,
            value,
        }) => {
            format!("cas {key} absent→{value}")
        }
        Request::Read { key } => format!("get {key}"),
        Request::Write(Command::Count { key, value }) => format!("count {key}={value}"),
        Request::OpenSession => "open session".to_string(),
        Request::SessionWrite {
            session,
            sequence,
            acknowledged,
            command,
        } => format!(
            "s{session}#{sequence} (ack {acknowledged}) {}",
            describe_request(&Request::Write(command.clone()))
        ),
    }
}

/// A short readable form of a response, for the trace.
pub fn describe_response(response: &Response) -> String {
    match response {
        Response::Written {
            result: CommandResult::Done,
            index,
            term,
        } => {
            format!("ok (i{index}/t{term})")
        }
        Response::Written {
            result: CommandResult::Cas { swapped },
            index,
            term,
        } => {
            format!(
                "cas {} (i{index}/t{term})",
                if *swapped { "swapped" } else { "not swapped" }
            )
        }
        Response::Read { value: Some(value) } => format!("read {value}"),
        Response::Read { value: None } => "read absent".to_string(),
        Response::NotLeader { hint: Some(hint) } => format!("not leader (try n{hint})"),
        Response::NotLeader { hint: None } => "not leader (no leader known)".to_string(),
        Response::ReadFailed { hint: Some(hint) } => format!("read failed (try n{hint})"),
        Response::ReadFailed { hint: None } => "read failed".to_string(),
        Response::Busy => "busy".to_string(),
        Response::Unknown => "unknown (entry replaced)".to_string(),
        Response::Written {
            result: CommandResult::Counted { prev_version },
            index,
            term,
        } => format!("counted after version {prev_version} (i{index}/t{term})"),
        Response::SessionOpened { id } => format!("session s{id} opened"),
        Response::SessionRefused(error) => format!("session refused: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> WorkloadConfig {
        WorkloadConfig::paced(4, 3, 1000, 30 * SECOND)
    }

    #[test]
    fn pacing_gives_about_the_requested_rate() {
        let config = config();
        // 4 clients, 250 operations each in 30 s: 120 ms per operation, mean think ~ 115 ms.
        assert!(config.think_time_max_ns > 200 * MILLISECOND);
        assert!(config.think_time_max_ns < 260 * MILLISECOND);
    }

    #[test]
    fn operations_are_recorded_and_answered() {
        let config = config();
        let mut history = History::default();
        let mut client = Client::new(1, 3, Prng::new(1));
        let mut puts = 0;
        for step in 0..200u64 {
            let outgoing = client.start(step * 10, &config, &mut history);
            let response = match &outgoing.request {
                Request::Write(Command::Cas { .. }) => Response::Written {
                    result: CommandResult::Cas { swapped: false },
                    index: step,
                    term: 1,
                },
                Request::Write(Command::Put { .. }) => {
                    puts += 1;
                    Response::Written {
                        result: CommandResult::Done,
                        index: step,
                        term: 1,
                    }
                }
                Request::Write(Command::Delete { .. }) => Response::Written {
                    result: CommandResult::Done,
                    index: step,
                    term: 1,
                },
                Request::Read { .. } => Response::Read { value: None },
                other => panic!("a plain client sent {other:?}"),
            };
            // A stale answer is ignored.
            assert!(client
                .on_response(step * 10 + 1, 999, &response, &mut history)
                .is_none());
            assert!(client
                .on_response(step * 10 + 5, outgoing.request_id, &response, &mut history)
                .is_some());
            assert!(!client.is_waiting());
        }
        assert_eq!(history.operations.len(), 200);
        assert!(puts > 40);
        assert!(history.operations.iter().all(|op| op.return_time.is_some()));
        // Put values are unique.
        let mut values: Vec<&String> = history
            .operations
            .iter()
            .filter_map(|op| match &op.call {
                Call::Put { value, .. } => Some(value),
                _ => None,
            })
            .collect();
        let count = values.len();
        values.sort();
        values.dedup();
        assert_eq!(values.len(), count);
    }

    #[test]
    fn refusal_is_failed_and_follows_the_hint() {
        let config = config();
        let mut history = History::default();
        let mut client = Client::new(1, 5, Prng::new(2));
        let first = client.start(0, &config, &mut history);
        client.on_response(
            3,
            first.request_id,
            &Response::NotLeader { hint: Some(4) },
            &mut history,
        );
        assert_eq!(history.operations[0].outcome, Outcome::Failed);
        assert_eq!(history.operations[0].return_time, Some(3));
        let second = client.start(10, &config, &mut history);
        assert_eq!(second.node, if first.node == 4 { second.node } else { 4 });
    }

    #[test]
    fn timeout_leaves_the_outcome_unknown_and_moves_on() {
        let config = config();
        let mut history = History::default();
        let mut client = Client::new(1, 3, Prng::new(3));
        let first = client.start(0, &config, &mut history);
        assert!(!client.on_timeout(first.request_id + 1));
        assert!(client.on_timeout(first.request_id));
        assert_eq!(history.operations[0].outcome, Outcome::Unknown);
        assert_eq!(history.operations[0].return_time, None);
        let second = client.start(10, &config, &mut history);
        assert_ne!(second.node, first.node);
        // The late answer to the first operation changes nothing.
        let late = Response::Read { value: None };
        assert!(client
            .on_response(20, first.request_id, &late, &mut history)
            .is_none());
    }

    #[test]
    fn a_session_write_is_retried_with_its_sequence_and_recorded_once() {
        let config = WorkloadConfig {
            mode: ClientMode::Sessions,
            put_percent: 100,
            ..config()
        };
        let mut history = History::default();
        let mut client = Client::new(1, 3, Prng::new(4));
        let open = client.start(0, &config, &mut history);
        assert_eq!(open.request, Request::OpenSession);
        assert!(history.operations.is_empty(), "an opening is no operation");
        client.on_response(
            1,
            open.request_id,
            &Response::SessionOpened { id: 9 },
            &mut history,
        );
        let first = client.start(2, &config, &mut history);
        let Request::SessionWrite {
            session: 9,
            sequence: 1,
            acknowledged: 0,
            ..
        } = &first.request
        else {
            panic!("{first:?}")
        };
        // A timeout, then a refusal: the same (session, sequence) goes again, no new operation.
        assert!(client.on_timeout(first.request_id));
        let second = client.start(3, &config, &mut history);
        assert_eq!(second.request, first.request);
        client.on_response(
            4,
            second.request_id,
            &Response::NotLeader { hint: None },
            &mut history,
        );
        let third = client.start(5, &config, &mut history);
        assert_eq!(third.request, first.request);
        assert_eq!(history.operations.len(), 1);
        assert_eq!(history.operations[0].outcome, Outcome::Unknown);
        let written = Response::Written {
            result: CommandResult::Done,
            index: 7,
            term: 2,
        };
        client.on_response(6, third.request_id, &written, &mut history);
        assert_eq!(history.operations[0].outcome, Outcome::Ok);
        assert_eq!(history.operations[0].call_time, 2);
        assert_eq!(history.operations[0].return_time, Some(6));
        // The next write acknowledges the first.
        let next = client.start(7, &config, &mut history);
        assert!(matches!(
            next.request,
            Request::SessionWrite {
                sequence: 2,
                acknowledged: 1,
                ..
            }
        ));
        assert!(client.take_exactly_once_violation().is_none());
    }
}
