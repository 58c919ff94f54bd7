//! One BFD session in asynchronous mode (RFC 5880 §6), sans-IO.
//!
//! Owns: the state variables of §6.8.1 (local and remote state, discriminators, diagnostic,
//! intervals, detect multipliers), the Down/Init/Up/AdminDown transitions of §6.2 and
//! §6.8.6, poll/final sequences for parameter changes (§6.5, §6.8.3), the one-second slow
//! rate while not Up (§6.8.3), the jittered transmission timer (§6.8.7), the detection timer
//! (§6.8.4), and the passive role (§6.1).
//!
//! I/O stops here: [`Session::handle`] takes the time and an [`Input`] and returns
//! [`Output`]s (send this packet, the state changed, a packet was dropped). It never reads a
//! clock or touches a socket; [`Session::poll_timeout`] says when to call it with
//! [`Input::Timer`]. Jitter comes from a small generator seeded by the caller, so a run on
//! virtual time is reproducible.

use std::time::{Duration, Instant};

use crate::packet::{ControlPacket, Diagnostic, State};

/// While a session is not Up, it transmits no faster than once a second (RFC 5880 §6.8.3).
pub const SLOW_TX: Duration = Duration::from_secs(1);
/// bfd.RemoteMinRxInterval starts at 1 µs (RFC 5880 §6.8.1).
const INITIAL_REMOTE_MIN_RX: Duration = Duration::from_micros(1);

/// The timing an operator chooses (a BFDProfile).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profile {
    /// bfd.DesiredMinTxInterval while Up.
    pub desired_min_tx: Duration,
    /// bfd.RequiredMinRxInterval.
    pub required_min_rx: Duration,
    /// bfd.DetectMult.
    pub detect_mult: u8,
    /// Take the passive role: send nothing until the remote has sent (RFC 5880 §6.1).
    pub passive: bool,
}

impl Default for Profile {
    /// 300 ms × 3, active: the values MetalLB and FRR default to.
    fn default() -> Self {
        Self {
            desired_min_tx: Duration::from_millis(300),
            required_min_rx: Duration::from_millis(300),
            detect_mult: 3,
            passive: false,
        }
    }
}

/// Static configuration of one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// bfd.LocalDiscr: nonzero and unique among this system's sessions (RFC 5880 §6.8.1).
    pub local_discriminator: u32,
    pub profile: Profile,
    /// Seed for the transmit jitter (RFC 5880 §6.8.7).
    pub jitter_seed: u64,
}

/// What the caller feeds the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A packet that passed [`ControlPacket::decode`] and was demultiplexed to this session.
    Packet(ControlPacket),
    /// The time returned by [`Session::poll_timeout`] has come.
    Timer,
    /// New timing; renegotiated with a poll sequence when Up (RFC 5880 §6.8.3).
    SetProfile(Profile),
    /// Operator shutdown: state AdminDown, diagnostic 7 (RFC 5880 §6.8.16).
    AdminDown,
    /// Leave AdminDown: state Down (RFC 5880 §6.8.16).
    AdminUp,
}

/// Why the session refused a decoded packet (RFC 5880 §6.8.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The A bit is set and this session uses no authentication.
    Authentication,
    /// Your Discriminator names another session.
    WrongDiscriminator,
    /// Your Discriminator is zero in a packet whose state is Init or Up.
    ZeroYourDiscriminator,
}

impl DropReason {
    /// Label for the dropped-packets metric.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Authentication => "authentication",
            DropReason::WrongDiscriminator => "wrong_discriminator",
            DropReason::ZeroYourDiscriminator => "zero_your_discriminator",
        }
    }
}

/// What the session asks of its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Send(ControlPacket),
    StateChanged {
        from: State,
        to: State,
        diag: Diagnostic,
    },
    Dropped(DropReason),
}

/// A poll sequence in progress (RFC 5880 §6.5): the values last confirmed by a Final, used
/// where the RFC forbids acting on the new ones before the Final (§6.8.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Poll {
    confirmed_tx: Duration,
    confirmed_rx: Duration,
    /// Parameters changed again during this sequence: start another one after its Final.
    again: bool,
}

/// Negotiated values, for status and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    pub state: State,
    pub remote_state: State,
    pub local_diag: Diagnostic,
    pub remote_discriminator: u32,
    /// Interval between periodic transmissions before jitter; `None` when none are sent.
    pub tx_interval: Option<Duration>,
    /// Detection time for the remote system (RFC 5880 §6.8.4).
    pub detection_time: Duration,
    pub polling: bool,
}

/// One BFD session.
#[derive(Debug, Clone)]
pub struct Session {
    local_discr: u32,
    profile: Profile,
    state: State,
    remote_state: State,
    remote_discr: u32,
    local_diag: Diagnostic,
    /// bfd.DesiredMinTxInterval as advertised now (slow while not Up).
    desired_min_tx: Duration,
    /// bfd.RequiredMinRxInterval as advertised now.
    required_min_rx: Duration,
    remote_min_rx: Duration,
    remote_desired_min_tx: Duration,
    remote_detect_mult: u8,
    remote_demand: bool,
    poll: Option<Poll>,
    next_tx: Option<Instant>,
    detect_deadline: Option<Instant>,
    rng: u64,
}

impl Session {
    /// A session in state Down; an active one transmits at once (call `handle(now, Timer)`).
    pub fn new(config: SessionConfig, now: Instant) -> Session {
        let profile = sanitize(config.profile);
        let mut session = Session {
            local_discr: config.local_discriminator.max(1),
            profile,
            state: State::Down,
            remote_state: State::Down,
            remote_discr: 0,
            local_diag: Diagnostic::None,
            desired_min_tx: profile.desired_min_tx.max(SLOW_TX),
            required_min_rx: profile.required_min_rx.max(SLOW_TX),
            remote_min_rx: INITIAL_REMOTE_MIN_RX,
            remote_desired_min_tx: Duration::ZERO,
            remote_detect_mult: 0,
            remote_demand: false,
            poll: None,
            next_tx: None,
            detect_deadline: None,
            // xorshift must not start at zero.
            rng: config.jitter_seed | 1,
        };
        if session.may_transmit() {
            session.next_tx = Some(now);
        }
        session
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn local_discriminator(&self) -> u32 {
        self.local_discr
    }

    pub fn remote_discriminator(&self) -> u32 {
        self.remote_discr
    }

    pub fn profile(&self) -> Profile {
        self.profile
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            state: self.state,
            remote_state: self.remote_state,
            local_diag: self.local_diag,
            remote_discriminator: self.remote_discr,
            tx_interval: self.periodic_allowed().then(|| self.tx_interval()),
            detection_time: self.detection_time(),
            polling: self.poll.is_some(),
        }
    }

    /// When to call [`Session::handle`] with [`Input::Timer`] next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.next_tx, self.detect_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn handle(&mut self, now: Instant, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        match input {
            Input::Packet(packet) => self.receive(now, packet, &mut out),
            Input::Timer => self.timers(now, &mut out),
            Input::SetProfile(profile) => self.set_profile(now, profile, &mut out),
            Input::AdminDown => {
                if self.state != State::AdminDown {
                    self.local_diag = Diagnostic::AdministrativelyDown;
                    self.change_state(now, State::AdminDown, &mut out);
                    self.detect_deadline = None;
                }
            }
            Input::AdminUp => {
                if self.state == State::AdminDown {
                    self.local_diag = Diagnostic::None;
                    self.change_state(now, State::Down, &mut out);
                }
            }
        }
        out
    }

    /// RFC 5880 §6.8.6, from "If the A bit is set" on.
    fn receive(&mut self, now: Instant, packet: ControlPacket, out: &mut Vec<Output>) {
        if packet.authentication_present {
            out.push(Output::Dropped(DropReason::Authentication));
            return;
        }
        if packet.your_discriminator != 0 && packet.your_discriminator != self.local_discr {
            out.push(Output::Dropped(DropReason::WrongDiscriminator));
            return;
        }
        if packet.your_discriminator == 0 && !matches!(packet.state, State::Down | State::AdminDown)
        {
            out.push(Output::Dropped(DropReason::ZeroYourDiscriminator));
            return;
        }
        self.remote_discr = packet.my_discriminator;
        self.remote_state = packet.state;
        self.remote_demand = packet.demand;
        self.remote_desired_min_tx = Duration::from_micros(packet.desired_min_tx_us.into());
        self.remote_detect_mult = packet.detect_mult;
        let previous_interval = self.tx_interval();
        self.remote_min_rx = Duration::from_micros(packet.required_min_rx_us.into());
        if packet.final_ {
            self.end_poll();
        }
        // The detection timer restarts with every valid packet (§6.8.4).
        self.detect_deadline = Some(now + self.detection_time());
        if self.state == State::AdminDown {
            return;
        }
        if packet.state == State::AdminDown {
            if self.state != State::Down {
                self.local_diag = Diagnostic::NeighborSignaledSessionDown;
                self.change_state(now, State::Down, out);
            }
        } else {
            match (self.state, packet.state) {
                (State::Down, State::Down) => self.change_state(now, State::Init, out),
                (State::Down, State::Init) => self.change_state(now, State::Up, out),
                (State::Init, State::Init | State::Up) => self.change_state(now, State::Up, out),
                (State::Up, State::Down) => {
                    self.local_diag = Diagnostic::NeighborSignaledSessionDown;
                    self.change_state(now, State::Down, out);
                }
                _ => {}
            }
        }
        // A Poll is answered at once, whatever the transmission timer says (§6.8.6).
        if packet.poll {
            let mut reply = self.packet();
            reply.poll = false;
            reply.final_ = true;
            out.push(Output::Send(reply));
        }
        // A shorter interval (the remote lowered its RequiredMinRx) or the first packet a passive
        // session hears reschedules the next transmission (§6.8.3, §6.1).
        if !self.periodic_allowed() {
            self.next_tx = None;
        } else if self.next_tx.is_none() {
            self.next_tx = Some(now);
        } else if self.tx_interval() < previous_interval {
            let sooner = now + self.jittered(self.tx_interval());
            self.next_tx = self.next_tx.map(|t| t.min(sooner));
        }
    }

    fn timers(&mut self, now: Instant, out: &mut Vec<Output>) {
        if self.detect_deadline.is_some_and(|t| t <= now) {
            self.detect_deadline = None;
            // §6.8.1: bfd.RemoteDiscr is reset when the detection time expires.
            self.remote_discr = 0;
            self.remote_state = State::Down;
            self.remote_min_rx = INITIAL_REMOTE_MIN_RX;
            self.remote_demand = false;
            if matches!(self.state, State::Init | State::Up) {
                self.local_diag = Diagnostic::ControlDetectionTimeExpired;
                self.change_state(now, State::Down, out);
            }
            if !self.may_transmit() {
                self.next_tx = None;
            }
        }
        if self.next_tx.is_some_and(|t| t <= now) {
            self.transmit(now, out);
        }
    }

    fn set_profile(&mut self, now: Instant, profile: Profile, out: &mut Vec<Output>) {
        let profile = sanitize(profile);
        if profile == self.profile {
            return;
        }
        let was_silent = !self.may_transmit();
        self.profile = profile;
        let (tx, rx) = self.advertised();
        self.change_timing(tx, rx);
        if self.may_transmit() && (was_silent || self.poll.is_some()) {
            // Start the poll (or the first transmission) now rather than a period later.
            self.transmit(now, out);
        } else if !self.may_transmit() {
            self.next_tx = None;
        }
    }

    /// Changes the advertised intervals; while Up that takes a poll sequence (§6.8.3).
    fn change_timing(&mut self, tx: Duration, rx: Duration) {
        if tx == self.desired_min_tx && rx == self.required_min_rx {
            return;
        }
        if self.state == State::Up {
            self.poll = Some(match self.poll {
                Some(poll) => Poll {
                    again: true,
                    ..poll
                },
                None => Poll {
                    confirmed_tx: self.desired_min_tx,
                    confirmed_rx: self.required_min_rx,
                    again: false,
                },
            });
        }
        self.desired_min_tx = tx;
        self.required_min_rx = rx;
    }

    fn end_poll(&mut self) {
        if let Some(poll) = self.poll.take()
            && poll.again
        {
            // The Final may answer a Poll that carried older values: keep the conservative bounds
            // and confirm the current values with one more sequence.
            self.poll = Some(Poll {
                confirmed_tx: poll.confirmed_tx.min(self.desired_min_tx),
                confirmed_rx: poll.confirmed_rx.max(self.required_min_rx),
                again: false,
            });
        }
    }

    fn change_state(&mut self, now: Instant, to: State, out: &mut Vec<Output>) {
        let from = self.state;
        if from == to {
            return;
        }
        self.state = to;
        out.push(Output::StateChanged {
            from,
            to,
            diag: self.local_diag,
        });
        let (tx, rx) = self.advertised();
        if to == State::Up {
            self.local_diag = Diagnostic::None;
            self.change_timing(tx, rx);
        } else {
            // Not Up: no poll sequence, and at most one packet a second (§6.8.3).
            self.poll = None;
            if to == State::Down {
                // Start over as for a new session: the remote's next packet names it again.
                // (RFC 5880 requires this only on detection time expiry; FRR's bfdd does it on
                // every transition to Down, and so do we, so a restarted remote with a new
                // discriminator is not refused.)
                self.remote_discr = 0;
            }
            self.desired_min_tx = tx;
            self.required_min_rx = rx;
        }
        // Tell the remote at once rather than a period later.
        if self.may_transmit() {
            self.transmit(now, out);
        } else {
            self.next_tx = None;
        }
    }

    fn transmit(&mut self, now: Instant, out: &mut Vec<Output>) {
        out.push(Output::Send(self.packet()));
        self.next_tx = self
            .periodic_allowed()
            .then(|| now + self.jittered(self.tx_interval()));
    }

    fn packet(&self) -> ControlPacket {
        ControlPacket {
            diag: self.local_diag,
            state: self.state,
            poll: self.poll.is_some(),
            final_: false,
            control_plane_independent: false,
            authentication_present: false,
            demand: false,
            multipoint: false,
            detect_mult: self.profile.detect_mult,
            my_discriminator: self.local_discr,
            your_discriminator: self.remote_discr,
            desired_min_tx_us: micros(self.desired_min_tx),
            required_min_rx_us: micros(self.required_min_rx),
            required_min_echo_rx_us: 0,
        }
    }

    /// The intervals to advertise in the current state: the profile's while Up, at least one
    /// second otherwise (§6.8.3 for the transmit interval; the receive interval follows it, as
    /// FRR's bfdd does, so that a session that is not Up costs nothing either way).
    fn advertised(&self) -> (Duration, Duration) {
        if self.state == State::Up {
            (self.profile.desired_min_tx, self.profile.required_min_rx)
        } else {
            (
                self.profile.desired_min_tx.max(SLOW_TX),
                self.profile.required_min_rx.max(SLOW_TX),
            )
        }
    }

    /// A passive session stays silent until it has heard the remote (§6.1).
    fn may_transmit(&self) -> bool {
        !self.profile.passive || self.remote_discr != 0
    }

    /// Periodic transmission: not to a remote that asks for none (RemoteMinRxInterval zero),
    /// nor when the remote runs demand mode and both sides are Up (§6.8.7).
    fn periodic_allowed(&self) -> bool {
        self.may_transmit()
            && !self.remote_min_rx.is_zero()
            && !(self.remote_demand && self.state == State::Up && self.remote_state == State::Up)
    }

    /// max(bfd.DesiredMinTxInterval, bfd.RemoteMinRxInterval) (§6.8.7). During a poll an
    /// increase of our interval waits for the Final (§6.8.3).
    fn tx_interval(&self) -> Duration {
        let ours = match self.poll {
            Some(poll) => poll.confirmed_tx.min(self.desired_min_tx),
            None => self.desired_min_tx,
        };
        ours.max(self.remote_min_rx)
    }

    /// Asynchronous mode: the remote's DetectMult × max(bfd.RequiredMinRxInterval, the remote's
    /// Desired Min TX Interval) (§6.8.4). During a poll a reduction of our RequiredMinRx waits
    /// for the Final (§6.8.3).
    fn detection_time(&self) -> Duration {
        let ours = match self.poll {
            Some(poll) => poll.confirmed_rx.max(self.required_min_rx),
            None => self.required_min_rx,
        };
        ours.max(self.remote_desired_min_tx) * u32::from(self.remote_detect_mult.max(1))
    }

    /// 75–100 % of the interval, or 75–90 % with a detect multiplier of 1 (§6.8.7).
    fn jittered(&mut self, interval: Duration) -> Duration {
        // xorshift64
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        let span = if self.profile.detect_mult == 1 {
            16
        } else {
            26
        };
        let percent = 75 + (x % span) as u32;
        interval * percent / 100
    }
}

/// Intervals of at least 1 µs on the wire, a multiplier of at least 1.
fn sanitize(mut profile: Profile) -> Profile {
    profile.desired_min_tx = profile.desired_min_tx.max(Duration::from_micros(1));
    profile.detect_mult = profile.detect_mult.max(1);
    profile
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}
