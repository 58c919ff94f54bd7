//! `L2Advertisement`: which pools are announced over layer 2 (ARP / NDP), from which nodes
//! and interfaces. Pure data: no I/O.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::schema;

/// Announce addresses of the selected pools over layer 2: one healthy node per address answers
/// ARP (IPv4) and Neighbor Solicitations (IPv6) for it and sends gratuitous ARP / unsolicited
/// Neighbor Advertisements when it takes the address over.
// kube's printcolumn(...) repeats keys such as `type_`, which clippy mistakes for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "herald.dev",
    version = "v1alpha1",
    kind = "L2Advertisement",
    namespaced,
    derive = "PartialEq",
    shortname = "l2adv",
    category = "herald",
    doc = "L2Advertisement announces the addresses of selected IPAddressPools over layer 2 (ARP for IPv4, NDP for IPv6) from one healthy node per address.",
    printcolumn(name = "Pools", type_ = "string", json_path = ".spec.pools"),
    printcolumn(
        name = "Pool Selectors",
        type_ = "string",
        json_path = ".spec.poolSelectors",
        priority = 1
    ),
    printcolumn(name = "Interfaces", type_ = "string", json_path = ".spec.interfaces"),
    printcolumn(
        name = "Node Selectors",
        type_ = "string",
        json_path = ".spec.nodeSelectors",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct L2AdvertisementSpec {
    /// Names of the IPAddressPools to announce. With `poolSelectors`, a pool is announced
    /// when it is listed or matches a selector; with neither, every pool is announced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::object_names")]
    pub pools: Vec<String>,

    /// Label selectors on IPAddressPool objects whose addresses are announced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(transform = schema::list_atomic)]
    pub pool_selectors: Vec<LabelSelector>,

    /// Label selectors on Node objects: only matching nodes may announce. Empty means every
    /// node (except those labelled `node.kubernetes.io/exclude-from-external-load-balancers`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(transform = schema::list_atomic)]
    pub node_selectors: Vec<LabelSelector>,

    /// Network interfaces on which to answer and send ARP/NDP (e.g. `eth0`, `bond0.100`).
    /// Empty means every interface that has an address in the announced address's subnet,
    /// falling back to every up, non-loopback interface.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::interface_names")]
    pub interfaces: Vec<String>,
}
