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
use crate::service_view::ServiceView;

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
            let Some(view) = ServiceView::new(service, &labels, filter) else {
                continue;
            };
            let restored = service_plan::restore_service(&mut self.allocator, &view);
            summary.services += 1;
            summary.addresses += self
                .allocator
                .assignment(&view.key)
                .map_or(0, |a| a.addresses.len());
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
mod tests;
