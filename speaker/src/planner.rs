//! The pure planner: (model, this node, live speakers) -> this node's desired state.
//!
//! Owns the decisions "which addresses does this node forward, and to which endpoints",
//! "which nodes are eligible to announce each address over layer 2" and "which prefixes does
//! this node announce to which BGP peers, with which attributes". It is a plain function of
//! plain data: no clock, no I/O. Its output feeds the forwarding renderer, the L2 ownership
//! election (`l2`, which picks one owner among the candidates listed here) and the BGP
//! sessions (`bgp`).
//!
//! Rules it applies:
//! - An address is served only inside a pool; an address from `spec.externalIPs` only inside
//!   a pool with `allowExternalIPs`; never a node's own address (a pool overlapping the node
//!   network would otherwise let the speakers answer for it). Anything else becomes a
//!   [`PlanWarning`].
//! - `externalTrafficPolicy: Cluster`: every node forwards to every ready endpoint of the
//!   address's family, masquerading traffic sent to endpoints on other nodes.
//!   `Local`: a node forwards only to its own ready endpoints, without masquerade, and
//!   forwards and announces nothing when it has none.
//! - Terminating and not-ready endpoints never receive new traffic.
//! - Endpoint eviction: endpoints on nodes the membership has declared dead take no new
//!   connections (`Cluster` policy; with `Local` only this node's own endpoints are used),
//!   unless every usable endpoint of the port is on dead nodes: then the set is kept as it
//!   is, because rejecting everything is never better than trying (docs/endpoint-eviction.md).
//! - A node labelled `node.kubernetes.io/exclude-from-external-load-balancers`, or a node the
//!   model does not know, never announces.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;

use crate::model::{
    AddressOrigin, Community, Endpoint, Model, Node, Peer, Pool, Protocol, Service, ServiceKey,
    ServicePort, TrafficPolicy, any_selector_matches,
};

/// The forwarding key: traffic to this address, protocol and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ForwardKey {
    pub address: IpAddr,
    pub protocol: Protocol,
    pub port: u16,
}

/// One endpoint traffic may be DNATed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Backend {
    pub address: IpAddr,
    pub port: u16,
    /// Source-NAT the traffic so replies come back through this node (Cluster policy,
    /// endpoint on another node).
    pub masquerade: bool,
}

/// Where the traffic for one [`ForwardKey`] goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardTarget {
    pub service: ServiceKey,
    /// The Service port's name (empty for an unnamed port).
    pub port_name: String,
    /// Sorted and without duplicates. Empty only for a `Cluster` Service with no ready
    /// endpoint, whose traffic is rejected rather than left to wander.
    pub backends: Vec<Backend>,
}

/// On which interfaces this node would announce an L2 address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterfaceSelection {
    /// Any interface whose subnet covers the address.
    Any,
    /// Only these interfaces.
    Only(BTreeSet<String>),
}

/// Layer-2 facts about one address; the owner is elected by `l2::ownership` among
/// `candidates`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct L2Announcement {
    pub services: BTreeSet<ServiceKey>,
    /// Live nodes that are eligible to own the address (this node included when eligible).
    pub candidates: BTreeSet<String>,
    /// Every node eligible to own the address, live or not (`candidates` is the live part):
    /// lets a speaker tell whether it sees at least half of them.
    pub eligible: BTreeSet<String>,
    /// Where this node would announce the address; `None` when this node is not a candidate.
    pub interfaces: Option<InterfaceSelection>,
}

impl L2Announcement {
    pub fn is_candidate(&self, node: &str) -> bool {
        self.candidates.contains(node)
    }
}

/// Path attributes and bookkeeping for one announced prefix to one peer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouteAttributes {
    /// Standard and large communities (RFC 1997, RFC 8092), union over advertisements.
    pub communities: BTreeSet<Community>,
    /// LOCAL_PREF (RFC 4271 §5.1.5); `None` towards eBGP peers, which must not receive it.
    /// When several advertisements set one, the highest wins.
    pub local_pref: Option<u32>,
    /// Ready endpoints on this node behind the prefix (summed over its Services), for the
    /// link-bandwidth extended community (draft-ietf-idr-link-bandwidth).
    pub local_ready_endpoints: u32,
    /// Some advertisement asked for the link-bandwidth extended community.
    pub link_bandwidth: bool,
    pub services: BTreeSet<ServiceKey>,
}

/// BGP desired state of this node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BgpPlan {
    /// Peers this node keeps a session with (their node selectors match this node).
    pub sessions: BTreeMap<String, Peer>,
    /// Per peer name: the prefixes to announce and their attributes.
    pub routes: BTreeMap<String, BTreeMap<IpNet, RouteAttributes>>,
}

/// Something in the model the planner had to leave out; reported as Events/conditions.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum PlanWarning {
    /// The address is in no pool: it is neither forwarded nor announced.
    AddressOutsidePools {
        service: ServiceKey,
        address: IpAddr,
    },
    /// A `spec.externalIPs` address inside a pool that does not allow external IPs.
    ExternalIpNotAllowed {
        service: ServiceKey,
        address: IpAddr,
        pool: String,
    },
    /// The address is a node's own address (a pool overlapping the node network): announcing
    /// it would take the node's traffic, so it is neither announced nor forwarded.
    NodeAddress {
        service: ServiceKey,
        address: IpAddr,
        node: String,
    },
    /// Two Services claim the same address, protocol and port; the first by key is kept.
    PortClash {
        key: ForwardKey,
        kept: ServiceKey,
        dropped: ServiceKey,
    },
}

/// What endpoint eviction changed in the forwarding decisions; for logs and metrics (a
/// flap is not worth an Event).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EvictionReport {
    /// Backends left out of a forwarding target because their node is dead.
    pub evicted: BTreeMap<ForwardKey, BTreeSet<Backend>>,
    /// Targets whose every usable backend is on a dead node: kept whole rather than emptied.
    pub kept_whole: BTreeSet<ForwardKey>,
}

impl EvictionReport {
    /// Distinct endpoint addresses taken out of at least one target.
    pub fn evicted_addresses(&self) -> BTreeSet<IpAddr> {
        self.evicted
            .values()
            .flatten()
            .map(|backend| backend.address)
            .collect()
    }
}

/// Everything this node should be doing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodePlan {
    pub node: String,
    pub forwarding: BTreeMap<ForwardKey, ForwardTarget>,
    pub l2: BTreeMap<IpAddr, L2Announcement>,
    pub bgp: BgpPlan,
    pub warnings: Vec<PlanWarning>,
    pub eviction: EvictionReport,
    /// Every address an endpoint of a forwarded Service has, whatever its conditions: an
    /// endpoint missing here is gone for good (deleted), not merely not ready or evicted.
    pub endpoint_addresses: BTreeSet<IpAddr>,
}

/// An address that passed the pool checks, with the Services that use it.
struct ServedAddress<'m> {
    pool: &'m Pool,
    services: Vec<&'m Service>,
}

/// Computes this node's desired state. `live_speakers` are the nodes whose speakers
/// membership reports alive; this node always counts as alive (it is running this).
pub fn plan(model: &Model, this_node: &str, live_speakers: &BTreeSet<String>) -> NodePlan {
    plan_evicting(model, this_node, live_speakers, &BTreeSet::new())
}

/// [`plan`], with endpoint eviction: endpoints on `dead_nodes` (nodes whose speakers were
/// seen alive and are now declared dead by the membership) take no new connections. This
/// node is never dead to itself.
pub fn plan_evicting(
    model: &Model,
    this_node: &str,
    live_speakers: &BTreeSet<String>,
    dead_nodes: &BTreeSet<String>,
) -> NodePlan {
    let mut warnings = Vec::new();
    let served = served_addresses(model, &mut warnings);
    let mut eviction = EvictionReport::default();
    let forwarding = plan_forwarding(&served, this_node, dead_nodes, &mut eviction, &mut warnings);
    let live_nodes: Vec<&Node> = model
        .nodes
        .values()
        .filter(|n| n.name == this_node || live_speakers.contains(&n.name))
        .collect();
    let l2 = plan_l2(model, &served, this_node, &live_nodes);
    let bgp = plan_bgp(model, &served, this_node);
    warnings.sort();
    let endpoint_addresses = served
        .values()
        .flat_map(|entry| &entry.services)
        .flat_map(|service| &service.endpoints)
        .flat_map(|endpoint| endpoint.addresses.iter().copied())
        .collect();
    NodePlan {
        node: this_node.to_string(),
        forwarding,
        l2,
        bgp,
        warnings,
        eviction,
        endpoint_addresses,
    }
}

/// Addresses that may be served, by address, each with its pool and Services.
fn served_addresses<'m>(
    model: &'m Model,
    warnings: &mut Vec<PlanWarning>,
) -> BTreeMap<IpAddr, ServedAddress<'m>> {
    let mut served: BTreeMap<IpAddr, ServedAddress<'m>> = BTreeMap::new();
    for service in model.services.values() {
        // An address may be listed twice (ingress and externalIPs); an ingress entry wins.
        let mut addresses: BTreeMap<IpAddr, AddressOrigin> = BTreeMap::new();
        for address in &service.addresses {
            addresses
                .entry(address.ip)
                .and_modify(|origin| *origin = (*origin).min(address.origin))
                .or_insert(address.origin);
        }
        for (ip, origin) in addresses {
            if let Some(node) = model.nodes.values().find(|n| n.addresses.contains(&ip)) {
                warnings.push(PlanWarning::NodeAddress {
                    service: service.key.clone(),
                    address: ip,
                    node: node.name.clone(),
                });
                continue;
            }
            let Some(pool) = model.pool_for(ip, service.pool.as_deref()) else {
                warnings.push(PlanWarning::AddressOutsidePools {
                    service: service.key.clone(),
                    address: ip,
                });
                continue;
            };
            if origin == AddressOrigin::ExternalIp && !pool.allow_external_ips {
                warnings.push(PlanWarning::ExternalIpNotAllowed {
                    service: service.key.clone(),
                    address: ip,
                    pool: pool.name.clone(),
                });
                continue;
            }
            served
                .entry(ip)
                .or_insert_with(|| ServedAddress {
                    pool,
                    services: Vec::new(),
                })
                .services
                .push(service);
        }
    }
    served
}

fn same_family(a: IpAddr, b: IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4()
}

/// The endpoint's address of the same family as `vip`, if it takes new traffic.
fn ready_address_for(endpoint: &Endpoint, vip: IpAddr) -> Option<IpAddr> {
    if !endpoint.conditions.accepts_new_traffic() {
        return None;
    }
    endpoint
        .addresses
        .iter()
        .copied()
        .find(|a| same_family(*a, vip))
}

/// How many distinct ready endpoints of `vip`'s family the Service has on `node`.
fn local_ready_endpoints(service: &Service, node: &str, vip: IpAddr) -> u32 {
    let addresses: BTreeSet<IpAddr> = service
        .endpoints
        .iter()
        .filter(|e| e.is_on(node))
        .filter_map(|e| ready_address_for(e, vip))
        .collect();
    u32::try_from(addresses.len()).unwrap_or(u32::MAX)
}

/// Whether `node` may announce an address used by `services`: every `Local` Service on it
/// needs a ready endpoint on that node (otherwise traffic for it would be dropped there).
fn local_policy_allows(services: &[&Service], node: &str, vip: IpAddr) -> bool {
    services
        .iter()
        .filter(|s| s.traffic_policy == TrafficPolicy::Local)
        .all(|s| local_ready_endpoints(s, node, vip) > 0)
}

/// The backends of one Service port: `(kept, evicted)`. `evicted` holds the backends on
/// dead nodes that were left out; when nothing would be left, they are all kept instead
/// and `evicted` is returned empty with `kept_whole` true.
struct PortBackends {
    kept: Vec<Backend>,
    evicted: BTreeSet<Backend>,
    kept_whole: bool,
}

fn backends_for(
    service: &Service,
    port: &ServicePort,
    vip: IpAddr,
    this_node: &str,
    dead_nodes: &BTreeSet<String>,
) -> PortBackends {
    let local_only = service.traffic_policy == TrafficPolicy::Local;
    let mut backends: BTreeSet<Backend> = BTreeSet::new();
    let mut on_dead_nodes: BTreeSet<Backend> = BTreeSet::new();
    for endpoint in &service.endpoints {
        let on_this_node = endpoint.is_on(this_node);
        if local_only && !on_this_node {
            continue;
        }
        let (Some(address), Some(target)) =
            (ready_address_for(endpoint, vip), endpoint.target_port(port))
        else {
            continue;
        };
        let backend = Backend {
            address,
            port: target,
            masquerade: !local_only && !on_this_node,
        };
        let on_dead_node = !on_this_node
            && endpoint
                .node
                .as_ref()
                .is_some_and(|node| dead_nodes.contains(node));
        if on_dead_node {
            on_dead_nodes.insert(backend);
        } else {
            backends.insert(backend);
        }
    }
    if backends.is_empty() && !on_dead_nodes.is_empty() {
        return PortBackends {
            kept: on_dead_nodes.into_iter().collect(),
            evicted: BTreeSet::new(),
            kept_whole: true,
        };
    }
    PortBackends {
        kept: backends.into_iter().collect(),
        evicted: on_dead_nodes,
        kept_whole: false,
    }
}

fn plan_forwarding(
    served: &BTreeMap<IpAddr, ServedAddress<'_>>,
    this_node: &str,
    dead_nodes: &BTreeSet<String>,
    eviction: &mut EvictionReport,
    warnings: &mut Vec<PlanWarning>,
) -> BTreeMap<ForwardKey, ForwardTarget> {
    let mut forwarding: BTreeMap<ForwardKey, ForwardTarget> = BTreeMap::new();
    for (&address, entry) in served {
        for service in &entry.services {
            for port in &service.ports {
                let PortBackends {
                    kept: backends,
                    evicted,
                    kept_whole,
                } = backends_for(service, port, address, this_node, dead_nodes);
                if service.traffic_policy == TrafficPolicy::Local && backends.is_empty() {
                    continue;
                }
                let key = ForwardKey {
                    address,
                    protocol: port.protocol,
                    port: port.port,
                };
                if let Some(existing) = forwarding.get(&key) {
                    if existing.service != service.key {
                        warnings.push(PlanWarning::PortClash {
                            key,
                            kept: existing.service.clone(),
                            dropped: service.key.clone(),
                        });
                    }
                    continue;
                }
                if kept_whole {
                    eviction.kept_whole.insert(key);
                }
                if !evicted.is_empty() {
                    eviction.evicted.insert(key, evicted);
                }
                forwarding.insert(
                    key,
                    ForwardTarget {
                        service: service.key.clone(),
                        port_name: port.name.clone(),
                        backends,
                    },
                );
            }
        }
    }
    forwarding
}

fn plan_l2(
    model: &Model,
    served: &BTreeMap<IpAddr, ServedAddress<'_>>,
    this_node: &str,
    live_nodes: &[&Node],
) -> BTreeMap<IpAddr, L2Announcement> {
    let mut l2 = BTreeMap::new();
    for (&address, entry) in served {
        let advertisements: Vec<_> = model
            .l2_advertisements
            .values()
            .filter(|a| a.pools.selects(entry.pool))
            .collect();
        if advertisements.is_empty() {
            continue;
        }
        let mut candidates = BTreeSet::new();
        let mut interfaces = None;
        for node in live_nodes {
            if node.excluded || !local_policy_allows(&entry.services, &node.name, address) {
                continue;
            }
            let matching: Vec<_> = advertisements
                .iter()
                .filter(|a| any_selector_matches(&a.node_selectors, &node.labels))
                .collect();
            if matching.is_empty() {
                continue;
            }
            candidates.insert(node.name.clone());
            if node.name == this_node {
                let selection = if matching.iter().any(|a| a.interfaces.is_empty()) {
                    InterfaceSelection::Any
                } else {
                    InterfaceSelection::Only(
                        matching
                            .iter()
                            .flat_map(|a| a.interfaces.iter().cloned())
                            .collect(),
                    )
                };
                interfaces = Some(selection);
            }
        }
        let eligible: BTreeSet<String> = model
            .nodes
            .values()
            .filter(|node| {
                !node.excluded
                    && local_policy_allows(&entry.services, &node.name, address)
                    && advertisements
                        .iter()
                        .any(|a| any_selector_matches(&a.node_selectors, &node.labels))
            })
            .map(|node| node.name.clone())
            .chain(candidates.iter().cloned())
            .collect();
        l2.insert(
            address,
            L2Announcement {
                services: entry.services.iter().map(|s| s.key.clone()).collect(),
                candidates,
                eligible,
                interfaces,
            },
        );
    }
    l2
}

/// The prefix announced for `address`: the advertisement's aggregation length for
/// addresses used only by `Cluster` Services, never shorter than the pool's own CIDR; a host
/// route when a `Local` Service uses it (an aggregate would pull traffic for the other
/// addresses in it to nodes that may have no endpoint for them).
fn announced_prefix(
    address: IpAddr,
    entry: &ServedAddress<'_>,
    aggregation_v4: u8,
    aggregation_v6: u8,
) -> IpNet {
    let host = IpNet::from(address);
    if entry
        .services
        .iter()
        .any(|s| s.traffic_policy == TrafficPolicy::Local)
    {
        return host;
    }
    let wanted = if address.is_ipv4() {
        aggregation_v4
    } else {
        aggregation_v6
    };
    let floor = entry
        .pool
        .range_containing(address)
        .and_then(|r| r.prefix_length())
        .unwrap_or(0);
    IpNet::new(address, wanted.max(floor))
        .map(|net| net.trunc())
        .unwrap_or(host)
}

fn plan_bgp(
    model: &Model,
    served: &BTreeMap<IpAddr, ServedAddress<'_>>,
    this_node: &str,
) -> BgpPlan {
    let Some(node) = model.nodes.get(this_node) else {
        return BgpPlan::default();
    };
    let sessions: BTreeMap<String, Peer> = model
        .peers
        .values()
        .filter(|p| any_selector_matches(&p.node_selectors, &node.labels))
        .map(|p| (p.name.clone(), p.clone()))
        .collect();
    let mut routes: BTreeMap<String, BTreeMap<IpNet, RouteAttributes>> = BTreeMap::new();
    // Per (peer, prefix): local ready endpoints per Service, summed at the end so a Service
    // with two addresses in one aggregate is not counted twice.
    let mut endpoint_counts: BTreeMap<(String, IpNet), BTreeMap<ServiceKey, u32>> = BTreeMap::new();
    if node.excluded {
        return BgpPlan { sessions, routes };
    }
    for (&address, entry) in served {
        if !local_policy_allows(&entry.services, this_node, address) {
            continue;
        }
        for advertisement in model.bgp_advertisements.values() {
            if !advertisement.pools.selects(entry.pool)
                || !any_selector_matches(&advertisement.node_selectors, &node.labels)
            {
                continue;
            }
            let prefix = announced_prefix(
                address,
                entry,
                advertisement.aggregation_length_v4,
                advertisement.aggregation_length_v6,
            );
            for (peer_name, peer) in &sessions {
                if !advertisement.peers.is_empty() && !advertisement.peers.contains(peer_name) {
                    continue;
                }
                let attributes = routes
                    .entry(peer_name.clone())
                    .or_default()
                    .entry(prefix)
                    .or_default();
                attributes
                    .communities
                    .extend(advertisement.communities.iter().copied());
                attributes.link_bandwidth |= advertisement.link_bandwidth;
                if peer.is_ibgp() {
                    attributes.local_pref = attributes.local_pref.max(advertisement.local_pref);
                }
                let counts = endpoint_counts
                    .entry((peer_name.clone(), prefix))
                    .or_default();
                for service in &entry.services {
                    attributes.services.insert(service.key.clone());
                    counts.insert(
                        service.key.clone(),
                        local_ready_endpoints(service, this_node, address),
                    );
                }
            }
        }
    }
    for ((peer, prefix), counts) in endpoint_counts {
        if let Some(attributes) = routes.get_mut(&peer).and_then(|r| r.get_mut(&prefix)) {
            attributes.local_ready_endpoints =
                counts.values().fold(0u32, |a, b| a.saturating_add(*b));
        }
    }
    BgpPlan { sessions, routes }
}

#[cfg(test)]
mod tests;
