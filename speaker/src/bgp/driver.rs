//! The BGP I/O edge: one tokio task per peer owning its TCP connections and its [`Session`],
//! a shared listener for passive connections, and the declarative [`BgpManager`].
//!
//! Owns: sockets (source address, peer port, TCP-MD5 via `TCP_MD5SIG`, TTL for eBGP), the
//! reader/writer tasks of each connection, timers (tokio sleeps until `poll_timeout()`), and
//! turning session outputs into writes, connects and closes. All protocol decisions are the
//! session's ([`super::fsm`]); nothing here interprets BGP bytes.
//!
//! Task ownership: every spawned task is held by a value ([`TaskHandle`] or a join handle the
//! owner awaits) and ends when that value goes away.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipnet::IpNet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::codec::RouteAttributes;
use super::fsm::{ConnectionId, Direction, Input, Output, Session, State, StopReason};
pub use super::peer::{
    BGP_PORT, DesiredBgp, EBGP_MULTIHOP_TTL, EBGP_SINGLE_HOP_TTL, PeerConfig, PeerStatus,
    TCP_MD5_MAX_KEY_LEN,
};
use crate::bfd::driver::{BfdManager, BfdPeerConfig, BfdStatus, PathView};
use crate::bfd::metrics::BfdMetrics;
use crate::task::TaskHandle;

/// How long queued bytes (a final NOTIFICATION) may take to drain when a connection closes.
const WRITE_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);
/// Events waiting for a peer task; readers pause when it is full.
const EVENT_QUEUE: usize = 256;

/// Errors of the I/O edge.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("TCP-MD5 key longer than {TCP_MD5_MAX_KEY_LEN} bytes")]
    Md5KeyTooLong,
    #[error("socket error: {0}")]
    Io(#[from] io::Error),
}

/// `struct tcp_md5sig` from <linux/tcp.h>; the 128-byte address is a `sockaddr_storage`.
#[repr(C)]
struct TcpMd5Sig {
    addr: [u8; 128],
    flags: u8,
    prefix_len: u8,
    key_len: u16,
    ifindex: i32,
    key: [u8; TCP_MD5_MAX_KEY_LEN],
}

/// Fills a `sockaddr_in` / `sockaddr_in6` (port 0) into `sockaddr_storage` bytes.
fn sockaddr_bytes(addr: IpAddr) -> [u8; 128] {
    let mut out = [0u8; 128];
    match addr {
        IpAddr::V4(a) => {
            out[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
            out[4..8].copy_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            out[..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
            out[8..24].copy_from_slice(&a.octets());
        }
    }
    out
}

/// Sets (or with `None` removes) the TCP-MD5 key for `peer` on a socket (RFC 2385, Linux
/// `TCP_MD5SIG`). On a listening socket it applies to connections accepted from `peer`.
pub fn set_tcp_md5(fd: RawFd, peer: IpAddr, key: Option<&[u8]>) -> Result<(), DriverError> {
    let key = key.unwrap_or_default();
    if key.len() > TCP_MD5_MAX_KEY_LEN {
        return Err(DriverError::Md5KeyTooLong);
    }
    let mut sig = TcpMd5Sig {
        addr: sockaddr_bytes(peer),
        flags: 0,
        prefix_len: 0,
        key_len: key.len() as u16,
        ifindex: 0,
        key: [0; TCP_MD5_MAX_KEY_LEN],
    };
    sig.key[..key.len()].copy_from_slice(key);
    setsockopt_md5(fd, &sig)?;
    Ok(())
}

#[allow(unsafe_code)]
fn setsockopt_md5(fd: RawFd, sig: &TcpMd5Sig) -> io::Result<()> {
    // SAFETY: `sig` is a live, fully initialised #[repr(C)] value laid out as the kernel's
    // `struct tcp_md5sig`; the kernel reads exactly `size_of::<TcpMd5Sig>()` bytes from it and
    // keeps no pointer. `fd` is a socket owned by the caller for the duration of the call.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_MD5SIG,
            (sig as *const TcpMd5Sig).cast(),
            std::mem::size_of::<TcpMd5Sig>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Opens the outbound TCP connection for a peer: MD5 key, TTL and source address are set
/// before the SYN leaves.
pub async fn connect(config: &PeerConfig) -> Result<TcpStream, DriverError> {
    let socket = match config.peer_address {
        IpAddr::V4(_) => TcpSocket::new_v4()?,
        IpAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let Some(password) = &config.password {
        set_tcp_md5(
            socket.as_raw_fd(),
            config.peer_address,
            Some(password.as_bytes()),
        )?;
    }
    if let Some(ttl) = config.ttl() {
        let sock = socket2::SockRef::from(&socket);
        match config.peer_address {
            IpAddr::V4(_) => sock.set_ttl_v4(ttl)?,
            IpAddr::V6(_) => sock.set_unicast_hops_v6(ttl)?,
        }
    }
    if let Some(source) = config.source_address {
        socket.bind(SocketAddr::new(source, 0))?;
    }
    let stream = socket
        .connect(SocketAddr::new(config.peer_address, config.peer_port))
        .await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Plain IPv4 for an IPv4-mapped IPv6 address (a dual-stack listener reports those).
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

// --- the per-peer task ---------------------------------------------------------------------------

/// Commands from the manager (and the listener) to a peer task.
#[derive(Debug)]
enum PeerCommand {
    SetRoutes(BTreeMap<IpNet, RouteAttributes>),
    Stop(StopReason),
    Inbound(TcpStream),
}

#[derive(Debug)]
enum ConnEvent {
    Connected(ConnectionId, TcpStream),
    ConnectFailed(ConnectionId, String),
    Bytes(ConnectionId, Vec<u8>),
    Closed(ConnectionId),
}

/// A live connection: the writer drains its queue then shuts the socket; the reader is aborted.
struct LiveConnection {
    writer: mpsc::UnboundedSender<Vec<u8>>,
    writer_task: JoinHandle<()>,
    _reader: TaskHandle,
}

struct PeerTask {
    config: PeerConfig,
    session: Session,
    events: mpsc::Sender<ConnEvent>,
    connecting: HashMap<ConnectionId, TaskHandle>,
    connections: HashMap<ConnectionId, LiveConnection>,
    status: watch::Sender<PeerStatus>,
    flushing: Vec<JoinHandle<()>>,
    /// The damped state of the peer's BFD session (RFC 5882): Up → Down tears BGP down.
    bfd: watch::Receiver<PathView>,
    /// Stopped until BFD comes up (strict mode, `herald_bfd::coupling`).
    held_for_bfd: bool,
}

fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

impl PeerTask {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<PeerCommand>,
        mut events: mpsc::Receiver<ConnEvent>,
    ) {
        self.start_unless_held_for_bfd();
        loop {
            let deadline = self.session.poll_timeout();
            let sleep = async {
                match deadline {
                    Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                command = commands.recv() => match command {
                    Some(PeerCommand::SetRoutes(routes)) => self.input(Input::SetRoutes(routes)),
                    Some(PeerCommand::Inbound(stream)) => self.inbound(stream),
                    Some(PeerCommand::Stop(reason)) => {
                        self.input(Input::Stop(reason));
                        break;
                    }
                    None => {
                        self.input(Input::Stop(StopReason::PeerDeconfigured));
                        break;
                    }
                },
                Some(event) = events.recv() => self.event(event),
                path = next_path(&mut self.bfd) => self.on_path(path),
                () = sleep => self.input(Input::TimerExpired),
            }
        }
        // Let final NOTIFICATIONs go out before the sockets close.
        self.connecting.clear();
        for (_, connection) in self.connections.drain() {
            drop(connection.writer);
            self.flushing.push(connection.writer_task);
        }
        for mut task in self.flushing.drain(..) {
            if tokio::time::timeout(WRITE_FLUSH_TIMEOUT, &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }

    fn input(&mut self, input: Input) {
        let outputs = self.session.handle(now(), input);
        self.apply(outputs);
    }

    /// The first start: not while a strict BFD session is not Up (RFC 5882 §10.2).
    fn start_unless_held_for_bfd(&mut self) {
        if herald_bfd::coupling::may_start(*self.bfd.borrow_and_update()) {
            self.input(Input::Start);
        } else {
            tracing::info!(peer = %self.config.peer_address, "BGP waits for BFD (strict mode)");
            self.held_for_bfd = true;
        }
    }

    /// A change of the BFD path: a failure takes the session down now rather than at the hold
    /// time (RFC 5882 §4.3); strict mode holds it until BFD is Up. The decision is
    /// `herald_bfd::coupling`'s.
    fn on_path(&mut self, (previous, current): (PathView, PathView)) {
        use herald_bfd::BgpAction;
        let established = self.session.status().state == State::Established;
        let peer = self.config.peer_address;
        for action in
            herald_bfd::coupling::bgp_actions(previous, current, self.held_for_bfd, established)
        {
            match action {
                BgpAction::TearDown => {
                    tracing::warn!(%peer, "BFD down: closing the BGP session");
                    self.input(Input::BfdDown);
                }
                BgpAction::Hold => {
                    tracing::info!(%peer, "BGP waits for BFD (strict mode)");
                    self.held_for_bfd = true;
                    self.input(Input::Stop(StopReason::AdministrativeShutdown(
                        "waiting for BFD".into(),
                    )));
                }
                BgpAction::Release => {
                    tracing::info!(%peer, "BFD allows BGP again");
                    self.held_for_bfd = false;
                    self.input(Input::Start);
                }
            }
        }
    }

    fn event(&mut self, event: ConnEvent) {
        match event {
            ConnEvent::Connected(conn, stream) => {
                self.connecting.remove(&conn);
                let local_address = match stream.local_addr() {
                    Ok(addr) => canonical(addr.ip()),
                    Err(_) => return self.input(Input::TcpFailed { conn }),
                };
                self.attach(conn, stream);
                self.input(Input::TcpConnected {
                    conn,
                    direction: Direction::Outbound,
                    local_address,
                });
            }
            ConnEvent::ConnectFailed(conn, error) => {
                tracing::debug!(peer = %self.config.peer_address, %error, "BGP connect failed");
                self.connecting.remove(&conn);
                self.input(Input::TcpFailed { conn });
            }
            ConnEvent::Bytes(conn, bytes) => self.input(Input::BytesReceived { conn, bytes }),
            ConnEvent::Closed(conn) => {
                if let Some(connection) = self.connections.remove(&conn) {
                    drop(connection.writer);
                    connection.writer_task.abort();
                }
                self.input(Input::TcpClosed { conn });
            }
        }
    }

    fn inbound(&mut self, stream: TcpStream) {
        let Ok(local) = stream.local_addr() else {
            return;
        };
        let _ = stream.set_nodelay(true);
        let conn = self.session.allocate_connection_id();
        self.attach(conn, stream);
        self.input(Input::TcpConnected {
            conn,
            direction: Direction::Inbound,
            local_address: canonical(local.ip()),
        });
    }

    /// Starts the reader and writer of a connection.
    fn attach(&mut self, conn: ConnectionId, stream: TcpStream) {
        let (mut read_half, mut write_half) = stream.into_split();
        let events = self.events.clone();
        let reader = TaskHandle::spawn(async move {
            let mut buffer = vec![0u8; super::codec::MAX_MESSAGE_LEN];
            loop {
                match read_half.read(&mut buffer).await {
                    Ok(0) | Err(_) => {
                        let _ = events.send(ConnEvent::Closed(conn)).await;
                        return;
                    }
                    Ok(n) => {
                        if events
                            .send(ConnEvent::Bytes(conn, buffer[..n].to_vec()))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            }
        });
        let (writer, mut queue) = mpsc::unbounded_channel::<Vec<u8>>();
        let writer_task = tokio::spawn(async move {
            let drain = async {
                while let Some(bytes) = queue.recv().await {
                    write_half.write_all(&bytes).await?;
                }
                write_half.shutdown().await
            };
            // Ends when the queue closes and is flushed; whoever closes it bounds the flush
            // (WRITE_FLUSH_TIMEOUT) and aborts this task after that.
            let _ = drain.await;
        });
        self.connections.insert(
            conn,
            LiveConnection {
                writer,
                writer_task,
                _reader: reader,
            },
        );
    }

    fn apply(&mut self, outputs: Vec<Output>) {
        for output in outputs {
            match output {
                Output::Connect { conn } => {
                    let config = self.config.clone();
                    let events = self.events.clone();
                    let timeout = self.config.session.connect_retry;
                    let attempt = TaskHandle::spawn(async move {
                        let event = match tokio::time::timeout(timeout, connect(&config)).await {
                            Ok(Ok(stream)) => ConnEvent::Connected(conn, stream),
                            Ok(Err(error)) => ConnEvent::ConnectFailed(conn, error.to_string()),
                            Err(_) => ConnEvent::ConnectFailed(conn, "timed out".into()),
                        };
                        let _ = events.send(event).await;
                    });
                    self.connecting.insert(conn, attempt);
                }
                Output::SendBytes { conn, bytes } => {
                    if let Some(connection) = self.connections.get(&conn) {
                        let _ = connection.writer.send(bytes);
                    }
                }
                Output::CloseConnection { conn } => {
                    self.connecting.remove(&conn);
                    if let Some(connection) = self.connections.remove(&conn) {
                        drop(connection.writer);
                        self.flushing.retain(|t| !t.is_finished());
                        // The writer flushes the queue (a NOTIFICATION) and then closes.
                        let mut task = connection.writer_task;
                        self.flushing.push(tokio::spawn(async move {
                            if tokio::time::timeout(WRITE_FLUSH_TIMEOUT, &mut task)
                                .await
                                .is_err()
                            {
                                tracing::debug!("BGP connection did not flush in time");
                                task.abort();
                            }
                        }));
                    }
                }
                Output::StateChanged { from, to } => {
                    tracing::info!(peer = %self.config.peer_address, ?from, ?to, "BGP session state");
                }
                Output::RoutesSent {
                    announced,
                    withdrawn,
                    messages,
                } => {
                    tracing::debug!(peer = %self.config.peer_address, announced, withdrawn, messages, "BGP routes sent");
                }
                Output::Error(error) => {
                    tracing::warn!(peer = %self.config.peer_address, %error, "BGP session error");
                }
            }
        }
        let status = PeerStatus {
            peer_address: self.config.peer_address,
            session: self.session.status(),
        };
        self.status.send_if_modified(|current| {
            let changed = *current != status;
            *current = status;
            changed
        });
    }
}

/// A running peer: its command channel, status and task.
struct PeerHandle {
    config: PeerConfig,
    routes: BTreeMap<IpNet, RouteAttributes>,
    commands: mpsc::UnboundedSender<PeerCommand>,
    status: watch::Receiver<PeerStatus>,
    task: TaskHandle,
}

/// The next change of a BFD path state, as (previous, current); never returns once the
/// sending side is gone.
async fn next_path(path: &mut watch::Receiver<PathView>) -> (PathView, PathView) {
    let previous = *path.borrow();
    if path.changed().await.is_err() {
        return std::future::pending().await;
    }
    (previous, *path.borrow_and_update())
}

fn spawn_peer(config: PeerConfig, bfd: watch::Receiver<PathView>) -> PeerHandle {
    let (commands, command_rx) = mpsc::unbounded_channel();
    let (events, event_rx) = mpsc::channel(EVENT_QUEUE);
    let session = Session::new(config.session.clone());
    let (status_tx, status) = watch::channel(PeerStatus {
        peer_address: config.peer_address,
        session: session.status(),
    });
    let task = PeerTask {
        config: config.clone(),
        session,
        events,
        connecting: HashMap::new(),
        connections: HashMap::new(),
        status: status_tx,
        flushing: Vec::new(),
        bfd,
        held_for_bfd: false,
    };
    let task = TaskHandle::spawn(task.run(command_rx, event_rx));
    PeerHandle {
        config,
        routes: BTreeMap::new(),
        commands,
        status,
        task,
    }
}

// --- passive connections ---------------------------------------------------------------------------

type Registry = Arc<Mutex<HashMap<IpAddr, mpsc::UnboundedSender<PeerCommand>>>>;

/// Where to accept passive BGP connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenConfig {
    /// Addresses to bind; the default is 0.0.0.0 and :: (IPv6 only) on `port`.
    pub addresses: Vec<IpAddr>,
    pub port: u16,
}

impl Default for ListenConfig {
    fn default() -> Self {
        Self {
            addresses: vec![
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            ],
            port: BGP_PORT,
        }
    }
}

/// Accepts connections and hands each to the session of the peer it comes from; connections
/// from unknown addresses are closed at once.
struct BgpListener {
    listeners: Vec<Arc<TcpListener>>,
    _accept_tasks: Vec<TaskHandle>,
}

impl BgpListener {
    fn bind(config: &ListenConfig, registry: Registry) -> Result<Self, DriverError> {
        let mut listeners = Vec::new();
        let mut tasks = Vec::new();
        for address in &config.addresses {
            let socket = match address {
                IpAddr::V4(_) => TcpSocket::new_v4()?,
                IpAddr::V6(_) => {
                    let socket = TcpSocket::new_v6()?;
                    socket2::SockRef::from(&socket).set_only_v6(true)?;
                    socket
                }
            };
            socket.set_reuseaddr(true)?;
            socket.bind(SocketAddr::new(*address, config.port))?;
            let listener = Arc::new(socket.listen(64)?);
            let accepting = Arc::clone(&listener);
            let registry = Arc::clone(&registry);
            tasks.push(TaskHandle::spawn(async move {
                loop {
                    let Ok((stream, from)) = accepting.accept().await else {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    };
                    let peer = canonical(from.ip());
                    let target = registry.lock().ok().and_then(|r| r.get(&peer).cloned());
                    match target {
                        Some(commands) => {
                            let _ = commands.send(PeerCommand::Inbound(stream));
                        }
                        None => {
                            tracing::debug!(%peer, "BGP connection from an unknown peer refused")
                        }
                    }
                }
            }));
            listeners.push(listener);
        }
        Ok(Self {
            listeners,
            _accept_tasks: tasks,
        })
    }

    /// Installs or removes a peer's MD5 key on the listening sockets of its family.
    fn set_md5(&self, peer: IpAddr, key: Option<&[u8]>) -> Result<(), DriverError> {
        for listener in &self.listeners {
            let same_family = listener
                .local_addr()
                .is_ok_and(|a| a.is_ipv4() == peer.is_ipv4());
            if same_family {
                set_tcp_md5(listener.as_raw_fd(), peer, key)?;
            }
        }
        Ok(())
    }
}

// --- the manager -------------------------------------------------------------------------------------

/// Holds the running sessions and reconciles them with a [`DesiredBgp`]: adds, removes and
/// restarts sessions whose configuration changed, and hands each its routes. Idempotent.
pub struct BgpManager {
    registry: Registry,
    listener: Option<BgpListener>,
    peers: BTreeMap<String, PeerHandle>,
    retiring: Vec<TaskHandle>,
    bfd: BfdManager,
}

impl BgpManager {
    /// A manager; with `listen`, it also accepts passive connections. Must run inside tokio.
    pub fn new(listen: Option<&ListenConfig>) -> Result<Self, DriverError> {
        let registry: Registry = Arc::default();
        let listener = listen
            .map(|config| BgpListener::bind(config, Arc::clone(&registry)))
            .transpose()?;
        Ok(Self {
            registry,
            listener,
            peers: BTreeMap::new(),
            retiring: Vec::new(),
            bfd: BfdManager::new(BfdMetrics::default()),
        })
    }

    /// Counts BFD activity into `metrics` (registered by the caller). Call before `apply`.
    pub fn with_bfd_metrics(mut self, metrics: BfdMetrics) -> Self {
        self.bfd = BfdManager::new(metrics);
        self
    }

    /// Makes the running state match `desired`.
    pub fn apply(&mut self, desired: &DesiredBgp) -> Result<(), DriverError> {
        self.retiring.retain(|t| !t.is_finished());
        let stale: Vec<String> = self
            .peers
            .iter()
            .filter(|(name, handle)| {
                desired.peers.get(*name).map(PeerConfig::without_bfd)
                    != Some(handle.config.without_bfd())
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            if let Some(handle) = self.peers.remove(&name) {
                self.retire(handle, StopReason::PeerDeconfigured);
            }
        }
        // BFD first: a new peer's task starts from its BFD session's state (strict mode).
        let bfd: BTreeMap<String, BfdPeerConfig> = desired
            .peers
            .iter()
            .filter_map(|(name, config)| config.bfd.clone().map(|bfd| (name.clone(), bfd)))
            .collect();
        for (name, error) in self.bfd.apply(&bfd) {
            tracing::warn!(peer = %name, %error, "BFD session cannot start; BGP runs without it");
        }
        for (name, config) in &desired.peers {
            if !self.peers.contains_key(name) {
                if let (Some(listener), Some(password)) = (&self.listener, &config.password) {
                    listener.set_md5(config.peer_address, Some(password.as_bytes()))?;
                }
                let handle = spawn_peer(config.clone(), self.bfd.subscribe(name));
                if let Ok(mut registry) = self.registry.lock() {
                    registry.insert(config.peer_address, handle.commands.clone());
                }
                self.peers.insert(name.clone(), handle);
            }
        }
        let empty = BTreeMap::new();
        for (name, handle) in &mut self.peers {
            if let Some(config) = desired.peers.get(name) {
                handle.config.bfd = config.bfd.clone();
            }
            let routes = desired.routes.get(name).unwrap_or(&empty);
            if *routes != handle.routes {
                handle.routes = routes.clone();
                let _ = handle.commands.send(PeerCommand::SetRoutes(routes.clone()));
            }
        }
        Ok(())
    }

    fn retire(&mut self, handle: PeerHandle, reason: StopReason) {
        if let Ok(mut registry) = self.registry.lock() {
            registry.remove(&handle.config.peer_address);
        }
        if let (Some(listener), Some(_)) = (&self.listener, &handle.config.password) {
            // Removing a key the kernel no longer has fails harmlessly.
            let _ = listener.set_md5(handle.config.peer_address, None);
        }
        let _ = handle.commands.send(PeerCommand::Stop(reason));
        self.retiring.push(handle.task);
    }

    /// Current status of every peer, by name.
    pub fn status(&self) -> BTreeMap<String, PeerStatus> {
        self.peers
            .iter()
            .map(|(name, handle)| (name.clone(), handle.status.borrow().clone()))
            .collect()
    }

    /// State of every BFD session, by BGPPeer name.
    pub fn bfd_status(&self) -> BTreeMap<String, BfdStatus> {
        self.bfd.status()
    }

    /// Waits until `peer` reaches `state` or `timeout` passes; returns whether it did.
    pub async fn wait_for_state(&self, peer: &str, state: State, timeout: Duration) -> bool {
        let Some(handle) = self.peers.get(peer) else {
            return false;
        };
        let mut status = handle.status.clone();
        tokio::time::timeout(timeout, status.wait_for(|s| s.session.state == state))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Stops every session with `reason` and waits (bounded) for their final messages to go out.
    pub async fn shutdown(self, reason: StopReason) {
        self.shutdown_each(|_, _| reason.clone()).await;
    }

    /// Stops every session with the reason `reason_for(name, config)` picks for it (e.g. a
    /// graceful-restart close for some peers, an administrative shutdown for the others) and
    /// waits (bounded) for their final messages to go out.
    pub async fn shutdown_each(mut self, reason_for: impl Fn(&str, &PeerConfig) -> StopReason) {
        let peers = std::mem::take(&mut self.peers);
        for (name, handle) in peers {
            let reason = reason_for(&name, &handle.config);
            self.retire(handle, reason);
        }
        for task in self.retiring.drain(..) {
            let _ = tokio::time::timeout(WRITE_FLUSH_TIMEOUT * 2, task).await;
        }
        // BFD last, administratively (AdminDown, RFC 5882 §3.2). Not first: a router that
        // reads a remote AdminDown as a failure (FRR 8.4 does) would otherwise tear down a
        // session that is closing for a graceful restart, with a NOTIFICATION, and flush the
        // routes it should keep (RFC 4724). Closed first, the session is already in the
        // router's helper mode when BFD goes down.
        let bfd = std::mem::replace(&mut self.bfd, BfdManager::new(BfdMetrics::default()));
        bfd.shutdown().await;
    }
}

#[cfg(test)]
mod tests;
