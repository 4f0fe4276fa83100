//! The seeded fault schedule, and the switches that break raft on purpose.
//!
//! A schedule is a list of episodes drawn from the seed: each starts at a time, does one bad
//! thing (crash a replica, cut links, degrade the network, slow a replica's clock) and undoes it
//! after its duration. Episodes may overlap. At `heal_at` everything is undone for good — links
//! healed, network and clocks normal, every replica running — and the run goes on fault-free,
//! so the liveness checker can demand progress.
//!
//! Targets like "the leader" are resolved when the episode starts, from the cluster's state at
//! that moment, which is itself a function of the seed: the run stays exactly replayable.

use crate::network::Quality;
use crate::prng::Prng;
use crate::time::{Nanos, MICROSECOND, MILLISECOND, SECOND};
use chorus_raft::Faults;
use std::fmt;

/// A raft fault-injection switch (see `chorus_raft::Faults`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultSwitch {
    CommitWithoutMajority,
    ForgetVote,
    ReadWithoutQuorum,
    AcceptStaleAppend,
    /// Leader-lease reads (the run enables them) while clocks run far slower than the drift
    /// bound allows (the slow-clock and stale-leader faults stay in): the assumption lease reads
    /// rest on is broken, so a leader serves reads after another one was elected.
    LeaseBeyondDriftBound,
}

impl FaultSwitch {
    pub const ALL: [FaultSwitch; 5] = [
        FaultSwitch::CommitWithoutMajority,
        FaultSwitch::ForgetVote,
        FaultSwitch::ReadWithoutQuorum,
        FaultSwitch::AcceptStaleAppend,
        FaultSwitch::LeaseBeyondDriftBound,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultSwitch::CommitWithoutMajority => "commit-without-majority",
            FaultSwitch::ForgetVote => "forget-vote",
            FaultSwitch::ReadWithoutQuorum => "read-without-quorum",
            FaultSwitch::AcceptStaleAppend => "accept-stale-append",
            FaultSwitch::LeaseBeyondDriftBound => "lease-beyond-drift-bound",
        }
    }

    pub fn parse(name: &str) -> Option<FaultSwitch> {
        FaultSwitch::ALL
            .into_iter()
            .find(|switch| switch.name() == name)
    }

    pub fn raft_faults(switch: Option<FaultSwitch>) -> Faults {
        let mut faults = Faults::default();
        match switch {
            None => {}
            Some(FaultSwitch::CommitWithoutMajority) => faults.commit_without_majority = true,
            Some(FaultSwitch::ForgetVote) => faults.forget_vote_on_restart = true,
            Some(FaultSwitch::ReadWithoutQuorum) => faults.read_without_quorum = true,
            Some(FaultSwitch::AcceptStaleAppend) => faults.accept_stale_append = true,
            // Raft is not broken: the run's clocks are (`scenario`).
            Some(FaultSwitch::LeaseBeyondDriftBound) => {}
        }
        faults
    }
}

impl fmt::Display for FaultSwitch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which replica an episode hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Node(u64),
    /// Whoever leads when the episode starts (a random replica if none does).
    Leader,
    /// Every replica (the first one the fault fires on).
    Any,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Node(node) => write!(f, "n{node}"),
            Target::Leader => write!(f, "the leader"),
            Target::Any => write!(f, "any replica"),
        }
    }
}

/// One bad thing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Power off; the replica restarts from its disk after the episode.
    Crash(Target),
    /// During the episode, power off the target right after each vote it grants (a real vote,
    /// not a pre-vote); it restarts `restart_after_ns` later. Aims at the window between a vote
    /// and a competing candidate's request.
    CrashAfterVote {
        target: Target,
        restart_after_ns: Nanos,
    },
    /// A stalled leader (think of a long pause): the leader is cut off from every other replica
    /// and its clock slowed to `rate_percent`, so it keeps believing it leads (and keeps serving
    /// its clients) well after the others elected someone else. At the end the links heal while
    /// it may still think it leads.
    StaleLeader { rate_percent: u32 },
    /// The replica's process stalls (a long pause): it handles nothing — messages, client
    /// requests and disk completions wait in its backlog, its timer does not fire — until the
    /// episode ends; then it works through the backlog, in arrival order, with the beliefs it
    /// had when it stalled.
    Pause(Target),
    /// Every replica loses power at once (a rack outage) — each loses or tears its unsynced
    /// write — and all come back together at the end of the episode, with every link up (the
    /// switch was power-cycled too). Their clocks restart in step, so several campaign at the
    /// same moment; for a while after, every replica that grants a vote crashes right after and
    /// restarts `restart_after_ns` later.
    PowerLoss { restart_after_ns: Nanos },
    /// Symmetric partition between two groups.
    Partition { left: Vec<u64>, right: Vec<u64> },
    /// The target is cut off from every other replica (clients still reach it).
    Isolate(Target),
    /// Messages from → to are dropped; to → from still flow.
    OneWay { from: Target, to: u64 },
    /// Loss, duplication and stragglers well above normal.
    Degrade(Quality),
    /// The target's clock runs at `rate_percent` of real time (ticks come that much slower).
    SlowClock { target: Target, rate_percent: u32 },
}

impl Fault {
    /// The kind of fault, without its parameters.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Crash(_) => "crash",
            Fault::CrashAfterVote { .. } => "crash-after-vote",
            Fault::Partition { .. } => "partition",
            Fault::Isolate(_) => "isolate",
            Fault::OneWay { .. } => "one-way",
            Fault::Degrade(_) => "degrade",
            Fault::SlowClock { .. } => "slow-clock",
            Fault::StaleLeader { .. } => "stale-leader",
            Fault::Pause(_) => "pause",
            Fault::PowerLoss { .. } => "power-loss",
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Crash(target) => write!(f, "crash {target}"),
            Fault::CrashAfterVote {
                target,
                restart_after_ns,
            } => write!(
                f,
                "crash {target} after each vote, restart {} µs later",
                restart_after_ns / MICROSECOND
            ),
            Fault::Partition { left, right } => {
                write!(f, "partition {} | {}", node_set(left), node_set(right))
            }
            Fault::Isolate(target) => write!(f, "isolate {target}"),
            Fault::OneWay { from, to } => write!(f, "drop {from} → n{to}"),
            Fault::Degrade(quality) => write!(
                f,
                "degrade network (loss {}‰, duplicate {}‰, stragglers {}‰)",
                quality.loss_ppm / 1000,
                quality.duplicate_ppm / 1000,
                quality.long_delay_ppm / 1000
            ),
            Fault::SlowClock {
                target,
                rate_percent,
            } => {
                write!(f, "slow clock of {target} to {rate_percent}%")
            }
            Fault::StaleLeader { rate_percent } => {
                write!(
                    f,
                    "stale leader: isolate the leader, its clock at {rate_percent}%"
                )
            }
            Fault::Pause(target) => write!(f, "pause {target}"),
            Fault::PowerLoss { restart_after_ns } => write!(
                f,
                "power loss of every replica; after the restart every voter crashes (restart {} µs \
                 later)",
                restart_after_ns / MICROSECOND
            ),
        }
    }
}

/// `{1, 2}`: a set of replicas as the trace shows it.
pub fn node_set(nodes: &[u64]) -> String {
    let names: Vec<String> = nodes.iter().map(u64::to_string).collect();
    format!("{{{}}}", names.join(", "))
}

/// A fault with its time span.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Episode {
    pub start: Nanos,
    pub duration: Nanos,
    pub fault: Fault,
}

/// How often each kind of fault is drawn (relative weights) and the window they fall in.
#[derive(Clone, Debug)]
pub struct ScheduleConfig {
    pub nodes: u64,
    /// No fault starts before this (lets the first leader be elected).
    pub quiet_start_ns: Nanos,
    /// Every fault is healed at this time.
    pub heal_at_ns: Nanos,
    /// Gap between episode starts: `gap_min_ns..=gap_max_ns`.
    pub gap_min_ns: Nanos,
    pub gap_max_ns: Nanos,
    /// Percentage of runs whose first election happens with crash-after-vote armed.
    pub boot_storm_percent: u32,
    pub weights: FaultWeights,
}

#[derive(Clone, Copy, Debug)]
pub struct FaultWeights {
    pub crash: u32,
    pub crash_after_vote: u32,
    pub partition: u32,
    pub isolate: u32,
    pub one_way: u32,
    pub degrade: u32,
    pub slow_clock: u32,
    pub stale_leader: u32,
    pub pause: u32,
    pub power_loss: u32,
}

impl FaultWeights {
    fn total(&self) -> u32 {
        self.crash
            + self.crash_after_vote
            + self.partition
            + self.isolate
            + self.one_way
            + self.degrade
            + self.slow_clock
            + self.stale_leader
            + self.pause
            + self.power_loss
    }
}

impl Default for FaultWeights {
    fn default() -> FaultWeights {
        FaultWeights {
            crash: 4,
            crash_after_vote: 2,
            partition: 3,
            isolate: 3,
            one_way: 2,
            degrade: 2,
            slow_clock: 2,
            stale_leader: 4,
            pause: 3,
            power_loss: 4,
        }
    }
}

impl FaultWeights {
    /// The faults a run with leader-lease reads keeps: every one but the slowed clocks (a slow
    /// clock and a stale leader run a clock at 5–60% of real time), which break the drift bound
    /// lease reads state as their assumption — with them a lease outlives the leadership by
    /// design (a run with `--read-lease` and the default weights shows the stale reads).
    pub fn within_drift_bound() -> FaultWeights {
        FaultWeights {
            slow_clock: 0,
            stale_leader: 0,
            ..FaultWeights::default()
        }
    }
}

impl FaultWeights {
    /// The faults of a run that breaks lease reads' drift bound on purpose: stale leaders (an
    /// isolated leader with a clock at 5–25% of real time) five times as often.
    pub fn beyond_drift_bound() -> FaultWeights {
        FaultWeights {
            stale_leader: 20,
            ..FaultWeights::default()
        }
    }
}

/// The episodes of one run, in start order, and when everything heals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultSchedule {
    pub episodes: Vec<Episode>,
    pub heal_at: Nanos,
}

impl FaultSchedule {
    /// No faults at all (scenario tests drive faults by hand).
    pub fn none(heal_at: Nanos) -> FaultSchedule {
        FaultSchedule {
            episodes: Vec::new(),
            heal_at,
        }
    }

    pub fn generate(config: &ScheduleConfig, prng: &mut Prng) -> FaultSchedule {
        assert!(config.nodes >= 1 && config.gap_min_ns <= config.gap_max_ns);
        assert!(config.weights.total() > 0, "fault weights are all zero");
        let mut episodes = Vec::new();
        if prng.chance_percent(config.boot_storm_percent) {
            // The first election: every replica starts at once, so competing candidates are
            // common; crash the first to grant a vote.
            let fault = Fault::CrashAfterVote {
                target: Target::Any,
                restart_after_ns: draw_quick_restart(prng),
            };
            episodes.push(Episode {
                start: 0,
                duration: config.quiet_start_ns,
                fault,
            });
        }
        let mut start = config.quiet_start_ns + prng.range_inclusive(0, config.gap_max_ns);
        while start < config.heal_at_ns {
            let fault = draw_fault(config, prng);
            let duration = match fault {
                Fault::Crash(_) if prng.chance_percent(50) => {
                    prng.range_inclusive(MILLISECOND, 50 * MILLISECOND)
                }
                Fault::CrashAfterVote { .. } => prng.range_inclusive(SECOND, 4 * SECOND),
                Fault::Pause(_) => prng.range_inclusive(200 * MILLISECOND, 2 * SECOND),
                Fault::PowerLoss { .. } => prng.range_inclusive(10 * MILLISECOND, SECOND),
                _ => prng.range_inclusive(100 * MILLISECOND, 3 * SECOND),
            };
            let duration = duration.min(config.heal_at_ns - start);
            episodes.push(Episode {
                start,
                duration,
                fault,
            });
            start += prng.range_inclusive(config.gap_min_ns, config.gap_max_ns);
        }
        FaultSchedule {
            episodes,
            heal_at: config.heal_at_ns,
        }
    }
}

/// A restart right after a crash (a supervisor restarting the process at once): half the time
/// immediately, else within 100 µs — quick enough that a competing candidate's vote request,
/// already on its way, arrives after the restart instead of being lost.
fn draw_quick_restart(prng: &mut Prng) -> Nanos {
    if prng.chance_percent(50) {
        0
    } else {
        prng.range_inclusive(1, 100 * MICROSECOND)
    }
}

fn draw_target(nodes: u64, prng: &mut Prng) -> Target {
    if prng.chance_percent(50) {
        Target::Leader
    } else {
        Target::Node(prng.range_inclusive(1, nodes))
    }
}

fn draw_fault(config: &ScheduleConfig, prng: &mut Prng) -> Fault {
    let weights = config.weights;
    let nodes = config.nodes;
    let mut roll = prng.below(u64::from(weights.total())) as u32;
    let mut take = |weight: u32| {
        let hit = roll < weight;
        roll = roll.saturating_sub(weight);
        hit
    };
    if take(weights.crash) {
        return Fault::Crash(draw_target(nodes, prng));
    }
    if take(weights.crash_after_vote) {
        let target = if prng.chance_percent(50) {
            Target::Any
        } else {
            Target::Node(prng.range_inclusive(1, nodes))
        };
        return Fault::CrashAfterVote {
            target,
            restart_after_ns: draw_quick_restart(prng),
        };
    }
    if take(weights.pause) {
        return Fault::Pause(draw_target(nodes, prng));
    }
    if take(weights.power_loss) {
        return Fault::PowerLoss {
            restart_after_ns: draw_quick_restart(prng),
        };
    }
    if take(weights.stale_leader) {
        return Fault::StaleLeader {
            rate_percent: prng.range_inclusive(5, 25) as u32,
        };
    }
    if take(weights.partition) {
        let mut members: Vec<u64> = (1..=nodes).collect();
        prng.shuffle(&mut members);
        let cut = prng.range_inclusive(1, (nodes - 1).max(1)) as usize;
        let mut left = members[..cut.min(members.len())].to_vec();
        let mut right = members[cut.min(members.len())..].to_vec();
        left.sort_unstable();
        right.sort_unstable();
        return Fault::Partition { left, right };
    }
    if take(weights.isolate) {
        return Fault::Isolate(draw_target(nodes, prng));
    }
    if take(weights.one_way) {
        let from = draw_target(nodes, prng);
        return Fault::OneWay {
            from,
            to: prng.range_inclusive(1, nodes),
        };
    }
    if take(weights.degrade) {
        return Fault::Degrade(Quality {
            loss_ppm: prng.range_inclusive(20_000, 300_000) as u32,
            duplicate_ppm: prng.range_inclusive(10_000, 200_000) as u32,
            long_delay_ppm: prng.range_inclusive(10_000, 100_000) as u32,
        });
    }
    Fault::SlowClock {
        target: draw_target(nodes, prng),
        rate_percent: prng.range_inclusive(10, 60) as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(nodes: u64) -> ScheduleConfig {
        ScheduleConfig {
            nodes,
            quiet_start_ns: SECOND,
            heal_at_ns: 20 * SECOND,
            gap_min_ns: 200 * MILLISECOND,
            gap_max_ns: 1500 * MILLISECOND,
            boot_storm_percent: 30,
            weights: FaultWeights::default(),
        }
    }

    #[test]
    fn schedule_is_a_function_of_the_seed() {
        let a = FaultSchedule::generate(&config(5), &mut Prng::new(7));
        let b = FaultSchedule::generate(&config(5), &mut Prng::new(7));
        let c = FaultSchedule::generate(&config(5), &mut Prng::new(8));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn episodes_fit_the_window() {
        for seed in 0..50 {
            let schedule = FaultSchedule::generate(&config(3), &mut Prng::new(seed));
            assert!(
                schedule.episodes.len() >= 10,
                "only {} episodes",
                schedule.episodes.len()
            );
            for episode in &schedule.episodes {
                assert!(episode.start >= SECOND || episode.fault.kind() == "crash-after-vote");
                assert!(episode.start + episode.duration <= schedule.heal_at);
                if let Fault::Partition { left, right } = &episode.fault {
                    assert!(!left.is_empty() && !right.is_empty());
                    assert_eq!(left.len() + right.len(), 3);
                }
            }
            assert!(schedule
                .episodes
                .windows(2)
                .all(|w| w[0].start <= w[1].start));
        }
    }

    #[test]
    fn every_kind_is_drawn() {
        let mut kinds = std::collections::BTreeSet::new();
        for seed in 0..20 {
            for episode in FaultSchedule::generate(&config(5), &mut Prng::new(seed)).episodes {
                kinds.insert(episode.fault.kind());
            }
        }
        assert_eq!(kinds.len(), 10);
    }

    #[test]
    fn switches_parse_by_name() {
        for switch in FaultSwitch::ALL {
            assert_eq!(FaultSwitch::parse(switch.name()), Some(switch));
        }
        assert_eq!(FaultSwitch::parse("nonsense"), None);
        assert!(FaultSwitch::raft_faults(Some(FaultSwitch::ForgetVote)).forget_vote_on_restart);
    }
}
