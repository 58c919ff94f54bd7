//! `herald check`: problems an operator should know about, found in objects already read.
//!
//! Owns the checks: overlapping pools, pools that contain node addresses, pools whose
//! addresses do not parse, load-balancer Services without an address (and why: their
//! conditions and last warning), BGP sessions that are not Established, and layer-2 address
//! conflicts the speakers reported. The I/O edge (`main.rs`) lists the objects; nothing here
//! does I/O.

use std::fmt;
use std::net::IpAddr;

use herald_crds::address::{AddressRange, find_overlaps};
use herald_crds::api::{BGPPeer, BGPSessionState, IPAddressPool};
use herald_crds::names;
use k8s_openapi::api::core::v1::{Event, Node, Service};
use serde::Serialize;

/// Condition type the speakers set on a Service while another host claims its address.
pub const CONDITION_L2_CONFLICT: &str = "herald.dev/L2Conflict";

/// One problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Which check found it.
    pub check: &'static str,
    /// The object (`IPAddressPool a`, `Service ns/name`, `BGPPeer p`).
    pub subject: String,
    /// What is wrong and what it means.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}: {}", self.check, self.subject, self.message)
    }
}

/// What the checks read.
#[derive(Debug, Clone, Copy)]
pub struct Cluster<'a> {
    /// Herald's pools.
    pub pools: &'a [IPAddressPool],
    /// Nodes.
    pub nodes: &'a [Node],
    /// Services (all namespaces).
    pub services: &'a [Service],
    /// Herald's peers.
    pub peers: &'a [BGPPeer],
    /// Events (for the reason a Service has no address).
    pub events: &'a [Event],
    /// The load-balancer class the controller serves.
    pub class: &'a str,
    /// Whether the controller serves class-less Services.
    pub serve_classless: bool,
}

/// Runs every check.
pub fn run(cluster: &Cluster<'_>) -> Vec<Problem> {
    let mut problems = Vec::new();
    let parsed = parse_pools(cluster.pools, &mut problems);
    overlapping_pools(&parsed, &mut problems);
    pools_with_node_addresses(&parsed, cluster.nodes, &mut problems);
    services_without_address(cluster, &mut problems);
    peers_not_established(cluster.peers, &mut problems);
    layer2_conflicts(cluster.services, &mut problems);
    problems
}

fn parse_pools(
    pools: &[IPAddressPool],
    problems: &mut Vec<Problem>,
) -> Vec<(String, Vec<AddressRange>)> {
    let mut parsed = Vec::new();
    for pool in pools {
        let name = pool.metadata.name.clone().unwrap_or_default();
        let mut ranges = Vec::new();
        for entry in &pool.spec.addresses {
            match entry.trim().parse::<AddressRange>() {
                Ok(range) => ranges.push(range),
                Err(error) => problems.push(Problem {
                    check: "pool-addresses",
                    subject: format!("IPAddressPool {name}"),
                    message: format!("{entry:?} is not an address range: {error}"),
                }),
            }
        }
        parsed.push((name, ranges));
    }
    parsed
}

fn overlapping_pools(pools: &[(String, Vec<AddressRange>)], problems: &mut Vec<Problem>) {
    let overlaps = find_overlaps(pools.iter().map(|(name, ranges)| (name.as_str(), ranges)));
    for overlap in overlaps {
        let subject = if overlap.within_one_pool() {
            format!("IPAddressPool {}", overlap.first.pool)
        } else {
            format!(
                "IPAddressPools {} and {}",
                overlap.first.pool, overlap.second.pool
            )
        };
        problems.push(Problem {
            check: "overlapping-pools",
            subject,
            message: format!(
                "addresses[{}] and addresses[{}] share {}-{}: an address there can be handed out from either",
                overlap.first.index,
                overlap.second.index,
                overlap.common.first(),
                overlap.common.last()
            ),
        });
    }
}

fn pools_with_node_addresses(
    pools: &[(String, Vec<AddressRange>)],
    nodes: &[Node],
    problems: &mut Vec<Problem>,
) {
    for node in nodes {
        let node_name = node.metadata.name.clone().unwrap_or_default();
        let addresses = node
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .into_iter()
            .flatten()
            .filter(|a| a.type_ == "InternalIP" || a.type_ == "ExternalIP")
            .filter_map(|a| a.address.trim().parse::<IpAddr>().ok());
        for address in addresses {
            for (pool, ranges) in pools {
                if ranges.iter().any(|r| r.contains(address)) {
                    problems.push(Problem {
                        check: "pool-contains-node-address",
                        subject: format!("IPAddressPool {pool}"),
                        message: format!(
                            "contains {address}, an address of node {node_name}: a Service given it would take the node's traffic"
                        ),
                    });
                }
            }
        }
    }
}

/// Whether the controller serves this Service.
fn served(service: &Service, class: &str, serve_classless: bool) -> bool {
    let Some(spec) = &service.spec else {
        return false;
    };
    if spec.type_.as_deref() != Some("LoadBalancer") {
        return false;
    }
    match spec.load_balancer_class.as_deref() {
        Some(c) => c == class,
        None => serve_classless,
    }
}

fn services_without_address(cluster: &Cluster<'_>, problems: &mut Vec<Problem>) {
    for service in cluster.services {
        if !served(service, cluster.class, cluster.serve_classless) {
            continue;
        }
        let has_address = service
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .is_some_and(|i| i.iter().any(|i| i.ip.is_some()));
        if has_address {
            continue;
        }
        let namespace = service.metadata.namespace.clone().unwrap_or_default();
        let name = service.metadata.name.clone().unwrap_or_default();
        let from_condition = service
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .find(|c| c.type_.starts_with(names::GROUP) && c.status != "True")
            .map(|c| format!("{} {}: {}", c.type_, c.reason, c.message));
        let from_event = cluster
            .events
            .iter()
            .filter(|e| {
                e.involved_object.kind.as_deref() == Some("Service")
                    && e.involved_object.name.as_deref() == Some(name.as_str())
                    && e.involved_object.namespace.as_deref() == Some(namespace.as_str())
                    && e.type_.as_deref() == Some("Warning")
            })
            .max_by_key(|e| e.last_timestamp.as_ref().map(|t| t.0))
            .map(|e| {
                format!(
                    "{}: {}",
                    e.reason.as_deref().unwrap_or(""),
                    e.message.as_deref().unwrap_or("")
                )
            });
        let why = from_condition.or(from_event).unwrap_or_else(|| {
            "no condition or warning Event explains it yet (is the controller running?)".to_owned()
        });
        problems.push(Problem {
            check: "service-without-address",
            subject: format!("Service {namespace}/{name}"),
            message: why,
        });
    }
}

fn peers_not_established(peers: &[BGPPeer], problems: &mut Vec<Problem>) {
    for peer in peers {
        let name = peer.metadata.name.clone().unwrap_or_default();
        let sessions = peer
            .status
            .as_ref()
            .map(|s| s.sessions.as_slice())
            .unwrap_or_default();
        for session in sessions {
            if session.state != BGPSessionState::Established {
                problems.push(Problem {
                    check: "peer-not-established",
                    subject: format!("BGPPeer {name}"),
                    message: format!(
                        "session from node {} is {:?}{}",
                        session.node,
                        session.state,
                        session
                            .last_error
                            .as_deref()
                            .map(|e| format!(" (last error: {e})"))
                            .unwrap_or_default()
                    ),
                });
            }
        }
    }
}

fn layer2_conflicts(services: &[Service], problems: &mut Vec<Problem>) {
    for service in services {
        let conflicts = service
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .filter(|c| c.type_ == CONDITION_L2_CONFLICT && c.status == "True");
        for condition in conflicts {
            problems.push(Problem {
                check: "layer2-conflict",
                subject: format!(
                    "Service {}/{}",
                    service.metadata.namespace.as_deref().unwrap_or(""),
                    service.metadata.name.as_deref().unwrap_or("")
                ),
                message: format!(
                    "another host answers ARP/NDP for its address: {}",
                    condition.message
                ),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_crds::api::{BGPPeerSpec, BGPPeerStatus, BGPSessionStatus, IPAddressPoolSpec};
    use k8s_openapi::api::core::v1::{NodeAddress, NodeStatus, ServiceSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pool(name: &str, addresses: &[&str]) -> IPAddressPool {
        IPAddressPool::new(
            name,
            IPAddressPoolSpec {
                addresses: addresses.iter().map(|a| (*a).to_owned()).collect(),
                ..IPAddressPoolSpec::default()
            },
        )
    }

    fn cluster<'a>(
        pools: &'a [IPAddressPool],
        nodes: &'a [Node],
        services: &'a [Service],
        peers: &'a [BGPPeer],
    ) -> Cluster<'a> {
        Cluster {
            pools,
            nodes,
            services,
            peers,
            events: &[],
            class: names::LOAD_BALANCER_CLASS,
            serve_classless: true,
        }
    }

    #[test]
    fn overlapping_pools_are_reported_with_the_common_range() {
        let pools = [
            pool("a", &["192.0.2.0/25"]),
            pool("b", &["192.0.2.100-192.0.2.200"]),
            pool("c", &["203.0.113.0/24"]),
        ];
        let problems = run(&cluster(&pools, &[], &[], &[]));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].check, "overlapping-pools");
        assert!(
            problems[0].message.contains("192.0.2.100-192.0.2.127"),
            "{}",
            problems[0]
        );
    }

    #[test]
    fn a_pool_holding_a_node_address_is_reported() {
        let pools = [pool("lan", &["192.0.2.0/24"])];
        let node = Node {
            metadata: ObjectMeta {
                name: Some("node-1".to_owned()),
                ..ObjectMeta::default()
            },
            status: Some(NodeStatus {
                addresses: Some(vec![NodeAddress {
                    type_: "InternalIP".to_owned(),
                    address: "192.0.2.11".to_owned(),
                }]),
                ..NodeStatus::default()
            }),
            ..Node::default()
        };
        let problems = run(&cluster(&pools, &[node], &[], &[]));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].message.contains("192.0.2.11"));
        assert!(problems[0].message.contains("node-1"));
    }

    #[test]
    fn a_served_service_without_address_is_reported_others_are_not() {
        let lb = |name: &str, class: Option<&str>| Service {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some("demo".to_owned()),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                type_: Some("LoadBalancer".to_owned()),
                load_balancer_class: class.map(str::to_owned),
                ..ServiceSpec::default()
            }),
            status: None,
        };
        let services = [lb("mine", None), lb("theirs", Some("other.example/lb"))];
        let problems = run(&cluster(&[], &[], &services, &[]));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].subject, "Service demo/mine");
    }

    #[test]
    fn the_reason_a_service_has_no_address_and_layer2_conflicts_are_given() {
        use k8s_openapi::api::core::v1::ServiceStatus;
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
        let condition = |type_: &str, status: &str, message: &str| Condition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason: "Test".to_owned(),
            message: message.to_owned(),
            last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
            observed_generation: None,
        };
        let service = |name: &str, conditions: Vec<Condition>| Service {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some("demo".to_owned()),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                type_: Some("LoadBalancer".to_owned()),
                ..ServiceSpec::default()
            }),
            status: Some(ServiceStatus {
                conditions: Some(conditions),
                load_balancer: None,
            }),
        };
        let services = [
            service(
                "full",
                vec![condition(
                    "herald.dev/AddressAssigned",
                    "False",
                    "pool lan is full",
                )],
            ),
            service(
                "claimed",
                vec![
                    condition("herald.dev/AddressAssigned", "True", "ok"),
                    condition(
                        CONDITION_L2_CONFLICT,
                        "True",
                        "02:00:00:00:00:99 answers for 192.0.2.130",
                    ),
                ],
            ),
        ];
        let problems = run(&cluster(&[], &[], &services, &[]));
        assert!(
            problems.iter().any(|p| p.subject == "Service demo/full"
                && p.message.contains("pool lan is full")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.check == "layer2-conflict" && p.message.contains("02:00:00:00:00:99")),
            "{problems:?}"
        );
    }

    #[test]
    fn sessions_not_established_are_reported_per_node() {
        let mut peer = BGPPeer::new("upstream", BGPPeerSpec::new(64500, 64501, "192.0.2.1"));
        peer.status = Some(BGPPeerStatus {
            sessions: vec![
                BGPSessionStatus {
                    node: "node-1".to_owned(),
                    state: BGPSessionState::Established,
                    last_transition_time: None,
                    last_error: None,
                    advertised_prefixes: None,
                },
                BGPSessionStatus {
                    node: "node-2".to_owned(),
                    state: BGPSessionState::Active,
                    last_transition_time: None,
                    last_error: Some("hold timer expired".to_owned()),
                    advertised_prefixes: None,
                },
            ],
            ..Default::default()
        });
        let problems = run(&cluster(&[], &[], &[], &[peer]));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].message.contains("node-2 is Active"));
        assert!(problems[0].message.contains("hold timer expired"));
    }
}
