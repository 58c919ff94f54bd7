//! The membership I/O edge: one UDP socket, one timer queue, one tokio task.
//!
//! Everything protocol-shaped happens in [`Membership`]; this task only receives datagrams,
//! sends what it is told to, fires timers at their instants, and publishes the live set on a
//! `watch` channel. The task lives exactly as long as the [`MembershipDriver`] that owns it:
//! dropping the driver aborts it; [`MembershipDriver::leave`] says goodbye first.
//!
//! Wiring in the speaker: keys from the Secret's bytes ([`ClusterKeys::new`]); bind this
//! node's InternalIP at [`DEFAULT_MEMBERSHIP_PORT`]; seed with every Node's InternalIP at the
//! same port and call [`MembershipDriver::set_seeds`] when Nodes change; hand
//! [`MembershipDriver::live_members`] to the planner as the set of live speakers; call
//! [`MembershipDriver::leave`] on SIGTERM so peers drop this node at once.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::task::TaskHandle;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};

use super::protocol::{Membership, MembershipCounters, MembershipEvent, MembershipTimer, Output};
use super::{ClusterKeys, MemberId, MembershipConfig, MembershipError};

/// Default membership port (the one memberlist-based speakers use, so firewall rules carry
/// over).
pub const DEFAULT_MEMBERSHIP_PORT: u16 = 7946;

/// How long [`MembershipDriver::leave`] waits for the goodbye to go out.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(1);

/// Everything the driver needs to join.
#[derive(Clone, Debug)]
pub struct DriverConfig {
    /// This node's Kubernetes name.
    pub node_name: String,
    /// Address to bind and to be reached at: the node's InternalIP and the membership port.
    pub bind: SocketAddr,
    /// Other speakers' membership addresses (their nodes' InternalIPs). May include our own;
    /// it is skipped.
    pub seeds: Vec<SocketAddr>,
    /// The shared cluster key(s), from the Secret.
    pub keys: ClusterKeys,
    /// Protocol knobs.
    pub protocol: MembershipConfig,
}

enum Command {
    SetSeeds(Vec<SocketAddr>),
    Leave(oneshot::Sender<()>),
}

/// A running membership protocol on a UDP socket.
#[derive(Debug)]
pub struct MembershipDriver {
    local_addr: SocketAddr,
    identity: MemberId,
    live: watch::Receiver<BTreeSet<String>>,
    counters: watch::Receiver<MembershipCounters>,
    commands: mpsc::Sender<Command>,
    _task: TaskHandle,
}

impl MembershipDriver {
    /// Binds the socket, joins through the seeds and starts the protocol task. The
    /// generation is the wall clock in milliseconds, so a restarted speaker outranks its
    /// previous life.
    pub async fn start(config: DriverConfig) -> Result<Self, MembershipError> {
        if config.bind.ip().is_unspecified() {
            // Peers reach us at the address in our identity; a wildcard there is unreachable.
            return Err(MembershipError::InvalidConfig(format!(
                "membership must bind the node's own address, not {}",
                config.bind
            )));
        }
        let socket = UdpSocket::bind(config.bind).await?;
        let local_addr = socket.local_addr()?;
        let generation = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |since| {
                u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
            });
        let identity = MemberId::new(config.node_name, local_addr, generation)?;
        let mut membership = Membership::new(
            identity.clone(),
            config.protocol,
            config.keys,
            rand::random(),
        )?;
        let (live_tx, live) = watch::channel(membership.live_members().clone());
        let (counters_tx, counters) = watch::channel(MembershipCounters::default());
        let (commands, command_rx) = mpsc::channel(8);
        let initial = membership.set_seeds(Instant::now(), config.seeds);
        let task = TaskHandle::spawn(run(
            socket,
            membership,
            initial,
            command_rx,
            live_tx,
            counters_tx,
        ));
        Ok(Self {
            local_addr,
            identity,
            live,
            counters,
            commands,
            _task: task,
        })
    }

    /// The live members (this node included), updated on every change.
    pub fn live_members(&self) -> watch::Receiver<BTreeSet<String>> {
        self.live.clone()
    }

    /// Datagram and protocol counters, updated as they change.
    pub fn counters(&self) -> watch::Receiver<MembershipCounters> {
        self.counters.clone()
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The identity this speaker started with.
    pub fn identity(&self) -> &MemberId {
        &self.identity
    }

    /// Replaces the seed list (e.g. when Nodes come and go).
    pub async fn set_seeds(&self, seeds: Vec<SocketAddr>) {
        // A closed channel means the task is gone; there is nothing to update then.
        let _ = self.commands.send(Command::SetSeeds(seeds)).await;
    }

    /// Tells the cluster this node is leaving, then stops.
    pub async fn leave(self) {
        let (done_tx, done) = oneshot::channel();
        if self.commands.send(Command::Leave(done_tx)).await.is_ok() {
            let _ = tokio::time::timeout(LEAVE_TIMEOUT, done).await;
        }
    }
}

#[derive(Default)]
struct TimerQueue {
    due: BinaryHeap<Reverse<(Instant, u64)>>,
    timers: HashMap<u64, MembershipTimer>,
    next_sequence: u64,
}

impl TimerQueue {
    fn push(&mut self, at: Instant, timer: MembershipTimer) {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        self.due.push(Reverse((at, sequence)));
        self.timers.insert(sequence, timer);
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.due.peek().map(|Reverse((at, _))| *at)
    }

    fn pop_due(&mut self, now: Instant) -> Option<MembershipTimer> {
        let Reverse((at, sequence)) = *self.due.peek()?;
        if at > now {
            return None;
        }
        self.due.pop();
        self.timers.remove(&sequence)
    }
}

async fn run(
    socket: UdpSocket,
    mut membership: Membership,
    initial: Vec<Output>,
    mut commands: mpsc::Receiver<Command>,
    live: watch::Sender<BTreeSet<String>>,
    counters: watch::Sender<MembershipCounters>,
) {
    let mut timers = TimerQueue::default();
    let max_datagram = membership.max_datagram_size();
    // One byte more than allowed, so an oversize datagram is seen as such, not truncated.
    let mut buffer = vec![0_u8; max_datagram + 1];
    perform(&socket, &mut timers, initial).await;
    publish(&membership, &live, &counters);
    loop {
        let deadline = timers.next_deadline();
        let sleep_until = deadline.map_or_else(
            || tokio::time::Instant::now() + Duration::from_secs(3600),
            tokio::time::Instant::from_std,
        );
        let outputs = tokio::select! {
            received = socket.recv_from(&mut buffer) => match received {
                Ok((len, _from)) => membership.handle_datagram(Instant::now(), &buffer[..len]),
                Err(error) => {
                    tracing::debug!(%error, "membership receive");
                    Vec::new()
                }
            },
            () = tokio::time::sleep_until(sleep_until) => {
                let now = Instant::now();
                let mut outputs = Vec::new();
                while let Some(timer) = timers.pop_due(now) {
                    outputs.extend(membership.handle_timer(now, timer));
                }
                outputs
            },
            command = commands.recv() => match command {
                Some(Command::SetSeeds(seeds)) => membership.set_seeds(Instant::now(), seeds),
                Some(Command::Leave(done)) => {
                    let outputs = membership.leave(Instant::now());
                    perform(&socket, &mut timers, outputs).await;
                    let _ = done.send(());
                    return;
                }
                None => return,
            },
        };
        perform(&socket, &mut timers, outputs).await;
        publish(&membership, &live, &counters);
    }
}

async fn perform(socket: &UdpSocket, timers: &mut TimerQueue, outputs: Vec<Output>) {
    for output in outputs {
        match output {
            Output::Send { to, datagram } => {
                if let Err(error) = socket.send_to(&datagram, to).await {
                    tracing::debug!(%error, %to, "membership send");
                }
            }
            Output::ScheduleTimer { at, timer } => timers.push(at, timer),
            Output::Event(event) => log_event(&event),
        }
    }
}

fn log_event(event: &MembershipEvent) {
    match event {
        MembershipEvent::NodeUp(node) => tracing::info!(%node, "speaker up"),
        MembershipEvent::NodeDown(node) => tracing::warn!(%node, "speaker down"),
        MembershipEvent::NodeSuspect(node) => tracing::info!(%node, "speaker suspected"),
        MembershipEvent::NodeSuspicionRefuted(node) => {
            tracing::info!(%node, "speaker suspicion refuted");
        }
    }
}

fn publish(
    membership: &Membership,
    live: &watch::Sender<BTreeSet<String>>,
    counters: &watch::Sender<MembershipCounters>,
) {
    live.send_if_modified(|published| {
        let changed = published != membership.live_members();
        if changed {
            published.clone_from(membership.live_members());
        }
        changed
    });
    counters.send_if_modified(|published| {
        let changed = published != membership.counters();
        if changed {
            published.clone_from(membership.counters());
        }
        changed
    });
}
