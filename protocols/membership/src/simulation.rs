//! An in-memory network on virtual time for [`Membership`] instances: tests and benchmarks.
//!
//! Pure: no sockets, no sleeping. Time is an [`Instant`] that only this module advances, from
//! one scheduled event (a datagram delivery or a timer) to the next, so a minute of protocol
//! runs in milliseconds. The network can delay (fixed latency + uniform jitter), drop at
//! random (everywhere or per link), and cut links (partitions); nodes can be killed (they
//! stop without a word, like a SIGKILL) and restarted (a new generation).
//! Every run loop is bounded by a virtual deadline and an event budget.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::protocol::{Membership, MembershipEvent, MembershipTimer, Output};
use super::{ClusterKeys, MemberId, MembershipConfig, MembershipError};

/// Key every simulated node shares.
pub const SIMULATION_KEY: &[u8] = b"herald-membership-simulation-key";

/// Upper bound on events one run call processes, whatever its deadline.
const MAX_EVENTS_PER_RUN: u64 = 50_000_000;

/// How the simulated network treats datagrams.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkConditions {
    /// One-way delay of every datagram.
    pub latency: Duration,
    /// Extra delay, uniform in `0..=jitter`.
    pub jitter: Duration,
    /// Probability that any datagram is lost.
    pub loss: f64,
}

impl Default for NetworkConditions {
    /// A quiet LAN: 200 µs one way, 100 µs jitter, no loss.
    fn default() -> Self {
        Self {
            latency: Duration::from_micros(200),
            jitter: Duration::from_micros(100),
            loss: 0.0,
        }
    }
}

/// A membership event as one node saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedEvent {
    /// Virtual time since the cluster was created.
    pub at: Duration,
    /// The node that saw it.
    pub observer: String,
    pub event: MembershipEvent,
}

struct SimulatedNode {
    name: String,
    addr: SocketAddr,
    generation: u64,
    /// Bumped on every kill/restart so timers of a previous life are discarded.
    life: u32,
    membership: Option<Membership>,
}

enum Scheduled {
    Delivery {
        to: usize,
        datagram: Vec<u8>,
    },
    Timer {
        node: usize,
        life: u32,
        timer: MembershipTimer,
    },
}

/// Several membership instances on one in-memory network.
pub struct SimulatedCluster {
    epoch: Instant,
    now: Instant,
    config: MembershipConfig,
    keys: ClusterKeys,
    nodes: Vec<SimulatedNode>,
    by_addr: HashMap<SocketAddr, usize>,
    queue: BinaryHeap<Reverse<(Instant, u64)>>,
    scheduled: HashMap<u64, Scheduled>,
    next_sequence: u64,
    network: NetworkConditions,
    cut_links: BTreeSet<(usize, usize)>,
    link_loss: BTreeMap<(usize, usize), f64>,
    rng: StdRng,
    seed: u64,
    events: Vec<ObservedEvent>,
}

impl SimulatedCluster {
    /// `size` nodes named `node-00`, `node-01`, … at 192.0.2.11, .12, … (port 7946, and
    /// further ports past 200 nodes), none started yet. `seed` makes the run reproducible.
    pub fn new(size: usize, config: MembershipConfig, seed: u64) -> Result<Self, MembershipError> {
        config.validate()?;
        let keys = ClusterKeys::new(SIMULATION_KEY)?;
        let mut nodes = Vec::with_capacity(size);
        let mut by_addr = HashMap::with_capacity(size);
        for index in 0..size {
            let host = u8::try_from(11 + index % 200).unwrap_or(u8::MAX);
            let port = u16::try_from(7946 + index / 200).unwrap_or(u16::MAX);
            let addr = SocketAddr::from((Ipv4Addr::new(192, 0, 2, host), port));
            by_addr.insert(addr, index);
            nodes.push(SimulatedNode {
                name: format!("node-{index:02}"),
                addr,
                generation: 1,
                life: 0,
                membership: None,
            });
        }
        let epoch = Instant::now();
        Ok(Self {
            epoch,
            now: epoch,
            config,
            keys,
            nodes,
            by_addr,
            queue: BinaryHeap::new(),
            scheduled: HashMap::new(),
            next_sequence: 0,
            network: NetworkConditions::default(),
            cut_links: BTreeSet::new(),
            link_loss: BTreeMap::new(),
            rng: StdRng::seed_from_u64(seed),
            seed,
            events: Vec::new(),
        })
    }

    /// Starts every node, each seeded with every other node's address.
    pub fn start_all(&mut self) -> Result<(), MembershipError> {
        for index in 0..self.nodes.len() {
            self.start(index)?;
        }
        Ok(())
    }

    /// Starts (or restarts, as the next generation) one node, seeded with every other node.
    pub fn start(&mut self, index: usize) -> Result<(), MembershipError> {
        let seeds: Vec<SocketAddr> = self.nodes.iter().map(|node| node.addr).collect();
        let Some(node) = self.nodes.get_mut(index) else {
            return Ok(());
        };
        if node.membership.is_some() {
            node.generation += 1;
        }
        node.life += 1;
        let identity = MemberId::new(node.name.clone(), node.addr, node.generation)?;
        let random_seed = self.seed ^ ((index as u64) << 32) ^ u64::from(node.life);
        let mut membership = Membership::new(
            identity,
            self.config.clone(),
            self.keys.clone(),
            random_seed,
        )?;
        let outputs = membership.set_seeds(self.now, seeds);
        node.membership = Some(membership);
        self.apply_outputs(index, outputs);
        Ok(())
    }

    /// Stops a node without a goodbye (like SIGKILL or a power cut); its next start is a new
    /// generation.
    pub fn kill(&mut self, index: usize) {
        if let Some(node) = self.nodes.get_mut(index)
            && node.membership.take().is_some()
        {
            node.generation += 1;
            node.life += 1;
        }
    }

    /// Makes a node leave the cluster politely, then stops it.
    pub fn leave(&mut self, index: usize) {
        let now = self.now;
        let outputs = match self
            .nodes
            .get_mut(index)
            .and_then(|node| node.membership.as_mut())
        {
            Some(membership) => membership.leave(now),
            None => return,
        };
        self.apply_outputs(index, outputs);
        self.kill(index);
    }

    /// Replaces the network conditions.
    pub fn set_network(&mut self, network: NetworkConditions) {
        self.network = network;
    }

    /// Loss probability on the link between two nodes, both directions (on top of the
    /// network-wide loss).
    pub fn set_link_loss(&mut self, a: usize, b: usize, loss: f64) {
        self.link_loss.insert((a, b), loss);
        self.link_loss.insert((b, a), loss);
    }

    /// Cuts every link between `group` and the other nodes.
    pub fn partition(&mut self, group: &[usize]) {
        for &inside in group {
            for outside in (0..self.nodes.len()).filter(|index| !group.contains(index)) {
                self.cut_links.insert((inside, outside));
                self.cut_links.insert((outside, inside));
            }
        }
    }

    /// Restores every cut link.
    pub fn heal(&mut self) {
        self.cut_links.clear();
    }

    /// Delivers raw bytes to a node as if they came from the network (for forgeries).
    pub fn inject(&mut self, to: usize, datagram: Vec<u8>) {
        self.push(self.now, Scheduled::Delivery { to, datagram });
    }

    /// Virtual time since creation.
    pub fn elapsed(&self) -> Duration {
        self.now - self.epoch
    }

    /// Number of nodes, running or not.
    pub fn size(&self) -> usize {
        self.nodes.len()
    }

    /// A node's name.
    pub fn name(&self, index: usize) -> &str {
        self.nodes.get(index).map_or("", |node| node.name.as_str())
    }

    /// A node's address.
    pub fn addr(&self, index: usize) -> Option<SocketAddr> {
        self.nodes.get(index).map(|node| node.addr)
    }

    /// A running node's protocol instance.
    pub fn membership(&self, index: usize) -> Option<&Membership> {
        self.nodes.get(index)?.membership.as_ref()
    }

    /// A running node's live set.
    pub fn live_view(&self, index: usize) -> Option<&BTreeSet<String>> {
        self.membership(index).map(Membership::live_members)
    }

    /// Every event every node reported, in order.
    pub fn events(&self) -> &[ObservedEvent] {
        &self.events
    }

    /// True when every running node's live set is exactly the set of running nodes.
    pub fn converged(&self) -> bool {
        let running: BTreeSet<String> = self
            .nodes
            .iter()
            .filter(|node| node.membership.is_some())
            .map(|node| node.name.clone())
            .collect();
        self.nodes
            .iter()
            .filter_map(|node| node.membership.as_ref())
            .all(|membership| *membership.live_members() == running)
    }

    /// True when no running node other than `index` has `index` in its live set.
    pub fn all_others_see_down(&self, index: usize) -> bool {
        let name = self.name(index);
        self.nodes
            .iter()
            .enumerate()
            .filter(|(other, _)| *other != index)
            .filter_map(|(_, node)| node.membership.as_ref())
            .all(|membership| !membership.live_members().contains(name))
    }

    /// Runs the protocol for `duration` of virtual time.
    pub fn run_for(&mut self, duration: Duration) {
        let deadline = self.now + duration;
        self.run_until(deadline, |_| false);
    }

    /// Runs until `done` holds (checked after every event) or `within` has passed; returns
    /// the virtual time it took, or `None` at the deadline.
    pub fn run_until_within(
        &mut self,
        within: Duration,
        done: impl Fn(&Self) -> bool,
    ) -> Option<Duration> {
        let start = self.now;
        let deadline = start + within;
        self.run_until(deadline, done).then(|| self.now - start)
    }

    fn run_until(&mut self, deadline: Instant, done: impl Fn(&Self) -> bool) -> bool {
        if done(self) {
            return true;
        }
        for _ in 0..MAX_EVENTS_PER_RUN {
            let Some(&Reverse((at, sequence))) = self.queue.peek() else {
                break;
            };
            if at > deadline {
                break;
            }
            self.queue.pop();
            self.now = self.now.max(at);
            if let Some(item) = self.scheduled.remove(&sequence) {
                self.dispatch(item);
            }
            if done(self) {
                return true;
            }
        }
        self.now = self.now.max(deadline);
        false
    }

    fn dispatch(&mut self, item: Scheduled) {
        let now = self.now;
        let (index, outputs) = match item {
            Scheduled::Delivery { to, datagram } => {
                match self
                    .nodes
                    .get_mut(to)
                    .and_then(|node| node.membership.as_mut())
                {
                    Some(membership) => (to, membership.handle_datagram(now, &datagram)),
                    None => return,
                }
            }
            Scheduled::Timer { node, life, timer } => match self.nodes.get_mut(node) {
                Some(SimulatedNode {
                    membership: Some(membership),
                    life: current,
                    ..
                }) if *current == life => (node, membership.handle_timer(now, timer)),
                _ => return,
            },
        };
        self.apply_outputs(index, outputs);
    }

    fn apply_outputs(&mut self, from: usize, outputs: Vec<Output>) {
        let life = self.nodes.get(from).map_or(0, |node| node.life);
        for output in outputs {
            match output {
                Output::Send { to, datagram } => {
                    let Some(&destination) = self.by_addr.get(&to) else {
                        continue;
                    };
                    if self.cut_links.contains(&(from, destination)) {
                        continue;
                    }
                    let link_loss = self
                        .link_loss
                        .get(&(from, destination))
                        .copied()
                        .unwrap_or(0.0);
                    let loss = self.network.loss + link_loss;
                    if loss > 0.0 && self.rng.random::<f64>() < loss {
                        continue;
                    }
                    let jitter_micros = u64::try_from(self.network.jitter.as_micros()).unwrap_or(0);
                    let jitter = if jitter_micros == 0 {
                        Duration::ZERO
                    } else {
                        Duration::from_micros(self.rng.random_range(0..=jitter_micros))
                    };
                    let at = self.now + self.network.latency + jitter;
                    self.push(
                        at,
                        Scheduled::Delivery {
                            to: destination,
                            datagram,
                        },
                    );
                }
                Output::ScheduleTimer { at, timer } => {
                    self.push(
                        at,
                        Scheduled::Timer {
                            node: from,
                            life,
                            timer,
                        },
                    );
                }
                Output::Event(event) => self.events.push(ObservedEvent {
                    at: self.now - self.epoch,
                    observer: self
                        .nodes
                        .get(from)
                        .map_or_else(String::new, |node| node.name.clone()),
                    event,
                }),
            }
        }
    }

    fn push(&mut self, at: Instant, item: Scheduled) {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        self.queue.push(Reverse((at, sequence)));
        self.scheduled.insert(sequence, item);
    }
}
