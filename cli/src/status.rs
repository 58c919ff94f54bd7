//! `herald status`: the view of who announces what, built from objects already read.
//!
//! Owns the reading of the announcer records the speakers keep on each Service
//! (`l2-announcer.herald.dev/<address>` = `<node>/<interfaces>`, `bgp-peers.herald.dev/<node>`
//! = the peers carrying the route from that node), the controller's pool annotation, the
//! Service conditions and Events, pool usage and the per-node BGP session states, and their
//! rendering as text. The I/O edge (`main.rs`) lists the objects; nothing here does I/O.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv6Addr};

use herald_crds::api::{BGPPeer, IPAddressPool};
use herald_crds::names;
use k8s_openapi::api::core::v1::{Event, Service};
use serde::Serialize;

/// Prefix of the layer-2 announcer record annotations (one per address).
pub const L2_RECORD_PREFIX: &str = "l2-announcer.herald.dev/";
/// Prefix of the per-node BGP carrier annotations.
pub const BGP_CARRIER_PREFIX: &str = "bgp-peers.herald.dev/";

/// Everything `herald status` shows.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Status {
    /// Per Service.
    pub services: Vec<ServiceView>,
    /// Per pool.
    pub pools: Vec<PoolView>,
    /// Per peer.
    pub peers: Vec<PeerView>,
}

/// One Service.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceView {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Addresses in `status.loadBalancer.ingress`.
    pub addresses: Vec<String>,
    /// Pool(s) the addresses came from.
    pub pool: Option<String>,
    /// Which node announces each address over layer 2.
    pub layer2: Vec<L2Announcer>,
    /// Which peers carry the route, from which node.
    pub bgp: Vec<BgpCarrier>,
    /// Service conditions.
    pub conditions: Vec<ConditionView>,
    /// Last Events, oldest first.
    pub events: Vec<EventView>,
}

/// Who announces an address over layer 2.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct L2Announcer {
    /// The address.
    pub address: String,
    /// The announcing node.
    pub node: String,
    /// Its interfaces.
    pub interfaces: Vec<String>,
}

/// A node whose speaker has the Service's route on sessions with these peers.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BgpCarrier {
    /// The node (as in the annotation key).
    pub node: String,
    /// BGPPeer names.
    pub peers: Vec<String>,
}

/// A condition.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ConditionView {
    /// Type.
    #[serde(rename = "type")]
    pub type_: String,
    /// True/False/Unknown.
    pub status: String,
    /// Reason.
    pub reason: String,
    /// Message.
    pub message: String,
}

/// An Event.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    /// Normal/Warning.
    #[serde(rename = "type")]
    pub type_: String,
    /// Reason.
    pub reason: String,
    /// Message.
    pub message: String,
    /// How often.
    pub count: i32,
    /// When last seen (RFC 3339), if known.
    pub last_seen: Option<String>,
}

/// One pool's usage.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PoolView {
    /// Name.
    pub name: String,
    /// Its addresses.
    pub addresses: Vec<String>,
    /// Assigned IPv4 addresses.
    #[serde(rename = "assignedIPv4")]
    pub assigned_ipv4: i64,
    /// Free IPv4 addresses.
    #[serde(rename = "availableIPv4")]
    pub available_ipv4: i64,
    /// Assigned IPv6 addresses.
    #[serde(rename = "assignedIPv6")]
    pub assigned_ipv6: i64,
    /// Free IPv6 addresses (decimal text: may exceed any integer type).
    #[serde(rename = "availableIPv6")]
    pub available_ipv6: String,
    /// Pool conditions.
    pub conditions: Vec<ConditionView>,
}

/// One peer's sessions.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PeerView {
    /// Name.
    pub name: String,
    /// Peer address.
    pub peer_address: String,
    /// Peer ASN.
    #[serde(rename = "peerASN")]
    pub peer_asn: u32,
    /// Session per node.
    pub sessions: Vec<SessionView>,
}

/// One node's session.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    /// Node.
    pub node: String,
    /// FSM state (RFC 4271 §8.2.2).
    pub state: String,
    /// Why the last session ended.
    pub last_error: Option<String>,
    /// Prefixes advertised.
    pub advertised_prefixes: Option<i64>,
}

/// The address an L2 record key's label stands for: a dotted quad, or the eight expanded
/// IPv6 groups joined with `-`.
pub fn address_of_label(label: &str) -> Option<IpAddr> {
    if let Ok(address) = label.parse::<IpAddr>() {
        return Some(address);
    }
    label
        .replace('-', ":")
        .parse::<Ipv6Addr>()
        .ok()
        .map(IpAddr::V6)
}

/// Whether a Service is a load-balancer Service or carries Herald's records.
fn is_shown(service: &Service) -> bool {
    let load_balancer = service
        .spec
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        .is_some_and(|t| t == "LoadBalancer");
    let annotated = service.metadata.annotations.as_ref().is_some_and(|a| {
        a.keys()
            .any(|k| k.starts_with(L2_RECORD_PREFIX) || k.starts_with(BGP_CARRIER_PREFIX))
    });
    load_balancer || annotated
}

/// The view of one Service; `events` are those whose involved object is this Service.
pub fn service_view(service: &Service, events: &[Event], max_events: usize) -> ServiceView {
    let annotations = service.metadata.annotations.clone().unwrap_or_default();
    let addresses = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.clone())
        .collect();
    let mut layer2 = Vec::new();
    let mut bgp = Vec::new();
    for (key, value) in &annotations {
        if let Some(label) = key.strip_prefix(L2_RECORD_PREFIX) {
            let (node, interfaces) = value.trim().split_once('/').unwrap_or((value.trim(), ""));
            layer2.push(L2Announcer {
                address: address_of_label(label)
                    .map_or_else(|| label.to_owned(), |a| a.to_string()),
                node: node.to_owned(),
                interfaces: interfaces
                    .split(',')
                    .map(str::trim)
                    .filter(|i| !i.is_empty())
                    .map(str::to_owned)
                    .collect(),
            });
        } else if let Some(node) = key.strip_prefix(BGP_CARRIER_PREFIX) {
            bgp.push(BgpCarrier {
                node: node.to_owned(),
                peers: value
                    .split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect(),
            });
        }
    }
    let conditions = service
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .map(|c| ConditionView {
            type_: c.type_.clone(),
            status: c.status.clone(),
            reason: c.reason.clone(),
            message: c.message.clone(),
        })
        .collect();
    let mut mine: Vec<&Event> = events
        .iter()
        .filter(|e| {
            e.involved_object.kind.as_deref() == Some("Service")
                && e.involved_object.name == service.metadata.name
                && e.involved_object.namespace == service.metadata.namespace
        })
        .collect();
    mine.sort_by_key(|e| event_time(e));
    let skip = mine.len().saturating_sub(max_events);
    let events = mine
        .into_iter()
        .skip(skip)
        .map(|e| EventView {
            type_: e.type_.clone().unwrap_or_default(),
            reason: e.reason.clone().unwrap_or_default(),
            message: e.message.clone().unwrap_or_default(),
            count: e.count.unwrap_or(1),
            last_seen: event_time(e),
        })
        .collect();
    ServiceView {
        namespace: service.metadata.namespace.clone().unwrap_or_default(),
        name: service.metadata.name.clone().unwrap_or_default(),
        addresses,
        pool: annotations
            .get(names::ANNOTATION_ALLOCATED_FROM_POOL)
            .cloned(),
        layer2,
        bgp,
        conditions,
        events,
    }
}

fn event_time(event: &Event) -> Option<String> {
    event
        .last_timestamp
        .as_ref()
        .map(|t| t.0.to_string())
        .or_else(|| event.event_time.as_ref().map(|t| t.0.to_string()))
        .or_else(|| event.first_timestamp.as_ref().map(|t| t.0.to_string()))
}

/// The whole view. `only` limits the Services to one `(namespace, name)`.
pub fn build(
    services: &[Service],
    pools: &[IPAddressPool],
    peers: &[BGPPeer],
    events: &[Event],
    only: Option<(&str, &str)>,
    max_events: usize,
) -> Status {
    let mut services: Vec<ServiceView> = services
        .iter()
        .filter(|s| match only {
            Some((namespace, name)) => {
                s.metadata.namespace.as_deref() == Some(namespace)
                    && s.metadata.name.as_deref() == Some(name)
            }
            None => is_shown(s),
        })
        .map(|s| service_view(s, events, max_events))
        .collect();
    services.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let mut pools: Vec<PoolView> = pools
        .iter()
        .map(|p| {
            let status = p.status.clone().unwrap_or_default();
            PoolView {
                name: p.metadata.name.clone().unwrap_or_default(),
                addresses: p.spec.addresses.clone(),
                assigned_ipv4: status.assigned_ipv4,
                available_ipv4: status.available_ipv4,
                assigned_ipv6: status.assigned_ipv6,
                available_ipv6: status.available_ipv6.clone(),
                conditions: status
                    .conditions
                    .iter()
                    .map(|c| ConditionView {
                        type_: c.type_.clone(),
                        status: c.status.clone(),
                        reason: c.reason.clone(),
                        message: c.message.clone(),
                    })
                    .collect(),
            }
        })
        .collect();
    pools.sort_by(|a, b| a.name.cmp(&b.name));
    let mut peers: Vec<PeerView> = peers
        .iter()
        .map(|p| PeerView {
            name: p.metadata.name.clone().unwrap_or_default(),
            peer_address: p.spec.peer_address.clone(),
            peer_asn: p.spec.peer_asn,
            sessions: p
                .status
                .as_ref()
                .map(|s| s.sessions.as_slice())
                .unwrap_or_default()
                .iter()
                .map(|s| SessionView {
                    node: s.node.clone(),
                    state: format!("{:?}", s.state),
                    last_error: s.last_error.clone(),
                    advertised_prefixes: s.advertised_prefixes,
                })
                .collect(),
        })
        .collect();
    peers.sort_by(|a, b| a.name.cmp(&b.name));
    Status {
        services,
        pools,
        peers,
    }
}

/// Plain-text rendering, one block per Service, then pools and peers.
pub fn render_text(status: &Status) -> String {
    let mut out = String::new();
    if status.services.is_empty() {
        out.push_str("No LoadBalancer Services.\n");
    }
    for s in &status.services {
        let _ = writeln!(out, "Service {}/{}", s.namespace, s.name);
        let addresses = if s.addresses.is_empty() {
            "<none>".to_owned()
        } else {
            s.addresses.join(", ")
        };
        let _ = writeln!(out, "  addresses: {addresses}");
        let _ = writeln!(
            out,
            "  pool:      {}",
            s.pool.as_deref().unwrap_or("<none>")
        );
        for a in &s.layer2 {
            let _ = writeln!(
                out,
                "  layer 2:   {} announced by {} on {}",
                a.address,
                a.node,
                if a.interfaces.is_empty() {
                    "-".to_owned()
                } else {
                    a.interfaces.join(",")
                }
            );
        }
        for c in &s.bgp {
            let _ = writeln!(
                out,
                "  bgp:       from {} to peers {}",
                c.node,
                c.peers.join(",")
            );
        }
        if s.layer2.is_empty() && s.bgp.is_empty() {
            let _ = writeln!(out, "  announced: by no node");
        }
        for c in &s.conditions {
            let _ = writeln!(
                out,
                "  condition: {}={} {}: {}",
                c.type_, c.status, c.reason, c.message
            );
        }
        for e in &s.events {
            let _ = writeln!(
                out,
                "  event:     {} {} {} (x{}) {}",
                e.last_seen.as_deref().unwrap_or("-"),
                e.type_,
                e.reason,
                e.count,
                e.message
            );
        }
    }
    if !status.pools.is_empty() {
        let _ = writeln!(
            out,
            "\nPOOL                 ASSIGNED-V4  FREE-V4  ASSIGNED-V6  FREE-V6  ADDRESSES"
        );
        for p in &status.pools {
            let _ = writeln!(
                out,
                "{:<20} {:>11}  {:>7}  {:>11}  {:>7}  {}",
                p.name,
                p.assigned_ipv4,
                p.available_ipv4,
                p.assigned_ipv6,
                p.available_ipv6,
                p.addresses.join(",")
            );
        }
    }
    if !status.peers.is_empty() {
        let _ = writeln!(
            out,
            "\nPEER                 ADDRESS            ASN         NODE: STATE"
        );
        for p in &status.peers {
            let sessions = if p.sessions.is_empty() {
                "<no session reported>".to_owned()
            } else {
                p.sessions
                    .iter()
                    .map(|s| format!("{}: {}", s.node, s.state))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let _ = writeln!(
                out,
                "{:<20} {:<18} {:<11} {}",
                p.name, p.peer_address, p.peer_asn, sessions
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        LoadBalancerIngress, LoadBalancerStatus, ServiceSpec, ServiceStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn service(annotations: &[(&str, &str)], ips: &[&str]) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("web".to_owned()),
                namespace: Some("demo".to_owned()),
                annotations: Some(
                    annotations
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                ),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                type_: Some("LoadBalancer".to_owned()),
                ..ServiceSpec::default()
            }),
            status: Some(ServiceStatus {
                load_balancer: Some(LoadBalancerStatus {
                    ingress: Some(
                        ips.iter()
                            .map(|ip| LoadBalancerIngress {
                                ip: Some((*ip).to_owned()),
                                ..LoadBalancerIngress::default()
                            })
                            .collect(),
                    ),
                }),
                conditions: None,
            }),
        }
    }

    #[test]
    fn layer2_records_name_the_node_and_interfaces_per_address() {
        let svc = service(
            &[
                ("l2-announcer.herald.dev/192.0.2.130", "node-b/eth0,eth1"),
                (
                    "l2-announcer.herald.dev/2001-0db8-0001-0000-0000-0000-0000-0100",
                    "node-a/eth0",
                ),
                ("herald.dev/ip-allocated-from-pool", "l2"),
            ],
            &["192.0.2.130", "2001:db8:1::100"],
        );
        let view = service_view(&svc, &[], 5);
        assert_eq!(view.pool.as_deref(), Some("l2"));
        assert_eq!(view.addresses, vec!["192.0.2.130", "2001:db8:1::100"]);
        assert!(view.layer2.contains(&L2Announcer {
            address: "192.0.2.130".to_owned(),
            node: "node-b".to_owned(),
            interfaces: vec!["eth0".to_owned(), "eth1".to_owned()],
        }));
        assert!(view.layer2.contains(&L2Announcer {
            address: "2001:db8:1::100".to_owned(),
            node: "node-a".to_owned(),
            interfaces: vec!["eth0".to_owned()],
        }));
        let text = render_text(&Status {
            services: vec![view],
            ..Status::default()
        });
        assert!(
            text.contains("192.0.2.130 announced by node-b on eth0,eth1"),
            "{text}"
        );
    }

    #[test]
    fn bgp_carriers_list_the_peers_per_node() {
        let svc = service(
            &[("bgp-peers.herald.dev/node-1", "upstream-a, upstream-b")],
            &["203.0.113.5"],
        );
        let view = service_view(&svc, &[], 5);
        assert_eq!(
            view.bgp,
            vec![BgpCarrier {
                node: "node-1".to_owned(),
                peers: vec!["upstream-a".to_owned(), "upstream-b".to_owned()],
            }]
        );
    }

    fn event(service: &str, reason: &str, second: i64) -> Event {
        use k8s_openapi::api::core::v1::ObjectReference;
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
        Event {
            involved_object: ObjectReference {
                kind: Some("Service".to_owned()),
                name: Some(service.to_owned()),
                namespace: Some("demo".to_owned()),
                ..ObjectReference::default()
            },
            reason: Some(reason.to_owned()),
            type_: Some("Normal".to_owned()),
            last_timestamp: Some(Time(
                k8s_openapi::jiff::Timestamp::from_second(1_800_000_000 + second)
                    .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
            )),
            ..Event::default()
        }
    }

    #[test]
    fn only_the_services_own_last_events_are_shown_oldest_first() {
        let events = [
            event("web", "Third", 3),
            event("other", "NotMine", 4),
            event("web", "First", 1),
            event("web", "Second", 2),
        ];
        let view = service_view(&service(&[], &[]), &events, 2);
        let reasons: Vec<&str> = view.events.iter().map(|e| e.reason.as_str()).collect();
        assert_eq!(reasons, ["Second", "Third"]);
    }

    #[test]
    fn a_service_nobody_announces_says_so() {
        let view = service_view(&service(&[], &[]), &[], 5);
        let text = render_text(&Status {
            services: vec![view],
            ..Status::default()
        });
        assert!(text.contains("addresses: <none>"), "{text}");
        assert!(text.contains("announced: by no node"), "{text}");
    }
}
