//! Two sessions talking over an in-memory link on virtual time: bring-up, link cut and repair,
//! profile renegotiation without a flap, passive against active, and damping.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

mod support;

use herald_bfd::{ControlPacket, Damper, DampingConfig, Input, Output, Profile, Session, State};
use support::ms;

/// A profile sending and receiving every `tx` milliseconds.
fn profile(tx: u64, mult: u8, passive: bool) -> Profile {
    support::profile(tx, tx, mult, passive)
}

/// Two endpoints and a link with a fixed one-way delay that can be cut.
struct Pair {
    now: Instant,
    ends: [Session; 2],
    /// (arrival time, destination index, bytes)
    wire: VecDeque<(Instant, usize, Vec<u8>)>,
    delay: Duration,
    link_up: bool,
    /// (time, endpoint, from, to)
    transitions: Vec<(Instant, usize, State, State)>,
    sent: [usize; 2],
}

impl Pair {
    fn new(a: Profile, b: Profile) -> Pair {
        let now = Instant::now();
        Pair {
            now,
            ends: [
                support::session(11, a, 1, now),
                support::session(22, b, 2, now),
            ],
            wire: VecDeque::new(),
            delay: ms(1),
            link_up: true,
            transitions: Vec::new(),
            sent: [0, 0],
        }
    }

    fn apply(&mut self, from: usize, outputs: Vec<Output>) {
        for output in outputs {
            match output {
                Output::Send(packet) => {
                    self.sent[from] += 1;
                    if self.link_up {
                        // Through the codec, as on the wire.
                        let bytes = packet.encode().to_vec();
                        self.wire
                            .push_back((self.now + self.delay, 1 - from, bytes));
                    }
                }
                Output::StateChanged { from: f, to, .. } => {
                    self.transitions.push((self.now, from, f, to));
                }
                Output::Dropped(reason) => panic!("unexpected drop {reason:?}"),
            }
        }
    }

    fn input(&mut self, end: usize, input: Input) {
        let outputs = self.ends[end].handle(self.now, input);
        self.apply(end, outputs);
    }

    /// Runs the virtual clock to `until`, event by event (bounded).
    fn run_until(&mut self, until: Instant) {
        for _ in 0..1_000_000 {
            let timers = [self.ends[0].poll_timeout(), self.ends[1].poll_timeout()];
            let arrival = self.wire.front().map(|(t, _, _)| *t);
            let next = timers.iter().flatten().copied().chain(arrival).min();
            let Some(next) = next.filter(|t| *t <= until) else {
                self.now = until;
                return;
            };
            self.now = next.max(self.now);
            if arrival == Some(next) {
                let (_, to, bytes) = self.wire.pop_front().expect("front exists");
                let packet = ControlPacket::decode(&bytes).expect("our packets decode");
                self.input(to, Input::Packet(packet));
            } else {
                let end = if timers[0] == Some(next) { 0 } else { 1 };
                self.input(end, Input::Timer);
            }
        }
        panic!("simulation did not reach its end time");
    }

    fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    fn states(&self) -> (State, State) {
        (self.ends[0].state(), self.ends[1].state())
    }

    fn cut(&mut self) {
        self.link_up = false;
        self.wire.clear();
    }
}

#[test]
fn two_active_endpoints_come_up_within_a_few_slow_intervals() {
    let mut pair = Pair::new(profile(50, 3, false), profile(50, 3, false));
    pair.run_for(ms(3000));
    assert_eq!(pair.states(), (State::Up, State::Up));
    let up_at = pair
        .transitions
        .iter()
        .filter(|t| t.3 == State::Up)
        .map(|t| t.0)
        .max()
        .expect("both went Up");
    assert!(up_at - pair.transitions[0].0 <= ms(1100));
    // Settled on the fast rate, no poll outstanding.
    for end in &pair.ends {
        let snap = end.snapshot();
        assert!(!snap.polling);
        assert_eq!(snap.tx_interval, Some(ms(50)));
        assert_eq!(snap.detection_time, ms(150));
    }
}

#[test]
fn a_link_cut_takes_both_ends_down_within_the_detection_time_and_repair_brings_them_back() {
    let mut pair = Pair::new(profile(100, 3, false), profile(100, 3, false));
    pair.run_for(ms(3000));
    assert_eq!(pair.states(), (State::Up, State::Up));
    let cut_at = pair.now;
    pair.transitions.clear();
    pair.cut();
    pair.run_for(ms(1000));
    assert_eq!(pair.states(), (State::Down, State::Down));
    for t in &pair.transitions {
        assert_eq!((t.2, t.3), (State::Up, State::Down));
        // The last packet left at most one interval before the cut; detection is 300 ms.
        assert!(t.0 - cut_at <= ms(300), "{:?}", t.0 - cut_at);
    }
    pair.link_up = true;
    pair.run_for(ms(3000));
    assert_eq!(pair.states(), (State::Up, State::Up));
}

#[test]
fn a_profile_change_renegotiates_both_ends_without_a_flap() {
    let mut pair = Pair::new(profile(100, 3, false), profile(100, 3, false));
    pair.run_for(ms(3000));
    pair.transitions.clear();
    pair.input(0, Input::SetProfile(profile(300, 5, false)));
    pair.run_for(ms(2000));
    assert!(pair.transitions.is_empty(), "{:?}", pair.transitions);
    assert_eq!(pair.states(), (State::Up, State::Up));
    let a = pair.ends[0].snapshot();
    let b = pair.ends[1].snapshot();
    assert!(!a.polling && !b.polling);
    assert_eq!(a.tx_interval, Some(ms(300)));
    // b now expects a packet every 300 ms, five of them missed.
    assert_eq!(b.detection_time, ms(1500));
    // a now asks b for no more than one every 300 ms.
    assert_eq!(b.tx_interval, Some(ms(300)));
    // And faster again.
    pair.input(0, Input::SetProfile(profile(50, 3, false)));
    pair.run_for(ms(2000));
    assert!(pair.transitions.is_empty(), "{:?}", pair.transitions);
    // 3 × max(b's 100 ms receive interval, a's 50 ms transmit interval).
    assert_eq!(pair.ends[1].snapshot().detection_time, ms(300));
}

#[test]
fn a_passive_end_comes_up_with_an_active_one_and_two_passive_ends_stay_silent() {
    let mut pair = Pair::new(profile(50, 3, true), profile(50, 3, false));
    pair.run_for(ms(3000));
    assert_eq!(pair.states(), (State::Up, State::Up));

    let mut quiet = Pair::new(profile(50, 3, true), profile(50, 3, true));
    quiet.run_for(ms(5000));
    assert_eq!(quiet.sent, [0, 0]);
    assert_eq!(quiet.states(), (State::Down, State::Down));
}

#[test]
fn admin_down_on_one_end_takes_the_other_down_with_diag_3_and_admin_up_recovers() {
    let mut pair = Pair::new(profile(50, 3, false), profile(50, 3, false));
    pair.run_for(ms(3000));
    pair.input(0, Input::AdminDown);
    pair.run_for(ms(500));
    assert_eq!(pair.states(), (State::AdminDown, State::Down));
    assert_eq!(
        pair.ends[1].snapshot().local_diag,
        herald_bfd::Diagnostic::NeighborSignaledSessionDown
    );
    pair.input(0, Input::AdminUp);
    pair.run_for(ms(3000));
    assert_eq!(pair.states(), (State::Up, State::Up));
}

#[test]
fn a_flapping_link_is_damped_before_bgp_while_down_passes_at_once() {
    let mut pair = Pair::new(profile(50, 3, false), profile(50, 3, false));
    let mut damper = Damper::new(DampingConfig {
        initial: ms(2000),
        max: ms(60_000),
        stable_after: ms(60_000),
    });
    let mut reported = Vec::new();
    let feed = |pair: &Pair, damper: &mut Damper, reported: &mut Vec<(Instant, bool)>| {
        let up = pair.ends[0].state() == State::Up;
        if let Some(change) = damper.update(pair.now, up) {
            reported.push((pair.now, change));
        }
        if let Some(change) = damper.timer(pair.now) {
            reported.push((pair.now, change));
        }
    };
    let step = ms(10);
    for _ in 0..4 {
        // 1.5 s of link, 1 s without.
        for _ in 0..150 {
            pair.run_for(step);
            feed(&pair, &mut damper, &mut reported);
        }
        pair.cut();
        for _ in 0..100 {
            pair.run_for(step);
            feed(&pair, &mut damper, &mut reported);
        }
        pair.link_up = true;
    }
    // The raw session went Up 4 times; BGP saw it Up only on the first two (the second flap
    // starts a 2 s hold-down longer than the 1.5 s the link stays up).
    let ups = reported.iter().filter(|r| r.1).count();
    let raw_ups = pair
        .transitions
        .iter()
        .filter(|t| t.1 == 0 && t.3 == State::Up)
        .count();
    assert_eq!(raw_ups, 4);
    assert_eq!(ups, 2, "{reported:?}");
    assert!(!damper.is_up());
    assert!(damper.flaps() >= 3);
}
