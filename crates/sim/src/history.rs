//! The client history a simulation records, and its JSON Lines form (docs/history.md).

use serde::{Deserialize, Serialize};

/// A simulated nanosecond timestamp.
pub type Nanos = u64;

/// What an operation asked for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Call {
    Put {
        key: String,
        value: String,
    },
    Get {
        key: String,
    },
    /// Compare-and-swap: set `value` if the current value equals `expect` (`None`: key absent).
    Cas {
        key: String,
        expect: Option<String>,
        value: String,
    },
    Delete {
        key: String,
    },
}

impl Call {
    pub fn key(&self) -> &str {
        match self {
            Call::Put { key, .. }
            | Call::Get { key }
            | Call::Cas { key, .. }
            | Call::Delete { key } => key,
        }
    }
}

/// What the client learned. `Unknown` means it never heard back (timeout, crash of the node it
/// asked): the operation may or may not have taken effect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A put or delete that was acknowledged.
    Ok,
    /// A get's answer: the value read, or `None` when the key was absent.
    Read(Option<String>),
    /// A cas's answer: whether it swapped.
    Cas(bool),
    /// The client knows for certain the operation did not take effect (refused before proposal).
    Failed,
    Unknown,
}

/// One client operation with its invocation and response times.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    pub client: u64,
    pub call_time: Nanos,
    /// `None` when the outcome is unknown.
    pub return_time: Option<Nanos>,
    pub call: Call,
    pub outcome: Outcome,
}

/// A whole run's operations, in invocation order.
#[derive(Clone, Debug, Default)]
pub struct History {
    pub operations: Vec<Operation>,
}

impl Operation {
    /// Checks the invariants of a recorded operation; the linearizability checker and the JSON
    /// writer call it on every operation they are given, so a recorder bug surfaces as a clear
    /// message rather than as a bogus verdict. Returns what is wrong.
    ///
    /// # Invariants
    /// - `return_time` is `None` exactly when `outcome` is [`Outcome::Unknown`];
    /// - `return_time`, when known, is not before `call_time`;
    /// - the outcome answers the call: [`Outcome::Ok`] a put or a delete, [`Outcome::Read`] a get,
    ///   [`Outcome::Cas`] a cas ([`Outcome::Failed`] and [`Outcome::Unknown`] fit every call).
    pub fn check_invariants(&self) -> Result<(), &'static str> {
        match (self.return_time, &self.outcome) {
            (None, Outcome::Unknown) => {}
            (None, _) => {
                return Err("an operation without a return time must have outcome Unknown")
            }
            (Some(_), Outcome::Unknown) => {
                return Err("an operation with outcome Unknown must have no return time")
            }
            (Some(return_time), _) if return_time < self.call_time => {
                return Err("the return time is before the call time")
            }
            (Some(_), _) => {}
        }
        match (&self.call, &self.outcome) {
            (_, Outcome::Failed | Outcome::Unknown)
            | (Call::Put { .. } | Call::Delete { .. }, Outcome::Ok)
            | (Call::Get { .. }, Outcome::Read(_))
            | (Call::Cas { .. }, Outcome::Cas(_)) => Ok(()),
            (Call::Put { .. } | Call::Delete { .. }, _) => {
                Err("a put or delete can only return Ok, Failed or Unknown")
            }
            (Call::Get { .. }, _) => Err("a get can only return Read, Failed or Unknown"),
            (Call::Cas { .. }, _) => Err("a cas can only return Cas, Failed or Unknown"),
        }
    }
}
