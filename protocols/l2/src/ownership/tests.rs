//! Tests of [`super`] (ownership.rs).

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
