use super::*;

use herald_crds::api::{IPAddressPoolSpec, ServiceAllocation};
use k8s_openapi::api::core::v1::{
    LoadBalancerIngress, LoadBalancerStatus, ServicePort as ApiPort, ServiceSpec, ServiceStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelectorRequirement, ObjectMeta};

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

fn service(annotations: &[(&str, &str)], spec: ServiceSpec) -> Service {
    Service {
        metadata: ObjectMeta {
            namespace: Some("ns".into()),
            name: Some("web".into()),
            annotations: Some(
                annotations
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}

fn lb_spec() -> ServiceSpec {
    ServiceSpec {
        type_: Some("LoadBalancer".into()),
        ..ServiceSpec::default()
    }
}

#[test]
fn herald_serves_its_own_class_and_classless_services_unless_told_not_to() {
    let with_class = |class: Option<&str>| {
        service(
            &[],
            ServiceSpec {
                load_balancer_class: class.map(str::to_owned),
                ..lb_spec()
            },
        )
    };
    let filter = ClassFilter::herald(false);
    assert!(filter.serves(&with_class(None)));
    assert!(filter.serves(&with_class(Some("herald.dev/lb"))));
    assert!(!filter.serves(&with_class(Some("other.example/lb"))));
    let strict = ClassFilter::herald(true);
    assert!(!strict.serves(&with_class(None)));
    assert!(strict.serves(&with_class(Some("herald.dev/lb"))));
    let custom = ClassFilter {
        class: "example.com/lab-1".into(),
        ignore_classless: true,
    };
    assert!(custom.serves(&with_class(Some("example.com/lab-1"))));
    assert!(!custom.serves(&with_class(Some("herald.dev/lb"))));
}

#[test]
fn only_load_balancer_services_that_are_not_being_deleted_are_served() {
    let filter = ClassFilter::herald(false);
    let cluster_ip = service(
        &[],
        ServiceSpec {
            type_: Some("ClusterIP".into()),
            ..ServiceSpec::default()
        },
    );
    assert!(!filter.serves(&cluster_ip));
    let mut deleting = service(&[], lb_spec());
    deleting.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
    assert!(!filter.serves(&deleting));
}

#[test]
fn every_service_field_the_allocator_needs_is_read() {
    let spec = ServiceSpec {
        ip_families: Some(vec!["IPv6".into(), "IPv4".into()]),
        ip_family_policy: Some("PreferDualStack".into()),
        external_traffic_policy: Some("Local".into()),
        selector: Some([("app".to_owned(), "echo".to_owned())].into()),
        external_ips: Some(vec!["203.0.113.7".into()]),
        ports: Some(vec![
            ApiPort {
                port: 80,
                ..ApiPort::default()
            },
            ApiPort {
                port: 53,
                protocol: Some("UDP".into()),
                ..ApiPort::default()
            },
        ]),
        ..lb_spec()
    };
    let svc = service(
        &[
            ("herald.dev/address-pool", "gold"),
            ("herald.dev/allow-shared-ip", "k1"),
            ("herald.dev/loadBalancerIPs", "192.0.2.10, 2001:db8::10"),
        ],
        spec,
    );
    let converted = service_request(&svc, &[("team".to_owned(), "a".to_owned())].into());
    assert_eq!(converted.errors, vec![]);
    let request = converted.request;
    assert_eq!(request.key, ServiceKey::new("ns", "web"));
    assert_eq!(request.ip_families, vec![Family::V6, Family::V4]);
    assert_eq!(request.ip_family_policy, IpFamilyPolicy::PreferDualStack);
    assert_eq!(
        request.requested_addresses,
        vec![ip("192.0.2.10"), ip("2001:db8::10")]
    );
    assert_eq!(request.pool.as_deref(), Some("gold"));
    assert_eq!(request.sharing_key.as_deref(), Some("k1"));
    assert_eq!(
        request.ports,
        vec![
            ServicePort {
                protocol: Protocol::Tcp,
                port: 80
            },
            ServicePort {
                protocol: Protocol::Udp,
                port: 53
            }
        ]
    );
    assert_eq!(request.traffic_policy, TrafficPolicy::Local);
    assert_eq!(
        request.pod_selector.get("app").map(String::as_str),
        Some("echo")
    );
    assert_eq!(request.external_ips, vec![ip("203.0.113.7")]);
    assert_eq!(
        request.namespace_labels.get("team").map(String::as_str),
        Some("a")
    );
}

#[test]
fn an_invalid_annotation_is_an_error_value_and_the_rest_is_still_read() {
    let svc = service(
        &[
            ("herald.dev/loadBalancerIPs", "192.0.2.300"),
            ("herald.dev/address-pool", " "),
        ],
        ServiceSpec {
            ports: Some(vec![ApiPort {
                port: 70000,
                ..ApiPort::default()
            }]),
            external_ips: Some(vec!["not-an-ip".into()]),
            ..lb_spec()
        },
    );
    let converted = service_request(&svc, &Labels::new());
    assert_eq!(converted.errors.len(), 4, "{:?}", converted.errors);
    assert!(matches!(
        converted.errors[0],
        ServiceFieldError::BadAddress { .. }
    ));
    assert!(converted.errors[0].to_string().contains("192.0.2.300"));
    assert!(
        converted
            .errors
            .contains(&ServiceFieldError::EmptyPoolAnnotation)
    );
    assert!(
        converted
            .errors
            .contains(&ServiceFieldError::PortOutOfRange(70000))
    );
    assert!(converted.request.requested_addresses.is_empty());
    assert_eq!(converted.request.pool, None);
}

#[test]
fn load_balancer_ip_and_the_annotation_must_agree_when_both_are_set() {
    let agree = service(
        &[("herald.dev/loadBalancerIPs", "192.0.2.10,2001:db8::10")],
        ServiceSpec {
            load_balancer_ip: Some("192.0.2.10".into()),
            ..lb_spec()
        },
    );
    assert_eq!(service_request(&agree, &Labels::new()).errors, vec![]);
    let field_only = service(
        &[],
        ServiceSpec {
            load_balancer_ip: Some("192.0.2.11".into()),
            ..lb_spec()
        },
    );
    assert_eq!(
        service_request(&field_only, &Labels::new())
            .request
            .requested_addresses,
        vec![ip("192.0.2.11")]
    );
    let disagree = service(
        &[("herald.dev/loadBalancerIPs", "192.0.2.12")],
        ServiceSpec {
            load_balancer_ip: Some("192.0.2.11".into()),
            ..lb_spec()
        },
    );
    let converted = service_request(&disagree, &Labels::new());
    assert!(matches!(
        converted.errors.as_slice(),
        [ServiceFieldError::RequestsDisagree { .. }]
    ));
}

#[test]
fn status_addresses_and_the_pool_annotation_are_read_back_for_restore() {
    let mut svc = service(&[("herald.dev/ip-allocated-from-pool", "a,b")], lb_spec());
    svc.status = Some(ServiceStatus {
        load_balancer: Some(LoadBalancerStatus {
            ingress: Some(vec![
                LoadBalancerIngress {
                    ip: Some("192.0.2.1".into()),
                    ..LoadBalancerIngress::default()
                },
                LoadBalancerIngress {
                    hostname: Some("lb.example".into()),
                    ..LoadBalancerIngress::default()
                },
                LoadBalancerIngress {
                    ip: Some("2001:db8::1".into()),
                    ..LoadBalancerIngress::default()
                },
            ]),
        }),
        conditions: None,
    });
    assert_eq!(
        status_addresses(&svc),
        vec![ip("192.0.2.1"), ip("2001:db8::1")]
    );
    assert_eq!(allocated_from(&svc), vec!["a".to_owned(), "b".to_owned()]);
}

fn pool(addresses: &[&str], allocation: Option<ServiceAllocation>) -> IPAddressPool {
    let mut pool = IPAddressPool::new(
        "p",
        IPAddressPoolSpec {
            addresses: addresses.iter().map(|a| (*a).to_owned()).collect(),
            service_allocation: allocation,
            allow_external_ips: true,
            ..IPAddressPoolSpec::default()
        },
    );
    pool.metadata.namespace = Some("herald-system".into());
    pool
}

#[test]
fn a_pool_keeps_its_valid_entries_and_reports_the_invalid_ones() {
    let converted = pool_spec(&pool(&["192.0.2.0/30", "192.0.2.5/24", "bogus"], None));
    assert_eq!(converted.spec.name, "p");
    assert_eq!(converted.spec.addresses.len(), 1);
    assert!(converted.spec.allow_external_ips);
    assert!(converted.has_invalid_addresses());
    assert_eq!(converted.errors.len(), 2);
    assert!(converted.errors[0].to_string().contains("addresses[1]"));
}

#[test]
fn service_allocation_becomes_priority_namespaces_and_selectors() {
    let allocation = ServiceAllocation {
        priority: Some(5),
        namespaces: vec!["web".into()],
        namespace_selectors: vec![ApiLabelSelector {
            match_labels: Some([("team".to_owned(), "a".to_owned())].into()),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "env".into(),
                operator: "NotIn".into(),
                values: Some(vec!["prod".into()]),
            }]),
        }],
        service_selectors: vec![],
    };
    let converted = pool_spec(&pool(&["192.0.2.0/30"], Some(allocation)));
    assert_eq!(converted.errors, vec![]);
    let spec = converted.spec;
    assert_eq!(spec.priority, Some(5));
    assert_eq!(spec.namespaces, vec!["web".to_owned()]);
    assert_eq!(spec.namespace_selectors.len(), 1);
    assert_eq!(
        spec.namespace_selectors[0].to_string(),
        "team=a,env notin (prod)"
    );
}

#[test]
fn a_pool_whose_only_selector_is_unreadable_serves_nobody() {
    let allocation = ServiceAllocation {
        service_selectors: vec![ApiLabelSelector {
            match_labels: None,
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "env".into(),
                operator: "Sometimes".into(),
                values: None,
            }]),
        }],
        namespace_selectors: vec![ApiLabelSelector {
            match_labels: None,
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "env".into(),
                operator: "Bogus".into(),
                values: None,
            }]),
        }],
        ..ServiceAllocation::default()
    };
    let converted = pool_spec(&pool(&["192.0.2.0/30"], Some(allocation)));
    assert_eq!(converted.errors.len(), 2);
    let request = ServiceRequest::new("any", "svc");
    assert!(converted.spec.serves(&request, true).is_err());
}

#[test]
fn a_pool_being_deleted_serves_no_new_allocation() {
    let mut deleting = pool(&["192.0.2.0/30"], None);
    deleting.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
    assert!(pool_spec(&deleting).spec.deleting);
    assert!(!pool_spec(&pool(&["192.0.2.0/30"], None)).spec.deleting);
}

#[test]
fn node_addresses_are_the_internal_and_external_ips_of_named_nodes() {
    use k8s_openapi::api::core::v1::{NodeAddress, NodeStatus};
    let address = |type_: &str, address: &str| NodeAddress {
        type_: type_.into(),
        address: address.into(),
    };
    let node = Node {
        metadata: ObjectMeta {
            name: Some("node-1".into()),
            ..ObjectMeta::default()
        },
        spec: None,
        status: Some(NodeStatus {
            addresses: Some(vec![
                address("InternalIP", "192.0.2.11"),
                address("ExternalIP", "2001:db8::11"),
                address("Hostname", "node-1"),
                address("InternalDNS", "10.0.0.1"),
                address("InternalIP", "not-an-address"),
            ]),
            ..NodeStatus::default()
        }),
    };
    assert_eq!(
        node_addresses(&node),
        [
            ("node-1".to_owned(), ip("192.0.2.11")),
            ("node-1".to_owned(), ip("2001:db8::11")),
        ]
    );
    let unnamed = Node {
        metadata: ObjectMeta::default(),
        ..node
    };
    assert!(node_addresses(&unnamed).is_empty());
}

#[test]
fn metallb_annotations_are_read_as_herald_ones_when_adopted() {
    let mut svc = service(
        &[
            ("metallb.io/address-pool", "lan"),
            ("metallb.universe.tf/loadBalancerIPs", "192.0.2.130"),
            ("metallb.io/allow-shared-ip", "web-and-dns"),
            ("metallb.io/ip-allocated-from-pool", "lan"),
        ],
        lb_spec(),
    );
    let before = service_request(&svc, &Labels::new()).request;
    assert_eq!(before.pool, None, "not read without adoption");
    assert!(adopt_metallb_annotations(&mut svc));
    let converted = service_request(&svc, &Labels::new());
    assert!(converted.errors.is_empty(), "{:?}", converted.errors);
    assert_eq!(converted.request.pool.as_deref(), Some("lan"));
    assert_eq!(converted.request.requested_addresses, [ip("192.0.2.130")]);
    assert_eq!(
        converted.request.sharing_key.as_deref(),
        Some("web-and-dns")
    );
    assert!(
        allocated_from(&svc).is_empty(),
        "MetalLB's own output annotation is not adopted"
    );
}

#[test]
fn herald_annotations_win_over_metallb_io_which_wins_over_the_legacy_form() {
    let mut svc = service(
        &[
            ("herald.dev/address-pool", "herald-pool"),
            ("metallb.io/address-pool", "metallb-pool"),
            ("metallb.io/allow-shared-ip", "new-key"),
            ("metallb.universe.tf/allow-shared-ip", "old-key"),
        ],
        lb_spec(),
    );
    adopt_metallb_annotations(&mut svc);
    let request = service_request(&svc, &Labels::new()).request;
    assert_eq!(request.pool.as_deref(), Some("herald-pool"));
    assert_eq!(request.sharing_key.as_deref(), Some("new-key"));
}

#[test]
fn a_service_without_metallb_annotations_is_left_as_it_is() {
    let mut svc = service(&[("herald.dev/address-pool", "p")], lb_spec());
    let before = svc.clone();
    assert!(!adopt_metallb_annotations(&mut svc));
    assert_eq!(svc, before);
    let mut bare = service(&[], lb_spec());
    bare.metadata.annotations = None;
    assert!(!adopt_metallb_annotations(&mut bare));
}
