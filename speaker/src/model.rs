//! The speaker's validated internal model of the cluster.
//!
//! Owns the plain data types the planner works on: Services (with their external addresses,
//! ports and endpoints), Nodes, IPAddressPools, L2/BGP advertisements and BGP peers. Every
//! value here is already parsed and validated (addresses are `IpAddr`/`IpNet`, protocols and
//! policies are enums); turning Kubernetes objects into this model happens in `convert`,
//! and nothing in this module does I/O or sees a `k8s-openapi` type. The vocabulary shared
//! with the controller (Service keys, protocols, traffic policy, label selectors, address
//! ranges) is `herald-model`'s, re-exported here.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use herald_crds::api::CommunityValue;
pub use herald_model::address::AddressRange;
pub use herald_model::{
    LabelSelector, Protocol, SelectorOperator, SelectorRequirement, ServiceKey, TrafficPolicy,
    any_selector_matches,
};

/// Where a Service's external address came from; decides which pools may carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AddressOrigin {
    /// `status.loadBalancer.ingress[].ip`, written by the controller.
    LoadBalancerIngress,
    /// `spec.externalIPs`, set by a user; honoured only inside a pool with `allowExternalIPs`.
    ExternalIp,
}

/// One external address of a Service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ExternalAddress {
    pub ip: IpAddr,
    pub origin: AddressOrigin,
}

/// One port of a Service. The target port is resolved per endpoint through `name` (the
/// EndpointSlice port carrying the same name and protocol holds the pod's port number).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServicePort {
    /// The port's name; empty for the single unnamed port a Service may have.
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
}

/// The conditions of an EndpointSlice endpoint (`discovery.k8s.io/v1`). An absent
/// condition is converted as Kubernetes documents it: `ready` and `serving` default to
/// true, `terminating` to false.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EndpointConditions {
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
}

impl EndpointConditions {
    pub const READY: Self = Self {
        ready: true,
        serving: true,
        terminating: false,
    };

    /// Whether the endpoint should receive new connections: ready and not terminating.
    pub fn accepts_new_traffic(self) -> bool {
        self.ready && !self.terminating
    }
}

/// A resolved port of an endpoint, as the EndpointSlice lists it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EndpointPort {
    /// Matches [`ServicePort::name`].
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
}

/// One endpoint of a Service (a pod, usually).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    /// The endpoint's addresses; an EndpointSlice holds one family, so this is usually one
    /// address, and endpoints of both families appear as separate entries.
    pub addresses: Vec<IpAddr>,
    /// The node hosting the endpoint, if the EndpointSlice says.
    pub node: Option<String>,
    pub conditions: EndpointConditions,
    pub ports: Vec<EndpointPort>,
}

impl Endpoint {
    /// The port number this endpoint serves for a Service port, matched by name and protocol.
    pub fn target_port(&self, service_port: &ServicePort) -> Option<u16> {
        self.ports
            .iter()
            .find(|p| p.name == service_port.name && p.protocol == service_port.protocol)
            .map(|p| p.port)
    }

    /// Whether this endpoint runs on the named node.
    pub fn is_on(&self, node: &str) -> bool {
        self.node.as_deref() == Some(node)
    }
}

/// A Service Herald serves, with its endpoints merged from all of its EndpointSlices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub key: ServiceKey,
    pub addresses: Vec<ExternalAddress>,
    pub ports: Vec<ServicePort>,
    pub traffic_policy: TrafficPolicy,
    /// The pool the address came from (`herald.dev/ip-allocated-from-pool`, else the
    /// `herald.dev/address-pool` annotation), used to prefer a pool when looking one up.
    pub pool: Option<String>,
    pub endpoints: Vec<Endpoint>,
}

/// A Kubernetes Node as the speaker needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub addresses: Vec<IpAddr>,
    /// Labelled `node.kubernetes.io/exclude-from-external-load-balancers`: never announces.
    pub excluded: bool,
}

/// An IPAddressPool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// The pool's entries (what `herald_crds::address::parse_entries` accepted).
    pub ranges: Vec<AddressRange>,
    /// Addresses of this pool may be announced when a Service lists them in
    /// `spec.externalIPs`.
    pub allow_external_ips: bool,
}

impl Pool {
    /// The entry of this pool containing `ip`, if any.
    pub fn range_containing(&self, ip: IpAddr) -> Option<&AddressRange> {
        self.ranges.iter().find(|r| r.contains(ip))
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.range_containing(ip).is_some()
    }
}

/// Which pools an advertisement covers: by name or by label selector. When both lists are
/// empty the advertisement covers every pool.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PoolSelection {
    pub names: BTreeSet<String>,
    pub selectors: Vec<LabelSelector>,
}

impl PoolSelection {
    pub fn selects(&self, pool: &Pool) -> bool {
        if self.names.is_empty() && self.selectors.is_empty() {
            return true;
        }
        self.names.contains(&pool.name) || self.selectors.iter().any(|s| s.matches(&pool.labels))
    }
}

/// An L2Advertisement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct L2Advertisement {
    pub name: String,
    pub pools: PoolSelection,
    pub node_selectors: Vec<LabelSelector>,
    /// Interfaces to announce on; empty means any interface whose subnet covers the address.
    pub interfaces: BTreeSet<String>,
}

/// A BGP community attached to an announcement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Community {
    /// RFC 1997: `asn:value`, each 16 bits, carried as one 32-bit number.
    Standard(u32),
    /// RFC 8092: `large:global:local1:local2`, each 32 bits.
    Large {
        global_admin: u32,
        local_data_1: u32,
        local_data_2: u32,
    },
}

impl From<CommunityValue> for Community {
    /// The API's parsed value (`CommunityValue::parse`, `65000:100` or `large:65000:1:2`).
    fn from(value: CommunityValue) -> Self {
        match value {
            CommunityValue::Standard { high, low } => {
                Community::Standard((u32::from(high) << 16) | u32::from(low))
            }
            CommunityValue::Large {
                global,
                local1,
                local2,
            } => Community::Large {
                global_admin: global,
                local_data_1: local1,
                local_data_2: local2,
            },
        }
    }
}

impl fmt::Display for Community {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Community::Standard(v) => write!(f, "{}:{}", v >> 16, v & 0xffff),
            Community::Large {
                global_admin,
                local_data_1,
                local_data_2,
            } => write!(f, "large:{global_admin}:{local_data_1}:{local_data_2}"),
        }
    }
}

/// A BGPAdvertisement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BgpAdvertisement {
    pub name: String,
    pub pools: PoolSelection,
    pub node_selectors: Vec<LabelSelector>,
    /// Peer names to announce to; empty means every peer this node sessions with.
    pub peers: BTreeSet<String>,
    /// Communities with aliases already resolved.
    pub communities: BTreeSet<Community>,
    /// LOCAL_PREF (RFC 4271 §5.1.5); only sent to iBGP peers.
    pub local_pref: Option<u32>,
    /// Prefix length announced for IPv4 addresses (32 = one host route per address).
    pub aggregation_length_v4: u8,
    /// Prefix length announced for IPv6 addresses (128 = one host route per address).
    pub aggregation_length_v6: u8,
    /// Attach the link-bandwidth extended community sized to this node's ready endpoints
    /// (`linkBandwidth.mode: LocalEndpoints`), for weighted ECMP upstream.
    pub link_bandwidth: bool,
}

/// Where a BGP peer's TCP-MD5 password is kept (a Secret key in the install namespace).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SecretKeyRef {
    pub namespace: String,
    pub name: String,
    pub key: String,
}

/// A BGPPeer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub name: String,
    pub my_asn: u32,
    pub peer_asn: u32,
    pub peer_address: IpAddr,
    pub peer_port: u16,
    pub source_address: Option<IpAddr>,
    /// BGP Identifier (RFC 6286) from `routerID`; unset: the speaker picks one of the node's
    /// IPv4 addresses.
    pub router_id: Option<Ipv4Addr>,
    pub hold_time_secs: u16,
    pub keepalive_time_secs: u16,
    pub connect_time_secs: u16,
    pub ebgp_multihop: bool,
    pub password_secret: Option<SecretKeyRef>,
    pub node_selectors: Vec<LabelSelector>,
    pub graceful_restart: bool,
    /// The BFD session to run beside the BGP session (`bfdProfile`, resolved).
    pub bfd: Option<BfdSettings>,
}

/// A BFDProfile as a peer uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BfdSettings {
    pub profile: herald_bfd::Profile,
    /// Smallest received TTL accepted on a multihop session (RFC 5883 §5).
    pub minimum_ttl: u8,
    /// Hold BGP back while BFD is not Up (`strictMode`, RFC 5882 §10.2).
    pub strict: bool,
    pub damping: herald_bfd::DampingConfig,
}

impl Peer {
    /// iBGP when both ends share an AS (RFC 4271 §1.1).
    pub fn is_ibgp(&self) -> bool {
        self.my_asn == self.peer_asn
    }
}

/// Everything the planner needs, as one snapshot. Collections are ordered so the planner's
/// output is deterministic.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Model {
    pub services: BTreeMap<ServiceKey, Service>,
    pub nodes: BTreeMap<String, Node>,
    pub pools: BTreeMap<String, Pool>,
    pub l2_advertisements: BTreeMap<String, L2Advertisement>,
    pub bgp_advertisements: BTreeMap<String, BgpAdvertisement>,
    pub peers: BTreeMap<String, Peer>,
}

impl Model {
    /// The pool that holds `ip`: the preferred (named) pool if it contains the address,
    /// otherwise the first pool by name that does.
    pub fn pool_for(&self, ip: IpAddr, preferred: Option<&str>) -> Option<&Pool> {
        if let Some(pool) = preferred.and_then(|name| self.pools.get(name))
            && pool.contains(ip)
        {
            return Some(pool);
        }
        self.pools.values().find(|p| p.contains(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// A community as production parses it: the API's parser, then the model's value.
    fn community(text: &str) -> Result<Community, herald_crds::api::CommunityError> {
        CommunityValue::parse(text).map(Community::from)
    }

    #[test]
    fn a_pool_range_contains_its_ends_and_nothing_of_the_other_family() {
        let range: AddressRange = "192.0.2.10-192.0.2.20".parse().expect("valid range");
        assert!(range.contains("192.0.2.10".parse().expect("ip")));
        assert!(range.contains("192.0.2.20".parse().expect("ip")));
        assert!(!range.contains("192.0.2.21".parse().expect("ip")));
        assert!(!range.contains("2001:db8::1".parse().expect("ip")));
    }

    #[test]
    fn a_cidr_with_host_bits_is_rejected() {
        assert!(matches!(
            "192.0.2.1/24".parse::<AddressRange>(),
            Err(herald_model::address::AddressError::HostBitsSet { .. })
        ));
        assert!("2001:db8:1::100/120".parse::<AddressRange>().is_ok());
    }

    #[test]
    fn a_backwards_or_mixed_family_range_is_rejected() {
        assert!("192.0.2.20-192.0.2.10".parse::<AddressRange>().is_err());
        assert!("192.0.2.1-2001:db8::1".parse::<AddressRange>().is_err());
        assert!("not-an-address".parse::<AddressRange>().is_err());
    }

    #[test]
    fn a_single_address_is_a_host_prefix() {
        let entry: AddressRange = "203.0.113.7".parse().expect("address");
        assert_eq!(entry.prefix_length(), Some(32));
    }

    #[test]
    fn standard_and_large_communities_round_trip_through_text() {
        for text in ["65000:100", "0:0", "65535:65535", "large:4200000000:1:2"] {
            let community = community(text).expect("valid community");
            assert_eq!(community.to_string(), text);
        }
        assert_eq!(
            community("65000:100"),
            Ok(Community::Standard(65000 * 65536 + 100))
        );
    }

    #[test]
    fn malformed_communities_are_rejected() {
        for text in ["65536:1", "1", "large:1:2", "large:1:2:x", "a:b"] {
            assert!(community(text).is_err(), "{text} should be rejected");
        }
    }

    #[test]
    fn a_label_selector_needs_all_labels_and_all_expressions() {
        let selector = LabelSelector {
            match_labels: labels(&[("zone", "a")]),
            match_expressions: vec![SelectorRequirement {
                key: "role".into(),
                operator: SelectorOperator::NotIn,
                values: ["edge".to_string()].into(),
            }],
        };
        assert!(selector.matches(&labels(&[("zone", "a")])));
        assert!(selector.matches(&labels(&[("zone", "a"), ("role", "worker")])));
        assert!(!selector.matches(&labels(&[("zone", "a"), ("role", "edge")])));
        assert!(!selector.matches(&labels(&[("zone", "b")])));
        assert!(LabelSelector::default().matches(&labels(&[])));
    }

    #[test]
    fn selector_operators_follow_kubernetes_semantics() {
        let req = |operator, values: &[&str]| SelectorRequirement {
            key: "k".into(),
            operator,
            values: values.iter().map(|v| v.to_string()).collect(),
        };
        let with = labels(&[("k", "v")]);
        let without = labels(&[]);
        assert!(req(SelectorOperator::In, &["v"]).matches(&with));
        assert!(!req(SelectorOperator::In, &["v"]).matches(&without));
        assert!(req(SelectorOperator::NotIn, &["v"]).matches(&without));
        assert!(req(SelectorOperator::Exists, &[]).matches(&with));
        assert!(!req(SelectorOperator::Exists, &[]).matches(&without));
        assert!(req(SelectorOperator::DoesNotExist, &[]).matches(&without));
        assert!(!req(SelectorOperator::DoesNotExist, &[]).matches(&with));
    }

    #[test]
    fn an_empty_list_of_node_selectors_selects_every_node() {
        assert!(any_selector_matches(&[], &labels(&[])));
        let zone_a = LabelSelector {
            match_labels: labels(&[("zone", "a")]),
            ..Default::default()
        };
        assert!(!any_selector_matches(
            std::slice::from_ref(&zone_a),
            &labels(&[])
        ));
    }

    #[test]
    fn a_pool_selection_by_name_or_label_selects_only_those_pools() {
        let pool = Pool {
            name: "l2".into(),
            labels: labels(&[("mode", "l2")]),
            ranges: vec![],
            allow_external_ips: false,
        };
        assert!(PoolSelection::default().selects(&pool));
        let by_name = PoolSelection {
            names: ["bgp".to_string()].into(),
            selectors: vec![],
        };
        assert!(!by_name.selects(&pool));
        let by_label = PoolSelection {
            names: ["bgp".to_string()].into(),
            selectors: vec![LabelSelector {
                match_labels: labels(&[("mode", "l2")]),
                ..Default::default()
            }],
        };
        assert!(by_label.selects(&pool));
    }

    #[test]
    fn the_preferred_pool_wins_only_when_it_holds_the_address() {
        let pool = |name: &str, cidr: &str| Pool {
            name: name.into(),
            labels: BTreeMap::new(),
            ranges: vec![cidr.parse().expect("cidr")],
            allow_external_ips: false,
        };
        let model = Model {
            pools: [
                ("a".to_string(), pool("a", "203.0.113.0/24")),
                ("b".to_string(), pool("b", "203.0.113.0/25")),
            ]
            .into(),
            ..Default::default()
        };
        let ip: IpAddr = "203.0.113.5".parse().expect("ip");
        assert_eq!(
            model.pool_for(ip, Some("b")).map(|p| p.name.as_str()),
            Some("b")
        );
        assert_eq!(model.pool_for(ip, None).map(|p| p.name.as_str()), Some("a"));
        let outside: IpAddr = "198.51.100.1".parse().expect("ip");
        assert!(model.pool_for(outside, Some("b")).is_none());
    }

    #[test]
    fn an_endpoint_resolves_its_target_port_by_name_and_protocol() {
        let endpoint = Endpoint {
            addresses: vec!["198.18.1.5".parse().expect("ip")],
            node: Some("n1".into()),
            conditions: EndpointConditions::READY,
            ports: vec![
                EndpointPort {
                    name: "http".into(),
                    protocol: Protocol::Tcp,
                    port: 8080,
                },
                EndpointPort {
                    name: "dns".into(),
                    protocol: Protocol::Udp,
                    port: 5353,
                },
            ],
        };
        let port = |name: &str, protocol| ServicePort {
            name: name.into(),
            protocol,
            port: 80,
        };
        assert_eq!(
            endpoint.target_port(&port("http", Protocol::Tcp)),
            Some(8080)
        );
        assert_eq!(
            endpoint.target_port(&port("dns", Protocol::Udp)),
            Some(5353)
        );
        assert_eq!(endpoint.target_port(&port("dns", Protocol::Tcp)), None);
        assert!(endpoint.is_on("n1"));
        assert!(!endpoint.is_on("n2"));
    }

    #[test]
    fn only_ready_endpoints_that_are_not_terminating_take_new_traffic() {
        assert!(EndpointConditions::READY.accepts_new_traffic());
        let terminating = EndpointConditions {
            ready: true,
            serving: true,
            terminating: true,
        };
        assert!(!terminating.accepts_new_traffic());
        let not_ready = EndpointConditions {
            ready: false,
            serving: true,
            terminating: false,
        };
        assert!(!not_ready.accepts_new_traffic());
    }
}
