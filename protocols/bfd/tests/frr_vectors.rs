//! BFD control packets that FRR's bfdd sent, cross-checked with Herald's codec and session.
//!
//! How they were obtained: `bfd/tests/frr_capture.sh` (run as root under the lab lock) starts
//! two FRR 8.4.4 (Debian 12) bfdd instances in two namespaces joined by a veth,
//! 192.0.2.201/202 and 2001:db8:1::201/202, profile 300 ms × 3, and captures UDP 3784 with
//! tcpdump. Instance b starts alone (its slow Down packets), then a joins (Init, Up and the
//! poll/final sequence that moves both from the 1 s slow rate to 300 ms), then a changes its
//! intervals to 200 ms (a poll) and is shut down (AdminDown; b answers Down, diag 3). The UDP
//! payloads below are copied from that capture; every packet left with IP TTL / hop limit 255
//! from source port 49152.

mod support;

use std::time::Instant;

use herald_bfd::{ControlPacket, Diagnostic, Input, Profile, State};
use support::sends;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("test vector is hex"))
        .collect()
}

/// b alone: Down, your discriminator 0, 1 s slow rate, 300 ms required rx, 50 ms echo.
const FRR_DOWN: &str = "2040031832fd171a00000000000f4240000f42400000c350";
/// a answers b's Down: Init.
const FRR_INIT: &str = "20800318f13c249f32fd171a000f4240000f42400000c350";
/// b goes Up and starts a poll sequence to its 300 ms rate.
const FRR_UP_POLL: &str = "20e0031832fd171af13c249f000493e0000493e00000c350";
/// a's Final to that poll.
const FRR_UP_FINAL: &str = "20d00318f13c249f32fd171a000493e0000493e00000c350";
/// Periodic Up packet at 300 ms.
const FRR_UP: &str = "20c0031832fd171af13c249f000493e0000493e00000c350";
/// a's poll after its profile changed to 200 ms.
const FRR_PROFILE_POLL: &str = "20e00318f13c249f32fd171a00030d4000030d400000c350";
/// a shut down by the operator: AdminDown (FRR leaves the diagnostic at 0).
const FRR_ADMIN_DOWN: &str = "20000318f13c249f32fd171a00030d4000030d400000c350";
/// b's answer: Down, diag 3 (neighbor signaled session down), your discriminator cleared.
const FRR_NEIGHBOR_DOWN: &str = "2340031832fd171a00000000000493e0000493e00000c350";

#[test]
fn frr_down_packet_decodes_to_its_fields_and_reencodes_to_the_same_bytes() {
    let bytes = hex(FRR_DOWN);
    let packet = ControlPacket::decode(&bytes).expect("FRR's packet is valid");
    assert_eq!(packet.state, State::Down);
    assert_eq!(packet.diag, Diagnostic::None);
    assert_eq!(packet.detect_mult, 3);
    assert_eq!(packet.my_discriminator, 0x32fd_171a);
    assert_eq!(packet.your_discriminator, 0);
    assert_eq!(packet.desired_min_tx_us, 1_000_000);
    assert_eq!(packet.required_min_rx_us, 1_000_000);
    assert_eq!(packet.required_min_echo_rx_us, 50_000);
    assert!(!packet.poll && !packet.final_ && !packet.demand && !packet.authentication_present);
    assert_eq!(packet.encode().to_vec(), bytes);
}

#[test]
fn every_captured_frr_packet_roundtrips_byte_for_byte() {
    for vector in [
        FRR_DOWN,
        FRR_INIT,
        FRR_UP_POLL,
        FRR_UP_FINAL,
        FRR_UP,
        FRR_PROFILE_POLL,
        FRR_ADMIN_DOWN,
        FRR_NEIGHBOR_DOWN,
    ] {
        let bytes = hex(vector);
        let packet = ControlPacket::decode(&bytes).expect(vector);
        assert_eq!(packet.encode().to_vec(), bytes, "{vector}");
    }
}

#[test]
fn frr_poll_final_and_neighbor_down_flags_decode_as_sent() {
    let poll = ControlPacket::decode(&hex(FRR_UP_POLL)).expect("valid");
    assert_eq!(
        (poll.state, poll.poll, poll.final_),
        (State::Up, true, false)
    );
    assert_eq!(poll.desired_min_tx_us, 300_000);
    let fin = ControlPacket::decode(&hex(FRR_UP_FINAL)).expect("valid");
    assert_eq!((fin.state, fin.poll, fin.final_), (State::Up, false, true));
    let down = ControlPacket::decode(&hex(FRR_NEIGHBOR_DOWN)).expect("valid");
    assert_eq!(down.diag, Diagnostic::NeighborSignaledSessionDown);
    assert_eq!(down.your_discriminator, 0);
    let admin = ControlPacket::decode(&hex(FRR_ADMIN_DOWN)).expect("valid");
    assert_eq!(admin.state, State::AdminDown);
}

fn profile_300() -> Profile {
    support::profile(300, 300, 3, false)
}

/// Herald plays FRR's a (discriminator 0xf13c249f) against b's captured packets and must send
/// what a sent, apart from the echo interval (Herald advertises none).
#[test]
fn herald_answers_frr_packets_with_the_packets_frr_sent() {
    let t0 = Instant::now();
    let mut herald = support::session(0xf13c_249f, profile_300(), 7, t0);
    let _ = herald.handle(t0, Input::Timer);
    let without_echo = |v: &str| {
        let mut p = ControlPacket::decode(&hex(v)).expect("valid");
        p.required_min_echo_rx_us = 0;
        p
    };

    // b's Down -> Herald goes Init and says so with a's Init packet.
    let out = herald.handle(t0, Input::Packet(without_echo(FRR_DOWN)));
    assert_eq!(herald.state(), State::Init);
    assert_eq!(sends(&out), vec![without_echo(FRR_INIT)]);

    // b's Up with a poll -> Herald goes Up; it answers the poll with a's Final and polls for its
    // own faster rate.
    let out = herald.handle(t0, Input::Packet(without_echo(FRR_UP_POLL)));
    assert_eq!(herald.state(), State::Up);
    let sent = sends(&out);
    assert!(sent.contains(&without_echo(FRR_UP_FINAL)), "{sent:?}");
    assert!(
        sent.iter()
            .any(|p| p.poll && p.desired_min_tx_us == 300_000)
    );

    // b's Final ends Herald's poll; the next periodic packet is a's plain Up packet.
    let out = herald.handle(t0, Input::Packet(without_echo(FRR_UP_FINAL_FROM_B)));
    assert!(sends(&out).is_empty());
    assert!(!herald.snapshot().polling);
    let next = herald.poll_timeout().expect("Up transmits periodically");
    let out = herald.handle(next, Input::Timer);
    let mut expected_up = without_echo(FRR_UP);
    expected_up.my_discriminator = 0xf13c_249f;
    expected_up.your_discriminator = 0x32fd_171a;
    assert_eq!(sends(&out), vec![expected_up]);
}

/// b's Final (the mirror of [`FRR_UP_FINAL`], also in the capture).
const FRR_UP_FINAL_FROM_B: &str = "20d0031832fd171af13c249f000493e0000493e00000c350";

#[test]
fn frr_admin_down_takes_an_up_herald_session_down_with_diag_3_like_frr_itself() {
    let t0 = Instant::now();
    let mut herald = support::session(0x32fd_171a, profile_300(), 7, t0);
    let mut up = ControlPacket::decode(&hex(FRR_UP_FINAL)).expect("valid");
    up.final_ = false;
    let mut init = up.clone();
    init.state = State::Init;
    let _ = herald.handle(t0, Input::Packet(init));
    assert_eq!(herald.state(), State::Up);
    let out = herald.handle(
        t0,
        Input::Packet(ControlPacket::decode(&hex(FRR_ADMIN_DOWN)).expect("valid")),
    );
    assert_eq!(herald.state(), State::Down);
    let sent = sends(&out);
    // FRR's own answer, byte for byte, but for the echo interval Herald does not advertise:
    // Down, diag 3, your discriminator cleared. FRR's first Down packet still carried its Up
    // rate; its next one, like Herald's first, the 1 s slow rate (RFC 5880 §6.8.3).
    let mut frr_answer = ControlPacket::decode(&hex(FRR_NEIGHBOR_DOWN_SLOW)).expect("valid");
    frr_answer.required_min_echo_rx_us = 0;
    assert_eq!(sent.first(), Some(&frr_answer));
}

/// b's next packet after [`FRR_NEIGHBOR_DOWN`], at the slow rate.
const FRR_NEIGHBOR_DOWN_SLOW: &str = "2340031832fd171a00000000000f4240000f42400000c350";
