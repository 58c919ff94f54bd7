//! Edge conversion: k8s-openapi `Service`s, `Namespace` labels, `IPAddressPool`s and `Node`s
//! into the allocator's plain input ([`ServiceRequest`], [`PoolSpec`], node addresses).
//!
//! Owns the reading of every Service field and annotation Herald cares about, and of pool
//! specs. Nothing here panics on what came from the API: every field that cannot be read is
//! an error value, collected so one Event can name them all. Pure: no I/O, no clock.

use std::net::IpAddr;

use herald_crds::address::{self, AddressError, EntryError, Family};
use herald_crds::api::IPAddressPool;
use herald_crds::names;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector as ApiLabelSelector;

use crate::allocator::{
    IpFamilyPolicy, LabelSelector, Labels, PoolSpec, Protocol, SelectorOperator,
    SelectorRequirement, ServiceKey, ServicePort, ServiceRequest, TrafficPolicy,
};

/// Whether Herald serves a Service of this `spec.type` / `spec.loadBalancerClass`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassFilter {
    /// The `loadBalancerClass` served (`herald.dev/lb` unless configured otherwise, so that
    /// several instances can run side by side).
    pub class: String,
    /// Class-less `LoadBalancer` Services are left alone (`--ignore-classless`).
    pub ignore_classless: bool,
}

impl ClassFilter {
    /// Herald's own class (`herald.dev/lb`), class-less Services included unless
    /// `ignore_classless`.
    pub fn herald(ignore_classless: bool) -> Self {
        ClassFilter {
            class: names::LOAD_BALANCER_CLASS.to_owned(),
            ignore_classless,
        }
    }

    /// True for `type: LoadBalancer` with the served `loadBalancerClass`, or without a
    /// class unless class-less Services are ignored; false once deletion has started.
    pub fn serves(&self, service: &Service) -> bool {
        if service.metadata.deletion_timestamp.is_some() {
            return false;
        }
        let Some(spec) = &service.spec else {
            return false;
        };
        if spec.type_.as_deref() != Some("LoadBalancer") {
            return false;
        }
        match spec.load_balancer_class.as_deref() {
            Some(class) => class == self.class,
            None => !self.ignore_classless,
        }
    }
}

/// One Service field or annotation that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceFieldError {
    /// An annotation or `spec.loadBalancerIP` that is not an address list.
    #[error("{field}: {error}")]
    BadAddress {
        /// Where it was written (annotation name or field path).
        field: String,
        /// What is wrong.
        error: AddressError,
    },
    /// `spec.loadBalancerIP` and `herald.dev/loadBalancerIPs` ask for different addresses.
    #[error(
        "spec.loadBalancerIP ({field}) and annotation {annotation} ({value}) disagree; use one",
        annotation = names::ANNOTATION_LOAD_BALANCER_IPS
    )]
    RequestsDisagree {
        /// `spec.loadBalancerIP`.
        field: String,
        /// The annotation's value.
        value: String,
    },
    /// `herald.dev/address-pool` is present but empty.
    #[error("annotation {} is empty", names::ANNOTATION_ADDRESS_POOL)]
    EmptyPoolAnnotation,
    /// A value the API server would not accept (`ipFamilyPolicy`, a protocol, ...).
    #[error("{field}: unknown value {value:?}")]
    UnknownValue {
        /// The field.
        field: &'static str,
        /// The value found.
        value: String,
    },
    /// A port outside 1..=65535.
    #[error("spec.ports: port {0} is out of range")]
    PortOutOfRange(i32),
    /// An `spec.externalIPs` entry that is not an address.
    #[error("spec.externalIPs: {0:?} is not an IP address")]
    BadExternalIp(String),
    /// The Service has no namespace or name (never from a real apiserver).
    #[error("the Service has no namespace or name")]
    Unnamed,
}

/// A Service converted for the allocator: the request, with unreadable fields left out, and
/// the errors found. An allocation must not run on a request with errors; a restore may.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertedService {
    /// The request (fields that could not be read are left at their defaults).
    pub request: ServiceRequest,
    /// What could not be read.
    pub errors: Vec<ServiceFieldError>,
}

/// The key (`namespace/name`) of a Service, if it has both.
pub fn service_key(service: &Service) -> Option<ServiceKey> {
    Some(ServiceKey::new(
        service.metadata.namespace.clone()?,
        service.metadata.name.clone()?,
    ))
}

/// Converts a Service (and its namespace's labels) into an allocator request.
pub fn service_request(service: &Service, namespace_labels: &Labels) -> ConvertedService {
    let mut errors = Vec::new();
    let key = service_key(service).unwrap_or_else(|| {
        errors.push(ServiceFieldError::Unnamed);
        ServiceKey::new("", "")
    });
    let mut request = ServiceRequest::new(key.namespace, key.name);
    request.namespace_labels = namespace_labels.clone();
    request.service_labels = service.metadata.labels.clone().unwrap_or_default();
    let annotations = service.metadata.annotations.clone().unwrap_or_default();
    let spec = service.spec.clone().unwrap_or_default();

    request.ip_families = Vec::new();
    for family in spec.ip_families.iter().flatten() {
        match family.as_str() {
            "IPv4" => request.ip_families.push(Family::V4),
            "IPv6" => request.ip_families.push(Family::V6),
            other => errors.push(ServiceFieldError::UnknownValue {
                field: "spec.ipFamilies",
                value: other.to_owned(),
            }),
        }
    }
    request.ip_family_policy = match spec.ip_family_policy.as_deref() {
        None | Some("SingleStack") => IpFamilyPolicy::SingleStack,
        Some("PreferDualStack") => IpFamilyPolicy::PreferDualStack,
        Some("RequireDualStack") => IpFamilyPolicy::RequireDualStack,
        Some(other) => {
            errors.push(ServiceFieldError::UnknownValue {
                field: "spec.ipFamilyPolicy",
                value: other.to_owned(),
            });
            IpFamilyPolicy::SingleStack
        }
    };

    request.requested_addresses = requested_addresses(
        spec.load_balancer_ip.as_deref(),
        annotations
            .get(names::ANNOTATION_LOAD_BALANCER_IPS)
            .map(String::as_str),
        &mut errors,
    );

    request.pool = match annotations.get(names::ANNOTATION_ADDRESS_POOL) {
        Some(pool) if pool.trim().is_empty() => {
            errors.push(ServiceFieldError::EmptyPoolAnnotation);
            None
        }
        Some(pool) => Some(pool.trim().to_owned()),
        None => None,
    };
    request.sharing_key = annotations
        .get(names::ANNOTATION_ALLOW_SHARED_IP)
        .map(|k| k.trim().to_owned())
        .filter(|k| !k.is_empty());

    request.ports = Vec::new();
    for port in spec.ports.iter().flatten() {
        let protocol = match port.protocol.as_deref() {
            None | Some("TCP") => Protocol::Tcp,
            Some("UDP") => Protocol::Udp,
            Some("SCTP") => Protocol::Sctp,
            Some(other) => {
                errors.push(ServiceFieldError::UnknownValue {
                    field: "spec.ports[].protocol",
                    value: other.to_owned(),
                });
                continue;
            }
        };
        match u16::try_from(port.port) {
            Ok(number) if number != 0 => request.ports.push(ServicePort {
                protocol,
                port: number,
            }),
            _ => errors.push(ServiceFieldError::PortOutOfRange(port.port)),
        }
    }

    request.traffic_policy = match spec.external_traffic_policy.as_deref() {
        None | Some("Cluster") => TrafficPolicy::Cluster,
        Some("Local") => TrafficPolicy::Local,
        Some(other) => {
            errors.push(ServiceFieldError::UnknownValue {
                field: "spec.externalTrafficPolicy",
                value: other.to_owned(),
            });
            TrafficPolicy::Cluster
        }
    };
    request.pod_selector = spec.selector.clone().unwrap_or_default();

    request.external_ips = Vec::new();
    for entry in spec.external_ips.iter().flatten() {
        match entry.trim().parse::<IpAddr>() {
            Ok(address) => request.external_ips.push(address),
            Err(_) => errors.push(ServiceFieldError::BadExternalIp(entry.clone())),
        }
    }

    ConvertedService { request, errors }
}

/// `spec.loadBalancerIP` and the `herald.dev/loadBalancerIPs` annotation, merged: either may
/// be used; when both are, the field's address must be among the annotation's.
fn requested_addresses(
    field: Option<&str>,
    annotation: Option<&str>,
    errors: &mut Vec<ServiceFieldError>,
) -> Vec<IpAddr> {
    let mut parse = |name: &str, text: &str| match address::parse_address_list(text) {
        Ok(list) => Some(list),
        Err(error) => {
            errors.push(ServiceFieldError::BadAddress {
                field: name.to_owned(),
                error,
            });
            None
        }
    };
    let from_field = field
        .filter(|t| !t.trim().is_empty())
        .and_then(|t| parse("spec.loadBalancerIP", t));
    let from_annotation = annotation.and_then(|t| parse(names::ANNOTATION_LOAD_BALANCER_IPS, t));
    match (from_field, from_annotation) {
        (Some(field_list), Some(annotation_list)) => {
            if field_list.iter().all(|a| annotation_list.contains(a)) {
                annotation_list
            } else {
                errors.push(ServiceFieldError::RequestsDisagree {
                    field: field.unwrap_or_default().to_owned(),
                    value: annotation.unwrap_or_default().to_owned(),
                });
                Vec::new()
            }
        }
        (Some(list), None) | (None, Some(list)) => list,
        (None, None) => Vec::new(),
    }
}

/// MetalLB's Service annotations that Herald reads when the controller runs with
/// `--metallb-annotations` (chart value `compat.metallbAnnotations`), each with the Herald
/// annotation it stands for. Both MetalLB prefixes are read: `metallb.io/` and the older
/// `metallb.universe.tf/`.
pub const METALLB_ANNOTATIONS: [(&str, &str); 3] = [
    ("address-pool", names::ANNOTATION_ADDRESS_POOL),
    ("loadBalancerIPs", names::ANNOTATION_LOAD_BALANCER_IPS),
    ("allow-shared-ip", names::ANNOTATION_ALLOW_SHARED_IP),
];

/// MetalLB's current and older annotation prefixes, in order of precedence.
pub const METALLB_ANNOTATION_PREFIXES: [&str; 2] = ["metallb.io/", "metallb.universe.tf/"];

/// Reads MetalLB's Service annotations as Herald's, in the controller's own view of the
/// Service (the object in the API is not changed). Precedence, per annotation: a
/// `herald.dev/` annotation wins; otherwise `metallb.io/`; otherwise `metallb.universe.tf/`.
/// `metallb.io/ip-allocated-from-pool` is not read: it is MetalLB's output, and a restarted
/// controller finds the pool of an address in status by the address itself.
///
/// Returns whether the view changed.
pub fn adopt_metallb_annotations(service: &mut Service) -> bool {
    let Some(annotations) = service.metadata.annotations.as_mut() else {
        return false;
    };
    let mut changed = false;
    for (name, herald) in METALLB_ANNOTATIONS {
        if annotations.contains_key(herald) {
            continue;
        }
        let found = METALLB_ANNOTATION_PREFIXES
            .iter()
            .find_map(|prefix| annotations.get(&format!("{prefix}{name}")))
            .cloned();
        if let Some(value) = found {
            annotations.insert(herald.to_owned(), value);
            changed = true;
        }
    }
    changed
}

/// The addresses a Service's `status.loadBalancer.ingress` lists (unparseable entries and
/// hostnames are skipped: Herald never writes them).
pub fn status_addresses(service: &Service) -> Vec<IpAddr> {
    service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|ingress| ingress.ip.as_deref())
        .filter_map(|ip| ip.trim().parse().ok())
        .collect()
}

/// The pools named by the `herald.dev/ip-allocated-from-pool` annotation (split at `,`, kept
/// positionally; empty when absent).
pub fn allocated_from(service: &Service) -> Vec<String> {
    service
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(names::ANNOTATION_ALLOCATED_FROM_POOL))
        .map(|value| value.split(',').map(|p| p.trim().to_owned()).collect())
        .unwrap_or_default()
}

/// Something in a pool's spec that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolFieldError {
    /// An `addresses` entry that is not a CIDR or range.
    #[error(transparent)]
    Address(#[from] EntryError),
    /// A selector with an unknown operator; the selector is left out (it matches nothing).
    #[error("serviceAllocation.{field}[{index}]: unknown operator {operator:?}")]
    Selector {
        /// `namespaceSelectors` or `serviceSelectors`.
        field: &'static str,
        /// Position in the list.
        index: usize,
        /// The operator found.
        operator: String,
    },
}

/// A pool converted for the allocator, with what could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertedPool {
    /// The pool; invalid entries are left out, the valid ones still serve.
    pub spec: PoolSpec,
    /// What could not be read.
    pub errors: Vec<PoolFieldError>,
}

impl ConvertedPool {
    /// Whether some `addresses` entries are invalid.
    pub fn has_invalid_addresses(&self) -> bool {
        self.errors
            .iter()
            .any(|e| matches!(e, PoolFieldError::Address(_)))
    }
}

/// Converts an `IPAddressPool` into a [`PoolSpec`]. A pool being deleted serves no new
/// allocation but keeps what it handed out.
pub fn pool_spec(pool: &IPAddressPool) -> ConvertedPool {
    let mut errors = Vec::new();
    let name = pool.metadata.name.clone().unwrap_or_default();
    let addresses = match address::parse_entries(&pool.spec.addresses) {
        Ok(ranges) => ranges,
        Err(bad) => {
            errors.extend(bad.into_iter().map(PoolFieldError::Address));
            pool.spec
                .addresses
                .iter()
                .filter_map(|entry| entry.parse().ok())
                .collect()
        }
    };
    let mut spec = PoolSpec::new(name, addresses);
    spec.auto_assign = pool.spec.auto_assign;
    spec.avoid_buggy_ips = pool.spec.avoid_buggy_ips;
    spec.allow_external_ips = pool.spec.allow_external_ips;
    spec.deleting = pool.metadata.deletion_timestamp.is_some();
    if let Some(allocation) = &pool.spec.service_allocation {
        spec.priority = allocation.priority;
        spec.namespaces = allocation.namespaces.clone();
        spec.namespace_selectors = selectors(
            &allocation.namespace_selectors,
            "namespaceSelectors",
            &mut errors,
        );
        spec.service_selectors = selectors(
            &allocation.service_selectors,
            "serviceSelectors",
            &mut errors,
        );
        // A pool restricted only by selectors that could not be read serves nobody rather
        // than everybody.
        if !allocation.namespace_selectors.is_empty()
            && spec.namespace_selectors.is_empty()
            && spec.namespaces.is_empty()
        {
            spec.namespaces.push(String::new());
        }
        if !allocation.service_selectors.is_empty() && spec.service_selectors.is_empty() {
            spec.service_selectors.push(LabelSelector {
                match_labels: Labels::new(),
                match_expressions: vec![SelectorRequirement {
                    key: String::new(),
                    operator: SelectorOperator::In,
                    values: Vec::new(),
                }],
            });
        }
    }
    ConvertedPool { spec, errors }
}

fn selectors(
    api: &[ApiLabelSelector],
    field: &'static str,
    errors: &mut Vec<PoolFieldError>,
) -> Vec<LabelSelector> {
    let mut out = Vec::new();
    for (index, selector) in api.iter().enumerate() {
        match label_selector(selector) {
            Ok(s) => out.push(s),
            Err(operator) => errors.push(PoolFieldError::Selector {
                field,
                index,
                operator,
            }),
        }
    }
    out
}

/// A `metav1.LabelSelector` as plain data; `Err(operator)` for an unknown operator.
pub fn label_selector(selector: &ApiLabelSelector) -> Result<LabelSelector, String> {
    herald_crds::convert::label_selector(selector).map_err(|unknown| unknown.0)
}

/// The node's own addresses that Herald never hands out: each `InternalIP` and `ExternalIP`
/// of `status.addresses`, as (node name, address). Entries that are not addresses (or of
/// other types, such as `Hostname`) are skipped; a node without a name has none.
pub fn node_addresses(node: &Node) -> Vec<(String, IpAddr)> {
    let Some(name) = node.metadata.name.as_deref() else {
        return Vec::new();
    };
    node.status
        .iter()
        .flat_map(|s| s.addresses.iter().flatten())
        .filter(|a| a.type_ == "InternalIP" || a.type_ == "ExternalIP")
        .filter_map(|a| a.address.trim().parse::<IpAddr>().ok())
        .map(|address| (name.to_owned(), address))
        .collect()
}

#[cfg(test)]
mod tests;
