//! Codec tests: header guards (zettabgp defect regressions), encoders checked byte by byte and
//! against zettabgp's decoder, the packer's size and grouping, the framer, and property tests.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use proptest::prelude::*;
use zettabgp::prelude::{
    BgpASitem, BgpAddrs, BgpMessage, BgpSessionParams, BgpTransportMode, BgpUpdateMessage,
};

use super::*;

fn header(len: u16, message_type: u8) -> Vec<u8> {
    let mut out = vec![0xff; 16];
    out.extend_from_slice(&len.to_be_bytes());
    out.push(message_type);
    out
}

fn ebgp_ctx() -> UpdateContext {
    UpdateContext {
        local_as: 64512,
        ebgp: true,
        four_octet_as: true,
        next_hop_v4: Some(Ipv4Addr::new(192, 0, 2, 11)),
        next_hop_v6: Some("2001:db8:1::11".parse().unwrap()),
    }
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn only_update(bytes: &[u8]) -> UpdateMessage {
    match decode(bytes) {
        Ok(Message::Update(update)) => update,
        other => panic!("expected an UPDATE, got {other:?}"),
    }
}

/// zettabgp's own UPDATE decoder, for cross-checking bytes we produced (never fed hostile input).
fn zettabgp_update(bytes: &[u8], four_octet: bool) -> BgpUpdateMessage {
    let mut params = BgpSessionParams::new(
        64512,
        90,
        BgpTransportMode::IPv4,
        Ipv4Addr::new(192, 0, 2, 11),
        Vec::new(),
    );
    params.fuzzy_pathid = false;
    params.has_as32bit = four_octet;
    let mut update = BgpUpdateMessage::new();
    update
        .decode_from(&params, &bytes[HEADER_LEN..])
        .expect("zettabgp decodes our UPDATE");
    update
}

// --- header guards -------------------------------------------------------------------------

#[test]
fn a_header_with_length_18_is_an_error_not_a_panic() {
    let bytes = header(18, 4);
    assert_eq!(decode(&bytes), Err(DecodeError::BadMessageLength(18)));
    let mut framer = Framer::new();
    framer.push(&bytes).unwrap();
    assert_eq!(
        framer.next_message(),
        Some(Err(DecodeError::BadMessageLength(18)))
    );
}

#[test]
fn every_header_length_below_19_is_rejected_with_bad_message_length() {
    for len in 0..19u16 {
        let mut bytes = header(len, 4);
        bytes.resize(19, 0);
        assert_eq!(decode(&bytes), Err(DecodeError::BadMessageLength(len)));
    }
}

#[test]
fn a_length_above_4096_is_rejected() {
    let mut bytes = header(4097, 2);
    bytes.resize(4097, 0);
    assert_eq!(decode(&bytes), Err(DecodeError::BadMessageLength(4097)));
}

#[test]
fn a_marker_that_is_not_all_ones_means_the_connection_is_not_synchronized() {
    let mut bytes = encode_keepalive();
    bytes[3] = 0;
    let error = decode(&bytes).unwrap_err();
    assert_eq!(error, DecodeError::ConnectionNotSynchronized);
    let n = error.notification().unwrap();
    assert_eq!((n.code, n.subcode), (1, 1));
}

#[test]
fn message_types_zero_and_six_are_bad_message_types_with_the_type_as_data() {
    for t in [0u8, 6, 255] {
        let error = decode(&header(19, t)).unwrap_err();
        assert_eq!(error, DecodeError::BadMessageType(t));
        let n = error.notification().unwrap();
        assert_eq!((n.code, n.subcode, n.data), (1, 3, vec![t]));
    }
}

#[test]
fn a_keepalive_longer_than_19_bytes_is_a_bad_message_length_carrying_the_length() {
    let mut bytes = header(20, 4);
    bytes.push(0);
    let error = decode(&bytes).unwrap_err();
    assert_eq!(error, DecodeError::BadMessageLength(20));
    assert_eq!(error.notification().unwrap().data, vec![0, 20]);
}

#[test]
fn an_open_shorter_than_29_bytes_is_a_bad_message_length() {
    let mut bytes = header(28, 1);
    bytes.resize(28, 0);
    assert_eq!(decode(&bytes), Err(DecodeError::BadMessageLength(28)));
}

#[test]
fn a_keepalive_decodes() {
    assert_eq!(decode(&encode_keepalive()), Ok(Message::Keepalive));
}

#[test]
fn bytes_after_the_message_are_rejected_by_decode() {
    let mut bytes = encode_keepalive();
    bytes.push(0);
    assert_eq!(decode(&bytes), Err(DecodeError::TrailingBytes(1)));
}

// --- OPEN ----------------------------------------------------------------------------------

fn full_capabilities() -> Capabilities {
    Capabilities {
        four_octet_as: Some(4_200_000_001),
        multiprotocol: vec![(1, 1), (2, 1)],
        route_refresh: true,
        graceful_restart: Some(GracefulRestartCapability {
            restart_state: true,
            restart_time_secs: 120,
            families: vec![
                GracefulRestartFamily {
                    afi: 1,
                    safi: 1,
                    forwarding_preserved: true,
                },
                GracefulRestartFamily {
                    afi: 2,
                    safi: 1,
                    forwarding_preserved: false,
                },
            ],
        }),
        other: vec![],
    }
}

#[test]
fn an_open_with_every_capability_survives_encode_then_decode() {
    let open = open_message(
        4_200_000_001,
        90,
        Ipv4Addr::new(192, 0, 2, 11),
        full_capabilities(),
    );
    assert_eq!(open.my_as, AS_TRANS, "a 4-octet ASN goes out as AS_TRANS");
    let bytes = encode_open(&open).unwrap();
    let Message::Open(decoded) = decode(&bytes).unwrap() else {
        panic!("not an OPEN")
    };
    assert_eq!(decoded, open);
    assert_eq!(decoded.asn(), 4_200_000_001);
    assert_eq!(
        decoded.families(),
        vec![Family::Ipv4Unicast, Family::Ipv6Unicast]
    );
}

#[test]
fn open_capability_bytes_are_the_rfc_layouts() {
    let caps = Capabilities {
        four_octet_as: Some(65001),
        multiprotocol: vec![(2, 1)],
        route_refresh: true,
        graceful_restart: Some(GracefulRestartCapability {
            restart_state: false,
            restart_time_secs: 120,
            families: vec![GracefulRestartFamily {
                afi: 1,
                safi: 1,
                forwarding_preserved: true,
            }],
        }),
        other: vec![],
    };
    let bytes = encode_open(&open_message(65001, 90, Ipv4Addr::new(192, 0, 2, 11), caps)).unwrap();
    let body = &bytes[HEADER_LEN..];
    assert_eq!(&body[..10], &[4, 0xfd, 0xe9, 0, 90, 192, 0, 2, 11, 24]);
    assert_eq!(
        &body[10..],
        &[
            2, 22, // one Capabilities optional parameter, 22 bytes
            1, 4, 0, 2, 0, 1, // MP IPv6 unicast
            2, 0, // route refresh
            65, 4, 0, 0, 0xfd, 0xe9, // 4-octet AS 65001
            64, 6, 0x00, 120, 0, 1, 1, 0x80, // GR 120 s, IPv4 unicast forwarding preserved
        ]
    );
}

#[test]
fn an_open_with_a_non_capability_optional_parameter_is_unsupported_optional_parameter() {
    let mut body = vec![4, 0xfd, 0xe8, 0, 90, 192, 0, 2, 1, 3, 1, 1, 0];
    let mut bytes = header((HEADER_LEN + body.len()) as u16, 1);
    bytes.append(&mut body);
    let error = decode(&bytes).unwrap_err();
    assert_eq!(error, DecodeError::UnsupportedOptionalParameter(1));
    let n = error.notification().unwrap();
    assert_eq!((n.code, n.subcode), (2, 4));
}

#[test]
fn an_open_of_version_3_is_answered_with_version_4_as_data() {
    let mut open = open_message(
        65001,
        90,
        Ipv4Addr::new(192, 0, 2, 1),
        Capabilities::default(),
    );
    open.version = 3;
    let error = decode(&encode_open(&open).unwrap()).unwrap_err();
    assert_eq!(error, DecodeError::UnsupportedVersion(3));
    let n = error.notification().unwrap();
    assert_eq!((n.code, n.subcode, n.data), (2, 1, vec![0, 4]));
}

#[test]
fn an_open_whose_capability_overruns_its_parameter_is_malformed() {
    // Parameter of 4 bytes holding a capability that claims 10.
    let mut body = vec![4, 0xfd, 0xe8, 0, 90, 192, 0, 2, 1, 6, 2, 4, 65, 10, 0, 0];
    let mut bytes = header((HEADER_LEN + body.len()) as u16, 1);
    bytes.append(&mut body);
    assert!(matches!(decode(&bytes), Err(DecodeError::MalformedOpen(_))));
}

#[test]
fn unknown_and_unparseable_capabilities_are_ignored_not_fatal() {
    // Capability 73 (FQDN) with a non-empty domain name: zettabgp 0.6 rejects it; we carry on.
    let fqdn = [73u8, 6, 2, b'h', b'1', 2, b'd', b'1'];
    let mut params = vec![2u8, (fqdn.len() + 6) as u8];
    params.extend_from_slice(&fqdn);
    params.extend_from_slice(&[65, 4, 0, 0, 0xfd, 0xe8]);
    let mut body = vec![4, 0x5b, 0xa0, 0, 90, 192, 0, 2, 1, params.len() as u8];
    body.extend_from_slice(&params);
    let mut bytes = header((HEADER_LEN + body.len()) as u16, 1);
    bytes.extend_from_slice(&body);
    let Ok(Message::Open(open)) = decode(&bytes) else {
        panic!("OPEN with an odd FQDN capability must still decode")
    };
    assert_eq!(open.capabilities.other, vec![73]);
    assert_eq!(open.asn(), 65000);
}

#[test]
fn a_restart_time_beyond_12_bits_cannot_be_encoded() {
    let mut caps = full_capabilities();
    if let Some(gr) = caps.graceful_restart.as_mut() {
        gr.restart_time_secs = 4096;
    }
    let open = open_message(65001, 90, Ipv4Addr::new(192, 0, 2, 1), caps);
    assert_eq!(
        encode_open(&open),
        Err(EncodeError::RestartTimeTooLarge(4096))
    );
}

// --- NOTIFICATION ----------------------------------------------------------------------------

#[test]
fn a_shutdown_communication_round_trips_through_a_notification() {
    let n = NotificationMessage::cease_with_communication(
        subcode::ADMINISTRATIVE_SHUTDOWN,
        "node drained for maintenance",
    );
    let bytes = encode_notification(&n);
    let Message::Notification(decoded) = decode(&bytes).unwrap() else {
        panic!("not a NOTIFICATION")
    };
    assert_eq!((decoded.code, decoded.subcode), (6, 2));
    assert_eq!(
        decoded.data[0] as usize,
        "node drained for maintenance".len()
    );
    assert_eq!(
        decoded.shutdown_communication().as_deref(),
        Some("node drained for maintenance")
    );
    assert!(decoded.describe().contains("node drained"));
}

#[test]
fn a_long_shutdown_communication_is_cut_to_255_bytes_on_a_character_boundary() {
    let text = "é".repeat(200); // 400 bytes
    let n = NotificationMessage::cease_with_communication(subcode::ADMINISTRATIVE_SHUTDOWN, &text);
    assert_eq!(n.data[0], 254);
    assert_eq!(n.shutdown_communication().unwrap().chars().count(), 127);
}

#[test]
fn notification_data_longer_than_two_bytes_is_kept() {
    let n = NotificationMessage::new(3, 1, vec![1, 2, 3, 4, 5]);
    let Message::Notification(decoded) = decode(&encode_notification(&n)).unwrap() else {
        panic!()
    };
    assert_eq!(decoded.data, vec![1, 2, 3, 4, 5]);
}

// --- UPDATE encoding ---------------------------------------------------------------------------

#[test]
fn as_path_is_written_as_an_as_sequence_segment_type_2() {
    let attrs = RouteAttributes::default();
    let prefix = net("203.0.113.10/32");
    let packed = pack_updates(&ebgp_ctx(), [(&prefix, &attrs)], []).unwrap();
    let update = only_update(&packed.messages[0]);
    let as_path = update.attribute(attr_type::AS_PATH).unwrap();
    assert_eq!(as_path.flags, 0x40, "well-known transitive");
    assert_eq!(
        as_path.value,
        vec![2, 1, 0, 0, 0xfc, 0x00],
        "AS_SEQUENCE [64512]"
    );
    // And zettabgp's (correct) decoder agrees it is a sequence, not a set.
    let z = zettabgp_update(&packed.messages[0], true);
    let path = z.get_attr_aspath().unwrap();
    assert!(
        matches!(&path.value[..], [BgpASitem::Seq(seq)] if seq.value.len() == 1 && seq.value[0].value == 64512)
    );
}

#[test]
fn a_two_octet_session_gets_as_trans_in_as_path_and_the_real_asn_in_as4_path() {
    let ctx = UpdateContext {
        local_as: 4_200_000_001,
        four_octet_as: false,
        ..ebgp_ctx()
    };
    let prefix = net("203.0.113.10/32");
    let packed = pack_updates(&ctx, [(&prefix, &RouteAttributes::default())], []).unwrap();
    let update = only_update(&packed.messages[0]);
    assert_eq!(
        update.attribute(attr_type::AS_PATH).unwrap().value,
        vec![2, 1, 0x5b, 0xa0]
    );
    let as4 = update.attribute(attr_type::AS4_PATH).unwrap();
    assert_eq!(as4.flags, 0xc0);
    assert_eq!(
        as4.value,
        [vec![2, 1], 4_200_000_001u32.to_be_bytes().to_vec()].concat()
    );
}

#[test]
fn an_ibgp_update_has_an_empty_as_path_and_a_local_pref() {
    let ctx = UpdateContext {
        ebgp: false,
        ..ebgp_ctx()
    };
    let attrs = RouteAttributes {
        local_pref: Some(250),
        ..Default::default()
    };
    let prefix = net("203.0.113.10/32");
    let packed = pack_updates(&ctx, [(&prefix, &attrs)], []).unwrap();
    let update = only_update(&packed.messages[0]);
    assert!(
        update
            .attribute(attr_type::AS_PATH)
            .unwrap()
            .value
            .is_empty()
    );
    assert_eq!(
        update.attribute(attr_type::LOCAL_PREF).unwrap().value,
        250u32.to_be_bytes().to_vec()
    );
}

#[test]
fn an_ebgp_update_never_carries_local_pref() {
    let attrs = RouteAttributes {
        local_pref: Some(250),
        ..Default::default()
    };
    let prefix = net("203.0.113.10/32");
    let packed = pack_updates(&ebgp_ctx(), [(&prefix, &attrs)], []).unwrap();
    assert!(
        only_update(&packed.messages[0])
            .attribute(attr_type::LOCAL_PREF)
            .is_none()
    );
}

#[test]
fn an_ipv4_update_carries_origin_igp_next_hop_communities_large_communities_and_link_bandwidth() {
    let attrs = RouteAttributes {
        local_pref: None,
        communities: vec![
            (64512 << 16) | 300,
            (64512 << 16) | 100,
            (64512 << 16) | 100,
        ],
        large_communities: vec![LargeCommunity {
            global_admin: 64512,
            local_data_1: 1,
            local_data_2: 2,
        }],
        link_bandwidth_bytes_per_sec: Some(750_000),
    };
    let prefix = net("203.0.113.10/32");
    let packed = pack_updates(&ebgp_ctx(), [(&prefix, &attrs)], []).unwrap();
    let bytes = &packed.messages[0];
    let update = only_update(bytes);
    assert_eq!(update.nlri, vec!["203.0.113.10/32".parse().unwrap()]);
    assert_eq!(update.attribute(attr_type::ORIGIN).unwrap().value, vec![0]);
    assert_eq!(
        update.attribute(attr_type::NEXT_HOP).unwrap().value,
        vec![192, 0, 2, 11]
    );
    let communities = update.attribute(attr_type::COMMUNITIES).unwrap();
    assert_eq!(communities.flags, 0xc0);
    assert_eq!(
        communities.value,
        vec![0xfc, 0x00, 0, 100, 0xfc, 0x00, 0x01, 0x2c],
        "sorted and deduplicated"
    );
    let large = update.attribute(attr_type::LARGE_COMMUNITY).unwrap();
    assert_eq!(large.flags, 0xc0);
    assert_eq!(large.value, vec![0, 0, 0xfc, 0, 0, 0, 0, 1, 0, 0, 0, 2]);
    let ext = update.attribute(attr_type::EXTENDED_COMMUNITIES).unwrap();
    assert_eq!(ext.flags, 0xc0);
    assert_eq!(&ext.value[..4], &[0x40, 0x04, 0xfc, 0x00]);
    assert_eq!(
        f32::from_be_bytes(ext.value[4..8].try_into().unwrap()),
        750_000.0
    );
    // Attribute type codes go out in ascending order.
    let codes: Vec<u8> = update.attributes.iter().map(|a| a.type_code).collect();
    let mut sorted = codes.clone();
    sorted.sort_unstable();
    assert_eq!(codes, sorted);
    // zettabgp reads the same communities back.
    let z = zettabgp_update(bytes, true);
    assert_eq!(z.get_attr_communitylist().unwrap().value.len(), 2);
    assert_eq!(z.get_attr_largecommunitylist().unwrap().value.len(), 1);
    assert!(matches!(z.updates, BgpAddrs::IPV4U(ref v) if v.len() == 1));
}

#[test]
fn ipv6_routes_go_only_in_mp_reach_nlri_with_a_global_next_hop() {
    let prefix = net("2001:db8:100::10/128");
    let packed = pack_updates(&ebgp_ctx(), [(&prefix, &RouteAttributes::default())], []).unwrap();
    let update = only_update(&packed.messages[0]);
    assert!(update.nlri.is_empty());
    assert!(update.attribute(attr_type::NEXT_HOP).is_none());
    let reach = update.mp_reach.unwrap();
    assert_eq!((reach.afi, reach.safi), (2, 1));
    assert_eq!(
        reach.next_hop,
        "2001:db8:1::11"
            .parse::<Ipv6Addr>()
            .unwrap()
            .octets()
            .to_vec()
    );
    assert_eq!(reach.nlri, vec![prefix]);
}

#[test]
fn withdrawals_use_the_withdrawn_field_for_ipv4_and_mp_unreach_for_ipv6() {
    let v4 = net("203.0.113.10/32");
    let v6 = net("2001:db8:100::10/128");
    let packed = pack_updates(&ebgp_ctx(), [], [&v4, &v6]).unwrap();
    assert_eq!(packed.messages.len(), 2);
    let first = only_update(&packed.messages[0]);
    assert_eq!(first.withdrawn, vec!["203.0.113.10/32".parse().unwrap()]);
    assert!(first.attributes.is_empty());
    let second = only_update(&packed.messages[1]);
    assert_eq!(second.mp_unreach.unwrap().withdrawn, vec![v6]);
}

#[test]
fn end_of_rib_markers_are_recognised_for_both_families() {
    for family in [Family::Ipv4Unicast, Family::Ipv6Unicast] {
        let update = only_update(&encode_end_of_rib(family));
        assert_eq!(update.end_of_rib(), Some(family));
    }
    assert_eq!(encode_end_of_rib(Family::Ipv4Unicast).len(), 23);
    let prefix = net("203.0.113.10/32");
    let packed = pack_updates(&ebgp_ctx(), [(&prefix, &RouteAttributes::default())], []).unwrap();
    assert_eq!(only_update(&packed.messages[0]).end_of_rib(), None);
}

#[test]
fn two_thousand_prefixes_with_one_attribute_set_fill_messages_up_to_4096_bytes() {
    let prefixes: Vec<IpNet> = (0..2000u32)
        .map(|i| IpNet::V4(ipnet::Ipv4Net::new(Ipv4Addr::from(0xCB00_7100 + i * 256), 32).unwrap()))
        .collect();
    let attrs = RouteAttributes::default();
    let packed = pack_updates(&ebgp_ctx(), prefixes.iter().map(|p| (p, &attrs)), []).unwrap();
    // Each /32 is 5 bytes; attributes take 4 + 9 + 7 = 20 bytes; 4096 - 23 - 20 = 4053 → 810.
    assert_eq!(packed.messages.len(), 2000usize.div_ceil(810));
    let mut seen = Vec::new();
    for message in &packed.messages {
        assert!(message.len() <= MAX_MESSAGE_LEN);
        seen.extend(only_update(message).nlri.into_iter().map(IpNet::V4));
    }
    assert!(
        packed.messages[0].len() > MAX_MESSAGE_LEN - 5,
        "first message is full"
    );
    assert_eq!(seen, prefixes);
}

#[test]
fn two_thousand_ipv6_prefixes_fill_mp_reach_messages_up_to_4096_bytes() {
    let prefixes: Vec<IpNet> = (0..2000u128)
        .map(|i| {
            let base: u128 = u128::from("2001:db8:100::".parse::<Ipv6Addr>().unwrap());
            IpNet::V6(ipnet::Ipv6Net::new(Ipv6Addr::from(base + i), 128).unwrap())
        })
        .collect();
    let attrs = RouteAttributes::default();
    let packed = pack_updates(&ebgp_ctx(), prefixes.iter().map(|p| (p, &attrs)), []).unwrap();
    let mut seen = Vec::new();
    for message in &packed.messages {
        assert!(message.len() <= MAX_MESSAGE_LEN);
        assert!(message.len() > MAX_MESSAGE_LEN - 17 || message == packed.messages.last().unwrap());
        seen.extend(only_update(message).mp_reach.unwrap().nlri);
    }
    assert_eq!(seen, prefixes);
}

#[test]
fn prefixes_with_different_attributes_go_in_different_messages_and_equal_ones_share() {
    let a = RouteAttributes {
        communities: vec![1, 2],
        ..Default::default()
    };
    let a_reordered = RouteAttributes {
        communities: vec![2, 1],
        ..Default::default()
    };
    let b = RouteAttributes {
        communities: vec![3],
        ..Default::default()
    };
    let p1 = net("203.0.113.1/32");
    let p2 = net("203.0.113.2/32");
    let p3 = net("203.0.113.3/32");
    let packed =
        pack_updates(&ebgp_ctx(), [(&p1, &a), (&p2, &a_reordered), (&p3, &b)], []).unwrap();
    assert_eq!(packed.messages.len(), 2);
    let counts: Vec<usize> = packed
        .messages
        .iter()
        .map(|m| only_update(m).nlri.len())
        .collect();
    assert_eq!(counts, vec![2, 1]);
}

#[test]
fn announcing_without_a_next_hop_for_the_family_is_an_error() {
    let ctx = UpdateContext {
        next_hop_v6: None,
        ..ebgp_ctx()
    };
    let prefix = net("2001:db8:100::1/128");
    assert_eq!(
        pack_updates(&ctx, [(&prefix, &RouteAttributes::default())], []),
        Err(EncodeError::MissingNextHop(Family::Ipv6Unicast))
    );
}

// --- UPDATE decoding of hostile input ---------------------------------------------------------

fn update_bytes(body: &[u8]) -> Vec<u8> {
    let mut bytes = header((HEADER_LEN + body.len()) as u16, 2);
    bytes.extend_from_slice(body);
    bytes
}

#[test]
fn an_update_whose_attribute_length_overruns_is_malformed() {
    let bytes = update_bytes(&[0, 0, 0, 10, 0x40, 1, 1, 0]);
    let error = decode(&bytes).unwrap_err();
    assert!(matches!(error, DecodeError::MalformedAttributeList(_)));
    let n = error.notification().unwrap();
    assert_eq!((n.code, n.subcode), (3, 1));
}

#[test]
fn an_attribute_longer_than_the_attribute_list_is_an_attribute_length_error() {
    let bytes = update_bytes(&[0, 0, 0, 4, 0x40, 1, 9, 0]);
    assert_eq!(decode(&bytes), Err(DecodeError::AttributeLength(1)));
}

#[test]
fn a_prefix_length_of_33_is_an_invalid_network_field() {
    let bytes = update_bytes(&[0, 0, 0, 0, 33, 1, 2, 3, 4, 5]);
    let error = decode(&bytes).unwrap_err();
    assert!(matches!(error, DecodeError::InvalidNetworkField(_)));
    assert_eq!(error.notification().unwrap().subcode, 10);
}

#[test]
fn a_malformed_notification_gets_no_notification_back() {
    assert_eq!(DecodeError::MalformedNotification.notification(), None);
}

// --- framer ------------------------------------------------------------------------------------

#[test]
fn the_framer_reassembles_messages_split_at_every_byte() {
    let mut stream = encode_keepalive();
    let prefix = net("203.0.113.10/32");
    let packed = pack_updates(&ebgp_ctx(), [(&prefix, &RouteAttributes::default())], []).unwrap();
    stream.extend_from_slice(&packed.messages[0]);
    stream.extend_from_slice(&encode_keepalive());
    let mut framer = Framer::new();
    let mut out = Vec::new();
    for byte in &stream {
        framer.push(std::slice::from_ref(byte)).unwrap();
        while let Some(message) = framer.next_message() {
            out.push(message.unwrap().message_type());
        }
    }
    assert_eq!(
        out,
        vec![
            MessageType::Keepalive,
            MessageType::Update,
            MessageType::Keepalive
        ]
    );
    assert_eq!(framer.buffered(), 0);
}

#[test]
fn the_framer_refuses_to_buffer_more_than_its_capacity() {
    let mut framer = Framer::new();
    assert!(framer.push(&vec![0xff; FRAMER_CAPACITY]).is_ok());
    assert_eq!(
        framer.push(&[0xff]),
        Err(DecodeError::BufferOverflow(FRAMER_CAPACITY))
    );
    assert_eq!(framer.buffered(), 0);
}

#[test]
fn after_a_framing_error_the_framer_keeps_failing() {
    let mut framer = Framer::new();
    framer.push(&header(18, 4)).unwrap();
    assert!(matches!(framer.next_message(), Some(Err(_))));
    framer.push(&encode_keepalive()).unwrap();
    assert!(matches!(framer.next_message(), Some(Err(_))));
}

// --- properties ----------------------------------------------------------------------------------

fn arbitrary_message_bytes() -> impl Strategy<Value = Vec<u8>> {
    // Mostly well-formed headers with random bodies, so the body parsers get exercised.
    (
        1u8..=5,
        proptest::collection::vec(any::<u8>(), 0..300),
        any::<bool>(),
    )
        .prop_map(|(t, body, fix_len)| {
            let len = if fix_len {
                HEADER_LEN + body.len()
            } else {
                body.len()
            };
            let mut bytes = header(len as u16, t);
            bytes.extend_from_slice(&body);
            bytes
        })
}

proptest! {
    #[test]
    fn decode_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn decode_never_panics_on_arbitrary_bodies_behind_a_valid_header(bytes in arbitrary_message_bytes()) {
        let _ = decode(&bytes);
    }

    #[test]
    fn the_framer_never_panics_and_never_outgrows_its_capacity(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..700), 0..20)
    ) {
        let mut framer = Framer::new();
        for chunk in &chunks {
            let _ = framer.push(chunk);
            let mut guard = 0;
            while let Some(result) = framer.next_message() {
                guard += 1;
                if result.is_err() || guard > 100 { break; }
            }
            prop_assert!(framer.buffered() <= FRAMER_CAPACITY);
        }
    }

    #[test]
    fn packed_prefixes_decode_back_to_the_same_set(
        hosts in proptest::collection::btree_set(any::<u32>(), 1..400),
        lens in proptest::collection::vec(0u8..=32, 400),
    ) {
        let attrs = RouteAttributes::default();
        let prefixes: std::collections::BTreeSet<IpNet> = hosts
            .iter()
            .zip(lens.iter())
            .map(|(h, l)| IpNet::V4(ipnet::Ipv4Net::new(Ipv4Addr::from(*h), *l).unwrap().trunc()))
            .collect();
        let packed = pack_updates(&ebgp_ctx(), prefixes.iter().map(|p| (p, &attrs)), []).unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for message in &packed.messages {
            prop_assert!(message.len() <= MAX_MESSAGE_LEN);
            seen.extend(only_update(message).nlri.into_iter().map(IpNet::V4));
        }
        prop_assert_eq!(seen, prefixes);
    }
}
