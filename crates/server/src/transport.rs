//! The peer transport over TCP: one outbound connection per peer (this node writes, the peer
//! reads), length-prefixed [`chorus_proto::peer::Frame`]s carrying a hello and then batches of
//! raft messages with their group ids.
//!
//! While a connection's task is idle the group thread writes to its socket itself
//! ([`PeerSender::send_all`], `peer_direct.rs`); otherwise messages go through the task's queue.
//!
//! Bounds: each peer's queue holds at most [`PEER_QUEUE_MESSAGES_MAX`] messages; when it is full
//! new messages are dropped (raft retransmits what matters). While a peer is unreachable its
//! queue is drained and dropped, and connecting is retried with a backoff up to
//! [`RECONNECT_BACKOFF_MAX`]. A frame holds at most [`BATCH_BYTES_MAX`] bytes of messages.
//!
//! The exception are proposals a follower forwards to its leader ([`MessageBody::Propose`]):
//! raft never retransmits those, and the write's client would wait for its whole request
//! timeout. Those that surely did not arrive — in a frame whose write failed (the peer drops a
//! partial frame) or drained while the peer was away — are held, up to
//! [`HELD_PROPOSALS_MAX`], and sent first on the next connection (with its hello). A frame
//! written before the connection failed may or may not have arrived; its proposals are not sent
//! again (the leader would drop a repeat of one it appended, docs/server.md, but the transport
//! keeps no record of what it wrote).
//!
//! The set of peers changes at runtime: the group task hands [`PeerSender::set_peers`] the
//! replicated member table after every change (a new member gets a connection, a removed one
//! loses it, a member whose peer URL changed is reconnected). A member that joins knows no
//! peer at first: it accepts the hellos of any member of any cluster until it has a table, and
//! learns from each hello the cluster id and where to answer ([`PeerSender::learn_peer`]).

use crate::config::{host_port, ConfigError};
use crate::group::GroupInput;
use crate::members::{Announced, Members};
use crate::peer_codec::{decode_message, encode_message, read_frame, write_frame};
use crate::peer_direct::{DirectWriter, FrameEncoder, Idle};
use bytes::BytesMut;
use chorus_proto::peer;
use chorus_raft::{Message, MessageBody, NodeId};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Messages queued for one peer before new ones are dropped.
pub const PEER_QUEUE_MESSAGES_MAX: usize = 4096;
/// Bytes of messages gathered into one frame (a single message may exceed it, up to the frame
/// limit).
pub const BATCH_BYTES_MAX: usize = 4 * 1024 * 1024;
/// The first wait before reconnecting, doubled after each failure.
pub const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(50);
/// The longest wait between connection attempts.
pub const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// A write that takes longer than this drops the connection.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Forwarded proposals kept across a reconnect (module docs); newer ones beyond it are dropped.
pub const HELD_PROPOSALS_MAX: usize = 1024;

/// One peer's outbound connection: where it is, the queue its task drains, and the direct path
/// the group thread writes through while the task is idle (`peer_direct.rs`).
#[derive(Debug)]
struct Peer {
    address: String,
    queue: mpsc::Sender<Message>,
    direct: Arc<DirectWriter>,
}

/// Sends raft messages to peers through their queues. Cheap to clone (shared).
#[derive(Clone, Debug)]
pub struct PeerSender {
    members: Members,
    peers: Arc<Mutex<BTreeMap<NodeId, Peer>>>,
    /// The runtime every connection task runs on: the one [`start_outbound`] was called on
    /// (the shared multi-thread one). Not the caller's: [`PeerSender::set_peers`] is called
    /// by the group task, whose thread runs its own single-threaded runtime (node.rs). A
    /// connection started there ran only when the group task yielded, so a leader's appends
    /// waited behind its own fsync instead of travelling during it, and where a connection ran
    /// depended on who had started it (the first or a later membership sync).
    runtime: tokio::runtime::Handle,
}

impl PeerSender {
    fn peers(&self) -> std::sync::MutexGuard<'_, BTreeMap<NodeId, Peer>> {
        match self.peers.lock() {
            Ok(peers) => peers,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Sends `message` to its peer ([`PeerSender::send_all`]).
    pub fn send(&self, message: Message) {
        self.send_all(vec![message]);
    }

    /// Sends `messages`, in order for each peer: written to the peer's connection at once, as one
    /// frame per peer, when its task is idle (`peer_direct.rs`), queued for the task otherwise.
    /// Messages to an unknown peer, or beyond a full queue, are dropped. Never blocks.
    pub fn send_all(&self, messages: Vec<Message>) {
        if messages.is_empty() {
            return;
        }
        let mut by_peer: Vec<(NodeId, Vec<Message>)> = Vec::new();
        for message in messages {
            match by_peer.iter_mut().find(|(to, _)| *to == message.to) {
                Some((_, batch)) => batch.push(message),
                None => by_peer.push((message.to, vec![message])),
            }
        }
        let peers = self.peers();
        for (to, batch) in by_peer {
            let Some(peer) = peers.get(&to) else {
                continue;
            };
            peer.direct.send(to, batch, &peer.queue);
        }
    }

    /// Makes the peers `peers` (id, peer URL) and those of `keep` that have a connection:
    /// starts a connection to each new one (or to a new URL), drops the others' (their tasks
    /// end when their queue closes). May be called from any thread or runtime. A URL that is not
    /// `http://host:port` is skipped with a warning.
    pub fn set_peers(&self, peers: &[(NodeId, String)], keep: &[NodeId]) {
        let mut current = self.peers();
        current.retain(|id, peer| {
            keep.contains(id)
                || peers.iter().any(|(other, url)| {
                    other == id && host_port(url).is_ok_and(|address| address == peer.address)
                })
        });
        for (id, url) in peers {
            let moved = current
                .get(id)
                .is_some_and(|peer| host_port(url).is_ok_and(|address| address != peer.address));
            if moved {
                current.remove(id);
            }
        }
        for (id, url) in peers {
            if *id == self.members.local_id || current.contains_key(id) {
                continue;
            }
            match host_port(url) {
                Ok(address) => {
                    current.insert(*id, self.start(*id, address));
                }
                Err(error) => tracing::warn!("peer {id}: {error}"),
            }
        }
        let ids: Vec<u64> = current.keys().map(|id| id.0).collect();
        crate::metrics::metrics().retain_peers(&ids);
    }

    /// Whether the group thread writes to `peer`'s connection directly now (tests).
    #[cfg(test)]
    fn writes_directly_to(&self, peer: NodeId) -> bool {
        self.peers()
            .get(&peer)
            .is_some_and(|peer| peer.direct.is_installed())
    }

    /// Adds a peer that said hello from `url`, if it has no connection yet (a joining member
    /// learns where the leader is this way).
    pub fn learn_peer(&self, id: NodeId, url: &str) {
        let mut current = self.peers();
        if id == self.members.local_id || current.contains_key(&id) {
            return;
        }
        if let Ok(address) = host_port(url) {
            current.insert(id, self.start(id, address));
        }
    }

    fn start(&self, id: NodeId, address: String) -> Peer {
        let (queue, receiver) = mpsc::channel(PEER_QUEUE_MESSAGES_MAX);
        let direct = Arc::new(DirectWriter::default());
        self.runtime.spawn(run_outbound(
            id,
            address.clone(),
            self.members.clone(),
            receiver,
            direct.clone(),
        ));
        Peer {
            address,
            queue,
            direct,
        }
    }
}

/// Starts one outbound connection task per member of the table but this one; returns the
/// sender that feeds them. Call it on the runtime the connections are to run on.
pub fn start_outbound(members: &Members) -> Result<PeerSender, ConfigError> {
    let sender = PeerSender {
        members: members.clone(),
        peers: Arc::new(Mutex::new(BTreeMap::new())),
        runtime: tokio::runtime::Handle::current(),
    };
    let mut peers = Vec::new();
    for member in members.list() {
        let Some(url) = member.peer_urls.first() else {
            continue;
        };
        host_port(url)?;
        peers.push((member.id, url.clone()));
    }
    sender.set_peers(&peers, &[]);
    Ok(sender)
}

async fn run_outbound(
    id: NodeId,
    address: String,
    members: Members,
    mut queue: mpsc::Receiver<Message>,
    direct: Arc<DirectWriter>,
) {
    let mut backoff = RECONNECT_BACKOFF_MIN;
    let mut held = HeldProposals::default();
    loop {
        // Built at each connection: a joining member learns its cluster id on the way.
        let hello = members.hello();
        match TcpStream::connect(&address).await {
            Ok(stream) => {
                backoff = RECONNECT_BACKOFF_MIN;
                let _ = stream.set_nodelay(true);
                crate::metrics::metrics().observe_peer_connection(&address, true);
                let connection = Connection {
                    peer_id: id,
                    queue: &mut queue,
                    held: &mut held,
                    direct: &direct,
                };
                let result = connection.send_frames(stream, &hello).await;
                // The group thread no longer writes to this connection; what it handed back
                // and nobody wrote did not arrive.
                if let Some(back) = direct.detach() {
                    for message in back.proposals {
                        held.hold_if_proposal(message);
                    }
                }
                if let Err(error) = result {
                    crate::metrics::metrics().observe_peer_connection(&address, false);
                    tracing::info!("peer {address}: connection lost: {error}");
                }
                if queue.is_closed() {
                    return;
                }
            }
            Err(error) => {
                tracing::trace!("peer {address}: connect failed: {error}");
            }
        }
        // Stale messages are dropped while the peer is away: raft sends fresh ones. Forwarded
        // proposals are held for the next connection (module docs).
        let deadline = tokio::time::Instant::now() + backoff;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break,
                message = queue.recv() => match message {
                    Some(message) => held.hold_if_proposal(message),
                    None => return,
                },
            }
        }
        backoff = (backoff * 2).min(RECONNECT_BACKOFF_MAX);
    }
}

/// Forwarded proposals that surely did not reach the peer, to be sent on the next connection.
#[derive(Debug, Default)]
struct HeldProposals {
    messages: Vec<Message>,
}

impl HeldProposals {
    /// Keeps `message` if it is a forwarded proposal and there is room; drops it otherwise.
    fn hold_if_proposal(&mut self, message: Message) {
        if is_forwarded_proposal(&message) {
            if self.messages.len() < HELD_PROPOSALS_MAX {
                self.messages.push(message);
            } else {
                tracing::debug!("held proposals full: a forwarded proposal dropped");
            }
        }
    }
}

/// One connection's task state: its peer, its queue, the proposals held across connections,
/// and the group thread's direct path to it.
struct Connection<'a> {
    peer_id: NodeId,
    queue: &'a mut mpsc::Receiver<Message>,
    held: &'a mut HeldProposals,
    direct: &'a DirectWriter,
}

impl Connection<'_> {
    /// Writes the hello and the held proposals, then, until the queue closes or a write fails:
    /// while idle lets the group thread write directly, and writes what it queues or hands back.
    async fn send_frames(self, stream: TcpStream, hello: &peer::Hello) -> std::io::Result<()> {
        let Connection {
            peer_id,
            queue,
            held,
            direct,
        } = self;
        // A second handle on the socket, for the group thread's direct writes (non-blocking,
        // as tokio keeps it).
        let stream = stream.into_std()?;
        direct.attach(stream.try_clone()?);
        let mut stream = TcpStream::from_std(stream)?;
        let mut buffer = BytesMut::new();
        // The hello goes with what was held: if this write fails they are all still undelivered.
        let resent = std::mem::take(&mut held.messages);
        write_frame(
            &peer::Frame {
                hello: Some(hello.clone()),
                messages: resent.iter().map(encode_message).collect(),
            },
            &mut buffer,
        );
        if let Err(error) = write_all(peer_id, &mut stream, &buffer).await {
            held.messages = resent;
            return Err(error);
        }
        crate::metrics::metrics()
            .forwarded_writes_resent
            .add(resent.len() as u64);
        drop(resent);
        loop {
            let first = match direct.install_or_take(queue) {
                Idle::Queued(message) => message,
                Idle::Closed => return Ok(()),
                Idle::Installed => {
                    let queued = tokio::select! {
                        message = queue.recv() => Some(message),
                        () = direct.handed_back() => None,
                    };
                    if let Some(back) = direct.take_back() {
                        if let Some(error) = back.error {
                            for message in back.proposals {
                                held.hold_if_proposal(message);
                            }
                            return Err(error);
                        }
                        if let Err(error) = write_all(peer_id, &mut stream, &back.rest).await {
                            for message in back.proposals {
                                held.hold_if_proposal(message);
                            }
                            return Err(error);
                        }
                    }
                    match queued {
                        Some(Some(message)) => message,
                        Some(None) => return Ok(()),
                        None => continue,
                    }
                }
            };
            let mut encoder = FrameEncoder::new(peer_id);
            encoder.push(first);
            while encoder.encoded_bytes() < BATCH_BYTES_MAX {
                match queue.try_recv() {
                    Ok(message) => encoder.push(message),
                    Err(_) => break,
                }
            }
            let (bytes, proposals) = encoder.finish();
            if let Err(error) = write_all(peer_id, &mut stream, &bytes).await {
                for message in proposals {
                    held.hold_if_proposal(message);
                }
                return Err(error);
            }
        }
    }
}

/// A write a follower hands its leader: raft never sends it again (module docs).
pub(crate) fn is_forwarded_proposal(message: &Message) -> bool {
    matches!(message.body, MessageBody::Propose(_))
}

async fn write_all(peer_id: NodeId, stream: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    let metrics = crate::metrics::metrics();
    metrics.peer_bytes_sent.add(bytes.len() as u64);
    metrics.observe_peer_sent(peer_id.0, bytes.len() as u64);
    match tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(bytes)).await {
        Ok(result) => result,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "peer write timed out",
        )),
    }
}

/// Accepts peer connections and hands their raft messages to the group task. Each connection
/// is read by a task on `readers`, the group thread's own runtime: a message that arrives
/// while the group task waits wakes that thread directly, and reaches the task without a
/// hand-over from a worker of the shared runtime (a wakeup when it was parked, a wait behind
/// gRPC tasks when it was busy). While the group thread fsyncs, the kernel holds the bytes.
pub async fn run_inbound(
    listener: TcpListener,
    members: Members,
    peers: PeerSender,
    group: mpsc::Sender<GroupInput>,
    readers: tokio::runtime::Handle,
) {
    loop {
        match listener.accept().await {
            Ok((stream, remote)) => {
                let _ = stream.set_nodelay(true);
                let members = members.clone();
                let peers = peers.clone();
                let group = group.clone();
                // Registered again with the readers' runtime, whose thread polls it.
                let stream = match stream.into_std() {
                    Ok(stream) => stream,
                    Err(error) => {
                        tracing::debug!("peer connection from {remote}: {error}");
                        continue;
                    }
                };
                readers.spawn(async move {
                    let result = match TcpStream::from_std(stream) {
                        Ok(stream) => receive_frames(stream, &members, &peers, &group).await,
                        Err(error) => Err(error.to_string()),
                    };
                    if let Err(error) = result {
                        tracing::debug!("peer connection from {remote} closed: {error}");
                    }
                });
            }
            Err(error) => {
                tracing::warn!("peer accept failed: {error}");
                tokio::time::sleep(RECONNECT_BACKOFF_MIN).await;
            }
        }
    }
}

async fn receive_frames(
    mut stream: TcpStream,
    members: &Members,
    peers: &PeerSender,
    group: &mpsc::Sender<GroupInput>,
) -> Result<(), String> {
    let mut buffer = BytesMut::with_capacity(64 * 1024);
    let mut peer_id: Option<NodeId> = None;
    // Bytes read before the hello said whose connection this is.
    let mut unattributed: u64 = 0;
    loop {
        while let Some(frame) = read_frame(&mut buffer).map_err(|error| error.to_string())? {
            if let Some(hello) = frame.hello {
                let id = NodeId(hello.node_id);
                // A joining member (no table yet) takes any cluster's members: the leader of
                // the cluster it was added to will be among them.
                let joining = members.is_empty();
                if joining && hello.cluster_id != 0 {
                    members.adopt_cluster_id(hello.cluster_id);
                }
                if hello.cluster_id != members.cluster_id() {
                    return Err(format!(
                        "hello from cluster {:x}, this is cluster {:x}",
                        hello.cluster_id,
                        members.cluster_id()
                    ));
                }
                if id.0 == 0 || (!joining && members.get(id).is_none()) {
                    return Err(format!("hello from unknown member {id}"));
                }
                if joining {
                    if let Some(url) = hello.peer_urls.first() {
                        peers.learn_peer(id, url);
                    }
                }
                members.announce(
                    id,
                    Announced {
                        name: hello.name,
                        client_urls: hello.client_urls,
                        peer_urls: hello.peer_urls,
                    },
                );
                peer_id = Some(id);
                crate::metrics::metrics().observe_peer_received(id.0, unattributed);
                unattributed = 0;
            }
            let Some(from) = peer_id else {
                return Err("raft messages before a hello".to_string());
            };
            for envelope in frame.messages {
                let message = decode_message(envelope).map_err(|error| error.to_string())?;
                if message.from != from || message.to != members.local_id {
                    return Err(format!(
                        "message from {} to {} on the connection of {from}",
                        message.from, message.to
                    ));
                }
                if let MessageBody::HeartbeatResponse(response) = &message.body {
                    crate::metrics::metrics().observe_heartbeat_response(
                        from.0,
                        message.term.0,
                        response.sequence,
                        std::time::Instant::now(),
                    );
                }
                if group.try_send(GroupInput::Step(message)).is_err() {
                    tracing::trace!("group queue full: peer message dropped");
                }
            }
        }
        let read = stream
            .read_buf(&mut buffer)
            .await
            .map_err(|error| error.to_string())?;
        if read == 0 {
            return Ok(());
        }
        let metrics = crate::metrics::metrics();
        metrics.peer_bytes_received.add(read as u64);
        match peer_id {
            Some(id) => metrics.observe_peer_received(id.0, read as u64),
            None => unattributed += read as u64,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::config::ServerConfig;
    use chorus_raft::{GroupId, Heartbeat, LogIndex, Propose, Term};
    use std::io::Read;
    use std::time::Instant;

    /// Reads frames from `stream` until `count` arrived or `within` ran out.
    fn read_frames(
        stream: &mut std::net::TcpStream,
        count: usize,
        within: Duration,
    ) -> Vec<peer::Frame> {
        let deadline = Instant::now() + within;
        let mut buffer = BytesMut::new();
        let mut frames = Vec::new();
        let mut chunk = [0_u8; 4096];
        stream
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        while frames.len() < count && Instant::now() < deadline {
            if let Ok(read) = stream.read(&mut chunk) {
                if read == 0 {
                    break;
                }
                buffer.extend_from_slice(&chunk[..read]);
            }
            while let Ok(Some(frame)) = read_frame(&mut buffer) {
                frames.push(frame);
            }
        }
        frames
    }

    /// Waits up to 10 s for `listener` (non-blocking) to accept a connection.
    fn accept_within(listener: &std::net::TcpListener, what: &str) -> std::net::TcpStream {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(false).unwrap();
                    return stream;
                }
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(error) => panic!("{what}: {error}"),
            }
        }
    }

    fn message(from: NodeId, to: NodeId, body: MessageBody) -> Message {
        Message {
            group: GroupId(1),
            from,
            to,
            term: Term(1),
            body,
        }
    }

    /// A one-worker runtime like the node's shared one, and an outbound sender started on it
    /// for member "n1".
    fn sender_on_shared_runtime() -> (tokio::runtime::Runtime, Members, PeerSender) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let members = Members::new(&ServerConfig::new("n1", "d".into()));
        let sender = runtime
            .block_on(async { start_outbound(&members) })
            .unwrap();
        (runtime, members, sender)
    }

    #[test]
    fn a_forwarded_proposal_queued_while_the_peer_is_away_goes_out_on_the_next_connection() {
        // A port nothing listens on yet: the first connection attempts are refused.
        let address = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let (_runtime, members, sender) = sender_on_shared_runtime();
        let to = NodeId(7);
        sender.set_peers(&[(to, format!("http://{address}"))], &[]);
        let proposal = MessageBody::Propose(Propose {
            entries: vec![bytes::Bytes::from_static(b"a forwarded write")],
        });
        let heartbeat = MessageBody::Heartbeat(Heartbeat {
            commit: LogIndex(0),
            sequence: 1,
        });
        std::thread::sleep(Duration::from_millis(20));
        sender.send(message(members.local_id, to, heartbeat));
        sender.send(message(members.local_id, to, proposal.clone()));

        // The peer comes up after the first connection attempt failed and its backoff began.
        std::thread::sleep(Duration::from_millis(30));
        let listener = std::net::TcpListener::bind(address).unwrap();
        listener.set_nonblocking(true).unwrap();
        let mut stream = accept_within(&listener, "no connection once the peer listened");
        // Frames until the proposal (it comes with the hello, unless the task was so slow to
        // start that its first attempt already found the peer listening).
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut bodies = Vec::new();
        while !bodies.contains(&proposal) && Instant::now() < deadline {
            for frame in read_frames(&mut stream, 1, Duration::from_millis(200)) {
                bodies.extend(
                    (frame.messages.into_iter())
                        .map(|envelope| decode_message(envelope).unwrap().body),
                );
            }
        }
        assert!(
            bodies.contains(&proposal),
            "the forwarded proposal never arrived; got {bodies:?}"
        );
    }

    #[test]
    fn a_connection_started_from_the_group_threads_runtime_runs_on_the_shared_one() {
        let peer = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        peer.set_nonblocking(true).unwrap();
        let address = peer.local_addr().unwrap();
        let (_shared, members, sender) = sender_on_shared_runtime();

        // As the group task does: a membership sync adds a peer, from the group thread's own
        // single-threaded runtime, which then goes on with a long pass (an fsync, say) and
        // runs none of its tasks.
        let group_runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let to = NodeId(7);
        group_runtime.block_on(async {
            sender.set_peers(&[(to, format!("http://{address}"))], &[]);
            sender.send(message(
                members.local_id,
                to,
                MessageBody::Heartbeat(Heartbeat {
                    commit: LogIndex(0),
                    sequence: 1,
                }),
            ));
        });

        let mut stream = accept_within(
            &peer,
            "the connection was not made while the group runtime was idle",
        );
        assert_eq!(
            read_frames(&mut stream, 2, Duration::from_secs(10)).len(),
            2,
            "the hello and the heartbeat"
        );
        // Alive but idle until here: a task spawned on it would exist and never run.
        drop(group_runtime);
    }

    /// Reads frames from `stream` until `messages` messages arrived (the hello frame's held
    /// proposals count), or 10 s passed.
    fn read_messages(stream: &mut std::net::TcpStream, messages: usize) -> Vec<MessageBody> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buffer = BytesMut::new();
        let mut bodies = Vec::new();
        let mut chunk = vec![0_u8; 64 * 1024];
        stream
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        while bodies.len() < messages && Instant::now() < deadline {
            match stream.read(&mut chunk) {
                Ok(0) => break,
                Ok(read) => buffer.extend_from_slice(&chunk[..read]),
                Err(_) => {}
            }
            while let Ok(Some(frame)) = read_frame(&mut buffer) {
                bodies.extend(
                    (frame.messages.into_iter())
                        .map(|envelope| decode_message(envelope).unwrap().body),
                );
            }
        }
        bodies
    }

    fn wait_until(what: &str, condition: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !condition() {
            assert!(Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn heartbeat(sequence: u64) -> MessageBody {
        MessageBody::Heartbeat(Heartbeat {
            commit: LogIndex(0),
            sequence,
        })
    }

    fn proposal(bytes: Vec<u8>) -> MessageBody {
        MessageBody::Propose(Propose {
            entries: vec![bytes::Bytes::from(bytes)],
        })
    }

    /// A sender connected to peer 7, a listener of this test; the connection (its hello read)
    /// is idle, so the group thread writes to it directly.
    struct IdlePeer {
        _runtime: tokio::runtime::Runtime,
        members: Members,
        sender: PeerSender,
        to: NodeId,
        listener: std::net::TcpListener,
        stream: std::net::TcpStream,
    }

    fn idle_peer() -> IdlePeer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let address = listener.local_addr().unwrap();
        let (runtime, members, sender) = sender_on_shared_runtime();
        let to = NodeId(7);
        sender.set_peers(&[(to, format!("http://{address}"))], &[]);
        let mut stream = accept_within(&listener, "no connection");
        assert_eq!(
            read_frames(&mut stream, 1, Duration::from_secs(10)).len(),
            1,
            "the hello"
        );
        wait_until(
            "the idle connection never let the group thread write",
            || sender.writes_directly_to(to),
        );
        IdlePeer {
            _runtime: runtime,
            members,
            sender,
            to,
            listener,
            stream,
        }
    }

    #[test]
    fn messages_written_directly_and_queued_after_a_full_socket_arrive_whole_and_in_order() {
        // The listener is not needed once connected; the runtime is.
        let IdlePeer {
            _runtime,
            members,
            sender,
            to,
            mut stream,
            ..
        } = idle_peer();

        // Nobody reads: 1 MiB proposals fill the socket's buffer part way through a frame, the
        // rest goes to the connection's task, and what is sent after queues behind it.
        let mut sent = Vec::new();
        for round in 0..12_u8 {
            let batch = vec![
                message(members.local_id, to, heartbeat(u64::from(round))),
                message(members.local_id, to, proposal(vec![round; 1024 * 1024])),
            ];
            sent.extend(batch.iter().map(|message| message.body.clone()));
            sender.send_all(batch);
        }
        assert!(
            !sender.writes_directly_to(to),
            "12 MiB went into a socket nobody read"
        );
        let received = read_messages(&mut stream, sent.len());
        assert!(received == sent, "messages lost or out of order");
        wait_until(
            "the drained connection never let the group thread write again",
            || sender.writes_directly_to(to),
        );
        sender.send(message(members.local_id, to, heartbeat(99)));
        assert_eq!(read_messages(&mut stream, 1), vec![heartbeat(99)]);
    }

    #[test]
    fn a_forwarded_proposal_whose_direct_write_failed_goes_out_on_the_next_connection() {
        let IdlePeer {
            _runtime,
            members,
            sender,
            to,
            listener,
            stream,
        } = idle_peer();
        // The peer goes away; a write finds out at once (reset) or at the next one.
        drop(stream);
        std::thread::sleep(Duration::from_millis(20));
        let mut failed = None;
        for attempt in 0..50_u8 {
            let body = proposal(vec![attempt; 16]);
            sender.send(message(members.local_id, to, body.clone()));
            if !sender.writes_directly_to(to) {
                failed = Some(body);
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let failed = failed.expect("no write to the closed connection failed");

        let mut stream = accept_within(&listener, "no new connection after the failure");
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut bodies = Vec::new();
        while !bodies.contains(&failed) && Instant::now() < deadline {
            bodies.extend(read_messages(&mut stream, 1));
        }
        assert!(
            bodies.contains(&failed),
            "the failed write's proposal never arrived; got {} messages",
            bodies.len()
        );
    }
}
