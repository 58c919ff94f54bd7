//! `herald-lab demo`, the BGP part: after `demo_herald` installed Herald (controller and
//! speakers, BGP on by default), shows a Service announced over BGP by every node and
//! reached through the router's ECMP.
//!
//! A BGPPeer (every node, AS 64512, to the router's FRR at 192.0.2.1, AS 64500), an
//! IPAddressPool in the BGP range (not auto-assigned) with a BGPAdvertisement, and a
//! `Local` Service that asks for that pool. FRR learns one path per node with a ready
//! endpoint and installs one kernel route with a next hop per node; the router hashes on
//! ports, so the client's connections spread over the nodes and each reaches a pod on the
//! node it entered by, with the client's address intact. Prints what FRR and the API show
//! (BGPPeer status per node, the per-node carrier annotation on the Service).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use herald_lab::herald::CARRIER_PREFIX;
use herald_lab::kube::{Kubectl, PortSpec, ServiceSpec};
use herald_lab::wait::{Poll, poll_until_ok};
use herald_lab::{Family, Netns, inspect, plan};
use serde_json::json;

use crate::demo_herald::{
    DemoLab, INSTALL_NAMESPACE, apply_herald_object, first_reply, wait_address,
};

const POOL: &str = "demo-bgp";
const SERVICE: &str = "demo-bgp";
const PEER: &str = "router";
const NODE_ASN: u32 = 64512;

/// Shows BGP mode; prints a note and returns when the Service cannot get going.
pub fn show(kubectl: &Kubectl, lab: &DemoLab<'_>) -> anyhow::Result<()> {
    let router = Netns::existing(lab.router_netns);
    let client = Netns::existing(lab.client_netns);
    println!(
        "  BGPPeer {PEER}: every node, AS {NODE_ASN} -> 192.0.2.1 AS {}; pool {POOL}: 203.0.113.128/25, autoAssign off; BGPAdvertisement {POOL}",
        plan::ROUTER_ASN
    );
    apply_herald_object(
        kubectl,
        "BGPPeer",
        PEER,
        json!({"myASN": NODE_ASN, "peerASN": plan::ROUTER_ASN,
               "peerAddress": plan::ROUTER_LAN_V4.to_string(), "holdTime": "9s"}),
    )?;
    apply_herald_object(
        kubectl,
        "IPAddressPool",
        POOL,
        json!({"addresses": ["203.0.113.128/25"], "autoAssign": false, "avoidBuggyIPs": true}),
    )?;
    apply_herald_object(kubectl, "BGPAdvertisement", POOL, json!({"pools": [POOL]}))?;
    // ECMP on ports, so one client's connections use every next hop.
    router.sysctl(&[("net.ipv4.fib_multipath_hash_policy", "1")])?;

    let manifest = ServiceSpec::new(SERVICE, "echo")
        .load_balancer()
        .traffic_policy("Local")
        .annotation("herald.dev/address-pool", POOL)
        .port(PortSpec::tcp("http", 80).target(plan::ECHO_PORT))
        .without_node_ports()
        .manifest(lab.apps_namespace);
    kubectl.apply(&manifest.to_string())?;
    println!(
        "  Service {}/{SERVICE} (externalTrafficPolicy Local, annotation herald.dev/address-pool: {POOL})",
        lab.apps_namespace
    );
    let address = wait_address(
        kubectl,
        lab,
        SERVICE,
        "the controller to give the BGP Service its address",
    )?;
    let prefix = format!("{address}/32");
    let nodes = lab.nodes.len();
    let route = poll_until_ok(
        &format!("the router's kernel route for {prefix} with a next hop per node"),
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let routes = router.routes(Family::V4)?;
            Ok(match inspect::route_for(&routes, &prefix) {
                Some(route) if route.gateways().len() == nodes => Poll::Ready(route.clone()),
                other => Poll::Pending(format!("{other:?}")),
            })
        },
    )?;
    println!(
        "  the controller gave it {address}; the router's kernel route: {prefix} via {} (proto {})",
        route.gateways().join(", "),
        route.protocol.as_deref().unwrap_or("?")
    );
    let frr = std::process::Command::new("vtysh")
        .args([
            "-N",
            lab.router_netns,
            "-c",
            &format!("show bgp ipv4 unicast {prefix}"),
        ])
        .output()
        .context("running vtysh")?;
    for line in String::from_utf8_lossy(&frr.stdout).lines().take(12) {
        println!("    frr| {line}");
    }

    let mut by_node: BTreeMap<String, usize> = BTreeMap::new();
    let mut clients: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..24 {
        let reply = first_reply(&client, address)?;
        *by_node
            .entry(format!("{} on {}", reply.pod, reply.node))
            .or_default() += 1;
        *clients.entry(reply.client_ip()?.to_string()).or_default() += 1;
    }
    println!("  24 connections from the client to {address}:80 (ECMP over the nodes):");
    for (pod, count) in &by_node {
        println!("    {count:>2} answered by {pod}");
    }
    println!(
        "  client address seen by the pods: {:?} (Local keeps it)",
        clients.keys().collect::<Vec<_>>()
    );

    // Status writes are rate limited (one per second per peer): wait for every node's
    // entry to say Established.
    let sessions = kubectl.wait_for(
        "every node's session in the BGPPeer's status",
        Duration::from_secs(15),
        |k| {
            let peer = k.get("bgppeer", PEER, Some(INSTALL_NAMESPACE))?;
            let sessions = peer
                .as_ref()
                .and_then(|p| p["status"]["sessions"].as_array().cloned())
                .unwrap_or_default();
            let established = sessions
                .iter()
                .filter(|s| s["state"] == "Established")
                .count();
            Ok(if established == nodes {
                Poll::Ready(sessions)
            } else {
                Poll::Pending(format!("{sessions:?}"))
            })
        },
    )?;
    for session in sessions {
        println!(
            "  BGPPeer {PEER} status: node {} {} ({} prefixes)",
            session["node"].as_str().unwrap_or("?"),
            session["state"].as_str().unwrap_or("?"),
            session["advertisedPrefixes"]
        );
    }
    let service = kubectl.get("service", SERVICE, Some(lab.apps_namespace))?;
    let annotations = service
        .as_ref()
        .and_then(|s| s["metadata"]["annotations"].as_object().cloned())
        .unwrap_or_default();
    for (key, value) in annotations
        .iter()
        .filter(|(k, _)| k.starts_with(CARRIER_PREFIX))
    {
        println!("  on the Service: {key}: {}", value.as_str().unwrap_or("?"));
    }
    println!(
        "  try: vtysh -N {} -c 'show bgp summary'; ip -n {} route show {address}",
        lab.router_netns, lab.router_netns
    );
    Ok(())
}
