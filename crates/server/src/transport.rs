//! The peer transport over TCP: one outbound connection per peer (this node writes, the peer
//! reads), length-prefixed [`chorus_proto::peer::Frame`]s carrying a hello and then batches of
//! raft messages with their group ids.
//!
//! Bounds: each peer's queue holds at most [`PEER_QUEUE_MESSAGES_MAX`] messages; when it is full
//! new messages are dropped (raft retransmits what matters). While a peer is unreachable its
//! queue is drained and dropped, and connecting is retried with a backoff up to
//! [`RECONNECT_BACKOFF_MAX`]. A frame holds at most [`BATCH_BYTES_MAX`] bytes of messages.

use crate::config::{host_port, ConfigError};
use crate::group::GroupInput;
use crate::members::Members;
use crate::peer_codec::{decode_message, encode_message, read_frame, write_frame};
use bytes::BytesMut;
use chorus_proto::peer;
use chorus_raft::{Message, NodeId};
use prost::Message as _;
use std::collections::BTreeMap;
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

/// Sends raft messages to peers through their queues. Cheap to clone.
#[derive(Clone, Debug)]
pub struct PeerSender {
    queues: BTreeMap<NodeId, mpsc::Sender<Message>>,
}

impl PeerSender {
    /// Queues `message` for its peer; drops it if the queue is full or the peer unknown.
    pub fn send(&self, message: Message) {
        if let Some(queue) = self.queues.get(&message.to) {
            if queue.try_send(message).is_err() {
                tracing::trace!("peer queue full: message dropped");
            }
        }
    }
}

/// Starts one outbound connection task per peer; returns the sender that feeds them.
pub fn start_outbound(members: &Members, hello: peer::Hello) -> Result<PeerSender, ConfigError> {
    let mut queues = BTreeMap::new();
    for member in members.list() {
        if member.id == members.local_id {
            continue;
        }
        let address = host_port(&member.peer_url)?;
        let (sender, receiver) = mpsc::channel(PEER_QUEUE_MESSAGES_MAX);
        queues.insert(member.id, sender);
        tokio::spawn(run_outbound(address, hello.clone(), receiver));
    }
    Ok(PeerSender { queues })
}

async fn run_outbound(address: String, hello: peer::Hello, mut queue: mpsc::Receiver<Message>) {
    let mut backoff = RECONNECT_BACKOFF_MIN;
    loop {
        match TcpStream::connect(&address).await {
            Ok(stream) => {
                backoff = RECONNECT_BACKOFF_MIN;
                let _ = stream.set_nodelay(true);
                crate::metrics::metrics().observe_peer_connection(&address, true);
                if let Err(error) = send_frames(stream, &hello, &mut queue).await {
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
        // Stale messages are dropped while the peer is away: raft sends fresh ones.
        let deadline = tokio::time::Instant::now() + backoff;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break,
                message = queue.recv() => if message.is_none() { return },
            }
        }
        backoff = (backoff * 2).min(RECONNECT_BACKOFF_MAX);
    }
}

async fn send_frames(
    mut stream: TcpStream,
    hello: &peer::Hello,
    queue: &mut mpsc::Receiver<Message>,
) -> std::io::Result<()> {
    let mut buffer = BytesMut::new();
    write_frame(
        &peer::Frame {
            hello: Some(hello.clone()),
            messages: Vec::new(),
        },
        &mut buffer,
    );
    write_all(&mut stream, &buffer).await?;
    while let Some(first) = queue.recv().await {
        let mut messages = vec![encode_message(&first)];
        let mut batch_bytes = messages[0].encoded_len();
        while batch_bytes < BATCH_BYTES_MAX {
            match queue.try_recv() {
                Ok(message) => {
                    let envelope = encode_message(&message);
                    batch_bytes += envelope.encoded_len();
                    messages.push(envelope);
                }
                Err(_) => break,
            }
        }
        buffer.clear();
        write_frame(
            &peer::Frame {
                hello: None,
                messages,
            },
            &mut buffer,
        );
        write_all(&mut stream, &buffer).await?;
    }
    Ok(())
}

async fn write_all(stream: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    crate::metrics::metrics()
        .peer_bytes_sent
        .add(bytes.len() as u64);
    match tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(bytes)).await {
        Ok(result) => result,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "peer write timed out",
        )),
    }
}

/// Accepts peer connections and hands their raft messages to the group task.
pub async fn run_inbound(listener: TcpListener, members: Members, group: mpsc::Sender<GroupInput>) {
    loop {
        match listener.accept().await {
            Ok((stream, remote)) => {
                let _ = stream.set_nodelay(true);
                let members = members.clone();
                let group = group.clone();
                tokio::spawn(async move {
                    if let Err(error) = receive_frames(stream, &members, &group).await {
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
    group: &mpsc::Sender<GroupInput>,
) -> Result<(), String> {
    let mut buffer = BytesMut::with_capacity(64 * 1024);
    let mut peer_id: Option<NodeId> = None;
    loop {
        while let Some(frame) = read_frame(&mut buffer).map_err(|error| error.to_string())? {
            if let Some(hello) = frame.hello {
                if hello.cluster_id != members.cluster_id {
                    return Err(format!(
                        "hello from cluster {:x}, this is cluster {:x}",
                        hello.cluster_id, members.cluster_id
                    ));
                }
                let id = NodeId(hello.node_id);
                if members.get(id).is_none() {
                    return Err(format!("hello from unknown member {id}"));
                }
                members.set_client_urls(id, hello.client_urls);
                peer_id = Some(id);
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
        crate::metrics::metrics()
            .peer_bytes_received
            .add(read as u64);
    }
}
