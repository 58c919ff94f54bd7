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

mod common;
mod l2_support;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::{CLIENT_V4, World, parse_ip};
use herald_lab::Result;
use herald_lab::kube::NodeSpec;
use herald_lab::plan::ifname::ROUTER_LAN;
use herald_lab::wait::{Poll, poll_until};
use l2_support::{FAILOVER_DEADLINE, ms};

/// Probe interval and per-request timeout while waiting for a failover.
const PROBE_INTERVAL: Duration = Duration::from_millis(50);
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a returned node is watched for taking an address back. Longer than the
/// announcers' periodic refresh (10 s), so a stale owner's refresh would be seen.
const WATCH_AFTER_RETURN: Duration = Duration::from_secs(12);

/// A world with one pod per node behind a dual-stack `Local` Service on `v4` / `v6`, every
/// speaker running and seeing the others. With `Local` and a pod on every node, every node
/// is a candidate and the echo reply names the node that forwarded it: the owner.
fn world_with_a_pod_per_node(hint: &str, v4: &str, v6: &str) -> Result<World> {
    let mut world = World::l2(hint, 3)?;
    for node in 1..=3 {
        world.add_pod(node, &format!("{hint}-{node}"), "app")?;
    }
    world.start_all_speakers()?;
    world.wait_membership(&[1, 2, 3], 3)?;
    world.apply_service(
        &world.service("svc", "app", "Local").dual_stack(),
        &[v4, v6],
    )?;
    world.wait_ready_endpoints("svc", 6)?;
    Ok(world)
}

/// The node that currently serves `address` (from the echo reply), after checking that the
/// router's neighbour entry and the record agree with it.
fn owner_of(world: &World, address: IpAddr) -> Result<usize> {
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

/// What was seen for one address while watching.
#[derive(Debug, Default)]
struct Watched {
    /// Nodes whose pods answered (with `Local` and a pod per node: the owner).
    answered: BTreeSet<String>,
    /// Nodes whose MAC the router held.
    macs: BTreeSet<Option<usize>>,
    failures: usize,
}

/// Requests every address every 250 ms for `period`, noting who answered and whose MAC
/// the router held.
fn watch_owners(world: &World, addresses: &[IpAddr], period: Duration) -> Result<Vec<Watched>> {
    let started = Instant::now();
    let mut seen: Vec<Watched> = addresses.iter().map(|_| Watched::default()).collect();
    while started.elapsed() < period {
        for (address, watched) in addresses.iter().zip(seen.iter_mut()) {
            match world.get_within(*address, Duration::from_millis(1000)) {
                Ok(reply) => {
                    watched.answered.insert(reply.node);
                }
                Err(_) => watched.failures += 1,
            }
            watched.macs.insert(world.router_owner(*address)?);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Ok(seen)
}

/// Asserts that each address stayed with its expected node the whole time.
fn assert_stayed(
    world: &World,
    addresses: &[IpAddr],
    owners: &[usize],
    seen: &[Watched],
    when: &str,
) -> Result<()> {
    for ((address, owner), watched) in addresses.iter().zip(owners).zip(seen) {
        let name = world.node_name(*owner)?;
        assert_eq!(
            watched.answered,
            [name].into(),
            "{when}, {address} was answered by {:?}\n{}",
            watched.answered,
            world.speaker_logs()
        );
        assert_eq!(
            watched.macs,
            [Some(*owner)].into(),
            "{when}, the router held these nodes' MACs for {address}: {:?}\n{}",
            watched.macs,
            world.speaker_logs()
        );
        assert_eq!(watched.failures, 0, "{when}, requests to {address} failed");
    }
    Ok(())
}

/// After the fault at `since` on node `owner`: if `owner` also had the IPv6 address, waits
/// for it to move (and returns the new owner), otherwise checks it did not move.
fn follow_v6(
    world: &World,
    v6: IpAddr,
    owner: usize,
    owner_v6: usize,
    since: Instant,
) -> Result<usize> {
    let owner_name = world.node_name(owner)?;
    if owner_v6 != owner {
        let reply = world.get(v6)?;
        assert_eq!(
            world.node_index(&reply.node)?,
            owner_v6,
            "an address whose owner is fine must not move"
        );
        return Ok(owner_v6);
    }
    let (reply, failover) = world.probe_until(v6, since, PROBE_INTERVAL, PROBE_TIMEOUT, |r| {
        r.node != owner_name
    })?;
    let successor = world.node_index(&reply.node)?;
    assert_eq!(world.router_owner(v6)?, Some(successor));
    world.wait_record("svc", v6, successor)?;
    eprintln!(
        "speaker_l2: {v6} moved to node {successor} too; first reply after {} ms",
        ms(failover)
    );
    Ok(successor)
}

#[test]
fn the_client_reaches_an_l2_address_over_ipv4_and_ipv6_through_the_owner_whose_mac_the_router_learned()
-> Result<()> {
    let mut world = World::l2("l2-reach", 3)?;
    for node in 1..=3 {
        world.add_pod(node, &format!("web-{node}"), "web")?;
    }
    // Four more Ready nodes that run no speaker (tainted control-plane nodes, say): eligible
    // by selector but never seen, they must not keep the three speakers from recording who
    // announces (fewer than half of seven would be in sight if they counted).
    let _idle_nodes = (1..=4)
        .map(|i| {
            let name = format!("{}-idle{i}", world.node_name(1)?);
            world.kubectl.create_node(&NodeSpec::new(&name))
        })
        .collect::<Result<Vec<_>>>()?;
    world.start_all_speakers()?;
    world.wait_membership(&[1, 2, 3], 3)?;
    let (v4, v6) = (parse_ip("192.0.2.130")?, parse_ip("2001:db8:1::130")?);
    let started = Instant::now();
    world.apply_service(
        &world.service("web", "web", "Cluster").dual_stack(),
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
        let recorded = world.wait_any_record("web", address)?;
        assert_eq!(world.router_owner(address)?, Some(recorded), "{address}");
        let mac = world.router_mac_for(address)?;
        eprintln!("speaker_l2: {address} is announced by node {recorded} ({mac:?})");
        // Cluster policy: through the owner, the client reaches pods on every node.
        let pods: BTreeSet<String> = (0..30)
            .map(|_| world.get(address).map(|r| r.pod))
            .collect::<Result<_>>()?;
        assert_eq!(pods.len(), 3, "{address} reached only {pods:?}");
        // The owner answers the router's requests, not only announces: with the router's
        // entry flushed, the next request makes it ask (ARP request / Neighbor
        // Solicitation), and the answer carries the owner's MAC again.
        let answered_before =
            world.metric_sum(recorded, "herald_speaker_l2_requests_answered_total")?;
        world.lab.router().ip(&[
            "neigh",
            "flush",
            "dev",
            ROUTER_LAN,
            "to",
            &address.to_string(),
        ])?;
        assert_eq!(world.router_mac_for(address)?, None, "flushed");
        world.get(address)?;
        assert_eq!(world.router_owner(address)?, Some(recorded), "{address}");
        assert!(world.metric_sum(recorded, "herald_speaker_l2_announcements_sent_total")? >= 1.0);
        // Counters reach the metrics once a second.
        poll_until(
            &format!("node {recorded} to count the request for {address} it answered"),
            FAILOVER_DEADLINE,
            Duration::from_millis(200),
            || {
                let now =
                    world.metric_sum(recorded, "herald_speaker_l2_requests_answered_total")?;
                Ok(if now > answered_before {
                    Poll::Ready(())
                } else {
                    Poll::Pending(format!("{now}"))
                })
            },
        )?;
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
    let mut world = World::l2("l2-local", 3)?;
    world.add_pod(3, "loc-3", "loc")?;
    world.start_all_speakers()?;
    world.wait_membership(&[1, 2, 3], 3)?;
    let (v4, v6) = (parse_ip("192.0.2.131")?, parse_ip("2001:db8:1::131")?);
    world.apply_service(
        &world.service("svc", "loc", "Local").dual_stack(),
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
    // Node 3 gave the address up itself (it is live, just no longer eligible), so node 1
    // never gives way to node 3's last frames (it would wait for its next probe, 5 s).
    // Frame counters are sampled about once a second.
    std::thread::sleep(Duration::from_millis(1500));
    let gave_way: f64 = world
        .metrics(1)?
        .lines()
        .filter(|line| {
            line.starts_with("herald_speaker_l2_conflicts_total")
                && line.contains("phase=\"giving_way\"")
        })
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    assert_eq!(
        gave_way, 0.0,
        "node 1 gave the address up to node 3's last frames"
    );
    Ok(())
}

#[test]
fn sigkill_of_the_owning_speaker_moves_the_address_to_another_node_and_its_return_does_not_take_it_back()
-> Result<()> {
    let (v4, v6) = (parse_ip("192.0.2.140")?, parse_ip("2001:db8:1::140")?);
    let mut world = world_with_a_pod_per_node("l2-kill", "192.0.2.140", "2001:db8:1::140")?;
    let owner = owner_of(&world, v4)?;
    let owner_v6 = owner_of(&world, v6)?;

    let (successor, failover, killed) =
        world.kill_owner_until_another_answers(owner, v4, PROBE_INTERVAL, PROBE_TIMEOUT)?;
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
    let owner_v6_now = follow_v6(&world, v6, owner, owner_v6, killed)?;

    // The old owner comes back and leaves the addresses where they are.
    world.start_speaker(owner)?;
    world.wait_membership(&[1, 2, 3], 3)?;
    let seen = watch_owners(&world, &[v4, v6], WATCH_AFTER_RETURN)?;
    assert_stayed(
        &world,
        &[v4, v6],
        &[successor, owner_v6_now],
        &seen,
        &format!("after node {owner}'s speaker came back"),
    )?;
    world.wait_record("svc", v4, successor)?;
    assert_eq!(
        world.metric(owner, "herald_speaker_l2_owned_addresses")?,
        0.0,
        "the returned speaker announces nothing"
    );
    Ok(())
}

// The node cut off here still reaches the API server (its control-plane link is separate), so
// this is also the test of the executor's partition rules: the cut-off node may take the
// addresses over on its side, but it writes no record while it sees fewer than half of the
// eligible nodes, never writes back a record the node that took over wrote, and gives way
// (RFC 5227 §2.4 (a)) instead of defending when it hears the recorded owner after the cable
// comes back. (Before those rules this test failed intermittently.)
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
    let owner_v6_now = follow_v6(&world, v6, owner, owner_v6, unplugged)?;
    world.wait_membership(&others, 2)?;

    // Plugged back in: the node rejoins and takes nothing back. Watched from the moment the
    // cable is back: before membership is whole again the returning node still believes it
    // owns what it had, which is when it could pull the router back to itself.
    let replugged = Instant::now();
    world.lab.set_node_lan(owner, true)?;
    let (watched, rejoined) = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| watch_owners(&world, &[v4, v6], WATCH_AFTER_RETURN));
        let rejoined = world
            .wait_membership(&[1, 2, 3], 3)
            .map(|_| replugged.elapsed());
        (watcher.join(), rejoined)
    });
    let seen =
        watched.map_err(|_| herald_lab::LabError::Invalid("the watcher panicked".into()))??;
    let rejoined = rejoined?;
    eprintln!(
        "speaker_l2: node {owner} back on the LAN; every speaker saw 3 members again after {} ms",
        ms(rejoined)
    );
    assert_stayed(
        &world,
        &[v4, v6],
        &[successor, owner_v6_now],
        &seen,
        &format!("after node {owner}'s cable came back"),
    )?;
    world.wait_record("svc", v4, successor)?;
    Ok(())
}

/// Drops (or stops dropping) membership traffic (UDP 7946) in and out of node `node`; its
/// LAN, and so ARP / NDP, stay as they are.
fn cut_membership(world: &World, node: usize, cut: bool) -> Result<()> {
    let ns = &world.lab.node(node)?.netns;
    if !cut {
        ns.exec(&["nft", "delete", "table", "inet", "hllab_block"])?;
        return Ok(());
    }
    ns.exec(&["nft", "add", "table", "inet", "hllab_block"])?;
    for (chain, hook) in [("in", "input"), ("out", "output")] {
        ns.exec(&[
            "nft",
            "add",
            "chain",
            "inet",
            "hllab_block",
            chain,
            &format!("{{ type filter hook {hook} priority -10 ; }}"),
        ])?;
        for port in ["sport", "dport"] {
            ns.exec(&[
                "nft",
                "add",
                "rule",
                "inet",
                "hllab_block",
                chain,
                "udp",
                port,
                "7946",
                "drop",
            ])?;
        }
    }
    Ok(())
}

#[test]
fn a_membership_partition_with_the_lan_intact_leaves_exactly_one_announcer_per_address()
-> Result<()> {
    let (v4, v6) = (parse_ip("192.0.2.142")?, parse_ip("2001:db8:1::142")?);
    let world = world_with_a_pod_per_node("l2-split", "192.0.2.142", "2001:db8:1::142")?;
    let owner = owner_of(&world, v4)?;
    let owner_v6 = owner_of(&world, v6)?;
    let others: Vec<usize> = (1..=3).filter(|n| *n != owner).collect();

    // The owner's speaker and its peers stop hearing each other; the link stays up. Each side
    // believes the other dead: a peer takes the address over while the owner keeps it. The
    // conflict on the wire settles it: whoever holds an address against the record gives way.
    cut_membership(&world, owner, true)?;
    world.wait_membership(&others, 2)?;
    world.wait_membership(&[owner], 1)?;
    std::thread::sleep(Duration::from_secs(3));
    let mut holders = Vec::new();
    for address in [v4, v6] {
        let holder = world.node_index(&world.wait_get(address)?.node)?;
        world.wait_record("svc", address, holder)?;
        holders.push(holder);
    }
    eprintln!(
        "speaker_l2: membership of node {owner} cut: {v4} held by node {} and {v6} by node {} (owners before: {owner}, {owner_v6})",
        holders[0], holders[1]
    );
    let seen = watch_owners(&world, &[v4, v6], WATCH_AFTER_RETURN)?;
    assert_stayed(
        &world,
        &[v4, v6],
        &holders,
        &seen,
        &format!("while node {owner}'s membership was cut"),
    )?;

    // Healed: membership whole again, and the addresses stay where the record says.
    cut_membership(&world, owner, false)?;
    world.wait_membership(&[1, 2, 3], 3)?;
    let seen = watch_owners(&world, &[v4, v6], Duration::from_secs(5))?;
    assert_stayed(
        &world,
        &[v4, v6],
        &holders,
        &seen,
        "after the partition healed",
    )?;
    let owned: f64 = (1..=3)
        .map(|node| world.metric(node, "herald_speaker_l2_owned_addresses"))
        .sum::<Result<f64>>()?;
    assert_eq!(
        owned,
        2.0,
        "one owner per address\n{}",
        world.speaker_logs()
    );
    Ok(())
}

/// The old owner restarted at once after a failover (a crash-looping pod), before the new
/// owner's record reached the API server: the record still names the old owner, so it must
/// not trust it blindly. It probes first (RFC 5227 §2.1), the new owner answers, the new
/// owner's record follows, and the address stays where it went.
#[test]
fn a_speaker_restarted_right_after_a_failover_leaves_the_address_with_the_new_owner() -> Result<()>
{
    let v4 = parse_ip("192.0.2.142")?;
    let mut world = world_with_a_pod_per_node("l2-bounce", "192.0.2.142", "2001:db8:1::142")?;
    let owner = owner_of(&world, v4)?;

    let (successor, failover, killed) =
        world.kill_owner_until_another_answers(owner, v4, PROBE_INTERVAL, PROBE_TIMEOUT)?;
    // At once: the record most likely still names the old owner.
    world.start_speaker(owner)?;
    eprintln!(
        "speaker_l2: node {owner}'s speaker killed, node {successor} answered after {} ms, node {owner}'s speaker ready again after {} ms",
        ms(failover),
        ms(killed.elapsed())
    );
    world.wait_membership(&[1, 2, 3], 3)?;
    let seen = watch_owners(&world, &[v4], WATCH_AFTER_RETURN)?;
    assert_stayed(
        &world,
        &[v4],
        &[successor],
        &seen,
        &format!("after node {owner}'s speaker was restarted at once"),
    )?;
    world.wait_record("svc", v4, successor)?;
    Ok(())
}

/// A rolling restart's SIGTERM: the owner stops answering, leaves the membership (so the
/// others do not wait for the failure detector) and removes its forwarding last; the next
/// owner takes the address at once and traffic moves to it.
#[test]
fn a_terminated_owner_leaves_and_the_next_owner_takes_the_address_at_once() -> Result<()> {
    let v4 = parse_ip("192.0.2.143")?;
    let mut world = world_with_a_pod_per_node("l2-term", "192.0.2.143", "2001:db8:1::143")?;
    let owner = owner_of(&world, v4)?;
    let owner_name = world.node_name(owner)?;
    let others: Vec<usize> = (1..=3).filter(|n| *n != owner).collect();
    let log_lengths: Vec<usize> = others
        .iter()
        .map(|node| Ok(world.speaker_mut(*node)?.log().len()))
        .collect::<Result<_>>()?;

    let terminated = Instant::now();
    let status = world
        .speaker_mut(owner)?
        .terminate(Duration::from_secs(15))?;
    let exited = terminated.elapsed();
    assert!(
        status.success(),
        "the speaker exits cleanly on SIGTERM: {status}"
    );
    let (reply, moved) = world.probe_until(v4, terminated, PROBE_INTERVAL, PROBE_TIMEOUT, |r| {
        r.node != owner_name
    })?;
    let successor = world.node_index(&reply.node)?;
    world.wait_membership(&others, 2)?;
    world.wait_record("svc", v4, successor)?;
    // It left: the others dropped it without suspecting it first (failure detection would).
    let about_owner = format!("node={owner_name}");
    for (node, length) in others.iter().zip(log_lengths) {
        let log = world.speaker_mut(*node)?.log();
        let since = log.get(length..).unwrap_or_default();
        let mentions = |what: &str| {
            since
                .lines()
                .any(|line| line.contains(what) && line.contains(&about_owner))
        };
        assert!(mentions("speaker down"), "node {node} saw node {owner} go");
        assert!(
            !mentions("speaker suspected"),
            "node {node} had to detect node {owner}'s stop instead of hearing it leave:\n{since}"
        );
    }
    eprintln!(
        "speaker_l2: SIGTERM of node {owner}'s speaker -> exited after {} ms, first reply through node {successor} after {} ms",
        ms(exited),
        ms(moved)
    );
    assert_eq!(world.router_owner(v4)?, Some(successor));
    Ok(())
}
