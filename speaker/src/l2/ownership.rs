//! Layer-2 ownership: which one node announces an address. Pure.
//!
//! Input is plain data the speaker has already gathered — per-node eligibility facts, the set
//! of live speakers from membership, and who currently announces the address (if a shared
//! record says so); output is the owner and why. Every speaker runs [`elect`] on its own copy of
//! the same inputs and reaches the same answer; nobody coordinates. No I/O here.
//!
//! # Election rule
//!
//! 1. A node is *eligible* when its speaker is live (membership), it matches an
//!    `L2Advertisement`'s node selectors, it has an interface for the address (subnet covers it,
//!    or the advertisement lists the interface), it is not labelled
//!    `node.kubernetes.io/exclude-from-external-load-balancers`, and — for
//!    `externalTrafficPolicy: Local` — it hosts a ready endpoint.
//! 2. **Stickiness:** if the *current announcer* is eligible, it keeps the address.
//! 3. Otherwise the eligible node with the highest rendezvous weight
//!    `sha256(node name ‖ 0x00 ‖ address octets)` wins (highest-random-weight hashing): adding or
//!    removing a node only moves the addresses whose top-ranked node changed.
//!
//! # Why stickiness, and why it stays consistent
//!
//! Pure rendezvous hashing moves an address back to its top-ranked node as soon as that node
//! returns, which bounces traffic (new neighbour entries everywhere, broken connections under
//! `Cluster` policy) for no benefit. Rule 2 stops that: after a failover the new owner keeps the
//! address until it stops being eligible.
//!
//! Rule 2 is safe for agreement because it only adds one more input that is *shared*, not
//! local: the current announcer comes from a single-valued record every speaker reads (the
//! announcing node that the owner publishes in the service's status object, or in its
//! membership metadata), never from a speaker's own memory. Given equal inputs every speaker
//! computes the same owner (the function is deterministic and does not depend on input order).
//! When the record names a node that is dead or ineligible, everyone ignores it the same way and
//! falls back to rule 3 over the same eligible set. The only disagreement possible is the one
//! pure hashing already has: while membership views or the record propagate, two speakers may
//! briefly hold different inputs. The announcer's conflict detection (another MAC claiming an
//! owned address) reports such windows; they close when the inputs converge.
//!
//! The cost: after churn the spread of addresses drifts from the hash's balance (a returning
//! node gets addresses back only when their current owner leaves). That is the intended trade:
//! no needless moves.
//!
//! A speaker that has not yet seen the record (fresh start) falls back to rule 3; the owner
//! publishes the record when it starts announcing, so this only matters in the first moments.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use sha2::{Digest, Sha256};

/// `externalTrafficPolicy` of the Service the address belongs to (the shared vocabulary's).
pub use herald_model::TrafficPolicy;

/// What the speaker knows about one node for one address, converted at the edge from Nodes,
/// L2Advertisements, the node's interfaces and EndpointSlices. Liveness comes separately, from
/// membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFacts {
    pub name: String,
    /// Matches the node selectors of an L2Advertisement that selects the address's pool.
    pub matches_node_selectors: bool,
    /// Has an interface whose subnet covers the address, or one listed in the advertisement's
    /// `interfaces`.
    pub has_announce_interface: bool,
    /// Carries the `node.kubernetes.io/exclude-from-external-load-balancers` label.
    pub excluded_from_load_balancers: bool,
    /// Hosts at least one ready endpoint of the Service (only consulted for `Local`).
    pub has_ready_endpoint: bool,
}

/// Why a node may not announce an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Ineligibility {
    SpeakerNotLive,
    NodeSelectorsDoNotMatch,
    NoInterfaceForAddress,
    ExcludedFromLoadBalancers,
    NoReadyEndpoint,
}

impl fmt::Display for Ineligibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Ineligibility::SpeakerNotLive => "speaker not live",
            Ineligibility::NodeSelectorsDoNotMatch => "no L2Advertisement selects the node",
            Ineligibility::NoInterfaceForAddress => "no interface for the address",
            Ineligibility::ExcludedFromLoadBalancers => {
                "labelled node.kubernetes.io/exclude-from-external-load-balancers"
            }
            Ineligibility::NoReadyEndpoint => "no ready endpoint (Local policy)",
        })
    }
}

/// The first reason `node` may not announce, or `None` if it may.
pub fn ineligibility(node: &NodeFacts, live: bool, policy: TrafficPolicy) -> Option<Ineligibility> {
    if !live {
        Some(Ineligibility::SpeakerNotLive)
    } else if !node.matches_node_selectors {
        Some(Ineligibility::NodeSelectorsDoNotMatch)
    } else if !node.has_announce_interface {
        Some(Ineligibility::NoInterfaceForAddress)
    } else if node.excluded_from_load_balancers {
        Some(Ineligibility::ExcludedFromLoadBalancers)
    } else if policy == TrafficPolicy::Local && !node.has_ready_endpoint {
        Some(Ineligibility::NoReadyEndpoint)
    } else {
        None
    }
}

/// Everything [`elect`] looks at for one address.
#[derive(Debug, Clone, Copy)]
pub struct ElectionInput<'a> {
    pub address: IpAddr,
    pub policy: TrafficPolicy,
    pub nodes: &'a [NodeFacts],
    /// Node names whose speakers membership reports alive.
    pub live_speakers: &'a BTreeSet<String>,
    /// The node that a shared record says announces the address now, if any.
    pub current_announcer: Option<&'a str>,
}

/// How the owner was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElectionReason {
    /// The current announcer is still eligible and keeps the address.
    KeptByCurrentAnnouncer,
    /// Highest rendezvous weight among the eligible nodes.
    HighestRendezvousWeight,
    /// Nobody may announce the address.
    NoEligibleNode,
}

/// The result of an election, with enough detail for status and Events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Election {
    pub owner: Option<String>,
    pub reason: ElectionReason,
    /// Eligible nodes, best rendezvous weight first (the failover order without stickiness).
    pub eligible: Vec<String>,
    /// Ineligible nodes and why, sorted by name.
    pub ineligible: Vec<(String, Ineligibility)>,
}

/// Elects the owner of `input.address` (see the module documentation for the rule).
pub fn elect(input: &ElectionInput<'_>) -> Election {
    let mut eligible = Vec::new();
    let mut ineligible = Vec::new();
    for node in input.nodes {
        let live = input.live_speakers.contains(&node.name);
        match ineligibility(node, live, input.policy) {
            None => eligible.push(node.name.as_str()),
            Some(reason) => ineligible.push((node.name.clone(), reason)),
        }
    }
    ineligible.sort();
    ineligible.dedup_by(|a, b| a.0 == b.0);
    let eligible: Vec<String> = rendezvous_ranking(input.address, eligible)
        .into_iter()
        .map(str::to_owned)
        .collect();

    let sticky = input
        .current_announcer
        .filter(|current| eligible.iter().any(|name| name == current));
    let (owner, reason) = match (sticky, eligible.first()) {
        (Some(current), _) => (
            Some(current.to_owned()),
            ElectionReason::KeptByCurrentAnnouncer,
        ),
        (None, Some(top)) => (Some(top.clone()), ElectionReason::HighestRendezvousWeight),
        (None, None) => (None, ElectionReason::NoEligibleNode),
    };
    Election {
        owner,
        reason,
        eligible,
        ineligible,
    }
}

/// The rendezvous weight of `node` for `address`: sha256 over the node name, a 0 byte (node
/// names are DNS labels and never contain one) and the address's network-order octets. Stable
/// across versions and platforms — speakers of different versions must agree.
pub fn rendezvous_weight(node: &str, address: IpAddr) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(node.as_bytes());
    hasher.update([0u8]);
    match address {
        IpAddr::V4(v4) => hasher.update(v4.octets()),
        IpAddr::V6(v6) => hasher.update(v6.octets()),
    }
    hasher.finalize().into()
}

/// `nodes` ordered by descending rendezvous weight for `address`, duplicates removed; ties
/// (never seen with sha256, but the order must still be total) go to the smaller name.
pub fn rendezvous_ranking<'a>(
    address: IpAddr,
    nodes: impl IntoIterator<Item = &'a str>,
) -> Vec<&'a str> {
    let mut weighted: Vec<([u8; 32], &str)> = nodes
        .into_iter()
        .map(|node| (rendezvous_weight(node, address), node))
        .collect();
    weighted.sort_by(|(wa, na), (wb, nb)| wb.cmp(wa).then_with(|| na.cmp(nb)));
    weighted.dedup_by(|a, b| a.1 == b.1);
    weighted.into_iter().map(|(_, node)| node).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 200));

    fn healthy(name: &str) -> NodeFacts {
        NodeFacts {
            name: name.to_owned(),
            matches_node_selectors: true,
            has_announce_interface: true,
            excluded_from_load_balancers: false,
            has_ready_endpoint: true,
        }
    }

    fn names(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn owner(
        address: IpAddr,
        nodes: &[NodeFacts],
        live: &BTreeSet<String>,
        current: Option<&str>,
    ) -> Option<String> {
        elect(&ElectionInput {
            address,
            policy: TrafficPolicy::Cluster,
            nodes,
            live_speakers: live,
            current_announcer: current,
        })
        .owner
    }

    #[test]
    fn rendezvous_weights_are_stable_across_versions() {
        // If this fails, speakers of the old and new version would disagree on owners during
        // an upgrade: change the hash only with a migration plan.
        // Expected orders computed independently (Python hashlib) from the documented formula.
        assert_eq!(
            rendezvous_ranking(VIP, ["node-a", "node-b", "node-c"]),
            vec!["node-b", "node-a", "node-c"]
        );
        let v6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x200));
        assert_eq!(
            rendezvous_ranking(v6, ["node-c", "node-a", "node-b"]),
            vec!["node-b", "node-c", "node-a"]
        );
    }

    #[test]
    fn without_a_current_announcer_the_highest_weight_eligible_node_wins() {
        let nodes = [healthy("node-a"), healthy("node-b"), healthy("node-c")];
        let election = elect(&ElectionInput {
            address: VIP,
            policy: TrafficPolicy::Cluster,
            nodes: &nodes,
            live_speakers: &names(&["node-a", "node-b", "node-c"]),
            current_announcer: None,
        });
        assert_eq!(election.reason, ElectionReason::HighestRendezvousWeight);
        assert_eq!(
            election.owner.as_deref(),
            Some(election.eligible[0].as_str())
        );
        assert_eq!(election.eligible.len(), 3);
    }

    #[test]
    fn owners_death_moves_the_address_to_the_next_ranked_node() {
        let nodes = [healthy("node-a"), healthy("node-b"), healthy("node-c")];
        let all = names(&["node-a", "node-b", "node-c"]);
        let ranking = rendezvous_ranking(VIP, ["node-a", "node-b", "node-c"]);
        let first = owner(VIP, &nodes, &all, None);
        assert_eq!(first.as_deref(), Some(ranking[0]));
        let mut survivors = all.clone();
        survivors.remove(ranking[0]);
        // The record still names the dead owner: it is ignored.
        assert_eq!(
            owner(VIP, &nodes, &survivors, Some(ranking[0])).as_deref(),
            Some(ranking[1])
        );
    }

    #[test]
    fn returning_top_node_does_not_take_the_address_back_from_the_current_announcer() {
        let nodes = [healthy("node-a"), healthy("node-b"), healthy("node-c")];
        let all = names(&["node-a", "node-b", "node-c"]);
        let ranking = rendezvous_ranking(VIP, ["node-a", "node-b", "node-c"]);
        // ranking[0] died, ranking[1] took over and recorded itself, ranking[0] is back.
        let election = elect(&ElectionInput {
            address: VIP,
            policy: TrafficPolicy::Cluster,
            nodes: &nodes,
            live_speakers: &all,
            current_announcer: Some(ranking[1]),
        });
        assert_eq!(election.owner.as_deref(), Some(ranking[1]));
        assert_eq!(election.reason, ElectionReason::KeptByCurrentAnnouncer);
        // Pure rendezvous hashing would have moved it back.
        assert_eq!(owner(VIP, &nodes, &all, None).as_deref(), Some(ranking[0]));
    }

    #[test]
    fn a_current_announcer_that_became_ineligible_loses_the_address() {
        let mut nodes = vec![healthy("node-a"), healthy("node-b"), healthy("node-c")];
        let all = names(&["node-a", "node-b", "node-c"]);
        let ranking = rendezvous_ranking(VIP, ["node-a", "node-b", "node-c"]);
        let current = ranking[1];
        for node in &mut nodes {
            if node.name == current {
                node.excluded_from_load_balancers = true;
            }
        }
        assert_eq!(
            owner(VIP, &nodes, &all, Some(current)).as_deref(),
            Some(ranking[0])
        );
        // A current announcer that is not a known node at all is ignored too.
        assert_eq!(
            owner(VIP, &nodes, &all, Some("node-z")).as_deref(),
            Some(ranking[0])
        );
    }

    #[test]
    fn each_eligibility_rule_excludes_a_node_and_says_why() {
        let live = names(&["ok", "selector", "iface", "excluded", "no-endpoint"]);
        let nodes = [
            healthy("ok"),
            NodeFacts {
                matches_node_selectors: false,
                ..healthy("selector")
            },
            NodeFacts {
                has_announce_interface: false,
                ..healthy("iface")
            },
            NodeFacts {
                excluded_from_load_balancers: true,
                ..healthy("excluded")
            },
            NodeFacts {
                has_ready_endpoint: false,
                ..healthy("no-endpoint")
            },
            healthy("dead"),
        ];
        let local = elect(&ElectionInput {
            address: VIP,
            policy: TrafficPolicy::Local,
            nodes: &nodes,
            live_speakers: &live,
            current_announcer: None,
        });
        assert_eq!(local.owner.as_deref(), Some("ok"));
        assert_eq!(local.eligible, vec!["ok".to_owned()]);
        assert_eq!(
            local.ineligible,
            vec![
                ("dead".to_owned(), Ineligibility::SpeakerNotLive),
                (
                    "excluded".to_owned(),
                    Ineligibility::ExcludedFromLoadBalancers
                ),
                ("iface".to_owned(), Ineligibility::NoInterfaceForAddress),
                ("no-endpoint".to_owned(), Ineligibility::NoReadyEndpoint),
                (
                    "selector".to_owned(),
                    Ineligibility::NodeSelectorsDoNotMatch
                ),
            ]
        );
        let cluster = elect(&ElectionInput {
            address: VIP,
            policy: TrafficPolicy::Cluster,
            nodes: &nodes,
            live_speakers: &live,
            current_announcer: None,
        });
        assert!(
            cluster.eligible.contains(&"no-endpoint".to_owned()),
            "Cluster ignores endpoints"
        );
    }

    #[test]
    fn with_no_eligible_node_nobody_owns_the_address() {
        let nodes = [healthy("node-a")];
        let election = elect(&ElectionInput {
            address: VIP,
            policy: TrafficPolicy::Cluster,
            nodes: &nodes,
            live_speakers: &BTreeSet::new(),
            current_announcer: Some("node-a"),
        });
        assert_eq!(election.owner, None);
        assert_eq!(election.reason, ElectionReason::NoEligibleNode);
    }

    #[test]
    fn addresses_spread_over_nodes_roughly_evenly() {
        let nodes = [healthy("node-a"), healthy("node-b"), healthy("node-c")];
        let all = names(&["node-a", "node-b", "node-c"]);
        let mut counts = std::collections::BTreeMap::<String, usize>::new();
        for last in 0..=255u8 {
            for third in [2u8, 3] {
                let address = IpAddr::V4(Ipv4Addr::new(192, 0, third, last));
                if let Some(node) = owner(address, &nodes, &all, None) {
                    *counts.entry(node).or_default() += 1;
                }
            }
        }
        // 512 addresses over 3 nodes: expect ~171 each.
        assert_eq!(counts.len(), 3);
        for (node, count) in counts {
            assert!((120..=220).contains(&count), "{node} owns {count} of 512");
        }
    }

    proptest! {
        #[test]
        fn every_speaker_computes_the_same_owner_whatever_order_it_lists_nodes_in(
            address in any::<u32>(),
            node_count in 1usize..8,
            rotation in 0usize..8,
            current in proptest::option::of(0usize..8),
        ) {
            let nodes: Vec<NodeFacts> = (0..node_count).map(|i| healthy(&format!("node-{i}"))).collect();
            let live: BTreeSet<String> = nodes.iter().map(|n| n.name.clone()).collect();
            let mut rotated = nodes.clone();
            rotated.rotate_left(rotation % node_count);
            rotated.reverse();
            let current = current.map(|i| format!("node-{i}"));
            let address = IpAddr::V4(Ipv4Addr::from(address));
            prop_assert_eq!(
                owner(address, &nodes, &live, current.as_deref()),
                owner(address, &rotated, &live, current.as_deref())
            );
        }

        #[test]
        fn losing_a_node_that_does_not_own_an_address_never_moves_it(
            address in any::<u128>(),
            node_count in 2usize..10,
            leaving in 0usize..10,
        ) {
            let address = IpAddr::V6(Ipv6Addr::from(address));
            let nodes: Vec<NodeFacts> = (0..node_count).map(|i| healthy(&format!("node-{i}"))).collect();
            let live: BTreeSet<String> = nodes.iter().map(|n| n.name.clone()).collect();
            let before = owner(address, &nodes, &live, None);
            let leaving = format!("node-{}", leaving % node_count);
            prop_assume!(before.as_deref() != Some(leaving.as_str()));
            let mut fewer = live.clone();
            fewer.remove(&leaving);
            prop_assert_eq!(owner(address, &nodes, &fewer, None), before);
        }

        #[test]
        fn a_node_joining_only_takes_addresses_it_ranks_first_for_and_never_from_a_sticky_owner(
            address in any::<u32>(),
            node_count in 1usize..8,
        ) {
            let address = IpAddr::V4(Ipv4Addr::from(address));
            let mut nodes: Vec<NodeFacts> = (0..node_count).map(|i| healthy(&format!("node-{i}"))).collect();
            let live: BTreeSet<String> = nodes.iter().map(|n| n.name.clone()).collect();
            let before = owner(address, &nodes, &live, None);
            nodes.push(healthy("newcomer"));
            let mut more = live.clone();
            more.insert("newcomer".to_owned());
            let after = owner(address, &nodes, &more, None);
            prop_assert!(after == before || after.as_deref() == Some("newcomer"));
            prop_assert_eq!(owner(address, &nodes, &more, before.as_deref()), before);
        }
    }
}
