//! Tests of [`super`] (planner.rs).

use super::*;
use crate::model::{
    BgpAdvertisement, EndpointConditions, EndpointPort, ExternalAddress, L2Advertisement,
    LabelSelector, PoolSelection,
};

fn ip(text: &str) -> IpAddr {
    text.parse().expect("test address")
}

fn net(text: &str) -> IpNet {
    text.parse().expect("test prefix")
}

/// A community as production parses it (the API's parser, then the model's value).
fn community(text: &str) -> Community {
    herald_crds::api::CommunityValue::parse(text)
        .map(Community::from)
        .expect("community")
}

fn key(name: &str) -> ServiceKey {
    ServiceKey::new("default", name)
}

fn node(name: &str, labels: &[(&str, &str)]) -> Node {
    Node {
        name: name.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        addresses: vec![],
        excluded: false,
    }
}

fn pool(name: &str, cidrs: &[&str], allow_external_ips: bool) -> Pool {
    Pool {
        name: name.into(),
        labels: BTreeMap::new(),
        ranges: cidrs.iter().map(|c| c.parse().expect("cidr")).collect(),
        allow_external_ips,
    }
}

fn endpoint(address: &str, node: &str, conditions: EndpointConditions) -> Endpoint {
    Endpoint {
        addresses: vec![ip(address)],
        node: Some(node.into()),
        conditions,
        ports: vec![EndpointPort {
            name: "http".into(),
            protocol: Protocol::Tcp,
            port: 8080,
        }],
    }
}

fn ready(address: &str, node: &str) -> Endpoint {
    endpoint(address, node, EndpointConditions::READY)
}

fn service(name: &str, address: &str, policy: TrafficPolicy, endpoints: Vec<Endpoint>) -> Service {
    Service {
        key: key(name),
        addresses: vec![ExternalAddress {
            ip: ip(address),
            origin: AddressOrigin::LoadBalancerIngress,
        }],
        ports: vec![ServicePort {
            name: "http".into(),
            protocol: Protocol::Tcp,
            port: 80,
        }],
        traffic_policy: policy,
        pool: None,
        endpoints,
    }
}

fn l2_advertisement(
    name: &str,
    node_selectors: Vec<LabelSelector>,
    interfaces: &[&str],
) -> L2Advertisement {
    L2Advertisement {
        name: name.into(),
        pools: PoolSelection::default(),
        node_selectors,
        interfaces: interfaces.iter().map(|i| i.to_string()).collect(),
    }
}

fn bgp_advertisement(name: &str) -> BgpAdvertisement {
    BgpAdvertisement {
        name: name.into(),
        pools: PoolSelection::default(),
        node_selectors: vec![],
        peers: BTreeSet::new(),
        communities: BTreeSet::new(),
        local_pref: None,
        aggregation_length_v4: 32,
        aggregation_length_v6: 128,
        link_bandwidth: false,
    }
}

fn peer(name: &str, my_asn: u32, peer_asn: u32) -> Peer {
    Peer {
        name: name.into(),
        my_asn,
        peer_asn,
        peer_address: ip("192.0.2.1"),
        peer_port: 179,
        source_address: None,
        router_id: None,
        hold_time_secs: 90,
        keepalive_time_secs: 30,
        connect_time_secs: 10,
        ebgp_multihop: false,
        password_secret: None,
        node_selectors: vec![],
        graceful_restart: false,
        bfd: None,
    }
}

fn selector(key: &str, value: &str) -> LabelSelector {
    LabelSelector {
        match_labels: [(key.to_string(), value.to_string())].into(),
        match_expressions: vec![],
    }
}

/// Three nodes, one L2 pool and one BGP pool, no services yet.
fn cluster() -> Model {
    Model {
        nodes: [
            node("n1", &[("zone", "a")]),
            node("n2", &[("zone", "a")]),
            node("n3", &[("zone", "b")]),
        ]
        .into_iter()
        .map(|n| (n.name.clone(), n))
        .collect(),
        pools: [
            pool("l2", &["192.0.2.128/25", "2001:db8:1::100/120"], true),
            pool("bgp", &["203.0.113.0/24", "2001:db8:100::/120"], false),
        ]
        .into_iter()
        .map(|p| (p.name.clone(), p))
        .collect(),
        ..Default::default()
    }
}

fn with_service(mut model: Model, service: Service) -> Model {
    model.services.insert(service.key.clone(), service);
    model
}

/// Adds the eBGP peer `router` (our AS 64512, its AS 64500).
fn add_router(model: &mut Model) {
    model
        .peers
        .insert("router".into(), peer("router", 64512, 64500));
}

/// Adds the BGPAdvertisement `name` of [`bgp_advertisement`] (no selectors).
fn add_bgp_advertisement(model: &mut Model, name: &str) {
    model
        .bgp_advertisements
        .insert(name.into(), bgp_advertisement(name));
}

/// Adds an L2Advertisement `name` without node selectors or interfaces.
fn add_l2_advertisement(model: &mut Model, name: &str) {
    model
        .l2_advertisements
        .insert(name.into(), l2_advertisement(name, vec![], &[]));
}

fn all_live() -> BTreeSet<String> {
    ["n1", "n2", "n3"].iter().map(|n| n.to_string()).collect()
}

fn forward_key(address: &str, port: u16) -> ForwardKey {
    ForwardKey {
        address: ip(address),
        protocol: Protocol::Tcp,
        port,
    }
}

#[test]
fn cluster_policy_forwards_to_every_ready_endpoint_and_masquerades_only_remote_ones() {
    let model = with_service(
        cluster(),
        service(
            "web",
            "203.0.113.10",
            TrafficPolicy::Cluster,
            vec![ready("198.18.1.5", "n1"), ready("198.18.2.5", "n2")],
        ),
    );
    let plan = plan(&model, "n1", &all_live());
    let target = &plan.forwarding[&forward_key("203.0.113.10", 80)];
    assert_eq!(target.service, key("web"));
    assert_eq!(
        target.backends,
        vec![
            Backend {
                address: ip("198.18.1.5"),
                port: 8080,
                masquerade: false
            },
            Backend {
                address: ip("198.18.2.5"),
                port: 8080,
                masquerade: true
            },
        ]
    );
}

#[test]
fn local_policy_forwards_only_to_this_nodes_endpoints_without_masquerade() {
    let model = with_service(
        cluster(),
        service(
            "web",
            "203.0.113.10",
            TrafficPolicy::Local,
            vec![ready("198.18.1.5", "n1"), ready("198.18.2.5", "n2")],
        ),
    );
    let plan = plan(&model, "n2", &all_live());
    assert_eq!(
        plan.forwarding[&forward_key("203.0.113.10", 80)].backends,
        vec![Backend {
            address: ip("198.18.2.5"),
            port: 8080,
            masquerade: false
        }]
    );
}

#[test]
fn local_policy_without_a_local_endpoint_forwards_and_announces_nothing() {
    let mut model = with_service(
        cluster(),
        service(
            "web",
            "203.0.113.10",
            TrafficPolicy::Local,
            vec![ready("198.18.1.5", "n1")],
        ),
    );
    add_router(&mut model);
    add_bgp_advertisement(&mut model, "all");
    add_l2_advertisement(&mut model, "all");
    let plan = plan(&model, "n3", &all_live());
    assert!(plan.forwarding.is_empty());
    assert!(plan.bgp.routes.is_empty());
    assert!(plan.bgp.sessions.contains_key("router"));
    assert!(plan.l2.values().all(|a| !a.is_candidate("n3")));
}

#[test]
fn cluster_policy_with_no_ready_endpoint_forwards_to_an_empty_backend_list() {
    let model = with_service(
        cluster(),
        service(
            "web",
            "203.0.113.10",
            TrafficPolicy::Cluster,
            vec![endpoint(
                "198.18.1.5",
                "n1",
                EndpointConditions {
                    ready: false,
                    serving: false,
                    terminating: false,
                },
            )],
        ),
    );
    let plan = plan(&model, "n2", &all_live());
    assert!(
        plan.forwarding[&forward_key("203.0.113.10", 80)]
            .backends
            .is_empty()
    );
}

#[test]
fn terminating_and_not_ready_endpoints_receive_no_new_traffic() {
    let terminating = EndpointConditions {
        ready: false,
        serving: true,
        terminating: true,
    };
    let not_ready = EndpointConditions {
        ready: false,
        serving: false,
        terminating: false,
    };
    let model = with_service(
        cluster(),
        service(
            "web",
            "203.0.113.10",
            TrafficPolicy::Cluster,
            vec![
                endpoint("198.18.1.5", "n1", terminating),
                endpoint("198.18.1.6", "n1", not_ready),
                ready("198.18.1.7", "n1"),
            ],
        ),
    );
    let plan = plan(&model, "n1", &all_live());
    let addresses: Vec<IpAddr> = plan.forwarding[&forward_key("203.0.113.10", 80)]
        .backends
        .iter()
        .map(|b| b.address)
        .collect();
    assert_eq!(addresses, vec![ip("198.18.1.7")]);
}

#[test]
fn an_ipv6_address_forwards_only_to_ipv6_endpoints() {
    let mut svc = service(
        "web",
        "2001:db8:100::10",
        TrafficPolicy::Cluster,
        vec![ready("198.18.1.5", "n1"), ready("2001:db8:244:1::5", "n1")],
    );
    svc.addresses.push(ExternalAddress {
        ip: ip("203.0.113.10"),
        origin: AddressOrigin::LoadBalancerIngress,
    });
    let plan = plan(&with_service(cluster(), svc), "n1", &all_live());
    let v6 = &plan.forwarding[&forward_key("2001:db8:100::10", 80)].backends;
    let v4 = &plan.forwarding[&forward_key("203.0.113.10", 80)].backends;
    assert_eq!(
        v6.iter().map(|b| b.address).collect::<Vec<_>>(),
        vec![ip("2001:db8:244:1::5")]
    );
    assert_eq!(
        v4.iter().map(|b| b.address).collect::<Vec<_>>(),
        vec![ip("198.18.1.5")]
    );
}

#[test]
fn each_service_port_resolves_its_own_target_port_and_protocol() {
    let mut svc = service("dns", "203.0.113.53", TrafficPolicy::Cluster, vec![]);
    svc.ports = vec![
        ServicePort {
            name: "dns-udp".into(),
            protocol: Protocol::Udp,
            port: 53,
        },
        ServicePort {
            name: "dns-tcp".into(),
            protocol: Protocol::Tcp,
            port: 53,
        },
        ServicePort {
            name: "sig".into(),
            protocol: Protocol::Sctp,
            port: 2905,
        },
    ];
    svc.endpoints = vec![Endpoint {
        addresses: vec![ip("198.18.1.53")],
        node: Some("n1".into()),
        conditions: EndpointConditions::READY,
        ports: vec![
            EndpointPort {
                name: "dns-udp".into(),
                protocol: Protocol::Udp,
                port: 5353,
            },
            EndpointPort {
                name: "dns-tcp".into(),
                protocol: Protocol::Tcp,
                port: 5354,
            },
            EndpointPort {
                name: "sig".into(),
                protocol: Protocol::Sctp,
                port: 2906,
            },
        ],
    }];
    let plan = plan(&with_service(cluster(), svc), "n1", &all_live());
    let port_of = |protocol, port| {
        plan.forwarding[&ForwardKey {
            address: ip("203.0.113.53"),
            protocol,
            port,
        }]
            .backends[0]
            .port
    };
    assert_eq!(port_of(Protocol::Udp, 53), 5353);
    assert_eq!(port_of(Protocol::Tcp, 53), 5354);
    assert_eq!(port_of(Protocol::Sctp, 2905), 2906);
}

#[test]
fn an_endpoint_without_the_named_port_is_left_out() {
    let mut other_port = ready("198.18.1.6", "n1");
    other_port.ports[0].name = "metrics".into();
    let model = with_service(
        cluster(),
        service(
            "web",
            "203.0.113.10",
            TrafficPolicy::Cluster,
            vec![ready("198.18.1.5", "n1"), other_port],
        ),
    );
    let plan = plan(&model, "n1", &all_live());
    assert_eq!(
        plan.forwarding[&forward_key("203.0.113.10", 80)]
            .backends
            .len(),
        1
    );
}

#[test]
fn an_endpoint_listed_twice_by_overlapping_slices_appears_once() {
    let model = with_service(
        cluster(),
        service(
            "web",
            "203.0.113.10",
            TrafficPolicy::Cluster,
            vec![ready("198.18.1.5", "n1"), ready("198.18.1.5", "n1")],
        ),
    );
    let plan = plan(&model, "n1", &all_live());
    assert_eq!(
        plan.forwarding[&forward_key("203.0.113.10", 80)]
            .backends
            .len(),
        1
    );
}

#[test]
fn an_address_outside_every_pool_is_neither_forwarded_nor_announced_and_is_reported() {
    let mut model = with_service(
        cluster(),
        service(
            "web",
            "198.51.100.7",
            TrafficPolicy::Cluster,
            vec![ready("198.18.1.5", "n1")],
        ),
    );
    add_l2_advertisement(&mut model, "all");
    let plan = plan(&model, "n1", &all_live());
    assert!(plan.forwarding.is_empty());
    assert!(plan.l2.is_empty());
    assert_eq!(
        plan.warnings,
        vec![PlanWarning::AddressOutsidePools {
            service: key("web"),
            address: ip("198.51.100.7")
        }]
    );
}

#[test]
fn a_nodes_own_address_is_never_announced_nor_forwarded() {
    // A pool overlapping the node network: the Service got node n2's address.
    let mut model = cluster();
    if let Some(n2) = model.nodes.get_mut("n2") {
        n2.addresses = vec![ip("192.0.2.130"), ip("2001:db8:1::12")];
    }
    let svc = service(
        "web",
        "192.0.2.130",
        TrafficPolicy::Cluster,
        vec![ready("198.18.1.5", "n1")],
    );
    let plan = plan(&with_service(model, svc), "n1", &all_live());
    assert!(plan.forwarding.is_empty());
    assert!(plan.l2.is_empty());
    assert!(plan.bgp.routes.values().all(BTreeMap::is_empty));
    assert_eq!(
        plan.warnings,
        vec![PlanWarning::NodeAddress {
            service: key("web"),
            address: ip("192.0.2.130"),
            node: "n2".into(),
        }]
    );
}

#[test]
fn an_external_ip_is_served_only_inside_a_pool_that_allows_external_ips() {
    let mut svc = service(
        "web",
        "192.0.2.200",
        TrafficPolicy::Cluster,
        vec![ready("198.18.1.5", "n1")],
    );
    svc.addresses = vec![
        ExternalAddress {
            ip: ip("192.0.2.200"),
            origin: AddressOrigin::ExternalIp,
        },
        ExternalAddress {
            ip: ip("203.0.113.99"),
            origin: AddressOrigin::ExternalIp,
        },
    ];
    let plan = plan(&with_service(cluster(), svc), "n1", &all_live());
    assert!(
        plan.forwarding
            .contains_key(&forward_key("192.0.2.200", 80))
    );
    assert!(
        !plan
            .forwarding
            .contains_key(&forward_key("203.0.113.99", 80))
    );
    assert_eq!(
        plan.warnings,
        vec![PlanWarning::ExternalIpNotAllowed {
            service: key("web"),
            address: ip("203.0.113.99"),
            pool: "bgp".into()
        }]
    );
}

#[test]
fn an_address_listed_as_both_ingress_and_external_ip_counts_as_ingress() {
    let mut svc = service(
        "web",
        "203.0.113.10",
        TrafficPolicy::Cluster,
        vec![ready("198.18.1.5", "n1")],
    );
    svc.addresses.push(ExternalAddress {
        ip: ip("203.0.113.10"),
        origin: AddressOrigin::ExternalIp,
    });
    let plan = plan(&with_service(cluster(), svc), "n1", &all_live());
    assert!(plan.warnings.is_empty());
    assert_eq!(plan.forwarding.len(), 1);
}

#[test]
fn two_services_claiming_one_address_and_port_keep_the_first_and_report_the_clash() {
    let model = with_service(
        with_service(
            cluster(),
            service(
                "a",
                "203.0.113.10",
                TrafficPolicy::Cluster,
                vec![ready("198.18.1.5", "n1")],
            ),
        ),
        service(
            "b",
            "203.0.113.10",
            TrafficPolicy::Cluster,
            vec![ready("198.18.1.6", "n1")],
        ),
    );
    let plan = plan(&model, "n1", &all_live());
    assert_eq!(
        plan.forwarding[&forward_key("203.0.113.10", 80)].service,
        key("a")
    );
    assert_eq!(
        plan.warnings,
        vec![PlanWarning::PortClash {
            key: forward_key("203.0.113.10", 80),
            kept: key("a"),
            dropped: key("b")
        }]
    );
}

#[test]
fn l2_candidates_are_the_live_nodes_matching_the_advertisement_selectors() {
    let mut model = with_service(
        cluster(),
        service(
            "web",
            "192.0.2.130",
            TrafficPolicy::Cluster,
            vec![ready("198.18.1.5", "n1")],
        ),
    );
    model.l2_advertisements.insert(
        "zone-a".into(),
        l2_advertisement("zone-a", vec![selector("zone", "a")], &["eth0"]),
    );
    let live: BTreeSet<String> = ["n2".to_string(), "n3".to_string()].into();
    let plan = plan(&model, "n1", &live);
    let announcement = &plan.l2[&ip("192.0.2.130")];
    assert_eq!(
        announcement.candidates,
        ["n1".to_string(), "n2".to_string()].into()
    );
    assert_eq!(
        announcement.interfaces,
        Some(InterfaceSelection::Only(["eth0".to_string()].into()))
    );
    assert_eq!(announcement.services, [key("web")].into());
}

#[test]
fn a_dead_speaker_is_not_an_l2_candidate() {
    let mut model = with_service(
        cluster(),
        service("web", "192.0.2.130", TrafficPolicy::Cluster, vec![]),
    );
    add_l2_advertisement(&mut model, "all");
    let live: BTreeSet<String> = ["n3".to_string()].into();
    let plan = plan(&model, "n1", &live);
    assert_eq!(
        plan.l2[&ip("192.0.2.130")].candidates,
        ["n1".to_string(), "n3".to_string()].into()
    );
    // Still counted as eligible, so a speaker can tell how much of the cluster it sees.
    assert_eq!(
        plan.l2[&ip("192.0.2.130")].eligible,
        ["n1".to_string(), "n2".to_string(), "n3".to_string()].into()
    );
}

#[test]
fn an_excluded_node_is_never_an_l2_candidate_nor_announces_bgp() {
    let mut model = with_service(
        cluster(),
        service("web", "192.0.2.130", TrafficPolicy::Cluster, vec![]),
    );
    add_l2_advertisement(&mut model, "all");
    add_bgp_advertisement(&mut model, "all");
    add_router(&mut model);
    if let Some(n2) = model.nodes.get_mut("n2") {
        n2.excluded = true;
    }
    let plan_n1 = plan(&model, "n1", &all_live());
    assert!(!plan_n1.l2[&ip("192.0.2.130")].is_candidate("n2"));
    assert!(plan_n1.bgp.routes.contains_key("router"));
    let plan_n2 = plan(&model, "n2", &all_live());
    assert_eq!(plan_n2.l2[&ip("192.0.2.130")].interfaces, None);
    assert!(plan_n2.bgp.routes.is_empty());
}

#[test]
fn local_policy_makes_only_nodes_with_a_ready_endpoint_l2_candidates() {
    let mut model = with_service(
        cluster(),
        service(
            "web",
            "192.0.2.130",
            TrafficPolicy::Local,
            vec![
                ready("198.18.2.5", "n2"),
                endpoint(
                    "198.18.3.5",
                    "n3",
                    EndpointConditions {
                        ready: false,
                        serving: true,
                        terminating: true,
                    },
                ),
            ],
        ),
    );
    add_l2_advertisement(&mut model, "all");
    let plan = plan(&model, "n1", &all_live());
    assert_eq!(
        plan.l2[&ip("192.0.2.130")].candidates,
        ["n2".to_string()].into()
    );
}

#[test]
fn an_address_whose_pool_no_l2_advertisement_selects_gets_no_l2_entry() {
    let mut model = with_service(
        cluster(),
        service("web", "203.0.113.10", TrafficPolicy::Cluster, vec![]),
    );
    let mut only_l2_pool = l2_advertisement("l2-only", vec![], &[]);
    only_l2_pool.pools.names = ["l2".to_string()].into();
    model
        .l2_advertisements
        .insert("l2-only".into(), only_l2_pool);
    let plan = plan(&model, "n1", &all_live());
    assert!(plan.l2.is_empty());
}

#[test]
fn interfaces_of_all_matching_l2_advertisements_are_merged_and_an_empty_list_means_any() {
    let mut model = with_service(
        cluster(),
        service("web", "192.0.2.130", TrafficPolicy::Cluster, vec![]),
    );
    model
        .l2_advertisements
        .insert("a".into(), l2_advertisement("a", vec![], &["eth0"]));
    model
        .l2_advertisements
        .insert("b".into(), l2_advertisement("b", vec![], &["eth1"]));
    let merged = plan(&model, "n1", &all_live());
    assert_eq!(
        merged.l2[&ip("192.0.2.130")].interfaces,
        Some(InterfaceSelection::Only(
            ["eth0".to_string(), "eth1".to_string()].into()
        ))
    );
    add_l2_advertisement(&mut model, "c");
    let any = plan(&model, "n1", &all_live());
    assert_eq!(
        any.l2[&ip("192.0.2.130")].interfaces,
        Some(InterfaceSelection::Any)
    );
}

#[test]
fn cluster_policy_is_announced_over_bgp_by_every_eligible_node_even_without_endpoints() {
    let mut model = with_service(
        cluster(),
        service(
            "web",
            "203.0.113.10",
            TrafficPolicy::Cluster,
            vec![ready("198.18.1.5", "n1")],
        ),
    );
    add_router(&mut model);
    add_bgp_advertisement(&mut model, "all");
    for node in ["n1", "n2", "n3"] {
        let plan = plan(&model, node, &all_live());
        let route = &plan.bgp.routes["router"][&net("203.0.113.10/32")];
        let expected = u32::from(node == "n1");
        assert_eq!(route.local_ready_endpoints, expected, "on {node}");
    }
}

#[test]
fn local_policy_is_announced_over_bgp_only_with_a_local_ready_endpoint_counted() {
    let mut model = with_service(
        cluster(),
        service(
            "web",
            "203.0.113.10",
            TrafficPolicy::Local,
            vec![
                ready("198.18.2.5", "n2"),
                ready("198.18.2.6", "n2"),
                ready("198.18.2.7", "n2"),
                ready("198.18.1.5", "n1"),
            ],
        ),
    );
    add_router(&mut model);
    add_bgp_advertisement(&mut model, "all");
    let n2 = plan(&model, "n2", &all_live());
    assert_eq!(
        n2.bgp.routes["router"][&net("203.0.113.10/32")].local_ready_endpoints,
        3
    );
    let n1 = plan(&model, "n1", &all_live());
    assert_eq!(
        n1.bgp.routes["router"][&net("203.0.113.10/32")].local_ready_endpoints,
        1
    );
    let n3 = plan(&model, "n3", &all_live());
    assert!(n3.bgp.routes.is_empty());
}

#[test]
fn bgp_sessions_and_routes_follow_peer_and_advertisement_node_selectors() {
    let mut model = with_service(
        cluster(),
        service("web", "203.0.113.10", TrafficPolicy::Cluster, vec![]),
    );
    let mut zone_a_router = peer("zone-a-router", 64512, 64500);
    zone_a_router.node_selectors = vec![selector("zone", "a")];
    model.peers.insert("zone-a-router".into(), zone_a_router);
    model
        .peers
        .insert("core".into(), peer("core", 64512, 64501));
    let mut only_core = bgp_advertisement("only-core");
    only_core.peers = ["core".to_string()].into();
    model
        .bgp_advertisements
        .insert("only-core".into(), only_core);
    let n1 = plan(&model, "n1", &all_live());
    assert_eq!(
        n1.bgp.sessions.keys().cloned().collect::<Vec<_>>(),
        vec!["core".to_string(), "zone-a-router".to_string()]
    );
    assert_eq!(
        n1.bgp.routes.keys().cloned().collect::<Vec<_>>(),
        vec!["core".to_string()]
    );
    let n3 = plan(&model, "n3", &all_live());
    assert_eq!(
        n3.bgp.sessions.keys().cloned().collect::<Vec<_>>(),
        vec!["core".to_string()]
    );
    let mut zone_b_only = bgp_advertisement("zone-b");
    zone_b_only.node_selectors = vec![selector("zone", "b")];
    model.bgp_advertisements.clear();
    model
        .bgp_advertisements
        .insert("zone-b".into(), zone_b_only);
    assert!(plan(&model, "n1", &all_live()).bgp.routes.is_empty());
    assert!(!plan(&model, "n3", &all_live()).bgp.routes.is_empty());
}

#[test]
fn communities_merge_and_local_pref_goes_only_to_ibgp_peers() {
    let mut model = with_service(
        cluster(),
        service("web", "203.0.113.10", TrafficPolicy::Cluster, vec![]),
    );
    model
        .peers
        .insert("ibgp".into(), peer("ibgp", 64512, 64512));
    model
        .peers
        .insert("ebgp".into(), peer("ebgp", 64512, 64500));
    let mut first = bgp_advertisement("first");
    first.communities = [community("65000:1")].into();
    first.local_pref = Some(100);
    let mut second = bgp_advertisement("second");
    second.communities = [community("large:65000:2:3")].into();
    second.local_pref = Some(200);
    model.bgp_advertisements.insert("first".into(), first);
    model.bgp_advertisements.insert("second".into(), second);
    let plan = plan(&model, "n1", &all_live());
    let ibgp = &plan.bgp.routes["ibgp"][&net("203.0.113.10/32")];
    let ebgp = &plan.bgp.routes["ebgp"][&net("203.0.113.10/32")];
    assert_eq!(ibgp.local_pref, Some(200));
    assert_eq!(ebgp.local_pref, None);
    assert_eq!(ibgp.communities.len(), 2);
    assert_eq!(ebgp.communities, ibgp.communities);
}

#[test]
fn link_bandwidth_is_requested_when_any_matching_advertisement_asks_for_it() {
    let mut model = with_service(
        cluster(),
        service("web", "203.0.113.10", TrafficPolicy::Cluster, vec![]),
    );
    add_router(&mut model);
    add_bgp_advertisement(&mut model, "plain");
    let plain = plan(&model, "n1", &all_live());
    assert!(!plain.bgp.routes["router"][&net("203.0.113.10/32")].link_bandwidth);
    let mut weighted = bgp_advertisement("weighted");
    weighted.link_bandwidth = true;
    model.bgp_advertisements.insert("weighted".into(), weighted);
    let both = plan(&model, "n1", &all_live());
    assert!(both.bgp.routes["router"][&net("203.0.113.10/32")].link_bandwidth);
}

#[test]
fn aggregation_groups_cluster_addresses_but_never_local_ones_or_past_the_pool() {
    let mut model = with_service(
        with_service(
            with_service(
                cluster(),
                service("a", "203.0.113.10", TrafficPolicy::Cluster, vec![]),
            ),
            service("b", "203.0.113.20", TrafficPolicy::Cluster, vec![]),
        ),
        service(
            "c",
            "203.0.113.30",
            TrafficPolicy::Local,
            vec![ready("198.18.1.5", "n1")],
        ),
    );
    add_router(&mut model);
    let mut aggregate = bgp_advertisement("agg");
    aggregate.aggregation_length_v4 = 16;
    model.bgp_advertisements.insert("agg".into(), aggregate);
    let plan = plan(&model, "n1", &all_live());
    let routes = &plan.bgp.routes["router"];
    assert_eq!(
        routes.keys().copied().collect::<Vec<_>>(),
        vec![net("203.0.113.0/24"), net("203.0.113.30/32")]
    );
    assert_eq!(
        routes[&net("203.0.113.0/24")].services,
        [key("a"), key("b")].into()
    );
}

#[test]
fn a_node_unknown_to_the_model_announces_nothing() {
    let mut model = with_service(
        cluster(),
        service("web", "192.0.2.130", TrafficPolicy::Cluster, vec![]),
    );
    add_router(&mut model);
    add_bgp_advertisement(&mut model, "all");
    add_l2_advertisement(&mut model, "all");
    let plan = plan(&model, "ghost", &all_live());
    assert!(plan.bgp.sessions.is_empty());
    assert!(!plan.l2[&ip("192.0.2.130")].is_candidate("ghost"));
    assert_eq!(
        plan.forwarding.len(),
        1,
        "forwarding does not depend on announcing"
    );
}

fn dead(nodes: &[&str]) -> BTreeSet<String> {
    nodes.iter().map(|n| n.to_string()).collect()
}

fn backend(address: &str, masquerade: bool) -> Backend {
    Backend {
        address: ip(address),
        port: 8080,
        masquerade,
    }
}

fn three_backend_cluster_service(policy: TrafficPolicy) -> Model {
    with_service(
        cluster(),
        service(
            "web",
            "203.0.113.10",
            policy,
            vec![
                ready("198.18.1.5", "n1"),
                ready("198.18.2.5", "n2"),
                ready("198.18.3.5", "n3"),
            ],
        ),
    )
}

#[test]
fn endpoints_on_a_dead_node_take_no_new_connections_and_are_reported_as_evicted() {
    let model = three_backend_cluster_service(TrafficPolicy::Cluster);
    let live = dead(&["n1", "n2"]);
    let plan = plan_evicting(&model, "n1", &live, &dead(&["n3"]));
    let key = forward_key("203.0.113.10", 80);
    assert_eq!(
        plan.forwarding[&key].backends,
        vec![backend("198.18.1.5", false), backend("198.18.2.5", true)]
    );
    assert_eq!(
        plan.eviction.evicted[&key],
        [backend("198.18.3.5", true)].into()
    );
    assert!(plan.eviction.kept_whole.is_empty());
    assert_eq!(plan.eviction.evicted_addresses(), [ip("198.18.3.5")].into());
}

#[test]
fn a_port_whose_every_endpoint_is_on_dead_nodes_keeps_its_last_set_rather_than_rejecting() {
    let model = with_service(
        cluster(),
        service(
            "web",
            "203.0.113.10",
            TrafficPolicy::Cluster,
            vec![ready("198.18.2.5", "n2"), ready("198.18.3.5", "n3")],
        ),
    );
    let plan = plan_evicting(&model, "n1", &dead(&["n1"]), &dead(&["n2", "n3"]));
    let key = forward_key("203.0.113.10", 80);
    assert_eq!(
        plan.forwarding[&key].backends,
        vec![backend("198.18.2.5", true), backend("198.18.3.5", true)]
    );
    assert!(plan.eviction.evicted.is_empty());
    assert_eq!(plan.eviction.kept_whole, [key].into());
}

#[test]
fn this_node_never_evicts_its_own_endpoints_even_if_listed_dead() {
    let model = three_backend_cluster_service(TrafficPolicy::Cluster);
    let plan = plan_evicting(&model, "n1", &all_live(), &dead(&["n1"]));
    assert_eq!(
        plan.forwarding[&forward_key("203.0.113.10", 80)]
            .backends
            .len(),
        3
    );
    assert_eq!(plan.eviction, EvictionReport::default());
}

#[test]
fn local_policy_is_untouched_by_eviction_because_it_uses_only_this_nodes_endpoints() {
    let model = three_backend_cluster_service(TrafficPolicy::Local);
    let without = plan(&model, "n2", &all_live());
    let with = plan_evicting(&model, "n2", &dead(&["n2"]), &dead(&["n1", "n3"]));
    assert_eq!(with.forwarding, without.forwarding);
    assert_eq!(with.eviction, EvictionReport::default());
}

#[test]
fn endpoints_without_a_node_name_are_never_evicted() {
    let mut unplaced = ready("198.18.9.9", "n3");
    unplaced.node = None;
    let model = with_service(
        cluster(),
        service(
            "web",
            "203.0.113.10",
            TrafficPolicy::Cluster,
            vec![ready("198.18.3.5", "n3"), unplaced],
        ),
    );
    let plan = plan_evicting(&model, "n1", &dead(&["n1"]), &dead(&["n3"]));
    assert_eq!(
        plan.forwarding[&forward_key("203.0.113.10", 80)].backends,
        vec![backend("198.18.9.9", true)]
    );
}

#[test]
fn a_node_back_alive_gets_its_endpoints_back_exactly_as_before() {
    let model = three_backend_cluster_service(TrafficPolicy::Cluster);
    let before = plan(&model, "n1", &all_live());
    let during = plan_evicting(&model, "n1", &dead(&["n1", "n2"]), &dead(&["n3"]));
    let after = plan_evicting(&model, "n1", &all_live(), &BTreeSet::new());
    assert_ne!(during.forwarding, before.forwarding);
    assert_eq!(after, before);
}

#[test]
fn eviction_changes_forwarding_only_never_layer_2_candidates_or_bgp_routes() {
    let model = three_backend_cluster_service(TrafficPolicy::Cluster);
    let live = dead(&["n1", "n2"]);
    let without = plan(&model, "n1", &live);
    let with = plan_evicting(&model, "n1", &live, &dead(&["n3"]));
    assert_eq!(with.l2, without.l2);
    assert_eq!(with.bgp, without.bgp);
    assert_eq!(with.warnings, without.warnings);
}
