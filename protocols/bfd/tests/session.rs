//! The session state machine, one transition per test (RFC 5880 §6.2, §6.5, §6.8).

mod support;

use std::time::Instant;

use herald_bfd::{ControlPacket, Diagnostic, DropReason, Input, Output, Profile, Session, State};
use support::{changes, ms, sends};

const LOCAL: u32 = 0x0101_0101;
const REMOTE: u32 = 0x0202_0202;

fn profile(tx: u64, rx: u64, mult: u8) -> Profile {
    support::profile(tx, rx, mult, false)
}

fn session_with(profile: Profile, now: Instant) -> Session {
    support::session(LOCAL, profile, 42, now)
}

fn session(now: Instant) -> Session {
    session_with(profile(100, 100, 3), now)
}

/// A packet from the remote in `state`, addressed to us once it knows our discriminator.
fn from_remote(state: State, knows_us: bool) -> ControlPacket {
    ControlPacket {
        diag: Diagnostic::None,
        state,
        poll: false,
        final_: false,
        control_plane_independent: false,
        authentication_present: false,
        demand: false,
        multipoint: false,
        detect_mult: 3,
        my_discriminator: REMOTE,
        your_discriminator: if knows_us { LOCAL } else { 0 },
        desired_min_tx_us: 100_000,
        required_min_rx_us: 100_000,
        required_min_echo_rx_us: 0,
    }
}

/// A session in `state` (Down, Init, or Up with its poll completed) at `now`.
fn session_in(state: State, now: Instant) -> Session {
    match state {
        State::Up => settled_up_session(now),
        State::Init => {
            let mut s = session(now);
            let _ = s.handle(now, Input::Packet(from_remote(State::Down, false)));
            s
        }
        _ => session(now),
    }
}

/// A session in `local` hears the remote in `remote` (addressed to us when `knows_us`): the
/// transition it makes, if any, and the state it ends in (RFC 5880 §6.8.6).
fn hearing(
    local: State,
    remote: State,
    knows_us: bool,
) -> (Option<(State, State, Diagnostic)>, State, Vec<Output>) {
    let t0 = Instant::now();
    let mut s = session_in(local, t0);
    let out = s.handle(t0, Input::Packet(from_remote(remote, knows_us)));
    let change = changes(&out);
    assert!(change.len() <= 1, "{change:?}");
    (change.first().copied(), s.state(), out)
}

/// Brings a session Up through Down -> Init -> Up.
fn up_session(now: Instant) -> Session {
    let mut s = session(now);
    let _ = s.handle(now, Input::Timer);
    let _ = s.handle(now, Input::Packet(from_remote(State::Down, false)));
    let _ = s.handle(now, Input::Packet(from_remote(State::Up, true)));
    assert_eq!(s.state(), State::Up);
    s
}

/// Brings a session Up and completes the poll that moves it to its fast rate.
fn settled_up_session(now: Instant) -> Session {
    let mut s = up_session(now);
    let mut fin = from_remote(State::Up, true);
    fin.final_ = true;
    let _ = s.handle(now, Input::Packet(fin));
    assert!(!s.snapshot().polling);
    s
}

#[test]
fn a_new_active_session_is_down_and_sends_down_with_your_discriminator_zero_at_once() {
    let t0 = Instant::now();
    let mut s = session(t0);
    assert_eq!(s.state(), State::Down);
    assert_eq!(s.poll_timeout(), Some(t0));
    let sent = sends(&s.handle(t0, Input::Timer));
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].state, State::Down);
    assert_eq!(sent[0].my_discriminator, LOCAL);
    assert_eq!(sent[0].your_discriminator, 0);
}

#[test]
fn a_session_that_is_not_up_transmits_no_faster_than_once_a_second() {
    let t0 = Instant::now();
    let mut s = session_with(profile(10, 10, 3), t0);
    let sent = sends(&s.handle(t0, Input::Timer));
    assert_eq!(sent[0].desired_min_tx_us, 1_000_000);
    let next = s.poll_timeout().expect("periodic");
    assert!(next - t0 >= ms(750), "{:?}", next - t0);
    assert!(next - t0 <= ms(1000));
}

#[test]
fn down_hearing_down_goes_init_and_says_so_at_once() {
    let (change, _, out) = hearing(State::Down, State::Down, false);
    assert_eq!(change, Some((State::Down, State::Init, Diagnostic::None)));
    let sent = sends(&out);
    assert_eq!(sent[0].state, State::Init);
    assert_eq!(sent[0].your_discriminator, REMOTE);
}

#[test]
fn down_hearing_init_goes_up() {
    let (change, _, _) = hearing(State::Down, State::Init, true);
    assert_eq!(change, Some((State::Down, State::Up, Diagnostic::None)));
}

#[test]
fn down_hearing_up_or_admin_down_stays_down() {
    for (remote, knows_us) in [(State::Up, true), (State::AdminDown, false)] {
        let (change, state, _) = hearing(State::Down, remote, knows_us);
        assert_eq!((change, state), (None, State::Down), "{remote:?}");
    }
}

#[test]
fn init_hearing_init_or_up_goes_up() {
    for remote in [State::Init, State::Up] {
        let (change, _, _) = hearing(State::Init, remote, true);
        assert_eq!(change, Some((State::Init, State::Up, Diagnostic::None)));
    }
}

#[test]
fn init_hearing_down_stays_init() {
    let (change, state, _) = hearing(State::Init, State::Down, true);
    assert_eq!((change, state), (None, State::Init));
}

#[test]
fn up_hearing_down_goes_down_with_neighbor_signaled_session_down() {
    let (change, _, out) = hearing(State::Up, State::Down, false);
    let diag = Diagnostic::NeighborSignaledSessionDown;
    assert_eq!(change, Some((State::Up, State::Down, diag)));
    assert_eq!(sends(&out)[0].diag, diag);
}

#[test]
fn up_or_init_hearing_admin_down_goes_down_with_diag_3() {
    for local in [State::Up, State::Init] {
        let (change, _, _) = hearing(local, State::AdminDown, true);
        let diag = Diagnostic::NeighborSignaledSessionDown;
        assert_eq!(change, Some((local, State::Down, diag)));
    }
}

#[test]
fn up_goes_down_with_control_detection_time_expired_when_the_remote_falls_silent() {
    let t0 = Instant::now();
    let mut s = settled_up_session(t0);
    // 3 × max(100 ms, 100 ms) = 300 ms after the last packet.
    assert_eq!(s.snapshot().detection_time, ms(300));
    let mut went_down = None;
    for _ in 0..100 {
        let now = s.poll_timeout().expect("timers run while Up");
        let out = s.handle(now, Input::Timer);
        if !changes(&out).is_empty() {
            went_down = Some((now, changes(&out)));
            break;
        }
    }
    let (at, change) = went_down.expect("detection time expires");
    assert_eq!(
        change,
        vec![(
            State::Up,
            State::Down,
            Diagnostic::ControlDetectionTimeExpired
        )]
    );
    assert_eq!(at - t0, ms(300));
    assert_eq!(s.remote_discriminator(), 0);
}

#[test]
fn init_goes_down_when_the_detection_time_expires() {
    let t0 = Instant::now();
    let mut s = session(t0);
    let _ = s.handle(t0, Input::Packet(from_remote(State::Down, false)));
    let deadline = t0 + s.snapshot().detection_time;
    let out = s.handle(deadline, Input::Timer);
    assert_eq!(
        changes(&out),
        vec![(
            State::Init,
            State::Down,
            Diagnostic::ControlDetectionTimeExpired
        )]
    );
}

#[test]
fn a_valid_packet_restarts_the_detection_timer() {
    let t0 = Instant::now();
    let mut s = settled_up_session(t0);
    let t1 = t0 + ms(250);
    let _ = s.handle(t1, Input::Packet(from_remote(State::Up, true)));
    let out = s.handle(t0 + ms(400), Input::Timer);
    assert!(changes(&out).is_empty());
    assert_eq!(s.state(), State::Up);
    let out = s.handle(t1 + ms(300), Input::Timer);
    assert_eq!(changes(&out).len(), 1);
}

#[test]
fn detection_time_is_the_remote_multiplier_times_the_slower_of_our_rx_and_its_tx() {
    let t0 = Instant::now();
    let mut s = settled_up_session(t0);
    let mut p = from_remote(State::Up, true);
    p.detect_mult = 5;
    p.desired_min_tx_us = 250_000;
    let _ = s.handle(t0, Input::Packet(p));
    assert_eq!(s.snapshot().detection_time, ms(1250));
}

#[test]
fn the_transmit_interval_is_the_slower_of_our_tx_and_the_remote_rx() {
    let t0 = Instant::now();
    let mut s = settled_up_session(t0);
    let mut p = from_remote(State::Up, true);
    p.required_min_rx_us = 400_000;
    let _ = s.handle(t0, Input::Packet(p));
    assert_eq!(s.snapshot().tx_interval, Some(ms(400)));
}

#[test]
fn admin_down_sends_admin_down_with_diag_7_and_ignores_the_remote_until_admin_up() {
    let t0 = Instant::now();
    let mut s = settled_up_session(t0);
    let out = s.handle(t0, Input::AdminDown);
    assert_eq!(
        changes(&out),
        vec![(
            State::Up,
            State::AdminDown,
            Diagnostic::AdministrativelyDown
        )]
    );
    assert_eq!(sends(&out)[0].state, State::AdminDown);
    assert_eq!(sends(&out)[0].diag, Diagnostic::AdministrativelyDown);
    let out = s.handle(t0, Input::Packet(from_remote(State::Init, true)));
    assert!(changes(&out).is_empty());
    assert_eq!(s.state(), State::AdminDown);
    // No detection timer runs in AdminDown.
    let out = s.handle(t0 + ms(10_000), Input::Timer);
    assert!(changes(&out).is_empty());
    let out = s.handle(t0 + ms(10_000), Input::AdminUp);
    assert_eq!(
        changes(&out),
        vec![(State::AdminDown, State::Down, Diagnostic::None)]
    );
}

#[test]
fn a_packet_with_authentication_is_dropped_as_this_session_has_none() {
    let t0 = Instant::now();
    let mut s = session(t0);
    let mut p = from_remote(State::Down, false);
    p.authentication_present = true;
    let out = s.handle(t0, Input::Packet(p));
    assert_eq!(out, vec![Output::Dropped(DropReason::Authentication)]);
    assert_eq!(s.state(), State::Down);
}

#[test]
fn a_packet_for_another_discriminator_is_dropped() {
    let t0 = Instant::now();
    let mut s = session(t0);
    let mut p = from_remote(State::Init, true);
    p.your_discriminator = 77;
    let out = s.handle(t0, Input::Packet(p));
    assert_eq!(out, vec![Output::Dropped(DropReason::WrongDiscriminator)]);
}

#[test]
fn an_init_or_up_packet_without_your_discriminator_is_dropped() {
    let t0 = Instant::now();
    let mut s = settled_up_session(t0);
    let out = s.handle(t0, Input::Packet(from_remote(State::Init, false)));
    assert_eq!(
        out,
        vec![Output::Dropped(DropReason::ZeroYourDiscriminator)]
    );
    assert_eq!(s.state(), State::Up);
}

#[test]
fn a_poll_is_answered_at_once_with_a_final() {
    let t0 = Instant::now();
    let mut s = settled_up_session(t0);
    let mut p = from_remote(State::Up, true);
    p.poll = true;
    let sent = sends(&s.handle(t0 + ms(1), Input::Packet(p)));
    assert_eq!(sent.len(), 1);
    assert!(sent[0].final_ && !sent[0].poll);
}

#[test]
fn going_up_polls_to_the_fast_rate_and_the_final_ends_the_poll() {
    let t0 = Instant::now();
    let mut s = session(t0);
    let _ = s.handle(t0, Input::Packet(from_remote(State::Down, false)));
    let sent = sends(&s.handle(t0, Input::Packet(from_remote(State::Up, true))));
    let last = sent.last().expect("sends on going Up");
    assert!(last.poll);
    assert_eq!(last.desired_min_tx_us, 100_000);
    assert_eq!(last.required_min_rx_us, 100_000);
    assert!(s.snapshot().polling);
    // A faster rate is used at once; every packet repeats the poll until the Final.
    let next = s.poll_timeout().expect("periodic");
    assert!(next - t0 <= ms(100));
    assert!(sends(&s.handle(next, Input::Timer))[0].poll);
    let mut fin = from_remote(State::Up, true);
    fin.final_ = true;
    let _ = s.handle(next, Input::Packet(fin));
    assert!(!s.snapshot().polling);
    let next = s.poll_timeout().expect("periodic");
    assert!(!sends(&s.handle(next, Input::Timer))[0].poll);
}

#[test]
fn a_slower_tx_while_up_waits_for_the_final_before_it_is_used() {
    let t0 = Instant::now();
    let mut s = settled_up_session(t0);
    let out = s.handle(t0, Input::SetProfile(profile(500, 100, 3)));
    let sent = sends(&out);
    assert!(sent[0].poll);
    assert_eq!(sent[0].desired_min_tx_us, 500_000);
    assert_eq!(s.snapshot().tx_interval, Some(ms(100)));
    let mut fin = from_remote(State::Up, true);
    fin.final_ = true;
    let _ = s.handle(t0 + ms(5), Input::Packet(fin));
    assert_eq!(s.snapshot().tx_interval, Some(ms(500)));
    assert_eq!(s.state(), State::Up);
}

#[test]
fn a_shorter_rx_while_up_keeps_the_old_detection_time_until_the_final() {
    let t0 = Instant::now();
    let mut s = settled_up_session(t0);
    let mut slow = from_remote(State::Up, true);
    slow.desired_min_tx_us = 10_000;
    let _ = s.handle(t0, Input::Packet(slow.clone()));
    assert_eq!(s.snapshot().detection_time, ms(300));
    let _ = s.handle(t0, Input::SetProfile(profile(100, 20, 3)));
    assert_eq!(s.snapshot().detection_time, ms(300));
    slow.final_ = true;
    let _ = s.handle(t0, Input::Packet(slow));
    assert_eq!(s.snapshot().detection_time, ms(60));
}

#[test]
fn a_profile_change_while_down_is_advertised_without_a_poll() {
    let t0 = Instant::now();
    let mut s = session(t0);
    let _ = s.handle(t0, Input::Timer);
    let out = s.handle(t0, Input::SetProfile(profile(2000, 2000, 4)));
    assert!(sends(&out).is_empty());
    let next = s.poll_timeout().expect("periodic");
    let sent = sends(&s.handle(next, Input::Timer));
    assert!(!sent[0].poll);
    assert_eq!(sent[0].desired_min_tx_us, 2_000_000);
    assert_eq!(sent[0].detect_mult, 4);
}

#[test]
fn a_second_change_during_a_poll_is_confirmed_by_another_poll() {
    let t0 = Instant::now();
    let mut s = settled_up_session(t0);
    let _ = s.handle(t0, Input::SetProfile(profile(200, 100, 3)));
    let _ = s.handle(t0, Input::SetProfile(profile(300, 100, 3)));
    let mut fin = from_remote(State::Up, true);
    fin.final_ = true;
    let _ = s.handle(t0, Input::Packet(fin.clone()));
    assert!(s.snapshot().polling);
    let _ = s.handle(t0, Input::Packet(fin));
    assert!(!s.snapshot().polling);
    assert_eq!(s.snapshot().tx_interval, Some(ms(300)));
}

#[test]
fn no_periodic_packets_go_to_a_remote_that_asks_for_none_but_polls_are_answered() {
    let t0 = Instant::now();
    let mut s = settled_up_session(t0);
    let mut p = from_remote(State::Up, true);
    p.required_min_rx_us = 0;
    let _ = s.handle(t0, Input::Packet(p.clone()));
    assert_eq!(s.snapshot().tx_interval, None);
    assert_eq!(
        s.poll_timeout(),
        Some(t0 + ms(300)),
        "only the detection timer"
    );
    p.poll = true;
    let sent = sends(&s.handle(t0, Input::Packet(p)));
    assert!(sent[0].final_);
}

#[test]
fn periodic_packets_stop_when_the_remote_runs_demand_mode_and_both_are_up() {
    let t0 = Instant::now();
    let mut s = settled_up_session(t0);
    let mut p = from_remote(State::Up, true);
    p.demand = true;
    let _ = s.handle(t0, Input::Packet(p));
    assert_eq!(s.snapshot().tx_interval, None);
}

#[test]
fn a_passive_session_is_silent_until_it_hears_the_remote_then_answers() {
    let t0 = Instant::now();
    let mut s = session_with(
        Profile {
            passive: true,
            ..profile(100, 100, 3)
        },
        t0,
    );
    assert_eq!(s.poll_timeout(), None);
    assert!(s.handle(t0 + ms(5000), Input::Timer).is_empty());
    let out = s.handle(t0, Input::Packet(from_remote(State::Down, false)));
    let sent = sends(&out);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].state, State::Init);
    // Silent again once the remote is gone (the detection time clears its discriminator).
    let deadline = s.poll_timeout().expect("timers run");
    let mut now = deadline;
    for _ in 0..20 {
        let _ = s.handle(now, Input::Timer);
        match s.poll_timeout() {
            Some(t) => now = t,
            None => break,
        }
    }
    assert_eq!(s.state(), State::Down);
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn transmissions_are_jittered_to_75_to_100_percent_of_the_interval() {
    let t0 = Instant::now();
    let mut s = settled_up_session(t0);
    let mut seen = Vec::new();
    for _ in 0..200 {
        let next = s.poll_timeout().expect("periodic");
        let _ = s.handle(next, Input::Timer);
        // Keep the remote alive so that only transmissions are timed.
        let _ = s.handle(next, Input::Packet(from_remote(State::Up, true)));
        let after = s.poll_timeout().expect("periodic");
        seen.push(after - next);
    }
    assert!(
        seen.iter().all(|d| *d >= ms(75) && *d <= ms(100)),
        "{seen:?}"
    );
    assert!(seen.iter().any(|d| *d < ms(90)), "jitter spreads: {seen:?}");
}

#[test]
fn with_a_multiplier_of_one_transmissions_are_jittered_to_at_most_90_percent() {
    let t0 = Instant::now();
    let mut s = session_with(profile(100, 100, 1), t0);
    let _ = s.handle(t0, Input::Packet(from_remote(State::Init, true)));
    let mut fin = from_remote(State::Up, true);
    fin.final_ = true;
    fin.detect_mult = 1;
    let _ = s.handle(t0, Input::Packet(fin.clone()));
    for _ in 0..200 {
        let next = s.poll_timeout().expect("periodic");
        let _ = s.handle(next, Input::Timer);
        let _ = s.handle(next, Input::Packet(fin.clone()));
        let interval = s.poll_timeout().expect("periodic") - next;
        assert!(interval >= ms(75) && interval <= ms(90), "{interval:?}");
    }
}

mod arbitrary {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn arbitrary_datagrams_never_panic_a_session(
            datagrams in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..20),
            steps in proptest::collection::vec(0u64..2000, 1..20),
        ) {
            let t0 = Instant::now();
            let mut s = session(t0);
            let mut now = t0;
            for (bytes, step) in datagrams.iter().zip(steps.iter().cycle()) {
                now += ms(*step);
                if let Ok(packet) = ControlPacket::decode(bytes) {
                    let _ = s.handle(now, Input::Packet(packet));
                }
                if s.poll_timeout().is_some_and(|next| next <= now) {
                    let _ = s.handle(now, Input::Timer);
                    // Due timers are rescheduled into the future: no busy loop.
                    prop_assert!(s.poll_timeout().is_none_or(|next| next > now));
                }
            }
        }
    }
}

/// Herald's BFD runs in the speaker process, so it shares fate with the control plane: every
/// packet it sends, in every state, has the C bit clear (RFC 5880 §4.1, RFC 5882 §4.3.1).
/// A router that checks it (FRR's `bfd check-control-plane-failure`) may then treat a BFD
/// Down during a graceful restart as the restart rather than a path failure.
#[test]
fn every_packet_says_the_session_is_control_plane_dependent() {
    let t0 = Instant::now();
    let mut s = session(t0);
    let mut all = sends(&s.handle(t0, Input::Timer));
    all.extend(sends(
        &s.handle(t0, Input::Packet(from_remote(State::Down, false))),
    ));
    all.extend(sends(
        &s.handle(t0, Input::Packet(from_remote(State::Up, true))),
    ));
    let mut poll = from_remote(State::Up, true);
    poll.poll = true;
    all.extend(sends(&s.handle(t0, Input::Packet(poll))));
    all.extend(sends(&s.handle(t0 + ms(2000), Input::Timer)));
    all.extend(sends(&s.handle(t0 + ms(2000), Input::AdminDown)));
    let states: std::collections::BTreeSet<_> = all.iter().map(|p| p.state.as_str()).collect();
    assert_eq!(
        states.len(),
        4,
        "Down, Init, Up and AdminDown sent: {states:?}"
    );
    for packet in all {
        assert!(!packet.control_plane_independent, "{packet:?}");
        assert_eq!(packet.encode()[1] & 0x08, 0, "{packet:?}");
    }
}
