//! The client history a simulation records, and its JSON Lines form (docs/history.md).

use serde::{Deserialize, Serialize};

/// A simulated nanosecond timestamp.
pub type Nanos = u64;

/// What an operation asked for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Call {
    Put { key: String, value: String },
    Get { key: String },
    /// Compare-and-swap: set `value` if the current value equals `expect` (`None`: key absent).
    Cas { key: String, expect: Option<String>, value: String },
    Delete { key: String },
}

impl Call {
    pub fn key(&self) -> &str {
        match self {
            Call::Put { key, .. } | Call::Get { key } | Call::Cas { key, .. } | Call::Delete { key } => {
                key
            }
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
