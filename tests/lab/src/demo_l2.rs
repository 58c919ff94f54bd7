//! `herald-lab demo`, the layer-2 part: after `demo_herald` installed Herald (controller and
//! speakers, layer 2 on by default), shows a Service reached over ARP / NDP and a failover.
//!
//! An IPAddressPool in the LAN's L2 range (not auto-assigned) with an L2Advertisement; a
//! dual-stack Service that asks for that pool; the client reaching it over IPv4 and IPv6;
//! the router's neighbour table showing the owner's MAC, and the owner's record on the
//! Service. Then the owner's speaker is SIGKILLed: the demo polls the client every 50 ms
//! until the router has another node's MAC and a request succeeds, prints the time, and
//! starts the killed speaker again (same command line, detached, same log) — it does not
//! take the address back.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use herald_lab::herald::{self, RECORD_PREFIX};
use herald_lab::kube::{Kubectl, PortSpec, ServiceSpec};
use herald_lab::topology::http_get_from;
use herald_lab::{Netns, inspect, netns, paths, plan};
use serde_json::{Value, json};

use crate::demo_herald::{DemoLab, apply_herald_object, first_reply, spawn_detached};

const POOL: &str = "demo-l2";
const SERVICE: &str = "demo-l2";

/// One node as the demo sees it: Kubernetes name, namespace, LAN MAC.
struct DemoNode {
    name: String,
    netns: Netns,
    mac: String,
}

/// Shows layer-2 mode and a failover; prints a note and returns when the speakers are not
/// running.
pub fn show(kubectl: &Kubectl, lab: &DemoLab<'_>) -> anyhow::Result<()> {
    let nodes: Vec<DemoNode> = lab
        .nodes
        .iter()
        .map(|(name, ns, _)| {
            let netns = Netns::existing(ns);
            let links = netns.addresses()?;
            let mac = inspect::mac_of(&links, plan::ifname::NODE_LAN)
                .map(str::to_ascii_lowercase)
                .context("a node without a LAN MAC")?;
            Ok(DemoNode {
                name: (*name).to_string(),
                netns,
                mac,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    if nodes.iter().all(|n| speaker_pid(&n.netns).is_none()) {
        println!("  (no herald-speaker running: the Herald part of the demo was skipped)");
        return Ok(());
    }

    println!(
        "  pool {POOL}: 192.0.2.128/25 + 2001:db8:1::100/120 (on the node LAN), autoAssign off; L2Advertisement {POOL}"
    );
    apply_herald_object(
        kubectl,
        "IPAddressPool",
        POOL,
        json!({"addresses": [plan::L2_POOL_V4, plan::L2_POOL_V6], "autoAssign": false}),
    )?;
    apply_herald_object(kubectl, "L2Advertisement", POOL, json!({"pools": [POOL]}))?;
    let manifest = ServiceSpec::new(SERVICE, "echo")
        .load_balancer()
        .annotation("herald.dev/address-pool", POOL)
        .port(PortSpec::tcp("http", 80).target(plan::ECHO_PORT))
        .dual_stack()
        .without_node_ports()
        .manifest(lab.apps_namespace);
    kubectl.apply(&manifest.to_string())?;
    println!(
        "  Service {}/{SERVICE} (dual-stack, annotation herald.dev/address-pool: {POOL})",
        lab.apps_namespace
    );
    let addresses = herald::wait_ingress(
        kubectl,
        lab.apps_namespace,
        SERVICE,
        2,
        "the controller to give the layer-2 Service its addresses",
        Duration::from_secs(60),
    )?;
    let client = Netns::existing(lab.client_netns);
    let router = Netns::existing(lab.router_netns);
    for &address in &addresses {
        let reply = first_reply(&client, address)?;
        let owner = router_owner(&router, &nodes, address)?;
        println!(
            "  client -> {:<22} answered by pod {} (saw client {}); router: {address} is at {} = {}'s eth0",
            url_host(address),
            reply.pod,
            reply.client,
            owner.map_or("?", |n| nodes[n].mac.as_str()),
            owner.map_or("?", |n| nodes[n].name.as_str()),
        );
    }
    for (key, value) in records(kubectl, lab.apps_namespace)? {
        println!("  record on the Service: {key}: {value}");
    }

    // Failover: SIGKILL the IPv4 owner's speaker.
    let Some(&v4) = addresses.iter().find(|a| a.is_ipv4()) else {
        bail!("the Service has no IPv4 address");
    };
    let Some(owner) = router_owner(&router, &nodes, v4)? else {
        bail!("the router has no neighbour entry for {v4}");
    };
    let Some(pid) = speaker_pid(&nodes[owner].netns) else {
        bail!("no herald-speaker runs on {}", nodes[owner].name);
    };
    let argv = cmdline(pid)?;
    println!(
        "  failover: SIGKILL of the speaker on {} (pid {pid}); the client asks every 50 ms",
        nodes[owner].name
    );
    let killed = Instant::now();
    netns::signal(pid, "KILL")?;
    let mut attempts = 0;
    let (new_owner, took) = loop {
        attempts += 1;
        if killed.elapsed() > Duration::from_secs(20) {
            bail!("{v4} did not move within 20 s");
        }
        let ok = http_get_from(&client, v4, 80, Duration::from_millis(400)).is_ok();
        match router_owner(&router, &nodes, v4)? {
            Some(now) if ok && now != owner => break (now, killed.elapsed()),
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    println!(
        "  {v4} moved to {} after {} ms ({attempts} requests); the router now has {}",
        nodes[new_owner].name,
        took.as_millis(),
        nodes[new_owner].mac
    );
    let log = paths::logs_dir()
        .join(lab.prefix)
        .join(format!("herald-speaker-{}.log", nodes[owner].name));
    restart(&nodes[owner].netns, &argv, &log)?;
    println!(
        "  restarted the speaker on {}; it leaves the address where it is:",
        nodes[owner].name
    );
    std::thread::sleep(Duration::from_secs(5));
    let reply = http_get_from(&client, v4, 80, Duration::from_secs(2))?;
    let owner_now = router_owner(&router, &nodes, v4)?;
    println!(
        "  client -> {v4} answered by pod {}; router: {v4} is at {}",
        reply.pod,
        owner_now.map_or("?", |n| nodes[n].name.as_str())
    );
    for (key, value) in records(kubectl, lab.apps_namespace)? {
        println!("  record on the Service: {key}: {value}");
    }
    Ok(())
}

fn url_host(address: IpAddr) -> String {
    match address {
        IpAddr::V4(v4) => format!("{v4}:80"),
        IpAddr::V6(v6) => format!("[{v6}]:80"),
    }
}

/// The current-announcer records on the demo Service.
fn records(kubectl: &Kubectl, namespace: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let service = kubectl
        .get("service", SERVICE, Some(namespace))?
        .unwrap_or(Value::Null);
    Ok(service["metadata"]["annotations"]
        .as_object()
        .map(|annotations| {
            annotations
                .iter()
                .filter(|(key, _)| key.starts_with(RECORD_PREFIX))
                .map(|(key, value)| (key.clone(), value.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default())
}

/// Index of the node whose MAC the router holds for `address`.
fn router_owner(
    router: &Netns,
    nodes: &[DemoNode],
    address: IpAddr,
) -> anyhow::Result<Option<usize>> {
    let wanted = address.to_string();
    let mac = router
        .neighbours()?
        .into_iter()
        .find(|n| n.dst == wanted && n.is_resolved())
        .and_then(|n| n.lladdr)
        .map(|m| m.to_ascii_lowercase());
    Ok(mac.and_then(|mac| nodes.iter().position(|n| n.mac == mac)))
}

/// The pid of the herald-speaker running in `ns`, if any.
fn speaker_pid(ns: &Netns) -> Option<u32> {
    ns.pids().ok()?.into_iter().find(|pid| {
        cmdline(*pid).is_ok_and(|argv| {
            argv.first()
                .is_some_and(|program| program.ends_with("herald-speaker"))
        })
    })
}

fn cmdline(pid: u32) -> anyhow::Result<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline"))
        .with_context(|| format!("reading the command line of pid {pid}"))?;
    Ok(raw
        .split(|b| *b == 0)
        .filter(|part| !part.is_empty())
        .map(|part| String::from_utf8_lossy(part).into_owned())
        .collect())
}

/// Starts `argv` again inside `ns`, detached, appending to `log`.
fn restart(ns: &Netns, argv: &[String], log: &Path) -> anyhow::Result<()> {
    let Some((program, args)) = argv.split_first() else {
        bail!("empty command line");
    };
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    spawn_detached(ns, program, args, out)
}
