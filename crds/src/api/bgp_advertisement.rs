//! `BGPAdvertisement`: which pools are announced over BGP, to which peers, from which nodes,
//! and with which path attributes. Pure data: no I/O.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::schema;

/// Longest prefix that can carry an IPv4 address.
pub const IPV4_MAX_PREFIX_LENGTH: i32 = 32;
/// Longest prefix that can carry an IPv6 address.
pub const IPV6_MAX_PREFIX_LENGTH: i32 = 128;

/// Announce addresses of the selected pools as BGP routes.
// kube's printcolumn(...) repeats keys such as `type_`, which clippy mistakes for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "herald.dev",
    version = "v1alpha1",
    kind = "BGPAdvertisement",
    namespaced,
    derive = "PartialEq",
    shortname = "bgpadv",
    category = "herald",
    doc = "BGPAdvertisement announces the addresses of selected IPAddressPools as BGP routes from every eligible node (ECMP upstream).",
    printcolumn(name = "Pools", type_ = "string", json_path = ".spec.pools"),
    printcolumn(
        name = "Pool Selectors",
        type_ = "string",
        json_path = ".spec.poolSelectors",
        priority = 1
    ),
    printcolumn(name = "Peers", type_ = "string", json_path = ".spec.peers"),
    printcolumn(
        name = "Communities",
        type_ = "string",
        json_path = ".spec.communities",
        priority = 1
    ),
    printcolumn(
        name = "Aggregation",
        type_ = "integer",
        json_path = ".spec.aggregationLength",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct BGPAdvertisementSpec {
    /// Names of the IPAddressPools to announce. With `poolSelectors`, a pool is announced
    /// when it is listed or matches a selector; with neither, every pool is announced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::object_names")]
    pub pools: Vec<String>,

    /// Label selectors on IPAddressPool objects whose addresses are announced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(transform = schema::list_atomic)]
    pub pool_selectors: Vec<LabelSelector>,

    /// Prefix length of the routes announced for IPv4 addresses, 0..32. 32 announces each
    /// address on its own; a shorter length announces the covering prefix instead (it should
    /// not be shorter than the pool's own CIDR).
    #[serde(default = "default_aggregation_length")]
    #[schemars(range(min = 0, max = 32))]
    pub aggregation_length: i32,

    /// Prefix length of the routes announced for IPv6 addresses, 0..128; see
    /// `aggregationLength`.
    #[serde(
        rename = "aggregationLengthV6",
        default = "default_aggregation_length_v6"
    )]
    #[schemars(range(min = 0, max = 128))]
    pub aggregation_length_v6: i32,

    /// LOCAL_PREF attribute of the routes (RFC 4271 §5.1.5); sent to iBGP peers only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 4294967295u32), extend("format" = "int64"))]
    pub local_pref: Option<u32>,

    /// Communities attached to the routes: standard communities (RFC 1997) as `65000:100`,
    /// large communities (RFC 8092) as `large:65000:1:2`, or the name of an alias defined in
    /// a Community object.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::advertisement_communities")]
    pub communities: Vec<String>,

    /// Names of the BGPPeers the routes are sent to. Empty means every peer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::object_names")]
    pub peers: Vec<String>,

    /// Label selectors on Node objects: only speakers on matching nodes announce the routes.
    /// Empty means every node (with `externalTrafficPolicy: Local`, only nodes with a ready
    /// endpoint of the Service announce).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(transform = schema::list_atomic)]
    pub node_selectors: Vec<LabelSelector>,

    /// Opt-in: attach the BGP link-bandwidth extended community to each route, so routers
    /// that honour it weight their ECMP next hops. Unset: plain equal-cost routes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_bandwidth: Option<LinkBandwidth>,
}

impl Default for BGPAdvertisementSpec {
    fn default() -> Self {
        Self {
            pools: Vec::new(),
            pool_selectors: Vec::new(),
            aggregation_length: IPV4_MAX_PREFIX_LENGTH,
            aggregation_length_v6: IPV6_MAX_PREFIX_LENGTH,
            local_pref: None,
            communities: Vec::new(),
            peers: Vec::new(),
            node_selectors: Vec::new(),
            link_bandwidth: None,
        }
    }
}

/// How the link-bandwidth extended community (non-transitive two-octet-AS-specific, sub-type
/// 0x04, draft-ietf-idr-link-bandwidth) is filled in.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct LinkBandwidth {
    /// `LocalEndpoints`: each node advertises a bandwidth proportional to the number of ready
    /// endpoints of the Service on that node, so traffic is spread per pod instead of per
    /// node (useful with `externalTrafficPolicy: Local`).
    pub mode: LinkBandwidthMode,
}

/// What the advertised link bandwidth is proportional to.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum LinkBandwidthMode {
    /// The number of ready endpoints of the Service on the announcing node.
    LocalEndpoints,
}

fn default_aggregation_length() -> i32 {
    IPV4_MAX_PREFIX_LENGTH
}

fn default_aggregation_length_v6() -> i32 {
    IPV6_MAX_PREFIX_LENGTH
}
