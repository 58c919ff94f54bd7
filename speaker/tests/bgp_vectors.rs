//! Codec checks against bytes that FRR 8.4 and GoBGP 3.10 actually sent (see
//! `tests/vectors/bgp/README.md`): every message decodes, the fields are what those daemons were
//! configured to send, and where our encoder produces the same thing it produces the same bytes.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use herald_speaker::bgp::codec::{
    self, Family, LargeCommunity, Message, OpenMessage, RouteAttributes, UpdateContext,
    UpdateMessage, attr_type,
};
use herald_speaker::bgp::fsm::{Direction, Input, Session, SessionConfig, State};
use ipnet::IpNet;

macro_rules! vector {
    ($name:literal) => {
        include_bytes!(concat!("vectors/bgp/", $name, ".bin")).as_slice()
    };
}

const FRR: &[(&str, &[u8])] = &[
    ("frr_00_open", vector!("frr_00_open")),
    ("frr_01_keepalive", vector!("frr_01_keepalive")),
    ("frr_02_update", vector!("frr_02_update")),
    ("frr_03_update", vector!("frr_03_update")),
    ("frr_04_update", vector!("frr_04_update")),
    ("frr_05_update", vector!("frr_05_update")),
    ("frr_06_update", vector!("frr_06_update")),
    ("frr_07_update", vector!("frr_07_update")),
    ("frr_08_update", vector!("frr_08_update")),
    ("frr_09_update", vector!("frr_09_update")),
];

const GOBGP: &[(&str, &[u8])] = &[
    ("gobgp_00_open", vector!("gobgp_00_open")),
    ("gobgp_01_keepalive", vector!("gobgp_01_keepalive")),
    ("gobgp_02_update", vector!("gobgp_02_update")),
    ("gobgp_03_update", vector!("gobgp_03_update")),
    ("gobgp_04_update", vector!("gobgp_04_update")),
    ("gobgp_05_update", vector!("gobgp_05_update")),
    ("gobgp_06_update", vector!("gobgp_06_update")),
    ("gobgp_07_update", vector!("gobgp_07_update")),
    ("gobgp_08_notification", vector!("gobgp_08_notification")),
];

fn open(bytes: &[u8]) -> OpenMessage {
    match codec::decode(bytes) {
        Ok(Message::Open(open)) => open,
        other => panic!("expected OPEN, got {other:?}"),
    }
}

fn update(bytes: &[u8]) -> UpdateMessage {
    match codec::decode(bytes) {
        Ok(Message::Update(update)) => update,
        other => panic!("expected UPDATE, got {other:?}"),
    }
}

/// An attribute's flags (less the extended-length bit, which FRR sets on short AS_PATHs too)
/// and its value.
fn attr(update: &UpdateMessage, code: u8) -> Option<(u8, Vec<u8>)> {
    update.attribute(code).map(|a| {
        (
            a.flags & !codec::attr_flags::EXTENDED_LENGTH,
            a.value.clone(),
        )
    })
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn our_update(ctx: &UpdateContext, prefix: &str, attrs: &RouteAttributes) -> UpdateMessage {
    let prefix = net(prefix);
    let packed = codec::pack_updates(ctx, [(&prefix, attrs)], []).unwrap();
    update(&packed.messages[0])
}

#[test]
fn every_captured_message_from_frr_and_gobgp_decodes() {
    for (name, bytes) in FRR.iter().chain(GOBGP) {
        assert!(codec::decode(bytes).is_ok(), "{name} failed to decode");
    }
}

#[test]
fn frrs_open_carries_its_asn_identifier_hold_time_families_and_graceful_restart() {
    let open = open(vector!("frr_00_open"));
    assert_eq!(open.asn(), 64500);
    assert_eq!(open.bgp_identifier, Ipv4Addr::new(192, 0, 2, 1));
    assert_eq!(open.hold_time_secs, 9);
    assert_eq!(
        open.families(),
        vec![Family::Ipv4Unicast, Family::Ipv6Unicast]
    );
    assert!(open.capabilities.route_refresh);
    let gr = open.capabilities.graceful_restart.unwrap();
    assert!(gr.restart_state, "FRR had just started");
    assert_eq!(gr.restart_time_secs, 120);
    // Add-path (69), FQDN (73) and others are recognised and set aside.
    assert!(open.capabilities.other.contains(&69));
    assert!(open.capabilities.other.contains(&73));
}

#[test]
fn gobgps_open_with_its_fqdn_capability_decodes_to_its_asn_and_families() {
    let open = open(vector!("gobgp_00_open"));
    assert_eq!(open.asn(), 64501);
    assert_eq!(open.my_as, 64501);
    assert_eq!(open.bgp_identifier, Ipv4Addr::new(192, 0, 2, 2));
    assert_eq!(
        open.families(),
        vec![Family::Ipv4Unicast, Family::Ipv6Unicast]
    );
    assert_eq!(
        open.capabilities.graceful_restart.unwrap().families.len(),
        2
    );
}

#[test]
fn our_as_path_communities_and_large_communities_are_byte_identical_to_frrs() {
    let frr = update(vector!("frr_02_update"));
    assert_eq!(frr.nlri, vec!["203.0.113.10/32".parse().unwrap()]);
    let ctx = UpdateContext {
        local_as: 64500,
        ebgp: true,
        four_octet_as: true,
        next_hop_v4: Some(Ipv4Addr::new(192, 0, 2, 1)),
        next_hop_v6: None,
    };
    let attrs = RouteAttributes {
        communities: vec![(64500 << 16) | 100, (64500 << 16) | 200],
        large_communities: vec![LargeCommunity {
            global_admin: 64500,
            local_data_1: 1,
            local_data_2: 2,
        }],
        ..Default::default()
    };
    let ours = our_update(&ctx, "203.0.113.10/32", &attrs);
    for code in [
        attr_type::ORIGIN,
        attr_type::AS_PATH,
        attr_type::NEXT_HOP,
        attr_type::COMMUNITIES,
        attr_type::LARGE_COMMUNITY,
    ] {
        assert_eq!(
            attr(&ours, code),
            attr(&frr, code),
            "attribute type {code} differs from FRR's"
        );
    }
    // The AS_PATH segment type is 2 (AS_SEQUENCE), as FRR writes it.
    assert_eq!(frr.attribute(attr_type::AS_PATH).unwrap().value[0], 2);
}

#[test]
fn our_as_path_and_communities_are_byte_identical_to_gobgps() {
    let gobgp = update(vector!("gobgp_04_update"));
    assert_eq!(gobgp.nlri, vec!["203.0.113.20/32".parse().unwrap()]);
    let ctx = UpdateContext {
        local_as: 64501,
        ebgp: true,
        four_octet_as: true,
        next_hop_v4: Some(Ipv4Addr::new(192, 0, 2, 2)),
        next_hop_v6: None,
    };
    let attrs = RouteAttributes {
        communities: vec![(64501 << 16) | 300],
        large_communities: vec![LargeCommunity {
            global_admin: 64501,
            local_data_1: 3,
            local_data_2: 4,
        }],
        ..Default::default()
    };
    let ours = our_update(&ctx, "203.0.113.20/32", &attrs);
    for code in [
        attr_type::AS_PATH,
        attr_type::NEXT_HOP,
        attr_type::COMMUNITIES,
        attr_type::LARGE_COMMUNITY,
    ] {
        assert_eq!(attr(&ours, code), attr(&gobgp, code), "type {code}");
    }
}

#[test]
fn ipv6_routes_from_both_arrive_in_mp_reach_nlri_and_match_our_layout() {
    let frr = update(vector!("frr_05_update"));
    let reach = frr.mp_reach.unwrap();
    assert_eq!((reach.afi, reach.safi), (2, 1));
    assert_eq!(reach.next_hop.len(), 32, "global + link-local next hop");
    assert_eq!(reach.nlri, vec![net("2001:db8:100::10/128")]);

    let gobgp_bytes = vector!("gobgp_05_update");
    let gobgp = update(gobgp_bytes);
    let reach = gobgp.mp_reach.clone().unwrap();
    assert_eq!(reach.nlri, vec![net("2001:db8:100::20/128")]);
    assert_eq!(
        reach.next_hop,
        "2001:db8:1::2"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets()
            .to_vec()
    );
    let ctx = UpdateContext {
        local_as: 64501,
        ebgp: true,
        four_octet_as: true,
        next_hop_v4: None,
        next_hop_v6: Some("2001:db8:1::2".parse().unwrap()),
    };
    let ours = our_update(&ctx, "2001:db8:100::20/128", &RouteAttributes::default());
    assert_eq!(
        ours.attribute(attr_type::MP_REACH_NLRI).unwrap().value,
        gobgp.attribute(attr_type::MP_REACH_NLRI).unwrap().value
    );
}

#[test]
fn our_end_of_rib_markers_are_byte_identical_to_frrs_and_gobgps() {
    assert_eq!(
        codec::encode_end_of_rib(Family::Ipv4Unicast),
        vector!("frr_04_update")
    );
    assert_eq!(
        codec::encode_end_of_rib(Family::Ipv4Unicast),
        vector!("gobgp_02_update")
    );
    assert_eq!(
        codec::encode_end_of_rib(Family::Ipv6Unicast),
        vector!("frr_07_update")
    );
    assert_eq!(
        codec::encode_end_of_rib(Family::Ipv6Unicast),
        vector!("gobgp_03_update")
    );
    assert_eq!(
        update(vector!("frr_07_update")).end_of_rib(),
        Some(Family::Ipv6Unicast)
    );
}

#[test]
fn withdrawals_from_both_decode_to_the_withdrawn_prefixes() {
    for name in ["frr_08_update", "gobgp_06_update"] {
        let bytes = FRR.iter().chain(GOBGP).find(|(n, _)| *n == name).unwrap().1;
        assert_eq!(
            update(bytes).withdrawn,
            vec!["203.0.113.20/32".parse().unwrap()]
        );
    }
    for bytes in [vector!("frr_09_update"), vector!("gobgp_07_update")] {
        assert_eq!(
            update(bytes).mp_unreach.unwrap().withdrawn,
            vec![net("2001:db8:100::20/128")]
        );
    }
}

#[test]
fn our_keepalive_is_byte_identical_to_theirs() {
    assert_eq!(codec::encode_keepalive(), vector!("frr_01_keepalive"));
    assert_eq!(codec::encode_keepalive(), vector!("gobgp_01_keepalive"));
}

#[test]
fn gobgps_shutdown_notification_carries_its_rfc_8203_communication() {
    let Ok(Message::Notification(n)) = codec::decode(vector!("gobgp_08_notification")) else {
        panic!("expected NOTIFICATION")
    };
    assert_eq!((n.code, n.subcode), (6, 2));
    assert_eq!(
        n.shutdown_communication().as_deref(),
        Some("herald vector capture")
    );
    // Ours for the same text is the same bytes.
    let ours = codec::NotificationMessage::cease_with_communication(2, "herald vector capture");
    assert_eq!(
        codec::encode_notification(&ours),
        vector!("gobgp_08_notification")
    );
}

#[test]
fn a_session_fed_frrs_byte_stream_reaches_established_and_stays_up() {
    let now = Instant::now();
    let mut session = Session::new(SessionConfig {
        hold_time_secs: 90,
        ..SessionConfig::new(64501, 64500, Ipv4Addr::new(192, 0, 2, 2))
    });
    session.handle(now, Input::Start);
    let conn = session.allocate_connection_id();
    session.handle(
        now,
        Input::TcpConnected {
            conn,
            direction: Direction::Inbound,
            local_address: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
        },
    );
    let stream: Vec<u8> = FRR.iter().flat_map(|(_, b)| b.iter().copied()).collect();
    // Delivered in awkward 7-byte pieces, as TCP may.
    for piece in stream.chunks(7) {
        session.handle(
            now,
            Input::BytesReceived {
                conn,
                bytes: piece.to_vec(),
            },
        );
    }
    assert_eq!(session.state(), State::Established);
    let status = session.status();
    assert_eq!(status.last_error, None);
    assert_eq!(
        status.end_of_rib_received,
        vec![Family::Ipv4Unicast, Family::Ipv6Unicast]
    );
    assert_eq!(
        status.negotiated.unwrap().hold_time,
        std::time::Duration::from_secs(9)
    );
}
