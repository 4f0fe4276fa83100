//! Watch `progress_notify`: a watch stream asks, once per interval, for progress notices for
//! its watchers that asked for them and had no events meanwhile; the group task answers for
//! those that are caught up (etcd sends none to a watcher that is behind).

use super::{GroupHandle, GroupInput, GroupTask};

impl GroupHandle {
    /// Asks for progress notices for `watch_ids` of `stream`, without waiting: when the group's
    /// queue is full this round is skipped (the next interval asks again).
    pub fn watch_progress_notify(&self, stream: u64, watch_ids: Vec<i64>) {
        let _ = self
            .sender
            .try_send(GroupInput::WatchProgressNotify { stream, watch_ids });
    }
}

impl GroupTask {
    pub(super) fn handle_watch_progress_notify(&mut self, stream: u64, watch_ids: &[i64]) {
        let header = self.header();
        self.watchers
            .progress_notify(stream, watch_ids, header.revision, header.raft_term);
    }
}
