//! The allocator's plain input and output model: pools, service requests, assignments, stats.
//!
//! These types never mention kube or k8s-openapi (the shared vocabulary comes from
//! `herald-model`); the reconciler fills them in from
//! `IPAddressPool`s and `Service`s at its edge. Pure data, no I/O.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use herald_crds::address::{AddressRange, Family};

use herald_model::{LabelSelector, Labels, Protocol, ServiceKey, TrafficPolicy, UnknownValue};

/// One `IPAddressPool`, validated and parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSpec {
    /// The pool's name (unique).
    pub name: String,
    /// Its parsed `addresses` (see `herald_crds::address::parse_entries`).
    pub addresses: Vec<AddressRange>,
    /// `autoAssign`: when false the pool serves only explicit requests (a requested address
    /// or the `herald.dev/address-pool` annotation).
    pub auto_assign: bool,
    /// `avoidBuggyIPs`: never hand out IPv4 addresses ending in `.0` or `.255`.
    pub avoid_buggy_ips: bool,
    /// `allowExternalIPs`: addresses of this pool may be used in `spec.externalIPs`.
    pub allow_external_ips: bool,
    /// `serviceAllocation.priority`: **lower number = tried first** (as in MetalLB); pools
    /// without a priority come after all pools with one; ties are broken by name.
    pub priority: Option<i32>,
    /// `serviceAllocation.namespaces`: namespaces allowed by name.
    pub namespaces: Vec<String>,
    /// `serviceAllocation.namespaceSelectors`: namespaces allowed by label. When both this and
    /// `namespaces` are empty every namespace is allowed; otherwise a namespace must be listed
    /// or match one selector.
    pub namespace_selectors: Vec<LabelSelector>,
    /// `serviceAllocation.serviceSelectors`: when non-empty, a Service must match one.
    pub service_selectors: Vec<LabelSelector>,
    /// The pool is being deleted: it keeps the addresses it has handed out but serves no new
    /// allocation.
    pub deleting: bool,
}

impl PoolSpec {
    /// A pool with `addresses`, auto-assigning, open to every namespace and Service.
    pub fn new(name: impl Into<String>, addresses: Vec<AddressRange>) -> Self {
        PoolSpec {
            name: name.into(),
            addresses,
            auto_assign: true,
            avoid_buggy_ips: false,
            allow_external_ips: false,
            priority: None,
            namespaces: Vec::new(),
            namespace_selectors: Vec::new(),
            service_selectors: Vec::new(),
            deleting: false,
        }
    }

    /// Whether this pool may serve `service`. `explicit` is true when the Service asked for
    /// this pool or for an address in it, which lifts the `autoAssign: false` restriction.
    pub fn serves(&self, service: &ServiceRequest, explicit: bool) -> Result<(), PoolRefusal> {
        if self.deleting {
            return Err(PoolRefusal::Deleting);
        }
        if !explicit && !self.auto_assign {
            return Err(PoolRefusal::AutoAssignDisabled);
        }
        let open_to_all = self.namespaces.is_empty() && self.namespace_selectors.is_empty();
        if !open_to_all
            && !self.namespaces.contains(&service.key.namespace)
            && !self
                .namespace_selectors
                .iter()
                .any(|s| s.matches(&service.namespace_labels))
        {
            return Err(PoolRefusal::NamespaceNotAllowed {
                namespace: service.key.namespace.clone(),
            });
        }
        if !self.service_selectors.is_empty()
            && !self
                .service_selectors
                .iter()
                .any(|s| s.matches(&service.service_labels))
        {
            return Err(PoolRefusal::ServiceNotSelected);
        }
        Ok(())
    }
}

/// Why a pool does not serve a Service.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolRefusal {
    /// The pool is being deleted.
    #[error("the pool is being deleted")]
    Deleting,
    /// `autoAssign: false` and the Service did not ask for the pool.
    #[error("autoAssign is false and the Service did not ask for this pool")]
    AutoAssignDisabled,
    /// `serviceAllocation` does not allow the Service's namespace.
    #[error("namespace {namespace:?} is not allowed by serviceAllocation")]
    NamespaceNotAllowed {
        /// The Service's namespace.
        namespace: String,
    },
    /// No `serviceAllocation.serviceSelectors` entry matches the Service's labels.
    #[error("the Service's labels match no serviceSelector")]
    ServiceNotSelected,
}

/// `spec.ipFamilyPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum IpFamilyPolicy {
    /// One address, of the first family in `ipFamilies`.
    #[default]
    SingleStack,
    /// One address per family in `ipFamilies` where a pool can give one; at least one.
    PreferDualStack,
    /// One IPv4 and one IPv6 address, or nothing.
    RequireDualStack,
}

impl FromStr for IpFamilyPolicy {
    type Err = UnknownValue;

    /// `SingleStack`, `PreferDualStack` or `RequireDualStack`.
    fn from_str(text: &str) -> Result<Self, UnknownValue> {
        match text {
            "SingleStack" => Ok(IpFamilyPolicy::SingleStack),
            "PreferDualStack" => Ok(IpFamilyPolicy::PreferDualStack),
            "RequireDualStack" => Ok(IpFamilyPolicy::RequireDualStack),
            other => Err(UnknownValue {
                field: "ipFamilyPolicy",
                value: other.to_owned(),
            }),
        }
    }
}

/// One Service port as far as address sharing cares: protocol and port number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServicePort {
    /// The protocol.
    pub protocol: Protocol,
    /// The port number.
    pub port: u16,
}

impl fmt::Display for ServicePort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.port, self.protocol)
    }
}

/// What one Service asks of the allocator, converted from the `Service` at the reconciler's
/// edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRequest {
    /// Namespace and name.
    pub key: ServiceKey,
    /// Labels of the Service's namespace (for `namespaceSelectors`).
    pub namespace_labels: Labels,
    /// The Service's labels (for `serviceSelectors`).
    pub service_labels: Labels,
    /// `spec.ipFamilies`, primary first. Empty: taken from the requested addresses, else IPv4
    /// (then IPv6 for the dual-stack policies).
    pub ip_families: Vec<Family>,
    /// `spec.ipFamilyPolicy`.
    pub ip_family_policy: IpFamilyPolicy,
    /// `spec.loadBalancerIP` or the `herald.dev/loadBalancerIPs` annotation: at most one
    /// address per family.
    pub requested_addresses: Vec<IpAddr>,
    /// `herald.dev/address-pool`: the only pool to allocate from.
    pub pool: Option<String>,
    /// `herald.dev/allow-shared-ip`: Services with the same key may share addresses (an empty
    /// key counts as none).
    pub sharing_key: Option<String>,
    /// The Service's ports.
    pub ports: Vec<ServicePort>,
    /// `spec.externalTrafficPolicy`.
    pub traffic_policy: TrafficPolicy,
    /// `spec.selector`: with `Local` policy, only Services selecting the same pods may share.
    pub pod_selector: Labels,
    /// `spec.externalIPs` (judged and booked by `Allocator::book_external_ips`, never
    /// allocated).
    pub external_ips: Vec<IpAddr>,
}

impl ServiceRequest {
    /// A single-stack IPv4 request with no ports, no labels and no annotations.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ServiceRequest {
            key: ServiceKey::new(namespace, name),
            namespace_labels: Labels::new(),
            service_labels: Labels::new(),
            ip_families: vec![Family::V4],
            ip_family_policy: IpFamilyPolicy::SingleStack,
            requested_addresses: Vec::new(),
            pool: None,
            sharing_key: None,
            ports: Vec::new(),
            traffic_policy: TrafficPolicy::Cluster,
            pod_selector: Labels::new(),
            external_ips: Vec::new(),
        }
    }

    /// What of this request decides who may share an address with it.
    pub(crate) fn sharing_profile(&self) -> SharingProfile {
        SharingProfile {
            key: self.sharing_key.clone().filter(|k| !k.is_empty()),
            ports: self.ports.iter().copied().collect(),
            traffic_policy: self.traffic_policy,
            pod_selector: self.pod_selector.clone(),
        }
    }
}

/// The sharing-relevant part of a Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SharingProfile {
    pub(crate) key: Option<String>,
    pub(crate) ports: BTreeSet<ServicePort>,
    pub(crate) traffic_policy: TrafficPolicy,
    pub(crate) pod_selector: Labels,
}

/// One address held by a Service, and the pool it is booked against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AssignedAddress {
    /// The address.
    pub address: IpAddr,
    /// The pool it belongs to; `None` when it lies outside every pool (reported, kept).
    pub pool: Option<String>,
}

/// The addresses of one Service, primary family first.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Assignment {
    /// At most one address per family.
    pub addresses: Vec<AssignedAddress>,
}

impl Assignment {
    /// The addresses alone, in order (what goes into `status.loadBalancer.ingress`).
    pub fn ips(&self) -> Vec<IpAddr> {
        self.addresses.iter().map(|a| a.address).collect()
    }

    /// The address of `family`, if any.
    pub fn address(&self, family: Family) -> Option<IpAddr> {
        self.addresses
            .iter()
            .map(|a| a.address)
            .find(|&a| Family::of(a) == family)
    }

    /// The distinct pools, in address order (what goes into the
    /// `herald.dev/ip-allocated-from-pool` annotation, joined by commas).
    pub fn pools(&self) -> Vec<&str> {
        let mut pools: Vec<&str> = Vec::new();
        for pool in self.addresses.iter().filter_map(|a| a.pool.as_deref()) {
            if !pools.contains(&pool) {
                pools.push(pool);
            }
        }
        pools
    }

    /// The value list for the `herald.dev/ip-allocated-from-pool` annotation (join with `,`):
    /// one name when every address comes from one pool, else one name per address in address
    /// order (empty for an address outside every pool). `Allocator::restore` reads it back.
    pub fn allocated_from(&self) -> Vec<String> {
        let names: Vec<String> = self
            .addresses
            .iter()
            .map(|a| a.pool.clone().unwrap_or_default())
            .collect();
        match names.first() {
            Some(first) if names.iter().all(|n| n == first) => vec![first.clone()],
            _ => names,
        }
    }

    /// Whether no address is held.
    pub fn is_empty(&self) -> bool {
        self.addresses.is_empty()
    }
}

/// Address counts of one family in one pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FamilyStats {
    /// Usable addresses (saturating at `u128::MAX`).
    pub size: u128,
    /// Addresses in use (a shared address counts once).
    pub assigned: u128,
    /// Addresses still free.
    pub available: u128,
}

/// Address counts of one pool, per family, computed without enumeration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStats {
    /// IPv4 counts.
    pub ipv4: FamilyStats,
    /// IPv6 counts.
    pub ipv6: FamilyStats,
}

impl PoolStats {
    /// The counts of `family`.
    pub fn family(&self, family: Family) -> FamilyStats {
        match family {
            Family::V4 => self.ipv4,
            Family::V6 => self.ipv6,
        }
    }
}
