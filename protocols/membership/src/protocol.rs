//! The sans-IO membership state machine: SWIM (via foca) plus this node's view of the cluster.
//!
//! Owns: the foca instance, the frame authentication, the per-node view (Alive / Suspect /
//! Down), the live set and its rejoin hold-down, the seed list, and the counters. Does not
//! own: sockets, clocks, timers. Every entry point takes `now` and returns [`Output`]s as
//! data: datagrams to send, timers to schedule ("call [`Membership::handle_timer`] with this
//! timer at this instant"), and membership events. Any clock will do, so tests and the
//! benchmark run it on virtual time.
//!
//! Protocol references: SWIM = Das, Gupta, Motivala, "SWIM: Scalable Weakly-consistent
//! Infection-style Process Group Membership Protocol" (DSN 2002); Lifeguard = Dadgar et al.,
//! "Lifeguard: Local Health Awareness for More Accurate Failure Detection" (2018).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Instant;

use foca::{
    AccumulatingRuntime, Foca, NoCustomBroadcast, OwnedNotification, PostcardCodec, State, Timer,
};
use rand_foca::{SeedableRng, rngs::StdRng};

use super::MembershipError;
use super::auth::{ClusterKeys, FRAME_HEADER_LEN, FrameRejection, TAG_LEN};
use super::config::MembershipConfig;
use super::identity::MemberId;

type Swim = Foca<MemberId, PostcardCodec, StdRng, NoCustomBroadcast>;

/// What a node looks like from here (SWIM §4.2 states).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeState {
    /// Answering probes.
    Alive,
    /// Missed a probe cycle; declared Down unless it refutes within the suspicion timeout.
    /// Still counted live.
    Suspect,
    /// Declared dead (or left).
    Down,
}

impl NodeState {
    fn is_active(self) -> bool {
        !matches!(self, NodeState::Down)
    }
}

impl From<State> for NodeState {
    fn from(state: State) -> Self {
        match state {
            State::Alive => NodeState::Alive,
            State::Suspect => NodeState::Suspect,
            State::Down => NodeState::Down,
        }
    }
}

/// A change in this node's view of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MembershipEvent {
    /// The node entered the live set (first sighting, or back after the rejoin hold-down).
    NodeUp(String),
    /// The node missed a probe cycle and is under suspicion (still live).
    NodeSuspect(String),
    /// A suspected node proved it is alive (SWIM §4.2 refutation).
    NodeSuspicionRefuted(String),
    /// The node left the live set: declared Down, or it left the cluster.
    NodeDown(String),
}

/// An opaque timer: hand it back to [`Membership::handle_timer`] at the instant it was
/// scheduled for. Stale timers are harmless.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MembershipTimer(TimerKind);

#[derive(Clone, Debug, PartialEq, Eq)]
enum TimerKind {
    Swim(Timer<MemberId>),
    RetrySeeds,
    RejoinHoldDownElapsed(String),
}

/// What the caller must do after an input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Send this datagram (already framed and authenticated) to this address.
    Send { to: SocketAddr, datagram: Vec<u8> },
    /// Call [`Membership::handle_timer`] with `timer` once `at` has come.
    ScheduleTimer { at: Instant, timer: MembershipTimer },
    /// The view changed.
    Event(MembershipEvent),
}

/// Datagram and protocol counters, for metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MembershipCounters {
    pub datagrams_received: u64,
    pub datagrams_accepted: u64,
    pub datagrams_sent: u64,
    pub rejected_too_short: u64,
    pub rejected_too_long: u64,
    pub rejected_not_membership: u64,
    pub rejected_unsupported_version: u64,
    pub rejected_bad_authentication: u64,
    /// Authentic frames whose content foca refused (malformed, from ourselves, …).
    pub rejected_malformed: u64,
    /// Non-fatal protocol hiccups reported by foca on timers (e.g. an incomplete probe cycle).
    pub protocol_errors: u64,
    /// Times the cluster declared this node Down and it rejoined as a new generation.
    pub rejoins: u64,
}

impl MembershipCounters {
    /// Datagrams dropped for any reason.
    pub fn rejected_total(&self) -> u64 {
        self.rejected_too_short
            + self.rejected_too_long
            + self.rejected_not_membership
            + self.rejected_unsupported_version
            + self.rejected_bad_authentication
            + self.rejected_malformed
    }
}

#[derive(Debug)]
struct NodeRecord {
    state: NodeState,
    /// When it last went from not-active to active.
    up_since: Option<Instant>,
    /// Has been Down at least once: its returns are held down.
    seen_down: bool,
    live: bool,
}

/// One speaker's membership protocol instance.
pub struct Membership {
    swim: Swim,
    runtime: AccumulatingRuntime<MemberId>,
    config: MembershipConfig,
    keys: ClusterKeys,
    own_name: String,
    own_addr: SocketAddr,
    seeds: BTreeSet<SocketAddr>,
    nodes: BTreeMap<String, NodeRecord>,
    live: BTreeSet<String>,
    counters: MembershipCounters,
    configured_cluster_size: usize,
    seed_retry_running: bool,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Membership")
            .field("identity", self.swim.identity())
            .field("live", &self.live)
            .finish_non_exhaustive()
    }
}

impl Membership {
    /// A member that knows nobody yet. `random_seed` feeds probe-order shuffling and member
    /// choice; pass real randomness in production, a fixed value in tests.
    pub fn new(
        identity: MemberId,
        config: MembershipConfig,
        keys: ClusterKeys,
        random_seed: u64,
    ) -> Result<Self, MembershipError> {
        config.validate()?;
        let foca_packet_size = config.max_datagram_size - FRAME_HEADER_LEN - TAG_LEN;
        let swim = Foca::new(
            identity.clone(),
            config.to_foca(1, foca_packet_size),
            StdRng::seed_from_u64(random_seed),
            PostcardCodec,
        );
        Ok(Self {
            swim,
            runtime: AccumulatingRuntime::new(),
            keys,
            own_name: identity.name().to_owned(),
            own_addr: identity.addr(),
            seeds: BTreeSet::new(),
            nodes: BTreeMap::new(),
            live: BTreeSet::from([identity.name().to_owned()]),
            counters: MembershipCounters::default(),
            configured_cluster_size: 1,
            seed_retry_running: false,
            config,
        })
    }

    /// The current identity (its generation grows when the node rejoins).
    pub fn identity(&self) -> &MemberId {
        self.swim.identity()
    }

    /// Names of live nodes, this one included. Suspects count as live.
    pub fn live_members(&self) -> &BTreeSet<String> {
        &self.live
    }

    /// How this node sees another one, if it has heard of it.
    pub fn node_state(&self, name: &str) -> Option<NodeState> {
        self.nodes.get(name).map(|record| record.state)
    }

    /// Every other node heard of, with its state.
    pub fn nodes(&self) -> impl Iterator<Item = (&str, NodeState)> {
        self.nodes
            .iter()
            .map(|(name, record)| (name.as_str(), record.state))
    }

    /// Datagram and protocol counters.
    pub fn counters(&self) -> &MembershipCounters {
        &self.counters
    }

    /// Largest datagram this instance sends or accepts.
    pub fn max_datagram_size(&self) -> usize {
        self.config.max_datagram_size
    }

    /// The suspicion timeout in force (it scales with the cluster size).
    pub fn suspicion_timeout(&self) -> std::time::Duration {
        self.config.suspicion_timeout(self.configured_cluster_size)
    }

    /// Replaces the seed list (other speakers' addresses, e.g. from Node InternalIPs) and
    /// announces to every seed not seen before. The first call also starts the periodic seed
    /// retry that rejoins after partitions.
    pub fn set_seeds(
        &mut self,
        now: Instant,
        seeds: impl IntoIterator<Item = SocketAddr>,
    ) -> Vec<Output> {
        let seeds: BTreeSet<SocketAddr> = seeds
            .into_iter()
            .filter(|seed| *seed != self.own_addr)
            .collect();
        let new_seeds: Vec<SocketAddr> = seeds.difference(&self.seeds).copied().collect();
        self.seeds = seeds;
        for seed in new_seeds {
            self.announce_to(seed);
        }
        let mut outputs = Vec::new();
        if !self.seed_retry_running {
            self.seed_retry_running = true;
            outputs.push(Output::ScheduleTimer {
                at: now + self.config.seed_retry_interval,
                timer: MembershipTimer(TimerKind::RetrySeeds),
            });
        }
        self.finish(now, outputs)
    }

    /// Feeds a datagram received from the network. Anything that is not an authentic,
    /// well-formed membership frame is counted and dropped.
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) -> Vec<Output> {
        self.counters.datagrams_received += 1;
        match self.keys.open(datagram, self.config.max_datagram_size) {
            Err(rejection) => {
                let counter = match rejection {
                    FrameRejection::TooShort => &mut self.counters.rejected_too_short,
                    FrameRejection::TooLong => &mut self.counters.rejected_too_long,
                    FrameRejection::NotMembership => &mut self.counters.rejected_not_membership,
                    FrameRejection::UnsupportedVersion => {
                        &mut self.counters.rejected_unsupported_version
                    }
                    FrameRejection::BadAuthentication => {
                        &mut self.counters.rejected_bad_authentication
                    }
                };
                *counter += 1;
                tracing::debug!(
                    ?rejection,
                    len = datagram.len(),
                    "membership datagram dropped"
                );
                Vec::new()
            }
            Ok(message) => {
                match self.swim.handle_data(message, &mut self.runtime) {
                    Ok(()) => self.counters.datagrams_accepted += 1,
                    Err(error) => {
                        self.counters.rejected_malformed += 1;
                        tracing::debug!(%error, "membership message refused");
                    }
                }
                self.finish(now, Vec::new())
            }
        }
    }

    /// Fires a timer previously returned in [`Output::ScheduleTimer`].
    pub fn handle_timer(&mut self, now: Instant, timer: MembershipTimer) -> Vec<Output> {
        let mut outputs = Vec::new();
        match timer.0 {
            TimerKind::Swim(timer) => {
                if let Err(error) = self.swim.handle_timer(timer, &mut self.runtime) {
                    self.counters.protocol_errors += 1;
                    tracing::debug!(%error, "membership timer");
                }
            }
            TimerKind::RetrySeeds => {
                let live_addrs: BTreeSet<SocketAddr> = self
                    .swim
                    .iter_members()
                    .map(|member| member.id().addr())
                    .collect();
                let absent: Vec<SocketAddr> = self.seeds.difference(&live_addrs).copied().collect();
                for seed in absent {
                    self.announce_to(seed);
                }
                outputs.push(Output::ScheduleTimer {
                    at: now + self.config.seed_retry_interval,
                    timer: MembershipTimer(TimerKind::RetrySeeds),
                });
            }
            TimerKind::RejoinHoldDownElapsed(name) => {
                let hold = self.config.rejoin_hold_down;
                if let Some(record) = self.nodes.get_mut(&name)
                    && record.state.is_active()
                    && !record.live
                    && record.up_since.is_some_and(|since| since + hold <= now)
                {
                    record.live = true;
                    self.live.insert(name.clone());
                    outputs.push(Output::Event(MembershipEvent::NodeUp(name)));
                }
            }
        }
        self.finish(now, outputs)
    }

    /// Leaves the cluster: tells a few members this node is going away, so they drop it at
    /// once instead of after a failed probe and a suspicion timeout. Call before shutdown.
    pub fn leave(&mut self, now: Instant) -> Vec<Output> {
        if let Err(error) = self.swim.leave_cluster(&mut self.runtime) {
            self.counters.protocol_errors += 1;
            tracing::debug!(%error, "membership leave");
        }
        self.finish(now, Vec::new())
    }

    fn announce_to(&mut self, seed: SocketAddr) {
        if let Err(error) = self.swim.announce(MemberId::seed(seed), &mut self.runtime) {
            self.counters.protocol_errors += 1;
            tracing::debug!(%error, %seed, "membership announce");
        }
    }

    /// Turns what foca accumulated into outputs, then updates the view and the suspicion
    /// timeout.
    fn finish(&mut self, now: Instant, mut outputs: Vec<Output>) -> Vec<Output> {
        while let Some((to, message)) = self.runtime.to_send() {
            self.counters.datagrams_sent += 1;
            outputs.push(Output::Send {
                to: to.addr(),
                datagram: self.keys.seal(&message),
            });
        }
        while let Some((after, timer)) = self.runtime.to_schedule() {
            outputs.push(Output::ScheduleTimer {
                at: now + after,
                timer: MembershipTimer(TimerKind::Swim(timer)),
            });
        }
        while let Some(notification) = self.runtime.to_notify() {
            match notification {
                OwnedNotification::Rejoin(identity) => {
                    self.counters.rejoins += 1;
                    tracing::info!(
                        generation = identity.generation(),
                        "declared down by the cluster; rejoined as a new generation"
                    );
                }
                OwnedNotification::Defunct => {
                    tracing::warn!("membership defunct: this node is out of the cluster");
                }
                _ => {}
            }
        }
        self.update_view(now, &mut outputs);
        self.rescale_suspicion();
        outputs
    }

    fn update_view(&mut self, now: Instant, outputs: &mut Vec<Output>) {
        // One entry per node name: the newest generation foca knows.
        let mut observed: BTreeMap<String, (u64, NodeState)> = BTreeMap::new();
        for member in self.swim.iter_membership_state() {
            let id = member.id();
            if id.name() == self.own_name || id.name().is_empty() {
                continue;
            }
            let newer = observed
                .get(id.name())
                .is_none_or(|(generation, _)| id.generation() > *generation);
            if newer {
                observed.insert(
                    id.name().to_owned(),
                    (id.generation(), member.state().into()),
                );
            }
        }
        // Nodes foca forgot (after forget_down_after) count as Down.
        for (name, record) in &self.nodes {
            if !observed.contains_key(name) && record.state.is_active() {
                observed.insert(name.clone(), (0, NodeState::Down));
            }
        }

        let hold = self.config.rejoin_hold_down;
        for (name, (_, state)) in observed {
            let record = self.nodes.entry(name.clone()).or_insert(NodeRecord {
                state: NodeState::Down,
                up_since: None,
                seen_down: false,
                live: false,
            });
            let previous = record.state;
            match (previous.is_active(), state.is_active()) {
                (false, true) => {
                    record.up_since = Some(now);
                    if !record.seen_down || hold.is_zero() {
                        record.live = true;
                        self.live.insert(name.clone());
                        outputs.push(Output::Event(MembershipEvent::NodeUp(name.clone())));
                    } else {
                        outputs.push(Output::ScheduleTimer {
                            at: now + hold,
                            timer: MembershipTimer(TimerKind::RejoinHoldDownElapsed(name.clone())),
                        });
                    }
                    if state == NodeState::Suspect {
                        outputs.push(Output::Event(MembershipEvent::NodeSuspect(name)));
                    }
                }
                (true, false) => {
                    record.up_since = None;
                    record.seen_down = true;
                    if record.live {
                        record.live = false;
                        self.live.remove(&name);
                        outputs.push(Output::Event(MembershipEvent::NodeDown(name)));
                    }
                }
                (true, true) => match (previous, state) {
                    (NodeState::Alive, NodeState::Suspect) => {
                        outputs.push(Output::Event(MembershipEvent::NodeSuspect(name)));
                    }
                    (NodeState::Suspect, NodeState::Alive) => {
                        outputs.push(Output::Event(MembershipEvent::NodeSuspicionRefuted(name)));
                    }
                    _ => {}
                },
                (false, false) => record.seen_down = true,
            }
            record.state = state;
        }
    }

    /// Lifeguard-style scaling: the suspicion timeout follows the cluster size.
    fn rescale_suspicion(&mut self) {
        let cluster_size = self.swim.num_members() + 1;
        if cluster_size == self.configured_cluster_size {
            return;
        }
        let foca_packet_size = self.config.max_datagram_size - FRAME_HEADER_LEN - TAG_LEN;
        match self
            .swim
            .set_config(self.config.to_foca(cluster_size, foca_packet_size))
        {
            Ok(()) => self.configured_cluster_size = cluster_size,
            Err(error) => {
                self.counters.protocol_errors += 1;
                tracing::warn!(%error, "membership suspicion rescale refused");
            }
        }
    }
}
