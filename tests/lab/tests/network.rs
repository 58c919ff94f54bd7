//! Lab network tests: no Kubernetes needed. Must run as root (network namespaces).

use std::net::IpAddr;
use std::time::Duration;

use herald_lab::cleanup::{self, Leftovers};
use herald_lab::gobgp::GobgpPeer;
use herald_lab::inspect::route_for;
use herald_lab::topology::RouterSetup;
use herald_lab::{Family, Lab, LabError, Result, plan};

fn lab() -> herald_lab::LabBuilder {
    Lab::builder().echo_binary(env!("CARGO_BIN_EXE_herald-lab"))
}

#[test]
fn the_client_reaches_a_pod_on_every_node_through_the_router_and_the_echo_reports_the_client_address()
-> Result<()> {
    let lab = lab()
        .nodes(2)
        .pods_per_node(1)
        .router(RouterSetup::NoFrr)
        .build()?;
    for pod in lab.pods() {
        for ip in [IpAddr::V4(pod.ipv4), IpAddr::V6(pod.ipv6)] {
            let reply = lab.client_get(ip, pod.port)?;
            assert_eq!(reply.pod, pod.name);
            assert_eq!(reply.node, pod.node_name);
            let expected = match ip {
                IpAddr::V4(_) => IpAddr::V4(plan::CLIENT_V4),
                IpAddr::V6(_) => IpAddr::V6(plan::CLIENT_V6),
            };
            assert_eq!(reply.client_ip()?, expected, "source address preserved");
        }
        let udp = lab.client_udp(IpAddr::V4(pod.ipv4), pod.port)?;
        assert_eq!(udp.pod, pod.name);
        assert_eq!(udp.client_ip()?, IpAddr::V4(plan::CLIENT_V4));
    }
    // The router resolved every node (the next hop of its pod routes) to the node's MAC.
    let neighbours = lab.router_neighbours()?;
    for node in lab.nodes() {
        let entry = neighbours
            .iter()
            .find(|n| n.dst == node.lan_v4.to_string() && n.is_resolved());
        assert_eq!(
            entry.and_then(|n| n.lladdr.clone()),
            Some(lab.node_lan_mac(node.index)?),
            "router's neighbour entry for {}",
            node.name
        );
    }
    Ok(())
}

#[test]
fn taking_a_node_lan_link_down_cuts_its_pods_off_until_it_comes_back() -> Result<()> {
    let lab = lab()
        .nodes(1)
        .pods_per_node(1)
        .router(RouterSetup::NoFrr)
        .build()?;
    let pod = lab.pod("echo-1-1")?.clone();
    let ip = IpAddr::V4(pod.ipv4);
    lab.client_get(ip, pod.port)?;
    lab.set_node_lan(1, false)?;
    assert!(
        lab.client_get(ip, pod.port).is_err(),
        "link down must cut traffic"
    );
    lab.set_node_lan(1, true)?;
    lab.wait_client_get(ip, pod.port, Duration::from_secs(10))?;
    Ok(())
}

#[test]
fn frr_peers_with_gobgpd_in_a_node_and_installs_its_route_in_the_kernel() -> Result<()> {
    let mut lab = lab().nodes(2).router_pod_routes(false).build()?;
    let node = lab.node(1)?.clone();
    let peer = GobgpPeer::start(&lab, 1, 64501)?;
    let frr = lab.frr()?;
    frr.wait_established(IpAddr::V4(node.lan_v4), Duration::from_secs(60))?;

    peer.announce("203.0.113.10/32")?;
    peer.announce("2001:db8:100::10/128")?;
    let timeout = Duration::from_secs(30);
    let route = lab.wait_router_route("203.0.113.10/32", timeout, |_| true)?;
    assert_eq!(route.gateways(), vec![node.lan_v4.to_string()]);
    assert_eq!(route.protocol.as_deref(), Some("bgp"));
    let v6 = lab.wait_router_route("2001:db8:100::10/128", timeout, |_| true)?;
    assert_eq!(v6.gateways(), vec![node.lan_v6.to_string()]);

    let summary = lab.frr()?.bgp_summary()?;
    let peer_summary = summary
        .peer(&node.lan_v4.to_string())
        .ok_or_else(|| LabError::Invalid("peer missing from summary".into()))?;
    assert_eq!(peer_summary.remote_as, Some(64501));
    let table = lab.frr()?.bgp_routes(Family::V4)?;
    assert!(table.contains_key("203.0.113.10/32"), "{table:?}");

    // A withdrawal removes the route from the router's kernel table.
    peer.withdraw("2001:db8:100::10/128")?;
    lab.wait_router_route_gone("2001:db8:100::10/128", timeout)?;

    // Fault: stopping FRR drops the session and its routes; starting it brings both back.
    lab.stop_frr()?;
    assert!(route_for(&lab.router_routes(Family::V4)?, "203.0.113.10/32").is_none());
    lab.start_frr_again()?;
    lab.frr()?
        .wait_established(IpAddr::V4(node.lan_v4), Duration::from_secs(60))?;
    lab.wait_router_route("203.0.113.10/32", timeout, |_| true)?;
    drop(peer);
    Ok(())
}

#[test]
fn a_dropped_lab_leaves_no_namespace_link_mount_or_process_with_its_prefix() -> Result<()> {
    let lab = lab().nodes(2).pods_per_node(1).build()?;
    let prefix = format!("{}-", lab.prefix());
    let cp_ports = format!("{}c", lab.prefix());
    let before = Leftovers::find(&prefix)?;
    assert!(before.namespaces.len() >= 7, "{before}");
    assert!(
        !before.processes.is_empty(),
        "FRR and echo servers run: {before}"
    );
    assert_eq!(Leftovers::find(&cp_ports)?.links.len(), 2);
    drop(lab);
    cleanup::wait_clean(&prefix, Duration::from_secs(15))?;
    cleanup::wait_clean(&cp_ports, Duration::from_secs(15))?;
    Ok(())
}

#[test]
fn herald_lab_down_removes_everything_a_crashed_lab_left_behind() -> Result<()> {
    let lab = lab().nodes(2).pods_per_node(1).build()?;
    let prefix = lab.prefix().to_string();
    let namespaces = format!("{prefix}-");
    let cp_ports = format!("{prefix}c");
    // Leak the lab as a crashed test would; keep other labs out until we are done.
    let _lock = lab.persist();
    let left = Leftovers::find(&namespaces)?;
    assert!(left.namespaces.len() >= 7, "{left}");
    assert!(left.mounts.len() >= 7, "{left}");
    assert!(
        left.processes.len() >= 4,
        "zebra, bgpd and two echo servers: {left}"
    );
    assert!(
        !left.dirs.is_empty(),
        "the FRR instance directories: {left}"
    );
    assert_eq!(Leftovers::find(&cp_ports)?.links.len(), 2);

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_herald-lab"))
        .args(["down", "--prefix", &prefix])
        .output()
        .map_err(|e| LabError::io("running herald-lab down", e))?;
    assert!(
        out.status.success(),
        "herald-lab down failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = Leftovers::find(&namespaces)?;
    assert!(after.is_empty(), "left behind: {after}");
    let after = Leftovers::find(&cp_ports)?;
    assert!(after.is_empty(), "left behind: {after}");
    Ok(())
}

#[test]
fn a_lab_whose_build_fails_part_way_removes_what_it_had_built() -> Result<()> {
    // The echo server cannot start, so the build fails after namespaces, links and FRR exist.
    let result = Lab::builder()
        .prefix("hlfail")
        .echo_binary("/nonexistent/herald-lab")
        .nodes(2)
        .pods_per_node(1)
        .build();
    assert!(result.is_err(), "the build must fail");
    cleanup::wait_clean("hlfail-", Duration::from_secs(15))?;
    cleanup::wait_clean("hlfailc", Duration::from_secs(15))?;
    Ok(())
}
