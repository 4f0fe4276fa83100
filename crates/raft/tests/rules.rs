//! One test per rule of the protocol, each a short scenario over the in-memory cluster. Sections
//! of the Raft paper (§) and of Ongaro's thesis (thesis §) are cited where they state the rule.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use bytes::Bytes;
use chorus_raft::{
    AppendEntriesResponse, ConfChange, ConfChangeStep, Config, Entry, EntryPayload, HardState,
    LeaseConfig, LogIndex, Message, MessageBody, NodeId, ProposeError, Raft, RestoreState, Role,
    Term,
};
use support::{ids, Cluster};

/// A (non-pre-)vote request from a candidate whose log ends at `last`.
fn vote_request(from: NodeId, to: NodeId, term: Term, last: (LogIndex, Term)) -> Message {
    Message {
        group: chorus_raft::GroupId(1),
        from,
        to,
        term,
        body: MessageBody::RequestVote(chorus_raft::RequestVote {
            pre_vote: false,
            last_log_index: last.0,
            last_log_term: last.1,
            transfer: false,
        }),
    }
}

fn data(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

#[test]
fn a_leader_is_elected_after_the_election_timeout() {
    let mut cluster = Cluster::new(3);
    cluster.tick(30);
    assert_eq!(cluster.leaders().len(), 1);
}

#[test]
fn a_proposal_commits_on_every_node() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.raft(1).propose(data("x")).unwrap();
    cluster.settle();
    cluster.tick(2);
    for id in 1..=3 {
        assert_eq!(cluster.applied_data(id), vec![data("x")], "n{id}");
    }
}

#[test]
fn vote_is_persisted_before_it_is_sent() {
    // §5.2, figure 2: currentTerm and votedFor are updated on stable storage before responding.
    let mut voter = Raft::new(Config::new(NodeId(2), ids(3)), RestoreState::default());
    voter.step(vote_request(
        NodeId(1),
        NodeId(2),
        Term(1),
        (LogIndex(0), Term(0)),
    ));
    let ready = voter.ready();
    assert_eq!(
        ready.hard_state.map(|h| (h.term, h.vote)),
        Some((Term(1), Some(NodeId(1))))
    );
    assert!(
        ready.messages.is_empty(),
        "a vote must not be sent before the persist"
    );
    assert!(matches!(
        &ready.messages_after_persist[0].body,
        MessageBody::RequestVoteResponse(r) if r.granted
    ));
}

#[test]
fn one_vote_per_term() {
    let mut cluster = Cluster::new(3);
    cluster.isolate(1);
    cluster.isolate(2);
    cluster.raft(1).campaign(); // pre-vote fails while isolated
    cluster.heal();
    let mut voter = Raft::new(Config::new(NodeId(3), ids(3)), RestoreState::default());
    let request =
        |from: u64| vote_request(NodeId(from), NodeId(3), Term(5), (LogIndex(0), Term(0)));
    voter.step(request(1));
    voter.step(request(2));
    let ready = voter.ready();
    let grants: Vec<bool> = ready
        .messages_after_persist
        .iter()
        .map(|m| matches!(&m.body, MessageBody::RequestVoteResponse(r) if r.granted))
        .collect();
    assert_eq!(grants, vec![true, false]);
}

#[test]
fn vote_refused_to_a_candidate_with_a_stale_log() {
    // §5.4.1: the voter denies its vote if its own log is more up to date.
    let restore = RestoreState {
        hard_state: HardState {
            term: Term(2),
            vote: None,
            commit: LogIndex(0),
        },
        snapshot: None,
        entries: vec![Entry {
            term: Term(2),
            index: LogIndex(1),
            payload: EntryPayload::Noop,
        }],
    };
    let mut voter = Raft::new(Config::new(NodeId(2), ids(3)), restore);
    voter.step(vote_request(
        NodeId(1),
        NodeId(2),
        Term(3),
        (LogIndex(5), Term(1)),
    ));
    let ready = voter.ready();
    assert!(matches!(
        &ready.messages_after_persist[0].body,
        MessageBody::RequestVoteResponse(r) if !r.granted
    ));
}

#[test]
fn vote_survives_a_restart() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    let term = cluster.raft(2).term();
    cluster.crash(2);
    cluster.restart(2);
    assert_eq!(cluster.raft(2).hard_state().vote, Some(NodeId(1)));
    assert_eq!(cluster.raft(2).term(), term);
}

#[test]
fn pre_vote_keeps_a_rejoining_node_from_deposing_the_leader() {
    // thesis §9.6: a node that was partitioned away does not disrupt the cluster when it returns.
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    let term = cluster.raft(1).term();
    cluster.isolate(3);
    cluster.tick(50); // n3 times out again and again, but pre-votes fail: its term stays
    assert_eq!(cluster.raft(3).term(), term);
    cluster.heal();
    cluster.tick(5);
    assert_eq!(cluster.leaders(), vec![NodeId(1)]);
    assert_eq!(cluster.raft(1).term(), term);
}

#[test]
fn without_pre_vote_a_rejoining_node_bumps_the_term() {
    // The counterpart of the test above: shows that pre-vote is what prevents the disruption.
    let mut cluster = Cluster::with_config(3, |c| {
        c.pre_vote = false;
        c.check_quorum = false;
    });
    cluster.elect(1);
    let term = cluster.raft(1).term();
    cluster.isolate(3);
    cluster.tick(50);
    assert!(cluster.raft(3).term() > term);
}

#[test]
fn check_quorum_makes_an_isolated_leader_step_down_within_an_election_timeout() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.isolate(1);
    cluster.tick(10); // election_timeout_ticks
    assert_ne!(cluster.raft(1).role(), Role::Leader);
}

#[test]
fn followers_ignore_votes_while_the_leader_is_heard() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    let term = cluster.raft(1).term();
    // n3 campaigns without waiting for a timeout: n2 has heard from n1 and disregards it.
    cluster.raft(3).campaign();
    cluster.settle();
    assert_eq!(cluster.leaders(), vec![NodeId(1)]);
    assert_eq!(cluster.raft(2).term(), term);
}

#[test]
fn leader_commits_only_entries_of_its_own_term_by_counting() {
    // §5.4.2 and figure 8: an entry from an earlier term is not committed by counting replicas.
    let old = |i| Entry {
        term: Term(1),
        index: LogIndex(i),
        payload: EntryPayload::Noop,
    };
    let restore = RestoreState {
        hard_state: HardState {
            term: Term(2),
            vote: None,
            commit: LogIndex(0),
        },
        snapshot: None,
        entries: vec![old(1), old(2), old(3)],
    };
    let mut config = Config::new(NodeId(1), ids(3));
    config.pre_vote = false;
    let mut leader = Raft::new(config, restore);
    leader.campaign();
    let ready = leader.ready();
    leader.advance();
    let term = leader.term();
    for message in ready.messages_after_persist {
        let vote = chorus_raft::RequestVoteResponse {
            pre_vote: false,
            granted: true,
        };
        leader.step(Message {
            from: message.to,
            to: NodeId(1),
            term,
            body: MessageBody::RequestVoteResponse(vote),
            ..message
        });
    }
    assert_eq!(leader.role(), Role::Leader);
    let _ = leader.ready();
    leader.advance();
    let ack = |index: u64| Message {
        group: chorus_raft::GroupId(1),
        from: NodeId(2),
        to: NodeId(1),
        term,
        body: MessageBody::AppendEntriesResponse(AppendEntriesResponse {
            index: LogIndex(index),
            rejected: false,
            hint_index: LogIndex(0),
            hint_term: Term(0),
        }),
    };
    leader.step(ack(3));
    assert_eq!(
        leader.commit_index(),
        LogIndex(0),
        "old-term entries committed by counting"
    );
    leader.step(ack(4)); // the new leader's no-op, of its own term
    assert_eq!(leader.commit_index(), LogIndex(4));
}

#[test]
fn a_minority_cannot_commit() {
    let mut cluster = Cluster::new(5);
    cluster.elect(1);
    let before = cluster.commit(1);
    for other in 2..=4 {
        cluster.isolate(other);
    }
    cluster.raft(1).propose(data("lost")).unwrap();
    cluster.settle();
    assert_eq!(cluster.commit(1), before);
}

#[test]
fn conflicting_follower_logs_are_repaired_by_fast_backtracking() {
    // §5.3: the leader forces followers' logs to duplicate its own.
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.isolate(1);
    for i in 0..50 {
        let _ = cluster.raft(1).propose(data(&format!("orphan{i}")));
    }
    cluster.settle();
    cluster.tick(30); // n2 or n3 is elected
    let leader = cluster
        .leaders()
        .into_iter()
        .find(|id| *id != NodeId(1))
        .unwrap();
    for i in 0..20 {
        cluster
            .raft(leader.0)
            .propose(data(&format!("kept{i}")))
            .unwrap();
    }
    cluster.settle();
    cluster.heal();
    let sent_before = cluster.queue.len();
    let _ = sent_before;
    cluster.tick(5);
    let expected = cluster.applied_data(leader.0);
    assert_eq!(cluster.applied_data(1), expected);
    assert_eq!(
        cluster.raft(1).last_index(),
        cluster.raft(leader.0).last_index()
    );
}

#[test]
fn a_lagging_follower_receives_a_snapshot_in_chunks() {
    let mut cluster = Cluster::with_config(3, |c| c.snapshot_chunk_bytes = 4);
    cluster.elect(1);
    cluster.isolate(3);
    for i in 0..10 {
        cluster.raft(1).propose(data(&format!("v{i}"))).unwrap();
    }
    cluster.settle();
    cluster.tick(1);
    let applied = cluster.raft(1).applied_index();
    cluster
        .raft(1)
        .compact(applied, data("state-of-the-machine"))
        .unwrap();
    cluster
        .raft(2)
        .compact(applied, data("state-of-the-machine"))
        .unwrap();
    cluster.heal();
    let chunks_before = chunk_messages(&cluster);
    assert_eq!(chunks_before, 0);
    cluster.tick(3);
    let node = cluster.node(3);
    let snapshot = node
        .disk
        .snapshot
        .as_ref()
        .expect("n3 installed a snapshot");
    assert_eq!(snapshot.data, data("state-of-the-machine"));
    assert_eq!(snapshot.meta.last_index, applied);
    assert_eq!(
        cluster.raft(3).commit_index(),
        cluster.raft(1).commit_index()
    );
}

#[test]
fn a_leader_that_released_its_snapshot_data_asks_for_it_before_sending_it() {
    let mut cluster = Cluster::with_config(3, |c| c.snapshot_chunk_bytes = 4);
    cluster.elect(1);
    cluster.isolate(3);
    for i in 0..10 {
        cluster.raft(1).propose(data(&format!("v{i}"))).unwrap();
    }
    cluster.settle();
    cluster.tick(1);
    let applied = cluster.raft(1).applied_index();
    for id in [1, 2] {
        let raft = cluster.raft(id);
        raft.compact(applied, data("state-of-the-machine")).unwrap();
        raft.release_snapshot_data();
        assert_eq!(raft.snapshot_data_wanted(), None, "nobody needs it yet");
    }
    cluster.heal();
    cluster.tick(3);
    assert_eq!(chunk_messages(&cluster), 0, "no data, no chunk");
    assert!(cluster.node(3).disk.snapshot.is_none());
    assert_eq!(cluster.raft(1).snapshot_data_wanted(), Some(applied));
    assert!(
        !cluster
            .raft(1)
            .provide_snapshot_data(applied.prev(), data("stale")),
        "data of another snapshot is refused"
    );
    assert!(cluster
        .raft(1)
        .provide_snapshot_data(applied, data("state-of-the-machine")));
    assert_eq!(cluster.raft(1).snapshot_data_wanted(), None);
    cluster.tick(3);
    let snapshot = cluster
        .node(3)
        .disk
        .snapshot
        .clone()
        .expect("n3 installed the snapshot once the leader had its data");
    assert_eq!(snapshot.data, data("state-of-the-machine"));
    assert_eq!(snapshot.meta.last_index, applied);
    assert_eq!(
        cluster.raft(3).commit_index(),
        cluster.raft(1).commit_index()
    );
}

fn chunk_messages(cluster: &Cluster) -> usize {
    cluster
        .queue
        .iter()
        .filter(|m| matches!(m.body, MessageBody::InstallSnapshot(_)))
        .count()
}

#[test]
fn compaction_beyond_applied_is_refused() {
    let mut cluster = Cluster::new(1);
    cluster.elect(1);
    let applied = cluster.raft(1).applied_index();
    assert!(cluster.raft(1).compact(applied.next(), data("s")).is_err());
}

#[test]
fn read_index_waits_for_a_heartbeat_round() {
    // thesis §6.4: the leader confirms it is still leader before answering.
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.isolate(1);
    cluster.raft(1).read_index(7).unwrap();
    cluster.settle();
    assert!(
        cluster.node(1).read_states.is_empty(),
        "an isolated leader answered a read"
    );
    cluster.heal();
    // The round sent while isolated is still unanswered, so the read waits for the next
    // heartbeat tick's round (one read round in flight at a time).
    cluster.raft(1).read_index(8).unwrap();
    cluster.settle();
    assert!(cluster.node(1).read_states.is_empty());
    cluster.tick(1);
    cluster.settle();
    let ids: Vec<u64> = cluster.node(1).read_states.iter().map(|r| r.id).collect();
    assert!(ids.contains(&8));
}

#[test]
fn a_re_elected_leader_answers_reads_without_a_tick() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.raft(1).read_index(1).unwrap();
    cluster.settle(); // n1 sent read rounds in its first leadership
    cluster.raft(1).transfer_leadership(NodeId(2)).unwrap();
    cluster.settle();
    cluster.raft(2).transfer_leadership(NodeId(1)).unwrap();
    cluster.settle();
    assert_eq!(cluster.leaders(), vec![NodeId(1)]);
    cluster.raft(1).read_index(2).unwrap();
    cluster.settle(); // no tick
    let ids: Vec<u64> = cluster.node(1).read_states.iter().map(|r| r.id).collect();
    assert_eq!(ids, vec![1, 2], "the read waited for a heartbeat tick");
}

#[test]
fn reads_arriving_while_a_round_is_out_share_the_next_one() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.settle();
    let heartbeats = |cluster: &Cluster| {
        (cluster.queue.iter())
            .filter(|m| matches!(m.body, MessageBody::Heartbeat(_)))
            .count()
    };
    assert_eq!(heartbeats(&cluster), 0);
    cluster.raft(1).read_index(1).unwrap();
    cluster.process_ready(NodeId(1)); // the round for read 1 goes out
    assert_eq!(heartbeats(&cluster), 2);
    for id in 2..=5 {
        cluster.raft(1).read_index(id).unwrap();
        cluster.process_ready(NodeId(1)); // no new round while the first is unanswered
    }
    assert_eq!(heartbeats(&cluster), 2, "a second round while one was out");
    cluster.settle(); // round 1 answered, then one round for reads 2..=5
    let ids: Vec<u64> = cluster.node(1).read_states.iter().map(|r| r.id).collect();
    assert_eq!(ids, vec![1, 2, 3, 4, 5], "every read answered");
}

#[test]
fn read_index_from_a_follower_goes_through_the_leader() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.raft(1).propose(data("x")).unwrap();
    cluster.settle();
    cluster.raft(2).read_index(9).unwrap();
    cluster.settle();
    let state = cluster.node(2).read_states[0];
    assert_eq!(state.id, 9);
    assert_eq!(state.index, cluster.raft(1).commit_index());
}

#[test]
fn reads_fail_when_leadership_is_lost() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.isolate(1);
    cluster.raft(1).read_index(5).unwrap();
    cluster.tick(10); // check-quorum: n1 steps down
    assert_eq!(cluster.node(1).failed_reads, vec![5]);
}

#[test]
fn lease_reads_are_local_while_the_lease_holds() {
    let mut cluster = Cluster::with_config(3, |c| {
        c.lease = Some(LeaseConfig {
            clock_drift_bound_ppm: 10_000,
        });
    });
    cluster.tick(30); // with leases, nodes wait an election timeout after starting
    let leader = cluster.leaders()[0].0;
    cluster.tick(2); // heartbeats acknowledged: the lease is fresh
    cluster.isolate(leader);
    cluster.raft(leader).read_index(1).unwrap();
    cluster.process_all();
    assert_eq!(
        cluster.node(leader).read_states.len(),
        1,
        "no lease read within the lease"
    );
    cluster.tick(9); // the lease (10 ticks less drift and slack) has run out
    let _ = cluster.raft(leader).read_index(2);
    cluster.process_all();
    assert_eq!(
        cluster.node(leader).read_states.len(),
        1,
        "a lease read after the lease expired"
    );
}

#[test]
fn with_leases_a_restarted_node_waits_before_voting() {
    let mut cluster = Cluster::with_config(3, |c| {
        c.lease = Some(LeaseConfig {
            clock_drift_bound_ppm: 10_000,
        });
    });
    cluster.tick(30);
    let leader = cluster.leaders()[0].0;
    let term = cluster.raft(leader).term();
    let others: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    // Both followers restart: they forget the leader but must not elect another at once.
    cluster.crash(others[0]);
    cluster.restart(others[0]);
    cluster.crash(others[1]);
    cluster.restart(others[1]);
    cluster.isolate(leader);
    cluster.raft(others[0]).campaign();
    cluster.settle();
    assert_eq!(
        cluster.raft(others[1]).term(),
        term,
        "voted within the lease window"
    );
}

#[test]
fn leadership_transfer_hands_over_and_refuses_proposals_meanwhile() {
    // thesis §3.10.
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.isolate(2);
    cluster.raft(1).propose(data("x")).unwrap();
    cluster.settle();
    cluster.raft(1).transfer_leadership(NodeId(2)).unwrap();
    assert_eq!(
        cluster.raft(1).propose(data("y")),
        Err(ProposeError::TransferInProgress { to: NodeId(2) })
    );
    cluster.heal();
    cluster.tick(2);
    assert_eq!(cluster.leaders(), vec![NodeId(2)]);
}

#[test]
fn a_refused_proposal_names_the_leader() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.tick(1);
    assert_eq!(
        cluster.raft(2).propose(data("x")),
        Err(ProposeError::NotLeader {
            leader: Some(NodeId(1))
        })
    );
}

#[test]
fn an_oversized_proposal_is_refused() {
    let mut cluster = Cluster::with_config(1, |c| c.proposal_bytes_max = 8);
    cluster.elect(1);
    let result = cluster.raft(1).propose(Bytes::from(vec![0; 9]));
    assert_eq!(
        result,
        Err(ProposeError::TooLarge {
            size_bytes: 9,
            max_bytes: 8
        })
    );
}

#[test]
fn a_batch_with_one_oversized_proposal_is_refused_whole() {
    let mut cluster = Cluster::with_config(1, |c| c.proposal_bytes_max = 8);
    cluster.elect(1);
    let last = cluster.raft(1).last_index();
    let batch = vec![data("ok"), Bytes::from(vec![0; 9])];
    let result = cluster.raft(1).propose_batch(batch);
    assert_eq!(
        result,
        Err(ProposeError::TooLarge {
            size_bytes: 9,
            max_bytes: 8
        })
    );
    assert_eq!(
        cluster.raft(1).last_index(),
        last,
        "part of a refused batch was appended"
    );
}

#[test]
fn a_learner_catches_up_then_is_promoted_through_a_joint_configuration() {
    // thesis §4.2.1 (catching up) and §4.3 (joint consensus).
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    for i in 0..5 {
        cluster.raft(1).propose(data(&format!("v{i}"))).unwrap();
    }
    cluster.settle();
    cluster.add_node(NodeId(4), ids(3), Vec::new());
    let change = ConfChange {
        steps: vec![ConfChangeStep::AddLearner(NodeId(4))],
    };
    cluster.raft(1).propose_conf_change(change).unwrap();
    cluster.tick(3);
    assert!(cluster.raft(4).membership().learners.contains(&NodeId(4)));
    assert_eq!(cluster.applied_data(4).len(), 5, "the learner has the log");
    let promote = ConfChange {
        steps: vec![ConfChangeStep::AddVoter(NodeId(4))],
    };
    cluster.raft(1).propose_conf_change(promote).unwrap();
    cluster.tick(3);
    let membership = cluster.raft(1).membership().clone();
    assert!(
        !membership.is_joint(),
        "the leader left the joint configuration"
    );
    assert_eq!(membership.voters, ids(4).into_iter().collect());
    assert_eq!(cluster.raft(4).membership(), &membership);
}

#[test]
fn a_learner_that_lags_is_not_promoted() {
    let mut cluster = Cluster::with_config(3, |c| c.learner_catch_up_entries_max = 2);
    cluster.elect(1);
    cluster.add_node(NodeId(4), ids(3), Vec::new());
    cluster.isolate(4);
    let change = ConfChange {
        steps: vec![ConfChangeStep::AddLearner(NodeId(4))],
    };
    cluster.raft(1).propose_conf_change(change).unwrap();
    cluster.settle();
    for i in 0..5 {
        cluster.raft(1).propose(data(&format!("v{i}"))).unwrap();
    }
    cluster.settle();
    let promote = ConfChange {
        steps: vec![ConfChangeStep::AddVoter(NodeId(4))],
    };
    assert!(matches!(
        cluster.raft(1).propose_conf_change(promote),
        Err(ProposeError::LearnerBehind { .. })
    ));
}

#[test]
fn joint_consensus_needs_both_majorities() {
    // Replace n3 by n4 while n4 is unreachable: the joint configuration needs a majority of the
    // new voters {1,2,4} too, so nothing commits until n4 is back.
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.add_node(NodeId(4), ids(3), Vec::new());
    cluster.isolate(4);
    cluster.isolate(2);
    let change = ConfChange {
        steps: vec![
            ConfChangeStep::AddVoter(NodeId(4)),
            ConfChangeStep::Remove(NodeId(3)),
        ],
    };
    cluster.raft(1).propose_conf_change(change).unwrap();
    cluster.settle();
    assert!(
        cluster.raft(1).membership().is_joint(),
        "entering needs only the old majority"
    );
    let before = cluster.commit(1);
    cluster.raft(1).propose(data("needs-both")).unwrap();
    cluster.settle();
    assert_eq!(cluster.commit(1), before);
    cluster.heal();
    cluster.tick(3);
    assert!(cluster.commit(1) > before);
    assert!(!cluster.raft(1).membership().is_joint());
}

#[test]
fn a_removed_leader_steps_down() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    let change = ConfChange {
        steps: vec![ConfChangeStep::Remove(NodeId(1))],
    };
    cluster.raft(1).propose_conf_change(change).unwrap();
    cluster.tick(3);
    assert_ne!(cluster.raft(1).role(), Role::Leader);
    cluster.tick(30);
    let leaders = cluster.leaders();
    assert_eq!(leaders.len(), 1);
    assert_ne!(leaders[0], NodeId(1));
}

#[test]
fn a_second_conf_change_waits_for_the_first() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.isolate(1);
    let change = ConfChange {
        steps: vec![ConfChangeStep::AddLearner(NodeId(4))],
    };
    cluster.raft(1).propose_conf_change(change.clone()).unwrap();
    assert_eq!(
        cluster.raft(1).propose_conf_change(change),
        Err(ProposeError::ConfChangePending)
    );
}

#[test]
fn committed_entries_are_applied_once_after_a_restart() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.raft(1).propose(data("a")).unwrap();
    cluster.settle();
    cluster.tick(1);
    cluster.crash(2);
    cluster.restart(2);
    cluster.tick(2);
    assert_eq!(cluster.applied_data(2), vec![data("a")]);
}

#[test]
fn a_follower_forwards_a_proposal_to_the_leader_which_appends_it() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    let leader = cluster
        .raft(2)
        .forward_proposal(data("through n2"))
        .unwrap();
    assert_eq!(leader, NodeId(1));
    cluster.settle();
    cluster.tick(2);
    for id in 1..=3 {
        assert_eq!(cluster.applied_data(id), vec![data("through n2")], "n{id}");
    }
    // The leader proposes itself; a node that knows no leader cannot forward.
    assert_eq!(
        cluster.raft(1).forward_proposal(data("x")),
        Err(ProposeError::NotLeader {
            leader: Some(NodeId(1))
        })
    );
    let mut lone = Raft::new(Config::new(NodeId(2), ids(3)), RestoreState::default());
    assert_eq!(
        lone.forward_proposal(data("x")),
        Err(ProposeError::NotLeader { leader: None })
    );
}

#[test]
fn a_proposal_forwarded_to_a_deposed_leader_is_dropped() {
    // n2 forwards in term t to n1, which has lost leadership by the time the message arrives:
    // nothing appends it, in any term.
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.raft(2).forward_proposal(data("lost")).unwrap();
    let ready = cluster.raft(2).ready();
    let forwarded: Vec<Message> = ready
        .messages
        .into_iter()
        .chain(ready.messages_after_persist)
        .collect();
    cluster.raft(2).advance();
    assert!(forwarded
        .iter()
        .any(|message| matches!(message.body, MessageBody::Propose(_))));
    cluster.isolate(1);
    cluster.tick(40);
    let leaders = cluster.leaders();
    assert!(leaders.iter().any(|leader| *leader != NodeId(1)));
    cluster.heal();
    cluster.tick(4);
    assert_ne!(cluster.raft(1).role(), Role::Leader);
    for message in forwarded {
        cluster.raft(1).step(message);
    }
    cluster.settle();
    cluster.tick(2);
    for id in 1..=3 {
        assert!(
            !cluster.applied_data(id).contains(&data("lost")),
            "n{id} applied the lost proposal"
        );
    }
}

#[test]
fn proposals_of_one_cycle_go_out_in_one_append_per_follower() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.settle();
    for n in 0..5 {
        cluster.raft(1).propose(data(&format!("p{n}"))).unwrap();
    }
    cluster.process_ready(NodeId(1));
    let appends: Vec<usize> = (cluster.queue.iter())
        .filter_map(|m| match &m.body {
            MessageBody::AppendEntries(append) => Some(append.entries.len()),
            _ => None,
        })
        .collect();
    assert_eq!(appends, vec![5, 5], "one append of all five per follower");
    cluster.settle();
    assert_eq!(cluster.applied_data(2).len(), cluster.applied_data(1).len());
}

#[test]
fn acknowledgements_and_a_commit_in_the_middle_of_a_cycle_add_no_second_append() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    cluster.settle();
    cluster.raft(1).propose(data("p0")).unwrap();
    cluster.process_ready(NodeId(1));
    // The followers take p0 and acknowledge it; the leader does not see the answers yet.
    for message in std::mem::take(&mut cluster.queue) {
        let to = message.to;
        cluster.raft(to.0).step(message);
        cluster.process_ready(to);
    }
    let acknowledgements = std::mem::take(&mut cluster.queue);
    assert_eq!(acknowledgements.len(), 2);
    let p0 = cluster.raft(1).last_index();
    // One cycle of the leader: a proposal, both acknowledgements (p0 commits), a proposal.
    cluster.raft(1).propose(data("p1")).unwrap();
    for message in acknowledgements {
        cluster.raft(1).step(message);
    }
    cluster.raft(1).propose(data("p2")).unwrap();
    assert_eq!(cluster.commit(1), p0);
    cluster.process_ready(NodeId(1));
    let appends: Vec<(u64, usize, LogIndex)> = (cluster.queue.iter())
        .filter_map(|m| match &m.body {
            MessageBody::AppendEntries(append) => {
                Some((m.to.0, append.entries.len(), append.leader_commit))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        appends,
        vec![(2, 2, p0), (3, 2, p0)],
        "one append per follower: both proposals and the new commit"
    );
    cluster.settle();
    assert_eq!(cluster.applied_data(2).len(), cluster.applied_data(1).len());
}
