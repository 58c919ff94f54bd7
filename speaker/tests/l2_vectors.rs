//! Frame parsing and building checked against real frames captured from the Linux kernel,
//! iputils and ndisc6 (see `tests/vectors/l2/README.md` for how they were made).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use herald_speaker::l2::frames::{
    ALL_NODES_MULTICAST, ArpOperation, ArpPacket, Frame, MacAddr, NdpMessage, NdpPacket,
    NeighborAdvertisement, NeighborSolicitation, build_arp_frame, build_ndp_frame, parse_frame,
    solicited_node_multicast,
};

const MAC_A: MacAddr = MacAddr([0x02, 0x00, 0x5e, 0x10, 0x00, 0x0a]);
const MAC_A_AFTER_CHANGE: MacAddr = MacAddr([0x02, 0x00, 0x5e, 0x10, 0x00, 0x1a]);
const MAC_B: MacAddr = MacAddr([0x02, 0x00, 0x5e, 0x10, 0x00, 0x0b]);
const IP_A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const IP_B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 11);
const IP6_A: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10);
const IP6_B: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x11);
const LINK_LOCAL_B: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0x5eff, 0xfe10, 0x0b);

/// The frames of a classic little- or big-endian pcap file with Ethernet link type.
fn pcap_frames(name: &str) -> Vec<Vec<u8>> {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "vectors", "l2", name]
        .iter()
        .collect();
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    assert!(bytes.len() >= 24, "{name}: no pcap header");
    let magic = [bytes[0], bytes[1], bytes[2], bytes[3]];
    let u32_at = |at: usize| {
        let b = [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
        match magic {
            [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => u32::from_le_bytes(b),
            [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => u32::from_be_bytes(b),
            _ => panic!("{name}: not a pcap file"),
        }
    };
    assert_eq!(u32_at(20), 1, "{name}: link type is not Ethernet");
    let mut frames = Vec::new();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let len = u32_at(at + 8) as usize;
        let start = at + 16;
        frames.push(bytes[start..start + len].to_vec());
        at = start + len;
    }
    assert_eq!(at, bytes.len(), "{name}: trailing bytes");
    frames
}

fn arp(frame: &[u8]) -> ArpPacket {
    match parse_frame(frame) {
        Ok(Frame::Arp { arp, .. }) => arp,
        other => panic!("expected ARP, got {other:?}"),
    }
}

fn ndp(frame: &[u8]) -> NdpPacket {
    match parse_frame(frame) {
        Ok(Frame::Ndp { ndp, .. }) => ndp,
        other => panic!("expected NDP, got {other:?}"),
    }
}

/// Our frames are padded to 60 bytes; the captures (taken on the sending veth) are not.
fn unpadded(frame: Vec<u8>, len: usize) -> Vec<u8> {
    frame[..len].to_vec()
}

#[test]
fn kernel_arp_request_parses_and_our_reply_is_byte_identical_to_the_kernels() {
    let frames = pcap_frames("arp_kernel_request_reply.pcap");
    let request = arp(&frames[0]);
    assert_eq!(
        request,
        ArpPacket {
            operation: ArpOperation::Request,
            sender_mac: MAC_B,
            sender_ip: IP_B,
            target_mac: MacAddr::ZERO,
            target_ip: IP_A,
        }
    );
    let ours = build_arp_frame(
        MAC_A,
        request.sender_mac,
        &ArpPacket::reply_to(&request, MAC_A),
    );
    assert_eq!(unpadded(ours, frames[1].len()), frames[1]);
}

#[test]
fn arping_gratuitous_request_is_recognised_as_an_announcement() {
    let frames = pcap_frames("arp_gratuitous_request.pcap");
    let announcement = arp(&frames[0]);
    assert!(announcement.is_gratuitous());
    assert!(!announcement.is_probe());
    assert_eq!(announcement.operation, ArpOperation::Request);
    assert_eq!(
        (announcement.sender_mac, announcement.sender_ip),
        (MAC_A, IP_A)
    );
    // arping puts ff:ff:ff:ff:ff:ff in the target hardware field; RFC 5227 §2.3 says zeros, which
    // we send. Everything else is the same.
    let ours = ArpPacket::gratuitous_request(MAC_A, IP_A);
    assert_eq!(
        ArpPacket {
            target_mac: announcement.target_mac,
            ..ours
        },
        announcement
    );
}

#[test]
fn our_gratuitous_reply_is_byte_identical_to_arping_dash_a() {
    let frames = pcap_frames("arp_gratuitous_reply.pcap");
    assert!(arp(&frames[0]).is_gratuitous());
    let ours = build_arp_frame(
        MAC_A,
        MacAddr::BROADCAST,
        &ArpPacket::gratuitous_reply(MAC_A, IP_A),
    );
    assert_eq!(unpadded(ours, frames[0].len()), frames[0]);
    for frame in &frames[1..] {
        assert!(
            !arp(frame).is_gratuitous(),
            "ordinary resolution is not an announcement"
        );
    }
}

#[test]
fn arping_probe_is_a_probe_and_our_defence_is_byte_identical_to_the_kernels() {
    let frames = pcap_frames("arp_probe_answered.pcap");
    let probe = arp(&frames[0]);
    assert!(probe.is_probe());
    assert!(!probe.is_gratuitous());
    assert_eq!((probe.sender_mac, probe.target_ip), (MAC_B, IP_A));
    let ours = build_arp_frame(MAC_A, probe.sender_mac, &ArpPacket::reply_to(&probe, MAC_A));
    assert_eq!(unpadded(ours, frames[1].len()), frames[1]);
}

#[test]
fn kernel_dad_probe_parses_with_its_nonce_option_skipped() {
    let frames = pcap_frames("ndp_dad_probe.pcap");
    let probe = ndp(&frames[0]);
    assert_eq!(probe.source, Ipv6Addr::UNSPECIFIED);
    assert_eq!(probe.destination, solicited_node_multicast(IP6_A));
    assert_eq!(
        probe.message,
        NdpMessage::Solicitation(NeighborSolicitation {
            target: IP6_A,
            source_link_address: None
        })
    );
    assert_eq!(probe, NdpPacket::duplicate_address_probe(IP6_A));
    // Ours is the same frame without the RFC 7527 nonce (8 bytes shorter).
    let ours = build_ndp_frame(MAC_A, MacAddr::ZERO, &probe);
    assert_eq!(ours.len() + 8, frames[0].len());
    assert_eq!(ours[..4], frames[0][..4], "same 33:33:ff destination");
    for frame in &frames[1..] {
        assert!(
            matches!(parse_frame(frame), Ok(Frame::Other { .. })),
            "router solicitation is not NS/NA"
        );
    }
}

#[test]
fn kernel_address_resolution_parses_and_our_solicited_advertisement_is_byte_identical() {
    let frames = pcap_frames("ndp_resolution.pcap");
    let solicitation = ndp(&frames[0]);
    assert_eq!(
        (solicitation.source, solicitation.destination),
        (IP6_B, solicited_node_multicast(IP6_A))
    );
    assert_eq!(
        solicitation.message,
        NdpMessage::Solicitation(NeighborSolicitation {
            target: IP6_A,
            source_link_address: Some(MAC_B)
        })
    );
    assert_eq!(
        build_ndp_frame(MAC_B, MacAddr::ZERO, &solicitation),
        frames[0],
        "NS re-encodes exactly"
    );

    let ours = NdpPacket::solicited_advertisement(MAC_A, IP6_A, solicitation.source);
    assert_eq!(ndp(&frames[1]), ours);
    assert_eq!(build_ndp_frame(MAC_A, MAC_B, &ours), frames[1]);
    for frame in &frames[2..] {
        assert!(
            matches!(parse_frame(frame), Ok(Frame::Other { .. })),
            "echo is not NS/NA"
        );
    }
}

#[test]
fn kernel_unicast_nud_probe_and_its_optionless_answer_parse() {
    let frames = pcap_frames("ndp_unicast_nud_probe.pcap");
    let probes: Vec<NdpPacket> = frames
        .iter()
        .filter_map(|f| match parse_frame(f) {
            Ok(Frame::Ndp { ndp, .. }) => Some(ndp),
            Ok(_) => None,
            Err(e) => panic!("captured frame rejected: {e}"),
        })
        .collect();
    let unicast_probe = probes
        .iter()
        .find(|p| p.destination == IP6_A)
        .unwrap_or_else(|| panic!("no unicast NS in {probes:?}"));
    assert_eq!(unicast_probe.source, LINK_LOCAL_B);
    assert!(matches!(unicast_probe.message, NdpMessage::Solicitation(ns) if ns.target == IP6_A));
    let answer = probes
        .iter()
        .find(|p| p.destination == LINK_LOCAL_B)
        .unwrap_or_else(|| panic!("no answer in {probes:?}"));
    assert_eq!(
        answer.message,
        NdpMessage::Advertisement(NeighborAdvertisement {
            router: false,
            solicited: true,
            override_entry: false,
            target: IP6_A,
            target_link_address: None,
        })
    );
}

#[test]
fn our_unsolicited_advertisement_is_byte_identical_to_the_kernels() {
    let frames = pcap_frames("ndp_unsolicited_advertisement.pcap");
    let global = frames
        .iter()
        .find(|f| matches!(parse_frame(f), Ok(Frame::Ndp { ndp, .. }) if ndp.source == IP6_A))
        .unwrap_or_else(|| panic!("no unsolicited NA for {IP6_A}"));
    let ours = NdpPacket::unsolicited_advertisement(MAC_A_AFTER_CHANGE, IP6_A);
    assert_eq!(ndp(global), ours);
    assert_eq!(ndp(global).destination, ALL_NODES_MULTICAST);
    assert_eq!(
        &build_ndp_frame(MAC_A_AFTER_CHANGE, MacAddr::ZERO, &ours),
        global
    );
}

#[test]
fn every_captured_frame_parses_without_error() {
    let names = [
        "arp_kernel_request_reply.pcap",
        "arp_gratuitous_request.pcap",
        "arp_gratuitous_reply.pcap",
        "arp_probe_answered.pcap",
        "ndp_dad_probe.pcap",
        "ndp_resolution.pcap",
        "ndp_unicast_nud_probe.pcap",
        "ndp_unsolicited_advertisement.pcap",
        "ndp_ndisc6_solicitation.pcap",
    ];
    let mut total = 0;
    for name in names {
        for (i, frame) in pcap_frames(name).iter().enumerate() {
            let parsed = parse_frame(frame);
            assert!(parsed.is_ok(), "{name} frame {i}: {parsed:?}");
            // Every bit of an ARP or NDP frame matters: a truncated copy must not parse as the
            // same message.
            if matches!(parsed, Ok(Frame::Arp { .. } | Frame::Ndp { .. })) {
                assert_ne!(
                    parse_frame(&frame[..frame.len() - 1]),
                    parsed,
                    "{name} frame {i} truncated"
                );
            }
            total += 1;
        }
    }
    assert!(total >= 20, "only {total} frames captured");
}
