//! From this node's BGP plan to the [`DesiredBgp`] the session manager runs. Pure.
//!
//! Owns the translation of a planned peer ([`crate::model::Peer`]) into a session and
//! connection configuration ([`PeerConfig`]), of planned route attributes into wire
//! attributes ([`RouteAttributes`]), and the decisions that need facts about the node:
//! which BGP Identifier to use (RFC 6286), which next hop the other address family gets, and
//! which peers cannot run yet (their password Secret is missing, no identifier is available).
//! The facts themselves (Secret contents, the kernel's source address towards a peer, the
//! node's interface addresses) are looked up by the executor's I/O edge and passed in as
//! [`PeerFacts`] and [`NodeFacts`].

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use ipnet::IpNet;

use crate::bfd::driver::BfdPeerConfig;
use crate::bfd::socket::Hop;
use crate::bgp::codec::{Family, LargeCommunity, RouteAttributes};
use crate::bgp::fsm::{GracefulRestartConfig, SessionConfig};
use crate::bgp::peer::{DesiredBgp, PeerConfig, TCP_MD5_MAX_KEY_LEN};
use crate::model::{Community, Peer};
use crate::net::interfaces::InterfaceInfo;
use crate::planner::{BgpPlan, RouteAttributes as PlannedAttributes};

/// Link bandwidth announced per local ready endpoint: 1 Mbit/s, in bytes per second (the
/// unit of the link-bandwidth extended community, draft-ietf-idr-link-bandwidth). Only the
/// ratio between nodes matters to weighted ECMP; FRR shows it as "N Mbps".
pub const LINK_BANDWIDTH_PER_ENDPOINT: u64 = 125_000;

/// Restart Time advertised in the Graceful Restart capability (RFC 4724 §3): how long the
/// peer keeps our routes after the session drops without a NOTIFICATION. A DaemonSet's
/// rolling update restarts a speaker well within this.
pub const GRACEFUL_RESTART_TIME_SECS: u16 = 120;

/// What the I/O edge found out about one planned peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerFacts {
    /// The TCP-MD5 password read from `passwordSecret`, or why it could not be read.
    /// `None` when the peer has no `passwordSecret`.
    pub password: Option<Result<String, String>>,
    /// The address this node sends from towards the peer (`sourceAddress`, or the kernel's
    /// choice for the route to the peer); `None` when the kernel has no route.
    pub local_address: Option<IpAddr>,
    /// A global address of the other family on the interface that holds `local_address`:
    /// the next hop for routes of the other family (IPv6 routes over an IPv4 session).
    pub other_family_address: Option<IpAddr>,
}

/// Facts about this node that every peer shares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeFacts {
    /// `--bgp-router-id` (e.g. the node's IPv4 InternalIP from the downward API).
    pub router_id: Option<Ipv4Addr>,
    /// The node's global IPv4 addresses (interfaces up, not loopback, not link-local), in
    /// interface order: the last resort for a BGP Identifier.
    pub ipv4_addresses: Vec<Ipv4Addr>,
}

/// The result of [`translate`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Translation {
    pub desired: DesiredBgp,
    /// Planned peers that get no session, with the reason (for the peer's status).
    pub held_back: BTreeMap<String, String>,
    /// Per peer: the families whose routes are left out because no next hop of that family
    /// is known (the log explains; the Service annotation does not list the peer).
    pub families_without_next_hop: BTreeMap<String, Vec<Family>>,
}

/// Translates the plan's BGP part. `facts` has an entry per planned peer (a missing entry
/// reads as "nothing known").
pub fn translate(
    plan: &BgpPlan,
    facts: &BTreeMap<String, PeerFacts>,
    node: &NodeFacts,
) -> Translation {
    let mut out = Translation::default();
    let unknown = PeerFacts::default();
    for (name, peer) in &plan.sessions {
        let peer_facts = facts.get(name).unwrap_or(&unknown);
        let config = match peer_config(peer, peer_facts, node) {
            Ok(config) => config,
            Err(reason) => {
                out.held_back.insert(name.clone(), reason);
                continue;
            }
        };
        let empty = BTreeMap::new();
        let planned = plan.routes.get(name).unwrap_or(&empty);
        let mut missing = Vec::new();
        let routes: BTreeMap<IpNet, RouteAttributes> = planned
            .iter()
            .filter(|(prefix, _)| {
                let family = Family::of(prefix);
                let carried = has_next_hop(&config, family);
                if !carried && !missing.contains(&family) {
                    missing.push(family);
                }
                carried
            })
            .map(|(prefix, attributes)| (*prefix, wire_attributes(attributes)))
            .collect();
        if !missing.is_empty() {
            out.families_without_next_hop.insert(name.clone(), missing);
        }
        if !routes.is_empty() {
            out.desired.routes.insert(name.clone(), routes);
        }
        out.desired.peers.insert(name.clone(), config);
    }
    out
}

fn family_of_address(address: IpAddr) -> Family {
    match address {
        IpAddr::V4(_) => Family::Ipv4Unicast,
        IpAddr::V6(_) => Family::Ipv6Unicast,
    }
}

/// Whether routes of `family` can be sent to this peer: the session's own family uses the
/// connection's local address as next hop; the other family needs an address configured.
fn has_next_hop(config: &PeerConfig, family: Family) -> bool {
    if family == family_of_address(config.peer_address) {
        return true;
    }
    match family {
        Family::Ipv4Unicast => config.session.next_hop_v4.is_some(),
        Family::Ipv6Unicast => config.session.next_hop_v6.is_some(),
    }
}

/// The BGP Identifier: the peer's `routerID`, else `--bgp-router-id`, else the IPv4 address
/// the session is sent from, else the node's first global IPv4 address (RFC 6286: any
/// 4-octet value unique within the AS; a node address is, and reads well in the peer's
/// tables).
pub fn router_id(peer: &Peer, facts: &PeerFacts, node: &NodeFacts) -> Option<Ipv4Addr> {
    let from_local = match facts.local_address {
        Some(IpAddr::V4(address)) => Some(address),
        _ => None,
    };
    peer.router_id
        .or(node.router_id)
        .or(from_local)
        .or_else(|| node.ipv4_addresses.first().copied())
}

/// The session and connection configuration of one peer, or why it cannot run.
pub fn peer_config(peer: &Peer, facts: &PeerFacts, node: &NodeFacts) -> Result<PeerConfig, String> {
    if let Some(source) = peer.source_address
        && source.is_ipv4() != peer.peer_address.is_ipv4()
    {
        return Err(format!(
            "sourceAddress {source} is not of the family of peerAddress {}",
            peer.peer_address
        ));
    }
    let password = match &facts.password {
        None if peer.password_secret.is_some() => {
            return Err("the password Secret has not been read yet".to_string());
        }
        None => None,
        Some(Err(reason)) => return Err(reason.clone()),
        Some(Ok(password)) if password.len() > TCP_MD5_MAX_KEY_LEN => {
            return Err(format!(
                "the password is {} bytes long; TCP-MD5 keys are at most {TCP_MD5_MAX_KEY_LEN}",
                password.len()
            ));
        }
        Some(Ok(password)) if password.is_empty() => {
            return Err("the password in the Secret is empty".to_string());
        }
        Some(Ok(password)) => Some(password.clone()),
    };
    let router_id = router_id(peer, facts, node).ok_or_else(|| {
        "no IPv4 address on this node to use as BGP Identifier; set routerID on the BGPPeer \
         or --bgp-router-id"
            .to_string()
    })?;
    let mut session = SessionConfig::new(peer.my_asn, peer.peer_asn, router_id);
    session.hold_time_secs = peer.hold_time_secs;
    // RFC 4271 §4.4: no keepalives when the hold time is zero.
    session.keepalive_secs = (peer.hold_time_secs > 0 && peer.keepalive_time_secs > 0)
        .then_some(peer.keepalive_time_secs);
    session.connect_retry = Duration::from_secs(u64::from(peer.connect_time_secs.max(1)));
    session.graceful_restart = peer.graceful_restart.then_some(GracefulRestartConfig {
        restart_time_secs: GRACEFUL_RESTART_TIME_SECS,
        // The speaker cannot tell a restart from a first start; the Restart State bit only
        // tells the peer not to wait for our End-of-RIB before sending its own (RFC 4724
        // §4.1), and the session clears it once our End-of-RIB is out.
        restarting: true,
    });
    match facts.other_family_address {
        Some(IpAddr::V6(address)) if peer.peer_address.is_ipv4() => {
            session.next_hop_v6 = Some(address);
        }
        Some(IpAddr::V4(address)) if peer.peer_address.is_ipv6() => {
            session.next_hop_v4 = Some(address);
        }
        _ => {}
    }
    let mut config = PeerConfig::new(session, peer.peer_address);
    config.peer_port = peer.peer_port;
    config.source_address = peer.source_address;
    config.password = password;
    config.ebgp_multihop = peer.ebgp_multihop;
    config.bfd = peer.bfd.map(|bfd| BfdPeerConfig {
        peer_address: peer.peer_address,
        local_address: peer.source_address,
        // Single hop (RFC 5881) unless the BGP session itself is multihop (RFC 5883).
        hop: if peer.ebgp_multihop {
            Hop::Multi {
                minimum_ttl: bfd.minimum_ttl,
            }
        } else {
            Hop::Single
        },
        profile: bfd.profile,
        strict: bfd.strict,
        damping: bfd.damping,
    });
    Ok(config)
}

/// Planned attributes as they go on the wire.
pub fn wire_attributes(planned: &PlannedAttributes) -> RouteAttributes {
    let mut attributes = RouteAttributes {
        local_pref: planned.local_pref,
        ..RouteAttributes::default()
    };
    for community in &planned.communities {
        match *community {
            Community::Standard(value) => attributes.communities.push(value),
            Community::Large {
                global_admin,
                local_data_1,
                local_data_2,
            } => attributes.large_communities.push(LargeCommunity {
                global_admin,
                local_data_1,
                local_data_2,
            }),
        }
    }
    if planned.link_bandwidth {
        // A node with no local endpoint (Cluster policy) still forwards: it gets the weight of
        // one endpoint rather than none, which routers would read as "no bandwidth".
        let endpoints = u64::from(planned.local_ready_endpoints.max(1));
        attributes.link_bandwidth_bytes_per_sec =
            Some(endpoints.saturating_mul(LINK_BANDWIDTH_PER_ENDPOINT));
    }
    attributes.normalized()
}

/// The node's global IPv4 addresses: interfaces up and not loopback, addresses not
/// link-local (169.254.0.0/16) — in interface order.
pub fn node_ipv4_addresses(interfaces: &[InterfaceInfo]) -> Vec<Ipv4Addr> {
    interfaces
        .iter()
        .filter(|interface| interface.up && !interface.loopback)
        .flat_map(|interface| &interface.networks)
        .filter_map(|net| match net.addr() {
            IpAddr::V4(address) if !address.is_link_local() && !address.is_loopback() => {
                Some(address)
            }
            _ => None,
        })
        .collect()
}

/// A global address of the other family on the interface that holds `local`: the next hop
/// for routes of that family over a session sent from `local`.
pub fn other_family_address(local: IpAddr, interfaces: &[InterfaceInfo]) -> Option<IpAddr> {
    let interface = interfaces
        .iter()
        .find(|interface| interface.networks.iter().any(|net| net.addr() == local))?;
    interface
        .networks
        .iter()
        .map(IpNet::addr)
        .find(|address| match (local, address) {
            (IpAddr::V4(_), IpAddr::V6(v6)) => {
                !v6.is_unicast_link_local() && !v6.is_loopback() && !v6.is_unspecified()
            }
            (IpAddr::V6(_), IpAddr::V4(v4)) => !v4.is_link_local() && !v4.is_loopback(),
            _ => false,
        })
}

#[cfg(test)]
mod tests;
