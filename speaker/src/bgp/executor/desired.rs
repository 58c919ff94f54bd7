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
use crate::bgp::driver::{DesiredBgp, PeerConfig, TCP_MD5_MAX_KEY_LEN};
use crate::bgp::fsm::{GracefulRestartConfig, SessionConfig};
use crate::l2::interfaces::InterfaceInfo;
use crate::model::{Community, Peer};
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
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::model::{SecretKeyRef, ServiceKey};

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("test address")
    }

    fn net(text: &str) -> IpNet {
        text.parse().expect("test prefix")
    }

    fn peer(name: &str, address: &str) -> Peer {
        Peer {
            name: name.into(),
            my_asn: 64512,
            peer_asn: 64500,
            peer_address: ip(address),
            peer_port: 179,
            source_address: None,
            router_id: None,
            hold_time_secs: 9,
            keepalive_time_secs: 3,
            connect_time_secs: 2,
            ebgp_multihop: false,
            password_secret: None,
            node_selectors: vec![],
            graceful_restart: false,
            bfd: None,
        }
    }

    fn planned(services: &[&str]) -> PlannedAttributes {
        PlannedAttributes {
            services: services
                .iter()
                .map(|name| ServiceKey::new("lab", *name))
                .collect::<BTreeSet<_>>(),
            ..PlannedAttributes::default()
        }
    }

    fn plan_with(peers: &[Peer], routes: &[(&str, &str)]) -> BgpPlan {
        let mut plan = BgpPlan::default();
        for peer in peers {
            plan.sessions.insert(peer.name.clone(), peer.clone());
        }
        for (peer, prefix) in routes {
            plan.routes
                .entry(peer.to_string())
                .or_default()
                .insert(net(prefix), planned(&["web"]));
        }
        plan
    }

    fn facts_on_lan() -> PeerFacts {
        PeerFacts {
            password: None,
            local_address: Some(ip("192.0.2.11")),
            other_family_address: Some(ip("2001:db8:1::11")),
        }
    }

    #[test]
    fn a_peer_with_a_bfd_profile_gets_a_single_hop_session_or_a_multihop_one_when_multihop() {
        let settings = crate::model::BfdSettings {
            profile: herald_bfd::Profile {
                desired_min_tx: Duration::from_millis(100),
                required_min_rx: Duration::from_millis(100),
                detect_mult: 3,
                passive: false,
            },
            minimum_ttl: 250,
            strict: true,
            damping: herald_bfd::DampingConfig {
                initial: Duration::from_secs(1),
                ..herald_bfd::DampingConfig::default()
            },
        };
        let mut router = peer("router", "192.0.2.1");
        router.bfd = Some(settings);
        router.source_address = Some(ip("192.0.2.11"));
        let plan = plan_with(&[router.clone()], &[]);
        let facts = [("router".to_string(), facts_on_lan())].into();
        let out = translate(&plan, &facts, &NodeFacts::default());
        let bfd = out.desired.peers["router"]
            .bfd
            .clone()
            .expect("BFD configured");
        assert_eq!(bfd.hop, Hop::Single);
        assert_eq!(bfd.peer_address, ip("192.0.2.1"));
        assert_eq!(bfd.local_address, Some(ip("192.0.2.11")));
        assert_eq!(bfd.profile, settings.profile);
        assert!(bfd.strict);
        assert_eq!(bfd.damping, settings.damping);
        router.ebgp_multihop = true;
        let plan = plan_with(&[router], &[]);
        let out = translate(&plan, &facts, &NodeFacts::default());
        let bfd = out.desired.peers["router"]
            .bfd
            .clone()
            .expect("BFD configured");
        assert_eq!(bfd.hop, Hop::Multi { minimum_ttl: 250 });
        let plain = plan_with(&[peer("router", "192.0.2.1")], &[]);
        let out = translate(&plain, &facts, &NodeFacts::default());
        assert_eq!(out.desired.peers["router"].bfd, None);
    }

    #[test]
    fn a_planned_peer_becomes_a_session_with_its_timers_ports_and_routes() {
        let mut router = peer("router", "192.0.2.1");
        router.peer_port = 1179;
        router.ebgp_multihop = true;
        let plan = plan_with(&[router], &[("router", "203.0.113.10/32")]);
        let facts = [("router".to_string(), facts_on_lan())].into();
        let out = translate(&plan, &facts, &NodeFacts::default());
        assert!(out.held_back.is_empty());
        let config = &out.desired.peers["router"];
        assert_eq!(config.peer_address, ip("192.0.2.1"));
        assert_eq!(config.peer_port, 1179);
        assert!(config.ebgp_multihop);
        assert_eq!(config.session.local_as, 64512);
        assert_eq!(config.session.peer_as, 64500);
        assert_eq!(config.session.hold_time_secs, 9);
        assert_eq!(config.session.keepalive_secs, Some(3));
        assert_eq!(config.session.connect_retry, Duration::from_secs(2));
        assert_eq!(config.session.router_id, Ipv4Addr::new(192, 0, 2, 11));
        assert_eq!(config.session.graceful_restart, None);
        assert_eq!(
            out.desired.routes["router"].keys().collect::<Vec<_>>(),
            [&net("203.0.113.10/32")]
        );
    }

    #[test]
    fn the_router_id_prefers_the_peer_then_the_flag_then_the_source_then_any_node_address() {
        let mut router = peer("router", "2001:db8:1::1");
        let node = NodeFacts {
            router_id: Some(Ipv4Addr::new(198, 51, 100, 7)),
            ipv4_addresses: vec![Ipv4Addr::new(192, 0, 2, 12)],
        };
        let v6_facts = PeerFacts {
            local_address: Some(ip("2001:db8:1::12")),
            ..PeerFacts::default()
        };
        assert_eq!(
            router_id(&router, &v6_facts, &node),
            Some(Ipv4Addr::new(198, 51, 100, 7))
        );
        router.router_id = Some(Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(
            router_id(&router, &v6_facts, &node),
            Some(Ipv4Addr::new(10, 0, 0, 1))
        );
        router.router_id = None;
        let no_flag = NodeFacts {
            router_id: None,
            ..node.clone()
        };
        assert_eq!(
            router_id(&router, &v6_facts, &no_flag),
            Some(Ipv4Addr::new(192, 0, 2, 12)),
            "an IPv6 session falls back to the node's IPv4 address"
        );
        assert_eq!(
            router_id(&peer("r4", "192.0.2.1"), &facts_on_lan(), &no_flag),
            Some(Ipv4Addr::new(192, 0, 2, 11)),
            "an IPv4 session uses its source address"
        );
        assert_eq!(router_id(&router, &v6_facts, &NodeFacts::default()), None);
    }

    #[test]
    fn a_peer_without_any_ipv4_identifier_is_held_back_with_a_reason() {
        let plan = plan_with(&[peer("v6", "2001:db8:1::1")], &[]);
        let out = translate(&plan, &BTreeMap::new(), &NodeFacts::default());
        assert!(out.desired.peers.is_empty());
        assert!(
            out.held_back["v6"].contains("routerID"),
            "{:?}",
            out.held_back
        );
    }

    #[test]
    fn a_password_is_required_once_a_secret_is_named_and_its_problems_hold_the_peer_back() {
        let mut router = peer("router", "192.0.2.1");
        router.password_secret = Some(SecretKeyRef {
            namespace: "herald-system".into(),
            name: "bgp-auth".into(),
            key: "password".into(),
        });
        let plan = plan_with(&[router], &[("router", "203.0.113.10/32")]);
        let node = NodeFacts::default();
        let run = |password: Option<Result<String, String>>| {
            let facts = PeerFacts {
                password,
                ..facts_on_lan()
            };
            translate(&plan, &[("router".to_string(), facts)].into(), &node)
        };
        assert!(run(None).held_back["router"].contains("not been read"));
        let missing = run(Some(Err("Secret herald-system/bgp-auth not found".into())));
        assert_eq!(
            missing.held_back["router"],
            "Secret herald-system/bgp-auth not found"
        );
        assert!(missing.desired.peers.is_empty());
        assert!(
            run(Some(Ok("k".repeat(81)))).held_back["router"].contains("at most 80"),
            "the kernel refuses longer TCP-MD5 keys"
        );
        let good = run(Some(Ok("s3cret".into())));
        assert!(good.held_back.is_empty());
        assert_eq!(
            good.desired.peers["router"].password.as_deref(),
            Some("s3cret")
        );
    }

    #[test]
    fn a_source_address_of_the_wrong_family_holds_the_peer_back() {
        let mut router = peer("router", "192.0.2.1");
        router.source_address = Some(ip("2001:db8:1::11"));
        let out = translate(
            &plan_with(&[router], &[]),
            &BTreeMap::new(),
            &NodeFacts::default(),
        );
        assert!(out.held_back["router"].contains("sourceAddress"));
    }

    #[test]
    fn ipv6_routes_ride_an_ipv4_session_only_with_an_ipv6_next_hop_from_the_same_interface() {
        let plan = plan_with(
            &[peer("router", "192.0.2.1")],
            &[
                ("router", "203.0.113.10/32"),
                ("router", "2001:db8:100::10/128"),
            ],
        );
        let with = translate(
            &plan,
            &[("router".to_string(), facts_on_lan())].into(),
            &NodeFacts::default(),
        );
        assert_eq!(with.desired.routes["router"].len(), 2);
        assert_eq!(
            with.desired.peers["router"].session.next_hop_v6,
            Some("2001:db8:1::11".parse().expect("v6"))
        );
        assert!(with.families_without_next_hop.is_empty());

        let ipv4_only = PeerFacts {
            other_family_address: None,
            ..facts_on_lan()
        };
        let without = translate(
            &plan,
            &[("router".to_string(), ipv4_only)].into(),
            &NodeFacts::default(),
        );
        assert_eq!(
            without.desired.routes["router"].keys().collect::<Vec<_>>(),
            [&net("203.0.113.10/32")]
        );
        assert_eq!(
            without.families_without_next_hop["router"],
            [Family::Ipv6Unicast]
        );
    }

    #[test]
    fn graceful_restart_is_offered_only_where_the_peer_enables_it() {
        let mut router = peer("router", "192.0.2.1");
        router.graceful_restart = true;
        let config =
            peer_config(&router, &facts_on_lan(), &NodeFacts::default()).expect("configurable");
        let gr = config.session.graceful_restart.expect("offered");
        assert_eq!(gr.restart_time_secs, GRACEFUL_RESTART_TIME_SECS);
    }

    #[test]
    fn a_zero_hold_time_sends_no_keepalives() {
        let mut router = peer("router", "192.0.2.1");
        router.hold_time_secs = 0;
        router.keepalive_time_secs = 0;
        let config =
            peer_config(&router, &facts_on_lan(), &NodeFacts::default()).expect("configurable");
        assert_eq!(config.session.hold_time_secs, 0);
        assert_eq!(config.session.keepalive_secs, None);
    }

    #[test]
    fn communities_split_into_standard_and_large_and_bandwidth_follows_local_endpoints() {
        let mut attributes = planned(&["web"]);
        attributes.communities = [
            Community::Standard((64512 << 16) | 100),
            Community::Large {
                global_admin: 64512,
                local_data_1: 1,
                local_data_2: 2,
            },
        ]
        .into();
        attributes.local_pref = Some(200);
        attributes.link_bandwidth = true;
        attributes.local_ready_endpoints = 3;
        let wire = wire_attributes(&attributes);
        assert_eq!(wire.communities, [(64512 << 16) | 100]);
        assert_eq!(
            wire.large_communities,
            [LargeCommunity {
                global_admin: 64512,
                local_data_1: 1,
                local_data_2: 2
            }]
        );
        assert_eq!(wire.local_pref, Some(200));
        assert_eq!(wire.link_bandwidth_bytes_per_sec, Some(375_000));
        attributes.local_ready_endpoints = 0;
        assert_eq!(
            wire_attributes(&attributes).link_bandwidth_bytes_per_sec,
            Some(LINK_BANDWIDTH_PER_ENDPOINT)
        );
        attributes.link_bandwidth = false;
        assert_eq!(
            wire_attributes(&attributes).link_bandwidth_bytes_per_sec,
            None
        );
    }

    fn interface(name: &str, index: u32, networks: &[&str]) -> InterfaceInfo {
        InterfaceInfo {
            name: name.into(),
            index,
            mac: None,
            up: true,
            loopback: false,
            networks: networks.iter().map(|n| net(n)).collect(),
        }
    }

    #[test]
    fn node_addresses_skip_loopback_link_local_and_down_interfaces() {
        let mut lo = interface("lo", 1, &["127.0.0.1/8"]);
        lo.loopback = true;
        let mut down = interface("eth9", 9, &["192.0.2.99/24"]);
        down.up = false;
        let interfaces = [
            lo,
            interface("cp0", 2, &["169.254.100.11/24"]),
            interface("eth0", 3, &["192.0.2.11/24", "2001:db8:1::11/64"]),
            down,
        ];
        assert_eq!(
            node_ipv4_addresses(&interfaces),
            [Ipv4Addr::new(192, 0, 2, 11)]
        );
    }

    #[test]
    fn the_other_family_address_comes_from_the_interface_of_the_session() {
        let interfaces = [
            interface("pods0", 2, &["198.18.1.1/24", "2001:db8:244:1::1/64"]),
            interface(
                "eth0",
                3,
                &["192.0.2.11/24", "fe80::1/64", "2001:db8:1::11/64"],
            ),
        ];
        assert_eq!(
            other_family_address(ip("192.0.2.11"), &interfaces),
            Some(ip("2001:db8:1::11")),
            "the link-local address is skipped"
        );
        assert_eq!(
            other_family_address(ip("2001:db8:1::11"), &interfaces),
            Some(ip("192.0.2.11"))
        );
        assert_eq!(other_family_address(ip("203.0.113.1"), &interfaces), None);
    }
}
