//! Readiness: a member is ready to serve when it knows a leader and has applied what is
//! committed, within a bound (a member replaying a long log, or cut off from the leader, is
//! not). Liveness (`/healthz`) is only "the process answers".

/// Committed entries a ready member may still have to apply.
pub const READY_APPLY_LAG_ENTRIES_MAX: u64 = 1000;

/// What readiness looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadinessInput {
    /// The member received SIGTERM: it is handing over and draining.
    pub shutting_down: bool,
    pub has_leader: bool,
    pub commit_index: u64,
    pub applied_index: u64,
}

/// `Ok` when ready, otherwise why not (shown with the 503).
pub fn readiness(input: ReadinessInput) -> Result<(), String> {
    if input.shutting_down {
        return Err("shutting down".to_string());
    }
    if !input.has_leader {
        return Err("no leader: an election is under way or this member is cut off".to_string());
    }
    let behind = input.commit_index.saturating_sub(input.applied_index);
    if behind > READY_APPLY_LAG_ENTRIES_MAX {
        return Err(format!(
            "applied index {} is {behind} entries behind the commit index {} (at most {} allowed)",
            input.applied_index, input.commit_index, READY_APPLY_LAG_ENTRIES_MAX
        ));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ready_with_a_leader_and_applied_caught_up() {
        let input = ReadinessInput {
            shutting_down: false,
            has_leader: true,
            commit_index: 10,
            applied_index: 10,
        };
        assert_eq!(readiness(input), Ok(()));
        let stopping = ReadinessInput {
            shutting_down: true,
            ..input
        };
        assert_eq!(readiness(stopping), Err("shutting down".to_string()));
    }

    #[test]
    fn not_ready_without_a_leader() {
        let input = ReadinessInput {
            shutting_down: false,
            has_leader: false,
            commit_index: 10,
            applied_index: 10,
        };
        assert!(readiness(input).unwrap_err().starts_with("no leader"));
    }

    #[test]
    fn ready_at_the_apply_bound_and_not_one_past_it() {
        let at_bound = ReadinessInput {
            shutting_down: false,
            has_leader: true,
            commit_index: READY_APPLY_LAG_ENTRIES_MAX + 5,
            applied_index: 5,
        };
        assert_eq!(readiness(at_bound), Ok(()));
        let past = ReadinessInput {
            applied_index: 4,
            ..at_bound
        };
        let reason = readiness(past).unwrap_err();
        assert!(reason.contains("1001 entries behind"), "{reason}");
    }
}
