//! chorus-client: a Rust client for chorus, or any server of the etcd v3 API.
//!
//! What it is: a [`Client`] over a list of endpoints that connects lazily, moves to the next
//! endpoint (with exponential backoff, until a per-call deadline) when a call fails in a way
//! that is safe to retry, and tracks the highest revision it has seen; request builders for
//! [`Get`], [`Put`], [`Delete`], [`Txn`] and [`Watch`]; watches that resume on another member
//! without losing or repeating events; leases with a background [`KeepAlive`]; membership
//! calls; the status of each endpoint; locks and leader elections ([`concurrency`]) compatible
//! with etcd's. Errors are one [`Error`] enum carrying the gRPC code and
//! etcd's message; [`error`] says which failures are retried.
//!
//! Writes go in a client [`session`] when the server offers one (chorus does): a write whose
//! outcome is unknown is sent again and applied once. Against etcd they go without, and such a
//! write is reported as [`Error::OutcomeUnknown`], never retried.
//!
//! What it is not: no TLS or auth; responses are etcd's protobuf messages ([`pb`], [`mvccpb`])
//! as they are.
//!
//! It depends on `chorus-proto` only, never on the server.
//!
//! ```no_run
//! # async fn example() -> Result<(), chorus_client::Error> {
//! use chorus_client::{Client, Compare, CompareOp, Get, Put, Txn, TxnOp};
//! let client = Client::connect(["127.0.0.1:2379", "127.0.0.1:2381", "127.0.0.1:2383"])?;
//! client.put(Put::new("color", "blue")).await?;
//! let swapped = client
//!     .txn(
//!         Txn::new()
//!             .when([Compare::value("color", CompareOp::Equal, "blue")])
//!             .and_then([TxnOp::Put(Put::new("color", "green"))]),
//!     )
//!     .await?;
//! assert!(swapped.succeeded);
//! let colors = client.get(Get::key("color").prefix()).await?;
//! println!("{} keys at revision {}", colors.count, client.revision());
//! # Ok(()) }
//! ```

mod backoff;
mod client;
mod cluster;
pub mod concurrency;
mod config;
mod endpoint;
pub mod error;
mod header;
mod kv;
mod leader;
mod lease;
mod maintenance;
pub mod nearest;
pub mod read_policy;
pub mod session;
mod txn;
mod watch;

pub use chorus_proto::etcdserverpb as pb;
pub use chorus_proto::mvccpb;
pub use client::Client;
pub use config::ClientConfig;
pub use endpoint::{endpoint_uri, split_endpoints};
pub use error::Error;
pub use header::HasHeader;
pub use kv::{prefix_range_end, Delete, Get, KeyRange, Put};
pub use lease::{keep_alive_interval, KeepAlive, LEASE_NOT_FOUND};
pub use maintenance::EndpointStatus;
pub use read_policy::ReadPolicy;
pub use txn::{Compare, CompareOp, Txn, TxnOp};
pub use watch::{Watch, WatchBatch, Watcher};
