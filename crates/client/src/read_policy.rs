//! Where reads go: [`ReadPolicy::Linearizable`] (the default: through the current endpoint,
//! confirmed by the leader) or [`ReadPolicy::Follower`]: serializable reads sent to the
//! nearest member ([`crate::nearest`]), stamped with the highest revision this client has
//! seen as the gRPC metadata `chorus-min-revision`. A chorus member serves a stamped read only
//! at that revision or later and only while it is not lagging; otherwise it answers
//! UNAVAILABLE (`chorus: replica ...`) and the read moves to the next nearest member. So a
//! client reads its own writes and never goes back in time, while reads spread over the
//! members instead of all confirming with the leader.
//!
//! An answer whose header revision is below the stamp (a server that ignores the metadata,
//! such as etcd) is treated like a refusal. When every member refused or failed, the read is
//! made linearizable through the usual retry loop, so it still completes.

use crate::error::{classify, is_transport_failure, CallKind, Failure};
use crate::{Client, Error, Get};
use chorus_proto::etcdserverpb as pb;
use chorus_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use std::time::Duration;
use tokio::time::Instant;
use tonic::metadata::MetadataValue;
use tonic::Status;

/// The request metadata a stamped read carries.
pub const MIN_REVISION_METADATA_KEY: &str = "chorus-min-revision";
/// One member may take at most this long to answer a follower read before the next nearest
/// is tried (a member waits up to its `--follower-read-wait`, 200 ms by default, before
/// refusing; a frozen one never answers).
pub const FOLLOWER_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);
/// A probe (Maintenance.Status) of one endpoint takes at most this long.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// How [`Client::get`] reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReadPolicy {
    /// Linearizable reads through the current endpoint (ReadIndex on the member).
    #[default]
    Linearizable,
    /// Serializable reads from the nearest member, stamped with the highest revision seen.
    Follower,
}

/// The revision a stamped read asks for: the highest seen, and at least the revision it reads
/// at (a member below that would answer "future revision").
pub fn stamp_for(seen: i64, requested_revision: i64) -> i64 {
    seen.max(requested_revision).max(0)
}

/// Whether an answer at `header_revision` may be handed out to a client that stamped its
/// read with `stamp`: never one from before what the client has seen.
pub fn answer_is_fresh(header_revision: i64, stamp: i64) -> bool {
    header_revision >= stamp
}

/// Whether a failure is a member refusing a stamped read (behind or lagging): try the next.
pub fn is_refusal(status: &Status) -> bool {
    status.code() == tonic::Code::Unavailable && status.message().starts_with("chorus: replica")
}

/// What one attempt on one member came to.
enum Attempt {
    Answered(pb::RangeResponse),
    /// Refused, behind, failed or too slow: try the next member.
    Next(String),
    /// An answer retrying will not change.
    Final(Error),
}

impl Client {
    /// A follower read, whatever the client's policy ([`ReadPolicy::Follower`]): the nearest
    /// member first, stamped with the highest revision seen; the next nearest after a
    /// refusal; linearizable when every member refused.
    pub async fn follower_get(&self, get: Get) -> Result<pb::RangeResponse, Error> {
        let mut request = get.into_request();
        request.serializable = true;
        let deadline = Instant::now() + self.config().call_timeout;
        self.probe_stale_endpoints(deadline).await;
        let stamp = stamp_for(self.revision(), request.revision);
        let order = self.nearest(|nearest| nearest.order(std::time::Instant::now()));
        let mut failures = Vec::new();
        for index in order {
            if Instant::now() >= deadline {
                break;
            }
            match self
                .follower_attempt(index, &request, stamp, deadline)
                .await
            {
                Attempt::Answered(response) => {
                    self.observe(response.header.as_ref());
                    return Ok(response);
                }
                Attempt::Next(failure) => failures.push(failure),
                Attempt::Final(error) => return Err(error),
            }
        }
        if Instant::now() >= deadline {
            return Err(Error::Unavailable {
                message: format!("follower reads: {}", failures.join("; ")),
            });
        }
        // Every member refused or failed: a linearizable read answers at or after any
        // revision seen, wherever it is served.
        request.serializable = false;
        // Within what is left of this call's budget.
        let linearizable = self.call(CallKind::Read, |channel| {
            let mut kv = self.kv_client(channel);
            let request = request.clone();
            async move { kv.range(request).await }
        });
        let result = match tokio::time::timeout_at(deadline, linearizable).await {
            Ok(result) => result,
            Err(_) => Err(Error::Unavailable {
                message: "no linearizable read either before the deadline".to_string(),
            }),
        };
        result.map_err(|error| match error {
            Error::Unavailable { message } => Error::Unavailable {
                message: format!("{message}; follower reads: {}", failures.join("; ")),
            },
            other => other,
        })
    }

    async fn follower_attempt(
        &self,
        index: usize,
        request: &pb::RangeRequest,
        stamp: i64,
        deadline: Instant,
    ) -> Attempt {
        let name = self.endpoint_name(index).to_string();
        let budget = deadline
            .saturating_duration_since(Instant::now())
            .min(FOLLOWER_ATTEMPT_TIMEOUT);
        let started = Instant::now();
        let channel = match self.channel(index, budget).await {
            Ok(channel) => channel,
            Err(message) => {
                self.nearest(|nearest| nearest.record_failure(index, std::time::Instant::now()));
                return Attempt::Next(format!("{name}: {message}"));
            }
        };
        let budget = budget.saturating_sub(started.elapsed());
        let mut kv = self.kv_client(channel);
        let mut call = tonic::Request::new(request.clone());
        call.metadata_mut()
            .insert(MIN_REVISION_METADATA_KEY, MetadataValue::from(stamp));
        let sent = Instant::now();
        let answer = tokio::time::timeout(budget, kv.range(call)).await;
        let now = std::time::Instant::now();
        match answer {
            Ok(Ok(response)) => {
                let response = response.into_inner();
                self.nearest(|nearest| nearest.record(index, sent.elapsed(), now));
                let revision = response.header.as_ref().map_or(0, |header| header.revision);
                if answer_is_fresh(revision, stamp) {
                    Attempt::Answered(response)
                } else {
                    self.nearest(|nearest| nearest.record_refusal(index, now));
                    Attempt::Next(format!(
                        "{name}: answered at revision {revision}, before the revision seen {stamp}"
                    ))
                }
            }
            Ok(Err(status)) => {
                if is_refusal(&status) {
                    self.nearest(|nearest| nearest.record_refusal(index, now));
                    return Attempt::Next(format!("{name}: {}", status.message()));
                }
                if is_transport_failure(&status) {
                    self.drop_channel(index);
                    self.nearest(|nearest| nearest.record_failure(index, now));
                }
                match classify(&status) {
                    Failure::Final => Attempt::Final(Error::from(status)),
                    Failure::NotApplied | Failure::MaybeApplied => {
                        Attempt::Next(format!("{name}: {}", status.message()))
                    }
                }
            }
            Err(_) => {
                self.nearest(|nearest| nearest.record_failure(index, now));
                Attempt::Next(format!("{name} did not answer within {budget:?}"))
            }
        }
    }

    /// Probes the endpoints not measured lately, in the background; when none has been
    /// measured yet (the first read), waits for the first probe to answer (at most
    /// [`PROBE_TIMEOUT`]), so that even the first read goes to the nearest.
    async fn probe_stale_endpoints(&self, deadline: Instant) {
        let (due, any_measured) = self.nearest(|nearest| {
            let any_measured = nearest.any_measured();
            (
                nearest.start_probes(std::time::Instant::now()),
                any_measured,
            )
        });
        if due.is_empty() {
            return;
        }
        let (answered, mut first) = tokio::sync::mpsc::channel(due.len());
        for index in due {
            let client = self.clone();
            let answered = answered.clone();
            tokio::spawn(async move {
                client.probe(index).await;
                let _ = answered.try_send(());
            });
        }
        drop(answered);
        if !any_measured {
            let wait = deadline.min(Instant::now() + PROBE_TIMEOUT);
            let _ = tokio::time::timeout_at(wait, first.recv()).await;
        }
    }

    /// One Status round trip to endpoint `index`, recorded as a sample.
    async fn probe(&self, index: usize) {
        let started = Instant::now();
        let sample = match self.channel(index, PROBE_TIMEOUT).await {
            Ok(channel) => {
                let budget = PROBE_TIMEOUT.saturating_sub(started.elapsed());
                let mut maintenance = MaintenanceClient::new(channel);
                let sent = Instant::now();
                match tokio::time::timeout(budget, maintenance.status(pb::StatusRequest {})).await {
                    Ok(Ok(response)) => {
                        self.observe(response.get_ref().header.as_ref());
                        Some(sent.elapsed())
                    }
                    Ok(Err(status)) => {
                        if is_transport_failure(&status) {
                            self.drop_channel(index);
                        }
                        None
                    }
                    Err(_) => None,
                }
            }
            Err(_) => None,
        };
        let now = std::time::Instant::now();
        self.nearest(|nearest| {
            match sample {
                Some(sample) => nearest.record(index, sample, now),
                None => nearest.record_failure(index, now),
            }
            nearest.probe_finished(index);
        });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn the_stamp_is_the_highest_revision_seen_or_read_at() {
        assert_eq!(stamp_for(0, 0), 0);
        assert_eq!(stamp_for(12, 0), 12);
        assert_eq!(stamp_for(12, 30), 30);
        assert_eq!(stamp_for(12, 5), 12);
        assert_eq!(stamp_for(-3, -1), 0);
    }

    #[test]
    fn an_answer_from_before_what_was_seen_is_never_handed_out() {
        assert!(answer_is_fresh(12, 12));
        assert!(answer_is_fresh(13, 12));
        assert!(!answer_is_fresh(11, 12));
    }

    #[test]
    fn only_a_members_refusal_of_a_stamped_read_moves_to_the_next_member_as_such() {
        assert!(is_refusal(&Status::unavailable(
            "chorus: replica at revision 5, behind the requested revision 8"
        )));
        assert!(is_refusal(&Status::unavailable(
            "chorus: replica lagging: 1200 entries committed but not applied (at most 1000)"
        )));
        assert!(!is_refusal(&Status::unavailable("etcdserver: no leader")));
        assert!(!is_refusal(&Status::invalid_argument(
            "chorus: replica at revision 5"
        )));
    }

    #[tokio::test]
    async fn a_follower_read_with_nothing_listening_fails_within_its_timeout() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let mut config = crate::ClientConfig::new([format!("127.0.0.1:{port}")]);
        config.call_timeout = Duration::from_millis(300);
        config.read_policy = ReadPolicy::Follower;
        let client = Client::new(config).unwrap();
        let error = client.get(Get::key("k")).await.unwrap_err();
        assert!(matches!(error, Error::Unavailable { .. }), "{error}");
        assert!(error.to_string().contains("follower reads"), "{error}");
    }
}
