//! Behaviour of the membership protocol on virtual time, over the in-memory network.

use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::simulation::{NetworkConditions, SIMULATION_KEY, SimulatedCluster};
use super::*;

/// Issue 5 wants failover in under a second; detection must leave room for the rest.
const DETECTION_TARGET: Duration = Duration::from_millis(800);

fn started_cluster(size: usize, seed: u64) -> SimulatedCluster {
    let mut cluster =
        SimulatedCluster::new(size, MembershipConfig::default(), seed).expect("valid cluster");
    cluster.start_all().expect("nodes start");
    let took = cluster.run_until_within(Duration::from_secs(10), SimulatedCluster::converged);
    assert!(took.is_some(), "cluster of {size} did not converge");
    cluster
}

fn down_events_seen_by(cluster: &SimulatedCluster, observer: &str, about: &str) -> usize {
    cluster
        .events()
        .iter()
        .filter(|seen| {
            seen.observer == observer && seen.event == MembershipEvent::NodeDown(about.to_owned())
        })
        .count()
}

#[test]
fn three_nodes_converge_to_the_same_live_set_within_half_a_second() {
    let mut cluster =
        SimulatedCluster::new(3, MembershipConfig::default(), 1).expect("valid cluster");
    cluster.start_all().expect("nodes start");
    let took = cluster
        .run_until_within(Duration::from_secs(5), SimulatedCluster::converged)
        .expect("converges");
    assert!(took < Duration::from_millis(500), "took {took:?}");
    let expected: std::collections::BTreeSet<String> =
        ["node-00", "node-01", "node-02"].map(String::from).into();
    for index in 0..3 {
        assert_eq!(cluster.live_view(index), Some(&expected));
    }
}

#[test]
fn a_killed_node_is_seen_down_by_every_survivor_within_the_detection_target() {
    for seed in 0..20 {
        let mut cluster = started_cluster(3, seed);
        cluster.run_for(Duration::from_millis(37 * seed));
        cluster.kill(1);
        let took = cluster
            .run_until_within(Duration::from_secs(5), |cluster| {
                cluster.all_others_see_down(1)
            })
            .expect("detected");
        assert!(took <= DETECTION_TARGET, "seed {seed}: took {took:?}");
        assert!(
            took >= Duration::from_millis(200),
            "seed {seed}: {took:?} is faster than a probe cycle plus suspicion allows"
        );
    }
}

#[test]
fn a_killed_node_in_a_fifty_node_cluster_is_seen_down_within_two_seconds() {
    let mut cluster = started_cluster(50, 7);
    cluster.kill(17);
    let took = cluster
        .run_until_within(Duration::from_secs(10), |cluster| {
            cluster.all_others_see_down(17)
        })
        .expect("detected");
    assert!(took <= Duration::from_secs(2), "took {took:?}");
    let suspicion = cluster.membership(0).map(Membership::suspicion_timeout);
    assert_eq!(
        suspicion,
        Some(MembershipConfig::default().suspicion_timeout(49))
    );
}

#[test]
fn a_node_that_leaves_is_dropped_before_any_probe_could_notice() {
    let mut cluster = started_cluster(3, 3);
    cluster.leave(2);
    let took = cluster
        .run_until_within(Duration::from_secs(5), |cluster| {
            cluster.all_others_see_down(2)
        })
        .expect("dropped");
    assert!(took < Duration::from_millis(60), "took {took:?}");
}

#[test]
fn a_partitioned_node_is_dropped_and_rejoins_after_the_partition_heals() {
    let mut cluster = started_cluster(3, 4);
    cluster.partition(&[2]);
    cluster
        .run_until_within(Duration::from_secs(3), |cluster| {
            cluster.all_others_see_down(2)
                && cluster
                    .live_view(2)
                    .is_some_and(|live| live.len() == 1 && live.contains("node-02"))
        })
        .expect("both sides of the partition drop each other");
    // The majority side keeps each other.
    assert!(
        cluster
            .live_view(0)
            .is_some_and(|live| live.contains("node-01"))
    );
    cluster.run_for(Duration::from_secs(5));
    cluster.heal();
    let healed = cluster
        .run_until_within(Duration::from_secs(15), SimulatedCluster::converged)
        .expect("heals");
    let hold_down = MembershipConfig::default().rejoin_hold_down;
    assert!(
        healed >= hold_down,
        "rejoined after {healed:?}, before the hold-down"
    );
    // And stays healed.
    cluster.run_for(Duration::from_secs(10));
    assert!(cluster.converged());
    assert_eq!(down_events_seen_by(&cluster, "node-00", "node-01"), 0);
}

#[test]
fn short_link_outages_cause_suspicion_but_never_a_down() {
    let mut cluster = started_cluster(3, 5);
    // node-02's link drops for 120 ms out of every second, for 30 s.
    for _ in 0..30 {
        cluster.partition(&[2]);
        cluster.run_for(Duration::from_millis(120));
        cluster.heal();
        cluster.run_for(Duration::from_millis(880));
    }
    assert_eq!(down_events_seen_by(&cluster, "node-00", "node-02"), 0);
    assert_eq!(down_events_seen_by(&cluster, "node-01", "node-02"), 0);
    assert!(cluster.converged());
}

#[test]
fn a_flapping_node_goes_down_once_and_returns_once_it_is_stable() {
    let mut cluster = started_cluster(3, 6);
    // Outages long enough to be detected, every two seconds, for 20 s.
    for _ in 0..10 {
        cluster.partition(&[2]);
        cluster.run_for(Duration::from_millis(1_000));
        cluster.heal();
        cluster.run_for(Duration::from_millis(1_000));
    }
    for observer in ["node-00", "node-01"] {
        let downs = down_events_seen_by(&cluster, observer, "node-02");
        assert_eq!(downs, 1, "{observer} saw node-02 go down {downs} times");
    }
    let returned = cluster
        .run_until_within(Duration::from_secs(15), SimulatedCluster::converged)
        .expect("returns once stable");
    assert!(returned >= MembershipConfig::default().rejoin_hold_down - Duration::from_secs(1));
}

#[test]
fn without_the_hold_down_a_flapping_node_oscillates() {
    // The control for the test above: the hold-down is what bounds the oscillation.
    let config = MembershipConfig {
        rejoin_hold_down: Duration::ZERO,
        ..MembershipConfig::default()
    };
    let mut cluster = SimulatedCluster::new(3, config, 6).expect("valid cluster");
    cluster.start_all().expect("nodes start");
    cluster
        .run_until_within(Duration::from_secs(5), SimulatedCluster::converged)
        .expect("converges");
    for _ in 0..10 {
        cluster.partition(&[2]);
        cluster.run_for(Duration::from_millis(1_000));
        cluster.heal();
        cluster.run_for(Duration::from_millis(1_000));
    }
    assert!(down_events_seen_by(&cluster, "node-00", "node-02") > 1);
}

/// No node was ever declared down, and the cluster is converged.
fn assert_nobody_went_down(cluster: &SimulatedCluster) {
    let downs = cluster
        .events()
        .iter()
        .filter(|seen| matches!(seen.event, MembershipEvent::NodeDown(_)))
        .count();
    assert_eq!(downs, 0);
    assert!(cluster.converged());
}

#[test]
fn ten_percent_packet_loss_does_not_take_anyone_down() {
    let mut cluster = started_cluster(3, 8);
    cluster.set_network(NetworkConditions {
        loss: 0.10,
        ..NetworkConditions::default()
    });
    cluster.run_for(Duration::from_secs(60));
    assert_nobody_went_down(&cluster);
}

#[test]
fn a_slow_network_with_round_trips_near_the_probe_period_takes_nobody_down() {
    let mut cluster = started_cluster(5, 12);
    // Up to 80 ms round trip: past the 50 ms probe timeout, inside the 100 ms period.
    cluster.set_network(NetworkConditions {
        latency: Duration::from_millis(20),
        jitter: Duration::from_millis(20),
        loss: 0.0,
    });
    cluster.run_for(Duration::from_secs(30));
    assert_nobody_went_down(&cluster);
}

#[test]
fn a_restarted_node_is_live_again_only_after_the_hold_down() {
    let mut cluster = started_cluster(3, 9);
    cluster.kill(0);
    cluster
        .run_until_within(Duration::from_secs(5), |cluster| {
            cluster.all_others_see_down(0)
        })
        .expect("detected");
    cluster.start(0).expect("restarts");
    let took = cluster
        .run_until_within(Duration::from_secs(10), SimulatedCluster::converged)
        .expect("rejoins");
    let hold_down = MembershipConfig::default().rejoin_hold_down;
    assert!(took >= hold_down, "back after {took:?}");
    assert!(
        took < hold_down + Duration::from_secs(1),
        "back after {took:?}"
    );
    assert!(
        cluster
            .membership(0)
            .is_some_and(|m| m.identity().generation() > 1)
    );
}

fn outsider(key: &[u8]) -> (Membership, Vec<Vec<u8>>) {
    let identity = MemberId::new(
        "intruder",
        std::net::SocketAddr::from(([192, 0, 2, 200], 7946)),
        1,
    )
    .expect("identity");
    let keys = ClusterKeys::new(key).expect("key");
    let mut membership =
        Membership::new(identity, MembershipConfig::default(), keys, 99).expect("membership");
    let seeds = [std::net::SocketAddr::from(([192, 0, 2, 11], 7946))];
    let datagrams = membership
        .set_seeds(Instant::now(), seeds)
        .into_iter()
        .filter_map(|output| match output {
            Output::Send { datagram, .. } => Some(datagram),
            _ => None,
        })
        .collect();
    (membership, datagrams)
}

#[test]
fn an_announce_signed_with_the_wrong_key_is_rejected_and_counted() {
    let mut cluster = started_cluster(3, 10);
    let (_intruder, forged) = outsider(b"not-the-cluster-key-at-all-00000");
    assert!(!forged.is_empty());
    for datagram in forged {
        cluster.inject(0, datagram);
    }
    cluster.run_for(Duration::from_secs(1));
    let counters = cluster
        .membership(0)
        .map(|m| m.counters().clone())
        .unwrap_or_default();
    assert_eq!(counters.rejected_bad_authentication, 1);
    assert_eq!(
        cluster.membership(0).and_then(|m| m.node_state("intruder")),
        None
    );
    assert!(cluster.converged());
}

#[test]
fn the_same_announce_under_the_cluster_key_is_accepted() {
    // Control for the forgery test: only the key differs.
    let mut cluster = started_cluster(3, 10);
    let (_newcomer, announces) = outsider(SIMULATION_KEY);
    for datagram in announces {
        cluster.inject(0, datagram);
    }
    cluster.run_for(Duration::from_millis(10));
    assert_eq!(
        cluster.membership(0).and_then(|m| m.node_state("intruder")),
        Some(NodeState::Alive)
    );
}

#[test]
fn node_events_report_suspicion_before_death() {
    let mut cluster = started_cluster(3, 11);
    cluster.kill(2);
    cluster
        .run_until_within(Duration::from_secs(5), |cluster| {
            cluster.all_others_see_down(2)
        })
        .expect("detected");
    let about_node_2: Vec<&MembershipEvent> = cluster
        .events()
        .iter()
        .filter(|seen| seen.observer == "node-00")
        .map(|seen| &seen.event)
        .filter(|event| {
            matches!(event, MembershipEvent::NodeSuspect(name) | MembershipEvent::NodeDown(name) if name == "node-02")
        })
        .collect();
    assert_eq!(
        about_node_2.last(),
        Some(&&MembershipEvent::NodeDown("node-02".to_owned()))
    );
}

fn lone_member() -> Membership {
    let identity = MemberId::new(
        "node-00",
        std::net::SocketAddr::from(([192, 0, 2, 11], 7946)),
        1,
    )
    .expect("identity");
    let keys = ClusterKeys::new(SIMULATION_KEY).expect("key");
    Membership::new(identity, MembershipConfig::default(), keys, 1).expect("membership")
}

proptest! {
    #[test]
    fn arbitrary_datagrams_are_dropped_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..1600)) {
        let mut membership = lone_member();
        let outputs = membership.handle_datagram(Instant::now(), &bytes);
        prop_assert!(outputs.is_empty());
        prop_assert_eq!(membership.counters().rejected_total(), 1);
    }

    #[test]
    fn authentic_garbage_is_dropped_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..1300)) {
        let mut membership = lone_member();
        let keys = ClusterKeys::new(SIMULATION_KEY).expect("key");
        let _ = membership.handle_datagram(Instant::now(), &keys.seal(&bytes));
        let counters = membership.counters();
        prop_assert_eq!(counters.datagrams_received, 1);
        prop_assert_eq!(counters.rejected_bad_authentication, 0);
        prop_assert!(membership.live_members().contains("node-00"));
    }
}
