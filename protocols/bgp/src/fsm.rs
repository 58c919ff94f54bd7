//! The BGP session state machine (RFC 4271 §8), sans-IO.
//!
//! Owns: one peer's session state (Idle, Connect, Active, OpenSent, OpenConfirm, Established),
//! its timers (ConnectRetry, hold, keepalive, the idle hold / back-off timer of §8.1.1
//! DampPeerOscillations), OPEN validation and capability negotiation, connection collision
//! resolution (§6.8), graceful-restart bookkeeping (RFC 4724), and the routes advertised on the
//! session (Adj-RIB-Out): full table plus End-of-RIB on Established, differences afterwards.
//!
//! I/O stops here: [`Session::handle`] takes the time and an [`Input`] and returns [`Output`]s
//! (connect, send these bytes, close, state changed, ...). It never reads a clock, opens a socket
//! or spawns a task; [`Session::poll_timeout`] says when to call it with [`Input::TimerExpired`].
//! Routes learned from the peer are validated and dropped.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use ipnet::IpNet;

use super::codec::{
    self, Capabilities, DecodeError, EncodeError, Family, Framer, GracefulRestartCapability,
    GracefulRestartFamily, Message, NotificationMessage, OpenMessage, RouteAttributes,
    UpdateContext, error_code, subcode,
};

mod config;
mod open;
mod routes;

/// Session states (RFC 4271 §8.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Idle,
    Connect,
    Active,
    OpenSent,
    OpenConfirm,
    Established,
}

/// Hold time used while waiting for the peer's OPEN: "a large value", 4 minutes suggested
/// (RFC 4271 §8.2.2, OpenSent).
pub const OPEN_SENT_HOLD_TIME: Duration = Duration::from_secs(240);
/// Default proposed hold time (RFC 4271 §10 suggests 90 s).
pub const DEFAULT_HOLD_TIME_SECS: u16 = 90;
/// Default ConnectRetry interval (RFC 4271 §10 suggests 120 s; operators usually want less).
pub const DEFAULT_CONNECT_RETRY: Duration = Duration::from_secs(5);

pub use config::{Backoff, GracefulRestartConfig, SessionConfig};

/// Identifies one TCP connection of a session (there can be two during a collision).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub u64);

/// Who opened a TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// We connected to the peer.
    Outbound,
    /// The peer connected to us.
    Inbound,
}

/// Why the session is being stopped (RFC 4486 Cease subcodes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// Cease / Administrative Shutdown with a shutdown communication (RFC 8203).
    AdministrativeShutdown(String),
    /// Cease / Peer De-configured.
    PeerDeconfigured,
    /// The speaker is restarting: close without NOTIFICATION when graceful restart was
    /// negotiated, so the peer keeps our routes (RFC 4724 §4); otherwise an administrative
    /// shutdown.
    Restarting,
}

/// Events fed into the session.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// ManualStart (RFC 4271 §8.1.2).
    Start,
    /// ManualStop.
    Stop(StopReason),
    /// A TCP connection is up. Outbound: the one asked for by [`Output::Connect`]. Inbound: the
    /// driver took an id from [`Session::allocate_connection_id`].
    TcpConnected {
        conn: ConnectionId,
        direction: Direction,
        local_address: IpAddr,
    },
    /// An outbound connection attempt failed.
    TcpFailed { conn: ConnectionId },
    /// The connection closed under us.
    TcpClosed { conn: ConnectionId },
    /// Bytes read from a connection.
    BytesReceived { conn: ConnectionId, bytes: Vec<u8> },
    /// An already-decoded message (tests and tools).
    MessageReceived {
        conn: ConnectionId,
        message: Message,
    },
    /// `poll_timeout()` has passed.
    TimerExpired,
    /// The routes this session should advertise, in full.
    SetRoutes(BTreeMap<IpNet, RouteAttributes>),
    /// The BFD session with the peer went down (RFC 5882 §4.3): every connection closes at
    /// once with Cease / BFD Down (RFC 9384), then the usual back-off and restart.
    BfdDown,
}

/// What went wrong, for status, logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("sent NOTIFICATION: {}", .0.describe())]
    NotificationSent(NotificationMessage),
    #[error("peer sent NOTIFICATION: {}", .0.describe())]
    NotificationReceived(NotificationMessage),
    #[error("TCP connection to the peer failed")]
    ConnectFailed,
    #[error("the peer closed the connection")]
    ConnectionClosed,
    #[error("cannot encode routes: {0}")]
    Encode(EncodeError),
}

/// Requests from the session to its driver, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Open an outbound TCP connection and report back with this id.
    Connect {
        conn: ConnectionId,
    },
    SendBytes {
        conn: ConnectionId,
        bytes: Vec<u8>,
    },
    /// Close (or abandon the attempt of) this connection; no more input is expected for it.
    CloseConnection {
        conn: ConnectionId,
    },
    StateChanged {
        from: State,
        to: State,
    },
    /// Routes were (re)sent on the Established session.
    RoutesSent {
        announced: usize,
        withdrawn: usize,
        messages: usize,
    },
    Error(SessionError),
}

/// What both sides agreed on in their OPENs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// Zero: no hold timer and no keepalives (RFC 4271 §4.2).
    pub hold_time: Duration,
    pub keepalive: Option<Duration>,
    pub four_octet_as: bool,
    /// Families both advertised (or IPv4 unicast when neither sent multiprotocol capabilities).
    pub families: Vec<Family>,
    pub peer_id: Ipv4Addr,
    pub peer_route_refresh: bool,
    pub peer_graceful_restart: Option<GracefulRestartCapability>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    OpenSent,
    OpenConfirm,
    Established,
}

#[derive(Debug)]
struct Connection {
    id: ConnectionId,
    direction: Direction,
    phase: Phase,
    local_address: IpAddr,
    framer: Framer,
    hold_deadline: Option<Instant>,
    keepalive_deadline: Option<Instant>,
    negotiated: Option<Negotiated>,
}

/// A snapshot for status reporting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionStatus {
    pub state: State,
    pub prefixes_advertised: usize,
    pub consecutive_failures: u32,
    pub last_error: Option<SessionError>,
    pub negotiated: Option<Negotiated>,
    pub end_of_rib_received: Vec<Family>,
    /// UPDATE messages (End-of-RIB included) sent since the session was created.
    pub update_messages_sent: u64,
    /// Times the session left Established since it was created (flaps).
    pub established_ended: u64,
}

/// One BGP session. See the module documentation.
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    started: bool,
    state: State,
    next_connection_id: u64,
    connecting: Option<ConnectionId>,
    connections: Vec<Connection>,
    connect_retry_deadline: Option<Instant>,
    idle_until: Option<Instant>,
    consecutive_failures: u32,
    established_since: Option<Instant>,
    desired: BTreeMap<IpNet, RouteAttributes>,
    advertised: BTreeMap<IpNet, RouteAttributes>,
    restarting: bool,
    end_of_rib_received: BTreeSet<Family>,
    last_error: Option<SessionError>,
    update_messages_sent: u64,
    established_ended: u64,
}

impl Session {
    pub fn new(config: SessionConfig) -> Self {
        let restarting = config
            .graceful_restart
            .as_ref()
            .is_some_and(|gr| gr.restarting);
        Self {
            config,
            started: false,
            state: State::Idle,
            next_connection_id: 1,
            connecting: None,
            connections: Vec::new(),
            connect_retry_deadline: None,
            idle_until: None,
            consecutive_failures: 0,
            established_since: None,
            desired: BTreeMap::new(),
            advertised: BTreeMap::new(),
            restarting,
            end_of_rib_received: BTreeSet::new(),
            last_error: None,
            update_messages_sent: 0,
            established_ended: 0,
        }
    }

    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// A fresh id for an inbound connection the driver is about to report.
    pub fn allocate_connection_id(&mut self) -> ConnectionId {
        let id = ConnectionId(self.next_connection_id);
        self.next_connection_id += 1;
        id
    }

    pub fn status(&self) -> SessionStatus {
        SessionStatus {
            state: self.state,
            prefixes_advertised: self.advertised.len(),
            consecutive_failures: self.consecutive_failures,
            last_error: self.last_error.clone(),
            negotiated: self.established().and_then(|c| c.negotiated.clone()),
            end_of_rib_received: self.end_of_rib_received.iter().copied().collect(),
            update_messages_sent: self.update_messages_sent,
            established_ended: self.established_ended,
        }
    }

    /// The earliest time at which [`Input::TimerExpired`] has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let connection_deadlines = self
            .connections
            .iter()
            .flat_map(|c| [c.hold_deadline, c.keepalive_deadline]);
        [self.connect_retry_deadline, self.idle_until]
            .into_iter()
            .chain(connection_deadlines)
            .flatten()
            .min()
    }

    /// Feeds one input at time `now`; returns what the driver must do, in order.
    pub fn handle(&mut self, now: Instant, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        match input {
            Input::Start => self.on_start(now, &mut out),
            Input::Stop(reason) => self.on_stop(reason, &mut out),
            Input::TcpConnected {
                conn,
                direction,
                local_address,
            } => self.on_tcp_connected(now, conn, direction, local_address, &mut out),
            Input::TcpFailed { conn } => self.on_tcp_failed(conn, &mut out),
            Input::TcpClosed { conn } => self.on_tcp_closed(now, conn, &mut out),
            Input::BytesReceived { conn, bytes } => self.on_bytes(now, conn, &bytes, &mut out),
            Input::MessageReceived { conn, message } => {
                if self.index_of(conn).is_some() {
                    self.on_message(now, conn, message, &mut out);
                }
            }
            Input::TimerExpired => self.on_timers(now, &mut out),
            Input::SetRoutes(routes) => self.on_set_routes(now, routes, &mut out),
            Input::BfdDown => self.on_bfd_down(now, &mut out),
        }
        self.update_state(&mut out);
        out
    }

    // --- events ----------------------------------------------------------------------------

    fn on_start(&mut self, now: Instant, out: &mut Vec<Output>) {
        if self.started {
            return;
        }
        self.started = true;
        self.idle_until = None;
        self.begin_connecting(now, out);
    }

    /// Leaves Idle: connect out (Connect) or wait for the peer (Active).
    fn begin_connecting(&mut self, now: Instant, out: &mut Vec<Output>) {
        if self.config.passive {
            return;
        }
        self.connect(now, out);
    }

    fn connect(&mut self, now: Instant, out: &mut Vec<Output>) {
        if let Some(old) = self.connecting.take() {
            out.push(Output::CloseConnection { conn: old });
        }
        let conn = self.allocate_connection_id();
        self.connecting = Some(conn);
        self.connect_retry_deadline = Some(now + self.config.connect_retry);
        out.push(Output::Connect { conn });
    }

    fn on_stop(&mut self, reason: StopReason, out: &mut Vec<Output>) {
        self.started = false;
        self.idle_until = None;
        self.connect_retry_deadline = None;
        if let Some(conn) = self.connecting.take() {
            out.push(Output::CloseConnection { conn });
        }
        let notification = match &reason {
            StopReason::AdministrativeShutdown(text) => {
                NotificationMessage::cease_with_communication(
                    subcode::ADMINISTRATIVE_SHUTDOWN,
                    text,
                )
            }
            StopReason::PeerDeconfigured => {
                NotificationMessage::new(error_code::CEASE, subcode::PEER_DECONFIGURED, vec![])
            }
            StopReason::Restarting => NotificationMessage::cease_with_communication(
                subcode::ADMINISTRATIVE_SHUTDOWN,
                "speaker restarting",
            ),
        };
        for connection in std::mem::take(&mut self.connections) {
            let graceful = reason == StopReason::Restarting
                && connection.phase == Phase::Established
                && self.config.graceful_restart.is_some()
                && connection
                    .negotiated
                    .as_ref()
                    .is_some_and(|n| n.peer_graceful_restart.is_some());
            if !graceful {
                out.push(Output::SendBytes {
                    conn: connection.id,
                    bytes: codec::encode_notification(&notification),
                });
            }
            out.push(Output::CloseConnection {
                conn: connection.id,
            });
        }
        self.session_down();
    }

    fn on_tcp_connected(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        direction: Direction,
        local_address: IpAddr,
        out: &mut Vec<Output>,
    ) {
        match direction {
            Direction::Outbound => {
                if self.connecting != Some(conn) {
                    // A late answer to an attempt we already abandoned.
                    out.push(Output::CloseConnection { conn });
                    return;
                }
                self.connecting = None;
                self.connect_retry_deadline = None;
            }
            Direction::Inbound => {
                // Refused while stopped (RFC 4271 §8.2.2 Idle). During the back-off the peer's
                // attempt is taken: back-off damps our own initiative, and refusing both ways
                // lets two speakers with out-of-phase back-off miss each other for ever.
                // At most one connection of each direction at a time: a second inbound while
                // the first is not yet Established replaces it (the peer gave up on it).
                if !self.started {
                    out.push(Output::CloseConnection { conn });
                    return;
                }
                self.idle_until = None;
                if let Some(i) = self
                    .connections
                    .iter()
                    .position(|c| c.direction == Direction::Inbound)
                {
                    if self.connections[i].phase == Phase::Established {
                        // Decided when its OPEN arrives (collision with Established, §6.8).
                    } else {
                        let old = self.connections.remove(i);
                        out.push(Output::CloseConnection { conn: old.id });
                    }
                }
            }
        }
        let open = self.our_open();
        match codec::encode_open(&open) {
            Ok(bytes) => out.push(Output::SendBytes { conn, bytes }),
            Err(error) => {
                out.push(Output::Error(SessionError::Encode(error)));
                out.push(Output::CloseConnection { conn });
                return;
            }
        }
        self.connections.push(Connection {
            id: conn,
            direction,
            phase: Phase::OpenSent,
            local_address,
            framer: Framer::new(),
            hold_deadline: Some(now + OPEN_SENT_HOLD_TIME),
            keepalive_deadline: None,
            negotiated: None,
        });
    }

    fn on_tcp_failed(&mut self, conn: ConnectionId, out: &mut Vec<Output>) {
        if self.connecting != Some(conn) {
            return;
        }
        // Connect -> Active; the ConnectRetry timer brings the next attempt (RFC 4271 §8.2.2).
        self.connecting = None;
        self.report(SessionError::ConnectFailed, out);
    }

    fn on_tcp_closed(&mut self, now: Instant, conn: ConnectionId, out: &mut Vec<Output>) {
        if let Some(i) = self.index_of(conn) {
            self.connections.remove(i);
            self.report(SessionError::ConnectionClosed, out);
            self.after_connection_lost(now, out);
        } else if self.connecting == Some(conn) {
            self.connecting = None;
        }
    }

    fn on_bytes(&mut self, now: Instant, conn: ConnectionId, bytes: &[u8], out: &mut Vec<Output>) {
        let Some(i) = self.index_of(conn) else {
            return;
        };
        if let Err(error) = self.connections[i].framer.push(bytes) {
            self.fail_decode(now, conn, error, out);
            return;
        }
        loop {
            let Some(i) = self.index_of(conn) else {
                return;
            };
            match self.connections[i].framer.next_message() {
                None => return,
                Some(Ok(message)) => self.on_message(now, conn, message, out),
                Some(Err(error)) => {
                    self.fail_decode(now, conn, error, out);
                    return;
                }
            }
        }
    }

    fn fail_decode(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        error: DecodeError,
        out: &mut Vec<Output>,
    ) {
        match error.notification() {
            Some(notification) => self.send_notification_and_close(now, conn, notification, out),
            None => self.close_connection(now, conn, true, out),
        }
    }

    fn on_message(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        message: Message,
        out: &mut Vec<Output>,
    ) {
        let Some(i) = self.index_of(conn) else {
            return;
        };
        let phase = self.connections[i].phase;
        match (phase, message) {
            (_, Message::Notification(notification)) => {
                self.report(SessionError::NotificationReceived(notification), out);
                self.close_connection(now, conn, true, out);
            }
            (Phase::OpenSent, Message::Open(open)) => self.on_open(now, conn, open, out),
            (Phase::OpenConfirm, Message::Keepalive) => {
                let c = &mut self.connections[i];
                c.phase = Phase::Established;
                restart_hold_timer(c, now);
                self.on_established(now, conn, out);
            }
            (Phase::Established, Message::Keepalive) => {
                restart_hold_timer(&mut self.connections[i], now);
            }
            (Phase::Established, Message::Update(update)) => {
                restart_hold_timer(&mut self.connections[i], now);
                if let Some(family) = update.end_of_rib() {
                    self.end_of_rib_received.insert(family);
                }
                // Learned routes are not used; the UPDATE was validated by the codec.
            }
            (Phase::Established, Message::RouteRefresh(refresh)) => {
                restart_hold_timer(&mut self.connections[i], now);
                if let Some(family) = codec::Family::from_afi_safi(refresh.afi, refresh.safi) {
                    self.readvertise(now, conn, Some(family), out);
                }
            }
            (phase, _) => {
                // Any other message is an FSM error (RFC 4271 §6.6, subcodes RFC 6608 §4).
                let sub = match phase {
                    Phase::OpenSent => subcode::UNEXPECTED_MESSAGE_IN_OPEN_SENT,
                    Phase::OpenConfirm => subcode::UNEXPECTED_MESSAGE_IN_OPEN_CONFIRM,
                    Phase::Established => subcode::UNEXPECTED_MESSAGE_IN_ESTABLISHED,
                };
                let notification = NotificationMessage::new(error_code::FSM, sub, vec![]);
                self.send_notification_and_close(now, conn, notification, out);
            }
        }
    }

    fn on_established(&mut self, now: Instant, conn: ConnectionId, out: &mut Vec<Output>) {
        // No more outbound attempts once Established (RFC 4271 §8.2.2).
        if let Some(attempt) = self.connecting.take() {
            out.push(Output::CloseConnection { conn: attempt });
        }
        self.connect_retry_deadline = None;
        self.established_since = Some(now);
        self.end_of_rib_received.clear();
        self.advertised.clear();
        self.readvertise(now, conn, None, out);
        self.restarting = false;
    }

    fn on_timers(&mut self, now: Instant, out: &mut Vec<Output>) {
        if self.idle_until.is_some_and(|t| t <= now) {
            self.idle_until = None;
            if self.started {
                self.begin_connecting(now, out);
            }
        }
        if self.connect_retry_deadline.is_some_and(|t| t <= now) {
            self.connect_retry_deadline = None;
            // ConnectRetryTimer_Expires: try again, in Connect or Active (RFC 4271 §8.2.2).
            if self.started && !self.config.passive && self.connections.is_empty() {
                self.connect(now, out);
            }
        }
        let expired_holds: Vec<ConnectionId> = self
            .connections
            .iter()
            .filter(|c| c.hold_deadline.is_some_and(|t| t <= now))
            .map(|c| c.id)
            .collect();
        for conn in expired_holds {
            let notification = NotificationMessage::new(error_code::HOLD_TIMER_EXPIRED, 0, vec![]);
            self.send_notification_and_close(now, conn, notification, out);
        }
        let due_keepalives: Vec<ConnectionId> = self
            .connections
            .iter()
            .filter(|c| c.keepalive_deadline.is_some_and(|t| t <= now))
            .map(|c| c.id)
            .collect();
        for conn in due_keepalives {
            out.push(Output::SendBytes {
                conn,
                bytes: codec::encode_keepalive(),
            });
            self.restart_keepalive_timer(conn, now);
        }
    }

    fn on_bfd_down(&mut self, now: Instant, out: &mut Vec<Output>) {
        let conns: Vec<ConnectionId> = self.connections.iter().map(|c| c.id).collect();
        for conn in conns {
            let notification =
                NotificationMessage::new(error_code::CEASE, subcode::BFD_DOWN, vec![]);
            self.send_notification_and_close(now, conn, notification, out);
        }
    }

    // --- helpers ---------------------------------------------------------------------------

    fn send_notification_and_close(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        notification: NotificationMessage,
        out: &mut Vec<Output>,
    ) {
        out.push(Output::SendBytes {
            conn,
            bytes: codec::encode_notification(&notification),
        });
        self.report(SessionError::NotificationSent(notification), out);
        self.close_connection(now, conn, true, out);
    }

    /// Closes one connection. `failure`: the loss counts towards back-off if it leaves the
    /// session without connections (collision losers do not).
    fn close_connection(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        failure: bool,
        out: &mut Vec<Output>,
    ) {
        let Some(i) = self.index_of(conn) else {
            return;
        };
        let closed = self.connections.remove(i);
        out.push(Output::CloseConnection { conn });
        if closed.phase == Phase::Established {
            self.session_down();
        }
        if failure {
            self.after_connection_lost(now, out);
        }
    }

    /// When the last connection is gone, the session fails: Idle with back-off, then an
    /// automatic restart (RFC 4271 §8.1.1 IdleHoldTimer, DampPeerOscillations).
    fn after_connection_lost(&mut self, now: Instant, out: &mut Vec<Output>) {
        if !self.connections.is_empty() || !self.started {
            return;
        }
        self.session_down();
        if let Some(conn) = self.connecting.take() {
            out.push(Output::CloseConnection { conn });
        }
        self.connect_retry_deadline = None;
        if self.established_since.is_some_and(|since| {
            now.saturating_duration_since(since) >= self.config.backoff.stable_after
        }) {
            self.consecutive_failures = 0;
        }
        self.established_since = None;
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        self.idle_until = Some(now + self.config.backoff.delay(self.consecutive_failures));
    }

    /// Forget what the peer had from us; it drops it with the session.
    fn session_down(&mut self) {
        if self.established().is_none() {
            self.advertised.clear();
        }
    }

    fn report(&mut self, error: SessionError, out: &mut Vec<Output>) {
        self.last_error = Some(error.clone());
        out.push(Output::Error(error));
    }

    fn restart_keepalive_timer(&mut self, conn: ConnectionId, now: Instant) {
        if let Some(i) = self.index_of(conn) {
            let c = &mut self.connections[i];
            c.keepalive_deadline = c
                .negotiated
                .as_ref()
                .and_then(|n| n.keepalive)
                .map(|k| now + k);
        }
    }

    fn index_of(&self, conn: ConnectionId) -> Option<usize> {
        self.connections.iter().position(|c| c.id == conn)
    }

    fn established(&self) -> Option<&Connection> {
        self.connections
            .iter()
            .find(|c| c.phase == Phase::Established)
    }

    fn derived_state(&self) -> State {
        if !self.started || self.idle_until.is_some() {
            return State::Idle;
        }
        let most_advanced = self
            .connections
            .iter()
            .map(|c| c.phase)
            .max_by_key(|p| match p {
                Phase::OpenSent => 0,
                Phase::OpenConfirm => 1,
                Phase::Established => 2,
            });
        match most_advanced {
            Some(Phase::Established) => State::Established,
            Some(Phase::OpenConfirm) => State::OpenConfirm,
            Some(Phase::OpenSent) => State::OpenSent,
            None if self.connecting.is_some() => State::Connect,
            None => State::Active,
        }
    }

    fn update_state(&mut self, out: &mut Vec<Output>) {
        let to = self.derived_state();
        if to != self.state {
            let from = self.state;
            self.state = to;
            if from == State::Established {
                self.established_ended += 1;
            }
            // Reported after the outputs that caused it; the state is informational.
            out.push(Output::StateChanged { from, to });
        }
    }
}

/// Hold timer: restarted on every KEEPALIVE/UPDATE; none when the negotiated hold time is 0.
fn restart_hold_timer(c: &mut Connection, now: Instant) {
    c.hold_deadline = match c.negotiated.as_ref().map(|n| n.hold_time) {
        Some(hold) if hold.is_zero() => None,
        Some(hold) => Some(now + hold),
        None => Some(now + OPEN_SENT_HOLD_TIME),
    };
}

#[cfg(test)]
mod tests;
