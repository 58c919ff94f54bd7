use super::*;

use herald_crds::api::IPAddressPoolSpec;
use k8s_openapi::api::core::v1::{
    LoadBalancerIngress, LoadBalancerStatus, ServiceSpec, ServiceStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

fn pool(name: &str, addresses: &[&str]) -> Arc<IPAddressPool> {
    Arc::new(IPAddressPool::new(
        name,
        IPAddressPoolSpec {
            addresses: addresses.iter().map(|a| (*a).to_owned()).collect(),
            ..IPAddressPoolSpec::default()
        },
    ))
}

fn restored_service(name: &str, created: i64, address: &str) -> Arc<Service> {
    Arc::new(Service {
        metadata: ObjectMeta {
            namespace: Some("ns".into()),
            name: Some(name.into()),
            creation_timestamp: Some(Time(
                Timestamp::from_second(created).unwrap_or(Timestamp::UNIX_EPOCH),
            )),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("LoadBalancer".into()),
            ..ServiceSpec::default()
        }),
        status: Some(ServiceStatus {
            load_balancer: Some(LoadBalancerStatus {
                ingress: Some(vec![LoadBalancerIngress {
                    ip: Some(address.into()),
                    ..LoadBalancerIngress::default()
                }]),
            }),
            conditions: None,
        }),
    })
}

fn all() -> ClassFilter {
    ClassFilter::herald(false)
}

fn ip(text: &str) -> std::net::IpAddr {
    text.parse().unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]))
}

fn external_pool(name: &str, addresses: &[&str]) -> Arc<IPAddressPool> {
    let mut pool = (*pool(name, addresses)).clone();
    pool.spec.allow_external_ips = true;
    Arc::new(pool)
}

/// A ClusterIP Service listing `external_ips`, with `recorded` in the booking record.
fn claiming_service(
    name: &str,
    created: i64,
    external_ips: &[&str],
    recorded: Option<&str>,
) -> Arc<Service> {
    let mut service = (*restored_service(name, created, "192.0.2.1")).clone();
    service.status = None;
    if let Some(spec) = service.spec.as_mut() {
        spec.type_ = Some("ClusterIP".into());
        spec.external_ips = Some(external_ips.iter().map(|a| (*a).to_owned()).collect());
    }
    if let Some(recorded) = recorded {
        service.metadata.annotations = Some(
            [(
                service_plan::ANNOTATION_EXTERNAL_IPS_BOOKED.to_owned(),
                recorded.to_owned(),
            )]
            .into_iter()
            .collect(),
        );
    }
    Arc::new(service)
}

fn booked(state: &ControllerState, name: &str) -> Vec<std::net::IpAddr> {
    state
        .allocator
        .external_ips(&ServiceKey::new("ns", name))
        .iter()
        .map(|a| a.address)
        .collect()
}

fn node(name: &str, address: &str) -> Arc<Node> {
    use k8s_openapi::api::core::v1::{NodeAddress, NodeStatus};
    Arc::new(Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        spec: None,
        status: Some(NodeStatus {
            addresses: Some(vec![NodeAddress {
                type_: "InternalIP".into(),
                address: address.into(),
            }]),
            ..NodeStatus::default()
        }),
    })
}

#[test]
fn node_addresses_are_installed_only_when_they_change_and_name_the_services_holding_them() {
    let mut state = ControllerState::default();
    state.sync_pools(&convert_pools(&[pool("lan", &["192.0.2.0/30"])]));
    let summary = state.restore(
        &[restored_service("web", 1, "192.0.2.1")],
        |_| Labels::new(),
        &ClassFilter::herald(false),
    );
    assert_eq!(summary.addresses, 1);
    let nodes = [node("n1", "192.0.2.1"), node("n2", "192.0.2.2")];
    let first = state.sync_nodes(&nodes);
    assert!(first.changed);
    assert_eq!(first.affected, [ServiceKey::new("ns", "web")]);
    assert_eq!(state.sync_nodes(&nodes), NodeSync::default());
    let stats = state.allocator.pool_stats("lan").unwrap_or_default();
    assert_eq!(stats.ipv4.available, 2);
}

#[test]
fn a_restart_rebooks_recorded_external_ips_after_status_addresses_in_any_listing_order() {
    let pools = convert_pools(&[external_pool("ext", &["192.0.2.128/29"])]);
    // The older claim's record collides with a newer load balancer's status: the status
    // wins. Another record is rebooked; an unrecorded claim waits for its reconcile.
    let services = [
        claiming_service(
            "claim",
            1,
            &["192.0.2.129", "192.0.2.130"],
            Some("192.0.2.129,192.0.2.130"),
        ),
        restored_service("lb", 2, "192.0.2.129"),
        claiming_service("new", 3, &["192.0.2.131"], None),
    ];
    let mut results = Vec::new();
    for order in [[0, 1, 2], [2, 1, 0], [1, 2, 0]] {
        let listed: Vec<Arc<Service>> = order.iter().map(|&i| Arc::clone(&services[i])).collect();
        let mut state = ControllerState::default();
        state.sync_pools(&pools);
        let summary = state.restore(&listed, |_| Labels::new(), &all());
        assert_eq!((summary.addresses, summary.external_ips), (1, 1));
        assert_eq!(
            state
                .allocator
                .assignment(&ServiceKey::new("ns", "lb"))
                .map(|a| a.ips()),
            Some(vec![ip("192.0.2.129")])
        );
        assert_eq!(booked(&state, "claim"), [ip("192.0.2.130")]);
        assert!(booked(&state, "new").is_empty());
        assert_eq!(
            state.known_services(),
            [ServiceKey::new("ns", "claim"), ServiceKey::new("ns", "lb")]
        );
        results.push((
            state
                .allocator
                .external_bookings()
                .map(|(k, b)| (k.clone(), b))
                .collect::<Vec<_>>(),
            state.allocator.pool_stats("ext"),
        ));
    }
    assert!(results.windows(2).all(|w| w[0] == w[1]), "{results:?}");
}

#[test]
fn a_recorded_external_ip_wins_over_an_older_services_new_claim() {
    let mut state = ControllerState::default();
    state.sync_pools(&convert_pools(&[external_pool("ext", &["192.0.2.128/29"])]));
    // "newcomer" is older but added the address after "holder" had booked it.
    let newcomer = claiming_service("newcomer", 1, &["192.0.2.130"], None);
    let holder = claiming_service("holder", 2, &["192.0.2.130"], Some("192.0.2.130"));
    state.restore(&[Arc::clone(&newcomer), holder], |_| Labels::new(), &all());
    assert_eq!(booked(&state, "holder"), [ip("192.0.2.130")]);
    let plan = service_plan::plan_service(
        &mut state.allocator,
        &newcomer,
        &Labels::new(),
        &all(),
        Timestamp::UNIX_EPOCH,
    );
    assert!(plan.is_some_and(|p| p.external_ips.waiting));
    assert!(booked(&state, "newcomer").is_empty());
}

#[test]
fn records_of_services_this_instance_does_not_judge_are_not_restored() {
    let mut state = ControllerState::default();
    state.sync_pools(&convert_pools(&[external_pool("ext", &["192.0.2.128/29"])]));
    let plain = claiming_service("plain", 1, &["192.0.2.130"], Some("192.0.2.130"));
    let summary = state.restore(&[plain], |_| Labels::new(), &ClassFilter::herald(true));
    assert_eq!(summary.external_ips, 0);
    assert!(state.known_services().is_empty());
}

#[test]
fn pools_are_installed_only_when_they_change() {
    let mut state = ControllerState::default();
    let pools = convert_pools(&[pool("a", &["192.0.2.128/30"])]);
    assert!(state.sync_pools(&pools).is_empty());
    assert!(state.allocator.pool_stats("a").is_some());
    assert!(
        state
            .allocator
            .assign(&crate::allocator::ServiceRequest::new("ns", "s"))
            .is_ok()
    );
    // Same pools: nothing reinstalled, nothing reported.
    assert!(state.sync_pools(&pools).is_empty());
    // The pool is gone: the address is kept and reported.
    let reports = state.sync_pools(&convert_pools(&[]));
    assert!(matches!(
        reports.as_slice(),
        [PoolChangeReport::AddressOutsideEveryPool { .. }]
    ));
}

#[test]
fn on_a_conflict_the_older_service_keeps_the_address() {
    let mut state = ControllerState::default();
    state.sync_pools(&convert_pools(&[pool("a", &["192.0.2.128/30"])]));
    let newer = restored_service("newer", 2_000, "192.0.2.129");
    let older = restored_service("older", 1_000, "192.0.2.129");
    let summary = state.restore(&[newer, older], |_| Labels::new(), &all());
    assert_eq!(summary.services, 2);
    assert_eq!(summary.addresses, 1);
    assert_eq!(summary.events.len(), 1);
    assert_eq!(summary.events[0].0.metadata.name.as_deref(), Some("newer"));
    let older_key = ServiceKey::new("ns", "older");
    assert_eq!(
        state.allocator.assignment(&older_key).map(|a| a.ips()),
        Some(vec![
            "192.0.2.129"
                .parse()
                .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]))
        ])
    );
}

#[test]
fn services_herald_does_not_serve_are_not_restored() {
    let mut state = ControllerState::default();
    state.sync_pools(&convert_pools(&[pool("a", &["192.0.2.128/30"])]));
    let mut other = (*restored_service("other", 1, "192.0.2.129")).clone();
    if let Some(spec) = other.spec.as_mut() {
        spec.load_balancer_class = Some("other.example/lb".into());
    }
    let summary = state.restore(&[Arc::new(other)], |_| Labels::new(), &all());
    assert_eq!(summary.services, 0);
    assert!(state.known_services().is_empty());
}
