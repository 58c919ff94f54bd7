//! The containerlab topology (tests/lab/herald.clab.yml) describes the same network as the
//! namespace lab. It cannot be deployed here (no Docker), so these tests check it against
//! the address plan and the FRR config generator instead. No root needed.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;

use herald_lab::frr::RouterConfig;
use herald_lab::plan::{self, Names, ifname};
use herald_lab::{LabError, Result};

const NODES: usize = 3;

fn lab_file(name: &str) -> Result<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    std::fs::read_to_string(&path)
        .map_err(|e| LabError::io(format!("reading {}", path.display()), e))
}

fn topology() -> Result<serde_yaml::Value> {
    serde_yaml::from_str(&lab_file("herald.clab.yml")?)
        .map_err(|e| LabError::parse("herald.clab.yml", e))
}

fn links(topology: &serde_yaml::Value) -> BTreeSet<(String, String)> {
    topology["topology"]["links"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|link| {
            let ends = link["endpoints"].as_sequence()?;
            Some((
                ends.first()?.as_str()?.to_string(),
                ends.get(1)?.as_str()?.to_string(),
            ))
        })
        .collect()
}

#[test]
fn the_containerlab_router_config_is_what_the_generator_renders_for_three_nodes() -> Result<()> {
    let file = lab_file("clab/router-frr.conf")?;
    let without_comment: String = file
        .lines()
        .filter(|l| !l.starts_with("! "))
        .map(|l| format!("{l}\n"))
        .collect();
    let neighbors: Vec<IpAddr> = (1..=NODES)
        .map(|i| plan::node_lan_v4(i).map(IpAddr::V4))
        .collect::<Result<_>>()?;
    assert_eq!(
        without_comment,
        RouterConfig::standard("router", &neighbors).render()
    );
    Ok(())
}

#[test]
fn the_containerlab_links_follow_the_namespace_lab_wiring() -> Result<()> {
    let links = links(&topology()?);
    let up = Names::new(plan::UP_PREFIX)?;
    let expect = |a: String, b: String| {
        assert!(
            links.contains(&(a.clone(), b.clone())),
            "missing link {a} — {b}"
        );
    };
    expect(
        format!("router:{}", ifname::ROUTER_LAN),
        format!("switch:{}", ifname::SWITCH_ROUTER_PORT),
    );
    expect(
        format!("router:{}", ifname::ROUTER_CLIENT),
        "client:eth1".into(),
    );
    for i in 1..=NODES {
        expect(
            format!("node{i}:lan0"),
            format!("switch:{}", ifname::switch_node_port(i)),
        );
        expect(
            format!("node{i}:{}", ifname::NODE_CP),
            format!("{}:{}", plan::CP_BRIDGE, up.cp_port(i)),
        );
        expect(
            format!("node{i}:{}", ifname::node_pod_port(1)),
            format!("pod{i}-1:eth1"),
        );
    }
    assert_eq!(links.len(), 2 + 3 * NODES, "no unexpected links: {links:?}");
    Ok(())
}

#[test]
fn the_containerlab_setup_scripts_use_the_address_plan() -> Result<()> {
    let node = lab_file("clab/node-setup.sh")?;
    let pod = lab_file("clab/pod-setup.sh")?;
    // The scripts build addresses from the node index i; expand them for each node.
    for i in 1..=NODES {
        let expand = |text: &str| text.replace("$i", &i.to_string()).replace("$j", "1");
        let node = expand(&node);
        let pod = expand(&pod);
        for needle in [
            format!("{}/24", plan::node_lan_v4(i)?),
            format!("{}/64", plan::node_lan_v6(i)?),
            format!("{}/24", plan::node_cp_v4(i)?),
            format!("{}/24", plan::pod_gateway_v4(i)?),
            format!("{}/64", plan::pod_gateway_v6(i)?),
        ] {
            assert!(
                node.contains(&needle),
                "node-setup.sh lacks {needle} for node {i}"
            );
        }
        for needle in [
            format!("{}/24", plan::pod_v4(i, 1)?),
            format!("{}/64", plan::pod_v6(i, 1)?),
            format!("--port {}", plan::ECHO_PORT),
        ] {
            assert!(
                pod.contains(&needle),
                "pod-setup.sh lacks {needle} for node {i}"
            );
        }
    }
    Ok(())
}
