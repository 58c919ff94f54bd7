//! herald-speaker end to end in BGP mode: real speakers in the node namespaces peer with
//! FRR on the router, against the real kube-apiserver and kube-controller-manager.
//!
//! Every node namespace runs `target/debug/herald-speaker` (built by `cargo build
//! --workspace`; tests/run.sh does) with BGP and forwarding on and layer 2 off. The router
//! has no static routes to the Service addresses: the client reaches a Service only if the
//! speakers' BGP routes put it into the router's kernel table. The tests write the Services'
//! `status.loadBalancer.ingress` themselves, as the controller would (the benchmark in
//! `speaker_bgp_bench.rs` runs the real controller, and so does the test of the clean-up of
//! deleted Nodes' status entries, which is the controller's job). Each test has its own lab, install
//! namespace (pool, peers, advertisements, Secrets), apps namespace and
//! `loadBalancerClass`; all of it is removed when the test ends, even on failure (guards).
//! Must run as root. Measured times are printed (`--nocapture`).

mod bgp_support;
mod common;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use bgp_support::{
    CHANGE_DEADLINE, CONVERGE, PASSWORD, ROUTER_ASN, error_of, measure_api_and_router, state_of,
};
use common::{CLIENT_V4, SERVICE_PORT, World, parse_ip, pods_of};
use herald_lab::frr::{BgpNeighbor, RemoteAs, RouterConfig};
use herald_lab::wait::{Poll, poll_until};
use herald_lab::{Family, Result, herald};
use serde_json::{Value, json};

#[test]
fn ebgp_with_md5_spreads_services_over_every_node_and_local_routes_follow_ready_endpoints()
-> Result<()> {
    let mut world = World::bgp("bgp-ebgp", 3)?;
    let config = world
        .router_config()
        .each_neighbor(|n| n.password = Some(PASSWORD.to_string()));
    world.start_frr(&config)?;
    world.password_secret("bgp-auth", PASSWORD)?;
    world.peer(
        "router",
        "192.0.2.1",
        json!({"passwordSecret": {"name": "bgp-auth"}}),
    )?;
    world.advertise(json!({}))?;
    for node in 1..=3 {
        world.add_pod(node, &format!("web-{node}"), "web")?;
    }
    world.add_pod(1, "local-1", "local")?;
    world.add_pod(2, "local-2", "local")?;
    world.apply_service(
        &world.service("spread", "web", "Cluster"),
        &["203.0.113.10"],
    )?;
    world.apply_service(&world.service("local", "local", "Local"), &["203.0.113.11"])?;
    world.wait_ready_endpoints("spread", 3)?;
    world.wait_ready_endpoints("local", 2)?;

    let started = Instant::now();
    world.start_all_speakers()?;
    let frr = world.lab.frr()?;
    for node in 1..=3 {
        frr.wait_established(parse_ip(&world.lan_v4(node)?)?, CONVERGE)?;
    }
    let all = [world.lan_v4(1)?, world.lan_v4(2)?, world.lan_v4(3)?];
    world.wait_gateways("203.0.113.10/32", &all, CONVERGE)?;
    world.wait_gateways("203.0.113.11/32", &all[..2], CONVERGE)?;
    println!(
        "3 speakers started, MD5 sessions up and routes in the router's kernel after {:?}",
        started.elapsed()
    );

    // ECMP: the Local Service's requests come through node 1 and node 2, each to its own
    // pod, with the client's address intact.
    let replies = world.sample("203.0.113.11", 40)?;
    assert_eq!(
        pods_of(&replies),
        ["local-1", "local-2"].map(String::from).into(),
        "40 connections should be spread over both nodes by the router's ECMP"
    );
    for reply in &replies {
        assert_eq!(reply.client_ip()?, parse_ip(CLIENT_V4)?, "{reply:?}");
    }
    let spread = world.sample("203.0.113.10", 30)?;
    let nodes: BTreeSet<String> = spread.iter().map(|r| r.node.clone()).collect();
    assert!(
        nodes.len() >= 2,
        "the Cluster Service should answer from pods on several nodes: {nodes:?}"
    );
    let bgp = frr.bgp_routes(Family::V4)?;
    let paths = bgp.get("203.0.113.10/32").map(Vec::len).unwrap_or(0);
    assert_eq!(paths, 3, "FRR should hold one path per node: {bgp:?}");

    // Status: every node's session is Established with its prefix count; the Services
    // name the peer that carries them, per node.
    for (node, prefixes) in [(1, 2), (2, 2), (3, 1)] {
        let entry = world.wait_session_entry("router", node, "Established", |e| {
            state_of(e) == Some("Established")
                && e.is_some_and(|e| e["advertisedPrefixes"] == prefixes)
        })?;
        assert!(
            entry.is_some_and(|e| e["lastTransitionTime"].is_string()),
            "node {node}"
        );
    }
    world.wait_carriers("spread", &[Some("router"), Some("router"), Some("router")])?;
    world.wait_carriers("local", &[Some("router"), Some("router"), None])?;
    assert_eq!(
        world.metric(1, "herald_speaker_bgp_session_up{peer=\"router\"}")?,
        1.0
    );
    assert_eq!(
        world.metric(1, "herald_speaker_bgp_prefixes_advertised{peer=\"router\"}")?,
        2.0
    );
    assert!(world.metric(1, "herald_speaker_bgp_updates_sent_total{peer=\"router\"}")? >= 1.0);

    // Local: node 2 loses its only ready endpoint -> only node 1 announces; then node 1
    // too -> no route at all; then it comes back.
    let lan1 = world.lan_v4(1)?;
    let timings = [
        (
            "local-2",
            false,
            vec![lan1.clone()],
            "node 2's last endpoint not ready",
        ),
        (
            "local-1",
            false,
            vec![],
            "node 1's last endpoint not ready (no node left)",
        ),
        (
            "local-1",
            true,
            vec![lan1.clone()],
            "node 1's endpoint ready again",
        ),
    ];
    for (pod, ready, gateways, what) in timings {
        let started = Instant::now();
        world.set_pod_ready(pod, "local", ready)?;
        let (to_api, to_router) = measure_api_and_router(
            what,
            started,
            || {
                let endpoints = world.apps.endpoints("local")?;
                Ok(endpoints
                    .iter()
                    .any(|e| e.pod.as_deref() == Some(pod) && e.ready == ready))
            },
            || {
                let route = world.router_route("203.0.113.11/32")?;
                let have: BTreeSet<String> = route
                    .as_ref()
                    .map(|r| r.gateways().into_iter().collect())
                    .unwrap_or_default();
                Ok(have == gateways.iter().cloned().collect::<BTreeSet<_>>()
                    && route.is_some() != gateways.is_empty())
            },
        )?;
        println!(
            "Local, {what}: EndpointSlice after {to_api:?}, router's kernel route after \
             {to_router:?} (speaker + BGP + FRR share {:?})",
            to_router.saturating_sub(to_api)
        );
    }
    world.wait_carriers("local", &[Some("router"), None, None])?;
    let reply =
        world
            .lab
            .wait_client_get(parse_ip("203.0.113.11")?, SERVICE_PORT, CHANGE_DEADLINE)?;
    assert_eq!(reply.pod, "local-1");
    Ok(())
}

#[test]
fn ibgp_over_an_ipv6_session_carries_ipv6_routes_with_ecmp_to_local_endpoints() -> Result<()> {
    let mut world = World::bgp("bgp-ibgp6", 2)?;
    let neighbors: Vec<IpAddr> = (1..=2)
        .map(|node| parse_ip(&world.lan_v6(node)?))
        .collect::<Result<_>>()?;
    let mut config = RouterConfig::standard(&world.lab.names().frr_instance(), &[]);
    for neighbor in neighbors {
        let mut neighbor = BgpNeighbor::external(neighbor).remote_as(RemoteAs::Internal);
        neighbor.ipv4_unicast = false;
        config = config.neighbor(neighbor);
    }
    world.start_frr(&config)?;
    world.peer(
        "router-v6",
        "2001:db8:1::1",
        json!({"myASN": ROUTER_ASN, "peerASN": ROUTER_ASN}),
    )?;
    world.advertise(json!({}))?;
    world.add_pod(1, "web-1", "web")?;
    world.add_pod(2, "web-2", "web")?;
    let mut web = world.service("web6", "web", "Local");
    web.ip_family_policy = Some("SingleStack".into());
    web.ip_families = vec!["IPv6".into()];
    world.apply_service(&web, &["2001:db8:100::10"])?;
    world.wait_ready_endpoints("web6", 2)?;

    let started = Instant::now();
    world.start_all_speakers()?;
    let gateways = [world.lan_v6(1)?, world.lan_v6(2)?];
    world.wait_gateways("2001:db8:100::10/128", &gateways, CONVERGE)?;
    println!(
        "iBGP over IPv6: sessions up and the IPv6 route with 2 next hops after {:?}",
        started.elapsed()
    );
    let frr = world.lab.frr()?;
    let summary = frr.bgp_summary()?;
    for gateway in &gateways {
        assert!(summary.is_established(gateway), "{summary:?}");
    }
    let routes = frr.bgp_routes(Family::V6)?;
    let paths = routes
        .get("2001:db8:100::10/128")
        .cloned()
        .unwrap_or_default();
    assert_eq!(paths.len(), 2, "{routes:?}");
    assert!(
        paths
            .iter()
            .all(|p| p.path.as_deref().unwrap_or_default().is_empty()),
        "iBGP: an empty AS_PATH: {paths:?}"
    );

    let replies = world.sample("2001:db8:100::10", 40)?;
    assert_eq!(
        pods_of(&replies),
        ["web-1", "web-2"].map(String::from).into(),
        "IPv6 connections should be spread over both nodes"
    );
    for reply in &replies {
        assert_eq!(reply.client_ip()?, parse_ip("2001:db8:2::100")?);
    }
    for node in 1..=2 {
        world.wait_session_entry("router-v6", node, "Established", |e| {
            state_of(e) == Some("Established") && e.is_some_and(|e| e["advertisedPrefixes"] == 1)
        })?;
    }
    world.wait_carriers("web6", &[Some("router-v6"), Some("router-v6")])?;
    Ok(())
}

/// Two nodes announcing one Cluster Service to the standard router; returns the world
/// with the route up via both nodes.
fn two_node_cluster_service(
    hint: &str,
    peer_spec: Value,
    router: impl FnOnce(&World) -> Result<()>,
) -> Result<World> {
    let mut world = World::bgp(hint, 2)?;
    let config = world.router_config();
    world.start_frr(&config)?;
    router(&world)?;
    world.peer("router", "192.0.2.1", peer_spec)?;
    world.advertise(json!({}))?;
    world.add_pod(1, "web-1", "web")?;
    world.add_pod(2, "web-2", "web")?;
    world.apply_service(&world.service("web", "web", "Cluster"), &["203.0.113.10"])?;
    world.wait_ready_endpoints("web", 2)?;
    world.start_all_speakers()?;
    let both = [world.lan_v4(1)?, world.lan_v4(2)?];
    world.wait_gateways("203.0.113.10/32", &both, CONVERGE)?;
    Ok(world)
}

#[test]
fn a_killed_speaker_is_dropped_at_once_a_frozen_one_after_the_hold_time_and_a_terminated_one_withdraws()
-> Result<()> {
    // Hold time 9 s, keepalives every 3 s.
    let mut world = two_node_cluster_service("bgp-kill", json!({"holdTime": "9s"}), |_| Ok(()))?;
    let lan1 = world.lan_v4(1)?;
    let both = [lan1.clone(), world.lan_v4(2)?];

    // SIGKILL: the kernel closes the dead process's TCP connection, so the router drops the
    // session and the path at once.
    world.speaker_mut(2)?.kill()?;
    let gone = world.wait_gateways(
        "203.0.113.10/32",
        std::slice::from_ref(&lan1),
        CHANGE_DEADLINE,
    )?;
    println!("SIGKILL: node 2's next hop left the router after {gone:?}");
    let reply = world
        .lab
        .client_get(parse_ip("203.0.113.10")?, SERVICE_PORT)?;
    assert!(reply.pod.starts_with("web-"), "{reply:?}");
    let restarted = Instant::now();
    world.start_speaker(2)?;
    world.wait_gateways("203.0.113.10/32", &both, CONVERGE)?;
    println!(
        "restart: node 2's next hop back {:?} after the speaker was started",
        restarted.elapsed()
    );

    // SIGSTOP: a hung speaker (or a node that vanished) keeps its connection open but sends
    // no KEEPALIVE; only the router's hold timer removes the path (RFC 4271 §6.5).
    let pid = world.speaker_mut(2)?.pid();
    herald_lab::netns::signal(pid, "STOP")?;
    let frozen = world.wait_gateways(
        "203.0.113.10/32",
        std::slice::from_ref(&lan1),
        CHANGE_DEADLINE,
    );
    herald_lab::netns::signal(pid, "CONT")?;
    let frozen = frozen?;
    println!("SIGSTOP: node 2's next hop left the router after {frozen:?} (hold time 9 s)");
    assert!(
        frozen >= Duration::from_secs(5) && frozen <= Duration::from_secs(12),
        "a silent speaker is dropped by the 9 s hold timer, 6-9 s after its last KEEPALIVE ({frozen:?})"
    );
    let resumed = Instant::now();
    world.wait_gateways("203.0.113.10/32", &both, CONVERGE)?;
    println!(
        "SIGCONT: the resumed speaker's next hop back after {:?}",
        resumed.elapsed()
    );

    // SIGTERM: a Cease / Administrative Shutdown, and the router drops the path at once.
    let terminated = Instant::now();
    let status = world.speaker_mut(2)?.terminate(Duration::from_secs(15))?;
    let gone = world.wait_gateways(
        "203.0.113.10/32",
        std::slice::from_ref(&lan1),
        CHANGE_DEADLINE,
    )?;
    let gone = gone.min(terminated.elapsed());
    println!("SIGTERM: node 2's next hop left the router {gone:?} after the signal");
    assert!(
        status.success(),
        "the speaker exits cleanly on SIGTERM: {status}"
    );
    assert!(
        gone < Duration::from_secs(3),
        "a clean shutdown withdraws well before the hold time ({gone:?})"
    );
    let frr = world.lab.frr()?;
    let neighbor = frr.vtysh(&format!("show bgp neighbors {}", world.lan_v4(2)?))?;
    assert!(
        neighbor.contains("Administrative Shutdown"),
        "FRR should have received a Cease / Administrative Shutdown:\n{neighbor}"
    );
    // The speaker removes its own BGPPeer status entry on SIGTERM (it queues the removal
    // before closing the sessions and waits for it, bounded).
    if let Err(stale) =
        world.wait_session_entry("router", 2, "removed on shutdown", |e| e.is_none())
    {
        let log = world.speaker_mut(2)?.log();
        let tail: Vec<&str> = log.lines().rev().take(80).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        panic!(
            "node 2's BGPPeer status entry survived SIGTERM: {stale}\nspeaker log (tail):\n{}",
            tail.join("\n")
        );
    }
    // ... and its carrier annotation on the Service (node 1 still carries it).
    world.wait_carriers("web", &[Some("router"), None])?;
    assert_eq!(
        state_of(world.session_entry("router", 1)?.as_ref()),
        Some("Established")
    );
    Ok(())
}

#[test]
fn the_status_entry_of_a_deleted_node_whose_speaker_was_killed_is_pruned_by_the_controller()
-> Result<()> {
    let mut world = two_node_cluster_service("bgp-prune", json!({}), |_| Ok(()))?;
    // The controller (leader: no election here) removes entries of deleted Nodes.
    let _controller = world.start_controller(1)?;
    for node in 1..=2 {
        world.wait_session_entry("router", node, "Established", |e| {
            state_of(e) == Some("Established")
        })?;
    }

    // SIGKILL: nobody removes node 2's entry, and while its Node exists nobody may (it says
    // that the node's session is not being kept up).
    world.speaker_mut(2)?.kill()?;
    let lan1 = world.lan_v4(1)?;
    world.wait_gateways(
        "203.0.113.10/32",
        std::slice::from_ref(&lan1),
        CHANGE_DEADLINE,
    )?;
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        world.session_entry("router", 2)?.is_some(),
        "a killed speaker's entry stays while its Node exists"
    );

    // The Node is deleted for good: the controller removes the entry once the Node has been
    // gone for the grace (30 s), not before.
    let node2 = world.node_name(2)?;
    world.kubectl.delete("node", &node2, None)?;
    let deleted = Instant::now();
    let within_grace = Instant::now() + Duration::from_secs(15);
    while Instant::now() < within_grace {
        assert!(
            world.session_entry("router", 2)?.is_some(),
            "node 2's entry was removed {:?} after its Node was deleted, within the grace",
            deleted.elapsed()
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let pruned = poll_until(
        "node 2's entry to be removed from BGPPeer router's status",
        Duration::from_secs(120),
        Duration::from_millis(500),
        || {
            Ok(match world.session_entry("router", 2)? {
                None => Poll::Ready(deleted.elapsed()),
                Some(entry) => Poll::Pending(entry.to_string()),
            })
        },
    );
    let pruned = match pruned {
        Ok(pruned) => pruned,
        Err(error) => panic!(
            "{error}\ncontroller log:\n{}\nspeaker logs:\n{}",
            _controller.log(),
            world.speaker_logs()
        ),
    };
    println!("node 2's status entry removed {pruned:?} after its Node was deleted (grace 30 s)");
    assert_eq!(
        state_of(world.session_entry("router", 1)?.as_ref()),
        Some("Established"),
        "node 1's own entry stays"
    );
    let controller_metrics = world.lab.node(1)?.netns.exec(&[
        "curl",
        "-sS",
        "--max-time",
        "5",
        "http://127.0.0.1:7472/metrics",
    ])?;
    assert_eq!(
        herald::metric(
            &controller_metrics,
            "herald_controller_bgp_status_entries_pruned_total"
        ),
        Some(1.0),
        "the controller removed the entry"
    );
    let reply = world
        .lab
        .client_get(parse_ip("203.0.113.10")?, SERVICE_PORT)?;
    assert!(reply.pod.starts_with("web-"), "{reply:?}");
    Ok(())
}

#[test]
fn sessions_and_routes_come_back_after_the_router_restarts() -> Result<()> {
    let mut world = two_node_cluster_service("bgp-frr", json!({}), |_| Ok(()))?;
    let both = [world.lan_v4(1)?, world.lan_v4(2)?];
    for round in 1..=2 {
        world.lab.stop_frr()?;
        world.wait_gateways("203.0.113.10/32", &[], CHANGE_DEADLINE)?;
        for node in 1..=2 {
            world.wait_session_entry("router", node, "not Established", |e| {
                state_of(e).is_some_and(|s| s != "Established")
            })?;
        }
        let started = Instant::now();
        world.lab.start_frr_again()?;
        world.wait_gateways("203.0.113.10/32", &both, CONVERGE)?;
        println!(
            "FRR restart {round}: both next hops back in the router's kernel {:?} after FRR was started",
            started.elapsed()
        );
        for node in 1..=2 {
            world.wait_session_entry("router", node, "Established again", |e| {
                state_of(e) == Some("Established")
            })?;
        }
    }
    let replies = world.sample("203.0.113.10", 10)?;
    assert_eq!(replies.len(), 10);
    let flaps = world.metric(1, "herald_speaker_bgp_session_flaps_total{peer=\"router\"}")?;
    assert!(
        flaps >= 2.0,
        "two router restarts are two flaps, counted {flaps}:\n{}",
        world.metrics(1)?
    );
    for speaker in world.speakers_mut() {
        assert!(speaker.is_running(), "{} exited", speaker.name());
    }
    Ok(())
}

#[test]
fn graceful_restart_keeps_the_routes_while_a_killed_speaker_comes_back() -> Result<()> {
    let mut world = two_node_cluster_service(
        "bgp-gr",
        json!({"holdTime": "3s", "enableGracefulRestart": true}),
        |world| {
            world
                .lab
                .frr()?
                .configure(&[&format!("router bgp {ROUTER_ASN}"), "bgp graceful-restart"])
                .map(|_| ())
        },
    )?;
    let both = [world.lan_v4(1)?, world.lan_v4(2)?];
    let frr = world.lab.frr()?;
    let neighbor = frr.vtysh(&format!("show bgp neighbors {}", world.lan_v4(2)?))?;
    assert!(
        neighbor.contains("Graceful Restart"),
        "the session should have negotiated graceful restart:\n{neighbor}"
    );

    world.speaker_mut(2)?.kill()?;
    // Three hold times: without graceful restart the path would be gone by now.
    let watch_until = Instant::now() + Duration::from_secs(9);
    while Instant::now() < watch_until {
        let route = world.router_route("203.0.113.10/32")?;
        let have: BTreeSet<String> = route
            .map(|r| r.gateways().into_iter().collect())
            .unwrap_or_default();
        assert_eq!(
            have,
            both.iter().cloned().collect(),
            "the router must keep the killed speaker's route during the restart time"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let restarted = Instant::now();
    world.start_speaker(2)?;
    world.wait_session_entry("router", 2, "Established after the restart", |e| {
        state_of(e) == Some("Established")
    })?;
    world.wait_gateways("203.0.113.10/32", &both, CHANGE_DEADLINE)?;
    println!(
        "graceful restart: route kept for 9 s after SIGKILL; session back {:?} after the new speaker started",
        restarted.elapsed()
    );
    let reply = world
        .lab
        .client_get(parse_ip("203.0.113.10")?, SERVICE_PORT)?;
    assert!(reply.pod.starts_with("web-"));
    Ok(())
}

#[test]
fn misconfigured_peers_each_get_a_clear_status_and_the_speakers_keep_running() -> Result<()> {
    let mut world = World::bgp("bgp-bad", 3)?;
    let node1 = world.lan_v4(1)?;
    let config = world.router_config().each_neighbor(|n| {
        if n.address.to_string() == node1 {
            n.password = Some(PASSWORD.to_string());
        }
    });
    world.start_frr(&config)?;
    let on_node = |node: usize| -> Result<Value> {
        Ok(
            json!({"nodeSelectors": [{"matchLabels": {"kubernetes.io/hostname": world.node_name(node)?}}]}),
        )
    };
    world.password_secret("bgp-wrong", "not-the-password")?;
    let mut wrong_password = on_node(1)?;
    wrong_password["passwordSecret"] = json!({"name": "bgp-wrong"});
    world.peer("wrong-password", "192.0.2.1", wrong_password)?;
    let mut missing_secret = on_node(1)?;
    missing_secret["passwordSecret"] = json!({"name": "bgp-absent"});
    world.peer("missing-secret", "192.0.2.251", missing_secret)?;
    let mut wrong_asn = on_node(2)?;
    wrong_asn["peerASN"] = json!(64999);
    world.peer("wrong-asn", "192.0.2.1", wrong_asn)?;
    world.peer("unreachable", "192.0.2.250", on_node(3)?)?;
    world.advertise(json!({}))?;
    world.start_all_speakers()?;

    let not_up = |e: Option<&Value>| state_of(e).is_some_and(|s| s != "Established");
    let entry = world.wait_session_entry("wrong-password", 1, "an MD5 hint", |e| {
        not_up(e) && error_of(e).contains("TCP-MD5")
    })?;
    println!("wrong password: {entry:?}");
    let entry = world.wait_session_entry("missing-secret", 1, "the missing Secret named", |e| {
        state_of(e) == Some("Idle")
            && error_of(e).contains("bgp-absent")
            && error_of(e).contains("not found")
    })?;
    println!("missing Secret: {entry:?}");
    let entry = world.wait_session_entry("wrong-asn", 2, "a Bad Peer AS NOTIFICATION", |e| {
        not_up(e) && error_of(e).contains("NOTIFICATION") && error_of(e).contains("(2/2)")
    })?;
    println!("wrong ASN: {entry:?}");
    let entry = world.wait_session_entry("unreachable", 3, "a connection failure", |e| {
        not_up(e) && error_of(e).contains("TCP connection to the peer failed")
    })?;
    println!("unreachable: {entry:?}");
    // No other node reports on a peer that does not select it.
    assert!(world.session_entry("unreachable", 1)?.is_none());

    for node in 1..=3 {
        assert!(
            world.speaker_mut(node)?.is_running(),
            "speaker {node} exited"
        );
        let health = world.lab.node(node)?.netns.exec(&[
            "curl",
            "-sS",
            "--max-time",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "http://127.0.0.1:7473/healthz",
        ])?;
        assert_eq!(health.trim(), "200", "node {node}");
    }
    assert_eq!(world.metric(1, "herald_speaker_bgp_peers_held_back")?, 1.0);

    // Fixing the password: the next resync reads the Secret again and the session comes up.
    let started = Instant::now();
    world.password_secret("bgp-wrong", PASSWORD)?;
    world.wait_session_entry(
        "wrong-password",
        1,
        "Established with the fixed password",
        |e| state_of(e) == Some("Established"),
    )?;
    println!(
        "fixed password: Established {:?} after the Secret changed",
        started.elapsed()
    );
    // Creating the missing Secret: the peer is started (and then finds nobody there).
    world.password_secret("bgp-absent", PASSWORD)?;
    world.wait_session_entry("missing-secret", 1, "started once the Secret exists", |e| {
        !error_of(e).contains("not started")
    })?;
    Ok(())
}
