//! The group thread writes its raft messages to a peer's connection itself, while that
//! connection's task has nothing to write.
//!
//! Why: a message handed to the connection task through its queue waits for a worker of the
//! shared runtime to run that task — a thread wakeup when the worker was parked, a wait behind
//! gRPC tasks when it was busy (about 0.14 ms per hop measured under a 64-client load,
//! docs/performance.md). Every write waits for several such hops (a follower's forwarded
//! proposal, the leader's append, the follower's acknowledgement, the commit). The group thread
//! is already running when it has messages to send, and a write to a socket with room in its
//! send buffer does not block: it writes the cycle's messages for each peer as one frame, in
//! one non-blocking `write`, before its fsync.
//!
//! Order: the bytes of one connection must go out in the order the group sent them, and a frame
//! must never be interleaved with another. So the group thread writes only while the task has
//! *installed* the socket ([`DirectWriter::install_or_take`]), which it does only with nothing of
//! its own half written and its queue empty, checked under the same lock the group thread
//! writes under; while the socket is not installed the group thread queues (as before). When
//! the socket takes only part of a frame (its buffer is full), or the write fails, the group
//! thread takes the socket away and hands the rest (or the failure) back to the task
//! ([`HandBack`]), which writes it, with its write timeout, before anything queued after it.
//!
//! Forwarded proposals keep the transport's rule (transport.rs): those of a frame whose write
//! failed are held for the next connection.

use crate::peer_codec::{encode_message, write_frame};
use bytes::BytesMut;
use chorus_proto::peer;
use chorus_raft::{Message, MessageBody, NodeId};
use prost::Message as _;
use std::io::Write;
use std::sync::{Mutex, MutexGuard};
use tokio::sync::{mpsc, Notify};

/// One peer connection's direct path: the socket while installed, and what the group thread
/// hands back to the task.
#[derive(Debug, Default)]
pub(crate) struct DirectWriter {
    state: Mutex<DirectState>,
    /// Wakes the task when the group thread handed something back.
    handed_back: Notify,
}

#[derive(Debug, Default)]
struct DirectState {
    /// A second handle on the connection's socket (non-blocking), for the connection's life.
    socket: Option<std::net::TcpStream>,
    /// Whether the group thread may write to `socket`: its task is idle.
    installed: bool,
    back: Option<HandBack>,
}

/// What the group thread could not finish: the rest of its frames, their forwarded proposals
/// (held if the rest is never written), or the error its write failed with.
#[derive(Debug, Default)]
pub(crate) struct HandBack {
    pub rest: Vec<u8>,
    pub proposals: Vec<Message>,
    pub error: Option<std::io::Error>,
}

/// What the task found when it went idle.
#[derive(Debug)]
pub(crate) enum Idle {
    /// The socket is installed: the group thread writes until it hands something back.
    Installed,
    /// A message was queued meanwhile: the task writes it (the socket is not installed).
    Queued(Message),
    /// The queue is closed: the peer was removed.
    Closed,
}

impl DirectWriter {
    fn state(&self) -> MutexGuard<'_, DirectState> {
        match self.state.lock() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// A new connection: `socket` is a second handle on it, written to while installed.
    pub(crate) fn attach(&self, socket: std::net::TcpStream) {
        let mut state = self.state();
        state.socket = Some(socket);
        state.installed = false;
    }

    /// The connection ended: the group thread no longer writes to it. Returns what it had
    /// handed back and nobody wrote.
    pub(crate) fn detach(&self) -> Option<HandBack> {
        let mut state = self.state();
        state.socket = None;
        state.installed = false;
        state.back.take()
    }

    /// The task, with nothing half written: installs the socket for the group thread unless a
    /// message is queued (checked under the lock the group thread queues and writes under, so
    /// nothing the task has not taken can be overtaken by a direct write).
    pub(crate) fn install_or_take(&self, queue: &mut mpsc::Receiver<Message>) -> Idle {
        let mut state = self.state();
        match queue.try_recv() {
            Ok(message) => Idle::Queued(message),
            Err(mpsc::error::TryRecvError::Disconnected) => Idle::Closed,
            Err(mpsc::error::TryRecvError::Empty) => {
                state.installed = state.socket.is_some();
                Idle::Installed
            }
        }
    }

    /// Waits until the group thread hands something back (or may have: a spurious wake
    /// returns `None` from [`DirectWriter::take_back`]).
    pub(crate) async fn handed_back(&self) {
        self.handed_back.notified().await;
    }

    /// Whether the group thread may write now (tests).
    #[cfg(test)]
    pub(crate) fn is_installed(&self) -> bool {
        self.state().installed
    }

    /// The task takes the socket back (it will write itself) and whatever was handed back.
    pub(crate) fn take_back(&self) -> Option<HandBack> {
        let mut state = self.state();
        state.installed = false;
        state.back.take()
    }

    /// The group thread: writes `messages` (all to `peer_id`) to the socket if it is installed,
    /// or queues them for the task (dropping those beyond a full queue) — under the lock the
    /// task installs the socket under, so a message queued here is always seen by the task
    /// before it installs the socket, never overtaken by a later direct write. Never blocks.
    pub(crate) fn send(
        &self,
        peer_id: NodeId,
        messages: Vec<Message>,
        queue: &mpsc::Sender<Message>,
    ) {
        let mut state = self.state();
        let Some(socket) = state.socket.as_ref().filter(|_| state.installed) else {
            for message in messages {
                if queue.try_send(message).is_err() {
                    tracing::trace!("peer queue full: message dropped");
                }
            }
            return;
        };
        let (bytes, proposals) = encode_frames(peer_id, messages);
        let (written, error) = write_nonblocking(socket, &bytes);
        // The rest, if any, is counted by the task when it writes it.
        let metrics = crate::metrics::metrics();
        metrics.peer_bytes_sent.add(written as u64);
        metrics.observe_peer_sent(peer_id.0, written as u64);
        if written == bytes.len() {
            return;
        }
        // The socket is full or failed: the task takes over, starting with the rest.
        let back = match error {
            None => HandBack {
                rest: bytes[written..].to_vec(),
                proposals,
                error: None,
            },
            Some(error) => HandBack {
                rest: Vec::new(),
                proposals,
                error: Some(error),
            },
        };
        state.installed = false;
        state.back = Some(back);
        drop(state);
        self.handed_back.notify_one();
    }
}

/// Writes as much of `bytes` as the socket takes now: how much, and the error that stopped it
/// (`None` when it stopped because the socket's buffer is full, or wrote everything).
fn write_nonblocking(
    mut socket: &std::net::TcpStream,
    bytes: &[u8],
) -> (usize, Option<std::io::Error>) {
    let mut written = 0;
    while written < bytes.len() {
        match socket.write(&bytes[written..]) {
            Ok(0) => {
                let error = std::io::Error::new(std::io::ErrorKind::WriteZero, "peer write");
                return (written, Some(error));
            }
            Ok(count) => written += count,
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return (written, Some(error)),
        }
    }
    (written, None)
}

/// Encodes `messages` as frames ([`FrameEncoder`]); the bytes and the forwarded proposals.
pub(crate) fn encode_frames(peer_id: NodeId, messages: Vec<Message>) -> (BytesMut, Vec<Message>) {
    let mut encoder = FrameEncoder::new(peer_id);
    for message in messages {
        encoder.push(message);
    }
    encoder.finish()
}

/// Encodes messages to one peer as frames of at most [`crate::transport::BATCH_BYTES_MAX`]
/// bytes of messages each (a larger single message gets a frame of its own), noting the
/// heartbeats sent (round-trip times) and keeping the forwarded proposals (held if the write
/// fails).
pub(crate) struct FrameEncoder {
    peer_id: NodeId,
    bytes: BytesMut,
    envelopes: Vec<peer::Envelope>,
    frame_bytes: usize,
    encoded_bytes: usize,
    proposals: Vec<Message>,
    now: std::time::Instant,
}

impl FrameEncoder {
    pub(crate) fn new(peer_id: NodeId) -> FrameEncoder {
        FrameEncoder {
            peer_id,
            bytes: BytesMut::new(),
            envelopes: Vec::new(),
            frame_bytes: 0,
            encoded_bytes: 0,
            proposals: Vec::new(),
            now: std::time::Instant::now(),
        }
    }

    pub(crate) fn push(&mut self, message: Message) {
        if let MessageBody::Heartbeat(heartbeat) = &message.body {
            crate::metrics::metrics().observe_heartbeat_sent(
                self.peer_id.0,
                message.term.0,
                heartbeat.sequence,
                self.now,
            );
        }
        let envelope = encode_message(&message);
        let size = envelope.encoded_len();
        if !self.envelopes.is_empty() && self.frame_bytes + size > crate::transport::BATCH_BYTES_MAX
        {
            self.end_frame();
        }
        self.frame_bytes += size;
        self.encoded_bytes += size;
        self.envelopes.push(envelope);
        if crate::transport::is_forwarded_proposal(&message) {
            self.proposals.push(message);
        }
    }

    /// Bytes of messages encoded so far.
    pub(crate) fn encoded_bytes(&self) -> usize {
        self.encoded_bytes
    }

    fn end_frame(&mut self) {
        let frame = peer::Frame {
            hello: None,
            messages: std::mem::take(&mut self.envelopes),
        };
        write_frame(&frame, &mut self.bytes);
        self.frame_bytes = 0;
    }

    /// The frames' bytes and the forwarded proposals among the messages.
    pub(crate) fn finish(mut self) -> (BytesMut, Vec<Message>) {
        if !self.envelopes.is_empty() {
            self.end_frame();
        }
        (self.bytes, self.proposals)
    }
}
