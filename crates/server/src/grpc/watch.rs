//! Watch.Watch: the bidirectional stream. Each stream gets a task that takes the client's
//! create, cancel and progress requests and turns the group task's notices into responses, in
//! the order the group sent them (a watcher's `created` always before its events).
//!
//! Supported: key and range_end (prefix, from-key), start_revision (history replayed from the
//! store; a compacted one is answered `created`, then `canceled` with the compact revision, as
//! etcd does), prev_kv, the NOPUT and NODELETE filters, client-chosen watch ids, cancel, and
//! progress requests, and `progress_notify`: every
//! [`ServerState::watch_progress_notify_interval`] (etcd's default: 10 minutes) a watcher that
//! asked for it and got no events meanwhile gets a progress response (its watch id, no events,
//! the header's revision) if it is caught up. Not yet: `fragment`.

use super::ServerState;
use crate::convert;
use crate::watchers::{WatchCreate, WatchNotice, WATCH_STREAM_NOTICES_MAX};
use chorus_mvcc::{EventKind, KeyRange};
use chorus_proto::etcdserverpb as pb;
use chorus_proto::mvccpb;
use pb::watch_create_request::FilterType;
use pb::watch_request::RequestUnion;
use std::collections::BTreeSet;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// Responses queued for the client before the stream task waits for it.
const WATCH_RESPONSES_QUEUED_MAX: usize = 16;

/// The response stream of one Watch call.
pub type WatchStream = std::pin::Pin<
    Box<dyn tokio_stream::Stream<Item = Result<pb::WatchResponse, Status>> + Send + 'static>,
>;

pub async fn watch(
    state: &ServerState,
    stream: u64,
    request: Request<Streaming<pb::WatchRequest>>,
) -> Result<Response<WatchStream>, Status> {
    let requests = request.into_inner();
    let (responses, receiver) = mpsc::channel(WATCH_RESPONSES_QUEUED_MAX);
    tokio::spawn(run_stream(state.clone(), stream, requests, responses));
    Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
}

async fn run_stream(
    state: ServerState,
    stream: u64,
    mut requests: Streaming<pb::WatchRequest>,
    responses: mpsc::Sender<Result<pb::WatchResponse, Status>>,
) {
    let (notices, mut notice_receiver) = mpsc::channel(WATCH_STREAM_NOTICES_MAX);
    let mut next_watch_id: i64 = 0;
    let mut progress = ProgressNotify::default();
    let interval = state.watch_progress_notify_interval;
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            request = requests.message() => {
                let Ok(Some(request)) = request else { break };
                let Some(request) = request.request_union else { continue };
                let answer = handle_request(
                    &state, stream, request, &notices, &mut next_watch_id, &mut progress,
                ).await;
                if let Some(response) = answer {
                    if responses.send(Ok(response)).await.is_err() {
                        break;
                    }
                }
            }
            _ = ticker.tick() => {
                let watch_ids = progress.due();
                if !watch_ids.is_empty() {
                    state.group.watch_progress_notify(stream, watch_ids);
                }
            }
            notice = notice_receiver.recv() => {
                let Some(notice) = notice else { break };
                progress.observe(&notice);
                if responses.send(Ok(notice_response(&state, notice))).await.is_err() {
                    break;
                }
            }
        }
    }
    // Dropping the notice receiver closes the channel: the group task drops our watchers.
}

/// The stream's watchers that asked for `progress_notify`, and which of them got events since
/// the last interval (those get no progress notice this time, as in etcd). Bounded by the
/// stream's watchers.
#[derive(Default)]
struct ProgressNotify {
    watchers: BTreeSet<i64>,
    had_events: BTreeSet<i64>,
}

impl ProgressNotify {
    /// Follows the notices going to the client: events, and watchers that ended.
    fn observe(&mut self, notice: &WatchNotice) {
        match notice {
            WatchNotice::Events { watch_id, .. } if self.watchers.contains(watch_id) => {
                self.had_events.insert(*watch_id);
            }
            WatchNotice::Canceled { watch_id, .. } => {
                self.watchers.remove(watch_id);
                self.had_events.remove(watch_id);
            }
            _ => {}
        }
    }

    /// At the end of an interval: the watchers due a progress notice; a new interval begins.
    fn due(&mut self) -> Vec<i64> {
        let due = self
            .watchers
            .difference(&self.had_events)
            .copied()
            .collect();
        self.had_events.clear();
        due
    }
}

/// Handles one client request; returns a response to send at once, if any (errors).
async fn handle_request(
    state: &ServerState,
    stream: u64,
    request: RequestUnion,
    notices: &mpsc::Sender<WatchNotice>,
    next_watch_id: &mut i64,
    progress: &mut ProgressNotify,
) -> Option<pb::WatchResponse> {
    match request {
        RequestUnion::CreateRequest(create) => {
            let watch_id = if create.watch_id != 0 {
                create.watch_id
            } else {
                *next_watch_id += 1;
                *next_watch_id - 1
            };
            let filters: Vec<Option<FilterType>> = create
                .filters
                .iter()
                .map(|filter| FilterType::try_from(*filter).ok())
                .collect();
            let watch = WatchCreate {
                stream,
                watch_id,
                range: KeyRange::from_etcd(&create.key, &create.range_end),
                start_revision: create.start_revision,
                prev_kv: create.prev_kv,
                no_put: filters.contains(&Some(FilterType::Noput)),
                no_delete: filters.contains(&Some(FilterType::Nodelete)),
                notices: notices.clone(),
            };
            match state.group.watch(watch).await {
                Ok(()) => {
                    if create.progress_notify {
                        progress.watchers.insert(watch_id);
                    }
                    None
                }
                Err(error) => Some(pb::WatchResponse {
                    header: Some(state.header(Default::default())),
                    watch_id,
                    created: true,
                    canceled: true,
                    cancel_reason: error.to_string(),
                    ..pb::WatchResponse::default()
                }),
            }
        }
        RequestUnion::CancelRequest(cancel) => {
            match state.group.cancel_watch(stream, cancel.watch_id).await {
                Ok(_) => None,
                Err(error) => Some(pb::WatchResponse {
                    header: Some(state.header(Default::default())),
                    watch_id: cancel.watch_id,
                    canceled: true,
                    cancel_reason: error.to_string(),
                    ..pb::WatchResponse::default()
                }),
            }
        }
        RequestUnion::ProgressRequest(_) => {
            let _ = state.group.watch_progress(stream, notices.clone()).await;
            None
        }
    }
}

fn notice_response(state: &ServerState, notice: WatchNotice) -> pb::WatchResponse {
    let header = |revision, raft_term| {
        Some(state.header(crate::group::HeaderInfo {
            revision,
            raft_term,
            answered_as: None,
        }))
    };
    match notice {
        WatchNotice::Created {
            watch_id,
            revision,
            raft_term,
        } => pb::WatchResponse {
            header: header(revision, raft_term),
            watch_id,
            created: true,
            ..pb::WatchResponse::default()
        },
        WatchNotice::Events {
            watch_id,
            events,
            revision,
            raft_term,
        } => pb::WatchResponse {
            header: header(revision, raft_term),
            watch_id,
            events: events
                .into_iter()
                .map(|event| mvccpb::Event {
                    r#type: match event.kind {
                        EventKind::Put => mvccpb::event::EventType::Put,
                        EventKind::Delete => mvccpb::event::EventType::Delete,
                    } as i32,
                    kv: Some(convert::key_value(event.kv)),
                    prev_kv: event.prev_kv.map(convert::key_value),
                })
                .collect(),
            ..pb::WatchResponse::default()
        },
        WatchNotice::Canceled {
            watch_id,
            compact_revision,
            reason,
            revision,
            raft_term,
        } => pb::WatchResponse {
            header: header(revision, raft_term),
            watch_id,
            canceled: true,
            compact_revision,
            cancel_reason: reason,
            ..pb::WatchResponse::default()
        },
        WatchNotice::Progress {
            revision,
            raft_term,
        } => pb::WatchResponse {
            header: header(revision, raft_term),
            watch_id: -1,
            ..pb::WatchResponse::default()
        },
        WatchNotice::WatcherProgress {
            watch_id,
            revision,
            raft_term,
        } => pb::WatchResponse {
            header: header(revision, raft_term),
            watch_id,
            ..pb::WatchResponse::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(watch_id: i64) -> WatchNotice {
        WatchNotice::Events {
            watch_id,
            events: Vec::new(),
            revision: 1,
            raft_term: 1,
        }
    }

    #[test]
    fn progress_is_due_to_quiet_watchers_that_asked_for_it() {
        let mut progress = ProgressNotify::default();
        progress.watchers.extend([1, 2]);
        assert_eq!(progress.due(), vec![1, 2]);
        progress.observe(&events(1));
        progress.observe(&events(3));
        assert_eq!(progress.due(), vec![2]);
        assert_eq!(progress.due(), vec![1, 2]);
        progress.observe(&WatchNotice::Canceled {
            watch_id: 2,
            compact_revision: 0,
            reason: String::new(),
            revision: 1,
            raft_term: 1,
        });
        assert_eq!(progress.due(), vec![1]);
    }
}
