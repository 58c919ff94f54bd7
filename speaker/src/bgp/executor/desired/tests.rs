//! Tests of [`super`] (desired.rs).

use std::collections::BTreeSet;

use super::*;
use crate::model::{SecretKeyRef, ServiceKey};

fn ip(text: &str) -> IpAddr {
    text.parse().expect("test address")
}

fn net(text: &str) -> IpNet {
    text.parse().expect("test prefix")
}

fn peer(name: &str, address: &str) -> Peer {
    Peer {
        name: name.into(),
        my_asn: 64512,
        peer_asn: 64500,
        peer_address: ip(address),
        peer_port: 179,
        source_address: None,
        router_id: None,
        hold_time_secs: 9,
        keepalive_time_secs: 3,
        connect_time_secs: 2,
        ebgp_multihop: false,
        password_secret: None,
        node_selectors: vec![],
        graceful_restart: false,
        bfd: None,
    }
}

fn planned(services: &[&str]) -> PlannedAttributes {
    PlannedAttributes {
        services: services
            .iter()
            .map(|name| ServiceKey::new("lab", *name))
            .collect::<BTreeSet<_>>(),
        ..PlannedAttributes::default()
    }
}

fn plan_with(peers: &[Peer], routes: &[(&str, &str)]) -> BgpPlan {
    let mut plan = BgpPlan::default();
    for peer in peers {
        plan.sessions.insert(peer.name.clone(), peer.clone());
    }
    for (peer, prefix) in routes {
        plan.routes
            .entry(peer.to_string())
            .or_default()
            .insert(net(prefix), planned(&["web"]));
    }
    plan
}

fn facts_on_lan() -> PeerFacts {
    PeerFacts {
        password: None,
        local_address: Some(ip("192.0.2.11")),
        other_family_address: Some(ip("2001:db8:1::11")),
    }
}

#[test]
fn a_peer_with_a_bfd_profile_gets_a_single_hop_session_or_a_multihop_one_when_multihop() {
    let settings = crate::model::BfdSettings {
        profile: herald_bfd::Profile {
            desired_min_tx: Duration::from_millis(100),
            required_min_rx: Duration::from_millis(100),
            detect_mult: 3,
            passive: false,
        },
        minimum_ttl: 250,
        strict: true,
        damping: herald_bfd::DampingConfig {
            initial: Duration::from_secs(1),
            ..herald_bfd::DampingConfig::default()
        },
    };
    let mut router = peer("router", "192.0.2.1");
    router.bfd = Some(settings);
    router.source_address = Some(ip("192.0.2.11"));
    let plan = plan_with(&[router.clone()], &[]);
    let facts = [("router".to_string(), facts_on_lan())].into();
    let out = translate(&plan, &facts, &NodeFacts::default());
    let bfd = out.desired.peers["router"]
        .bfd
        .clone()
        .expect("BFD configured");
    assert_eq!(bfd.hop, Hop::Single);
    assert_eq!(bfd.peer_address, ip("192.0.2.1"));
    assert_eq!(bfd.local_address, Some(ip("192.0.2.11")));
    assert_eq!(bfd.profile, settings.profile);
    assert!(bfd.strict);
    assert_eq!(bfd.damping, settings.damping);
    router.ebgp_multihop = true;
    let plan = plan_with(&[router], &[]);
    let out = translate(&plan, &facts, &NodeFacts::default());
    let bfd = out.desired.peers["router"]
        .bfd
        .clone()
        .expect("BFD configured");
    assert_eq!(bfd.hop, Hop::Multi { minimum_ttl: 250 });
    let plain = plan_with(&[peer("router", "192.0.2.1")], &[]);
    let out = translate(&plain, &facts, &NodeFacts::default());
    assert_eq!(out.desired.peers["router"].bfd, None);
}

#[test]
fn a_planned_peer_becomes_a_session_with_its_timers_ports_and_routes() {
    let mut router = peer("router", "192.0.2.1");
    router.peer_port = 1179;
    router.ebgp_multihop = true;
    let plan = plan_with(&[router], &[("router", "203.0.113.10/32")]);
    let facts = [("router".to_string(), facts_on_lan())].into();
    let out = translate(&plan, &facts, &NodeFacts::default());
    assert!(out.held_back.is_empty());
    let config = &out.desired.peers["router"];
    assert_eq!(config.peer_address, ip("192.0.2.1"));
    assert_eq!(config.peer_port, 1179);
    assert!(config.ebgp_multihop);
    assert_eq!(config.session.local_as, 64512);
    assert_eq!(config.session.peer_as, 64500);
    assert_eq!(config.session.hold_time_secs, 9);
    assert_eq!(config.session.keepalive_secs, Some(3));
    assert_eq!(config.session.connect_retry, Duration::from_secs(2));
    assert_eq!(config.session.router_id, Ipv4Addr::new(192, 0, 2, 11));
    assert_eq!(config.session.graceful_restart, None);
    assert_eq!(
        out.desired.routes["router"].keys().collect::<Vec<_>>(),
        [&net("203.0.113.10/32")]
    );
}

#[test]
fn the_router_id_prefers_the_peer_then_the_flag_then_the_source_then_any_node_address() {
    let mut router = peer("router", "2001:db8:1::1");
    let node = NodeFacts {
        router_id: Some(Ipv4Addr::new(198, 51, 100, 7)),
        ipv4_addresses: vec![Ipv4Addr::new(192, 0, 2, 12)],
    };
    let v6_facts = PeerFacts {
        local_address: Some(ip("2001:db8:1::12")),
        ..PeerFacts::default()
    };
    assert_eq!(
        router_id(&router, &v6_facts, &node),
        Some(Ipv4Addr::new(198, 51, 100, 7))
    );
    router.router_id = Some(Ipv4Addr::new(10, 0, 0, 1));
    assert_eq!(
        router_id(&router, &v6_facts, &node),
        Some(Ipv4Addr::new(10, 0, 0, 1))
    );
    router.router_id = None;
    let no_flag = NodeFacts {
        router_id: None,
        ..node.clone()
    };
    assert_eq!(
        router_id(&router, &v6_facts, &no_flag),
        Some(Ipv4Addr::new(192, 0, 2, 12)),
        "an IPv6 session falls back to the node's IPv4 address"
    );
    assert_eq!(
        router_id(&peer("r4", "192.0.2.1"), &facts_on_lan(), &no_flag),
        Some(Ipv4Addr::new(192, 0, 2, 11)),
        "an IPv4 session uses its source address"
    );
    assert_eq!(router_id(&router, &v6_facts, &NodeFacts::default()), None);
}

#[test]
fn a_peer_without_any_ipv4_identifier_is_held_back_with_a_reason() {
    let plan = plan_with(&[peer("v6", "2001:db8:1::1")], &[]);
    let out = translate(&plan, &BTreeMap::new(), &NodeFacts::default());
    assert!(out.desired.peers.is_empty());
    assert!(
        out.held_back["v6"].contains("routerID"),
        "{:?}",
        out.held_back
    );
}

#[test]
fn a_password_is_required_once_a_secret_is_named_and_its_problems_hold_the_peer_back() {
    let mut router = peer("router", "192.0.2.1");
    router.password_secret = Some(SecretKeyRef {
        namespace: "herald-system".into(),
        name: "bgp-auth".into(),
        key: "password".into(),
    });
    let plan = plan_with(&[router], &[("router", "203.0.113.10/32")]);
    let node = NodeFacts::default();
    let run = |password: Option<Result<String, String>>| {
        let facts = PeerFacts {
            password,
            ..facts_on_lan()
        };
        translate(&plan, &[("router".to_string(), facts)].into(), &node)
    };
    assert!(run(None).held_back["router"].contains("not been read"));
    let missing = run(Some(Err("Secret herald-system/bgp-auth not found".into())));
    assert_eq!(
        missing.held_back["router"],
        "Secret herald-system/bgp-auth not found"
    );
    assert!(missing.desired.peers.is_empty());
    assert!(
        run(Some(Ok("k".repeat(81)))).held_back["router"].contains("at most 80"),
        "the kernel refuses longer TCP-MD5 keys"
    );
    let good = run(Some(Ok("s3cret".into())));
    assert!(good.held_back.is_empty());
    assert_eq!(
        good.desired.peers["router"].password.as_deref(),
        Some("s3cret")
    );
}

#[test]
fn a_source_address_of_the_wrong_family_holds_the_peer_back() {
    let mut router = peer("router", "192.0.2.1");
    router.source_address = Some(ip("2001:db8:1::11"));
    let out = translate(
        &plan_with(&[router], &[]),
        &BTreeMap::new(),
        &NodeFacts::default(),
    );
    assert!(out.held_back["router"].contains("sourceAddress"));
}

#[test]
fn ipv6_routes_ride_an_ipv4_session_only_with_an_ipv6_next_hop_from_the_same_interface() {
    let plan = plan_with(
        &[peer("router", "192.0.2.1")],
        &[
            ("router", "203.0.113.10/32"),
            ("router", "2001:db8:100::10/128"),
        ],
    );
    let with = translate(
        &plan,
        &[("router".to_string(), facts_on_lan())].into(),
        &NodeFacts::default(),
    );
    assert_eq!(with.desired.routes["router"].len(), 2);
    assert_eq!(
        with.desired.peers["router"].session.next_hop_v6,
        Some("2001:db8:1::11".parse().expect("v6"))
    );
    assert!(with.families_without_next_hop.is_empty());

    let ipv4_only = PeerFacts {
        other_family_address: None,
        ..facts_on_lan()
    };
    let without = translate(
        &plan,
        &[("router".to_string(), ipv4_only)].into(),
        &NodeFacts::default(),
    );
    assert_eq!(
        without.desired.routes["router"].keys().collect::<Vec<_>>(),
        [&net("203.0.113.10/32")]
    );
    assert_eq!(
        without.families_without_next_hop["router"],
        [Family::Ipv6Unicast]
    );
}

#[test]
fn graceful_restart_is_offered_only_where_the_peer_enables_it() {
    let mut router = peer("router", "192.0.2.1");
    router.graceful_restart = true;
    let config =
        peer_config(&router, &facts_on_lan(), &NodeFacts::default()).expect("configurable");
    let gr = config.session.graceful_restart.expect("offered");
    assert_eq!(gr.restart_time_secs, GRACEFUL_RESTART_TIME_SECS);
}

#[test]
fn a_zero_hold_time_sends_no_keepalives() {
    let mut router = peer("router", "192.0.2.1");
    router.hold_time_secs = 0;
    router.keepalive_time_secs = 0;
    let config =
        peer_config(&router, &facts_on_lan(), &NodeFacts::default()).expect("configurable");
    assert_eq!(config.session.hold_time_secs, 0);
    assert_eq!(config.session.keepalive_secs, None);
}

#[test]
fn communities_split_into_standard_and_large_and_bandwidth_follows_local_endpoints() {
    let mut attributes = planned(&["web"]);
    attributes.communities = [
        Community::Standard((64512 << 16) | 100),
        Community::Large {
            global_admin: 64512,
            local_data_1: 1,
            local_data_2: 2,
        },
    ]
    .into();
    attributes.local_pref = Some(200);
    attributes.link_bandwidth = true;
    attributes.local_ready_endpoints = 3;
    let wire = wire_attributes(&attributes);
    assert_eq!(wire.communities, [(64512 << 16) | 100]);
    assert_eq!(
        wire.large_communities,
        [LargeCommunity {
            global_admin: 64512,
            local_data_1: 1,
            local_data_2: 2
        }]
    );
    assert_eq!(wire.local_pref, Some(200));
    assert_eq!(wire.link_bandwidth_bytes_per_sec, Some(375_000));
    attributes.local_ready_endpoints = 0;
    assert_eq!(
        wire_attributes(&attributes).link_bandwidth_bytes_per_sec,
        Some(LINK_BANDWIDTH_PER_ENDPOINT)
    );
    attributes.link_bandwidth = false;
    assert_eq!(
        wire_attributes(&attributes).link_bandwidth_bytes_per_sec,
        None
    );
}

fn interface(name: &str, index: u32, networks: &[&str]) -> InterfaceInfo {
    InterfaceInfo {
        name: name.into(),
        index,
        mac: None,
        up: true,
        loopback: false,
        networks: networks.iter().map(|n| net(n)).collect(),
    }
}

#[test]
fn node_addresses_skip_loopback_link_local_and_down_interfaces() {
    let mut lo = interface("lo", 1, &["127.0.0.1/8"]);
    lo.loopback = true;
    let mut down = interface("eth9", 9, &["192.0.2.99/24"]);
    down.up = false;
    let interfaces = [
        lo,
        interface("cp0", 2, &["169.254.100.11/24"]),
        interface("eth0", 3, &["192.0.2.11/24", "2001:db8:1::11/64"]),
        down,
    ];
    assert_eq!(
        node_ipv4_addresses(&interfaces),
        [Ipv4Addr::new(192, 0, 2, 11)]
    );
}

#[test]
fn the_other_family_address_comes_from_the_interface_of_the_session() {
    let interfaces = [
        interface("pods0", 2, &["198.18.1.1/24", "2001:db8:244:1::1/64"]),
        interface(
            "eth0",
            3,
            &["192.0.2.11/24", "fe80::1/64", "2001:db8:1::11/64"],
        ),
    ];
    assert_eq!(
        other_family_address(ip("192.0.2.11"), &interfaces),
        Some(ip("2001:db8:1::11")),
        "the link-local address is skipped"
    );
    assert_eq!(
        other_family_address(ip("2001:db8:1::11"), &interfaces),
        Some(ip("192.0.2.11"))
    );
    assert_eq!(other_family_address(ip("203.0.113.1"), &interfaces), None);
}
