//! The controller's in-memory state for one leadership term: the allocator, the pools it was
//! last given, which pools are known to carry the finalizer, and which Services wait for an
//! address. One `Mutex<ControllerState>` is shared by every reconcile; decisions happen under
//! it, I/O never does.
//!
//! Pure: it converts pool objects and calls the allocator; no I/O, no clock.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use herald_crds::api::IPAddressPool;
use k8s_openapi::api::core::v1::{Node, Service};

use crate::allocator::{Allocator, Labels, PoolChangeReport, PoolSpec, ServiceKey};
use crate::convert::{self, ClassFilter, ConvertedPool};
use crate::service_plan::{self, PlannedEvent};

/// State shared by the reconciles of one term.
#[derive(Debug, Default)]
pub struct ControllerState {
    /// Who holds what.
    pub allocator: Allocator,
    /// The pool specs last installed in the allocator (sorted by name).
    installed: Vec<PoolSpec>,
    /// Pools known to carry `herald.dev/pool-in-use` (or having it added right now).
    pub finalized_pools: BTreeSet<String>,
    /// Services whose last allocation failed: reconciled again when addresses are released
    /// or pools change.
    pub pending: BTreeSet<ServiceKey>,
    /// The node addresses last installed in the allocator (sorted).
    installed_nodes: Vec<(String, IpAddr)>,
}

/// What [`ControllerState::sync_nodes`] changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct NodeSync {
    /// The node addresses differ from the last ones installed.
    pub changed: bool,
    /// Services holding an address whose nodes changed (reconcile them).
    pub affected: Vec<ServiceKey>,
}

/// Pool objects converted, by name.
pub type ConvertedPools = BTreeMap<String, (Arc<IPAddressPool>, ConvertedPool)>;

/// Converts pool objects (the install namespace's), sorted by name.
pub fn convert_pools(pools: &[Arc<IPAddressPool>]) -> ConvertedPools {
    pools
        .iter()
        .filter(|p| p.metadata.name.is_some())
        .map(|p| {
            let converted = convert::pool_spec(p);
            (converted.spec.name.clone(), (Arc::clone(p), converted))
        })
        .collect()
}

/// What a start-up restore took over.
#[derive(Debug, Default)]
pub struct RestoreSummary {
    /// Services whose status listed addresses.
    pub services: usize,
    /// Addresses taken over.
    pub addresses: usize,
    /// Recorded externalIP bookings taken over.
    pub external_ips: usize,
    /// Problems, as (Service, Event).
    pub events: Vec<(Arc<Service>, PlannedEvent)>,
}

impl ControllerState {
    /// Installs the current pools when they differ from the last ones. Returns the allocator's
    /// reports (addresses re-booked or now outside every pool); never moves an address.
    pub fn sync_pools(&mut self, pools: &ConvertedPools) -> Vec<PoolChangeReport> {
        let specs: Vec<PoolSpec> = pools.values().map(|(_, c)| c.spec.clone()).collect();
        if specs == self.installed {
            return Vec::new();
        }
        self.installed = specs.clone();
        self.allocator.set_pools(specs)
    }

    /// Installs the nodes' own addresses (reserved, never allocated) when they differ from
    /// the last ones. Never moves an address.
    pub fn sync_nodes(&mut self, nodes: &[Arc<Node>]) -> NodeSync {
        let mut addresses: Vec<(String, IpAddr)> = nodes
            .iter()
            .flat_map(|n| convert::node_addresses(n))
            .collect();
        addresses.sort();
        addresses.dedup();
        if addresses == self.installed_nodes {
            return NodeSync::default();
        }
        self.installed_nodes = addresses.clone();
        NodeSync {
            changed: true,
            affected: self.allocator.set_node_addresses(addresses),
        }
    }

    /// Rebuilds the allocator from the Services, before anything is allocated or judged:
    ///
    /// 1. the load-balancer addresses of every served Service with addresses in its status,
    ///    oldest first (on a conflict the older one keeps the address);
    /// 2. then the externalIPs each judged Service records as booked
    ///    ([`service_plan::ANNOTATION_EXTERNAL_IPS_BOOKED`]), oldest first. A load-balancer
    ///    address restored in step 1 wins over such a record (the entry is refused as in
    ///    use when the Service is reconciled); records never conflict otherwise, since they
    ///    were written from one allocator.
    ///
    /// New claims (entries not recorded) are judged by the reconciles that follow, so the
    /// result does not depend on the order in which Services are listed or reconciled.
    pub fn restore(
        &mut self,
        services: &[Arc<Service>],
        namespace_labels: impl Fn(&str) -> Labels,
        filter: &ClassFilter,
    ) -> RestoreSummary {
        let mut served: Vec<&Arc<Service>> = services
            .iter()
            .filter(|s| filter.serves(s) && !convert::status_addresses(s).is_empty())
            .collect();
        served.sort_by(|a, b| by_age(a, b));
        let mut summary = RestoreSummary::default();
        for service in served {
            let labels = namespace_labels(service.metadata.namespace.as_deref().unwrap_or(""));
            let restored = service_plan::restore_service(&mut self.allocator, service, &labels);
            summary.services += 1;
            if let Some(key) = convert::service_key(service) {
                summary.addresses += self
                    .allocator
                    .assignment(&key)
                    .map_or(0, |a| a.addresses.len());
            }
            summary.events.extend(
                restored
                    .events
                    .into_iter()
                    .map(|e| (Arc::clone(service), e)),
            );
        }

        let mut recorded: Vec<(&Arc<Service>, Vec<std::net::IpAddr>)> = services
            .iter()
            .filter(|s| service_plan::judges_external_ips(s, filter))
            .map(|s| (s, service_plan::recorded_external_ips(s)))
            .filter(|(_, recorded)| !recorded.is_empty())
            .collect();
        recorded.sort_by(|a, b| by_age(a.0, b.0));
        for (service, addresses) in recorded {
            let labels = namespace_labels(service.metadata.namespace.as_deref().unwrap_or(""));
            let converted = convert::service_request(service, &labels);
            let verdicts = self
                .allocator
                .restore_external_ips(&converted.request, &addresses);
            summary.external_ips += verdicts.iter().filter(|v| v.result.is_ok()).count();
        }
        summary
    }

    /// Every Service the allocator holds addresses for (load-balancer addresses or booked
    /// externalIPs).
    pub fn known_services(&self) -> Vec<ServiceKey> {
        let known: BTreeSet<ServiceKey> = self
            .allocator
            .assignments()
            .map(|(k, _)| k.clone())
            .chain(self.allocator.external_bookings().map(|(k, _)| k.clone()))
            .collect();
        known.into_iter().collect()
    }
}

/// Oldest first (creation time), then by namespace and name.
fn by_age(a: &Service, b: &Service) -> std::cmp::Ordering {
    let created = |s: &Service| s.metadata.creation_timestamp.as_ref().map(|t| t.0);
    (created(a), &a.metadata.namespace, &a.metadata.name).cmp(&(
        created(b),
        &b.metadata.namespace,
        &b.metadata.name,
    ))
}

#[cfg(test)]
mod tests {
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
            let listed: Vec<Arc<Service>> =
                order.iter().map(|&i| Arc::clone(&services[i])).collect();
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
}
