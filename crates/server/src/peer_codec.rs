//! Wire translation of raft messages to and from the peer protocol (`chorus.peer.v1`), and the
//! length-prefixed framing. Decoding never panics: bad bytes are a [`PeerDecodeError`].

use bytes::{Buf, BufMut, BytesMut};
use chorus_proto::peer;
use chorus_proto::peer::envelope::Body;
use chorus_raft::{
    AppendEntries, AppendEntriesResponse, Entry, GroupId, Heartbeat, HeartbeatResponse,
    InstallSnapshot, InstallSnapshotResponse, LogIndex, Message, MessageBody, NodeId, Propose,
    ReadIndexRequest, ReadIndexResponse, RequestVote, RequestVoteResponse, SnapshotMeta, Term,
};
use chorus_replica::entry::{
    decode_entry_payload, decode_membership, encode_entry_payload, encode_membership,
};
use prost::Message as _;

/// The largest frame accepted or sent: a snapshot chunk plus a batch of appends fit well under.
pub const FRAME_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Bytes of the length prefix before each frame.
pub const FRAME_PREFIX_BYTES: usize = 4;

/// Why a frame or message from a peer was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PeerDecodeError {
    #[error("frame of {length} bytes exceeds the limit of {FRAME_BYTES_MAX}")]
    FrameTooLarge { length: usize },
    #[error("frame does not decode: {0}")]
    Protobuf(String),
    #[error("message without a body")]
    MissingBody,
    #[error("entry payload does not decode: {0}")]
    Entry(String),
    #[error("snapshot membership does not decode: {0}")]
    Membership(String),
    #[error("node id 0 in a message")]
    ZeroNode,
}

/// The raft message as a peer envelope.
pub fn encode_message(message: &Message) -> peer::Envelope {
    let body = match &message.body {
        MessageBody::RequestVote(vote) => Body::RequestVote(peer::RequestVote {
            pre_vote: vote.pre_vote,
            last_log_index: vote.last_log_index.0,
            last_log_term: vote.last_log_term.0,
            transfer: vote.transfer,
        }),
        MessageBody::RequestVoteResponse(response) => {
            Body::RequestVoteResponse(peer::RequestVoteResponse {
                pre_vote: response.pre_vote,
                granted: response.granted,
            })
        }
        MessageBody::AppendEntries(append) => Body::AppendEntries(peer::AppendEntries {
            prev_log_index: append.prev_log_index.0,
            prev_log_term: append.prev_log_term.0,
            entries: append
                .entries
                .iter()
                .map(|entry| peer::Entry {
                    term: entry.term.0,
                    index: entry.index.0,
                    payload: encode_entry_payload(&entry.payload).into(),
                })
                .collect(),
            leader_commit: append.leader_commit.0,
        }),
        MessageBody::AppendEntriesResponse(response) => {
            Body::AppendEntriesResponse(peer::AppendEntriesResponse {
                index: response.index.0,
                rejected: response.rejected,
                hint_index: response.hint_index.0,
                hint_term: response.hint_term.0,
            })
        }
        MessageBody::Heartbeat(heartbeat) => Body::Heartbeat(peer::Heartbeat {
            commit: heartbeat.commit.0,
            sequence: heartbeat.sequence,
        }),
        MessageBody::HeartbeatResponse(response) => {
            Body::HeartbeatResponse(peer::HeartbeatResponse {
                sequence: response.sequence,
                last_index: response.last_index.0,
                last_term: response.last_term.0,
            })
        }
        MessageBody::InstallSnapshot(snapshot) => Body::InstallSnapshot(peer::InstallSnapshot {
            last_index: snapshot.meta.last_index.0,
            last_term: snapshot.meta.last_term.0,
            membership: encode_membership(&snapshot.meta.membership).into(),
            offset: snapshot.offset,
            total_bytes: snapshot.total_bytes,
            data: snapshot.data.clone(),
        }),
        MessageBody::InstallSnapshotResponse(response) => {
            Body::InstallSnapshotResponse(peer::InstallSnapshotResponse {
                last_index: response.last_index.0,
                received_bytes: response.received_bytes,
                rejected: response.rejected,
            })
        }
        MessageBody::TimeoutNow => Body::TimeoutNow(peer::TimeoutNow {}),
        MessageBody::ReadIndexRequest(request) => {
            Body::ReadIndexRequest(peer::ReadIndexRequest { id: request.id })
        }
        MessageBody::ReadIndexResponse(response) => {
            Body::ReadIndexResponse(peer::ReadIndexResponse {
                id: response.id,
                index: response.index.map(|index| index.0),
            })
        }
        MessageBody::Propose(propose) => Body::Propose(peer::Propose {
            entries: propose.entries.clone(),
        }),
    };
    peer::Envelope {
        group: message.group.0,
        from: message.from.0,
        to: message.to.0,
        term: message.term.0,
        body: Some(body),
    }
}

/// The raft message a peer envelope carries.
pub fn decode_message(envelope: peer::Envelope) -> Result<Message, PeerDecodeError> {
    if envelope.from == 0 || envelope.to == 0 {
        return Err(PeerDecodeError::ZeroNode);
    }
    let body = match envelope.body.ok_or(PeerDecodeError::MissingBody)? {
        Body::RequestVote(vote) => MessageBody::RequestVote(RequestVote {
            pre_vote: vote.pre_vote,
            last_log_index: LogIndex(vote.last_log_index),
            last_log_term: Term(vote.last_log_term),
            transfer: vote.transfer,
        }),
        Body::RequestVoteResponse(response) => {
            MessageBody::RequestVoteResponse(RequestVoteResponse {
                pre_vote: response.pre_vote,
                granted: response.granted,
            })
        }
        Body::AppendEntries(append) => {
            let mut entries = Vec::with_capacity(append.entries.len());
            for entry in append.entries {
                let payload = decode_entry_payload(&entry.payload)
                    .map_err(|error| PeerDecodeError::Entry(error.to_string()))?;
                entries.push(Entry {
                    term: Term(entry.term),
                    index: LogIndex(entry.index),
                    payload,
                });
            }
            MessageBody::AppendEntries(AppendEntries {
                prev_log_index: LogIndex(append.prev_log_index),
                prev_log_term: Term(append.prev_log_term),
                entries,
                leader_commit: LogIndex(append.leader_commit),
            })
        }
        Body::AppendEntriesResponse(response) => {
            MessageBody::AppendEntriesResponse(AppendEntriesResponse {
                index: LogIndex(response.index),
                rejected: response.rejected,
                hint_index: LogIndex(response.hint_index),
                hint_term: Term(response.hint_term),
            })
        }
        Body::Heartbeat(heartbeat) => MessageBody::Heartbeat(Heartbeat {
            commit: LogIndex(heartbeat.commit),
            sequence: heartbeat.sequence,
        }),
        Body::HeartbeatResponse(response) => MessageBody::HeartbeatResponse(HeartbeatResponse {
            sequence: response.sequence,
            last_index: LogIndex(response.last_index),
            last_term: Term(response.last_term),
        }),
        Body::InstallSnapshot(snapshot) => {
            let membership = decode_membership(&snapshot.membership)
                .map_err(|error| PeerDecodeError::Membership(error.to_string()))?;
            MessageBody::InstallSnapshot(InstallSnapshot {
                meta: SnapshotMeta {
                    last_index: LogIndex(snapshot.last_index),
                    last_term: Term(snapshot.last_term),
                    membership,
                },
                offset: snapshot.offset,
                total_bytes: snapshot.total_bytes,
                data: snapshot.data,
            })
        }
        Body::InstallSnapshotResponse(response) => {
            MessageBody::InstallSnapshotResponse(InstallSnapshotResponse {
                last_index: LogIndex(response.last_index),
                received_bytes: response.received_bytes,
                rejected: response.rejected,
            })
        }
        Body::TimeoutNow(_) => MessageBody::TimeoutNow,
        Body::ReadIndexRequest(request) => {
            MessageBody::ReadIndexRequest(ReadIndexRequest { id: request.id })
        }
        Body::ReadIndexResponse(response) => MessageBody::ReadIndexResponse(ReadIndexResponse {
            id: response.id,
            index: response.index.map(LogIndex),
        }),
        Body::Propose(propose) => MessageBody::Propose(Propose {
            entries: propose.entries,
        }),
    };
    Ok(Message {
        group: GroupId(envelope.group),
        from: NodeId(envelope.from),
        to: NodeId(envelope.to),
        term: Term(envelope.term),
        body,
    })
}

/// Appends `frame` with its length prefix to `buffer`.
pub fn write_frame(frame: &peer::Frame, buffer: &mut BytesMut) {
    let length = frame.encoded_len();
    buffer.reserve(FRAME_PREFIX_BYTES + length);
    buffer.put_u32(u32::try_from(length).unwrap_or(u32::MAX));
    // Encoding into a buffer with enough capacity reserved cannot fail.
    let _ = frame.encode(buffer);
}

/// Takes one whole frame off the front of `buffer`, if it holds one; refuses a frame longer
/// than [`FRAME_BYTES_MAX`] before reading it.
pub fn read_frame(buffer: &mut BytesMut) -> Result<Option<peer::Frame>, PeerDecodeError> {
    if buffer.len() < FRAME_PREFIX_BYTES {
        return Ok(None);
    }
    let length = u32::from_be_bytes([buffer[0], buffer[1], buffer[2], buffer[3]]) as usize;
    if length > FRAME_BYTES_MAX {
        return Err(PeerDecodeError::FrameTooLarge { length });
    }
    if buffer.len() < FRAME_PREFIX_BYTES + length {
        buffer.reserve(FRAME_PREFIX_BYTES + length - buffer.len());
        return Ok(None);
    }
    buffer.advance(FRAME_PREFIX_BYTES);
    let body = buffer.split_to(length).freeze();
    peer::Frame::decode(body)
        .map(Some)
        .map_err(|error| PeerDecodeError::Protobuf(error.to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chorus_raft::{EntryPayload, Membership};
    use proptest::prelude::*;

    fn round_trip(message: Message) {
        let frame = peer::Frame {
            hello: None,
            messages: vec![encode_message(&message)],
        };
        let mut buffer = BytesMut::new();
        write_frame(&frame, &mut buffer);
        let decoded = read_frame(&mut buffer).unwrap().unwrap();
        assert!(buffer.is_empty());
        let back = decode_message(decoded.messages[0].clone()).unwrap();
        assert_eq!(back, message);
    }

    fn message(body: MessageBody) -> Message {
        Message {
            group: GroupId(1),
            from: NodeId(7),
            to: NodeId(9),
            term: Term(3),
            body,
        }
    }

    #[test]
    fn every_message_kind_round_trips() {
        round_trip(message(MessageBody::AppendEntries(AppendEntries {
            prev_log_index: LogIndex(4),
            prev_log_term: Term(2),
            entries: vec![
                Entry {
                    term: Term(3),
                    index: LogIndex(5),
                    payload: EntryPayload::Noop,
                },
                Entry {
                    term: Term(3),
                    index: LogIndex(6),
                    payload: EntryPayload::Normal(bytes::Bytes::from_static(b"x")),
                },
            ],
            leader_commit: LogIndex(4),
        })));
        round_trip(message(MessageBody::InstallSnapshot(InstallSnapshot {
            meta: SnapshotMeta {
                last_index: LogIndex(10),
                last_term: Term(2),
                membership: Membership::new([NodeId(7), NodeId(9)]),
            },
            offset: 0,
            total_bytes: 3,
            data: bytes::Bytes::from_static(b"abc"),
        })));
        round_trip(message(MessageBody::Propose(Propose {
            entries: vec![bytes::Bytes::from_static(b"one"), bytes::Bytes::new()],
        })));
        round_trip(message(MessageBody::ReadIndexResponse(ReadIndexResponse {
            id: 5,
            index: None,
        })));
        round_trip(message(MessageBody::ReadIndexResponse(ReadIndexResponse {
            id: 5,
            index: Some(LogIndex(0)),
        })));
        round_trip(message(MessageBody::TimeoutNow));
        round_trip(message(MessageBody::RequestVote(RequestVote {
            pre_vote: true,
            last_log_index: LogIndex(1),
            last_log_term: Term(1),
            transfer: false,
        })));
    }

    #[test]
    fn a_frame_longer_than_the_limit_is_refused_before_it_is_read() {
        let mut buffer = BytesMut::new();
        buffer.put_u32(u32::try_from(FRAME_BYTES_MAX + 1).unwrap());
        assert_eq!(
            read_frame(&mut buffer),
            Err(PeerDecodeError::FrameTooLarge {
                length: FRAME_BYTES_MAX + 1
            })
        );
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut buffer = BytesMut::from(&bytes[..]);
            while let Ok(Some(frame)) = read_frame(&mut buffer) {
                for envelope in frame.messages {
                    let _ = decode_message(envelope);
                }
            }
            let mut body = BytesMut::new();
            body.put_u32(u32::try_from(bytes.len()).unwrap());
            body.extend_from_slice(&bytes);
            if let Ok(Some(frame)) = read_frame(&mut body) {
                for envelope in frame.messages {
                    let _ = decode_message(envelope);
                }
            }
        }
    }
}
