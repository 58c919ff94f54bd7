//! The controller's in-memory state for one leadership term: the allocator, the pools it was
//! last given, which pools are known to carry the finalizer, and which Services wait for an
//! address. One `Mutex<ControllerState>` is shared by every reconcile; decisions happen under
//! it, I/O never does.
//!
//! Pure: it converts pool objects and calls the allocator; no I/O, no clock.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use herald_crds::api::IPAddressPool;
use k8s_openapi::api::core::v1::Service;

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

    /// Rebuilds the allocator from Service status, before anything is allocated: every served
    /// Service with addresses in its status, oldest first (on a conflict the older one keeps
    /// the address).
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
        served.sort_by(|a, b| {
            let created = |s: &Service| s.metadata.creation_timestamp.as_ref().map(|t| t.0);
            (created(a), &a.metadata.namespace, &a.metadata.name).cmp(&(
                created(b),
                &b.metadata.namespace,
                &b.metadata.name,
            ))
        });
        let mut summary = RestoreSummary::default();
        for service in served {
            let labels = namespace_labels(service.metadata.namespace.as_deref().unwrap_or(""));
            let events = service_plan::restore_service(&mut self.allocator, service, &labels);
            summary.services += 1;
            if let Some(key) = convert::service_key(service) {
                summary.addresses += self
                    .allocator
                    .assignment(&key)
                    .map_or(0, |a| a.addresses.len());
            }
            summary
                .events
                .extend(events.into_iter().map(|e| (Arc::clone(service), e)));
        }
        summary
    }

    /// Every Service the allocator holds addresses for.
    pub fn known_services(&self) -> Vec<ServiceKey> {
        self.allocator
            .assignments()
            .map(|(k, _)| k.clone())
            .collect()
    }
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
