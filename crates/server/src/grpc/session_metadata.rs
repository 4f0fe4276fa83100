//! The session a write carries in its gRPC metadata (`proto/chorus/session.proto`): parsed
//! here, and kept when a follower forwards the write to the leader.
//!
//! A write without the metadata is a plain etcd write. One with only some of the three
//! entries, or with a value that is not a decimal number, is refused with INVALID_ARGUMENT
//! before anything is proposed.

use super::FORWARDED_METADATA_KEY;
use crate::error::ServerError;
use chorus_proto::session_metadata::{ACKNOWLEDGED, ID, SEQUENCE};
use chorus_replica::Command;
use tonic::metadata::MetadataMap;
use tonic::Request;

/// Where a write stands in its session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionTag {
    pub session: u64,
    pub sequence: u64,
    pub acknowledged: u64,
}

/// The session tag of a request, if it carries one.
pub fn session_tag(metadata: &MetadataMap) -> Result<Option<SessionTag>, ServerError> {
    let present = [ID, SEQUENCE, ACKNOWLEDGED].map(|key| metadata.contains_key(key));
    if present.iter().all(|present| !present) {
        return Ok(None);
    }
    let number = |key: &str| -> Result<u64, ServerError> {
        let value = metadata.get(key).ok_or_else(|| {
            bad(format!(
                "{key} is missing (the session metadata has 3 entries)"
            ))
        })?;
        value
            .to_str()
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok())
            .ok_or_else(|| bad(format!("{key} is not a decimal number")))
    };
    let tag = SessionTag {
        session: number(ID)?,
        sequence: number(SEQUENCE)?,
        acknowledged: number(ACKNOWLEDGED)?,
    };
    if tag.session == 0 || tag.sequence == 0 {
        return Err(bad("the session id and the sequence start at 1".into()));
    }
    if tag.acknowledged >= tag.sequence {
        return Err(bad(format!(
            "{ACKNOWLEDGED} {} is not below the sequence {} (a write cannot be acknowledged \
             before its answer)",
            tag.acknowledged, tag.sequence
        )));
    }
    Ok(Some(tag))
}

fn bad(reason: String) -> ServerError {
    ServerError::InvalidSession(reason)
}

/// `command` as the request asks it to be proposed: inside its session, if it has one.
pub fn sessioned<T>(request: &Request<T>, command: Command) -> Result<Command, ServerError> {
    Ok(match session_tag(request.metadata())? {
        None => command,
        Some(tag) => Command::Sessioned {
            session: tag.session,
            sequence: tag.sequence,
            acknowledged: tag.acknowledged,
            command: Box::new(command),
        },
    })
}

/// A write for the leader: the same message and session metadata, marked forwarded (never
/// forwarded again).
pub fn forward_write<T>(request: Request<T>) -> Request<T> {
    let session: Vec<_> = [ID, SEQUENCE, ACKNOWLEDGED]
        .into_iter()
        .filter_map(|key| Some((key, request.metadata().get(key)?.clone())))
        .collect();
    let mut forwarded = super::forwarded(request.into_inner());
    for (key, value) in session {
        forwarded.metadata_mut().insert(key, value);
    }
    debug_assert!(forwarded.metadata().contains_key(FORWARDED_METADATA_KEY));
    forwarded
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn request(entries: &[(&'static str, &str)]) -> Request<()> {
        let mut request = Request::new(());
        for (key, value) in entries {
            request.metadata_mut().insert(*key, value.parse().unwrap());
        }
        request
    }

    #[test]
    fn a_request_without_metadata_is_a_plain_write() {
        assert_eq!(session_tag(request(&[]).metadata()).unwrap(), None);
        let put = Command::Compact { revision: 3 };
        assert_eq!(sessioned(&request(&[]), put.clone()).unwrap(), put);
    }

    #[test]
    fn the_three_numbers_make_a_sessioned_command() {
        let request = request(&[(ID, "7"), (SEQUENCE, "12"), (ACKNOWLEDGED, "9")]);
        let command = sessioned(&request, Command::Compact { revision: 3 }).unwrap();
        assert_eq!(
            command,
            Command::Sessioned {
                session: 7,
                sequence: 12,
                acknowledged: 9,
                command: Box::new(Command::Compact { revision: 3 }),
            }
        );
    }

    #[test]
    fn partial_or_malformed_metadata_is_refused() {
        for entries in [
            vec![(ID, "7")],
            vec![(ID, "7"), (SEQUENCE, "x"), (ACKNOWLEDGED, "0")],
            vec![(ID, "0"), (SEQUENCE, "1"), (ACKNOWLEDGED, "0")],
            vec![(ID, "7"), (SEQUENCE, "3"), (ACKNOWLEDGED, "3")],
            vec![(ID, "-1"), (SEQUENCE, "3"), (ACKNOWLEDGED, "1")],
            vec![
                (ID, "18446744073709551616"),
                (SEQUENCE, "3"),
                (ACKNOWLEDGED, "1"),
            ],
        ] {
            let error = session_tag(request(&entries).metadata()).unwrap_err();
            let status = tonic::Status::from(error);
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{entries:?}");
            assert!(status.message().starts_with("chorus: bad session metadata"));
        }
    }

    #[test]
    fn forwarding_keeps_the_session_and_marks_the_request() {
        let original = request(&[(ID, "7"), (SEQUENCE, "12"), (ACKNOWLEDGED, "9")]);
        let forwarded = forward_write(original);
        assert_eq!(
            session_tag(forwarded.metadata()).unwrap().unwrap().sequence,
            12
        );
        assert!(forwarded.metadata().contains_key(FORWARDED_METADATA_KEY));
    }
}
