//! Client sessions: the idempotent receiver. A client opens a session (a replicated command) and
//! sends each write with (session, sequence, acknowledged); the table keeps, per session, the
//! answers the client has not acknowledged, and answers a retry of a sequence with the stored
//! answer instead of applying the command again.
//!
//! Two kinds of state, as in the lessor:
//! - **Replicated**: the sessions (id → TTL, acknowledged floor, stored answers). Changed only by
//!   applying committed commands, so every replica holds the same. It lives in the mvcc backend's
//!   side table, written in the same batch as the command's store writes ([`SideChanges`]), so
//!   it is exactly as durable as the store; and in the state snapshot.
//! - **Local**: a deadline per session in ticks of this replica's clock. Only a leader acts on it
//!   (it proposes `SessionExpire`); a replica that becomes leader restarts every deadline.
//!
//! Side table keys (big-endian, so they sort by id then sequence):
//! `s | id u64` → `version u8 (= 1) | ttl_seconds i64 | acknowledged u64`;
//! `r | id u64 | sequence u64` → the stored answer ([`crate::response`]).

use crate::codec::{put_i64, put_u64, put_u8, DecodeError, Reader};
use crate::error::SessionError;
use crate::response::{decode_response, encode_response, is_storable, StoredResult};
use chorus_mvcc::{SideChanges, SideEntry};
use std::collections::{BTreeMap, BTreeSet};

/// The most answers a session keeps that its client has not acknowledged; a new request past it
/// is refused with [`SessionError::TooManyOutstanding`] until the client acknowledges some.
pub const SESSION_RESPONSES_MAX: usize = 1024;

/// The most bytes (encoded) of unacknowledged answers a session keeps: a new request is refused
/// once its stored answers reach it, so a session holds at most this plus one answer.
pub const SESSION_RESPONSE_BYTES_MAX: usize = 4 * 1024 * 1024;

/// The longest TTL a session may have, in seconds (one day). The shortest is the replica's
/// `lease_ttl_seconds_min`, as for leases.
pub const SESSION_TTL_SECONDS_MAX: i64 = 86_400;

const KEY_SESSION: u8 = b's';
const KEY_RESPONSE: u8 = b'r';
const SESSION_META_VERSION: u8 = 1;

/// One open session (replicated state).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Session {
    ttl_seconds: i64,
    /// Every sequence at or below it was acknowledged: its answer is dropped, a retry refused.
    acknowledged: u64,
    /// Sequence → the answer and its encoding's length.
    responses: BTreeMap<u64, (StoredResult, usize)>,
    /// The sum of the encodings' lengths.
    response_bytes: usize,
}

/// What a sessioned command does after [`Sessions::begin`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Begin {
    /// Refused; nothing to apply.
    Refused(SessionError),
    /// A retry: this is the answer it got the first time; nothing to apply.
    Stored(StoredResult),
    /// A new request: apply it, then [`Sessions::record`] its answer.
    Apply,
}

/// The session table and the local expiry clock.
///
/// # Invariants
/// - Every TTL is in `1..=SESSION_TTL_SECONDS_MAX`; every stored sequence is above its
///   session's acknowledged floor; a session stores at most [`SESSION_RESPONSES_MAX`] answers,
///   `response_bytes` is the sum of their encodings, and without its largest answer it is below
///   [`SESSION_RESPONSE_BYTES_MAX`]; every stored answer is storable.
/// - `deadlines` has exactly the ids of `sessions`; `expiry` holds exactly the pairs
///   `(deadline, id)` of `deadlines`; `expiring` is a subset of the ids of `sessions`.
#[derive(Debug)]
pub(crate) struct Sessions {
    sessions: BTreeMap<u64, Session>,
    ticks_per_second: u64,
    now_ticks: u64,
    deadlines: BTreeMap<u64, u64>,
    expiry: BTreeSet<(u64, u64)>,
    /// Sessions this leader proposed to expire and has not applied the expiry of.
    expiring: BTreeSet<u64>,
}

impl Sessions {
    pub(crate) fn new(ticks_per_second: u64) -> Sessions {
        assert!(ticks_per_second >= 1, "ticks_per_second of 0");
        Sessions {
            sessions: BTreeMap::new(),
            ticks_per_second,
            now_ticks: 0,
            deadlines: BTreeMap::new(),
            expiry: BTreeSet::new(),
            expiring: BTreeSet::new(),
        }
    }

    /// Replaces the table with the one `entries` (the side table, or a snapshot's session
    /// section) describe; every deadline starts at now + TTL. Refuses entries that are not
    /// strictly increasing, do not decode, or break an invariant; the table is then unchanged.
    pub(crate) fn restore(&mut self, entries: &[SideEntry]) -> Result<(), DecodeError> {
        let sessions = decode_entries(entries)?;
        self.sessions = sessions;
        self.deadlines.clear();
        self.expiry.clear();
        self.expiring.clear();
        let ids: Vec<u64> = self.sessions.keys().copied().collect();
        for id in ids {
            self.restart_deadline(id);
        }
        Ok(())
    }

    /// The table as side-table entries, in key order: what the backend must hold.
    pub(crate) fn entries(&self) -> Vec<SideEntry> {
        let mut entries = Vec::new();
        for (id, session) in &self.sessions {
            entries.push((session_key(*id), encode_meta(session)));
            for (sequence, (result, _)) in &session.responses {
                entries.push((response_key(*id, *sequence), encode_response(result)));
            }
        }
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        entries
    }

    /// The ids of the open sessions, increasing.
    pub(crate) fn ids(&self) -> Vec<u64> {
        self.sessions.keys().copied().collect()
    }

    /// Applies a `SessionOpen` committed at `index`: the session's id is `index`. Refused past
    /// `sessions_max` open sessions or above [`SESSION_TTL_SECONDS_MAX`]; a TTL below 1 is 1.
    pub(crate) fn open(
        &mut self,
        index: u64,
        ttl_seconds: i64,
        sessions_max: u32,
        side: &mut SideChanges,
    ) -> Result<(u64, i64), SessionError> {
        if ttl_seconds > SESSION_TTL_SECONDS_MAX {
            return Err(SessionError::TtlTooLarge {
                ttl_seconds,
                ttl_seconds_max: SESSION_TTL_SECONDS_MAX,
            });
        }
        if self.sessions.len() >= sessions_max as usize {
            return Err(SessionError::TooManySessions { max: sessions_max });
        }
        assert!(
            !self.sessions.contains_key(&index),
            "session {index} opened twice: log indexes are unique"
        );
        let session = Session {
            ttl_seconds: ttl_seconds.max(1),
            acknowledged: 0,
            responses: BTreeMap::new(),
            response_bytes: 0,
        };
        side.puts.push((session_key(index), encode_meta(&session)));
        let ttl_seconds = session.ttl_seconds;
        self.sessions.insert(index, session);
        self.restart_deadline(index);
        Ok((index, ttl_seconds))
    }

    /// Applies a `SessionClose` or `SessionExpire`: the session and its answers go.
    pub(crate) fn close(&mut self, id: u64, side: &mut SideChanges) -> Result<(), SessionError> {
        let Some(session) = self.sessions.remove(&id) else {
            return Err(SessionError::NotFound { id });
        };
        side.removes.push(session_key(id));
        for sequence in session.responses.keys() {
            side.removes.push(response_key(id, *sequence));
        }
        if let Some(deadline) = self.deadlines.remove(&id) {
            self.expiry.remove(&(deadline, id));
        }
        self.expiring.remove(&id);
        Ok(())
    }

    /// The first half of a sessioned command: drops the answers up to `acknowledged`, restarts
    /// the deadline, and says whether to apply the command (see [`Begin`]).
    pub(crate) fn begin(
        &mut self,
        id: u64,
        sequence: u64,
        acknowledged: u64,
        side: &mut SideChanges,
    ) -> Begin {
        let Some(session) = self.sessions.get_mut(&id) else {
            return Begin::Refused(SessionError::NotFound { id });
        };
        if acknowledged > session.acknowledged {
            session.acknowledged = acknowledged;
            let kept = session.responses.split_off(&acknowledged.saturating_add(1));
            let dropped = std::mem::replace(&mut session.responses, kept);
            for (sequence, (_, bytes)) in dropped {
                session.response_bytes -= bytes;
                side.removes.push(response_key(id, sequence));
            }
            side.puts.push((session_key(id), encode_meta(session)));
        }
        let begin = if let Some((result, _)) = session.responses.get(&sequence) {
            Begin::Stored(result.clone())
        } else if sequence <= session.acknowledged {
            Begin::Refused(SessionError::SequenceAcknowledged {
                id,
                sequence,
                acknowledged: session.acknowledged,
            })
        } else if session.responses.len() >= SESSION_RESPONSES_MAX
            || session.response_bytes >= SESSION_RESPONSE_BYTES_MAX
        {
            Begin::Refused(SessionError::TooManyOutstanding)
        } else {
            Begin::Apply
        };
        self.restart_deadline(id);
        begin
    }

    /// The second half: stores the answer of a command [`Sessions::begin`] said to apply.
    pub(crate) fn record(
        &mut self,
        id: u64,
        sequence: u64,
        result: &StoredResult,
        side: &mut SideChanges,
    ) {
        assert!(
            is_storable(result),
            "storing an answer a session cannot keep"
        );
        let Some(session) = self.sessions.get_mut(&id) else {
            panic!("recording an answer for session {id}, which begin() found");
        };
        assert!(
            sequence > session.acknowledged && !session.responses.contains_key(&sequence),
            "recording sequence {sequence} of session {id} that begin() did not admit"
        );
        let encoded = encode_response(result);
        session.response_bytes += encoded.len();
        session
            .responses
            .insert(sequence, (result.clone(), encoded.len()));
        side.puts.push((response_key(id, sequence), encoded));
    }

    /// One tick of this replica's clock.
    pub(crate) fn tick(&mut self) {
        self.now_ticks += 1;
    }

    /// On becoming leader: every deadline restarts at now + TTL; nothing is being expired.
    pub(crate) fn restart_deadlines(&mut self) {
        self.expiring.clear();
        for id in self.ids() {
            self.restart_deadline(id);
        }
    }

    /// On losing leadership: the expiries this node proposed are no longer its business.
    pub(crate) fn forget_expiring(&mut self) {
        self.expiring.clear();
    }

    fn restart_deadline(&mut self, id: u64) {
        let Some(session) = self.sessions.get(&id) else {
            return;
        };
        let ttl_ticks = u64::try_from(session.ttl_seconds)
            .unwrap_or(0)
            .saturating_mul(self.ticks_per_second);
        if let Some(old) = self.deadlines.remove(&id) {
            self.expiry.remove(&(old, id));
        }
        let deadline = self.now_ticks.saturating_add(ttl_ticks);
        self.deadlines.insert(id, deadline);
        self.expiry.insert((deadline, id));
    }

    /// Up to `count_max` sessions whose deadline passed and whose expiry is not under way.
    pub(crate) fn expired(&self, count_max: usize) -> Vec<u64> {
        self.expiry
            .iter()
            .take_while(|(deadline, _)| *deadline <= self.now_ticks)
            .map(|(_, id)| *id)
            .filter(|id| !self.expiring.contains(id))
            .take(count_max)
            .collect()
    }

    pub(crate) fn mark_expiring(&mut self, id: u64) {
        self.expiring.insert(id);
    }

    /// A leader's keep-alive: the deadline restarts; returns the TTL. An unknown session, or
    /// one whose expiry is under way, is not found.
    pub(crate) fn keep_alive(&mut self, id: u64) -> Result<i64, SessionError> {
        let Some(ttl_seconds) = self.sessions.get(&id).map(|session| session.ttl_seconds) else {
            return Err(SessionError::NotFound { id });
        };
        let running =
            matches!(self.deadlines.get(&id), Some(deadline) if *deadline > self.now_ticks);
        if self.expiring.contains(&id) || !running {
            return Err(SessionError::NotFound { id });
        }
        self.restart_deadline(id);
        Ok(ttl_seconds)
    }

    /// Panics unless every invariant of the type holds.
    pub(crate) fn check_invariants(&self) {
        for (id, session) in &self.sessions {
            if let Err(reason) = check_session(session) {
                panic!("session {id}: {reason}");
            }
            let deadline = self.deadlines.get(id);
            assert!(deadline.is_some(), "session {id} has no deadline");
            if let Some(deadline) = deadline {
                assert!(
                    self.expiry.contains(&(*deadline, *id)),
                    "session {id} expiry"
                );
            }
        }
        assert_eq!(self.deadlines.len(), self.sessions.len(), "stray deadlines");
        assert_eq!(
            self.expiry.len(),
            self.deadlines.len(),
            "stray expiry entries"
        );
        assert!(
            self.expiring
                .iter()
                .all(|id| self.sessions.contains_key(id)),
            "expiring a session that does not exist"
        );
    }
}

fn check_session(session: &Session) -> Result<(), &'static str> {
    if !(1..=SESSION_TTL_SECONDS_MAX).contains(&session.ttl_seconds) {
        return Err("TTL out of range");
    }
    if session.responses.len() > SESSION_RESPONSES_MAX {
        return Err("more stored answers than the limit");
    }
    if session
        .responses
        .keys()
        .next()
        .is_some_and(|sequence| *sequence <= session.acknowledged)
    {
        return Err("an answer at or below the acknowledged floor");
    }
    let bytes: usize = session.responses.values().map(|(_, bytes)| bytes).sum();
    if bytes != session.response_bytes {
        return Err("answer bytes do not add up");
    }
    let largest = session
        .responses
        .values()
        .map(|(_, bytes)| *bytes)
        .max()
        .unwrap_or(0);
    if bytes - largest >= SESSION_RESPONSE_BYTES_MAX {
        return Err("more answer bytes than the limit");
    }
    if !session
        .responses
        .values()
        .all(|(result, _)| is_storable(result))
    {
        return Err("an answer that is not storable");
    }
    Ok(())
}

fn session_key(id: u64) -> Vec<u8> {
    let mut key = vec![KEY_SESSION];
    key.extend_from_slice(&id.to_be_bytes());
    key
}

fn response_key(id: u64, sequence: u64) -> Vec<u8> {
    let mut key = vec![KEY_RESPONSE];
    key.extend_from_slice(&id.to_be_bytes());
    key.extend_from_slice(&sequence.to_be_bytes());
    key
}

fn encode_meta(session: &Session) -> Vec<u8> {
    let mut out = Vec::with_capacity(17);
    put_u8(&mut out, SESSION_META_VERSION);
    put_i64(&mut out, session.ttl_seconds);
    put_u64(&mut out, session.acknowledged);
    out
}

fn invalid(reason: &'static str) -> DecodeError {
    DecodeError::InvalidSessions { reason }
}

/// Decodes side-table entries into sessions, checking every invariant of the replicated part.
fn decode_entries(entries: &[SideEntry]) -> Result<BTreeMap<u64, Session>, DecodeError> {
    if entries.windows(2).any(|pair| pair[0].0 >= pair[1].0) {
        return Err(invalid("keys not strictly increasing"));
    }
    let mut sessions: BTreeMap<u64, Session> = BTreeMap::new();
    // Keys sort 'r' before 's': read the metas first, then the answers.
    for (key, value) in entries
        .iter()
        .filter(|(key, _)| key.first() == Some(&KEY_SESSION))
    {
        let mut reader = Reader::new(key);
        reader.u8()?;
        let id = read_be_u64(&mut reader)?;
        reader.finish()?;
        let mut reader = Reader::new(value);
        let version = reader.u8()?;
        if version != SESSION_META_VERSION {
            return Err(DecodeError::UnsupportedVersion {
                what: "session",
                version,
            });
        }
        let session = Session {
            ttl_seconds: reader.i64()?,
            acknowledged: reader.u64()?,
            responses: BTreeMap::new(),
            response_bytes: 0,
        };
        reader.finish()?;
        sessions.insert(id, session);
    }
    for (key, value) in entries
        .iter()
        .filter(|(key, _)| key.first() != Some(&KEY_SESSION))
    {
        let mut reader = Reader::new(key);
        if reader.u8()? != KEY_RESPONSE {
            return Err(invalid("unknown key kind"));
        }
        let id = read_be_u64(&mut reader)?;
        let sequence = read_be_u64(&mut reader)?;
        reader.finish()?;
        let Some(session) = sessions.get_mut(&id) else {
            return Err(invalid("an answer of a session that does not exist"));
        };
        if session.responses.len() >= SESSION_RESPONSES_MAX {
            return Err(invalid("more stored answers than the limit"));
        }
        let result = decode_response(value)?;
        if !is_storable(&result) {
            return Err(invalid("an answer that is not storable"));
        }
        session.response_bytes += value.len();
        session.responses.insert(sequence, (result, value.len()));
    }
    for session in sessions.values() {
        check_session(session).map_err(invalid)?;
    }
    Ok(sessions)
}

/// Checks that `entries` describe a valid session table (for decoders of untrusted bytes).
pub(crate) fn check_entries(entries: &[SideEntry]) -> Result<(), DecodeError> {
    decode_entries(entries).map(|_| ())
}

fn read_be_u64(reader: &mut Reader<'_>) -> Result<u64, DecodeError> {
    let bytes = reader.take(8)?;
    let mut array = [0u8; 8];
    array.copy_from_slice(bytes);
    Ok(u64::from_be_bytes(array))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::replica::CommandResponse;
    use chorus_mvcc::PutResponse;

    fn put(revision: i64) -> StoredResult {
        Ok(CommandResponse::Put(PutResponse {
            revision,
            prev_kv: None,
        }))
    }

    #[test]
    fn entries_round_trip_through_restore() {
        let mut sessions = Sessions::new(10);
        let mut side = SideChanges::default();
        let (id, _) = sessions.open(5, 30, 10, &mut side).unwrap();
        assert_eq!(sessions.begin(id, 1, 0, &mut side), Begin::Apply);
        sessions.record(id, 1, &put(2), &mut side);
        assert_eq!(sessions.begin(id, 3, 0, &mut side), Begin::Apply);
        sessions.record(id, 3, &Err(chorus_mvcc::Error::KeyNotFound), &mut side);
        let entries = sessions.entries();
        let mut restored = Sessions::new(10);
        restored.restore(&entries).unwrap();
        assert_eq!(restored.entries(), entries);
        restored.check_invariants();
        assert_eq!(
            restored.begin(id, 3, 1, &mut side),
            Begin::Stored(Err(chorus_mvcc::Error::KeyNotFound))
        );

        // An answer without its session, and keys out of order, are refused.
        let orphan: Vec<SideEntry> = entries[..entries.len() - 1].to_vec();
        assert!(Sessions::new(10).restore(&orphan).is_err());
        let mut swapped = entries.clone();
        swapped.swap(0, 1);
        assert!(Sessions::new(10).restore(&swapped).is_err());
    }

    /// One step of the property test: what a client or the leader does to the table.
    #[derive(Clone, Debug)]
    enum Step {
        Open {
            ttl_seconds: i64,
        },
        Close {
            pick: usize,
        },
        Write {
            pick: usize,
            sequence: u64,
            acknowledged: u64,
            value: i64,
        },
    }

    fn step_strategy() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        prop_oneof![
            1 => (-5i64..100).prop_map(|ttl_seconds| Step::Open { ttl_seconds }),
            1 => any::<usize>().prop_map(|pick| Step::Close { pick }),
            8 => (any::<usize>(), 0u64..12, 0u64..12, 0i64..1000).prop_map(
                |(pick, sequence, acknowledged, value)| Step::Write { pick, sequence, acknowledged, value }
            ),
        ]
    }

    proptest::proptest! {
        /// Against a model (per session: the floor and the stored answers): every decision of
        /// `begin` matches, the side-table deltas applied to a map give exactly `entries()`,
        /// and `restore` from the entries gives the same table.
        #[test]
        fn the_table_agrees_with_a_model_and_its_side_table(
            steps in proptest::collection::vec(step_strategy(), 1..80)
        ) {
            let mut sessions = Sessions::new(10);
            let mut side_table: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
            let mut model: BTreeMap<u64, (u64, BTreeMap<u64, StoredResult>)> = BTreeMap::new();
            for (index, step) in (1u64..).zip(steps) {
                let mut side = SideChanges::default();
                let ids: Vec<u64> = model.keys().copied().collect();
                let pick = |pick: usize| ids.get(pick % ids.len().max(1)).copied().unwrap_or(12345);
                match step {
                    Step::Open { ttl_seconds } => {
                        let opened = sessions.open(index, ttl_seconds, 4, &mut side);
                        if model.len() >= 4 {
                            proptest::prop_assert_eq!(opened, Err(SessionError::TooManySessions { max: 4 }));
                        } else {
                            proptest::prop_assert_eq!(opened, Ok((index, ttl_seconds.max(1))));
                            model.insert(index, (0, BTreeMap::new()));
                        }
                    }
                    Step::Close { pick: choice } => {
                        let id = pick(choice);
                        let closed = sessions.close(id, &mut side);
                        proptest::prop_assert_eq!(closed.is_ok(), model.remove(&id).is_some());
                    }
                    Step::Write { pick: choice, sequence, acknowledged, value } => {
                        let id = pick(choice);
                        let begin = sessions.begin(id, sequence, acknowledged, &mut side);
                        let expected = match model.get_mut(&id) {
                            None => Begin::Refused(SessionError::NotFound { id }),
                            Some((floor, stored)) => {
                                *floor = (*floor).max(acknowledged);
                                let floor = *floor;
                                stored.retain(|sequence, _| *sequence > floor);
                                if let Some(result) = stored.get(&sequence) {
                                    Begin::Stored(result.clone())
                                } else if sequence <= floor {
                                    Begin::Refused(SessionError::SequenceAcknowledged {
                                        id, sequence, acknowledged: floor,
                                    })
                                } else {
                                    Begin::Apply
                                }
                            }
                        };
                        proptest::prop_assert_eq!(&begin, &expected);
                        if begin == Begin::Apply {
                            let result = put(value);
                            sessions.record(id, sequence, &result, &mut side);
                            if let Some((_, stored)) = model.get_mut(&id) {
                                stored.insert(sequence, result);
                            }
                        }
                    }
                }
                for key in side.removes {
                    side_table.remove(&key);
                }
                side_table.extend(side.puts);
                sessions.check_invariants();
                let entries = sessions.entries();
                let applied: Vec<SideEntry> = side_table.clone().into_iter().collect();
                proptest::prop_assert_eq!(&applied, &entries);
                let mut restored = Sessions::new(10);
                proptest::prop_assert!(restored.restore(&entries).is_ok());
                proptest::prop_assert_eq!(restored.entries(), entries);
            }
        }
    }
}
