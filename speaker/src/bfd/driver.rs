//! The BFD I/O edge: one tokio task per session owning its [`Session`] (from `herald-bfd`), its
//! sending socket and its timer; one receiving task per family and port that decodes, counts
//! and demultiplexes datagrams; and the declarative [`BfdManager`].
//!
//! Owns: sockets (through [`super::socket`]), the TTL check of every received packet, turning
//! session outputs into datagrams, metrics and a damped path state ([`PathView`], published
//! on a `watch` channel that the BGP peer task of the same name follows: RFC 5882 coupling).
//! Protocol decisions are the session's; damping is [`Damper`]'s; what BGP does about the path
//! is `herald_bfd::coupling`'s.
//!
//! Task ownership: every spawned task is held by an [`TaskHandle`] or by a session handle
//! whose task is awaited (bounded) or aborted when the manager goes away.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald_bfd::{
    ControlPacket, Damper, DampingConfig, Diagnostic, Input, Output, Profile, Session,
    SessionConfig, State,
};
pub use herald_bfd::{PathState, PathView};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

use super::metrics::{BfdMetrics, PeerLabel, TransitionLabels};
use super::socket::{self, Hop, MULTIHOP_PORT};
use crate::task::TaskHandle;

/// Packets waiting for a session task; more are dropped (and counted).
const SESSION_QUEUE: usize = 64;
/// Longest control packet read (24-byte mandatory section plus the largest auth section).
const RECEIVE_BUFFER: usize = 256;
/// How long a stopping session may take to send its AdminDown.
const STOP_TIMEOUT: Duration = Duration::from_secs(1);

/// One BFD session to run, beside the BGP session of the same peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BfdPeerConfig {
    pub peer_address: IpAddr,
    /// Source address of our packets (the BGP session's `sourceAddress`); unset: the kernel's.
    pub local_address: Option<IpAddr>,
    pub hop: Hop,
    pub profile: Profile,
    /// Hold BGP back while the session is not Up (`strictMode`).
    pub strict: bool,
    pub damping: DampingConfig,
}

impl BfdPeerConfig {
    /// What identifies the session on the wire; a change of it needs a new session.
    fn endpoint(&self) -> (IpAddr, Option<IpAddr>, bool) {
        (
            self.peer_address,
            self.local_address,
            self.hop.is_multihop(),
        )
    }
}

/// A session's state for status and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BfdStatus {
    pub state: State,
    /// Why the session last went down.
    pub diagnostic: Diagnostic,
    pub tx_interval: Option<Duration>,
    pub detection_time: Duration,
}

/// A packet on its way from a receiving task to its session.
#[derive(Debug)]
struct Arrival {
    packet: ControlPacket,
    ttl: Option<u8>,
}

/// (peer address, multihop) → the session's queue.
type Registry = Arc<Mutex<HashMap<(IpAddr, bool), mpsc::Sender<Arrival>>>>;

#[derive(Debug)]
enum Command {
    SetProfile(Profile),
    SetDamping(DampingConfig),
    Stop,
}

struct SessionHandle {
    config: BfdPeerConfig,
    commands: mpsc::UnboundedSender<Command>,
    status: watch::Receiver<BfdStatus>,
    task: TaskHandle,
}

/// Runs the BFD sessions and reconciles them with the desired set: adds, removes, restarts
/// sessions whose endpoints changed and renegotiates profiles in place (a poll sequence, no
/// flap). Receiving sockets are opened on first use.
pub struct BfdManager {
    registry: Registry,
    metrics: BfdMetrics,
    listeners: HashMap<(bool, u16), TaskHandle>,
    sessions: BTreeMap<String, SessionHandle>,
    paths: BTreeMap<String, watch::Sender<PathView>>,
    retiring: Vec<TaskHandle>,
}

impl BfdManager {
    pub fn new(metrics: BfdMetrics) -> Self {
        Self {
            registry: Arc::default(),
            metrics,
            listeners: HashMap::new(),
            sessions: BTreeMap::new(),
            paths: BTreeMap::new(),
            retiring: Vec::new(),
        }
    }

    pub fn metrics(&self) -> &BfdMetrics {
        &self.metrics
    }

    /// The damped path state of `peer`'s session, `Unmonitored` while it has none. The
    /// channel outlives session restarts.
    pub fn subscribe(&mut self, peer: &str) -> watch::Receiver<PathView> {
        self.path(peer).subscribe()
    }

    fn path(&mut self, peer: &str) -> &watch::Sender<PathView> {
        self.paths
            .entry(peer.to_owned())
            .or_insert_with(|| watch::channel(PathView::UNMONITORED).0)
    }

    /// Makes the running sessions match `desired` (by BGPPeer name). A session that cannot
    /// open its sockets is left out and reported; the others run.
    pub fn apply(&mut self, desired: &BTreeMap<String, BfdPeerConfig>) -> Vec<(String, io::Error)> {
        self.retiring.retain(|t| !t.is_finished());
        let stale: Vec<String> = self
            .sessions
            .iter()
            .filter(|(name, handle)| {
                desired
                    .get(*name)
                    .is_none_or(|want| want.endpoint() != handle.config.endpoint())
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            if let Some(handle) = self.sessions.remove(&name) {
                self.retire(&name, handle);
            }
        }
        let mut errors = Vec::new();
        for (name, config) in desired {
            if let Some(handle) = self.sessions.get_mut(name) {
                if handle.config.profile != config.profile {
                    handle.config.profile = config.profile;
                    let _ = handle.commands.send(Command::SetProfile(config.profile));
                }
                if handle.config.damping != config.damping {
                    handle.config.damping = config.damping;
                    let _ = handle.commands.send(Command::SetDamping(config.damping));
                }
                if handle.config.strict != config.strict {
                    handle.config.strict = config.strict;
                    if let Some(path) = self.paths.get(name) {
                        path.send_modify(|view| view.strict = config.strict);
                    }
                }
                continue;
            }
            match self.start(name, config) {
                Ok(handle) => {
                    self.sessions.insert(name.clone(), handle);
                }
                Err(error) => errors.push((name.clone(), error)),
            }
        }
        errors
    }

    fn start(&mut self, name: &str, config: &BfdPeerConfig) -> io::Result<SessionHandle> {
        let port = config.hop.port();
        let v6 = config.peer_address.is_ipv6();
        if !self.listeners.contains_key(&(v6, port)) {
            let socket = socket::listen(v6, port)?;
            let task = TaskHandle::spawn(receive_loop(
                socket,
                port == MULTIHOP_PORT,
                Arc::clone(&self.registry),
                self.metrics.clone(),
            ));
            self.listeners.insert((v6, port), task);
        }
        let sender = socket::sender(
            config.local_address,
            SocketAddr::new(config.peer_address, port),
            rand::random(),
        )?;
        let (arrivals_tx, arrivals) = mpsc::channel(SESSION_QUEUE);
        if let Ok(mut registry) = self.registry.lock() {
            registry.insert((config.peer_address, config.hop.is_multihop()), arrivals_tx);
        }
        let (commands, command_rx) = mpsc::unbounded_channel();
        // A new session is Down: published here, before any BGP session starts, so that a
        // strict one is held from the first moment.
        let path = self.path(name).clone();
        path.send_replace(PathView {
            state: PathState::Down,
            strict: config.strict,
        });
        let now = Instant::now();
        let session = Session::new(
            SessionConfig {
                local_discriminator: rand::random::<u32>().max(1),
                profile: config.profile,
                jitter_seed: rand::random(),
            },
            now,
        );
        let (status_tx, status) = watch::channel(status_of(&session));
        let task = SessionTask {
            name: name.to_owned(),
            hop: config.hop,
            session,
            damper: Damper::new(config.damping),
            remote_admin_down: false,
            socket: sender,
            metrics: self.metrics.clone(),
            path,
            status: status_tx,
        };
        self.metrics.set_state(name, State::Down.as_str());
        tracing::info!(peer = name, address = %config.peer_address, hop = ?config.hop, "BFD session starting");
        Ok(SessionHandle {
            config: config.clone(),
            commands,
            status,
            task: TaskHandle::spawn(task.run(arrivals, command_rx)),
        })
    }

    fn retire(&mut self, name: &str, handle: SessionHandle) {
        if let Ok(mut registry) = self.registry.lock() {
            registry.remove(&(handle.config.peer_address, handle.config.hop.is_multihop()));
        }
        let _ = handle.commands.send(Command::Stop);
        self.retiring.push(handle.task);
        self.metrics.forget(name);
        if let Some(path) = self.paths.get(name) {
            path.send_replace(PathView::UNMONITORED);
        }
    }

    /// Every session's state, by BGPPeer name.
    pub fn status(&self) -> BTreeMap<String, BfdStatus> {
        self.sessions
            .iter()
            .map(|(name, handle)| (name.clone(), handle.status.borrow().clone()))
            .collect()
    }

    /// Takes every session administratively down (the peer sees AdminDown, which RFC 5882
    /// §3.2 says is not a path failure) and waits, bounded, for the packets to leave.
    pub async fn shutdown(mut self) {
        let sessions = std::mem::take(&mut self.sessions);
        for (name, handle) in sessions {
            self.retire(&name, handle);
        }
        for task in self.retiring.drain(..) {
            let _ = tokio::time::timeout(STOP_TIMEOUT, task).await;
        }
    }
}

fn status_of(session: &Session) -> BfdStatus {
    let snapshot = session.snapshot();
    BfdStatus {
        state: snapshot.state,
        diagnostic: snapshot.local_diag,
        tx_interval: snapshot.tx_interval,
        detection_time: snapshot.detection_time,
    }
}

/// Plain IPv4 for an IPv4-mapped IPv6 address.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Reads one receiving socket: decodes each datagram (malformed ones are counted by reason)
/// and hands it to the session of its source address.
async fn receive_loop(socket: UdpSocket, multihop: bool, registry: Registry, metrics: BfdMetrics) {
    let mut buffer = [0u8; RECEIVE_BUFFER];
    loop {
        let received = match socket::receive(&socket, &mut buffer).await {
            Ok(received) => received,
            Err(error) => {
                tracing::debug!(%error, "BFD receive failed");
                metrics.dropped("receive_error");
                // Persistent errors must not spin.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let packet = match ControlPacket::decode(&buffer[..received.len]) {
            Ok(packet) => packet,
            Err(error) => {
                metrics.dropped(error.reason());
                continue;
            }
        };
        let key = (canonical(received.from.ip()), multihop);
        let queue = registry.lock().ok().and_then(|r| r.get(&key).cloned());
        let Some(queue) = queue else {
            metrics.dropped("no_session");
            continue;
        };
        if queue
            .try_send(Arrival {
                packet,
                ttl: received.ttl,
            })
            .is_err()
        {
            metrics.dropped("queue_full");
        }
    }
}

struct SessionTask {
    name: String,
    hop: Hop,
    session: Session,
    damper: Damper,
    /// The remote last took the session down administratively.
    remote_admin_down: bool,
    socket: UdpSocket,
    metrics: BfdMetrics,
    path: watch::Sender<PathView>,
    status: watch::Sender<BfdStatus>,
}

impl SessionTask {
    async fn run(
        mut self,
        mut arrivals: mpsc::Receiver<Arrival>,
        mut commands: mpsc::UnboundedReceiver<Command>,
    ) {
        let peer = PeerLabel {
            peer: self.name.clone(),
        };
        self.publish();
        loop {
            let deadline = match (self.session.poll_timeout(), self.damper.poll_timeout()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let sleep = async {
                match deadline {
                    Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::SetProfile(profile)) => self.input(Input::SetProfile(profile)),
                    Some(Command::SetDamping(config)) => self.damper.set_config(config),
                    Some(Command::Stop) | None => {
                        self.input(Input::AdminDown);
                        break;
                    }
                },
                Some(arrival) = arrivals.recv() => {
                    if !socket::ttl_acceptable(self.hop, arrival.ttl) {
                        self.metrics.dropped("bad_ttl");
                        continue;
                    }
                    self.metrics.packets_received.get_or_create(&peer).inc();
                    self.input(Input::Packet(arrival.packet));
                }
                () = sleep => {
                    self.input(Input::Timer);
                    let now = Instant::now();
                    if self.damper.timer(now).is_some() {
                        self.publish();
                    }
                }
            }
        }
    }

    fn input(&mut self, input: Input) {
        let now = Instant::now();
        let outputs = self.session.handle(now, input);
        for output in outputs {
            match output {
                Output::Send(packet) => {
                    let label = PeerLabel {
                        peer: self.name.clone(),
                    };
                    match self.socket.try_send(&packet.encode()) {
                        Ok(_) => {
                            self.metrics.packets_sent.get_or_create(&label).inc();
                        }
                        Err(error) => {
                            tracing::debug!(peer = %self.name, %error, "BFD send failed");
                            self.metrics.dropped("send_failed");
                        }
                    }
                }
                Output::StateChanged { from, to, diag } => {
                    self.metrics
                        .transitions
                        .get_or_create(&TransitionLabels {
                            peer: self.name.clone(),
                            from: from.as_str(),
                            to: to.as_str(),
                        })
                        .inc();
                    self.metrics.set_state(&self.name, to.as_str());
                    tracing::info!(peer = %self.name, %from, %to, diag = diag.as_str(), "BFD session state");
                    let remote_admin_down = to == State::Down
                        && self.session.snapshot().remote_state == State::AdminDown;
                    self.remote_admin_down = remote_admin_down;
                    self.damper.update(now, to == State::Up);
                    self.publish();
                }
                Output::Dropped(reason) => self.metrics.dropped(reason.as_str()),
            }
        }
        let status = status_of(&self.session);
        self.status.send_if_modified(|current| {
            let changed = *current != status;
            *current = status;
            changed
        });
    }

    /// Publishes the damped path state; counts the Up → Down edges that take BGP down.
    fn publish(&mut self) {
        let state = if self.remote_admin_down {
            PathState::Unmonitored
        } else if self.damper.is_up() {
            PathState::Up
        } else {
            PathState::Down
        };
        let strict = self.path.borrow().strict;
        let previous = self.path.send_replace(PathView { state, strict }).state;
        if previous == PathState::Up && state == PathState::Down {
            self.metrics
                .bgp_teardowns
                .get_or_create(&PeerLabel {
                    peer: self.name.clone(),
                })
                .inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn config(port_hop: Hop) -> BfdPeerConfig {
        BfdPeerConfig {
            peer_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            local_address: None,
            hop: port_hop,
            profile: Profile::default(),
            strict: false,
            damping: DampingConfig::default(),
        }
    }

    #[test]
    fn a_profile_change_keeps_the_endpoint_and_an_address_change_does_not() {
        let a = config(Hop::Single);
        let mut b = a.clone();
        b.profile.desired_min_tx = Duration::from_millis(50);
        assert_eq!(a.endpoint(), b.endpoint());
        let mut c = a.clone();
        c.hop = Hop::Multi { minimum_ttl: 254 };
        assert_ne!(a.endpoint(), c.endpoint());
    }

    #[test]
    fn ipv4_mapped_sources_are_matched_as_ipv4() {
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().expect("address");
        assert_eq!(canonical(mapped), IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
    }
}
