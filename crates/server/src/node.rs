//! Starting and running one node: open the replica, bind the listeners, start the group task,
//! the peer transport and the gRPC services, and run until shutdown or a fatal error.

use crate::admin::{self, requests::RequestMetricsLayer, AdminState};
use crate::config::{host_port, member_id, ClusterState, ConfigError, ServerConfig};
use crate::group::{GroupHandle, GroupTask, GROUP_QUEUE_INPUTS_MAX};
use crate::group_members::MemberSync;
use crate::grpc::{
    ClusterService, KvService, LeaseService, MaintenanceService, ServerState, SessionService,
    WatchService,
};
use crate::members::{initial_table, Members};
use crate::shutdown::hand_over_leadership;
use crate::transport::{run_inbound, start_outbound};
use chorus_mvcc::{RedbBackend, RedbConfig};
use chorus_proto::etcdserverpb::cluster_server::ClusterServer;
use chorus_proto::etcdserverpb::kv_server::KvServer;
use chorus_proto::etcdserverpb::lease_server::LeaseServer;
use chorus_proto::etcdserverpb::maintenance_server::MaintenanceServer;
use chorus_proto::etcdserverpb::watch_server::WatchServer;
use chorus_proto::session::session_server::SessionServer;
use chorus_raft::NodeId;
use chorus_replica::{lease_ttl_seconds_min, Replica, ReplicaConfig, ReplicaError};
use chorus_storage::RealFs;
use std::future::Future;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

/// Room gRPC keeps above the request limit so an oversized request reaches our own check and
/// gets etcd's "request is too large" (etcd keeps the same margin).
const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// Why a node could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{what}: {error}")]
    Io { what: String, error: std::io::Error },
    #[error("opening the key-value database: {0}")]
    Backend(chorus_mvcc::BackendError),
    #[error(transparent)]
    Replica(#[from] ReplicaError),
    #[error("gRPC server: {0}")]
    Grpc(#[from] tonic::transport::Error),
}

/// Runs the node until `shutdown` completes (`Ok`) or something fatal happens (`Err`).
///
pub async fn run(
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), NodeError> {
    if !config
        .initial_cluster
        .iter()
        .any(|(name, _)| *name == config.name)
    {
        return Err(ConfigError(format!(
            "member {:?} is not in the initial cluster",
            config.name
        ))
        .into());
    }
    let members = Members::new(&config);
    let voters = initial_voters(&config, &members)?;
    chorus_storage::set_io_observer(crate::metrics::observe_disk);
    chorus_mvcc::set_commit_observer(crate::metrics::observe_backend_commit);
    let io = |what: String| move |error| NodeError::Io { what, error };
    std::fs::create_dir_all(&config.data_dir)
        .map_err(io(format!("creating {}", config.data_dir.display())))?;
    let database_path = config.data_dir.join("mvcc.redb");
    let backend =
        RedbBackend::open(&database_path, RedbConfig::default()).map_err(NodeError::Backend)?;
    let replica = Replica::open(
        replica_config(&config, &members, voters),
        RealFs,
        &config.data_dir.join("raft"),
        backend,
    )?;

    let peer_address = host_port(&config.listen_peer_url)?;
    let peer_listener = TcpListener::bind(&peer_address)
        .await
        .map_err(io(format!("listening for peers on {peer_address}")))?;
    let client_address = host_port(&config.listen_client_url)?;
    let client_listener = TcpListener::bind(&client_address)
        .await
        .map_err(io(format!("listening for clients on {client_address}")))?;

    // The replicated table (from the snapshot and the log) wins over the configuration's.
    if !replica.members().members.is_empty() {
        members.set_table(replica.members());
    }
    let peers = start_outbound(&members)?;
    let (inputs, receiver) = mpsc::channel(GROUP_QUEUE_INPUTS_MAX);
    let group_runtime = group_thread_runtime()?;
    tokio::spawn(run_inbound(
        peer_listener,
        members.clone(),
        peers.clone(),
        inputs.clone(),
        group_runtime.handle().clone(),
    ));
    let mut group_task = GroupTask::new(replica, peers, receiver, config.heartbeat_interval);
    group_task.set_quota(database_path.clone(), config.quota_backend_bytes);
    group_task.members = Some(MemberSync::new(members.clone()));
    // Long enough for an election to end; a write held longer fails with "no leader".
    group_task.leader_wait = (config.election_timeout * 2).min(config.request_timeout);
    if config.read_lease.is_some() {
        group_task.clock_origin = Some(std::time::Instant::now());
    }
    let read_progress = group_task.read_progress.subscribe();
    let mut group = spawn_group_thread(group_task, group_runtime)?;

    let handle = GroupHandle {
        sender: inputs,
        request_timeout: config.request_timeout,
    };
    let follower_reads =
        crate::follower_read::FollowerReads::new(config.follower_reads, read_progress);
    let admin = start_admin(&config, &handle, &members, &database_path, &follower_reads).await?;
    let mut state = ServerState::new(
        handle,
        members.clone(),
        config.request_bytes_max,
        database_path,
    );
    state.watch_progress_notify_interval = config.watch_progress_notify_interval;
    state.sessions = config.sessions;
    state.follower_reads = follower_reads;
    let decoding_bytes_max = config.request_bytes_max + GRPC_OVERHEAD_BYTES;
    // Without TCP_NODELAY a small response waits for the client's delayed ACK (about 40 ms);
    // with our own listener, tonic's builder setting does not apply, so the incoming stream
    // sets it on every accepted connection.
    let incoming =
        tonic::transport::server::TcpIncoming::from_listener(client_listener, true, None).map_err(
            |error| NodeError::Io {
                what: format!("serving clients on {client_address}"),
                error: std::io::Error::other(error.to_string()),
            },
        )?;
    let (stop_serving, serving_stopped) = tokio::sync::oneshot::channel::<()>();
    let group_handle = state.group.clone();
    let server = tonic::transport::Server::builder()
        .layer(RequestMetricsLayer)
        .add_service(
            KvServer::new(KvService(state.clone()))
                .max_decoding_message_size(decoding_bytes_max)
                .max_encoding_message_size(usize::MAX),
        )
        .add_service(
            MaintenanceServer::new(MaintenanceService(state.clone()))
                .max_decoding_message_size(decoding_bytes_max),
        )
        .add_service(
            WatchServer::new(WatchService::new(state.clone()))
                .max_decoding_message_size(decoding_bytes_max),
        )
        .add_service(
            LeaseServer::new(LeaseService(state.clone()))
                .max_decoding_message_size(decoding_bytes_max),
        )
        .add_service(
            SessionServer::new(SessionService(state.clone()))
                .max_decoding_message_size(decoding_bytes_max),
        )
        .add_service(
            ClusterServer::new(ClusterService(state)).max_decoding_message_size(decoding_bytes_max),
        )
        .serve_with_incoming_shutdown(incoming, async {
            let _ = serving_stopped.await;
        });
    tokio::pin!(server);
    tracing::info!(
        "member {} ({:x}) of cluster {:x}: clients on {}, peers on {}",
        config.name,
        members.local_id.0,
        members.cluster_id(),
        config.listen_client_url,
        config.listen_peer_url
    );
    let result = tokio::select! {
        served = &mut server => {
            group.abort();
            served?;
            Ok(())
        }
        () = shutdown => {
            // A leader hands over first; then no new requests, and a bounded drain.
            crate::metrics::metrics().shutting_down.set(1);
            let wait = config.election_timeout * 2;
            hand_over_leadership(&group_handle, wait).await;
            let _ = stop_serving.send(());
            let drain = config.shutdown_drain_timeout;
            match tokio::time::timeout(drain, &mut server).await {
                Ok(served) => served?,
                Err(_) => tracing::warn!("shutdown: requests still in flight after {drain:?}; stopping"),
            }
            group.abort();
            Ok(())
        }
        finished = &mut group.finished => match finished {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(error.into()),
            Err(_) => Err(NodeError::Io {
                what: "the group thread".to_string(),
                error: std::io::Error::other("the group thread stopped without a result"),
            }),
        },
    };
    if let Some(admin) = admin {
        admin.abort();
    }
    result
}

/// The single-threaded runtime of the group thread ([`spawn_group_thread`]).
fn group_thread_runtime() -> Result<tokio::runtime::Runtime, NodeError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| NodeError::Io {
            what: "starting the group thread's runtime".to_string(),
            error,
        })
}

/// The group task on its own thread, with a single-threaded runtime of its own.
struct GroupThread {
    /// The task's result when it ends by itself (`Err` if it panicked).
    finished: oneshot::Receiver<Result<(), ReplicaError>>,
    /// Dropped or sent: the task stops at its next await (as a tokio task's `abort`).
    stop: Option<oneshot::Sender<()>>,
}

impl GroupThread {
    fn abort(&mut self) {
        self.stop.take();
    }
}

/// Starts the group task on a thread of its own. Why: the task fsyncs the WAL in line (its
/// cycle must not go on before the persist), and on a thread of its own that blocks nothing
/// else — on a worker of the shared runtime every persist handed the worker's other tasks to
/// another thread (`block_in_place`), thousands of thread hand-overs a second under load. Its
/// timers and channels work across runtimes; the gRPC and peer tasks stay on the shared one.
/// The group thread's runtime also reads the peer connections (`transport::run_inbound`).
fn spawn_group_thread(
    group_task: GroupTask,
    runtime: tokio::runtime::Runtime,
) -> Result<GroupThread, NodeError> {
    let (finished_sender, finished) = oneshot::channel();
    let (stop, stopped) = oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("chorus-group".to_string())
        .spawn(move || {
            let result = runtime.block_on(async move {
                tokio::select! {
                    result = group_task.run() => Some(result),
                    _ = stopped => None,
                }
            });
            if let Some(result) = result {
                let _ = finished_sender.send(result);
            }
        })
        .map_err(|error| NodeError::Io {
            what: "starting the group thread".to_string(),
            error,
        })?;
    Ok(GroupThread {
        finished,
        stop: Some(stop),
    })
}

/// Binds and serves the admin port, if one is configured.
async fn start_admin(
    config: &ServerConfig,
    group: &GroupHandle,
    members: &Members,
    database_path: &std::path::Path,
    follower_reads: &crate::follower_read::FollowerReads,
) -> Result<Option<tokio::task::JoinHandle<std::io::Result<()>>>, NodeError> {
    let Some(url) = &config.listen_admin_url else {
        return Ok(None);
    };
    let address = host_port(url)?;
    let listener = TcpListener::bind(&address)
        .await
        .map_err(|error| NodeError::Io {
            what: format!("listening for admin requests on {address}"),
            error,
        })?;
    let mut state = AdminState::new(
        group.clone(),
        members.clone(),
        config.name.clone(),
        url.clone(),
        database_path.to_path_buf(),
    );
    state.follower_reads = Some(follower_reads.clone());
    tracing::info!("admin (metrics, health, dashboard) on {url}");
    Ok(Some(tokio::spawn(admin::serve(
        listener,
        state,
        std::future::pending(),
    ))))
}

/// Raft's voters for a brand-new log: the initial cluster's. A joining member is not among
/// them (it must not campaign) and the set only stands in until the leader's snapshot brings
/// the real membership; it lists the other members of `--initial-cluster` by their names' ids.
fn initial_voters(config: &ServerConfig, members: &Members) -> Result<Vec<NodeId>, ConfigError> {
    let voters: Vec<NodeId> = match config.initial_cluster_state {
        ClusterState::New => members.list().into_iter().map(|member| member.id).collect(),
        ClusterState::Existing => config
            .initial_cluster
            .iter()
            .map(|(name, _)| member_id(name))
            .filter(|id| *id != members.local_id)
            .collect(),
    };
    if voters.is_empty() {
        return Err(ConfigError(
            "a member that joins (--initial-cluster-state existing) needs the cluster's other \
             members in --initial-cluster"
                .to_string(),
        ));
    }
    Ok(voters)
}

fn replica_config(config: &ServerConfig, members: &Members, voters: Vec<NodeId>) -> ReplicaConfig {
    let mut raft = chorus_raft::Config::new(members.local_id, voters);
    raft.election_timeout_ticks = config.election_timeout_ticks();
    raft.heartbeat_interval_ticks = 1;
    // Our own size check (etcd's message) comes first; raft's bound is a backstop.
    raft.proposal_bytes_max = config.request_bytes_max + GRPC_OVERHEAD_BYTES;
    // Election jitter differs between runs of the same member.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.subsec_nanos());
    raft.seed = members.local_id.0 ^ u64::from(nanos);
    raft.lease = config
        .read_lease
        .map(|clock_drift_bound_ppm| chorus_raft::LeaseConfig {
            clock_drift_bound_ppm,
        });
    let election_timeout_ticks = raft.election_timeout_ticks;
    let mut replica = ReplicaConfig::new(raft);
    replica.snapshot_every_entries = config.snapshot_every_entries;
    replica.log_entries_kept = config.snapshot_catch_up_entries;
    // The group task must not stop for a snapshot: it is written on a blocking thread.
    replica.background_snapshots = true;
    // Watchers read their events back from the store's history (watchers.rs), which fills
    // prev_kv itself: a put that does not ask for its previous version reads no record.
    replica.mvcc.events_prev_kv = false;
    // Lease TTLs are seconds: count the ticks of this heartbeat interval in one.
    replica.ticks_per_second = config.ticks_per_second();
    replica.lease_ttl_seconds_min =
        lease_ttl_seconds_min(election_timeout_ticks, replica.ticks_per_second);
    replica.initial_members = initial_table(config);
    replica
}
