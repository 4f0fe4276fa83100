//! The admin port's JSON: `/readyz`, `/api/status` (this member), `/api/members` (everyone,
//! with each member's own status), `/api/keys` and `/api/key` (a key browser over this
//! member's applied state: serializable reads, so they work without a leader).
//!
//! Ids are hex strings (JavaScript numbers cannot hold a u64); keys and values are shown as
//! UTF-8 (lossy) and cut to a bounded length.

use super::health::{readiness, ReadinessInput};
use super::AdminState;
use crate::grpc::ETCD_API_VERSION;
use crate::metrics::{lock, metrics};
use axum::extract::State;
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chorus_mvcc::{prefix_range_end, KeyValue, RangeRequest};
use chorus_proto::etcdserverpb as pb;
use chorus_raft::{NodeId, Role};
use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Keys listed by one `/api/keys` at most.
pub const KEYS_LISTED_MAX: i64 = 1000;
/// Keys listed when the request does not say.
const KEYS_LISTED_DEFAULT: i64 = 100;
/// Earlier revisions of a key shown by `/api/key`.
pub const KEY_HISTORY_MAX: usize = 10;
/// Bytes of a value shown (the rest is cut; its full size is given).
pub const VALUE_SHOWN_BYTES_MAX: usize = 4096;
/// How long `/api/members` waits for another member's status.
const MEMBER_STATUS_TIMEOUT: Duration = Duration::from_millis(800);
/// Channels to other members kept; past it the cache starts over (members could announce
/// ever new client URLs).
const MEMBER_CHANNELS_MAX: usize = 64;
/// How long `/readyz` and `/api/status` wait for the group task (a busy or stuck task makes
/// the member not ready rather than the probe hang for the request timeout).
const OBSERVE_TIMEOUT: Duration = Duration::from_secs(2);
/// Query strings longer than this are refused.
const QUERY_BYTES_MAX: usize = 8192;

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn error_response(status: StatusCode, message: &str) -> Response {
    json_response(status, &json!({ "error": message }))
}

fn hex(id: NodeId) -> String {
    format!("{:x}", id.0)
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Leader => "leader",
        Role::Follower => "follower",
        Role::Candidate => "candidate",
        Role::PreCandidate => "pre-candidate",
    }
}

/// The group's observation, within [`OBSERVE_TIMEOUT`].
async fn observe(state: &AdminState) -> Result<crate::group::GroupObservation, String> {
    match tokio::time::timeout(OBSERVE_TIMEOUT, state.group.observe()).await {
        Ok(Ok(observation)) => Ok(observation),
        Ok(Err(error)) => Err(format!("the group does not answer: {error}")),
        Err(_) => Err(format!(
            "the group does not answer within {OBSERVE_TIMEOUT:?}"
        )),
    }
}

pub(super) async fn readyz(State(state): State<AdminState>) -> Response {
    let answer = match observe(&state).await {
        Ok(observation) => readiness(ReadinessInput {
            shutting_down: metrics().shutting_down.get() != 0,
            has_leader: observation.leader.is_some(),
            commit_index: observation.commit_index,
            applied_index: observation.applied_index,
        }),
        Err(reason) => Err(reason),
    };
    match answer {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")).into_response(),
    }
}

pub(super) async fn status(State(state): State<AdminState>) -> Response {
    let observation = match observe(&state).await {
        Ok(observation) => observation,
        Err(message) => return error_response(StatusCode::SERVICE_UNAVAILABLE, &message),
    };
    let names = state.members.list();
    let name_of = |id: NodeId| {
        names
            .iter()
            .find(|member| member.id == id)
            .map(|member| member.name.clone())
    };
    let metrics = metrics();
    let (history, leader_since_seconds) = {
        let observed = lock(&metrics.observed);
        let history: Vec<Value> = observed
            .leader_history
            .iter()
            .rev()
            .map(|change| {
                let wall_ms = change
                    .wall
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |since| since.as_millis());
                json!({
                    "term": change.term,
                    "leader": change.leader.map(|id| format!("{id:x}")),
                    "leader_name": change.leader.and_then(|id| name_of(NodeId(id))),
                    "wall_unix_ms": u64::try_from(wall_ms).unwrap_or(u64::MAX),
                    "seconds_ago": change.at.elapsed().as_secs_f64(),
                })
            })
            .collect();
        let since = observed
            .leader_history
            .back()
            .filter(|change| {
                change.leader.is_some() && change.leader == observation.leader.map(|id| id.0)
            })
            .map(|change| change.at.elapsed().as_secs_f64());
        (history, since)
    };
    let ready = readiness(ReadinessInput {
        shutting_down: metrics.shutting_down.get() != 0,
        has_leader: observation.leader.is_some(),
        commit_index: observation.commit_index,
        applied_index: observation.applied_index,
    });
    let lag: Vec<Value> = observation
        .follower_lag()
        .into_iter()
        .map(|(id, lag)| json!({ "id": hex(id), "name": name_of(id), "lag_entries": lag }))
        .collect();
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis());
    let body = json!({
        "id": hex(observation.id),
        "name": state.name,
        "admin_url": state.admin_url,
        "role": role_name(observation.role),
        "leader": observation.leader.map(hex),
        "leader_name": observation.leader.and_then(name_of),
        "leader_since_seconds": leader_since_seconds,
        "term": observation.term,
        "commit_index": observation.commit_index,
        "applied_index": observation.applied_index,
        "last_index": observation.last_index,
        "snapshot_index": observation.snapshot_index,
        "revision": observation.revision,
        "db_size_bytes": state.database_bytes(),
        "version": ETCD_API_VERSION,
        "server_version": env!("CARGO_PKG_VERSION"),
        "ready": ready.is_ok(),
        "not_ready_reason": ready.err(),
        "follower_lag": lag,
        "follower_read": state.follower_reads.as_ref().map(follower_read_json),
        "leader_changes": history,
        "leader_changes_total": metrics.leader_changes.get(),
        "requests_total": metrics.requests_total(),
        "proposals_committed_total": metrics.proposals_committed.get(),
        "proposals_failed_total": metrics.proposals_failed.get(),
        "proposals_pending": observation.proposals_pending,
        "watchers": observation.watchers,
        "watch_streams": observation.watch_streams,
        "leases": observation.leases,
        "sessions": observation.sessions,
        "now_unix_ms": u64::try_from(now_ms).unwrap_or(u64::MAX),
    });
    json_response(StatusCode::OK, &body)
}

pub(super) async fn members(State(state): State<AdminState>) -> Response {
    let local = state.members.local_id;
    let mut lookups = tokio::task::JoinSet::new();
    for member in state.members.list() {
        let state = state.clone();
        lookups.spawn(async move {
            let status = if member.id == local {
                local_status(&state).await
            } else {
                remote_status(&state, member.client_urls.first().cloned()).await
            };
            (member, status)
        });
    }
    let mut rows = Vec::new();
    while let Some(joined) = lookups.join_next().await {
        let Ok((member, status)) = joined else {
            continue;
        };
        let (status, error) = match status {
            Ok(status) => (status, None),
            Err(error) => (Value::Null, Some(error)),
        };
        rows.push((
            member.id,
            json!({
                "id": hex(member.id),
                "name": member.name,
                "peer_urls": member.peer_urls,
                "is_learner": member.is_learner,
                "client_urls": member.client_urls,
                "admin_url": (member.id == local).then(|| state.admin_url.clone()),
                "is_self": member.id == local,
                "status": status,
                "error": error,
            }),
        ));
    }
    rows.sort_by_key(|(id, _)| *id);
    let members: Vec<Value> = rows.into_iter().map(|(_, row)| row).collect();
    json_response(
        StatusCode::OK,
        &json!({ "self": hex(local), "members": members }),
    )
}

/// The fields of a member's status the page shows, from this member's group.
async fn local_status(state: &AdminState) -> Result<Value, String> {
    let observation = observe(state).await?;
    Ok(json!({
        "leader": observation.leader.map(hex),
        "term": observation.term,
        "commit_index": observation.commit_index,
        "applied_index": observation.applied_index,
        "revision": observation.revision,
        "db_size_bytes": state.database_bytes(),
        "version": ETCD_API_VERSION,
    }))
}

/// The same fields from another member, through its gRPC `Maintenance.Status`.
async fn remote_status(state: &AdminState, client_url: Option<String>) -> Result<Value, String> {
    let Some(url) = client_url else {
        return Err("client URL not known yet (the member has not connected)".to_string());
    };
    let channel = {
        let mut channels = lock(&state.channels);
        match channels.get(&url) {
            Some(channel) => channel.clone(),
            None => {
                let endpoint = tonic::transport::Endpoint::from_shared(url.clone())
                    .map_err(|error| format!("client URL {url}: {error}"))?
                    .connect_timeout(MEMBER_STATUS_TIMEOUT)
                    .timeout(MEMBER_STATUS_TIMEOUT);
                let channel = endpoint.connect_lazy();
                if channels.len() >= MEMBER_CHANNELS_MAX {
                    channels.clear();
                }
                channels.insert(url.clone(), channel.clone());
                channel
            }
        }
    };
    let mut client = pb::maintenance_client::MaintenanceClient::new(channel);
    let call = client.status(pb::StatusRequest {});
    let response = match tokio::time::timeout(MEMBER_STATUS_TIMEOUT, call).await {
        Ok(Ok(response)) => response.into_inner(),
        Ok(Err(status)) => return Err(format!("unreachable: {}", status.message())),
        Err(_) => return Err("unreachable: no answer in time".to_string()),
    };
    Ok(json!({
        "leader": (response.leader != 0).then(|| format!("{:x}", response.leader)),
        "term": response.raft_term,
        "commit_index": response.raft_index,
        "applied_index": response.raft_applied_index,
        "revision": response.header.map_or(0, |header| header.revision),
        "db_size_bytes": response.db_size,
        "version": response.version,
    }))
}

/// The decoded `name=value` pairs of a query string (bounded; `+` is a space).
pub fn query_pairs(uri: &Uri) -> Result<Vec<(String, Vec<u8>)>, String> {
    let query = uri.query().unwrap_or("");
    if query.len() > QUERY_BYTES_MAX {
        return Err(format!("the query is longer than {QUERY_BYTES_MAX} bytes"));
    }
    query
        .split('&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (name, value) = part.split_once('=').unwrap_or((part, ""));
            let name = String::from_utf8_lossy(&percent_decode(name)?).into_owned();
            Ok((name, percent_decode(value)?))
        })
        .collect()
}

fn percent_decode(text: &str) -> Result<Vec<u8>, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'+' => out.push(b' '),
            b'%' => {
                let digits = bytes
                    .get(index + 1..index + 3)
                    .and_then(|digits| std::str::from_utf8(digits).ok())
                    .and_then(|digits| u8::from_str_radix(digits, 16).ok())
                    .ok_or_else(|| format!("bad percent escape in {text:?}"))?;
                out.push(digits);
                index += 2;
            }
            byte => out.push(byte),
        }
        index += 1;
    }
    Ok(out)
}

fn param<'a>(pairs: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    pairs
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_slice())
}

fn number_param(pairs: &[(String, Vec<u8>)], name: &str) -> Result<Option<i64>, String> {
    match param(pairs, name) {
        None | Some(b"") => Ok(None),
        Some(value) => std::str::from_utf8(value)
            .ok()
            .and_then(|text| text.parse::<i64>().ok())
            .filter(|number| *number >= 0)
            .map(Some)
            .ok_or_else(|| format!("{name} must be a number, at least 0")),
    }
}

fn shown(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(VALUE_SHOWN_BYTES_MAX)];
    String::from_utf8_lossy(cut).into_owned()
}

pub(super) async fn keys(State(state): State<AdminState>, uri: Uri) -> Response {
    let parsed = query_pairs(&uri).and_then(|pairs| {
        let limit = number_param(&pairs, "limit")?.unwrap_or(KEYS_LISTED_DEFAULT);
        Ok((param(&pairs, "prefix").unwrap_or(b"").to_vec(), limit))
    });
    let (prefix, limit) = match parsed {
        Ok(parsed) => parsed,
        Err(message) => return error_response(StatusCode::BAD_REQUEST, &message),
    };
    let request = RangeRequest {
        key: if prefix.is_empty() {
            vec![0]
        } else {
            prefix.clone()
        },
        range_end: prefix_range_end(&prefix),
        limit: limit.clamp(1, KEYS_LISTED_MAX),
        keys_only: true,
        ..RangeRequest::default()
    };
    match state.group.range(request, false).await {
        Ok((response, _)) => {
            let keys: Vec<Value> = response
                .kvs
                .iter()
                .map(|kv| {
                    json!({
                        "key": shown(&kv.key),
                        "create_revision": kv.create_revision,
                        "mod_revision": kv.mod_revision,
                        "version": kv.version,
                        "lease": format!("{:x}", kv.lease),
                    })
                })
                .collect();
            json_response(
                StatusCode::OK,
                &json!({
                    "revision": response.revision,
                    "count": response.count,
                    "more": response.more,
                    "keys": keys,
                }),
            )
        }
        Err(error) => error_response(StatusCode::SERVICE_UNAVAILABLE, &error.to_string()),
    }
}

fn key_value_json(kv: &KeyValue) -> Value {
    json!({
        "mod_revision": kv.mod_revision,
        "create_revision": kv.create_revision,
        "version": kv.version,
        "lease": format!("{:x}", kv.lease),
        "value": shown(&kv.value),
        "value_bytes": kv.value.len(),
        "value_utf8": std::str::from_utf8(&kv.value).is_ok(),
    })
}

pub(super) async fn key(State(state): State<AdminState>, uri: Uri) -> Response {
    let parsed = query_pairs(&uri).and_then(|pairs| {
        let key = param(&pairs, "key")
            .filter(|key| !key.is_empty())
            .ok_or("key is required")?
            .to_vec();
        Ok((key, number_param(&pairs, "rev")?.unwrap_or(0)))
    });
    let (key, revision) = match parsed {
        Ok(parsed) => parsed,
        Err(message) => return error_response(StatusCode::BAD_REQUEST, &message),
    };
    let read = |revision: i64| {
        let request = RangeRequest {
            key: key.clone(),
            revision,
            ..RangeRequest::default()
        };
        state.group.range(request, false)
    };
    let (first, store_revision) = match read(revision).await {
        Ok((response, _)) => (response.kvs.into_iter().next(), response.revision),
        Err(error) => return error_response(StatusCode::BAD_REQUEST, &error.to_string()),
    };
    // Earlier versions of the same generation: the value just before each modification.
    let mut history = Vec::new();
    let mut current = first.clone();
    while let Some(kv) = current.take() {
        if history.len() >= KEY_HISTORY_MAX || kv.version <= 1 {
            break;
        }
        match read(kv.mod_revision - 1).await {
            Ok((response, _)) => {
                if let Some(previous) = response.kvs.into_iter().next() {
                    history.push(key_value_json(&previous));
                    current = Some(previous);
                }
            }
            // Compacted: nothing older to show.
            Err(_) => break,
        }
    }
    let body = json!({
        "key": shown(&key),
        "revision": store_revision,
        "at_revision": revision,
        "found": first.is_some(),
        "value": first.as_ref().map(key_value_json),
        "history": history,
    });
    json_response(StatusCode::OK, &body)
}

/// This member's lag as stamped follower reads see it: entries committed but not applied, and
/// how long ago a leader was last heard from (`null` on the leader or when none is known).
fn follower_read_json(reads: &crate::follower_read::FollowerReads) -> Value {
    let progress = reads.progress();
    let contact_ms_ago = progress
        .leader_contact
        .filter(|_| !progress.is_leader)
        .map(|contact| u64::try_from(contact.elapsed().as_millis()).unwrap_or(u64::MAX));
    json!({
        "revision": progress.revision,
        "lag_entries": progress.lag_entries(),
        "leader_contact_ms_ago": contact_ms_ago,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_decode_and_bad_escapes_are_refused() {
        let uri: Uri = "/api/key?key=a%2Fb+c&rev=5".parse().unwrap();
        let pairs = query_pairs(&uri).unwrap();
        assert_eq!(param(&pairs, "key"), Some(&b"a/b c"[..]));
        assert_eq!(number_param(&pairs, "rev").unwrap(), Some(5));
        let uri: Uri = "/api/key?key=%zz".parse().unwrap();
        assert!(query_pairs(&uri).is_err());
        let uri: Uri = "/api/key?rev=-1".parse().unwrap();
        assert!(number_param(&query_pairs(&uri).unwrap(), "rev").is_err());
    }
}
