//! herald-speaker end to end: layer-2 mode (ARP / NDP) in the namespace lab against the real
//! kube-apiserver and kube-controller-manager, failover included.
//!
//! Every node namespace runs the real `target/debug/herald-speaker` (built by
//! `cargo build --workspace`; tests/run.sh does) with `--layer2 on` and `--forwarding on`;
//! the speakers find each other over the LAN (SWIM, authenticated with a Secret's key). The
//! router is on the LAN and has the L2 range on-link, so it resolves the Service addresses
//! with ARP / Neighbor Solicitations: whoever answers gets the traffic. Nothing routes an
//! address to a node statically. The tests play the controller (they write the ingress
//! addresses themselves). Failover times are printed (`speaker_l2: ...`); generous deadlines
//! (10 s) only catch breakage, the benchmark (`l2_failover_bench.rs`) measures.
//!
//! Must run as root: `cargo test -p herald-lab --test speaker_l2 -- --nocapture`.

mod l2_support;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use herald_lab::Result;
use herald_lab::wait::{Poll, poll_until};
use l2_support::{CLIENT_V4, FAILOVER_DEADLINE, L2World, ms, parse_ip};

/// Probe interval and per-request timeout while waiting for a failover.
const PROBE_INTERVAL: Duration = Duration::from_millis(50);
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a returned node is watched for taking an address back. Longer than the
/// announcers' periodic refresh (10 s), so a stale owner's refresh would be seen.
const WATCH_AFTER_RETURN: Duration = Duration::from_secs(12);

/// A world with one pod per node behind a dual-stack `Local` Service on `v4` / `v6`, every
/// speaker running and seeing the others. With `Local` and a pod on every node, every node
/// is a candidate and the echo reply names the node that forwarded it: the owner.
fn world_with_a_pod_per_node(hint: &str, v4: &str, v6: &str) -> Result<L2World> {
    let mut world = L2World::new(hint, 3)?;
    for node in 1..=3 {
        world.add_pod(node, &format!("{hint}-{node}"), "app")?;
    }
    world.start_all_speakers()?;
    world.wait_membership(&[1, 2, 3], 3)?;
    world.apply_service(&world.service("svc", "app", "Local"), &[v4, v6])?;
    world.wait_ready_endpoints("svc", 6)?;
    Ok(world)
}

/// The node that currently serves `address` (from the echo reply), after checking that the
/// router's neighbour entry and the record agree with it.
fn owner_of(world: &L2World, address: IpAddr) -> Result<usize> {
    let reply = world.wait_get(address)?;
    let node = world.node_index(&reply.node)?;
    assert_eq!(
        world.router_owner(address)?,
        Some(node),
        "the router should hold the MAC of the node that answered for {address}"
    );
    world.wait_record("svc", address, node)?;
    Ok(node)
}

/// Requests `address` every 250 ms for `period`; returns the nodes that answered and the
/// nodes whose MAC the router held meanwhile.
fn watch_owner(
    world: &L2World,
    address: IpAddr,
    period: Duration,
) -> Result<(BTreeSet<String>, BTreeSet<Option<usize>>, usize)> {
    let started = Instant::now();
    let mut answered = BTreeSet::new();
    let mut macs = BTreeSet::new();
    let mut failures = 0;
    while started.elapsed() < period {
        match world.get_within(address, Duration::from_millis(1000)) {
            Ok(reply) => {
                answered.insert(reply.node);
            }
            Err(_) => failures += 1,
        }
        macs.insert(world.router_owner(address)?);
        std::thread::sleep(Duration::from_millis(250));
    }
    Ok((answered, macs, failures))
}

#[test]
fn the_client_reaches_an_l2_address_over_ipv4_and_ipv6_through_the_owner_whose_mac_the_router_learned()
-> Result<()> {
    let mut world = L2World::new("l2-reach", 3)?;
    for node in 1..=3 {
        world.add_pod(node, &format!("web-{node}"), "web")?;
    }
    world.start_all_speakers()?;
    world.wait_membership(&[1, 2, 3], 3)?;
    let (v4, v6) = (parse_ip("192.0.2.130")?, parse_ip("2001:db8:1::130")?);
    let started = Instant::now();
    world.apply_service(
        &world.service("web", "web", "Cluster"),
        &["192.0.2.130", "2001:db8:1::130"],
    )?;
    world.wait_ready_endpoints("web", 6)?;
    let first_v4 = world.wait_get(v4)?;
    let reached_v4 = started.elapsed();
    let first_v6 = world.wait_get(v6)?;
    eprintln!(
        "speaker_l2: Service created -> first reply over IPv4 {} ms (includes the EndpointSlice and the RFC 5227 probe of a first announcement)",
        ms(reached_v4)
    );
    assert!(first_v4.pod.starts_with("web-") && first_v6.pod.starts_with("web-"));

    for address in [v4, v6] {
        // The record and the router agree on one owner, and that owner's MAC answered.
        let recorded = poll_until(
            &format!("a record for {address}"),
            FAILOVER_DEADLINE,
            Duration::from_millis(100),
            || {
                Ok(match world.recorded_owner("web", address)? {
                    Some(node) => Poll::Ready(node),
                    None => Poll::Pending("no record".into()),
                })
            },
        )?;
        let recorded = world.node_index(&recorded)?;
        assert_eq!(world.router_owner(address)?, Some(recorded), "{address}");
        let mac = world.router_mac_for(address)?;
        eprintln!("speaker_l2: {address} is announced by node {recorded} ({mac:?})");
        // Cluster policy: through the owner, the client reaches pods on every node.
        let pods: BTreeSet<String> = (0..30)
            .map(|_| world.get(address).map(|r| r.pod))
            .collect::<Result<_>>()?;
        assert_eq!(pods.len(), 3, "{address} reached only {pods:?}");
        // The owner counts the announcement and the router's request it answered.
        assert!(world.metric_sum(recorded, "herald_speaker_l2_announcements_sent_total")? >= 1.0);
        assert!(world.metric_sum(recorded, "herald_speaker_l2_requests_answered_total")? >= 1.0);
    }
    // Exactly one node announces each address.
    let owned: f64 = (1..=3)
        .map(|node| world.metric(node, "herald_speaker_l2_owned_addresses"))
        .sum::<Result<f64>>()?;
    assert_eq!(owned, 2.0, "{}", world.speaker_logs());
    Ok(())
}

#[test]
fn local_policy_puts_ownership_on_a_node_with_a_ready_endpoint_and_moves_it_with_the_endpoint()
-> Result<()> {
    let mut world = L2World::new("l2-local", 3)?;
    world.add_pod(3, "loc-3", "loc")?;
    world.start_all_speakers()?;
    world.wait_membership(&[1, 2, 3], 3)?;
    let (v4, v6) = (parse_ip("192.0.2.131")?, parse_ip("2001:db8:1::131")?);
    world.apply_service(
        &world.service("svc", "loc", "Local"),
        &["192.0.2.131", "2001:db8:1::131"],
    )?;
    world.wait_ready_endpoints("svc", 2)?;

    // Only node 3 has an endpoint: it owns both addresses, and the pod sees the client.
    for address in [v4, v6] {
        let reply = world.wait_get(address)?;
        assert_eq!(reply.pod, "loc-3");
        assert_eq!(world.router_owner(address)?, Some(3), "{address}");
        world.wait_record("svc", address, 3)?;
    }
    let reply = world.get(v4)?;
    assert_eq!(reply.client_ip()?, parse_ip(CLIENT_V4)?, "{reply:?}");
    for node in [1, 2] {
        assert_eq!(
            world.metric(node, "herald_speaker_l2_owned_addresses")?,
            0.0,
            "node {node} has no endpoint and must not announce"
        );
    }

    // The endpoint moves to node 1: so does the address.
    world.add_pod(1, "loc-1", "loc")?;
    world.wait_ready_endpoints("svc", 4)?;
    let started = Instant::now();
    world.set_pod_ready("loc-3", "loc", false)?;
    let (reply, moved) = world.probe_until(v4, started, PROBE_INTERVAL, PROBE_TIMEOUT, |r| {
        r.pod == "loc-1"
    })?;
    assert_eq!(reply.client_ip()?, parse_ip(CLIENT_V4)?);
    assert_eq!(world.router_owner(v4)?, Some(1));
    world.wait_record("svc", v4, 1)?;
    let (_, moved_v6) = world.probe_until(v6, started, PROBE_INTERVAL, PROBE_TIMEOUT, |r| {
        r.pod == "loc-1"
    })?;
    assert_eq!(world.router_owner(v6)?, Some(1));
    eprintln!(
        "speaker_l2: Local endpoint moved from node 3 to node 1: traffic through node 1 after {} ms (IPv4), {} ms (IPv6), counted from the readiness change",
        ms(moved),
        ms(moved_v6)
    );
    assert_eq!(world.metric(3, "herald_speaker_l2_owned_addresses")?, 0.0);
    Ok(())
}

#[test]
fn sigkill_of_the_owning_speaker_moves_the_address_to_another_node_and_its_return_does_not_take_it_back()
-> Result<()> {
    let (v4, v6) = (parse_ip("192.0.2.140")?, parse_ip("2001:db8:1::140")?);
    let mut world = world_with_a_pod_per_node("l2-kill", "192.0.2.140", "2001:db8:1::140")?;
    let owner = owner_of(&world, v4)?;
    let owner_v6 = owner_of(&world, v6)?;
    let owner_name = world.node_name(owner)?;

    let killed = Instant::now();
    world.kill_speaker(owner)?;
    let (reply, failover) = world.probe_until(v4, killed, PROBE_INTERVAL, PROBE_TIMEOUT, |r| {
        r.node != owner_name
    })?;
    let successor = world.node_index(&reply.node)?;
    let router_moved = poll_until(
        "the router's neighbour entry to follow",
        FAILOVER_DEADLINE,
        Duration::from_millis(20),
        || {
            let now = world.router_owner(v4)?;
            Ok(if now == Some(successor) {
                Poll::Ready(killed.elapsed())
            } else {
                Poll::Pending(format!("{now:?}"))
            })
        },
    )?;
    world.wait_record("svc", v4, successor)?;
    let record_seen = killed.elapsed();
    eprintln!(
        "speaker_l2: SIGKILL of node {owner}'s speaker -> first reply through node {successor} after {} ms (router entry seen moved by {} ms, record naming node {successor} seen by {} ms)",
        ms(failover),
        ms(router_moved),
        ms(record_seen)
    );
    // IPv6: moves if it was on the killed node, and otherwise stays where it was.
    if owner_v6 == owner {
        let (reply, failover_v6) =
            world.probe_until(v6, killed, PROBE_INTERVAL, PROBE_TIMEOUT, |r| {
                r.node != owner_name
            })?;
        let successor_v6 = world.node_index(&reply.node)?;
        assert_eq!(world.router_owner(v6)?, Some(successor_v6));
        world.wait_record("svc", v6, successor_v6)?;
        eprintln!(
            "speaker_l2: IPv6 moved to node {successor_v6}; first reply after {} ms",
            ms(failover_v6)
        );
    } else {
        let reply = world.get(v6)?;
        assert_eq!(
            world.node_index(&reply.node)?,
            owner_v6,
            "an address whose owner did not die must not move"
        );
    }

    // The old owner comes back and leaves the address where it is.
    world.start_speaker(owner)?;
    world.wait_membership(&[1, 2, 3], 3)?;
    let (answered, macs, failures) = watch_owner(&world, v4, WATCH_AFTER_RETURN)?;
    let successor_name = world.node_name(successor)?;
    assert_eq!(
        answered,
        [successor_name].into(),
        "after node {owner} returned, {v4} was answered by {answered:?}\n{}",
        world.speaker_logs()
    );
    assert_eq!(
        macs,
        [Some(successor)].into(),
        "router entries seen: {macs:?}"
    );
    assert_eq!(failures, 0, "requests failed while the old owner returned");
    world.wait_record("svc", v4, successor)?;
    assert_eq!(
        world.metric(owner, "herald_speaker_l2_owned_addresses")?,
        0.0,
        "the returned speaker announces nothing"
    );
    Ok(())
}

#[test]
fn unplugging_the_owners_lan_moves_the_address_and_plugging_it_back_does_not_take_it_back()
-> Result<()> {
    let (v4, v6) = (parse_ip("192.0.2.141")?, parse_ip("2001:db8:1::141")?);
    let world = world_with_a_pod_per_node("l2-cable", "192.0.2.141", "2001:db8:1::141")?;
    let owner = owner_of(&world, v4)?;
    let owner_v6 = owner_of(&world, v6)?;
    let owner_name = world.node_name(owner)?;
    let others: Vec<usize> = (1..=3).filter(|n| *n != owner).collect();

    let unplugged = Instant::now();
    world.lab.set_node_lan(owner, false)?;
    let (reply, failover) =
        world.probe_until(v4, unplugged, PROBE_INTERVAL, PROBE_TIMEOUT, |r| {
            r.node != owner_name
        })?;
    let successor = world.node_index(&reply.node)?;
    assert_eq!(world.router_owner(v4)?, Some(successor));
    // The record is written over the control-plane link, which the cable pull left alone.
    world.wait_record("svc", v4, successor)?;
    eprintln!(
        "speaker_l2: LAN of node {owner} unplugged -> first reply through node {successor} after {} ms",
        ms(failover)
    );
    if owner_v6 == owner {
        let (reply, failover_v6) =
            world.probe_until(v6, unplugged, PROBE_INTERVAL, PROBE_TIMEOUT, |r| {
                r.node != owner_name
            })?;
        assert_eq!(
            world.router_owner(v6)?,
            Some(world.node_index(&reply.node)?)
        );
        eprintln!(
            "speaker_l2: IPv6 moved too; first reply after {} ms",
            ms(failover_v6)
        );
    }
    world.wait_membership(&others, 2)?;

    // Plugged back in: the node rejoins and does not take the address back.
    let replugged = Instant::now();
    world.lab.set_node_lan(owner, true)?;
    // Watched from the moment the cable is back: the rejoin is when a confused node would
    // grab the address.
    let (watched, rejoined) = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| watch_owner(&world, v4, WATCH_AFTER_RETURN));
        let rejoined = world
            .wait_membership(&[1, 2, 3], 3)
            .map(|_| replugged.elapsed());
        (watcher.join(), rejoined)
    });
    let (answered, macs, failures) =
        watched.map_err(|_| herald_lab::LabError::Invalid("the watcher panicked".into()))??;
    let rejoined = rejoined?;
    let successor_name = world.node_name(successor)?;
    assert_eq!(
        answered,
        [successor_name].into(),
        "after node {owner}'s cable came back, {v4} was answered by {answered:?}\n{}",
        world.speaker_logs()
    );
    assert_eq!(
        macs,
        [Some(successor)].into(),
        "router entries seen: {macs:?}"
    );
    assert_eq!(failures, 0, "requests failed after the cable came back");
    world.wait_record("svc", v4, successor)?;
    eprintln!(
        "speaker_l2: node {owner} back on the LAN; every speaker saw 3 members again after {} ms",
        ms(rejoined)
    );
    Ok(())
}
