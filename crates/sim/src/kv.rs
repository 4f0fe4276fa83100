//! The clients' operations on the key-value workload: put, compare-and-swap, delete (and get,
//! a read, in `workload::Request`). The replicas carry them out on the MVCC store, as the
//! commands `node::to_replica_command` maps them to; the linearizability checker models them as
//! a map from key to value.

/// A mutating operation, as a client asks for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Put {
        key: String,
        value: String,
    },
    Delete {
        key: String,
    },
    /// Set `value` if the current value is `expect` (`None`: the key is absent).
    Cas {
        key: String,
        expect: Option<String>,
        value: String,
    },
    /// A put to the client's own counter key that asks for the previous version (etcd's
    /// `prev_kv`): the key's version counts the puts applied to it, so the answer says how many
    /// of the client's counter puts were applied before this one — a put applied twice shows.
    Count {
        key: String,
        value: String,
    },
}

/// What applying a command returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandResult {
    Done,
    Cas {
        swapped: bool,
    },
    /// A put that returned the previous version of its key (0: the key was absent).
    Counted {
        prev_version: i64,
    },
}

impl Command {
    pub fn key(&self) -> &str {
        match self {
            Command::Put { key, .. }
            | Command::Delete { key }
            | Command::Cas { key, .. }
            | Command::Count { key, .. } => key,
        }
    }
}
