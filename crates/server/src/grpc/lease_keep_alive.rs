//! Lease.LeaseKeepAlive: the bidirectional stream. Each stream gets a task that answers its
//! requests one at a time, in order: on the leader from its lease clock (TTL 0 for a lease that
//! does not exist, as etcd); on a follower by relaying the request over a keep-alive stream of
//! its own to the leader's client URL, opened on the first request and kept while that member
//! leads, so the client sees one stream whatever member it talks to.
//!
//! Memory per stream is bounded: one request is handled at a time (the next is not read until
//! its answer is queued), [`KEEP_ALIVE_RESPONSES_QUEUED_MAX`] answers wait for a slow client,
//! and the relay holds at most one request in flight.

use super::lease_forward::lease_client;
use super::{forwarded_status, ServerState, FORWARDED_METADATA_KEY};
use crate::error::ServerError;
use crate::group::HeaderInfo;
use chorus_proto::etcdserverpb as pb;
use chorus_raft::NodeId;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// Answers queued for the client before the stream task stops reading requests.
pub const KEEP_ALIVE_RESPONSES_QUEUED_MAX: usize = 16;
/// Tries of one keep-alive: a relay to a leader that no longer leads (or died) is dropped and
/// the request asked again, once.
const KEEP_ALIVE_TRIES_MAX: usize = 2;

/// The response stream of one LeaseKeepAlive call.
pub type LeaseKeepAliveStream = std::pin::Pin<
    Box<
        dyn tokio_stream::Stream<Item = Result<pb::LeaseKeepAliveResponse, Status>>
            + Send
            + 'static,
    >,
>;

pub async fn lease_keep_alive(
    state: &ServerState,
    request: Request<Streaming<pb::LeaseKeepAliveRequest>>,
) -> Result<Response<LeaseKeepAliveStream>, Status> {
    let forwarded = request.metadata().contains_key(FORWARDED_METADATA_KEY);
    let requests = request.into_inner();
    let (responses, receiver) = mpsc::channel(KEEP_ALIVE_RESPONSES_QUEUED_MAX);
    tokio::spawn(run_stream(state.clone(), forwarded, requests, responses));
    Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
}

async fn run_stream(
    state: ServerState,
    forwarded: bool,
    mut requests: Streaming<pb::LeaseKeepAliveRequest>,
    responses: mpsc::Sender<Result<pb::LeaseKeepAliveResponse, Status>>,
) {
    let mut relay: Option<Relay> = None;
    loop {
        let request = tokio::select! {
            request = requests.message() => request,
            () = responses.closed() => break,
        };
        let Ok(Some(request)) = request else { break };
        let answer = keep_alive(&state, forwarded, &mut relay, request.id).await;
        let failed = answer.is_err();
        // A failed keep-alive ends the stream with its status; the client opens a new one.
        if responses.send(answer).await.is_err() || failed {
            break;
        }
    }
}

/// One keep-alive, here or through the leader.
async fn keep_alive(
    state: &ServerState,
    forwarded: bool,
    relay: &mut Option<Relay>,
    id: i64,
) -> Result<pb::LeaseKeepAliveResponse, Status> {
    let mut failure = Status::from(ServerError::LeaderChanged);
    for _ in 0..KEEP_ALIVE_TRIES_MAX {
        let leader = match state.group.lease_keep_alive(id).await {
            Ok((ttl, header)) => {
                *relay = None;
                return Ok(response(state, id, ttl, header));
            }
            Err(ServerError::NotLeader {
                leader: Some(leader),
            }) if !forwarded => leader,
            // A forwarded stream reached a member that no longer leads: the relaying member
            // asks again.
            Err(ServerError::NotLeader { leader: Some(_) }) => {
                return Err(ServerError::LeaderChanged.into())
            }
            Err(error) => return Err(error.into()),
        };
        if relay.as_ref().is_some_and(|relay| relay.leader != leader) {
            *relay = None;
        }
        if relay.is_none() {
            match Relay::open(state, leader).await {
                Ok(opened) => *relay = Some(opened),
                Err(status) => {
                    failure = status;
                    continue;
                }
            }
        }
        let Some(open) = relay.as_mut() else { continue };
        match open.keep_alive(id, state.group.request_timeout).await {
            Ok(response) => return Ok(response),
            Err(status) => {
                *relay = None;
                failure = status;
            }
        }
    }
    Err(forwarded_status(failure))
}

fn response(
    state: &ServerState,
    id: i64,
    ttl: i64,
    header: HeaderInfo,
) -> pb::LeaseKeepAliveResponse {
    pb::LeaseKeepAliveResponse {
        header: Some(state.header(header)),
        id,
        ttl,
    }
}

/// A keep-alive stream of this member's own to the leader, marked as forwarded.
struct Relay {
    leader: NodeId,
    requests: mpsc::Sender<pb::LeaseKeepAliveRequest>,
    responses: Streaming<pb::LeaseKeepAliveResponse>,
}

impl Relay {
    async fn open(state: &ServerState, leader: NodeId) -> Result<Relay, Status> {
        let mut client = lease_client(state, leader)?;
        let (requests, receiver) = mpsc::channel(1);
        let mut request = Request::new(ReceiverStream::new(receiver));
        request.metadata_mut().insert(
            FORWARDED_METADATA_KEY,
            tonic::metadata::MetadataValue::from_static("1"),
        );
        let responses = client.lease_keep_alive(request).await?.into_inner();
        Ok(Relay {
            leader,
            requests,
            responses,
        })
    }

    /// Sends one request and waits for its answer (the leader answers in order).
    async fn keep_alive(
        &mut self,
        id: i64,
        timeout: std::time::Duration,
    ) -> Result<pb::LeaseKeepAliveResponse, Status> {
        if self
            .requests
            .send(pb::LeaseKeepAliveRequest { id })
            .await
            .is_err()
        {
            return Err(ServerError::LeaderChanged.into());
        }
        match tokio::time::timeout(timeout, self.responses.message()).await {
            Ok(Ok(Some(response))) => Ok(response),
            Ok(Ok(None)) => Err(ServerError::LeaderChanged.into()),
            Ok(Err(status)) => Err(status),
            Err(_) => Err(ServerError::Timeout.into()),
        }
    }
}
