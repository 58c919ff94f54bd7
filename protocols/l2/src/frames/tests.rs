//! Tests of [`super`] (frames.rs).

use super::*;
use proptest::prelude::*;

const OUR_MAC: MacAddr = MacAddr([0x02, 0x00, 0x5e, 0x10, 0x00, 0x0a]);
const THEIR_MAC: MacAddr = MacAddr([0x02, 0x00, 0x5e, 0x10, 0x00, 0x0b]);
const VIP4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 200);
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x200);

fn ndp_of(frame: &[u8]) -> NdpPacket {
    match parse_frame(frame) {
        Ok(Frame::Ndp { ndp, .. }) => ndp,
        other => panic!("expected NDP, got {other:?}"),
    }
}

#[test]
fn mac_addresses_print_and_parse_as_colon_separated_hex() {
    assert_eq!(OUR_MAC.to_string(), "02:00:5e:10:00:0a");
    assert_eq!("02:00:5E:10:00:0A".parse::<MacAddr>(), Ok(OUR_MAC));
    for bad in [
        "",
        "02:00:5e:10:00",
        "02:00:5e:10:00:0a:01",
        "02::5e:10:00:0a",
        "zz:00:5e:10:00:0a",
    ] {
        assert!(bad.parse::<MacAddr>().is_err(), "{bad:?} parsed");
    }
}

#[test]
fn solicited_node_group_keeps_the_low_24_bits_and_maps_to_33_33_ff() {
    let address: Ipv6Addr = "2001:db8:1::12:3456"
        .parse()
        .unwrap_or(Ipv6Addr::UNSPECIFIED);
    let group = solicited_node_multicast(address);
    assert_eq!(
        group,
        "ff02::1:ff12:3456"
            .parse::<Ipv6Addr>()
            .unwrap_or(Ipv6Addr::UNSPECIFIED)
    );
    assert!(is_solicited_node_multicast(group));
    assert!(!is_solicited_node_multicast(ALL_NODES_MULTICAST));
    assert_eq!(
        MacAddr::for_ipv6_multicast(group).to_string(),
        "33:33:ff:12:34:56"
    );
}

#[test]
fn gratuitous_arp_request_has_our_address_as_sender_and_target_and_goes_to_broadcast() {
    let frame = build_arp_frame(
        OUR_MAC,
        MacAddr::BROADCAST,
        &ArpPacket::gratuitous_request(OUR_MAC, VIP4),
    );
    assert_eq!(frame.len(), ETHERNET_MIN_FRAME_LEN);
    assert_eq!(&frame[0..6], &[0xff; 6]);
    assert_eq!(&frame[12..14], &[0x08, 0x06]);
    // htype 1, ptype 0x0800, hlen 6, plen 4, op 1 (request).
    assert_eq!(&frame[14..22], &[0, 1, 8, 0, 6, 4, 0, 1]);
    assert_eq!(&frame[28..32], &VIP4.octets());
    assert_eq!(&frame[38..42], &VIP4.octets());
    assert!(frame[42..].iter().all(|&b| b == 0), "padding is zeros");
    let Ok(Frame::Arp { arp, .. }) = parse_frame(&frame) else {
        panic!("not ARP")
    };
    assert!(arp.is_gratuitous());
    assert!(!arp.is_probe());
}

#[test]
fn arp_reply_to_a_probe_goes_back_to_the_prober_with_target_ip_zero() {
    let probe = ArpPacket::probe(THEIR_MAC, VIP4);
    assert!(probe.is_probe());
    assert!(!probe.is_gratuitous());
    let reply = ArpPacket::reply_to(&probe, OUR_MAC);
    assert_eq!(reply.operation, ArpOperation::Reply);
    assert_eq!((reply.sender_mac, reply.sender_ip), (OUR_MAC, VIP4));
    assert_eq!(
        (reply.target_mac, reply.target_ip),
        (THEIR_MAC, Ipv4Addr::UNSPECIFIED)
    );
}

#[test]
fn arp_for_other_hardware_or_unknown_operations_is_rejected() {
    let mut packet = ArpPacket::gratuitous_reply(OUR_MAC, VIP4).encode();
    packet[1] = 6; // IEEE 802 hardware type
    assert!(matches!(
        ArpPacket::decode(&packet),
        Err(FrameError::UnsupportedArp {
            hardware_type: 6,
            ..
        })
    ));
    let mut packet = ArpPacket::gratuitous_reply(OUR_MAC, VIP4).encode();
    packet[7] = 3; // RARP request
    assert_eq!(
        ArpPacket::decode(&packet),
        Err(FrameError::UnknownArpOperation(3))
    );
    assert!(matches!(
        ArpPacket::decode(&packet[..27]),
        Err(FrameError::Truncated {
            needed: 28,
            available: 27,
            ..
        })
    ));
}

#[test]
fn unsolicited_advertisement_sets_override_only_and_goes_to_all_nodes() {
    let frame = build_ndp_frame(
        OUR_MAC,
        MacAddr::ZERO,
        &NdpPacket::unsolicited_advertisement(OUR_MAC, VIP6),
    );
    assert_eq!(&frame[0..6], &[0x33, 0x33, 0, 0, 0, 1]);
    assert_eq!(frame[14 + 7], 255, "hop limit");
    assert_eq!(frame.len(), 14 + 40 + 32);
    let ndp = ndp_of(&frame);
    assert_eq!(ndp.destination, ALL_NODES_MULTICAST);
    assert_eq!(
        ndp.message,
        NdpMessage::Advertisement(NeighborAdvertisement {
            router: false,
            solicited: false,
            override_entry: true,
            target: VIP6,
            target_link_address: Some(OUR_MAC),
        })
    );
}

#[test]
fn solicited_advertisement_is_unicast_with_s_and_o_except_in_answer_to_dad() {
    let solicitor: Ipv6Addr = "2001:db8:1::11".parse().unwrap_or(Ipv6Addr::UNSPECIFIED);
    let unicast = NdpPacket::solicited_advertisement(OUR_MAC, VIP6, solicitor);
    let ndp = ndp_of(&build_ndp_frame(OUR_MAC, THEIR_MAC, &unicast));
    assert_eq!(ndp.destination, solicitor);
    let NdpMessage::Advertisement(na) = ndp.message else {
        panic!("not NA")
    };
    assert!(na.solicited && na.override_entry && !na.router);

    let to_dad = NdpPacket::solicited_advertisement(OUR_MAC, VIP6, Ipv6Addr::UNSPECIFIED);
    let frame = build_ndp_frame(OUR_MAC, THEIR_MAC, &to_dad);
    assert_eq!(
        &frame[0..6],
        &[0x33, 0x33, 0, 0, 0, 1],
        "DAD answers go to all nodes"
    );
    let NdpMessage::Advertisement(na) = ndp_of(&frame).message else {
        panic!("not NA")
    };
    assert!(!na.solicited && na.override_entry);
}

#[test]
fn dad_probe_comes_from_the_unspecified_address_to_the_solicited_node_group() {
    let frame = build_ndp_frame(
        OUR_MAC,
        MacAddr::ZERO,
        &NdpPacket::duplicate_address_probe(VIP6),
    );
    assert_eq!(&frame[0..6], &[0x33, 0x33, 0xff, 0, 0x02, 0]);
    let ndp = ndp_of(&frame);
    assert!(ndp.source.is_unspecified());
    assert_eq!(
        ndp.message,
        NdpMessage::Solicitation(NeighborSolicitation {
            target: VIP6,
            source_link_address: None
        })
    );
}

#[test]
fn icmpv6_checksum_matches_the_one_the_kernel_computed() {
    // NS from 2001:db8:1::11 for 2001:db8:1::10 with SLLA 02:00:5e:10:00:0b, to
    // ff02::1:ff00:10 — bytes and checksum 0xbdde as the kernel wrote them in ndp_resolution.pcap.
    let ns = NdpPacket {
        source: "2001:db8:1::11".parse().unwrap_or(Ipv6Addr::UNSPECIFIED),
        destination: "ff02::1:ff00:10".parse().unwrap_or(Ipv6Addr::UNSPECIFIED),
        hop_limit: 255,
        message: NdpMessage::Solicitation(NeighborSolicitation {
            target: "2001:db8:1::10".parse().unwrap_or(Ipv6Addr::UNSPECIFIED),
            source_link_address: Some(THEIR_MAC),
        }),
    };
    let icmp = ns.encode_icmpv6();
    assert_eq!(icmp.len(), 32);
    assert_eq!(
        icmpv6_checksum(ns.source, ns.destination, &icmp),
        0,
        "verifies to zero"
    );
    assert_eq!(u16::from_be_bytes([icmp[2], icmp[3]]), 0xbdde);
}

fn corrupt(frame: &mut [u8], at: usize, value: u8) {
    frame[at] = value;
}

#[test]
fn ndp_with_a_hop_limit_below_255_is_rejected_as_possibly_routed() {
    let mut frame = build_ndp_frame(
        OUR_MAC,
        THEIR_MAC,
        &NdpPacket::unsolicited_advertisement(OUR_MAC, VIP6),
    );
    corrupt(&mut frame, 14 + 7, 254);
    assert_eq!(parse_frame(&frame), Err(FrameError::NdpHopLimitNot255(254)));
}

#[test]
fn ndp_with_a_wrong_checksum_is_rejected() {
    let mut frame = build_ndp_frame(
        OUR_MAC,
        THEIR_MAC,
        &NdpPacket::unsolicited_advertisement(OUR_MAC, VIP6),
    );
    let good = u16::from_be_bytes([frame[56], frame[57]]);
    let flipped = frame[57] ^ 0x01;
    corrupt(&mut frame, 57, flipped);
    assert!(
        matches!(parse_frame(&frame), Err(FrameError::Icmpv6ChecksumMismatch { computed, .. }) if computed == good)
    );
}

/// Builds an NDP frame, lets `edit` change the ICMPv6 bytes, then fixes the checksum.
fn edited_ndp_frame(ndp: &NdpPacket, edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut icmp = ndp.encode_icmpv6();
    edit(&mut icmp);
    icmp[2] = 0;
    icmp[3] = 0;
    let checksum = icmpv6_checksum(ndp.source, ndp.destination, &icmp);
    icmp[2..4].copy_from_slice(&checksum.to_be_bytes());
    let mut frame = build_ndp_frame(OUR_MAC, THEIR_MAC, ndp);
    frame.truncate(14 + 40);
    let len = u16::try_from(icmp.len()).unwrap_or(0).to_be_bytes();
    frame[18..20].copy_from_slice(&len);
    frame.extend_from_slice(&icmp);
    frame
}

#[test]
fn ndp_option_rules_of_rfc_4861_are_enforced() {
    let na = NdpPacket::unsolicited_advertisement(OUR_MAC, VIP6);
    let zero_len = edited_ndp_frame(&na, |icmp| icmp[25] = 0);
    assert_eq!(parse_frame(&zero_len), Err(FrameError::NdpZeroLengthOption));
    let overrun = edited_ndp_frame(&na, |icmp| icmp[25] = 2);
    assert_eq!(parse_frame(&overrun), Err(FrameError::NdpOptionOverrun));
    let long_lla = edited_ndp_frame(&na, |icmp| {
        icmp[25] = 2;
        icmp.extend_from_slice(&[0; 8]);
    });
    assert_eq!(
        parse_frame(&long_lla),
        Err(FrameError::NdpBadLinkAddressOptionLength(16))
    );
    let unknown_skipped = edited_ndp_frame(&na, |icmp| {
        icmp.extend_from_slice(&[14, 1, 1, 2, 3, 4, 5, 6])
    });
    assert_eq!(ndp_of(&unknown_skipped), na);
    let nonzero_code = edited_ndp_frame(&na, |icmp| icmp[1] = 1);
    assert_eq!(
        parse_frame(&nonzero_code),
        Err(FrameError::NdpNonZeroCode(1))
    );
    let solicited_to_multicast = edited_ndp_frame(&na, |icmp| icmp[4] |= 0x40);
    assert_eq!(
        parse_frame(&solicited_to_multicast),
        Err(FrameError::NdpSolicitedAdvertisementToMulticast(
            ALL_NODES_MULTICAST
        ))
    );
    let multicast_target = edited_ndp_frame(&na, |icmp| icmp[8] = 0xff);
    assert!(matches!(
        parse_frame(&multicast_target),
        Err(FrameError::NdpMulticastTarget(_))
    ));
}

#[test]
fn dad_probe_with_a_source_link_address_is_rejected() {
    let dad = NdpPacket::duplicate_address_probe(VIP6);
    let frame = edited_ndp_frame(&dad, |icmp| {
        icmp.extend_from_slice(&[1, 1, 2, 0, 0x5e, 0, 0, 1])
    });
    assert_eq!(
        parse_frame(&frame),
        Err(FrameError::NdpUnspecifiedSourceWithLinkAddress)
    );
    let to_all_nodes = NdpPacket {
        destination: ALL_NODES_MULTICAST,
        ..dad
    };
    assert_eq!(
        parse_frame(&build_ndp_frame(OUR_MAC, THEIR_MAC, &to_all_nodes)),
        Err(FrameError::NdpUnspecifiedSourceNotToSolicitedNode(
            ALL_NODES_MULTICAST
        ))
    );
}

#[test]
fn ipv6_payload_longer_than_the_frame_is_rejected_and_padding_is_ignored() {
    let mut frame = build_ndp_frame(
        OUR_MAC,
        THEIR_MAC,
        &NdpPacket::unsolicited_advertisement(OUR_MAC, VIP6),
    );
    frame.extend_from_slice(&[0; 10]);
    assert!(
        matches!(parse_frame(&frame), Ok(Frame::Ndp { .. })),
        "trailing padding is fine"
    );
    frame.truncate(14 + 40 + 31);
    assert_eq!(
        parse_frame(&frame),
        Err(FrameError::Ipv6PayloadBeyondFrame {
            declared: 32,
            available: 31
        })
    );
}

#[test]
fn other_traffic_is_reported_as_other_not_as_an_error() {
    let mut ipv4 = build_arp_frame(OUR_MAC, THEIR_MAC, &ArpPacket::probe(OUR_MAC, VIP4));
    ipv4[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    assert!(matches!(parse_frame(&ipv4), Ok(Frame::Other { .. })));
    let mut udp6 = build_ndp_frame(
        OUR_MAC,
        THEIR_MAC,
        &NdpPacket::unsolicited_advertisement(OUR_MAC, VIP6),
    );
    udp6[14 + 6] = 17;
    assert!(matches!(parse_frame(&udp6), Ok(Frame::Other { .. })));
    let mut echo = build_ndp_frame(
        OUR_MAC,
        THEIR_MAC,
        &NdpPacket::unsolicited_advertisement(OUR_MAC, VIP6),
    );
    echo[14 + 40] = 128;
    assert!(
        matches!(parse_frame(&echo), Ok(Frame::Other { .. })),
        "echo request is not NDP"
    );
}

proptest! {
    #[test]
    fn parsing_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse_frame(&bytes);
    }

    #[test]
    fn parsing_arbitrary_arp_and_ipv6_payloads_never_panics(
        ipv6 in any::<bool>(),
        body in proptest::collection::vec(any::<u8>(), 0..120),
    ) {
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&(if ipv6 { ETHERTYPE_IPV6 } else { ETHERTYPE_ARP }).to_be_bytes());
        frame.extend_from_slice(&body);
        let _ = parse_frame(&frame);
    }

    #[test]
    fn every_built_arp_packet_parses_back_to_itself(
        request in any::<bool>(),
        sender_mac in any::<[u8; 6]>(),
        sender_ip in any::<u32>(),
        target_mac in any::<[u8; 6]>(),
        target_ip in any::<u32>(),
    ) {
        let arp = ArpPacket {
            operation: if request { ArpOperation::Request } else { ArpOperation::Reply },
            sender_mac: MacAddr(sender_mac),
            sender_ip: Ipv4Addr::from(sender_ip),
            target_mac: MacAddr(target_mac),
            target_ip: Ipv4Addr::from(target_ip),
        };
        let frame = build_arp_frame(MacAddr(sender_mac), MacAddr::BROADCAST, &arp);
        prop_assert_eq!(parse_frame(&frame), Ok(Frame::Arp {
            ethernet: EthernetHeader { destination: MacAddr::BROADCAST, source: MacAddr(sender_mac), ethertype: ETHERTYPE_ARP },
            arp,
        }));
    }

    #[test]
    fn every_valid_ndp_packet_parses_back_to_itself(
        address in any::<u128>(),
        mac in any::<[u8; 6]>(),
        solicitor in any::<u128>(),
    ) {
        let address = Ipv6Addr::from(address);
        prop_assume!(!address.is_multicast());
        let solicitor = Ipv6Addr::from(solicitor);
        prop_assume!(!solicitor.is_multicast());
        for ndp in [
            NdpPacket::unsolicited_advertisement(MacAddr(mac), address),
            NdpPacket::solicited_advertisement(MacAddr(mac), address, solicitor),
            NdpPacket::duplicate_address_probe(address),
        ] {
            prop_assert_eq!(ndp_of(&build_ndp_frame(MacAddr(mac), THEIR_MAC, &ndp)), ndp);
        }
    }

    #[test]
    fn flipping_any_byte_of_an_ndp_message_is_detected_or_harmless(at in 54usize..86, flip in 1u8..=255) {
        let frame = build_ndp_frame(OUR_MAC, THEIR_MAC, &NdpPacket::unsolicited_advertisement(OUR_MAC, VIP6));
        let mut bad = frame.clone();
        bad[at] ^= flip;
        // The checksum covers every ICMPv6 byte: a single changed byte never parses as the
        // original message.
        let still_original = matches!(parse_frame(&bad), Ok(Frame::Ndp { ndp, .. }) if ndp == ndp_of(&frame));
        prop_assert!(!still_original);
    }
}
