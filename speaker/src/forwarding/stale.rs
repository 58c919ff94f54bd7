//! Which connection-tracking entries go stale when forwarding changes (pure).
//!
//! A DNAT decision is taken once per connection and kept in the kernel's connection
//! tracking table; removing a backend from Herald's table stops *new* connections only.
//! For UDP a "connection" is any stream of datagrams with the same 5-tuple, so a client
//! sending every few milliseconds would keep reaching a backend that is gone, for as long as
//! it keeps sending. This module decides which (address, port, backend) flows to flush
//! after an apply; `conntrack` performs it.
//!
//! Rules: a backend that left a forwarding target (scale-down, pod deleted, not ready,
//! evicted from a dead node, or the whole target removed) makes its UDP flows stale; its TCP
//! and SCTP flows are stale only when the endpoint is gone for good (no longer listed at all,
//! [`crate::planner::NodePlan::endpoint_addresses`]): established connections to a backend
//! that still exists (not ready, terminating, or on a node declared dead that may come back)
//! are left to finish.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::model::Protocol;
use crate::planner::{ForwardKey, ForwardTarget};

/// Connections to `key` that were DNATed to `backend:backend_port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StaleFlow {
    pub key: ForwardKey,
    pub backend: IpAddr,
    pub backend_port: u16,
}

/// The flows to flush when forwarding goes from `before` to `after`; `listed` is every
/// endpoint address still known (see the module header).
pub fn stale_flows(
    before: &BTreeMap<ForwardKey, ForwardTarget>,
    after: &BTreeMap<ForwardKey, ForwardTarget>,
    listed: &BTreeSet<IpAddr>,
) -> BTreeSet<StaleFlow> {
    let mut stale = BTreeSet::new();
    for (key, target) in before {
        let remaining: BTreeSet<(IpAddr, u16)> = after
            .get(key)
            .map(|t| t.backends.iter().map(|b| (b.address, b.port)).collect())
            .unwrap_or_default();
        for backend in &target.backends {
            if remaining.contains(&(backend.address, backend.port)) {
                continue;
            }
            let gone_for_good = !listed.contains(&backend.address);
            if key.protocol == Protocol::Udp || gone_for_good {
                stale.insert(StaleFlow {
                    key: *key,
                    backend: backend.address,
                    backend_port: backend.port,
                });
            }
        }
    }
    stale
}

/// One connection-tracking entry as the kernel reports it: the original direction
/// (client -> external address) and the reply direction (backend -> client, after DNAT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackedFlow {
    pub protocol: Protocol,
    pub original_destination: IpAddr,
    pub original_destination_port: u16,
    pub reply_source: IpAddr,
    pub reply_source_port: u16,
}

/// Whether a tracked connection is one of the stale flows.
pub fn is_stale(flow: &TrackedFlow, stale: &BTreeSet<StaleFlow>) -> bool {
    let candidate = StaleFlow {
        key: ForwardKey {
            address: flow.original_destination,
            protocol: flow.protocol,
            port: flow.original_destination_port,
        },
        backend: flow.reply_source,
        backend_port: flow.reply_source_port,
    };
    stale.contains(&candidate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ServiceKey;
    use crate::planner::Backend;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("test address")
    }

    fn key(protocol: Protocol) -> ForwardKey {
        ForwardKey {
            address: ip("203.0.113.10"),
            protocol,
            port: 53,
        }
    }

    fn target(backends: &[&str]) -> ForwardTarget {
        ForwardTarget {
            service: ServiceKey {
                namespace: "lab".into(),
                name: "dns".into(),
            },
            port_name: String::new(),
            backends: backends
                .iter()
                .map(|address| Backend {
                    address: ip(address),
                    port: 5353,
                    masquerade: true,
                })
                .collect(),
        }
    }

    fn table(protocol: Protocol, backends: &[&str]) -> BTreeMap<ForwardKey, ForwardTarget> {
        [(key(protocol), target(backends))].into()
    }

    fn listed(addresses: &[&str]) -> BTreeSet<IpAddr> {
        addresses.iter().map(|a| ip(a)).collect()
    }

    fn flow(protocol: Protocol, backend: &str) -> StaleFlow {
        StaleFlow {
            key: key(protocol),
            backend: ip(backend),
            backend_port: 5353,
        }
    }

    #[test]
    fn a_udp_backend_that_leaves_makes_its_flows_stale_even_if_it_still_exists() {
        let before = table(Protocol::Udp, &["198.18.1.5", "198.18.2.5"]);
        let after = table(Protocol::Udp, &["198.18.1.5"]);
        let stale = stale_flows(&before, &after, &listed(&["198.18.1.5", "198.18.2.5"]));
        assert_eq!(stale, [flow(Protocol::Udp, "198.18.2.5")].into());
    }

    #[test]
    fn a_tcp_backend_that_still_exists_keeps_its_established_connections() {
        let before = table(Protocol::Tcp, &["198.18.1.5", "198.18.2.5"]);
        let after = table(Protocol::Tcp, &["198.18.1.5"]);
        let stale = stale_flows(&before, &after, &listed(&["198.18.1.5", "198.18.2.5"]));
        assert!(stale.is_empty());
    }

    #[test]
    fn a_tcp_backend_gone_for_good_makes_its_flows_stale() {
        let before = table(Protocol::Tcp, &["198.18.1.5", "198.18.2.5"]);
        let after = table(Protocol::Tcp, &["198.18.1.5"]);
        let stale = stale_flows(&before, &after, &listed(&["198.18.1.5"]));
        assert_eq!(stale, [flow(Protocol::Tcp, "198.18.2.5")].into());
    }

    #[test]
    fn a_removed_udp_target_makes_every_flow_to_it_stale() {
        let before = table(Protocol::Udp, &["198.18.1.5", "198.18.2.5"]);
        let stale = stale_flows(&before, &BTreeMap::new(), &BTreeSet::new());
        assert_eq!(
            stale,
            [
                flow(Protocol::Udp, "198.18.1.5"),
                flow(Protocol::Udp, "198.18.2.5")
            ]
            .into()
        );
    }

    #[test]
    fn unchanged_forwarding_and_added_backends_make_nothing_stale() {
        let before = table(Protocol::Udp, &["198.18.1.5"]);
        let after = table(Protocol::Udp, &["198.18.1.5", "198.18.2.5"]);
        assert!(stale_flows(&before, &before, &BTreeSet::new()).is_empty());
        assert!(stale_flows(&before, &after, &BTreeSet::new()).is_empty());
    }

    #[test]
    fn a_backend_whose_port_changed_counts_as_having_left() {
        let before = table(Protocol::Udp, &["198.18.1.5"]);
        let mut after = table(Protocol::Udp, &["198.18.1.5"]);
        for target in after.values_mut() {
            for backend in &mut target.backends {
                backend.port = 5454;
            }
        }
        let stale = stale_flows(&before, &after, &listed(&["198.18.1.5"]));
        assert_eq!(stale, [flow(Protocol::Udp, "198.18.1.5")].into());
    }

    #[test]
    fn a_tracked_flow_matches_by_original_destination_and_reply_source() {
        let stale: BTreeSet<StaleFlow> = [flow(Protocol::Udp, "198.18.2.5")].into();
        let tracked = TrackedFlow {
            protocol: Protocol::Udp,
            original_destination: ip("203.0.113.10"),
            original_destination_port: 53,
            reply_source: ip("198.18.2.5"),
            reply_source_port: 5353,
        };
        assert!(is_stale(&tracked, &stale));
        let other_backend = TrackedFlow {
            reply_source: ip("198.18.1.5"),
            ..tracked
        };
        assert!(!is_stale(&other_backend, &stale));
        let other_protocol = TrackedFlow {
            protocol: Protocol::Tcp,
            ..tracked
        };
        assert!(!is_stale(&other_protocol, &stale));
    }
}
