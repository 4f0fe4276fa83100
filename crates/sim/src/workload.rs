//! Clients: they pick operations, send them to the replica they think leads, and record every
//! operation, with its invocation and response times, into the history.
//!
//! A client has one operation in flight. A refusal (not the leader, no leader known) is recorded
//! as `Failed` — the operation provably never entered the log — and the next operation goes to
//! the hinted leader. A timeout, or an answer saying the entry was replaced, is recorded as
//! `Unknown`. A retry is always a new operation.

use crate::history::{Call, History, Operation, Outcome};
use crate::kv::{Command, CommandResult};
use crate::prng::Prng;
use crate::time::{Nanos, MILLISECOND, SECOND};
use std::collections::BTreeMap;

/// What a client asks a replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Write(Command),
    Read { key: String },
}

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
        }
    }
}

/// The operation a client is waiting on.
#[derive(Clone, Copy, Debug)]
struct Inflight {
    request: u64,
    node: u64,
    /// Position of the operation in the history.
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
        let key_number = self.prng.below(config.keys as u64) as usize;
        let key = format!("k{key_number}");
        let roll = self.prng.below(100) as u32;
        let (call, request) = if roll < config.put_percent {
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
        let request_id = self.next_request;
        self.next_request += 1;
        history.operations.push(Operation {
            client: self.id,
            call_time: now,
            return_time: None,
            call,
            outcome: Outcome::Unknown,
        });
        self.inflight = Some(Inflight {
            request: request_id,
            node: self.target,
            operation: history.operations.len() - 1,
        });
        Outgoing {
            node: self.target,
            request_id,
            request,
        }
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
        let operation = &mut history.operations[inflight.operation];
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
        };
        if outcome != Outcome::Unknown {
            operation.return_time = Some(now);
        }
        operation.outcome = outcome;
        Some(acknowledged)
    }

    /// The operation timed out if it is still in flight: its outcome stays unknown.
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
}
