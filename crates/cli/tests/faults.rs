//! Real `chorus server` processes under faults: partitions through the peer-link proxies of
//! tests/support, SIGKILL, SIGSTOP/SIGCONT, and bad input from a fake peer and from malformed
//! gRPC requests. Each test checks that nothing acknowledged is lost and that the members
//! converge on the same keys and revision, looking with the real `etcdctl`.
//!
//! Without `etcdctl` on the PATH these tests say so and pass, except under CI (`CI` set).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use chorus_proto::peer;
use prost::Message as _;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::{
    etcdctl_available, etcdctl_ok, etcdctl_with_timeout, Cluster, FAST_TIMING, READY_TIMEOUT,
};

/// Puts `prefix/000`, `prefix/001`, ... through `endpoints`, each retried until acknowledged;
/// returns the keys.
fn put_acknowledged(cluster: &Cluster, endpoints: &str, prefix: &str, count: usize) -> Vec<String> {
    (0..count)
        .map(|n| {
            let key = format!("{prefix}/{n:03}");
            cluster.put_until_acknowledged(endpoints, &key, "v", READY_TIMEOUT);
            key
        })
        .collect()
}

/// Panics unless every key in `expected` is among the converged `contents`.
fn assert_all_present(contents: &[(String, String)], expected: &[String]) {
    for key in expected {
        assert!(
            contents.iter().any(|(present, _)| present == key),
            "acknowledged key {key} is missing; the cluster holds {contents:?}"
        );
    }
}

#[test]
fn a_leader_cut_off_from_both_followers_commits_nothing_and_the_majority_goes_on() {
    if !etcdctl_available() {
        return;
    }
    let cluster = Cluster::start(&FAST_TIMING);
    let mut acknowledged = put_acknowledged(&cluster, &cluster.endpoints(), "before", 3);
    let old = cluster.leader();
    let majority: Vec<usize> = (0..3).filter(|index| *index != old).collect();

    cluster.faults.isolate(old, 3);
    // The minority side cannot commit: the put is never acknowledged.
    let output = etcdctl_with_timeout(
        &cluster.members[old].client,
        &["put", "minority", "lost"],
        "3s",
    );
    assert!(
        !output.status.success(),
        "a leader cut off from both followers acknowledged a put: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    eprintln!(
        "put on the cut-off leader failed: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );

    // The majority elects one of its own and commits.
    let majority_endpoints = cluster.endpoints_of(&majority);
    acknowledged.extend(put_acknowledged(
        &cluster,
        &majority_endpoints,
        "majority",
        5,
    ));
    let new = cluster.leader_among(&majority);
    assert_ne!(new, old);
    let (_, seen_by_old) = cluster
        .local_contents(old)
        .expect("the cut-off member answers");
    assert!(
        !seen_by_old
            .iter()
            .any(|(key, _)| key.starts_with("majority/")),
        "the cut-off member saw the majority's writes through a partition"
    );

    cluster.faults.heal_all();
    let contents = cluster.wait_converged();
    assert_all_present(&contents, &acknowledged);
    assert!(
        !contents.iter().any(|(key, _)| key == "minority"),
        "the put the cut-off leader never acknowledged was applied: {contents:?}"
    );
    // The old leader follows a leader again (all three agree on one) and serves linearizable
    // reads.
    cluster.leader();
    assert_eq!(
        etcdctl_ok(
            &cluster,
            &cluster.members[old].client,
            &["get", "majority/004"]
        ),
        "majority/004\nv\n"
    );
}

#[test]
fn with_default_timing_a_new_leader_takes_a_write_within_five_seconds_of_a_kill() {
    if !etcdctl_available() {
        return;
    }
    // No timing flags: the 100 ms heartbeat and 1 s election timeout of etcd.
    let mut cluster = Cluster::start(&[]);
    let mut acknowledged = put_acknowledged(&cluster, &cluster.endpoints(), "before", 10);
    let leader = cluster.leader();
    cluster.kill(leader);
    let killed_at = Instant::now();

    let survivors = cluster.endpoints();
    cluster.put_until_acknowledged(&survivors, "after/000", "v", READY_TIMEOUT);
    let first_write = killed_at.elapsed();
    eprintln!("first write acknowledged {first_write:?} after the leader was killed");
    // A correctness bound (the requirement), not a performance claim.
    assert!(
        first_write < Duration::from_secs(5),
        "no new leader served a write within 5 s of the kill ({first_write:?})"
    );
    acknowledged.push("after/000".to_string());
    acknowledged.extend(put_acknowledged(&cluster, &survivors, "after2", 9));

    cluster.start_member(leader);
    let contents = cluster.wait_converged();
    assert_all_present(&contents, &acknowledged);
}

#[test]
fn a_write_to_a_member_that_knows_no_leader_waits_for_one() {
    if !etcdctl_available() {
        return;
    }
    // A 1 s election timeout: a write waits up to 2 s for a leader (docs/server.md).
    let timing = ["--heartbeat-interval", "100", "--election-timeout", "1000"];
    let mut cluster = support::Cluster::builder()
        .proxies()
        .admin()
        .args(&timing)
        .prepare();
    cluster.start_member(0);
    let alone = cluster.endpoints_of(&[0]);
    let deadline = Instant::now() + READY_TIMEOUT;
    while !etcdctl_with_timeout(&alone, &["get", "x", "--consistency=s"], "2s")
        .status
        .success()
    {
        assert!(Instant::now() < deadline, "member 0 never answered a read");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Alone it never learns a leader: the write waits, then fails with "no leader" (before,
    // it was refused at once).
    let started = Instant::now();
    let output = etcdctl_with_timeout(&alone, &["put", "alone", "v"], "10s");
    let waited = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "a lone member took a write");
    assert!(stderr.contains("no leader"), "{stderr}");
    assert!(
        waited >= Duration::from_millis(1500),
        "refused after {waited:?}: the write did not wait for a leader"
    );
    let (_, metrics) = support::http_get(&cluster.members[0].admin, "/metrics").unwrap();
    for line in [
        "chorus_writes_held_for_leader_total 1",
        "chorus_writes_no_leader_total 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line:?} in\n{metrics}"
        );
    }

    // The others elect a leader without it; restarted, it learns of the leader only when the
    // leader's link to it is back (up to a second of reconnect backoff). A write sent to it at
    // once is held until then, forwarded, and succeeds.
    cluster.kill(0);
    cluster.start_member(1);
    cluster.start_member(2);
    cluster.put_until_acknowledged(&cluster.endpoints_of(&[1, 2]), "ready", "v", READY_TIMEOUT);
    cluster.start_member(0);
    let output = support::etcdctl_full(&alone, &["put", "held", "v"], "5s", "10s", None);
    assert!(
        output.status.success(),
        "the held write failed: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        cluster.logs()
    );
    let endpoints = cluster.endpoints();
    assert_eq!(
        etcdctl_ok(&cluster, &endpoints, &["get", "held", "--print-value-only"]),
        "v\n"
    );
}

#[test]
fn a_leader_frozen_past_its_election_timeout_steps_down_and_nothing_is_lost() {
    if !etcdctl_available() {
        return;
    }
    let mut cluster = Cluster::start(&FAST_TIMING);
    let mut acknowledged = put_acknowledged(&cluster, &cluster.endpoints(), "before", 5);
    let frozen = cluster.leader();
    let others: Vec<usize> = (0..3).filter(|index| *index != frozen).collect();
    let frozen_term = cluster.status(frozen).unwrap()["raftTerm"]
        .as_u64()
        .unwrap();

    cluster.stop(frozen);
    let stopped_at = Instant::now();
    acknowledged.extend(put_acknowledged(
        &cluster,
        &cluster.endpoints(),
        "frozen",
        5,
    ));
    cluster.leader_among(&others);
    // Frozen well past its 500 ms election timeout (and the followers' election).
    std::thread::sleep(Duration::from_secs(2).saturating_sub(stopped_at.elapsed()));
    cluster.cont(frozen);

    // It steps down: it learns the newer term and names a leader of that term (under load
    // another election may follow, so which member leads is not asserted); the cluster kept
    // serving throughout.
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let status = cluster.status(frozen);
        let term = status
            .as_ref()
            .and_then(|status| status["raftTerm"].as_u64());
        let leader = status.as_ref().and_then(|status| status["leader"].as_u64());
        if term > Some(frozen_term) && leader.is_some_and(|leader| leader != 0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the resumed leader did not step down: term {term:?} (it led in {frozen_term}), \
             leader {leader:?}\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Writes through the resumed member are forwarded to the new leader.
    let resumed = cluster.members[frozen].client.clone();
    acknowledged.extend(put_acknowledged(&cluster, &resumed, "resumed", 3));
    let contents = cluster.wait_converged();
    assert_all_present(&contents, &acknowledged);
}

#[test]
fn slow_links_and_a_one_way_cut_from_the_leader_lose_nothing() {
    if !etcdctl_available() {
        return;
    }
    let cluster = Cluster::start(&FAST_TIMING);
    let mut acknowledged = put_acknowledged(&cluster, &cluster.endpoints(), "before", 3);

    // Every link delayed by 150 ms (three heartbeats, under the 500 ms election timeout):
    // slower, and still committing.
    for from in 0..3 {
        for to in (0..3).filter(|to| *to != from) {
            cluster.faults.delay(from, to, Duration::from_millis(150));
        }
    }
    let slow_started = Instant::now();
    acknowledged.extend(put_acknowledged(&cluster, &cluster.endpoints(), "slow", 5));
    eprintln!(
        "5 puts over links delayed 150 ms took {:?}",
        slow_started.elapsed()
    );
    cluster.faults.heal_all();

    // The leader's frames to one follower vanish, while that follower still reaches the
    // leader: the leader and the other follower go on committing.
    let leader = cluster.leader();
    let deaf = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    cluster.faults.cut(leader, deaf);
    let committing = cluster.endpoints_of(&[leader, other]);
    acknowledged.extend(put_acknowledged(&cluster, &committing, "one-way", 5));
    std::thread::sleep(Duration::from_secs(1));
    acknowledged.extend(put_acknowledged(&cluster, &committing, "one-way-later", 5));

    cluster.faults.heal_all();
    let contents = cluster.wait_converged();
    assert_all_present(&contents, &acknowledged);
}

/// Writes one peer frame: a 4-byte big-endian length and the encoded `Frame`.
fn write_frame(stream: &mut TcpStream, frame: &peer::Frame) {
    let body = frame.encode_to_vec();
    let mut bytes = u32::try_from(body.len()).unwrap().to_be_bytes().to_vec();
    bytes.extend(body);
    stream.write_all(&bytes).unwrap();
}

/// Whether the member closes `stream` within a few seconds (it refused what it was sent). A
/// member never writes on a connection a peer dialed, so any answer but the end is a failure.
fn closed_by_member(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut byte = [0_u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(error) => !matches!(
            error.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

fn envelope(from: u64, to: u64, term: u64, body: peer::envelope::Body) -> peer::Envelope {
    peer::Envelope {
        group: 1,
        from,
        to,
        term,
        body: Some(body),
    }
}

#[test]
fn bad_peer_frames_and_malformed_grpc_requests_do_not_hurt_a_member() {
    if !etcdctl_available() {
        return;
    }
    let cluster = Cluster::start(&FAST_TIMING);
    let mut acknowledged = put_acknowledged(&cluster, &cluster.endpoints(), "before", 3);
    let leader = cluster.leader();
    let target = (leader + 1) % 3;
    let impostor = (leader + 2) % 3;
    let term = cluster.status(target).unwrap()["raftTerm"]
        .as_u64()
        .unwrap();
    let initial_cluster = chorus_server::parse_initial_cluster(&cluster.initial_cluster).unwrap();
    let hello = peer::Hello {
        cluster_id: chorus_server::config::cluster_id(&initial_cluster),
        node_id: cluster.member_id(impostor),
        name: cluster.members[impostor].name.clone(),
        client_urls: vec![format!("http://{}", cluster.members[impostor].client)],
        peer_urls: Vec::new(),
    };
    let hello_frame = peer::Frame {
        hello: Some(hello.clone()),
        messages: Vec::new(),
    };
    let connect = || TcpStream::connect(&cluster.members[target].peer_listen).unwrap();
    let (from, to) = (cluster.member_id(impostor), cluster.member_id(target));

    // A valid hello, then raft messages from an older term (and a snapshot chunk whose
    // membership does not decode): raft ignores what is stale, the member keeps serving.
    let mut stream = connect();
    write_frame(&mut stream, &hello_frame);
    let old_term = term.saturating_sub(1);
    let stale = vec![
        envelope(
            from,
            to,
            old_term,
            peer::envelope::Body::AppendEntries(peer::AppendEntries {
                prev_log_index: 1,
                prev_log_term: old_term,
                entries: vec![peer::Entry {
                    term: old_term,
                    index: 2,
                    payload: b"not a replica payload".to_vec().into(),
                }],
                leader_commit: 1_000,
            }),
        ),
        envelope(
            from,
            to,
            old_term,
            peer::envelope::Body::Heartbeat(peer::Heartbeat {
                commit: 1_000,
                sequence: 7,
            }),
        ),
        envelope(
            from,
            to,
            old_term,
            peer::envelope::Body::RequestVote(peer::RequestVote {
                pre_vote: false,
                last_log_index: 1_000_000,
                last_log_term: old_term,
                transfer: true,
            }),
        ),
        envelope(
            from,
            to,
            old_term,
            peer::envelope::Body::InstallSnapshot(peer::InstallSnapshot {
                last_index: 1_000_000,
                last_term: old_term,
                membership: b"garbage".to_vec().into(),
                offset: 0,
                total_bytes: 7,
                data: b"garbage".to_vec().into(),
            }),
        ),
    ];
    write_frame(
        &mut stream,
        &peer::Frame {
            hello: None,
            messages: stale,
        },
    );
    acknowledged.extend(put_acknowledged(&cluster, &cluster.endpoints(), "stale", 3));
    drop(stream);

    // Connections the member must drop: each is refused, and the member keeps serving.
    let unknown = 0x5eed_u64;
    let cases: Vec<(&str, Vec<u8>)> = {
        let mut cases = Vec::new();
        let frame_bytes = |frames: &[peer::Frame]| {
            let mut bytes = Vec::new();
            for frame in frames {
                let body = frame.encode_to_vec();
                bytes.extend(u32::try_from(body.len()).unwrap().to_be_bytes());
                bytes.extend(body);
            }
            bytes
        };
        let heartbeat = |from: u64| peer::Frame {
            hello: None,
            messages: vec![envelope(
                from,
                to,
                old_term,
                peer::envelope::Body::Heartbeat(peer::Heartbeat {
                    commit: 0,
                    sequence: 1,
                }),
            )],
        };
        cases.push((
            "a message from an unknown member on a known member's connection",
            frame_bytes(&[hello_frame.clone(), heartbeat(unknown)]),
        ));
        let mut unknown_hello = hello.clone();
        unknown_hello.node_id = unknown;
        cases.push((
            "a hello from an unknown member",
            frame_bytes(&[peer::Frame {
                hello: Some(unknown_hello),
                messages: Vec::new(),
            }]),
        ));
        let mut foreign_hello = hello.clone();
        foreign_hello.cluster_id ^= 1;
        cases.push((
            "a hello from another cluster",
            frame_bytes(&[peer::Frame {
                hello: Some(foreign_hello),
                messages: Vec::new(),
            }]),
        ));
        cases.push((
            "raft messages before a hello",
            frame_bytes(&[heartbeat(from)]),
        ));
        let mut garbage = frame_bytes(std::slice::from_ref(&hello_frame));
        garbage.extend([0, 0, 0, 12]);
        garbage.extend(b"\xff\xff\xff\xff not protobuf");
        cases.push(("garbage after a valid hello", garbage));
        cases
    };
    for (what, bytes) in &cases {
        let mut stream = connect();
        stream.write_all(bytes).unwrap();
        assert!(
            closed_by_member(&mut stream),
            "{what}: the member kept the connection open"
        );
        acknowledged.extend(put_acknowledged(
            &cluster,
            &cluster.members[target].client,
            &format!("peer-case-{}", what.len()),
            1,
        ));
    }

    // The client port: bytes that are not HTTP/2, and HTTP/2's preface followed by frames
    // that are not HTTP/2 frames: the member answers what it answers and closes the
    // connection (it does not hang or die); then gRPC calls whose bodies are not the protobuf
    // they claim to be.
    let not_http2: [&[u8]; 2] = [
        b"GET / HTTP/1.1\r\nHost: chorus\r\n\r\n\x00\xff\x13garbage",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\xff\xff\xff\x09\xff\xff\xff\xff\xffgarbage frames",
    ];
    for bytes in not_http2 {
        let mut raw = TcpStream::connect(&cluster.members[target].client).unwrap();
        raw.write_all(bytes).unwrap();
        raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut answer = Vec::new();
        let closed = match raw.read_to_end(&mut answer) {
            Ok(_) => true,
            Err(error) => error.kind() == std::io::ErrorKind::ConnectionReset,
        };
        eprintln!(
            "{:?}...: answered {} bytes, closed: {closed}",
            String::from_utf8_lossy(&bytes[..14]),
            answer.len()
        );
        assert!(closed, "the member kept a connection of garbage open");
        acknowledged.extend(put_acknowledged(
            &cluster,
            &cluster.members[target].client,
            &format!("after-raw-{}", bytes.len()),
            1,
        ));
    }
    let statuses = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(malformed_grpc_calls(&cluster.members[target].client));
    for (what, code, message) in &statuses {
        eprintln!("{what}: {code:?} {message:?}");
    }
    acknowledged.extend(put_acknowledged(
        &cluster,
        &cluster.members[target].client,
        "after-grpc",
        3,
    ));
    let contents = cluster.wait_converged();
    assert_all_present(&contents, &acknowledged);
}

/// Sends gRPC calls with bodies that do not decode and returns (what, code, message) for each;
/// panics unless each fails with a clear status.
async fn malformed_grpc_calls(client: &str) -> Vec<(&'static str, tonic::Code, String)> {
    use tonic::codegen::http::uri::PathAndQuery;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{client}"))
        .unwrap()
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .unwrap();
    let calls: Vec<(&'static str, &'static str, Vec<u8>, &[tonic::Code])> = vec![
        (
            "Put with an invalid protobuf body",
            "/etcdserverpb.KV/Put",
            b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff".to_vec(),
            &[tonic::Code::Internal, tonic::Code::InvalidArgument],
        ),
        (
            "Range with a truncated field",
            "/etcdserverpb.KV/Range",
            b"\x0a\x40abc".to_vec(),
            &[tonic::Code::Internal, tonic::Code::InvalidArgument],
        ),
        (
            "Txn with a wrong wire type",
            "/etcdserverpb.KV/Txn",
            b"\x17\x00\x00".to_vec(),
            &[tonic::Code::Internal, tonic::Code::InvalidArgument],
        ),
        (
            "Put of 2 MiB of garbage",
            "/etcdserverpb.KV/Put",
            vec![0xff; 2 * 1024 * 1024],
            &[
                tonic::Code::Internal,
                tonic::Code::InvalidArgument,
                tonic::Code::OutOfRange,
                tonic::Code::ResourceExhausted,
            ],
        ),
        (
            "a method that does not exist",
            "/etcdserverpb.KV/Nonsense",
            Vec::new(),
            &[tonic::Code::Unimplemented],
        ),
    ];
    let mut statuses = Vec::new();
    for (what, path, body, expected) in calls {
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        grpc.ready().await.unwrap();
        let result = grpc
            .unary(
                tonic::Request::new(body),
                PathAndQuery::from_static(path),
                RawCodec,
            )
            .await;
        let status = result.expect_err(what);
        assert!(
            expected.contains(&status.code()),
            "{what}: {:?} {:?}, expected one of {expected:?}",
            status.code(),
            status.message()
        );
        statuses.push((what, status.code(), status.message().to_string()));
    }
    statuses
}

/// A gRPC codec that sends and receives bytes as they are, so a test can send a body that is
/// not the protobuf message the method expects.
#[derive(Clone, Copy, Debug, Default)]
struct RawCodec;

#[derive(Clone, Copy, Debug, Default)]
struct RawBytes;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawBytes;
    type Decoder = RawBytes;

    fn encoder(&mut self) -> RawBytes {
        RawBytes
    }

    fn decoder(&mut self) -> RawBytes {
        RawBytes
    }
}

impl tonic::codec::Encoder for RawBytes {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
        destination: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use prost::bytes::BufMut;
        destination.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawBytes {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        source: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        use prost::bytes::Buf;
        let mut bytes = vec![0; source.remaining()];
        source.copy_to_slice(&mut bytes);
        Ok(Some(bytes))
    }
}
