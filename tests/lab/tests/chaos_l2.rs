//! Chaos in layer-2 mode: the kube-apiserver frozen must move no address (issue 11).
//!
//! Two speakers (layer 2 and forwarding on) and a dual-stack Service with an IPv4 and an
//! IPv6 address of the LAN's L2 range; the client sends requests to both every 250 ms. The
//! kube-apiserver is frozen (SIGSTOP) for 25 s — longer than the announcers' periodic
//! refresh and the speakers' request timeouts — then continued. Checked every second
//! throughout and after: the router's neighbour entry for each address keeps the MAC of the
//! node that owned it before (no move), exactly one speaker owns each address (the speakers'
//! `owned_addresses` sum to 2), no request is lost; once the API answers again the
//! current-announcer records still name the same nodes.
//!
//! Runs as root, one lab at a time (see tests/lab/README.md); about 1.5 minutes.

mod bgp_support;
mod chaos_support;
mod common;
mod l2_support;

use std::net::IpAddr;
use std::time::Duration;

use chaos_support::conclude;
use common::{SERVICE_PORT, World, parse_ip};
use herald_lab::Result;
use herald_lab::chaos::{ApiFreeze, Prober};

const V4: &str = "192.0.2.230";
const V6: &str = "2001:db8:1::1e6";
/// Longer than the announcers' refresh (10 s) and the speaker's request timeouts (10 s).
const FREEZE: Duration = Duration::from_secs(25);
/// How long the checks go on after the apiserver is back.
const AFTER: Duration = Duration::from_secs(15);

/// Checks once: the router maps each address to its owner's MAC (or has no resolved
/// entry at this instant), and the speakers own exactly the two addresses between them.
fn check(
    world: &World,
    owners: &[(IpAddr, usize)],
    label: &str,
    violations: &mut Vec<String>,
) -> Result<()> {
    for (address, owner) in owners {
        if let Some(node) = world.router_owner(*address)?
            && node != *owner
        {
            violations.push(format!(
                "{label}: {address} moved from node {owner} to node {node}"
            ));
        }
    }
    let owned: f64 = (1..=2)
        .map(|node| world.metric_sum(node, "herald_speaker_l2_owned_addresses"))
        .sum::<Result<f64>>()?;
    if owned != 2.0 {
        violations.push(format!(
            "{label}: the speakers own {owned} addresses between them, not 2"
        ));
    }
    Ok(())
}

#[test]
fn a_frozen_apiserver_moves_no_layer2_address() -> Result<()> {
    let mut world = World::l2("chaos-l2", 2)?;
    world.add_pod(1, "l2c-1", "app")?;
    world.add_pod(2, "l2c-2", "app")?;
    world.start_all_speakers()?;
    world.wait_membership(&[1, 2], 2)?;
    world.apply_service(
        &world.service("svc", "app", "Cluster").dual_stack(),
        &[V4, V6],
    )?;
    world.wait_ready_endpoints("svc", 4)?;
    let (v4, v6) = (parse_ip(V4)?, parse_ip(V6)?);
    let mut owners = Vec::new();
    for address in [v4, v6] {
        world.wait_get(address)?;
        let recorded = world.wait_any_record("svc", address)?;
        owners.push((address, recorded));
    }
    println!("owners: {owners:?}");
    let mut violations = Vec::new();
    check(&world, &owners, "before", &mut violations)?;

    let prober = Prober::start(
        world.lab.client(),
        &[(v4, SERVICE_PORT), (v6, SERVICE_PORT)],
        Duration::from_secs(2),
        Duration::from_millis(250),
        FREEZE + AFTER + Duration::from_secs(120),
    );
    let freeze = ApiFreeze::start()?;
    // Bounded: one check a second for FREEZE.
    while freeze.elapsed() < FREEZE {
        check(
            &world,
            &owners,
            &format!("frozen +{:?}", freeze.elapsed()),
            &mut violations,
        )?;
        std::thread::sleep(Duration::from_secs(1));
    }
    let frozen = freeze.thaw()?;
    let continued = std::time::Instant::now();
    while continued.elapsed() < AFTER {
        check(
            &world,
            &owners,
            &format!("continued +{:?}", continued.elapsed()),
            &mut violations,
        )?;
        std::thread::sleep(Duration::from_secs(1));
    }
    for (address, owner) in &owners {
        let recorded = world.recorded_owner("svc", *address)?;
        if recorded.as_deref() != Some(world.node_name(*owner)?.as_str()) {
            violations.push(format!(
                "after: the record of {address} names {recorded:?}, not node {owner}"
            ));
        }
    }
    let report = prober.finish();
    conclude(
        &world,
        &format!("apiserver SIGSTOP {frozen:?}, layer 2"),
        &report,
        &violations,
    )
}
