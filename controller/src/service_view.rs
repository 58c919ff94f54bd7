//! A Service converted once per reconcile into the validated view the planners take
//! ([`crate::service_plan`]): its key, whether this instance serves it and judges its
//! `spec.externalIPs`, the allocator request with the fields that could not be read, the
//! addresses and pools its status and annotation record, and what the snapshot shows of
//! Herald's own writes. Pure: built from the watched object, no I/O.

use std::net::IpAddr;

use herald_crds::names;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use crate::allocator::{Labels, ServiceKey};
use crate::convert::{self, ClassFilter, ConvertedService};
use crate::service_plan::{ANNOTATION_EXTERNAL_IPS_BOOKED, judges_external_ips};

/// One Service as the planners read it, converted once.
pub struct ServiceView<'a> {
    /// The object (for its metadata: generation, deletion, type).
    pub service: &'a Service,
    /// `namespace/name`.
    pub key: ServiceKey,
    /// This instance serves it (type LoadBalancer of its class, not being deleted).
    pub served: bool,
    /// This instance judges its `spec.externalIPs` (see [`judges_external_ips`]).
    pub judges_external_ips: bool,
    /// The allocator request, and the fields that could not be read.
    pub converted: ConvertedService,
    /// `status.loadBalancer.ingress` addresses.
    pub status_addresses: Vec<IpAddr>,
    /// The pools the `herald.dev/ip-allocated-from-pool` annotation names.
    pub allocated_from: Vec<String>,
    /// What the snapshot shows of Herald's writes.
    pub(crate) observed: Observed,
}

impl<'a> ServiceView<'a> {
    /// The view of `service` in a namespace labelled `namespace_labels`; `None` for a
    /// Service without a namespace or name.
    pub fn new(
        service: &'a Service,
        namespace_labels: &Labels,
        filter: &ClassFilter,
    ) -> Option<Self> {
        Some(ServiceView {
            key: convert::service_key(service)?,
            served: filter.serves(service),
            judges_external_ips: judges_external_ips(service, filter),
            converted: convert::service_request(service, namespace_labels),
            status_addresses: convert::status_addresses(service),
            allocated_from: convert::allocated_from(service),
            observed: Observed::of(service),
            service,
        })
    }

    /// `metadata.generation` (for conditions' `observedGeneration`).
    pub fn generation(&self) -> Option<i64> {
        self.service.metadata.generation
    }

    /// `spec.type` is `LoadBalancer`.
    pub fn is_load_balancer(&self) -> bool {
        self.service
            .spec
            .as_ref()
            .is_some_and(|s| s.type_.as_deref() == Some("LoadBalancer"))
    }
}

/// What the snapshot shows of Herald's writes.
pub(crate) struct Observed {
    /// Each ingress entry: its address (None: a hostname or garbage) and ipMode.
    pub(crate) ingress: Vec<(Option<IpAddr>, Option<String>)>,
    pub(crate) conditions: Vec<Condition>,
    pub(crate) annotation: Option<String>,
    pub(crate) external_annotation: Option<String>,
}

impl Observed {
    pub(crate) fn of(service: &Service) -> Self {
        let status = service.status.as_ref();
        Observed {
            ingress: status
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.as_ref())
                .into_iter()
                .flatten()
                .map(|i| {
                    (
                        i.ip.as_deref().and_then(|ip| ip.trim().parse().ok()),
                        i.ip_mode.clone(),
                    )
                })
                .collect(),
            conditions: status
                .and_then(|s| s.conditions.clone())
                .unwrap_or_default(),
            annotation: service
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(names::ANNOTATION_ALLOCATED_FROM_POOL))
                .cloned(),
            external_annotation: service
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(ANNOTATION_EXTERNAL_IPS_BOOKED))
                .cloned(),
        }
    }

    pub(crate) fn ingress_ips(&self) -> Vec<IpAddr> {
        self.ingress.iter().filter_map(|(ip, _)| *ip).collect()
    }
}
