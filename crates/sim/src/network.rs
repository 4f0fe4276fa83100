//! The simulated network: per-message delay, loss, duplication and partitions.
//!
//! Reordering needs no switch of its own: every message draws its own delay, so two messages on
//! one link overtake each other whenever the second draws a shorter one. Partitions cut links
//! between replicas, per direction; client traffic is never partitioned (clients are elsewhere)
//! but is delayed and lost like the rest.

use crate::prng::Prng;
use crate::time::{Nanos, MICROSECOND, MILLISECOND};

/// How the links behave at a given moment; faults swap it for a worse one for a while.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quality {
    /// Messages lost, in parts per million.
    pub loss_ppm: u32,
    /// Messages delivered twice (with independent delays), in parts per million.
    pub duplicate_ppm: u32,
    /// Messages held back for a long time (`long_delay_min_ns..=long_delay_max_ns`), per million.
    pub long_delay_ppm: u32,
}

impl Quality {
    /// The network on a good day: rare loss, duplication and stragglers.
    pub const fn normal() -> Quality {
        Quality {
            loss_ppm: 1_000,
            duplicate_ppm: 1_000,
            long_delay_ppm: 2_000,
        }
    }
}

/// Delay bounds. A message takes `delay_min_ns..=delay_max_ns`, skewed towards the short end,
/// unless it is a straggler.
#[derive(Clone, Copy, Debug)]
pub struct NetworkConfig {
    pub delay_min_ns: Nanos,
    pub delay_max_ns: Nanos,
    pub long_delay_min_ns: Nanos,
    pub long_delay_max_ns: Nanos,
}

impl Default for NetworkConfig {
    fn default() -> NetworkConfig {
        NetworkConfig {
            delay_min_ns: 200 * MICROSECOND,
            delay_max_ns: 5 * MILLISECOND,
            long_delay_min_ns: 20 * MILLISECOND,
            long_delay_max_ns: 600 * MILLISECOND,
        }
    }
}

/// What happens to one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Delivered after `delay`, and a second time after `duplicate` if that is set.
    Deliver {
        delay: Nanos,
        duplicate: Option<Nanos>,
    },
    Dropped(DropReason),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    Partition,
    Loss,
    /// The receiver was down when the message arrived.
    Down,
}

/// The links between `nodes` replicas, numbered 1..=nodes.
///
/// # Invariants
/// - `blocked.len() == (nodes + 1)^2`; `blocked[from * (nodes + 1) + to]` says whether the link
///   from → to is cut; a node's link to itself is never cut.
pub struct Network {
    nodes: usize,
    blocked: Vec<bool>,
    config: NetworkConfig,
    quality: Quality,
    prng: Prng,
}

impl Network {
    pub fn new(nodes: usize, config: NetworkConfig, prng: Prng) -> Network {
        assert!(nodes >= 1, "a network needs nodes");
        assert!(
            config.delay_min_ns <= config.delay_max_ns,
            "delay bounds reversed"
        );
        assert!(
            config.long_delay_min_ns <= config.long_delay_max_ns,
            "long delay bounds reversed"
        );
        Network {
            nodes,
            blocked: vec![false; (nodes + 1) * (nodes + 1)],
            config,
            quality: Quality::normal(),
            prng,
        }
    }

    fn link(&self, from: u64, to: u64) -> usize {
        assert!(
            (1..=self.nodes as u64).contains(&from) && (1..=self.nodes as u64).contains(&to),
            "link {from} → {to} outside 1..={}",
            self.nodes
        );
        from as usize * (self.nodes + 1) + to as usize
    }

    pub fn is_blocked(&self, from: u64, to: u64) -> bool {
        self.blocked[self.link(from, to)]
    }

    /// Cuts every link between a node of `left` and a node of `right`, both ways.
    pub fn partition(&mut self, left: &[u64], right: &[u64]) {
        for &a in left {
            for &b in right {
                if a != b {
                    let forward = self.link(a, b);
                    let backward = self.link(b, a);
                    self.blocked[forward] = true;
                    self.blocked[backward] = true;
                }
            }
        }
    }

    /// Cuts the link from → to only: `to` stops hearing `from`, `from` still hears `to`.
    pub fn block_one_way(&mut self, from: u64, to: u64) {
        if from != to {
            let link = self.link(from, to);
            self.blocked[link] = true;
        }
    }

    /// Cuts `node` off from every other replica.
    pub fn isolate(&mut self, node: u64) {
        let others: Vec<u64> = (1..=self.nodes as u64)
            .filter(|other| *other != node)
            .collect();
        self.partition(&[node], &others);
    }

    /// Restores every link (the quality stays as it is).
    pub fn heal(&mut self) {
        self.blocked.iter_mut().for_each(|link| *link = false);
    }

    pub fn is_healed(&self) -> bool {
        self.blocked.iter().all(|link| !link)
    }

    pub fn quality(&self) -> Quality {
        self.quality
    }

    pub fn set_quality(&mut self, quality: Quality) {
        assert!(quality.loss_ppm <= 1_000_000 && quality.duplicate_ppm <= 1_000_000);
        self.quality = quality;
    }

    /// The fate of a message between two replicas.
    pub fn route(&mut self, from: u64, to: u64) -> Route {
        if self.is_blocked(from, to) {
            return Route::Dropped(DropReason::Partition);
        }
        self.route_unpartitioned()
    }

    /// The fate of a message between a client and a replica.
    pub fn route_client(&mut self) -> Route {
        self.route_unpartitioned()
    }

    fn route_unpartitioned(&mut self) -> Route {
        if self.prng.chance_ppm(self.quality.loss_ppm) {
            return Route::Dropped(DropReason::Loss);
        }
        let delay = self.delay();
        let duplicate = if self.prng.chance_ppm(self.quality.duplicate_ppm) {
            Some(self.delay())
        } else {
            None
        };
        Route::Deliver { delay, duplicate }
    }

    fn delay(&mut self) -> Nanos {
        if self.prng.chance_ppm(self.quality.long_delay_ppm) {
            return self
                .prng
                .range_inclusive(self.config.long_delay_min_ns, self.config.long_delay_max_ns);
        }
        // Squaring a uniform draw skews towards short delays, with a tail up to the maximum.
        let unit = self.prng.unit();
        let span = (self.config.delay_max_ns - self.config.delay_min_ns) as f64;
        self.config.delay_min_ns + (span * unit * unit) as Nanos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network(nodes: usize) -> Network {
        Network::new(nodes, NetworkConfig::default(), Prng::new(5))
    }

    fn perfect() -> Quality {
        Quality {
            loss_ppm: 0,
            duplicate_ppm: 0,
            long_delay_ppm: 0,
        }
    }

    #[test]
    fn symmetric_partition_cuts_both_ways_only_across() {
        let mut net = network(3);
        net.partition(&[1], &[2, 3]);
        assert!(net.is_blocked(1, 2) && net.is_blocked(2, 1));
        assert!(net.is_blocked(1, 3) && net.is_blocked(3, 1));
        assert!(!net.is_blocked(2, 3) && !net.is_blocked(3, 2));
        net.heal();
        assert!(net.is_healed());
    }

    #[test]
    fn one_way_partition() {
        let mut net = network(3);
        net.set_quality(perfect());
        net.block_one_way(1, 2);
        assert_eq!(net.route(1, 2), Route::Dropped(DropReason::Partition));
        assert!(matches!(net.route(2, 1), Route::Deliver { .. }));
    }

    #[test]
    fn isolate_cuts_everyone() {
        let mut net = network(5);
        net.isolate(4);
        for other in [1, 2, 3, 5] {
            assert!(net.is_blocked(4, other) && net.is_blocked(other, 4));
        }
        assert!(!net.is_blocked(1, 2));
    }

    #[test]
    fn delays_within_bounds_and_reorder() {
        let mut net = network(2);
        net.set_quality(perfect());
        let config = NetworkConfig::default();
        let delays: Vec<Nanos> = (0..1000)
            .map(|_| match net.route(1, 2) {
                Route::Deliver {
                    delay,
                    duplicate: None,
                } => delay,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert!(delays
            .iter()
            .all(|d| (config.delay_min_ns..=config.delay_max_ns).contains(d)));
        assert!(
            delays.windows(2).any(|pair| pair[1] < pair[0]),
            "no reordering possible"
        );
    }

    #[test]
    fn loss_and_duplication_rates() {
        let mut net = network(2);
        net.set_quality(Quality {
            loss_ppm: 250_000,
            duplicate_ppm: 500_000,
            long_delay_ppm: 0,
        });
        let (mut lost, mut duplicated) = (0, 0);
        for _ in 0..10_000 {
            match net.route_client() {
                Route::Dropped(DropReason::Loss) => lost += 1,
                Route::Deliver {
                    duplicate: Some(_), ..
                } => duplicated += 1,
                _ => {}
            }
        }
        assert!((2_000..3_000).contains(&lost), "lost {lost}");
        assert!(
            (3_300..4_200).contains(&duplicated),
            "duplicated {duplicated}"
        );
    }
}
