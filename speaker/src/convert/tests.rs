use super::*;
use crate::planner::{ForwardKey, plan};
use serde_json::json;

fn from_json<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).expect("test object deserializes")
}

fn lb_service(name: &str, class: Option<&str>, ingress: &[&str]) -> ServiceObject {
    from_json(json!({
        "metadata": {"namespace": "default", "name": name,
                     "annotations": {"herald.dev/ip-allocated-from-pool": "bgp"}},
        "spec": {
            "type": "LoadBalancer",
            "loadBalancerClass": class,
            "externalTrafficPolicy": "Local",
            "ports": [
                {"name": "http", "port": 80, "targetPort": "web"},
                {"name": "dns", "port": 53, "protocol": "UDP"},
                {"name": "sig", "port": 3868, "protocol": "SCTP"}
            ]
        },
        "status": {"loadBalancer": {"ingress": ingress.iter().map(|ip| json!({"ip": ip})).collect::<Vec<_>>()}}
    }))
}

fn slice(
    name: &str,
    service: &str,
    address_type: &str,
    endpoints: serde_json::Value,
) -> EndpointSlice {
    from_json(json!({
        "metadata": {"namespace": "default", "name": name,
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": address_type,
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": endpoints
    }))
}

fn pool(name: &str, addresses: &[&str], allow_external_ips: bool) -> IPAddressPool {
    from_json(json!({
        "apiVersion": "herald.dev/v1alpha1", "kind": "IPAddressPool",
        "metadata": {"namespace": "herald-system", "name": name},
        "spec": {"addresses": addresses, "allowExternalIPs": allow_external_ips}
    }))
}

fn convert_only(objects: ClusterObjects<'_>) -> Conversion {
    convert(&objects, &ConvertOptions::default())
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("test address")
}

#[test]
fn a_load_balancer_service_of_herald_class_becomes_a_model_service() {
    let services = [lb_service(
        "web",
        Some(LOAD_BALANCER_CLASS),
        &["203.0.113.10", "2001:db8:100::10"],
    )];
    let conversion = convert_only(ClusterObjects {
        services: &services,
        ..Default::default()
    });
    assert!(conversion.problems.is_empty(), "{:?}", conversion.problems);
    let service = &conversion.model.services[&ServiceKey::new("default", "web")];
    assert_eq!(
        service.addresses.iter().map(|a| a.ip).collect::<Vec<_>>(),
        vec![ip("203.0.113.10"), ip("2001:db8:100::10")]
    );
    assert_eq!(service.traffic_policy, TrafficPolicy::Local);
    assert_eq!(service.pool.as_deref(), Some("bgp"));
    assert_eq!(
        service
            .ports
            .iter()
            .map(|p| (p.name.as_str(), p.protocol, p.port))
            .collect::<Vec<_>>(),
        vec![
            ("http", Protocol::Tcp, 80),
            ("dns", Protocol::Udp, 53),
            ("sig", Protocol::Sctp, 3868)
        ]
    );
}

#[test]
fn services_of_another_class_are_ignored_and_classless_ones_only_when_served() {
    let services = [
        lb_service("other", Some("example.com/other-lb"), &["203.0.113.10"]),
        lb_service("classless", None, &["203.0.113.11"]),
    ];
    let objects = ClusterObjects {
        services: &services,
        ..Default::default()
    };
    let served = convert(&objects, &ConvertOptions::default());
    assert_eq!(
        served
            .model
            .services
            .keys()
            .map(|k| k.name.as_str())
            .collect::<Vec<_>>(),
        vec!["classless"]
    );
    let strict = convert(
        &objects,
        &ConvertOptions {
            serve_classless: false,
            ..Default::default()
        },
    );
    assert!(strict.model.services.is_empty());
}

#[test]
fn external_ips_of_a_cluster_ip_service_are_taken_as_external_ip_addresses() {
    let services: [ServiceObject; 1] = [from_json(json!({
        "metadata": {"namespace": "default", "name": "ext",
                     "annotations": {ANNOTATION_EXTERNAL_IPS_BOOKED: "192.0.2.200"}},
        "spec": {"type": "ClusterIP", "externalIPs": ["192.0.2.200", "bogus"],
                 "ports": [{"port": 80}]}
    }))];
    let conversion = convert_only(ClusterObjects {
        services: &services,
        ..Default::default()
    });
    let service = &conversion.model.services[&ServiceKey::new("default", "ext")];
    assert_eq!(
        service.addresses,
        vec![ExternalAddress {
            ip: ip("192.0.2.200"),
            origin: AddressOrigin::ExternalIp
        }]
    );
    assert_eq!(service.ports[0].name, "");
    assert_eq!(service.ports[0].protocol, Protocol::Tcp);
    assert_eq!(conversion.problems.len(), 1, "{:?}", conversion.problems);
    assert!(conversion.problems[0].reason.contains("bogus"));
}

#[test]
fn only_the_external_ips_the_controller_booked_are_announced() {
    let services: [ServiceObject; 2] = [
        from_json(json!({
            "metadata": {"namespace": "default", "name": "some",
                         "annotations": {ANNOTATION_EXTERNAL_IPS_BOOKED: " 2001:db8::7 ,junk,192.0.2.201"}},
            "spec": {"type": "ClusterIP",
                     "externalIPs": ["192.0.2.200", "192.0.2.201", "2001:db8::7"],
                     "ports": [{"port": 80}]}
        })),
        from_json(json!({
            "metadata": {"namespace": "default", "name": "unjudged"},
            "spec": {"type": "ClusterIP", "externalIPs": ["192.0.2.202"],
                     "ports": [{"port": 80}]}
        })),
    ];
    let conversion = convert_only(ClusterObjects {
        services: &services,
        ..Default::default()
    });
    let some = &conversion.model.services[&ServiceKey::new("default", "some")];
    let announced: Vec<IpAddr> = some.addresses.iter().map(|a| a.ip).collect();
    assert_eq!(announced, [ip("192.0.2.201"), ip("2001:db8::7")]);
    assert!(
        !conversion
            .model
            .services
            .contains_key(&ServiceKey::new("default", "unjudged"))
    );
    assert!(conversion.problems.is_empty(), "{:?}", conversion.problems);
}

#[test]
fn a_service_without_any_address_is_left_out() {
    let services = [lb_service("pending", None, &[])];
    let conversion = convert_only(ClusterObjects {
        services: &services,
        ..Default::default()
    });
    assert!(conversion.model.services.is_empty());
    assert!(conversion.problems.is_empty());
}

#[test]
fn endpoint_slices_merge_per_service_and_unknown_conditions_read_as_ready() {
    let services = [lb_service("web", None, &["203.0.113.10"])];
    let slices = [
        slice(
            "web-a",
            "web",
            "IPv4",
            json!([
                {"addresses": ["198.18.1.5"], "nodeName": "n1"},
                {"addresses": ["198.18.1.6"], "nodeName": "n1",
                 "conditions": {"ready": false, "serving": true, "terminating": true}}
            ]),
        ),
        slice(
            "web-b",
            "web",
            "IPv6",
            json!([{"addresses": ["2001:db8:244:1::5"], "nodeName": "n1"}]),
        ),
        slice(
            "web-fqdn",
            "web",
            "FQDN",
            json!([{"addresses": ["pod.example"]}]),
        ),
        slice(
            "other",
            "other",
            "IPv4",
            json!([{"addresses": ["198.18.9.9"]}]),
        ),
    ];
    let conversion = convert_only(ClusterObjects {
        services: &services,
        endpoint_slices: &slices,
        ..Default::default()
    });
    assert!(conversion.problems.is_empty(), "{:?}", conversion.problems);
    let endpoints = &conversion.model.services[&ServiceKey::new("default", "web")].endpoints;
    assert_eq!(endpoints.len(), 3);
    assert_eq!(endpoints[0].conditions, EndpointConditions::READY);
    assert!(!endpoints[1].conditions.accepts_new_traffic());
    assert_eq!(endpoints[0].node.as_deref(), Some("n1"));
    assert_eq!(endpoints[0].ports[0].port, 8080);
}

#[test]
fn a_bad_endpoint_address_is_reported_and_skipped() {
    let slices = [slice(
        "web-a",
        "web",
        "IPv4",
        json!([{"addresses": ["not-an-ip"]}]),
    )];
    let conversion = convert_only(ClusterObjects {
        endpoint_slices: &slices,
        ..Default::default()
    });
    assert_eq!(conversion.problems.len(), 1);
    assert_eq!(conversion.problems[0].kind, "EndpointSlice");
}

#[test]
fn a_node_with_the_exclusion_label_is_excluded() {
    let nodes: [NodeObject; 2] = [
        from_json(json!({
            "metadata": {"name": "n1", "labels": {"zone": "a"}},
            "status": {"addresses": [{"type": "InternalIP", "address": "192.0.2.11"},
                                     {"type": "Hostname", "address": "n1"}]}
        })),
        from_json(json!({
            "metadata": {"name": "n2", "labels": {"node.kubernetes.io/exclude-from-external-load-balancers": ""}}
        })),
    ];
    let conversion = convert_only(ClusterObjects {
        nodes: &nodes,
        ..Default::default()
    });
    let n1 = &conversion.model.nodes["n1"];
    assert!(!n1.excluded);
    assert_eq!(n1.addresses, vec![ip("192.0.2.11")]);
    assert!(conversion.model.nodes["n2"].excluded);
}

#[test]
fn a_pool_keeps_its_valid_entries_and_reports_the_invalid_ones() {
    let pools = [pool(
        "mixed",
        &["203.0.113.0/24", "192.0.2.5/24", "192.0.2.200-192.0.2.210"],
        true,
    )];
    let conversion = convert_only(ClusterObjects {
        pools: &pools,
        ..Default::default()
    });
    let converted = &conversion.model.pools["mixed"];
    assert!(converted.allow_external_ips);
    assert_eq!(
        converted.ranges,
        vec![
            "203.0.113.0/24".parse().expect("net"),
            herald_crds::address::AddressRange::new(ip("192.0.2.200"), ip("192.0.2.210"))
                .expect("range"),
        ]
    );
    assert_eq!(conversion.problems.len(), 1);
    assert!(conversion.problems[0].reason.contains("192.0.2.5/24"));
}

#[test]
fn community_aliases_resolve_and_an_unknown_alias_drops_the_advertisement() {
    let communities: [CommunityResource; 1] = [from_json(json!({
        "apiVersion": "herald.dev/v1alpha1", "kind": "Community",
        "metadata": {"namespace": "herald-system", "name": "aliases"},
        "spec": {"communities": [{"name": "no-advertise", "value": "65535:65282"}]}
    }))];
    let advertisements: [BGPAdvertisement; 2] = [
        from_json(json!({
            "apiVersion": "herald.dev/v1alpha1", "kind": "BGPAdvertisement",
            "metadata": {"namespace": "herald-system", "name": "good"},
            "spec": {"communities": ["no-advertise", "large:64512:1:2"], "localPref": 150,
                     "aggregationLength": 24, "linkBandwidth": {"mode": "LocalEndpoints"}}
        })),
        from_json(json!({
            "apiVersion": "herald.dev/v1alpha1", "kind": "BGPAdvertisement",
            "metadata": {"namespace": "herald-system", "name": "bad"},
            "spec": {"communities": ["missing-alias"]}
        })),
    ];
    let conversion = convert_only(ClusterObjects {
        bgp_advertisements: &advertisements,
        communities: &communities,
        ..Default::default()
    });
    let good = &conversion.model.bgp_advertisements["good"];
    assert_eq!(
        good.communities,
        [
            Community::Standard(0xffff_ff02),
            Community::Large {
                global_admin: 64512,
                local_data_1: 1,
                local_data_2: 2
            }
        ]
        .into()
    );
    assert_eq!(good.local_pref, Some(150));
    assert_eq!(good.aggregation_length_v4, 24);
    assert_eq!(good.aggregation_length_v6, 128);
    assert!(good.link_bandwidth);
    assert!(!conversion.model.bgp_advertisements.contains_key("bad"));
    assert_eq!(conversion.problems.len(), 1);
    assert!(conversion.problems[0].reason.contains("missing-alias"));
}

#[test]
fn an_l2_advertisement_with_an_unknown_selector_operator_is_ignored() {
    let advertisements: [L2AdvertisementResource; 2] = [
        from_json(json!({
            "apiVersion": "herald.dev/v1alpha1", "kind": "L2Advertisement",
            "metadata": {"namespace": "herald-system", "name": "good"},
            "spec": {"pools": ["l2"], "interfaces": ["eth0"],
                     "nodeSelectors": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}
        })),
        from_json(json!({
            "apiVersion": "herald.dev/v1alpha1", "kind": "L2Advertisement",
            "metadata": {"namespace": "herald-system", "name": "bad"},
            "spec": {"nodeSelectors": [{"matchExpressions": [{"key": "zone", "operator": "Gt", "values": ["1"]}]}]}
        })),
    ];
    let conversion = convert_only(ClusterObjects {
        l2_advertisements: &advertisements,
        ..Default::default()
    });
    let good = &conversion.model.l2_advertisements["good"];
    assert_eq!(good.pools.names, ["l2".to_string()].into());
    assert_eq!(good.interfaces, ["eth0".to_string()].into());
    assert_eq!(
        good.node_selectors[0].match_expressions[0].operator,
        crate::model::SelectorOperator::In
    );
    assert!(!conversion.model.l2_advertisements.contains_key("bad"));
    assert_eq!(conversion.problems.len(), 1);
}

#[test]
fn peers_are_parsed_with_rfc_timer_defaults_and_bad_ones_reported() {
    let peers: [BGPPeer; 3] = [
        from_json(json!({
            "apiVersion": "herald.dev/v1alpha1", "kind": "BGPPeer",
            "metadata": {"namespace": "herald-system", "name": "router"},
            "spec": {"myASN": 64512, "peerASN": 64500, "peerAddress": "192.0.2.1",
                     "holdTime": "9s", "passwordSecret": {"name": "bgp-auth"},
                     "routerID": "192.0.2.11"}
        })),
        from_json(json!({
            "apiVersion": "herald.dev/v1alpha1", "kind": "BGPPeer",
            "metadata": {"namespace": "herald-system", "name": "bad-address"},
            "spec": {"myASN": 64512, "peerASN": 64500, "peerAddress": "router.example"}
        })),
        from_json(json!({
            "apiVersion": "herald.dev/v1alpha1", "kind": "BGPPeer",
            "metadata": {"namespace": "herald-system", "name": "bad-hold"},
            "spec": {"myASN": 64512, "peerASN": 64500, "peerAddress": "192.0.2.2", "holdTime": "2s"}
        })),
    ];
    let conversion = convert_only(ClusterObjects {
        peers: &peers,
        ..Default::default()
    });
    let router = &conversion.model.peers["router"];
    assert_eq!(router.peer_address, ip("192.0.2.1"));
    assert_eq!(router.peer_port, 179);
    assert_eq!(router.hold_time_secs, 9);
    assert_eq!(router.keepalive_time_secs, 3);
    assert_eq!(
        router.router_id,
        Some(std::net::Ipv4Addr::new(192, 0, 2, 11))
    );
    let secret = router.password_secret.as_ref().expect("secret ref");
    assert_eq!(secret.namespace, "herald-system");
    assert_eq!(secret.name, "bgp-auth");
    assert!(!secret.key.is_empty());
    assert_eq!(conversion.model.peers.len(), 1);
    assert_eq!(
        conversion
            .problems
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>(),
        vec!["herald-system/bad-address", "herald-system/bad-hold"]
    );
}

#[test]
fn a_peer_naming_a_bfd_profile_gets_its_timing_and_a_missing_profile_only_turns_bfd_off() {
    let peers: [BGPPeer; 2] = [
        from_json(json!({
            "apiVersion": "herald.dev/v1alpha1", "kind": "BGPPeer",
            "metadata": {"namespace": "herald-system", "name": "router"},
            "spec": {"myASN": 64512, "peerASN": 64500, "peerAddress": "192.0.2.1",
                     "bfdProfile": "fast"}
        })),
        from_json(json!({
            "apiVersion": "herald.dev/v1alpha1", "kind": "BGPPeer",
            "metadata": {"namespace": "herald-system", "name": "other"},
            "spec": {"myASN": 64512, "peerASN": 64500, "peerAddress": "192.0.2.2",
                     "bfdProfile": "missing"}
        })),
    ];
    let profiles: [BFDProfile; 2] = [
        from_json(json!({
            "apiVersion": "herald.dev/v1alpha1", "kind": "BFDProfile",
            "metadata": {"namespace": "herald-system", "name": "fast"},
            "spec": {"receiveInterval": 100, "transmitInterval": 50, "detectMultiplier": 4,
                     "passiveMode": true, "minimumTtl": 250}
        })),
        // Same name in another namespace: not the peer's.
        from_json(json!({
            "apiVersion": "herald.dev/v1alpha1", "kind": "BFDProfile",
            "metadata": {"namespace": "elsewhere", "name": "missing"},
            "spec": {}
        })),
    ];
    let conversion = convert_only(ClusterObjects {
        peers: &peers,
        bfd_profiles: &profiles,
        ..Default::default()
    });
    let bfd = conversion.model.peers["router"]
        .bfd
        .expect("profile resolved");
    assert_eq!(
        bfd.profile.required_min_rx,
        std::time::Duration::from_millis(100)
    );
    assert_eq!(
        bfd.profile.desired_min_tx,
        std::time::Duration::from_millis(50)
    );
    assert_eq!(bfd.profile.detect_mult, 4);
    assert!(bfd.profile.passive);
    assert_eq!(bfd.minimum_ttl, 250);
    assert_eq!(conversion.model.peers["other"].bfd, None);
    assert_eq!(conversion.problems.len(), 1);
    assert!(
        conversion.problems[0]
            .reason
            .contains("\"missing\" not found")
    );
}

#[test]
fn converted_objects_plan_into_forwarding_end_to_end() {
    let services = [lb_service("web", None, &["203.0.113.10"])];
    let slices = [slice(
        "web-a",
        "web",
        "IPv4",
        json!([{"addresses": ["198.18.1.5"], "nodeName": "n1"}]),
    )];
    let pools = [pool("bgp", &["203.0.113.0/24"], false)];
    let nodes: [NodeObject; 1] = [from_json(json!({"metadata": {"name": "n1"}}))];
    let conversion = convert_only(ClusterObjects {
        services: &services,
        endpoint_slices: &slices,
        pools: &pools,
        nodes: &nodes,
        ..Default::default()
    });
    let node_plan = plan(&conversion.model, "n1", &BTreeSet::new());
    let target = &node_plan.forwarding[&ForwardKey {
        address: ip("203.0.113.10"),
        protocol: Protocol::Tcp,
        port: 80,
    }];
    assert_eq!(target.backends.len(), 1);
    assert_eq!(target.backends[0].port, 8080);
    assert!(!target.backends[0].masquerade);
}
