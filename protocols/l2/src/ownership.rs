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
mod tests;
