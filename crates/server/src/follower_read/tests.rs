use super::*;

fn config() -> FollowerReadConfig {
    FollowerReadConfig {
        wait: Duration::from_millis(50),
        lag_entries_max: 10,
        staleness_max: Duration::from_millis(1000),
    }
}

fn follower(revision: i64, commit_index: u64, applied_index: u64, now: Instant) -> ReadProgress {
    ReadProgress {
        revision,
        commit_index,
        applied_index,
        is_leader: false,
        leader_contact: Some(now),
    }
}

#[test]
fn lag_at_the_bound_is_served_one_past_it_is_refused() {
    let now = Instant::now();
    assert_eq!(check_lag(&follower(5, 20, 10, now), &config(), now), Ok(()));
    let refusal = check_lag(&follower(5, 21, 10, now), &config(), now).unwrap_err();
    assert_eq!(
        refusal,
        Refusal::LagEntries {
            lag_entries: 11,
            max: 10
        }
    );
    assert_eq!(
        refusal.message(),
        "chorus: replica lagging: 11 entries committed but not applied (at most 10)"
    );
}

#[test]
fn a_follower_that_has_not_heard_from_a_leader_is_stale_a_leader_never_is() {
    let contact = Instant::now();
    let at_bound = contact + Duration::from_millis(1000);
    let past = contact + Duration::from_millis(1001);
    assert_eq!(
        check_lag(&follower(5, 3, 3, contact), &config(), at_bound),
        Ok(())
    );
    let refusal = check_lag(&follower(5, 3, 3, contact), &config(), past).unwrap_err();
    assert_eq!(
        refusal.message(),
        "chorus: replica lagging: no word from a leader for 1001 ms (at most 1000 ms)"
    );
    let mut never = follower(5, 3, 3, contact);
    never.leader_contact = None;
    assert!(matches!(
        check_lag(&never, &config(), contact),
        Err(Refusal::NoLeaderContact { since: None, .. })
    ));
    let leader = ReadProgress {
        is_leader: true,
        ..never
    };
    assert_eq!(check_lag(&leader, &config(), past), Ok(()));
}

#[test]
fn the_stamp_is_a_non_negative_decimal_revision() {
    let mut metadata = MetadataMap::new();
    assert_eq!(min_revision(&metadata).unwrap(), None);
    metadata.insert(MIN_REVISION_METADATA_KEY, MetadataValue::from_static("42"));
    assert_eq!(min_revision(&metadata).unwrap(), Some(42));
    for bad in ["-1", "+4", "x", "", "99999999999999999999", " 4"] {
        let mut metadata = MetadataMap::new();
        metadata.insert(
            MIN_REVISION_METADATA_KEY,
            MetadataValue::try_from(bad).unwrap(),
        );
        let status = Status::from(min_revision(&metadata).unwrap_err());
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{bad:?}");
        assert!(status.message().contains("chorus-min-revision"), "{bad:?}");
    }
    let long = "7".repeat(200) + "x";
    let mut metadata = MetadataMap::new();
    metadata.insert(
        MIN_REVISION_METADATA_KEY,
        MetadataValue::try_from(long.as_str()).unwrap(),
    );
    let status = Status::from(min_revision(&metadata).unwrap_err());
    assert!(status.message().len() < 150, "{}", status.message());
}

#[tokio::test]
async fn a_read_waits_for_its_revision_and_is_released_as_entries_apply() {
    let publisher = ProgressPublisherForTest::new(follower(5, 5, 5, Instant::now()));
    let reads = FollowerReads::new(
        FollowerReadConfig {
            wait: Duration::from_secs(5),
            ..config()
        },
        publisher.subscribe(),
    );
    assert!(reads.admit(5).await.is_ok());
    let waiting = tokio::spawn({
        let reads = reads.clone();
        async move { reads.admit(7).await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    publisher.set(follower(6, 6, 6, Instant::now()));
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!waiting.is_finished());
    publisher.set(follower(7, 7, 7, Instant::now()));
    assert!(waiting.await.unwrap().is_ok());
    assert_eq!(reads.waiting.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn a_read_still_behind_after_the_wait_is_unavailable_with_the_revision() {
    let publisher = ProgressPublisherForTest::new(follower(5, 9, 9, Instant::now()));
    let reads = FollowerReads::new(config(), publisher.subscribe());
    let status = reads.admit(8).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(
        status.message(),
        "chorus: replica at revision 5, behind the requested revision 8"
    );
    assert_eq!(status.metadata().get(REVISION_METADATA_KEY).unwrap(), "5");
    assert_eq!(status.metadata().get(LAG_METADATA_KEY).unwrap(), "0");
    assert_eq!(reads.waiting.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn waiting_reads_are_bounded() {
    let publisher = ProgressPublisherForTest::new(follower(1, 1, 1, Instant::now()));
    let reads = FollowerReads::new(config(), publisher.subscribe());
    reads
        .waiting
        .store(FOLLOWER_READ_WAITERS_MAX - 1, Ordering::Relaxed);
    // The last place is taken (and refused as behind after the wait)...
    let status = reads.admit(2).await.unwrap_err();
    assert!(status
        .message()
        .starts_with("chorus: replica at revision 1"));
    // ...and one past the bound is refused at once.
    reads
        .waiting
        .store(FOLLOWER_READ_WAITERS_MAX, Ordering::Relaxed);
    let status = reads.admit(2).await.unwrap_err();
    assert_eq!(status.message(), "etcdserver: too many requests");
    assert_eq!(
        reads.waiting.load(Ordering::Relaxed),
        FOLLOWER_READ_WAITERS_MAX
    );
    // A read this member can serve needs no place.
    assert!(reads.admit(1).await.is_ok());
}

#[tokio::test]
async fn a_lagging_member_refuses_at_once_with_its_revision_and_lag() {
    let publisher = ProgressPublisherForTest::new(follower(4, 30, 3, Instant::now()));
    let reads = FollowerReads::new(config(), publisher.subscribe());
    let refused_before = crate::metrics::metrics().follower_reads_refused.get();
    let status = reads.admit(0).await.unwrap_err();
    assert!(crate::metrics::metrics().follower_reads_refused.get() > refused_before);
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert!(status.message().starts_with("chorus: replica lagging: 27"));
    assert_eq!(status.metadata().get(REVISION_METADATA_KEY).unwrap(), "4");
    assert_eq!(status.metadata().get(LAG_METADATA_KEY).unwrap(), "27");
}

/// A watch channel standing in for the group task.
struct ProgressPublisherForTest(watch::Sender<ReadProgress>);

impl ProgressPublisherForTest {
    fn new(progress: ReadProgress) -> Self {
        ProgressPublisherForTest(watch::channel(progress).0)
    }
    fn subscribe(&self) -> watch::Receiver<ReadProgress> {
        self.0.subscribe()
    }
    fn set(&self, progress: ReadProgress) {
        self.0.send_replace(progress);
    }
}
