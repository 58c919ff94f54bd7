//! `IPAddressPool`: the addresses Herald may hand to Services, and how it hands them out.
//!
//! Owns the spec/status types and their schema; addresses stay strings here (they are parsed
//! by [`crate::address`]). Pure data: no I/O.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::schema;

/// Condition type: the pool's addresses are valid and it is in service.
pub const CONDITION_READY: &str = "Ready";
/// Condition type: some of the pool's addresses also belong to another pool.
pub const CONDITION_OVERLAPPING: &str = "Overlapping";
/// Condition type: some entries of `spec.addresses` could not be parsed.
pub const CONDITION_INVALID_ADDRESSES: &str = "InvalidAddresses";
/// Condition type: Services still hold addresses of the pool (it is kept by a finalizer).
pub const CONDITION_IN_USE: &str = "InUse";

/// Addresses that Herald may assign to Services of `type: LoadBalancer` (and, when allowed,
/// announce for `spec.externalIPs`).
// kube's printcolumn(...) repeats keys such as `type_`, which clippy mistakes for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "herald.dev",
    version = "v1alpha1",
    kind = "IPAddressPool",
    namespaced,
    status = "IPAddressPoolStatus",
    derive = "PartialEq",
    shortname = "ipp",
    category = "herald",
    doc = "IPAddressPool is a set of addresses (CIDRs and ranges, IPv4 and IPv6) that Herald hands to Services of type LoadBalancer.",
    printcolumn(
        name = "Addresses",
        type_ = "string",
        json_path = ".spec.addresses",
        description = "The pool's CIDRs and ranges"
    ),
    printcolumn(
        name = "Auto Assign",
        type_ = "boolean",
        json_path = ".spec.autoAssign",
        description = "Whether Services get addresses from this pool without asking for it"
    ),
    printcolumn(
        name = "Avoid Buggy IPs",
        type_ = "boolean",
        json_path = ".spec.avoidBuggyIPs",
        priority = 1
    ),
    printcolumn(
        name = "External IPs",
        type_ = "boolean",
        json_path = ".spec.allowExternalIPs",
        priority = 1,
        description = "Whether spec.externalIPs inside the pool are announced"
    ),
    printcolumn(
        name = "Assigned IPv4",
        type_ = "integer",
        json_path = ".status.assignedIPv4"
    ),
    printcolumn(
        name = "Available IPv4",
        type_ = "integer",
        json_path = ".status.availableIPv4"
    ),
    printcolumn(
        name = "Assigned IPv6",
        type_ = "integer",
        json_path = ".status.assignedIPv6"
    ),
    printcolumn(
        name = "Available IPv6",
        type_ = "string",
        json_path = ".status.availableIPv6"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct IPAddressPoolSpec {
    /// The pool's addresses: each entry is a CIDR (`192.0.2.0/24`, `2001:db8::/120`) or an
    /// inclusive range of one family (`192.0.2.10-192.0.2.20`, `2001:db8::10-2001:db8::1f`).
    /// A CIDR must be written with its network address (no bits set past the prefix length).
    /// IPv4 and IPv6 entries may be mixed in one pool; a dual-stack Service gets one address
    /// of each family.
    #[schemars(schema_with = "schema::pool_addresses")]
    pub addresses: Vec<String>,

    /// Whether Services get addresses from this pool without asking for it. When false the
    /// pool serves only Services that name it (annotation `herald.dev/address-pool`) or
    /// request one of its addresses (`spec.loadBalancerIP` or `herald.dev/loadBalancerIPs`).
    #[serde(default = "default_true")]
    pub auto_assign: bool,

    /// Never assign IPv4 addresses ending in `.0` or `.255`, which some old client networks
    /// drop as if they were network or broadcast addresses.
    #[serde(default, rename = "avoidBuggyIPs")]
    pub avoid_buggy_ips: bool,

    /// Whether addresses of this pool listed in a Service's `spec.externalIPs` are announced.
    /// Herald never announces an external IP outside a pool that allows it, which closes the
    /// externalIPs hijack (CVE-2020-8554) for Herald's part.
    #[serde(default, rename = "allowExternalIPs")]
    pub allow_external_ips: bool,

    /// Which Services this pool serves and in which order pools are tried. Without it the
    /// pool serves every Service, after the pools that set a priority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_allocation: Option<ServiceAllocation>,
}

impl Default for IPAddressPoolSpec {
    fn default() -> Self {
        Self {
            addresses: Vec::new(),
            auto_assign: true,
            avoid_buggy_ips: false,
            allow_external_ips: false,
            service_allocation: None,
        }
    }
}

/// Which Services a pool serves, and how it ranks against other pools.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAllocation {
    /// Rank of the pool when several can serve a Service: the lowest number is tried first.
    /// Pools without a priority come after all pools with one; ties are broken by pool name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub priority: Option<i32>,

    /// Namespaces whose Services this pool serves. Combined with `namespaceSelectors`: a
    /// Service qualifies when its namespace is listed or matches one selector. Empty (with
    /// no selectors either) means every namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::namespace_names")]
    pub namespaces: Vec<String>,

    /// Label selectors on Namespace objects; a Service in a matching namespace qualifies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(transform = schema::list_atomic)]
    pub namespace_selectors: Vec<LabelSelector>,

    /// Label selectors on the Service itself; when set, a Service must match one of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(transform = schema::list_atomic)]
    pub service_selectors: Vec<LabelSelector>,
}

/// What the controller observed about a pool. Written by the controller only.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IPAddressPoolStatus {
    /// IPv4 addresses of the pool currently held by Services (a shared address counts once).
    #[serde(default, rename = "assignedIPv4")]
    pub assigned_ipv4: i64,

    /// IPv6 addresses of the pool currently held by Services (a shared address counts once).
    #[serde(default, rename = "assignedIPv6")]
    pub assigned_ipv6: i64,

    /// IPv4 addresses of the pool still free to assign (after `avoidBuggyIPs`).
    #[serde(default, rename = "availableIPv4")]
    pub available_ipv4: i64,

    /// IPv6 addresses of the pool still free to assign, as an exact decimal number: an IPv6
    /// pool can hold up to 2^128 addresses, more than any integer field can carry.
    #[serde(default = "zero_text", rename = "availableIPv6")]
    #[schemars(regex(pattern = r"^[0-9]{1,39}$"))]
    pub available_ipv6: String,

    /// The pool's conditions: `Ready`, `Overlapping`, `InvalidAddresses`, `InUse`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(transform = schema::list_map_by_type)]
    pub conditions: Vec<Condition>,

    /// The `metadata.generation` of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl Default for IPAddressPoolStatus {
    fn default() -> Self {
        Self {
            assigned_ipv4: 0,
            assigned_ipv6: 0,
            available_ipv4: 0,
            available_ipv6: zero_text(),
            conditions: Vec::new(),
            observed_generation: None,
        }
    }
}

impl IPAddressPoolStatus {
    /// `availableIPv6` as a number; `None` when the text is not a decimal `u128`.
    pub fn available_ipv6_count(&self) -> Option<u128> {
        self.available_ipv6.parse().ok()
    }

    /// Sets `availableIPv6` from a number.
    pub fn set_available_ipv6_count(&mut self, count: u128) {
        self.available_ipv6 = count.to_string();
    }
}

fn default_true() -> bool {
    true
}

fn zero_text() -> String {
    "0".to_owned()
}
